"""The closed-form optimum of the KL-regularised objective (paper §4, Prop. 4.1).

For a behaviour policy π_old = softmax(z_old) and an advantage A over the vocabulary,

    max_π  E_{a~π}[A(s, a)] − β·KL(π ‖ π_old)                       (eq. 2)

is solved by π*(a|s) ∝ π_old(a|s)·exp(A(s, a)/β)                   (eq. 6)
which is induced by the logits z* = z_old + A/β                     (eq. 7).
"""

from __future__ import annotations

import torch

from .._checks import check_beta, check_finite, check_same_shape


def _checked_fp32(old_logits: torch.Tensor, advantages: torch.Tensor, beta: float):
    beta = check_beta(beta)
    check_same_shape("advantages", advantages, "old_logits", old_logits)
    check_finite("old_logits", old_logits)
    check_finite("advantages", advantages)
    return old_logits.float(), advantages.float(), beta


def optimal_logits(old_logits: torch.Tensor, advantages: torch.Tensor, beta: float) -> torch.Tensor:
    """z* = z_old + A/β (eq. 7), in fp32 whatever the input dtype.

    Args:
        old_logits: z_old, ``[..., V]``.
        advantages: A over the vocabulary, ``[..., V]`` (dense; see :func:`lco.sparse_advantages`).
        beta: the KL weight β > 0 of eq. (2).
    """
    z_old, adv, beta = _checked_fp32(old_logits, advantages, beta)
    z_star = z_old + adv / beta
    # A finite β can still overflow A/β in fp32 (β = 1e-40 is "positive and finite"); an inf in z*
    # would turn every loss into NaN, so name the culprit here instead.
    if not bool(torch.isfinite(z_star).all()):
        raise ValueError(
            f"beta={beta!r} is too small: z* = z_old + A/β overflows fp32 for advantages up to "
            f"{float(adv.abs().max()):.3g}"
        )
    return z_star


def optimal_log_policy(old_logits: torch.Tensor, advantages: torch.Tensor, beta: float) -> torch.Tensor:
    """log π* = log_softmax(z_old + A/β) (eq. 6, written through the logits as in eq. 29)."""
    return torch.log_softmax(optimal_logits(old_logits, advantages, beta), dim=-1)
