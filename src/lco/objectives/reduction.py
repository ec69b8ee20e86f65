"""How per-token losses become one scalar.

The paper writes every objective as an empirical mean E_t over time steps (eqs. 1, 3, 8–10);
the GRPO family differs only in *how* that mean is taken, so the aggregations live here once.
"""

from __future__ import annotations

import torch

from .._checks import check_choice, check_mask

AGGREGATIONS = ("token_mean", "sequence_mean", "constant")


def masked_mean(per_token: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """E_t over the masked tokens. An all-false mask yields 0 (with zero gradient), never NaN."""
    if mask is None:
        return per_token.mean() if per_token.numel() else per_token.sum()
    weights = mask.to(per_token.dtype)
    # clamp: with no selected token the numerator is an exact 0 and so is the gradient.
    return (per_token * weights).sum() / weights.sum().clamp(min=1.0)


def aggregate(
    per_token: torch.Tensor,
    mask: torch.Tensor | None = None,
    mode: str = "token_mean",
    max_completion_length: int | None = None,
) -> torch.Tensor:
    """Reduce ``per_token`` losses ``[B, T]`` to a scalar, the way the GRPO family does.

    - ``"token_mean"``: Σ losses / Σ mask over the whole batch (DAPO, CISPO, TRL's ``bnpo``).
    - ``"sequence_mean"``: mean over sequences of each sequence's token mean (original GRPO).
    - ``"constant"``: Σ losses / (B · max_completion_length) — Dr. GRPO's length-independent
      normaliser, which removes the bias toward long wrong answers.
    """
    check_choice("mode", mode, AGGREGATIONS)
    # A [B] mask against [B, T] losses would broadcast along T — silently wrong when B == T.
    check_mask(mask, per_token.shape)
    if mask is None:
        mask = torch.ones_like(per_token, dtype=torch.bool)
    weights = mask.to(per_token.dtype)
    if mode == "token_mean":
        return masked_mean(per_token, mask)
    if mode == "sequence_mean":
        if per_token.dim() < 2:
            raise ValueError("sequence_mean needs per_token losses of shape [B, T]")
        per_seq = (per_token * weights).sum(-1) / weights.sum(-1).clamp(min=1.0)
        return per_seq.mean() if per_seq.numel() else per_seq.sum()
    if max_completion_length is None or max_completion_length <= 0:
        raise ValueError(
            "max_completion_length must be a positive int for the 'constant' (Dr. GRPO) aggregation"
        )
    n_seq = per_token.shape[0] if per_token.dim() >= 2 else 1
    return (per_token * weights).sum() / (n_seq * max_completion_length)
