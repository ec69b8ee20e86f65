"""On-policy distillation baselines (paper Table 4): MiniLLM's reverse KL and GKD's generalised JSD.

Both compare the student's full next-token distribution with a teacher's on the student's own
samples; in the paper the teacher is the DPO reward model φ_DPO.
"""

from __future__ import annotations

import math

import torch

from .._checks import check_finite, check_mask, check_same_shape
from .reduction import masked_mean


def _log_probs(student_logits, teacher_logits, temperature: float, mask):
    check_same_shape("teacher_logits", teacher_logits, "student_logits", student_logits)
    check_mask(mask, student_logits.shape[:-1])
    check_finite("student_logits", student_logits)
    check_finite("teacher_logits", teacher_logits)
    if not 0 < temperature < math.inf:  # written so that NaN fails too
        raise ValueError(f"temperature must be a positive finite number, got {temperature}")
    log_s = torch.log_softmax(student_logits.float() / temperature, dim=-1)
    log_t = torch.log_softmax(teacher_logits.float().detach() / temperature, dim=-1)
    return log_s, log_t


def reverse_kl_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor | None = None,
    temperature: float = 1.0,
) -> torch.Tensor:
    """MiniLLM's token-level reverse KL, E_t[KL(π_θ ‖ p_T)] = E_t[Σ_a π_θ(a)(log π_θ(a) − log p_T(a))].

    Exact over the vocabulary (MiniLLM's "single-step" term; Gu et al., 2023), so its gradient is
    the full-distribution one rather than a sampled policy-gradient estimate.
    """
    log_s, log_t = _log_probs(student_logits, teacher_logits, temperature, mask)
    return masked_mean(reverse_kl_per_token(log_s, log_t), mask)


def reverse_kl_per_token(student_log_probs: torch.Tensor, teacher_log_probs: torch.Tensor) -> torch.Tensor:
    """KL(π_θ ‖ p_T) per token from log-probabilities ``[..., V]`` (no checks; the chunked trainer path)."""
    return (student_log_probs.exp() * (student_log_probs - teacher_log_probs)).sum(-1)


def generalized_jsd_per_token(
    student_log_probs: torch.Tensor, teacher_log_probs: torch.Tensor, beta: float
) -> torch.Tensor:
    """JSD_β per token from log-probabilities ``[..., V]`` (see :func:`generalized_jsd_loss`)."""
    log_s, log_t = student_log_probs, teacher_log_probs
    if beta == 0.0:
        return (log_t.exp() * (log_t - log_s)).sum(-1)
    if beta == 1.0:
        return (log_s.exp() * (log_s - log_t)).sum(-1)
    log_m = torch.logsumexp(torch.stack([log_t + math.log(beta), log_s + math.log(1.0 - beta)]), dim=0)
    kl_t = (log_t.exp() * (log_t - log_m)).sum(-1)
    kl_s = (log_s.exp() * (log_s - log_m)).sum(-1)
    return beta * kl_t + (1.0 - beta) * kl_s


def generalized_jsd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    beta: float = 0.5,
    mask: torch.Tensor | None = None,
    temperature: float = 1.0,
) -> torch.Tensor:
    """GKD's generalised Jensen–Shannon divergence (Agarwal et al., 2024), token mean.

    With M = β·p_T + (1 − β)·π_θ: JSD_β = β·KL(p_T ‖ M) + (1 − β)·KL(π_θ ‖ M). Following TRL's
    convention, β = 0 is the forward KL(p_T ‖ π_θ) and β = 1 the reverse KL(π_θ ‖ p_T);
    β = 0.5 (TRL's ``GKDConfig.beta`` default) is the symmetric JSD.
    """
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must lie in [0, 1] for the generalised JSD, got {beta}")
    log_s, log_t = _log_probs(student_logits, teacher_logits, temperature, mask)
    return masked_mean(generalized_jsd_per_token(log_s, log_t, beta), mask)
