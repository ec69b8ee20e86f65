"""TRL's per-token corrections of a policy loss, applied to the LCO losses as TRL applies them to its own.

``trl.GRPOTrainer._compute_loss`` multiplies its per-token loss, before aggregating, by

1. the off-policy sequence mask (``off_policy_mask_threshold``, DeepSeek-V3.2): a sequence with a
   negative advantage is dropped when its mean KL(π_sampling ‖ π_θ) over its tokens exceeds δ;
2. the high-entropy token mask (``top_entropy_quantile`` q < 1): only the tokens whose entropy under
   π_θ is in the top q of the batch (gathered over processes) are kept;
3. the vLLM importance-sampling ratio (``importance_sampling_ratio``, when ``use_vllm`` and
   ``vllm_importance_sampling_correction``): π_old / π_vLLM per token (``token_*`` modes) or per
   sequence (``sequence_*`` modes), truncated or masked by TRL at generation time.

The LCO loss is a token mean Σ_t m_t ℓ_t / Σ_t m_t of the per-token losses ℓ_t of eqs. 8–10 of
"Stabilizing Policy Optimization via Logits Convexity" (arXiv:2603.00963); :func:`weighted_token_mean`
gives Σ_t m_t w_t ℓ_t / Σ_t m_t for the product w_t of the factors above — the same place and the same
normaliser as TRL's token-level (``bnpo``/``dapo``-style) aggregation. The masks are computed from
π_θ's log-probabilities and entropies at the sampling temperature, detached, from the same forward
pass (one extra no-grad pass over the LM head, chunked).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TokenCorrections:
    """TRL's per-token factors for one micro-batch.

    Attributes:
        importance_ratio: TRL's ``importance_sampling_ratio``, ``[B, T]`` or ``[B, 1]``; ``None`` when off.
        off_policy_threshold: TRL's ``off_policy_mask_threshold`` δ; ``None`` when off.
        sampling_logps: log π of the sampled tokens when they were sampled, ``[B, T]`` (TRL's
            ``sampling_per_token_logps``, else its ``old_per_token_logps``); ``None``: the current
            policy's (KL 0, nothing dropped), as TRL does.
        entropy_quantile: TRL's ``top_entropy_quantile`` q (1.0: off).
        high_entropy_mask: TRL's ``GRPOTrainer.get_high_entropy_mask(entropies, mask, threshold)``.
    """

    importance_ratio: torch.Tensor | None = None
    off_policy_threshold: float | None = None
    sampling_logps: torch.Tensor | None = None
    entropy_quantile: float = 1.0
    high_entropy_mask: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor] | None = None

    @property
    def active(self) -> bool:
        return self.importance_ratio is not None or self.needs_policy_stats

    @property
    def needs_policy_stats(self) -> bool:
        """Whether the factors need π_θ's token log-probabilities and entropies."""
        return self.off_policy_threshold is not None or self.entropy_quantile < 1.0

    def weights(
        self,
        mask: torch.Tensor,
        token_advantages: torch.Tensor,
        logps: torch.Tensor | None = None,
        entropies: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """w_t, ``[B, T]`` (float): the product of the active factors, in TRL's order.

        ``token_advantages`` ``[B, T]`` decides TRL's "positive advantage" for the off-policy mask;
        ``logps`` and ``entropies`` are π_θ's (detached), needed when :attr:`needs_policy_stats`.
        """
        m = mask.float()
        w = torch.ones_like(m)
        if self.off_policy_threshold is not None:
            sampling = logps if self.sampling_logps is None else self.sampling_logps
            # TRL's get_off_policy_mask: keep if A >= 0 or the sequence's mean KL(π_sampling ‖ π_θ) <= δ;
            # tokens vLLM could not score (NaN) carry no KL evidence
            kl = torch.nan_to_num(sampling - logps.detach(), nan=0.0)
            mean_kl = (kl * m).sum(-1, keepdim=True) / m.sum(-1, keepdim=True).clamp(min=1.0)
            keep = (token_advantages >= 0) | (mean_kl <= self.off_policy_threshold)
            w = w * keep.to(w.dtype)
        if self.entropy_quantile < 1.0:
            w = w * self.high_entropy_mask(entropies, mask, 1.0 - self.entropy_quantile).to(w.dtype)
        if self.importance_ratio is not None:
            w = w * self.importance_ratio.to(w.dtype)
        return w


def weighted_token_mean(
    loss_fn: Callable[[torch.Tensor], tuple[torch.Tensor, dict]], mask: torch.Tensor, weights: torch.Tensor
) -> tuple[torch.Tensor, dict]:
    """Σ m w ℓ / max(Σ m, 1) from a loss that computes Σ u ℓ / max(Σ u, 1) for a token weighting u.

    ``loss_fn(u)`` is called with u = m·w (``[N]``, float); its loss is rescaled by
    max(Σu, 1) / max(Σm, 1), and its per-token stats (which it returns multiplied by u) are divided
    back by u where u ≠ 0, so that they stay π_θ's own numbers.
    """
    m = mask.reshape(-1).float()
    u = m * weights.reshape(-1).float()
    loss, stats = loss_fn(u)
    scale = u.sum().clamp(min=1.0) / m.sum().clamp(min=1.0)
    nonzero = u != 0
    stats = {k: torch.where(nonzero, v / torch.where(nonzero, u, 1.0), 0.0) for k, v in stats.items()}
    return loss * scale, stats
