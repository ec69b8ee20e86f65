"""Gradient-Gap quantities of Suk & Duan, "On the Optimization Dynamics of RLVR" (§3–§5).

Pure functions of tensors; equation numbers refer to that paper (arXiv:2510.08539). Notation, for one prompt q and binary reward r*:

* score of a response: s(o) = ∇_θ log π_θ(o | q);
* g⁺ = E_{o ~ π⁺}[s(o)], g⁻ = E_{o ~ π⁻}[s(o)]: the expected score on correct / incorrect
  responses, π^± being π_θ conditioned on r* = 1 / r* = 0 (eqs. 6–7);
* Gradient Gap g⁺ − g⁻ (eq. 8), with ∇_θ J = J(1 − J)(g⁺ − g⁻) (eq. 9);
* an update θ_{k+1} = θ_k + η_k·w_k with ‖w_k‖ ≤ 1 (eq. 3), and its Gap Alignment
  Δμ(k) = w_k · (g⁺(k) − g⁻(k)) (eq. 10);
* the Cumulative Gap Alignment M(K) = Σ_{k<K} [Δμ(k)]₊ η_k (eq. 12), which lower-bounds J(K)
  through eq. (13b) when the step sizes obey eq. (13a).

The batch level of §5 uses the very same functions: pool the (q, o) pairs of all prompts and
weight each by P_Q(q)·π(o | q) (or pass samples q ~ P_Q, o ~ π with equal weights). Then g^±
are the expectations under P^±_θ and Δμ(k) is the batch Gap Alignment of eq. (21).

Only the product Δμ(k)·η_k = (θ_{k+1} − θ_k)·(g⁺ − g⁻) is invariant to how an update is split
into η_k and w_k; Δμ(k) alone is not. :func:`update_step` uses the split of eq. (3) with
‖w_k‖ = 1, η_k = ‖θ_{k+1} − θ_k‖₂.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

TensorOrFloat = torch.Tensor | float


# --- input checks -------------------------------------------------------------------------


def _check_scores_rewards_weights(
    scores: torch.Tensor, rewards: torch.Tensor, weights: torch.Tensor | None
) -> torch.Tensor:
    """Validate the three inputs of g^± and return the weights (all ones when None)."""
    if scores.dim() == 0:
        raise ValueError("scores must have a leading response axis: shape (n,) or (n, ...), got a scalar")
    if rewards.dim() != 1 or rewards.shape[0] != scores.shape[0]:
        raise ValueError(
            f"rewards must have shape (n,) = ({scores.shape[0]},) to match scores of shape "
            f"{tuple(scores.shape)}, got {tuple(rewards.shape)}"
        )
    if not bool(((rewards == 0) | (rewards == 1)).all()):
        raise ValueError("rewards must be binary (0 = incorrect, 1 = correct), as r* is in the paper")
    if weights is None:
        return torch.ones(scores.shape[0], dtype=scores.dtype, device=scores.device)
    if weights.shape != rewards.shape:
        raise ValueError(
            f"weights must have shape {tuple(rewards.shape)} like rewards, got {tuple(weights.shape)}"
        )
    if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
        raise ValueError("weights must be finite and non-negative (probabilities of the responses)")
    return weights.to(scores.dtype)


def _conditional_mean(
    scores: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor, which: str
) -> torch.Tensor:
    """E[s(o) | o in the region selected by mask] under the (unnormalised) weights."""
    region_weights = weights * mask.to(weights.dtype)
    mass = region_weights.sum()
    if not bool(mass > 0):
        raise ValueError(
            f"g{which} is undefined: no {'correct' if which == '⁺' else 'incorrect'} response carries "
            f"positive weight (J = {'0' if which == '⁺' else '1'} on these rewards)"
        )
    region_weights = region_weights / mass
    return torch.tensordot(region_weights, scores, dims=1)


# --- g⁺, g⁻ and the Gradient Gap (eqs. 6–9) -----------------------------------------------


def expected_score_correct(
    scores: torch.Tensor, rewards: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """g⁺ = E_{o ~ π⁺}[∇_θ log π_θ(o | q)], the expected score on correct responses (eq. 7).

    Args:
        scores: ``(n, ...)`` per-response scores ∇_θ log π_θ(o_i | q_i), e.g. flattened
            per-sample gradients ``(n, d)``, or their projections ``(n,)`` on a direction.
        rewards: ``(n,)`` binary rewards r*(q_i, o_i).
        weights: ``(n,)`` probability of each response, e.g. π_θ(o_i | q) when the response
            space is enumerated exactly, or P_Q(q_i)·π_θ(o_i | q_i) for the batch level (§5).
            ``None``: the responses are samples from π_θ, so they count equally.

    Returns:
        g⁺ with the trailing shape of ``scores``.
    """
    weights = _check_scores_rewards_weights(scores, rewards, weights)
    return _conditional_mean(scores, rewards == 1, weights, "⁺")


def expected_score_incorrect(
    scores: torch.Tensor, rewards: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """g⁻ = E_{o ~ π⁻}[∇_θ log π_θ(o | q)], the expected score on incorrect responses (eq. 7).

    Arguments as for :func:`expected_score_correct`.
    """
    weights = _check_scores_rewards_weights(scores, rewards, weights)
    return _conditional_mean(scores, rewards == 0, weights, "⁻")


def gradient_gap(
    scores: torch.Tensor, rewards: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """The Gradient Gap g⁺ − g⁻ (eq. 8); ∇_θ J = J(1 − J)·(g⁺ − g⁻) by eq. (9) (eq. 66 in §5).

    The expectation is linear, so ``gradient_gap(scores @ w, ...)`` equals
    ``w · gradient_gap(scores, ...)``: a trainer that cannot hold per-sample gradients can pass
    per-sample projections w·∇_θ log π_θ(o_i | q_i) and gets the Gap Alignment Δμ directly.
    Arguments as for :func:`expected_score_correct`.
    """
    weights = _check_scores_rewards_weights(scores, rewards, weights)
    return _conditional_mean(scores, rewards == 1, weights, "⁺") - _conditional_mean(
        scores, rewards == 0, weights, "⁻"
    )


# --- the update (eq. 3) and the Gap Alignment (eq. 10) ------------------------------------


def _flatten(params: torch.Tensor | Sequence[torch.Tensor], name: str) -> torch.Tensor:
    if isinstance(params, torch.Tensor):
        return params.detach().reshape(-1)
    params = list(params)
    if not params or not all(isinstance(p, torch.Tensor) for p in params):
        raise ValueError(f"{name} must be a tensor or a non-empty sequence of tensors")
    return torch.cat([p.detach().reshape(-1) for p in params])


def update_step(
    params_before: torch.Tensor | Sequence[torch.Tensor],
    params_after: torch.Tensor | Sequence[torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split an actual update θ_{k+1} − θ_k into η_k·w_k as in eq. (3).

    Args:
        params_before: θ_k, a tensor or a sequence of tensors (e.g. the model's parameters).
        params_after: θ_{k+1}, with the same shapes.

    Returns:
        ``(eta, direction)``: η_k = ‖θ_{k+1} − θ_k‖₂ (a 0-d tensor) and the flattened unit
        vector w_k = (θ_{k+1} − θ_k)/η_k (all zeros when the update is zero).
    """
    before = _flatten(params_before, "params_before")
    after = _flatten(params_after, "params_after")
    if before.shape != after.shape:
        raise ValueError(
            f"params_before and params_after hold {before.numel()} and {after.numel()} numbers; they must match"
        )
    delta = after - before
    eta = torch.linalg.vector_norm(delta)
    direction = delta / eta if bool(eta > 0) else torch.zeros_like(delta)
    return eta, direction


