"""An online estimate of the step-size threshold of Theorem 3 / Theorem 5 — a heuristic, beyond the paper.

The paper's condition (15a) (batch level: Theorem 5) bounds the safe step η_k by the Gap
Alignment Δμ(k), the success rate J(k), the response-length scales T_∞ and T_ψ1, and two
constants of Assumption 2 that nobody knows for a real model: G_p, a bound on every per-token
score ‖∇_θ log π_θ(o_t | q, o_<t)‖, and its Lipschitz constant L_p. A trainer can measure
everything else. The heuristic here replaces the unknowns by what one step reveals:

* L_p = 0, the simplification the paper itself makes to reach eq. (18) (L_p ≪ G_p²);
* G_p by the root-mean-square, over the sampled completion tokens, of the change of the token
  log-probability along the actual update, x_t/η_k with x_t = log π_{k+1}(o_t|·) − log π_k(o_t|·),
  i.e. |w_k · ∇_θ log π(o_t|·)| to first order (:func:`directional_token_score`);
* T_ψ1 by the empirical ψ₁-Orlicz norm of the batch's completion lengths
  (:func:`empirical_psi1_norm`, the definition of footnote 3), T_∞ by the generation cap.

What that changes, honestly: G_p is a supremum over all tokens and all directions, the estimate
is a mean over sampled tokens in one direction, so it is smaller and the threshold larger than
(15a) with the true constants; (15a) is itself a sufficient condition and conservative. The two
effects do not cancel in any controlled way in general. On the App. F instance, where the sharp
collapse step η* is known, the estimate is η*/5.8 for J from 0.06 to 0.79 and ≈ η*/1.1 at
J = 0.96 (tests/gap/test_step_guard.py, docs/gap.md), so it is a scale, not a guarantee; the
guard compares η_k against ``tolerance`` times it.
"""

from __future__ import annotations

import math

import torch

from .quantities import token_step_size_bound


def empirical_psi1_norm(lengths: torch.Tensor) -> float:
    """‖ℓ‖_ψ1 = inf{a > 0 : mean_i exp(ℓ_i / a) ≤ 2} of observed lengths (Assumption 3, footnote 3).

    A constant length T gives T / ln 2. Lengths below 1 are raised to 1 (Assumption 3: ℓ ≥ 1).
    Solved by bisection on log-mean-exp, which is decreasing in a, so large lengths do not overflow.
    """
    ell = torch.as_tensor(lengths, dtype=torch.float64).reshape(-1).clamp(min=1.0)
    if ell.numel() == 0:
        raise ValueError("lengths must hold at least one response length")
    n, longest = ell.numel(), float(ell.max())

    def excess(a: float) -> float:  # log mean exp(ℓ/a) − log 2
        return float(torch.logsumexp(ell / a, dim=0)) - math.log(n) - math.log(2)

    # mean exp(ℓ/a) ≥ exp(max/a)/n, so a ≥ max/log(2n); every term is ≤ 2 at a = max/ln 2.
    low, high = longest / math.log(2 * n), longest / math.log(2)
    for _ in range(100):
        middle = 0.5 * (low + high)
        if excess(middle) > 0:
            low = middle
        else:
            high = middle
    return high


def directional_token_score(token_log_ratios: torch.Tensor, mask: torch.Tensor, eta: float) -> float:
    """RMS over the masked tokens of x_t / η_k: the per-token score along the update direction w_k.

    ``token_log_ratios`` is ``[B, T]`` x_t = log π_{k+1}(o_t|·) − log π_k(o_t|·) on the same tokens;
    to first order x_t = η_k · w_k·∇_θ log π_k(o_t|·), so this estimates the typical
    |w_k·∇_θ log π(o_t|·)|, the quantity that Assumption 2's G_p bounds in the worst case.
    Returns 0.0 when η_k = 0 (no step, nothing to measure) or no token is masked in.
    """
    if token_log_ratios.shape != mask.shape:
        raise ValueError(
            f"token_log_ratios {tuple(token_log_ratios.shape)} and mask {tuple(mask.shape)} must match"
        )
    if eta < 0 or not math.isfinite(eta):
        raise ValueError(f"eta must be a finite step size ≥ 0, got {eta}")
    weights = mask.to(torch.float64)
    count = float(weights.sum())
    if eta == 0 or count == 0:
        return 0.0
    mean_square = float((token_log_ratios.to(torch.float64) ** 2 * weights).sum()) / count
    return math.sqrt(mean_square) / eta


def estimated_step_threshold(
    delta_mu: float, success_rate: float, token_score: float, max_length: float, length_psi1: float
) -> float:
    """The guard's η*_k: eq. (15a) with L_p = 0 and G_p replaced by the measured ``token_score``.

    Args:
        delta_mu: Δμ(k) of the step (eq. 10, batch level as in Theorem 5).
        success_rate: J(k), the batch success rate the step was computed on.
        token_score: :func:`directional_token_score` of the step.
        max_length: T_∞, the generation cap.
        length_psi1: T_ψ1, e.g. :func:`empirical_psi1_norm` of the batch's completion lengths.

    Returns ``inf`` when ``token_score`` is 0 (the step changed no sampled log-probability, so
    nothing bounds it) and 0 when Δμ(k) ≤ 0 (eq. 15a then allows no step at all).
    """
    if token_score < 0 or not math.isfinite(token_score):
        raise ValueError(f"token_score must be finite and ≥ 0, got {token_score}")
    if token_score == 0:
        return math.inf
    return token_step_size_bound(
        delta_mu,
        success_rate,
        lipschitz=0.0,
        score_bound=token_score,
        max_length=max_length,
        length_psi1=length_psi1,
    )


def next_lr_scale(scale: float, step_ratio: float, tolerance: float, min_scale: float) -> float:
    """The learning-rate multiplier for the next steps, aiming η at ``tolerance``·η*.

    ``step_ratio`` = η_k/η*_k was measured with the multiplier ``scale`` in force. Assuming η ∝
    the learning rate (exact for SGD, roughly so for Adam once its moments settle), the
    multiplier that would have put η_k at tolerance·η*_k is scale·tolerance/step_ratio; it is
    clipped to [min_scale, 1], so the guard only ever lowers the configured schedule and recovers
    towards it once steps are under the threshold again.
    """
    if not 0 < min_scale <= 1 or not 0 < scale <= 1 or not tolerance > 0:
        raise ValueError(
            f"need 0 < min_scale ≤ 1, 0 < scale ≤ 1 and tolerance > 0; got {min_scale}, {scale}, {tolerance}"
        )
    if not step_ratio > 0:
        return scale  # no step was taken: nothing learned about the threshold
    return min(1.0, max(min_scale, scale * tolerance / step_ratio))
