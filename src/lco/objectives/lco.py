"""The three LCO objectives (paper §4.1, eqs. 8–10) as pure functions of tensors.

Each objective is a per-token loss ℓ(z, z*) of the policy logits z and the target logits
z* = z_old + A/β, averaged over the masked tokens. Every loss is stated twice: its value and
its closed-form logit gradient ∂ℓ/∂z (eqs. 44, 47 and 2/|V|·(z − z*) for MSE). The naive
functions here differentiate the value with autograd; the fused path
(:mod:`lco.objectives.fused`) uses the closed-form gradient chunk by chunk, and the tests hold
the two against each other and against the paper.

Stability options, off by default: ``beta_negative`` (the KL weight where A < 0, applied to the
uncentred advantage), ``normalization`` (§4.4, done inside so that the β_± order is right) and
``support`` (the entries π* and the regression cover: the vocabulary, top-k of z_old — holding the
sampled ``actions`` when given —, or given token ids); see :mod:`lco.objectives.targets`. With a support of k entries z* is ``[..., k]`` and
the gradients are π_θ − π*_support (KLD), (2/k)·(z − z*) and tanh(z − z*)/k on the support (MSE, LCH).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .._checks import check_finite, check_mask, check_same_shape
from .reduction import masked_mean
from .targets import check_normalization, optimal_logits, support_ids

_LOG_COSH_SPLIT = 20.0
"""Above this |x|, log cosh x = |x| − log 2 + log1p(e^{−2|x|}) differs from |x| − log 2 by
e^{−40} ≈ 4e-18, below the rounding of either fp32 or fp64 at that size."""


def log_cosh(x: torch.Tensor) -> torch.Tensor:
    """log cosh x, accurate near 0 and without overflow for large |x|, in one branch-free form.

    With a = |x| and m = min(a, 20): log cosh x = (a − m) + log1p(2·sinh²(m/2)). Below 20 that is
    log1p(2·sinh²(x/2)) (cosh x = 1 + 2 sinh²(x/2)), which keeps full relative precision near 0 —
    the form |x| + log1p(e^{−2|x|}) − log 2 cancels to noise there (in fp32 it gives 0 at
    x = 1e-4), which would misreport LCO-LCH near convergence. Above 20 the log cosh grows like
    a − log 2 (see :data:`_LOG_COSH_SPLIT`), so the linear part carries a − 20 exactly and
    sinh never overflows. One expression for every x: no second branch is evaluated and thrown away.
    """
    ax = x.abs()
    capped = ax.clamp(max=_LOG_COSH_SPLIT)
    return (ax - capped) + torch.log1p(2.0 * torch.sinh(0.5 * capped).pow(2))


def _log_cosh_row_sum(diff: torch.Tensor) -> torch.Tensor:
    """Σ_a log cosh(diff_a) over the last axis, as :func:`log_cosh` but in two scratch blocks
    updated in place (no autograd; ``diff`` is left unchanged)."""
    ax = diff.abs()
    capped = ax.clamp(max=_LOG_COSH_SPLIT)
    ax.sub_(capped)
    ax.add_(capped.mul_(0.5).sinh_().square_().mul_(2.0).log1p_())
    return ax.sum(-1)


def _row_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Σ_a a·b over the last axis, as a batched matmul: no product block of the inputs' size."""
    return torch.einsum("...i,...i->...", a, b)


# --- per-token values ℓ(z, z*) ------------------------------------------------------------
#
# Each takes an optional ``support``: token ids ``[..., k]``. Without it z* is ``[..., V]`` and the
# sums run over the vocabulary (the paper). With it z* is ``[..., k]`` — the target on the support
# entries, aligned with the ids — and MSE/LCH average over those k entries only, while KLD compares
# π* on the support (0 elsewhere: those terms are 0·log 0 = 0 and never formed) with π_θ over the
# whole vocabulary.


def lco_mse_per_token(logits: torch.Tensor, target_logits: torch.Tensor, support=None) -> torch.Tensor:
    """(1/|V|)·Σ_a (z_a − z*_a)² (the bracket of eq. 8); (1/k)·Σ_{a∈S} with a support S."""
    if support is None:
        return (logits - target_logits).pow(2).mean(-1)
    return (logits.gather(-1, support) - target_logits).pow(2).mean(-1)


