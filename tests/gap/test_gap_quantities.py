"""Gradient-Gap quantities (Suk & Duan §3–§5) against autograd and the paper's closed forms.

The reference policy is a linear softmax over an enumerated response set, π_θ(o) ∝ exp⟨φ(o), θ⟩.
Everything expected here is computed independently: J(θ) and ∇_θ J by autograd, per-response
scores ∇_θ log π_θ(o) as an autograd Jacobian, and the paper's formulas written out inline.
"""

import math

import pytest
import torch

from lco.gap import (
    CumulativeGapAlignment,
    expected_score_correct,
    expected_score_incorrect,
    gap_alignment,
    gap_alignment_per_prompt,
    gradient_gap,
    log_odds,
    success_rate_lower_bound,
    token_step_size_bound,
    trajectory_step_size_bound,
    update_step,
)

DTYPE = torch.float64


def _policy(num_responses: int = 7, dim: int = 4, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(num_responses, dim, generator=generator, dtype=DTYPE)
    theta = 0.5 * torch.randn(dim, generator=generator, dtype=DTYPE)
    rewards = torch.zeros(num_responses, dtype=DTYPE)
    rewards[[1, 4]] = 1.0
    return features, theta, rewards


def _success_rate(features, theta, rewards):
    return torch.softmax(features @ theta, dim=0) @ rewards


def _scores_by_autograd(features, theta):
    return torch.autograd.functional.jacobian(lambda t: torch.log_softmax(features @ t, dim=0), theta)


def _grad_success_rate(features, theta, rewards):
    theta = theta.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(_success_rate(features, theta, rewards), theta)
    return grad


def test_policy_gradient_equals_variance_times_gradient_gap_eq9():
    features, theta, rewards = _policy()
    probs = torch.softmax(features @ theta, dim=0)
    j = float(probs @ rewards)
    gap = gradient_gap(_scores_by_autograd(features, theta), rewards, weights=probs)
    torch.testing.assert_close(j * (1 - j) * gap, _grad_success_rate(features, theta, rewards))


def test_g_plus_and_g_minus_satisfy_eqs_25_and_26():
    # ∇J = J·g⁺ and ∇J = −(1 − J)·g⁻ (App. B.2)
    features, theta, rewards = _policy(seed=1)
    probs = torch.softmax(features @ theta, dim=0)
    scores = _scores_by_autograd(features, theta)
    j = float(probs @ rewards)
    grad = _grad_success_rate(features, theta, rewards)
    torch.testing.assert_close(j * expected_score_correct(scores, rewards, probs), grad)
    torch.testing.assert_close(-(1 - j) * expected_score_incorrect(scores, rewards, probs), grad)


def test_batch_level_identity_eq66_pools_prompts_weighted_by_prompt_distribution():
    prompt_probs = torch.tensor([0.2, 0.5, 0.3], dtype=DTYPE)
    policies = [_policy(num_responses=5, dim=3, seed=s) for s in range(3)]
    theta = policies[0][1]  # one shared θ for all prompts

    def batch_success_rate(t):
        return sum(p * _success_rate(f, t, r) for p, (f, _, r) in zip(prompt_probs, policies, strict=True))

    theta_req = theta.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(batch_success_rate(theta_req), theta_req)
    scores = torch.cat([_scores_by_autograd(f, theta) for f, _, _ in policies])
    rewards = torch.cat([r for _, _, r in policies])
    joint = torch.cat(
        [p * torch.softmax(f @ theta, 0) for p, (f, _, _) in zip(prompt_probs, policies, strict=True)]
    )
    j = float(batch_success_rate(theta))
    torch.testing.assert_close(j * (1 - j) * gradient_gap(scores, rewards, weights=joint), grad)


def test_samples_without_weights_count_equally():
    features, theta, rewards = _policy()
    scores = _scores_by_autograd(features, theta)
    counts = torch.tensor([3, 1, 2, 5, 1, 1, 4])
    repeated = torch.repeat_interleave(torch.arange(7), counts)
    torch.testing.assert_close(
        gradient_gap(scores[repeated], rewards[repeated]),
        gradient_gap(scores, rewards, weights=counts.to(DTYPE)),
    )


def test_gap_of_projected_scores_is_the_gap_alignment():
    features, theta, rewards = _policy()
    probs = torch.softmax(features @ theta, dim=0)
    scores = _scores_by_autograd(features, theta)
    w = torch.tensor([0.3, -0.1, 0.7, 0.2], dtype=DTYPE)
    w = w / w.norm()
    torch.testing.assert_close(
        gradient_gap(scores @ w, rewards, probs), gap_alignment(w, gradient_gap(scores, rewards, probs))
    )


@pytest.mark.parametrize("eta", [1e-1, 3e-2, 1e-2, 3e-3])
def test_log_odds_change_is_gap_alignment_times_step_up_to_eq14(eta):
    features, theta, rewards = _policy(seed=2)
    probs = torch.softmax(features @ theta, dim=0)
    direction = torch.tensor([1.0, -2.0, 0.5, 1.5], dtype=DTYPE)
    direction = direction / direction.norm()
    delta_mu = gap_alignment(direction, gradient_gap(_scores_by_autograd(features, theta), rewards, probs))
    change = log_odds(_success_rate(features, theta + eta * direction, rewards)) - log_odds(
        _success_rate(features, theta, rewards)
    )
    # Assumption 1 for a linear softmax: ‖φ(o) − E φ‖ ≤ 2 max‖φ‖ = G_o, ‖Cov_θ φ‖ ≤ max‖φ‖² = L_o
    max_feature = float(features.norm(dim=1).max())
    score_bound, lipschitz = 2 * max_feature, max_feature**2
    assert eta <= 1 / (2 * math.sqrt(lipschitz))  # Lemma 1's step-size condition
    error = abs(float(change - delta_mu * eta))
    assert error <= (lipschitz + 8 * score_bound**2) * eta**2
    assert error < 0.05 * abs(float(delta_mu)) * eta  # first order really is Δμ·η, not just "small"


def test_update_step_splits_a_parameter_list_into_norm_and_unit_direction():
    before = [torch.zeros(2, 3, dtype=DTYPE), torch.ones(4, dtype=DTYPE)]
    after = [torch.full((2, 3), 1.0, dtype=DTYPE), torch.ones(4, dtype=DTYPE) + 2.0]
    eta, w = update_step(before, after)
    assert float(eta) == pytest.approx(math.sqrt(6 * 1.0 + 4 * 4.0))
    assert float(w.norm()) == pytest.approx(1.0)
    torch.testing.assert_close(
        eta * w, torch.cat([(a - b).reshape(-1) for a, b in zip(after, before, strict=True)])
    )


def test_update_step_of_no_change_has_zero_step_and_direction():
    eta, w = update_step(torch.ones(3), torch.ones(3))
    assert float(eta) == 0.0 and bool((w == 0).all())


def test_update_step_rejects_mismatched_parameters():
    with pytest.raises(ValueError, match="params_before and params_after"):
        update_step(torch.zeros(3), torch.zeros(4))


def test_per_prompt_gap_alignment_matches_single_prompt_and_marks_degenerate_groups_nan():
    generator = torch.Generator().manual_seed(3)
    projected = torch.randn(3, 6, generator=generator, dtype=DTYPE)
    rewards = torch.tensor([[1, 0, 0, 1, 0, 1], [1, 1, 1, 1, 1, 1], [0, 0, 1, 0, 0, 0]], dtype=DTYPE)
    per_prompt = gap_alignment_per_prompt(projected, rewards)
    for p in (0, 2):
        expected = projected[p][rewards[p] == 1].mean() - projected[p][rewards[p] == 0].mean()
        torch.testing.assert_close(per_prompt[p], expected)
    assert math.isnan(float(per_prompt[1]))


def test_cumulative_gap_alignment_adds_only_positive_parts_eq12():
    cumulative = CumulativeGapAlignment()
    for delta_mu, eta in [(0.5, 0.1), (-2.0, 0.3), (0.25, 0.4), (math.nan, 1.0)]:
        cumulative.update(delta_mu, eta)
    assert cumulative.value == pytest.approx(0.5 * 0.1 + 0.25 * 0.4)
    assert cumulative.steps == 4


def test_cumulative_gap_alignment_keeps_one_sum_per_prompt():
    cumulative = CumulativeGapAlignment()
    cumulative.update(torch.tensor([1.0, -1.0, math.nan]), 0.5)
    cumulative.update(torch.tensor([2.0, 3.0, 1.0]), 0.1)
    torch.testing.assert_close(cumulative.value, torch.tensor([0.7, 0.3, 0.1]))


def test_cumulative_gap_alignment_rejects_negative_step():
    with pytest.raises(ValueError, match="eta"):
        CumulativeGapAlignment().update(1.0, -0.1)


def test_lower_bound_eq13b_closed_form_and_limits():
    assert success_rate_lower_bound(0.2, 0.0) == pytest.approx(0.2)
    assert success_rate_lower_bound(0.2, 4.0) == pytest.approx(0.2 / (0.2 + 0.8 * math.exp(-2.0)))
    assert success_rate_lower_bound(0.2, 200.0) == pytest.approx(1.0)
    bounds = success_rate_lower_bound(torch.tensor([0.1, 0.5]), torch.tensor([1.0, 1.0]))
    assert bounds.shape == (2,)


@pytest.mark.parametrize(
    ("j0", "m", "match"), [(1.5, 1.0, "initial_success_rate"), (0.5, -1.0, "cumulative_gap_alignment")]
)
def test_lower_bound_rejects_out_of_range_input(j0, m, match):
    with pytest.raises(ValueError, match=match):
        success_rate_lower_bound(j0, m)


def test_step_size_bounds_eq13a_and_eq15a():
    # eq. (13a) with L_o = 1, G_o = 2: min(Δμ/(2·(1 + 32)), 1/2)
    assert trajectory_step_size_bound(0.66, 1.0, 2.0) == pytest.approx(0.66 / 66)
    assert trajectory_step_size_bound(-1.0, 1.0, 2.0) == 0.0
    # eq. (15a) with L_p = 0.5, G_p = 1, T_∞ = 10, T_ψ1 = 4, J = 0.5: T_ψ1/(1 − J) = 8 < 8·T_∞²
    expected = min((0.3 / 2) / (0.5 * 10 + 8), 1 / (2 * math.sqrt(0.5 * 10 + 4)))
    assert token_step_size_bound(0.3, 0.5, 0.5, 1.0, 10, 4) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("rewards", "match"),
    [
        (torch.tensor([0.0, 0.5, 1.0]), "binary"),
        (torch.tensor([0.0, 0.0, 0.0]), "g⁺ is undefined"),
        (torch.tensor([1.0, 0.0]), "rewards must have shape"),
    ],
)
def test_gradient_gap_rejects_bad_rewards(rewards, match):
    with pytest.raises(ValueError, match=match):
        gradient_gap(torch.zeros(3, 2), rewards)


def test_gradient_gap_is_undefined_when_every_response_is_correct():
    with pytest.raises(ValueError, match="g⁻ is undefined"):
        expected_score_incorrect(torch.zeros(3, 2), torch.ones(3))