def gap_alignment(update_direction: torch.Tensor, gap: torch.Tensor) -> torch.Tensor:
    """Δμ(k) = w_k · (g⁺(k) − g⁻(k)), the Gap Alignment (eq. 10; batch level in §5).

    Args:
        update_direction: w_k, the update direction of eq. (3) (‖w_k‖ ≤ 1), shape ``(d,)``.
        gap: the Gradient Gap g⁺ − g⁻ at θ_k (see :func:`gradient_gap`), shape ``(d,)`` for one
            prompt or the batch, or ``(P, d)`` for P prompts at once.

    Returns:
        Δμ, a 0-d tensor, or ``(P,)`` per prompt.
    """
    if update_direction.dim() != 1:
        raise ValueError(
            f"update_direction must be a flat vector (d,), got shape {tuple(update_direction.shape)}"
        )
    if gap.shape[-1:] != update_direction.shape:
        raise ValueError(
            f"gap has trailing size {gap.shape[-1] if gap.dim() else 'none'} but update_direction has "
            f"{update_direction.shape[0]}; both live in parameter space"
        )
    return gap @ update_direction


def gap_alignment_per_prompt(
    projected_scores: torch.Tensor, rewards: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Δμ_q(k) for each prompt of a grouped batch (eq. 10), from projected scores.

    Args:
        projected_scores: ``(P, G)``, w_k · ∇_θ log π_θ(o_{q,i} | q) for G responses to each of
            P prompts (the GRPO layout).
        rewards: ``(P, G)`` binary rewards.
        weights: ``(P, G)`` response probabilities within each prompt, or ``None`` for samples.

    Returns:
        ``(P,)`` Δμ_q = E_{π⁺_q}[w·s] − E_{π⁻_q}[w·s]. A prompt whose responses are all correct or
        all incorrect has no Gradient Gap estimate; its entry is NaN (filter it, as DAPO's dynamic
        sampling does, rather than treat it as zero alignment).
    """
    if projected_scores.dim() != 2:
        raise ValueError(f"projected_scores must have shape (P, G), got {tuple(projected_scores.shape)}")
    if rewards.shape != projected_scores.shape:
        raise ValueError(
            f"rewards must have shape {tuple(projected_scores.shape)} like projected_scores, got {tuple(rewards.shape)}"
        )
    if not bool(((rewards == 0) | (rewards == 1)).all()):
        raise ValueError("rewards must be binary (0 = incorrect, 1 = correct)")
    if weights is None:
        weights = torch.ones_like(projected_scores)
    elif weights.shape != rewards.shape or bool((weights < 0).any()):
        raise ValueError(f"weights must be non-negative with shape {tuple(rewards.shape)}")
    correct = weights * (rewards == 1).to(weights.dtype)
    incorrect = weights * (rewards == 0).to(weights.dtype)
    mass_correct, mass_incorrect = correct.sum(-1), incorrect.sum(-1)
    mean_correct = (correct * projected_scores).sum(-1) / mass_correct
    mean_incorrect = (incorrect * projected_scores).sum(-1) / mass_incorrect
    defined = (mass_correct > 0) & (mass_incorrect > 0)
    return torch.where(defined, mean_correct - mean_incorrect, torch.full_like(mean_correct, math.nan))


# --- Cumulative Gap Alignment (eq. 12) ----------------------------------------------------


class CumulativeGapAlignment:
    """M(K) = Σ_{k<K} [Δμ(k)]₊·η_k (eq. 12), accumulated one update at a time.

    ``delta_mu`` may be a number (one prompt or the batch) or a tensor of per-prompt values; the
    accumulator then keeps one M_q(K) per prompt. NaN entries (prompts without a Gradient Gap
    estimate this step, see :func:`gap_alignment_per_prompt`) add nothing.
    """

    def __init__(self) -> None:
        self.value: TensorOrFloat = 0.0
        self.steps = 0

    def update(self, delta_mu: TensorOrFloat, eta: TensorOrFloat) -> TensorOrFloat:
        """Add [Δμ(k)]₊·η_k for step k and return the new M(k + 1)."""
        eta_t = torch.as_tensor(eta, dtype=torch.float64)
        if bool((eta_t < 0).any()) or not bool(torch.isfinite(eta_t).all()):
            raise ValueError(f"eta must be a finite step size η_k ≥ 0, got {eta!r}")
        if isinstance(delta_mu, torch.Tensor):
            increment = torch.nan_to_num(delta_mu.clamp(min=0), nan=0.0) * eta
        else:
            increment = max(float(delta_mu), 0.0) * float(eta) if not math.isnan(delta_mu) else 0.0
        self.value = self.value + increment
        self.steps += 1
        return self.value


# --- the lower bound on J (eqs. 13b, 15b, 21) and the step sizes that guarantee it --------


def log_odds(success_rate: TensorOrFloat) -> TensorOrFloat:
    """log(J / (1 − J)), the quantity whose one-step change eq. (14) ties to Δμ(k)·η_k."""
    if isinstance(success_rate, torch.Tensor):
        return torch.log(success_rate) - torch.log1p(-success_rate)
    return math.log(success_rate) - math.log1p(-success_rate)


def success_rate_lower_bound(initial_success_rate: TensorOrFloat, cumulative_gap_alignment: TensorOrFloat):
    """J(K) ≥ J(0) / (J(0) + (1 − J(0))·exp(−M(K)/2)) (eq. 13b; also eqs. 15b and 21).

    Guaranteed when every step obeys eq. (13a) (trajectory level), (15a) (token level) or its
    batch analogue (Theorem 5); see :func:`trajectory_step_size_bound` and
    :func:`token_step_size_bound`. Works on numbers or tensors.

    Args:
        initial_success_rate: J(0) in [0, 1].
        cumulative_gap_alignment: M(K) ≥ 0 (eq. 12).
    """
    j0 = torch.as_tensor(initial_success_rate, dtype=torch.float64)
    m = torch.as_tensor(cumulative_gap_alignment, dtype=torch.float64)
    if bool(((j0 < 0) | (j0 > 1)).any()):
        raise ValueError(f"initial_success_rate must lie in [0, 1], got {initial_success_rate!r}")
    if bool((m < 0).any()):
        raise ValueError(
            f"cumulative_gap_alignment must be ≥ 0 (a sum of [Δμ]₊·η), got {cumulative_gap_alignment!r}"
        )
    bound = j0 / (j0 + (1 - j0) * torch.exp(-m / 2))
    if isinstance(initial_success_rate, torch.Tensor) or isinstance(cumulative_gap_alignment, torch.Tensor):
        return bound
    return float(bound)


def trajectory_step_size_bound(delta_mu: float, lipschitz: float, score_bound: float) -> float:
    """Largest η_k allowed by Theorem 1(b): min([Δμ]₊ / (2(L_o + 8G_o²)), 1/(2√L_o)) (eq. 13a).

    Args:
        delta_mu: Δμ_q(k) of the step (eq. 10).
        lipschitz: L_o, the Lipschitz constant of the trajectory score (Assumption 1b).
        score_bound: G_o, the bound on ‖∇_θ log π_θ(o | q)‖₂ (Assumption 1a, eq. 11).
    """
    if lipschitz < 0 or score_bound < 0:
        raise ValueError(f"lipschitz (L_o) and score_bound (G_o) must be ≥ 0, got {lipschitz}, {score_bound}")
    gap_limited = max(delta_mu, 0.0) / (2 * (lipschitz + 8 * score_bound**2))
    return min(gap_limited, 1 / (2 * math.sqrt(lipschitz))) if lipschitz > 0 else gap_limited


def token_step_size_bound(
    delta_mu: float,
    success_rate: float,
    lipschitz: float,
    score_bound: float,
    max_length: float,
    length_psi1: float,
) -> float:
    """Largest η_k allowed by Theorem 3 (eq. 15a), the token-level step-size condition.

    min{ ([Δμ]₊/2) / (L_p T_∞ + G_p² min{T_ψ1/(1 − J), 8T_∞²}), 1/(2√(L_p T_∞ + G_p² T_ψ1)) }.

    Args:
        delta_mu: Δμ_q(k) (eq. 10).
        success_rate: J_q(k).
        lipschitz: L_p, Lipschitz constant of the per-token score (Assumption 2).
        score_bound: G_p, bound on the per-token score norm (Assumption 2).
        max_length: T_∞, the almost-sure bound on the response length (Assumption 3).
        length_psi1: T_ψ1, the ψ₁-Orlicz norm bound on the response length (Assumption 3).
    """
    if not 0 <= success_rate <= 1:
        raise ValueError(f"success_rate must lie in [0, 1], got {success_rate}")
    if min(lipschitz, score_bound) < 0 or min(max_length, length_psi1) <= 0:
        raise ValueError("lipschitz, score_bound must be ≥ 0 and max_length, length_psi1 must be > 0")
    length_term = (
        8 * max_length**2 if success_rate == 1 else min(length_psi1 / (1 - success_rate), 8 * max_length**2)
    )
    gap_limited = (max(delta_mu, 0.0) / 2) / (lipschitz * max_length + score_bound**2 * length_term)
    stability_limited = 1 / (2 * math.sqrt(lipschitz * max_length + score_bound**2 * length_psi1))
    return min(gap_limited, stability_limited)