def lco_lch_per_token(logits: torch.Tensor, target_logits: torch.Tensor, support=None) -> torch.Tensor:
    """(1/|V|)·Σ_a log cosh(z_a − z*_a) (the bracket of eq. 9); (1/k)·Σ_{a∈S} with a support S."""
    if support is None:
        return log_cosh(logits - target_logits).mean(-1)
    return log_cosh(logits.gather(-1, support) - target_logits).mean(-1)


def lco_kld_per_token(logits: torch.Tensor, target_logits: torch.Tensor, support=None) -> torch.Tensor:
    """KL(π* ‖ π_θ) = Σ_a π*_a (log π*_a − log π_θ,a) (the bracket of eq. 10).

    With a support S, π* = softmax of z* over S and the sum runs over S; log π_θ is still
    normalised over the whole vocabulary.
    """
    log_pi = torch.log_softmax(logits, dim=-1)
    log_pi_star = torch.log_softmax(target_logits, dim=-1)
    if support is not None:
        log_pi = log_pi.gather(-1, support)
    kl = (log_pi_star.exp() * (log_pi_star - log_pi)).sum(-1)
    # KL ≥ 0 (Gibbs), but fp32 rounding of the sum can leave it a few ulps below 0 near π_θ = π*:
    # a detached correction lifts the value to 0 and leaves the gradient π_θ − π* untouched.
    return kl + (kl.detach().clamp_min(0.0) - kl.detach())


# --- closed-form logit gradients ∂ℓ/∂z ---------------------------------------------------
#
# With a support the gradient is ``[..., V]`` like z: zero off the support for MSE/LCH, π_θ there for KLD.


def lco_mse_logit_grad(logits: torch.Tensor, target_logits: torch.Tensor, support=None) -> torch.Tensor:
    """∂ℓ_MSE/∂z = (2/|V|)·(z − z*) (App. H.1, eq. 62 before the chain rule); (2/k)·(z − z*) on S."""
    if support is None:
        return (logits - target_logits) * (2.0 / logits.shape[-1])
    diff = (logits.gather(-1, support) - target_logits) * (2.0 / support.shape[-1])
    return torch.zeros_like(logits).scatter_(-1, support, diff)


def lco_lch_logit_grad(logits: torch.Tensor, target_logits: torch.Tensor, support=None) -> torch.Tensor:
    """∂ℓ_LCH/∂z = (1/|V|)·tanh(z − z*) (eq. 44); (1/k)·tanh(z − z*) on S."""
    if support is None:
        return torch.tanh(logits - target_logits) / logits.shape[-1]
    tanh = torch.tanh(logits.gather(-1, support) - target_logits) / support.shape[-1]
    return torch.zeros_like(logits).scatter_(-1, support, tanh)


def lco_kld_logit_grad(logits: torch.Tensor, target_logits: torch.Tensor, support=None) -> torch.Tensor:
    """∂ℓ_KLD/∂z = π_θ − π* (eq. 47), π* zero off the support S."""
    if support is None:
        return torch.softmax(logits, dim=-1) - torch.softmax(target_logits, dim=-1)
    grad = torch.softmax(logits, dim=-1)
    return grad.scatter_add_(-1, support, -torch.softmax(target_logits, dim=-1))


# --- value and gradient in one pass ------------------------------------------------------
#
# The fused path needs ℓ_t and ∂ℓ_t/∂z of the same chunk. Computed together they share their
# softmaxes (KLD) or the difference z − z* (MSE, LCH), and the ``[c, V]`` z* block — which the
# caller builds for this call and hands over — is reused as scratch for the gradient. The values
# are those of the per-token functions above and the gradients those of the closed forms; the
# tests hold all three against each other and against autograd.


def lco_mse_value_and_grad(logits, target_logits, support=None):
    """(:func:`lco_mse_per_token`, :func:`lco_mse_logit_grad`) in one pass; overwrites ``target_logits``."""
    if support is not None:
        diff = logits.gather(-1, support) - target_logits
        k = support.shape[-1]
        return _row_dot(diff, diff) / k, torch.zeros_like(logits).scatter_(-1, support, diff.mul_(2.0 / k))
    diff = torch.sub(logits, target_logits, out=target_logits)
    v = logits.shape[-1]
    return _row_dot(diff, diff) / v, diff.mul_(2.0 / v)


def lco_lch_value_and_grad(logits, target_logits, support=None):
    """(:func:`lco_lch_per_token`, :func:`lco_lch_logit_grad`) in one pass; overwrites ``target_logits``."""
    if support is not None:
        diff = logits.gather(-1, support) - target_logits
        k = support.shape[-1]
        value = _log_cosh_row_sum(diff) / k
        return value, torch.zeros_like(logits).scatter_(-1, support, diff.tanh_().div_(k))
    diff = torch.sub(logits, target_logits, out=target_logits)
    v = logits.shape[-1]
    return _log_cosh_row_sum(diff) / v, diff.tanh_().div_(v)


