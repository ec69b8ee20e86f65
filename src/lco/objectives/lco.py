"""The three LCO objectives (paper §4.1, eqs. 8–10) as pure functions of tensors.

Each objective is a per-token loss ℓ(z, z*) of the policy logits z and the target logits
z* = z_old + A/β, averaged over the masked tokens. Every loss is stated twice: its value and
its closed-form logit gradient ∂ℓ/∂z (eqs. 44, 47 and 2/|V|·(z − z*) for MSE). The naive
functions here differentiate the value with autograd; the fused path
(:mod:`lco.objectives.fused`) uses the closed-form gradient chunk by chunk, and the tests hold
the two against each other and against the paper.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .._checks import check_finite, check_mask, check_same_shape
from .reduction import masked_mean
from .targets import optimal_logits

_LOG2 = math.log(2.0)


def log_cosh(x: torch.Tensor) -> torch.Tensor:
    """log cosh x, accurate near 0 and without overflow for large |x|.

    For |x| < 1, log1p(2·sinh²(x/2)) (cosh x = 1 + 2 sinh²(x/2)) keeps full relative precision —
    the large-|x| form |x| + log1p(e^{−2|x|}) − log 2 cancels to noise there (in fp32 it gives 0
    at x = 1e-4), which would misreport LCO-LCH near convergence.
    """
    ax = x.abs()
    small = torch.log1p(2.0 * torch.sinh(0.5 * ax.clamp(max=1.0)).pow(2))
    large = ax + torch.log1p(torch.exp(-2.0 * ax)) - _LOG2
    return torch.where(ax < 1.0, small, large)


# --- per-token values ℓ(z, z*) ------------------------------------------------------------


def lco_mse_per_token(logits: torch.Tensor, target_logits: torch.Tensor) -> torch.Tensor:
    """(1/|V|)·Σ_a (z_a − z*_a)² (the bracket of eq. 8)."""
    return (logits - target_logits).pow(2).mean(-1)


def lco_lch_per_token(logits: torch.Tensor, target_logits: torch.Tensor) -> torch.Tensor:
    """(1/|V|)·Σ_a log cosh(z_a − z*_a) (the bracket of eq. 9)."""
    return log_cosh(logits - target_logits).mean(-1)


def lco_kld_per_token(logits: torch.Tensor, target_logits: torch.Tensor) -> torch.Tensor:
    """KL(π* ‖ π_θ) = Σ_a π*_a (log π*_a − log π_θ,a) (the bracket of eq. 10)."""
    log_pi = torch.log_softmax(logits, dim=-1)
    log_pi_star = torch.log_softmax(target_logits, dim=-1)
    return (log_pi_star.exp() * (log_pi_star - log_pi)).sum(-1)


# --- closed-form logit gradients ∂ℓ/∂z ---------------------------------------------------


def lco_mse_logit_grad(logits: torch.Tensor, target_logits: torch.Tensor) -> torch.Tensor:
    """∂ℓ_MSE/∂z = (2/|V|)·(z − z*) (App. H.1, eq. 62 before the chain rule)."""
    return (logits - target_logits) * (2.0 / logits.shape[-1])


def lco_lch_logit_grad(logits: torch.Tensor, target_logits: torch.Tensor) -> torch.Tensor:
    """∂ℓ_LCH/∂z = (1/|V|)·tanh(z − z*) (eq. 44)."""
    return torch.tanh(logits - target_logits) / logits.shape[-1]


def lco_kld_logit_grad(logits: torch.Tensor, target_logits: torch.Tensor) -> torch.Tensor:
    """∂ℓ_KLD/∂z = π_θ − π* (eq. 47)."""
    return torch.softmax(logits, dim=-1) - torch.softmax(target_logits, dim=-1)


@dataclass(frozen=True)
class LogitLoss:
    """A per-token loss of (z, z*) stated by its value and its closed-form logit gradient."""

    name: str
    value: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    logit_grad: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


LCO_LOSSES: dict[str, LogitLoss] = {
    "lco_mse": LogitLoss("lco_mse", lco_mse_per_token, lco_mse_logit_grad),
    "lco_lch": LogitLoss("lco_lch", lco_lch_per_token, lco_lch_logit_grad),
    "lco_kld": LogitLoss("lco_kld", lco_kld_per_token, lco_kld_logit_grad),
}


# --- the public objectives -----------------------------------------------------------------


def _lco_objective(
    per_token: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    logits: torch.Tensor,
    old_logits: torch.Tensor,
    advantages: torch.Tensor,
    beta: float,
    mask: torch.Tensor | None,
) -> torch.Tensor:
    check_same_shape("old_logits", old_logits, "logits", logits)
    check_same_shape("advantages", advantages, "logits", logits)
    check_mask(mask, logits.shape[:-1])
    check_finite("logits", logits)
    # z* is a fixed target: no gradient flows into z_old or A (they come from the old policy / RM).
    target = optimal_logits(old_logits.detach(), advantages.detach(), beta)
    return masked_mean(per_token(logits.float(), target), mask)


def lco_mse(logits, old_logits, advantages, beta: float, mask=None) -> torch.Tensor:
    """LCO-MSE, eq. (8): E_t[(1/|V|)·Σ_a (z_θ − z*)²] with z* = z_old + A/β (eq. 7).

    Args:
        logits: policy logits z_θ, ``[..., V]`` (any float dtype; computed in fp32).
        old_logits: behaviour-policy logits z_old, ``[..., V]``.
        advantages: dense advantages A, ``[..., V]``.
        beta: KL weight β > 0.
        mask: optional ``[...]`` selecting the tokens E_t averages over.

    Strongly convex in z with Hessian (2/|V|)·I (Lemma 4.6, eq. 43).
    """
    return _lco_objective(lco_mse_per_token, logits, old_logits, advantages, beta, mask)


def lco_lch(logits, old_logits, advantages, beta: float, mask=None) -> torch.Tensor:
    """LCO-LCH, eq. (9): E_t[(1/|V|)·Σ_a log cosh(z_θ − z*)].

    Convex in z with Hessian diag(sech²(z − z*))/|V| (eq. 46); its logit gradient is
    tanh(z − z*)/|V| (eq. 44), bounded by 1/|V| per entry whatever the advantage noise.
    """
    return _lco_objective(lco_lch_per_token, logits, old_logits, advantages, beta, mask)


def lco_kld(logits, old_logits, advantages, beta: float, mask=None) -> torch.Tensor:
    """LCO-KLD, eq. (10): E_t[KL(π* ‖ π_θ)] with π* = softmax(z_old + A/β) (eq. 6).

    Sum over the vocabulary, mean over the masked tokens. Logit gradient π_θ − π* (eq. 47),
    Hessian diag(π_θ) − π_θπ_θᵀ (eq. 49).
    """
    return _lco_objective(lco_kld_per_token, logits, old_logits, advantages, beta, mask)
