"""Per-token quantities from final hidden states and an LM head, chunk by chunk.

:func:`head_logit_chunks` is the one place z = h·Wᵀ + b is written: every other head path (the
fused LCO loss's advantage and z_old sources, the trainer's teacher logits, the functions below)
reads logits through it, one chunk of rows at a time.

The policy-gradient and distillation baselines need per-token log-probabilities (and, for the
distillation losses, full next-token distributions) of the completion tokens. Computing
``h @ Wᵀ`` for all tokens at once would hold ``[N, V]`` logits (and their autograd buffers)
for the whole micro-batch; instead each chunk is wrapped in activation checkpointing, so only
the chunk's hidden states are saved and its ``[chunk, V]`` logits are recomputed in backward.
The LCO losses use the custom autograd function of :mod:`lco.objectives.fused` instead.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.checkpoint import checkpoint


def head_logit_chunks(
    hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
) -> Callable[[int, int], torch.Tensor]:
    """z = h·Wᵀ + b as a chunk callable: ``(start, end) -> [end − start, V]`` fp32 logits.

    ``hidden`` is ``[..., H]`` (flattened to ``[N, H]`` rows), ``weight`` the head ``[V, H]`` and
    ``bias`` ``[V]`` or ``None``. Only the requested rows are multiplied, in fp32; the head is cast
    per call (a no-op for an fp32 head), so a low-precision head is never held in fp32 between
    chunks. Gradients flow as for any tensor expression: callers that want none pass detached
    tensors or call it under ``torch.no_grad()``.
    """
    rows_h = hidden.reshape(-1, hidden.shape[-1])

    def rows(start: int, end: int) -> torch.Tensor:
        h, w = rows_h[start:end].float(), weight.float()
        return h @ w.T if bias is None else torch.addmm(bias.float(), h, w.T)

    return rows


def chunked_token_stats(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    tokens: torch.Tensor,
    chunk_size: int,
    temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """log π_θ(a_t|s_t) with gradient, and the policy entropy (no gradient), for ``tokens``.

    ``hidden`` is ``[B, T, H]`` and ``tokens`` ``[B, T]``; returns two ``[B, T]`` fp32 tensors.
    Logits are divided by the sampling ``temperature``, TRL's convention for π_θ and π_old.
    """
    B, T, H = hidden.shape
    flat_h, flat_a = hidden.reshape(-1, H), tokens.reshape(-1)
    entropies = torch.empty(flat_a.shape, dtype=torch.float32, device=hidden.device)

    def chunk_logp(h: torch.Tensor, a: torch.Tensor, start: int) -> torch.Tensor:
        log_pi = torch.log_softmax(head_logit_chunks(h, weight, bias)(0, h.shape[0]) / temperature, dim=-1)
        with torch.no_grad():
            entropies[start : start + h.shape[0]] = -(log_pi.exp() * log_pi).sum(-1)
        return log_pi.gather(-1, a.unsqueeze(-1)).squeeze(-1)

    pieces = []
    for start in range(0, flat_h.shape[0], chunk_size):
        h, a = flat_h[start : start + chunk_size], flat_a[start : start + chunk_size]
        if torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad):
            pieces.append(checkpoint(chunk_logp, h, a, start, use_reentrant=False))
        else:
            pieces.append(chunk_logp(h, a, start))
    return torch.cat(pieces).view(B, T), entropies.view(B, T)


def chunked_distribution_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    teacher_logits_fn: Callable[[int, int], torch.Tensor],
    per_token_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    mask: torch.Tensor,
    chunk_size: int,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Σ over masked tokens of ``per_token_loss(student_log_probs, teacher_log_probs)``, chunk by chunk.

    ``teacher_logits_fn(start, end)`` yields the teacher's ``[end − start, V]`` logits for the
    flattened tokens ``start:end`` (computed from its saved hidden states), so neither model's
    ``[N, V]`` logits exist at once. Both are divided by ``temperature``. Returns the *sum*
    (the caller normalises).
    """
    H = hidden.shape[-1]
    flat_h, flat_m = hidden.reshape(-1, H), mask.reshape(-1).float()

    def chunk_loss(h: torch.Tensor, m: torch.Tensor, start: int) -> torch.Tensor:
        log_t = torch.log_softmax(teacher_logits_fn(start, start + h.shape[0]).float() / temperature, dim=-1)
        log_s = torch.log_softmax(head_logit_chunks(h, weight, bias)(0, h.shape[0]) / temperature, dim=-1)
        return (per_token_loss(log_s, log_t) * m).sum()

    total = flat_h.new_zeros((), dtype=torch.float32)
    for start in range(0, flat_h.shape[0], chunk_size):
        h, m = flat_h[start : start + chunk_size], flat_m[start : start + chunk_size]
        if not bool(m.any()):
            continue
        total = total + checkpoint(chunk_loss, h, m, start, use_reentrant=False)
    return total