def lco_kld_value_and_grad(logits, target_logits, support=None):
    """(:func:`lco_kld_per_token`, :func:`lco_kld_logit_grad`) sharing log π_θ and log π*.

    ℓ = Σ_a π*_a (log π*_a − log π_θ,a) and ∂ℓ/∂z = π_θ − π* (eq. 47) from one log-softmax of
    each: π* = exp(log π*), π_θ = exp(log π_θ), both exponentiated in place. Overwrites ``target_logits``.
    """
    log_pi = torch.log_softmax(logits, dim=-1)
    log_pi_star = torch.log_softmax(target_logits, dim=-1)
    if support is not None:
        gap = log_pi_star - log_pi.gather(-1, support)
        pi_star = log_pi_star.exp_()
        value = _row_dot(pi_star, gap).clamp_min_(0.0)  # as lco_kld_per_token: rounding below 0
        return value, log_pi.exp_().scatter_add_(-1, support, pi_star.neg_())
    gap = torch.sub(log_pi_star, log_pi, out=target_logits)
    pi_star = log_pi_star.exp_()
    return _row_dot(pi_star, gap).clamp_min_(0.0), log_pi.exp_().sub_(pi_star)


# --- an on-policy step with the sparse advantage of eq. (11), in closed form ---------------
#
# On-policy (z_old = z) with the sampled-action advantage, the target of eq. (7) is
# z* = z + u·1 + (w − u)·e_{a_t}, where u and w are the normalised, β-divided advantage off and at
# the sampled action a_t (one value each per token). Then z − z* = −u off a_t and −w at a_t does
# not depend on z (MSE, LCH), and π* is π_θ tilted at one entry, π* ∝ π_θ·e^{δ·[a = a_t]} with
# δ = w − u (KLD: the row shift u cancels in the softmax). The value is a closed form per token and
# the gradient one write pass (MSE, LCH) or the cross-entropy's passes plus a row sum and a row
# scale (KLD): no z* block, no difference block. ``off`` = u and ``on`` = w are ``[c]``; ``actions``
# the sampled ids ``[c]``. Equal to ``value_and_grad(z, z*)`` of the same z* up to fp32 rounding.


def _row_and_spike(logits: torch.Tensor, row: torch.Tensor, spike: torch.Tensor, idx: torch.Tensor):
    """A ``[c, V]`` block equal to ``row`` in every entry of its row, and ``spike`` at ``idx``."""
    block = row.unsqueeze(-1).expand_as(logits).contiguous()
    return block.scatter_(-1, idx, spike.unsqueeze(-1))


def lco_mse_sparse_value_and_grad(logits, off, on, actions):
    """LCO-MSE at z* = z + u + (w − u)·e_{a_t}: ℓ = ((|V| − 1)·u² + w²)/|V|, ∂ℓ/∂z = −(2/|V|)·(u, w at a_t)."""
    v = logits.shape[-1]
    value = ((v - 1) * off.square() + on.square()) / v
    return value, _row_and_spike(logits, off * (-2.0 / v), on * (-2.0 / v), actions.long().unsqueeze(-1))


def lco_lch_sparse_value_and_grad(logits, off, on, actions):
    """LCO-LCH at z* = z + u + (w − u)·e_{a_t}: ℓ = ((|V| − 1)·log cosh u + log cosh w)/|V|,
    ∂ℓ/∂z = −tanh(u)/|V| (tanh(w)/|V| at a_t), eq. 44."""
    v = logits.shape[-1]
    value = ((v - 1) * log_cosh(off) + log_cosh(on)) / v
    return value, _row_and_spike(logits, off.tanh() / -v, on.tanh() / -v, actions.long().unsqueeze(-1))


