"""The step-size guard's estimate (lco.gap.step_guard): its pieces, and its calibration on App. F."""

import math

import pytest
import torch

from lco.gap import gap_alignment, gradient_gap, log_odds, token_step_size_bound
from lco.gap.bandits import overshoot_threshold, three_token_instance
from lco.gap.step_guard import (
    directional_token_score,
    empirical_psi1_norm,
    estimated_step_threshold,
    next_lr_scale,
)

DTYPE = torch.float64


# --- T_ψ1 (Assumption 3, footnote 3) ------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 7, 4096])
def test_psi1_norm_of_a_constant_length_is_length_over_ln2(length):
    assert empirical_psi1_norm(torch.full((5,), float(length))) == pytest.approx(
        length / math.log(2), rel=1e-9
    )


def test_psi1_norm_solves_its_defining_equation():
    lengths = torch.tensor([3.0, 10.0, 40.0, 41.0, 500.0], dtype=DTYPE)
    a = empirical_psi1_norm(lengths)
    assert float(torch.exp(lengths / a).mean()) == pytest.approx(2.0, rel=1e-9)
    assert lengths.mean() <= a <= lengths.max() / math.log(2)  # the paper's E|o| ≤ T_ψ1 ≤ T_∞/log 2


def test_psi1_norm_does_not_overflow_on_long_responses():
    assert math.isfinite(empirical_psi1_norm(torch.tensor([1.0, 1.0, 32768.0])))


# --- the directional per-token score ------------------------------------------------------------


def test_directional_score_is_the_score_along_the_update_for_a_small_step():
    # one token drawn from a linear softmax π_θ(a) ∝ exp(φ(a)·θ): ∇ log π(a) = φ(a) − E_π φ
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(6, 3, generator=generator, dtype=DTYPE)
    theta = torch.randn(3, generator=generator, dtype=DTYPE)
    direction = torch.randn(3, generator=generator, dtype=DTYPE)
    direction = direction / direction.norm()
    tokens = torch.tensor([[0, 3, 5], [2, 2, 1]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    eta = 1e-6
    before = torch.log_softmax(features @ theta, 0)[tokens]
    after = torch.log_softmax(features @ (theta + eta * direction), 0)[tokens]
    scores = (features - torch.softmax(features @ theta, 0) @ features) @ direction  # w·∇ log π(a)
    expected = math.sqrt(float((scores[tokens] ** 2 * mask).sum() / mask.sum()))
    assert directional_token_score(after - before, mask, eta) == pytest.approx(expected, rel=1e-5)


def test_directional_score_is_zero_without_a_step_or_tokens():
    x = torch.ones(2, 3)
    assert directional_token_score(x, torch.ones(2, 3), 0.0) == 0.0
    assert directional_token_score(x, torch.zeros(2, 3), 0.1) == 0.0
    with pytest.raises(ValueError, match="must match"):
        directional_token_score(x, torch.ones(3, 2), 0.1)


# --- the threshold -------------------------------------------------------------------------------


def test_threshold_is_eq_15a_with_lp_zero_and_the_measured_score():
    got = estimated_step_threshold(0.3, 0.4, token_score=0.7, max_length=64, length_psi1=20.0)
    assert got == token_step_size_bound(0.3, 0.4, 0.0, 0.7, 64, 20.0)
    assert estimated_step_threshold(-0.1, 0.4, 0.7, 64, 20.0) == 0.0  # Δμ ≤ 0: no step is safe
    assert estimated_step_threshold(0.3, 0.4, 0.0, 64, 20.0) == math.inf  # nothing changed, nothing bounds it


def _held_gap_step(offset: float, eta_ratio: float = 1.0, gap: float = 0.028, score_bound: float = 1.0):
    """One step of the App. F held-gap instance at θ = (−η/3, offset), with the guard's estimate."""
    sharp = overshoot_threshold(gap, score_bound)
    eta = eta_ratio * sharp
    delta = 2 * math.tanh(score_bound * eta / 6) - 6 * gap / score_bound
    theta = torch.tensor([-eta / 3, offset], dtype=DTYPE)
    update = eta * torch.tensor([2.0, -delta], dtype=DTYPE) / 3
    before = three_token_instance(theta, score_bound)
    after = three_token_instance(theta + update, score_bound)
    step = float(update.norm())  # the unit split of eq. (3), as the trainer logs it
    delta_mu = float(
        gap_alignment(update / step, gradient_gap(before["scores"], before["rewards"], before["probs"]))
    )
    # exact expectation over the three responses instead of a sample mean
    log_ratio = torch.log(after["probs"]) - torch.log(before["probs"])
    token_score = math.sqrt(float(before["probs"] @ log_ratio**2)) / step
    estimate = estimated_step_threshold(
        delta_mu, float(before["success_rate"]), token_score, 1, empirical_psi1_norm(torch.ones(1))
    )
    change = float(log_odds(after["success_rate"]) - log_odds(before["success_rate"]))
    return {"J": float(before["success_rate"]), "eta": step, "estimate": estimate, "log_odds_change": change}


@pytest.mark.parametrize("offset", [-4.0, 0.0, 2.0, 4.0])
def test_estimate_is_conservative_by_a_stable_factor_on_the_app_f_instance(offset):
    # At η = η* of App. F the log-odds stands still (η* is sharp); the estimate sits 5.8× below it for
    # J from 0.06 to 0.79, the calibration docs/gap.md reports and gap_step_guard_tolerance builds on.
    step = _held_gap_step(offset)
    assert step["log_odds_change"] == pytest.approx(0.0, abs=1e-12)
    assert step["eta"] / step["estimate"] == pytest.approx(5.8, abs=0.1)


def test_estimate_stays_below_the_sharp_threshold_as_j_approaches_one():
    # near J = 1 the 8·T_∞² cap of eq. (15a) takes over (T = 1 here), and the margin shrinks
    step = _held_gap_step(8.0)
    assert step["J"] > 0.95
    assert 1.0 < step["eta"] / step["estimate"] < 2.0


# --- the learning-rate scale ---------------------------------------------------------------------


def test_lr_scale_aims_at_the_tolerance_and_stays_in_its_range():
    assert next_lr_scale(1.0, step_ratio=8.0, tolerance=4.0, min_scale=0.01) == 0.5
    assert next_lr_scale(0.5, step_ratio=1.0, tolerance=4.0, min_scale=0.01) == 1.0  # recovers, capped at 1
    assert next_lr_scale(1.0, step_ratio=1e9, tolerance=4.0, min_scale=0.01) == 0.01
    assert next_lr_scale(0.3, step_ratio=0.0, tolerance=4.0, min_scale=0.01) == 0.3  # no step, no news
    with pytest.raises(ValueError, match="min_scale"):
        next_lr_scale(1.0, 2.0, 4.0, 0.0)
