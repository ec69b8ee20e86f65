"""The paper's theory (§4.3–4.4, Appendices D–H) as small numerical functions.

Everything here is a pure function of tensors, written to be run in fp64 by the tests in
``tests/test_theory.py``, which hold each closed form against autograd or an independent
computation:

- :func:`logit_hessian`, :func:`is_psd`, :func:`min_eigenvalue` — logits convexity (Def. 4.3);
- the closed-form logit Hessians of SFT, PPO and the three LCO losses (eqs. 36, 39/40, 43, 46,
  49), the logit gradients of SFT and PPO (eqs. 4, 5), and the explicit direction of negative
  curvature of PPO (eqs. 41–42) — Lemmas 4.5 and 4.6;
- the gradient-norm upper bounds of Prop. 4.7 (eqs. 16–18);
- the convergence bounds of Props. 4.8/4.9 (eqs. 19, 20) with :func:`spectral_radius`, and
  :func:`lch_convergence_tolerance`, the factor by which the exact LCO-LCH trajectory may exceed
  the first-order bound (20);
- :func:`simulate_linear_logit_descent` — gradient descent on the linear-logit model
  z_θ = z_old + Jθ, the model under which Assumption 4.2 (eq. 14) holds exactly;
- :func:`rl_objective` (eq. 2) and :func:`best_constant_shift` (§4.4).

Two statements of the paper are used here in corrected form (see the function docstrings):
eq. (40) drops the factor π_θ(a_t) that eq. (39) carries, and PPO's active-region Hessian is
positive semi-definite when A > 0 and π_θ(a_t) ≥ 1/2, so Lemma 4.5's "not logits convex at any
time step" holds for A < 0 (|V| ≥ 3) and for A > 0 only while π_θ(a_t) < 1/2.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.autograd.functional import hessian

from ._checks import check_beta, check_choice
from .objectives.lco import LCO_LOSSES

# --- logits convexity (Definition 4.3) -----------------------------------------------------


def logit_hessian(loss_fn: Callable[[torch.Tensor], torch.Tensor], logits: torch.Tensor) -> torch.Tensor:
    """∇²_z ℓ(z), the ``[V, V]`` Hessian of a per-token loss w.r.t. the logit vector, by autograd.

    Args:
        loss_fn: maps a ``[V]`` logit vector z to a scalar loss ℓ(z) (differentiable twice).
        logits: the point z, ``[V]``. Its dtype is kept: pass fp64 for a reference Hessian.

    Definition 4.3 calls ℓ logits convex where this matrix is positive semi-definite.
    """
    if logits.dim() != 1:
        raise ValueError(f"logits must be one logit vector [V], got shape {tuple(logits.shape)}")
    return hessian(loss_fn, logits.detach())


def min_eigenvalue(matrix: torch.Tensor) -> float:
    """The smallest eigenvalue of the symmetric part (M + Mᵀ)/2 (the part a quadratic form sees)."""
    if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"matrix must be square, got shape {tuple(matrix.shape)}")
    sym = 0.5 * (matrix + matrix.T)
    return float(torch.linalg.eigvalsh(sym)[0])


def is_psd(matrix: torch.Tensor, tol: float | None = None) -> bool:
    """Whether the symmetric part of ``matrix`` is positive semi-definite: λ_min ≥ −tol.

    The default ``tol`` is n·ε_dtype·max(1, ‖M‖₂), the round-off an eigen-solver makes on an
    n×n matrix, so that a singular PSD matrix such as diag(π) − ππᵀ (eq. 36) is reported PSD.
    """
    if tol is None:
        sym = 0.5 * (matrix + matrix.T)
        scale = max(1.0, float(torch.linalg.matrix_norm(sym, ord=2)))
        tol = matrix.shape[0] * torch.finfo(matrix.dtype).eps * scale
    return min_eigenvalue(matrix) >= -tol


# --- closed-form logit gradients and Hessians (App. C, F) ------------------------------------


def _softmax_covariance(logits: torch.Tensor) -> torch.Tensor:
    pi = torch.softmax(logits, dim=-1)
    return torch.diag(pi) - torch.outer(pi, pi)


def sft_logit_grad(logits: torch.Tensor, action: int) -> torch.Tensor:
    """∂L_SFT/∂z = π_θ − e_{a_t} (eq. 4 / 21)."""
    pi = torch.softmax(logits, dim=-1)
    return pi - torch.nn.functional.one_hot(torch.tensor(action), pi.shape[-1]).to(pi)


def sft_logit_hessian(logits: torch.Tensor) -> torch.Tensor:
    """H_SFT = diag(π_θ) − π_θπ_θᵀ (eq. 36); PSD by eq. (37), whatever the target token."""
    return _softmax_covariance(logits)


def ppo_logit_grad(
    logits: torch.Tensor, action: int, advantage: float, old_logits: torch.Tensor
) -> torch.Tensor:
    """∂L_PPO/∂z = A/π_old(a_t)·π_θ(a_t)·(π_θ − e_{a_t}) in the active region (eq. 5 / 22)."""
    pi = torch.softmax(logits, dim=-1)
    pi_old_a = torch.softmax(old_logits, dim=-1)[action]
    return advantage / pi_old_a * pi[action] * sft_logit_grad(logits, action)


def ppo_logit_hessian(
    logits: torch.Tensor, action: int, advantage: float, old_logits: torch.Tensor
) -> torch.Tensor:
    """H_PPO in the active (unclipped) region, eq. (39):

        H = A·π_θ(a_t)/π_old(a_t) · [−e_k e_kᵀ + π_θ e_kᵀ + e_k π_θᵀ − 2π_θπ_θᵀ + diag(π_θ)],

    k = a_t. Eq. (40) as printed omits the factor π_θ(a_t) that eq. (39) carries; the positive
    factor does not change the signs of eqs. (41)–(42), but without it the matrix is not the
    Hessian (the tests compare both with autograd).

    Its quadratic form is A·π_θ(a_t)/π_old(a_t)·[D(v) − (v_k − E(v))²] (eq. 41), and
    max_v (v_k − E(v))²/D(v) = (1 − π_θ(a_t))/π_θ(a_t) (attained at v = e_k). Hence for A > 0 the
    Hessian is indefinite iff π_θ(a_t) < 1/2 and PSD otherwise; for A < 0 it is indefinite
    whenever |V| ≥ 3 (any v with v_k = E(v) and D(v) > 0). See
    :func:`ppo_negative_curvature_direction`.
    """
    pi = torch.softmax(logits, dim=-1)
    e_k = torch.zeros_like(pi)
    e_k[action] = 1.0
    bracket = (
        -torch.outer(e_k, e_k)
        + torch.outer(pi, e_k)
        + torch.outer(e_k, pi)
        - 2.0 * torch.outer(pi, pi)
        + torch.diag(pi)
    )
    pi_old_a = torch.softmax(old_logits, dim=-1)[action]
    return advantage * pi[action] / pi_old_a * bracket


def ppo_negative_curvature_direction(logits: torch.Tensor, action: int, advantage: float) -> torch.Tensor:
    """A vector v with vᵀH_PPO v < 0 (eq. 42), in the active region.

    With E(v) = Σπ_i v_i and D(v) = Σπ_i v_i² − E(v)², vᵀHv has the sign of A·[D(v) − (v_k − E(v))²]
    (eq. 41), so v must put v_k outside E(v) ± √D(v) when A > 0 and inside when A < 0:

    - A > 0: v = e_k, for which (v_k − E)² = (1 − π_k)² > D = π_k(1 − π_k) iff π_k < 1/2. e_k
      maximises (v_k − E)²/D, so no direction exists when π_k ≥ 1/2 (H_PPO is then PSD).
    - A < 0, |V| ≥ 3: v = π_j e_i − π_i e_j for the two most probable tokens i, j ≠ k, which has
      v_k = 0 = E(v) and D(v) > 0. With |V| = 2, v = e_k works iff π_k > 1/2.

    Raises ``ValueError`` where no such direction exists (including A = 0, where H = 0).
    """
    if logits.dim() != 1:
        raise ValueError(f"logits must be one logit vector [V], got shape {tuple(logits.shape)}")
    pi = torch.softmax(logits, dim=-1)
    vocab = pi.shape[0]
    pi_k = float(pi[action])
    v = torch.zeros_like(pi)
    if advantage > 0:
        if pi_k >= 0.5:
            raise ValueError(f"for A > 0, H_PPO is PSD when π_θ(a_t) = {pi_k:.4g} ≥ 1/2: no direction exists")
        v[action] = 1.0
        return v
    if advantage < 0:
        if vocab >= 3:
            others = pi.clone()
            others[action] = -1.0
            i, j = torch.topk(others, 2).indices.tolist()
            v[i], v[j] = pi[j], -pi[i]
            return v
        if pi_k > 0.5:
            v[action] = 1.0
            return v
        raise ValueError(f"for A < 0 and |V| = 2, H_PPO is PSD when π_θ(a_t) = {pi_k:.4g} ≤ 1/2")
    raise ValueError("A = 0: the PPO loss is constant in z and its Hessian is zero")


def lco_mse_logit_hessian(logits: torch.Tensor, target_logits: torch.Tensor) -> torch.Tensor:
    """H_MSE = (2/|V|)·I (eq. 43): strongly convex with modulus 2/|V|, wherever z and z* are."""
    vocab = logits.shape[-1]
    return torch.eye(vocab, dtype=logits.dtype, device=logits.device) * (2.0 / vocab)


def lco_lch_logit_hessian(logits: torch.Tensor, target_logits: torch.Tensor) -> torch.Tensor:
    """H_LCH = diag(sech²(z − z*))/|V| (eq. 46).

    Eigenvalues lie in (0, 1/|V|] and are ≥ sech²(R)/|V| on ‖z − z*‖_∞ ≤ R (Lemma 4.6).
    """
    sech = 1.0 / torch.cosh(logits - target_logits)
    return torch.diag(sech**2) / logits.shape[-1]


def lco_kld_logit_hessian(logits: torch.Tensor, target_logits: torch.Tensor) -> torch.Tensor:
    """H_KLD = diag(π_θ) − π_θπ_θᵀ (eq. 49): the SFT Hessian (eq. 36), independent of π*."""
    return _softmax_covariance(logits)


LCO_HESSIANS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "lco_mse": lco_mse_logit_hessian,
    "lco_lch": lco_lch_logit_hessian,
    "lco_kld": lco_kld_logit_hessian,
}


# --- Proposition 4.7: gradient-norm upper bounds --------------------------------------------


def mse_grad_norm_bound(loss: float, vocab_size: int, sigma_max: float) -> float:
    """‖∇_θ L_MSE‖ ≤ (2/|V|)·σ_max·√(|V|·L_MSE) (eq. 16 / 52); equality when z − z* is a top left
    singular vector of J."""
    return 2.0 / vocab_size * sigma_max * math.sqrt(vocab_size * max(loss, 0.0))


def lch_grad_norm_bound(loss: float, vocab_size: int, sigma_max: float) -> float:
    """‖∇_θ L_LCH‖ ≤ (1/|V|)·σ_max·√(|V|·(1 − e^{−2L_LCH})) (eq. 17 / 57): tanh² = 1 − e^{−2 log cosh}
    and Jensen on the concave 1 − e^{−2x}. Never exceeds σ_max/√|V|, however large the error."""
    return sigma_max / vocab_size * math.sqrt(vocab_size * -math.expm1(-2.0 * max(loss, 0.0)))


def kld_grad_norm_bound(loss: float, vocab_size: int, sigma_max: float) -> float:
    """‖∇_θ L_KLD‖ ≤ σ_max·√(2·L_KLD) (eq. 18 / 61): ‖π − π*‖₂ ≤ ‖π − π*‖₁ and Pinsker.

    ``vocab_size`` is unused (the bound has no |V|); it is kept so the three bounds share a call.
    """
    return sigma_max * math.sqrt(2.0 * max(loss, 0.0))


GRAD_NORM_BOUNDS: dict[str, Callable[[float, int, float], float]] = {
    "lco_mse": mse_grad_norm_bound,
    "lco_lch": lch_grad_norm_bound,
    "lco_kld": kld_grad_norm_bound,
}


# --- Propositions 4.8/4.9: linear convergence -----------------------------------------------


def _check_jacobian(jacobian: torch.Tensor) -> None:
    if jacobian.dim() != 2:
        raise ValueError(f"J must be a [V, P] Jacobian, got shape {tuple(jacobian.shape)}")


def spectral_radius(jacobian: torch.Tensor, eta: float, scale: float) -> float:
    """ρ = max_i |1 − η·scale·λ_i(JJᵀ)|, the spectral radius of I − η·scale·JJᵀ.

    ``scale`` is the curvature of the loss in z: 2/|V| for LCO-MSE (Prop. 4.8), 1/|V| for
    LCO-LCH near its optimum (Prop. 4.9). ρ < 1 needs JJᵀ nonsingular (J of full row rank,
    so every z* is reachable) and η·scale·λ_max < 2.
    """
    _check_jacobian(jacobian)
    lam = torch.linalg.eigvalsh(jacobian @ jacobian.T)
    return float((1.0 - eta * scale * lam).abs().max())


def mse_convergence_bound(k: int, rho: float, advantage_norm: float, beta: float, vocab_size: int) -> float:
    """L_MSE(θ_k) ≤ (1/|V|)·ρ_MSE^{2k}·‖A‖²/β² (eq. 19 / 67).

    Exact for the linear-logit model: there z_k − z* = (I − η(2/|V|)JJᵀ)^k (z_old − z*)
    (eq. 65) with no Taylor remainder. For a shifted target (§4.4) pass ‖A + βC‖.
    """
    return rho ** (2 * k) * advantage_norm**2 / (vocab_size * beta**2)


def lch_convergence_bound(k: int, rho: float, advantage_norm: float, beta: float, vocab_size: int) -> float:
    """L_LCH(θ_k) ≤ (1/(2|V|))·ρ_LCH^{2k}·‖A‖²/β² (eq. 20), ρ_LCH for scale 1/|V|.

    A first-order statement (tanh x ≈ x, log cosh x ≈ x²/2): since tanh(x)/x < 1 the exact error
    contracts a little more slowly than ρ_LCH, and the exact loss can exceed (20) by a factor that
    tends to 1 with ‖A‖/β — see :func:`lch_convergence_tolerance`. (Eq. 70 as printed also drops
    the exponent 2k of the operator norm.)
    """
    return rho ** (2 * k) * advantage_norm**2 / (2.0 * vocab_size * beta**2)


def lch_convergence_tolerance(jacobian: torch.Tensor, eta: float, initial_error_norm: float) -> float:
    """A factor G² ≥ 1 with L_LCH(θ_k) ≤ G²·(bound 20) for every k, for the exact LCH descent.

    Derivation. With e_k = z_k − z*, P = (η/|V|)·JJᵀ and ρ = ρ_LCH = ‖I − P‖₂, one GD step on the
    linear-logit model is e_{k+1} = e_k − P·tanh(e_k) = (I − P)e_k + P(e_k − tanh e_k). Since
    |x − tanh x| ≤ |x|³/3 (the derivative of tanh x − x + x³/3 is x² − tanh²x ≥ 0),

        ‖e_{k+1}‖ ≤ (ρ + ‖P‖·‖e_k‖_∞²/3)·‖e_k‖ ≤ ρ·exp(‖P‖·‖e_k‖²/(3ρ))·‖e_k‖.

    Suppose ‖e_j‖ ≤ G·ρ^j·‖e_0‖ for j ≤ k. Then Σ_{j≤k} ‖e_j‖² ≤ G²‖e_0‖²/(1 − ρ²) and
    ‖e_{k+1}‖ ≤ ρ^{k+1}‖e_0‖·exp(κG²) with κ = ‖P‖·‖e_0‖²/(3ρ(1 − ρ²)); so the induction closes
    for any G with G = exp(κG²). For y = G² that is y = exp(2κy), which has a root iff 2κ ≤ 1/e;
    the smallest root is y = −W(−2κ)/(2κ) = 1 + 2κ + O(κ²) — a second-order (in ‖A‖/β)
    correction. Finally log cosh x ≤ x²/2 gives L_LCH(θ_k) ≤ ‖e_k‖²/(2|V|) ≤ y·(bound 20),
    with ‖e_0‖ = ‖A‖/β (or ‖A/β + C‖ for a shifted target).

    Returns ``inf`` where the argument gives nothing: 2κ > 1/e (not in the "neighbourhood of
    the optimum" of Prop. 4.9), ρ ≥ 1, or ρ = 0 — where (20) claims L_LCH(θ_k) = 0 for k ≥ 1,
    which the nonlinear descent never reaches.
    """
    vocab = jacobian.shape[0]
    rho = spectral_radius(jacobian, eta, 1.0 / vocab)
    if not 0.0 < rho < 1.0:
        return math.inf
    p_norm = eta / vocab * float(torch.linalg.eigvalsh(jacobian @ jacobian.T)[-1])
    two_kappa = 2.0 * p_norm * initial_error_norm**2 / (3.0 * rho * (1.0 - rho**2))
    if two_kappa == 0.0:
        return 1.0
    if two_kappa > 1.0 / math.e:
        return math.inf
    # Smallest root of y = exp(2κy) in [1, 1/(2κ)]: f(y) = y − exp(2κy) is < 0 at 1 and ≥ 0 at 1/(2κ).
    lo, hi = 1.0, 1.0 / two_kappa
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid - math.exp(two_kappa * mid) < 0.0:
            lo = mid
        else:
            hi = mid
    return hi


# --- the linear-logit model z_θ = z_old + Jθ ------------------------------------------------


@dataclass(frozen=True)
class DescentTrace:
    """Gradient descent on z_θ = z_old + Jθ from θ_0 = 0; index k holds the value at θ_k.

    Attributes:
        losses: ``[steps + 1]``, L(θ_k).
        grad_norms: ``[steps + 1]``, ‖∇_θ L(θ_k)‖ = ‖Jᵀ ∂ℓ/∂z‖.
        residual_norms: ``[steps + 1]``, ‖z_θ_k − z'‖ with z' the (possibly shifted) target.
        theta: θ after the last step, ``[P]``.
    """

    losses: torch.Tensor
    grad_norms: torch.Tensor
    residual_norms: torch.Tensor
    theta: torch.Tensor


def simulate_linear_logit_descent(
    jacobian: torch.Tensor,
    old_logits: torch.Tensor,
    advantages: torch.Tensor,
    beta: float,
    eta: float,
    steps: int,
    loss: str = "lco_mse",
    shift: float = 0.0,
) -> DescentTrace:
    """θ_{k+1} = θ_k − η·∇_θ L(z_old + Jθ_k) on an LCO loss, θ_0 = 0 (App. H, eqs. 62–69).

    The linear-logit model makes Assumption 4.2 (eq. 14) exact, so Props. 4.7–4.9 can be held
    against an exact trajectory. The target is z' = z_old + A/β + C with C = ``shift`` (§4.4;
    C = 0 is z* of eq. 7). For LCO-KLD the shift cancels in π* = softmax(z').

    Args:
        jacobian: J = ∇_θ z_θᵀ, ``[V, P]``; full row rank (P ≥ V) makes every target reachable.
        old_logits: z_old, ``[V]``. advantages: A, ``[V]``. beta: β > 0. eta: step size η > 0.
        steps: number of GD steps. loss: ``"lco_mse"``, ``"lco_lch"`` or ``"lco_kld"``.

    Gradients use the closed-form logit gradients of :data:`lco.objectives.lco.LCO_LOSSES`
    through the chain rule ∇_θ L = Jᵀ ∂ℓ/∂z. The LCH value uses :func:`lco.objectives.lco.log_cosh`,
    which is accurate for tiny residuals.
    """
    _check_jacobian(jacobian)
    check_choice("loss", loss, tuple(LCO_LOSSES))
    beta = check_beta(beta)
    vocab = jacobian.shape[0]
    if old_logits.shape != (vocab,) or advantages.shape != (vocab,):
        raise ValueError(
            f"old_logits {tuple(old_logits.shape)} and advantages {tuple(advantages.shape)} must be [V] "
            f"with V = {vocab} rows of J"
        )
    if not eta > 0:
        raise ValueError(f"eta must be positive, got {eta!r}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    value = LCO_LOSSES[loss].value
    logit_grad = LCO_LOSSES[loss].logit_grad
    target = old_logits + advantages / beta + shift
    theta = torch.zeros(jacobian.shape[1], dtype=jacobian.dtype, device=jacobian.device)
    losses, grad_norms, residuals = [], [], []
    for k in range(steps + 1):
        z = old_logits + jacobian @ theta
        grad = jacobian.T @ logit_grad(z, target)
        losses.append(value(z, target))
        grad_norms.append(torch.linalg.vector_norm(grad))
        residuals.append(torch.linalg.vector_norm(z - target))
        if k < steps:
            theta = theta - eta * grad
    return DescentTrace(torch.stack(losses), torch.stack(grad_norms), torch.stack(residuals), theta)


# --- Proposition 4.1 and §4.4 ----------------------------------------------------------------


def rl_objective(
    policy: torch.Tensor, advantages: torch.Tensor, old_logits: torch.Tensor, beta: float
) -> torch.Tensor:
    """E_{a~π}[A(s, a)] − β·KL(π ‖ π_old) at one step (eq. 2 / 23), π a distribution ``[V]``.

    Maximised by π* = softmax(z_old + A/β) (eq. 6); identically it equals
    β·log Σ_a π_old(a)e^{A(a)/β} − β·KL(π ‖ π*), which the tests use as an independent check.
    """
    beta = check_beta(beta)
    log_pi_old = torch.log_softmax(old_logits, dim=-1)
    # 0·log 0 = 0: a policy may put zero mass on a token (a vertex of the simplex).
    log_ratio = torch.where(policy > 0, torch.log(policy.clamp_min(1e-300)) - log_pi_old, 0.0)
    return (policy * advantages).sum(-1) - beta * (policy * log_ratio).sum(-1)


def best_constant_shift(advantages: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """argmin_C ‖A/β + C‖² = −mean_V(A)/β: the shift of z' = z_old + A/β + C that minimises the
    numerator of bounds (19)/(20) (§4.4). Zero for mean-centred advantages
    (:func:`lco.normalize_advantages` with ``mode="mean"``).

    §4.4 writes the minimiser as C = −Σ_a A(s_t, a); the minimiser is the mean, −(1/|V|)Σ_a A.
    """
    beta = check_beta(beta)
    return -advantages.mean(-1) / beta