def lco_kld_sparse_value_and_grad(logits, off, on, actions):
    """LCO-KLD at z* = z + u + (w − u)·e_{a_t}, with p = π_θ(a_t), δ = w − u and Z = (1 − p) + p·e^δ:

    π*(a_t) = q = p·e^δ/Z and π*_a = π_θ,a/Z elsewhere, so ℓ = KL(π* ‖ π_θ) = q·δ − log Z and
    ∂ℓ/∂z = π_θ − π* (eq. 47) = π_θ·(1 − 1/Z) off a_t, p − q at a_t. 1 − p is summed over the other
    entries, not subtracted from 1, so that a confident token (p → 1 in fp32) keeps its tilt.
    """
    idx = actions.long().unsqueeze(-1)
    delta = (on - off).unsqueeze(-1)
    pi = torch.log_softmax(logits, dim=-1)
    log_p = pi.gather(-1, idx)
    pi = pi.exp_()  # π_θ, in place of log π_θ
    p = pi.gather(-1, idx)
    rest = pi.scatter_(-1, idx, 0.0).sum(-1, keepdim=True)  # Σ_{a ≠ a_t} π_θ,a = 1 − p
    log_z = torch.logaddexp(rest.log(), log_p + delta)
    q = (log_p + delta - log_z).exp()
    value = (q * delta - log_z).squeeze(-1).clamp_min_(0.0)  # as lco_kld_per_token: rounding below 0
    grad = pi.mul_(torch.expm1(-log_z).neg_())  # 1 − 1/Z
    return value, grad.scatter_(-1, idx, p - q)


@dataclass(frozen=True)
class LogitLoss:
    """A per-token loss of (z, z*) stated by its value and its closed-form logit gradient.

    All three are called as ``f(z, z*)`` (whole vocabulary) or ``f(z, z*_S, support_ids)`` (z* on
    the support only, ``[..., k]``); see the per-token functions above. ``value_and_grad`` returns
    both at the cost of about one of them and takes z* over: it writes into that tensor (the
    fused path builds a fresh z* per chunk); pass a copy to keep yours. ``sparse_value_and_grad``
    ``(z, u, w, actions)`` is the same pair for an on-policy step with a sparse advantage, without z*
    (see the section above).
    """

    name: str
    value: Callable[..., torch.Tensor]
    logit_grad: Callable[..., torch.Tensor]
    value_and_grad: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    sparse_value_and_grad: Callable[..., tuple[torch.Tensor, torch.Tensor]]


LCO_LOSSES: dict[str, LogitLoss] = {
    "lco_mse": LogitLoss(
        "lco_mse",
        lco_mse_per_token,
        lco_mse_logit_grad,
        lco_mse_value_and_grad,
        lco_mse_sparse_value_and_grad,
    ),
    "lco_lch": LogitLoss(
        "lco_lch",
        lco_lch_per_token,
        lco_lch_logit_grad,
        lco_lch_value_and_grad,
        lco_lch_sparse_value_and_grad,
    ),
    "lco_kld": LogitLoss(
        "lco_kld",
        lco_kld_per_token,
        lco_kld_logit_grad,
        lco_kld_value_and_grad,
        lco_kld_sparse_value_and_grad,
    ),
}


# --- the public objectives -----------------------------------------------------------------


def check_support_size(loss: str, k: int) -> None:
    """LCO-KLD on a one-entry support is meaningless: π* is the one-hot of that entry whatever A
    (cross-entropy on it, for positive and negative advantages alike)."""
    if loss == "lco_kld" and k == 1:
        raise ValueError(
            "support has one entry per token: for lco_kld π* would be its one-hot whatever the "
            "advantage (SFT on it); use lco_mse / lco_lch for the sampled logit, or k >= 2"
        )


def _lco_objective(
    loss: LogitLoss,
    logits: torch.Tensor,
    old_logits: torch.Tensor,
    advantages: torch.Tensor,
    beta: float,
    mask: torch.Tensor | None,
    beta_negative: float | None,
    support,
    normalization: str = "none",
    actions: torch.Tensor | None = None,
) -> torch.Tensor:
    check_same_shape("old_logits", old_logits, "logits", logits)
    check_same_shape("advantages", advantages, "logits", logits)
    check_mask(mask, logits.shape[:-1])
    check_finite("logits", logits)
    # z* is a fixed target: no gradient flows into z_old or A (they come from the old policy / RM).
    ids = support_ids(old_logits, support, actions)
    if ids is None:
        target = optimal_logits(
            old_logits.detach(),
            advantages.detach(),
            beta,
            beta_negative=beta_negative,
            normalization=normalization,
        )
        return masked_mean(loss.value(logits.float(), target), mask)
    check_support_size(loss.name, ids.shape[-1])
    check_normalization(normalization, ids.shape[-1])
    ids = ids.long()
    # z* on the support only (eq. 7 entry by entry, the normalisation's statistics over the support):
    # the entries outside it never enter the loss.
    target = optimal_logits(
        old_logits.detach().gather(-1, ids),
        advantages.detach().gather(-1, ids),
        beta,
        beta_negative=beta_negative,
        normalization=normalization,
    )
    return masked_mean(loss.value(logits.float(), target, ids), mask)


def lco_mse(
    logits,
    old_logits,
    advantages,
    beta: float,
    mask=None,
    *,
    beta_negative=None,
    support=None,
    normalization: str = "none",
    actions=None,
):
    """LCO-MSE, eq. (8): E_t[(1/|V|)·Σ_a (z_θ − z*)²] with z* = z_old + A/β (eq. 7).

    Args:
        logits: policy logits z_θ, ``[..., V]`` (any float dtype; computed in fp32).
        old_logits: behaviour-policy logits z_old, ``[..., V]``.
        advantages: dense advantages A, ``[..., V]``.
        beta: KL weight β > 0.
        mask: optional ``[...]`` selecting the tokens E_t averages over.
        beta_negative: KL weight for the entries with A < 0 (``None``, the default, is β), by the
            sign of the uncentred A; see :func:`lco.optimal_logits`.
        support: ``None`` (whole vocabulary, the default), an int k (the top-k entries of z_old
            per token) or token ids ``[..., k]`` (e.g. the sampled action ``actions[..., None]``);
            see :func:`lco.optimal_log_policy`. ``advantages`` stay dense ``[..., V]``; only their
            entries on the support are read.
        normalization: the §4.4 normalisation of A (:func:`lco.normalize_advantages`), over the
            vocabulary or over the support; ``"none"`` (the default) takes A as given. Pass the raw A
            and the mode here rather than a normalised A when ``beta_negative`` is set: the sign of
            the raw A picks the β, then the shift is centred (:func:`lco.objectives.targets.target_shift`).
        actions: the sampled tokens a_t, token shape (integer): an int-k support then always holds
            a_t (in the k-th place where z_old does not rank it in its top k), as a sparse advantage
            (eq. 11) needs — without it a_t gets no target mass whatever its advantage's sign.

    With every option off the loss is the paper's, bit for bit.

    Strongly convex in z with Hessian (2/|V|)·I (Lemma 4.6, eq. 43). With a support of k entries
    the mean runs over those k logits only, gradient (2/k)·(z − z*) there and 0 elsewhere; the
    one-entry support of the sampled action is the authors' sampled-logit regression.
    """
    return _lco_objective(
        LCO_LOSSES["lco_mse"],
        logits,
        old_logits,
        advantages,
        beta,
        mask,
        beta_negative,
        support,
        normalization,
        actions,
    )


def lco_lch(
    logits,
    old_logits,
    advantages,
    beta: float,
    mask=None,
    *,
    beta_negative=None,
    support=None,
    normalization: str = "none",
    actions=None,
):
    """LCO-LCH, eq. (9): E_t[(1/|V|)·Σ_a log cosh(z_θ − z*)]. Arguments as :func:`lco_mse`.

    Convex in z with Hessian diag(sech²(z − z*))/|V| (eq. 46); its logit gradient is
    tanh(z − z*)/|V| (eq. 44), bounded by 1/|V| per entry whatever the advantage noise
    (by 1/k on a support of k entries, the only entries it touches).
    """
    return _lco_objective(
        LCO_LOSSES["lco_lch"],
        logits,
        old_logits,
        advantages,
        beta,
        mask,
        beta_negative,
        support,
        normalization,
        actions,
    )


def lco_kld(
    logits,
    old_logits,
    advantages,
    beta: float,
    mask=None,
    *,
    beta_negative=None,
    support=None,
    normalization: str = "none",
    actions=None,
):
    """LCO-KLD, eq. (10): E_t[KL(π* ‖ π_θ)] with π* = softmax(z_old + A/β) (eq. 6).

    Arguments as :func:`lco_mse`. Sum over the vocabulary, mean over the masked tokens. Logit gradient π_θ − π* (eq. 47),
    Hessian diag(π_θ) − π_θπ_θᵀ (eq. 49). With a support, π* is restricted to it (0 elsewhere)
    while π_θ stays normalised over the whole vocabulary, so the gradient is π_θ − π*_support:
    mass outside the support is pushed down. A support of one entry is rejected (π* would not
    depend on A).
    """
    return _lco_objective(
        LCO_LOSSES["lco_kld"],
        logits,
        old_logits,
        advantages,
        beta,
        mask,
        beta_negative,
        support,
        normalization,
        actions,
    )
