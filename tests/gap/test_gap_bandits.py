"""Bandit reproductions (Suk & Duan §6.1, App. F, App. I) against independent computations.

Expected values come from the paper's closed forms (App. F.1/F.2, App. I.1, eq. 13b, eq. 17) or
from an independent autograd re-implementation of the same dynamics, never from the code's output.
"""

import math

import pytest
import torch

from lco.gap import gap_alignment, gradient_gap, success_rate_lower_bound
from lco.gap.bandits import (
    contextual_bandit,
    effective_step_sizes,
    linear_softmax_gap_factors,
    multi_armed_bandit,
    overshoot_instance_run,
    overshoot_threshold,
    three_token_instance,
)

DTYPE = torch.float64


# --- Fig. 4: multi-armed bandit -----------------------------------------------------------


def test_mab_matches_autograd_reinforce_and_the_app_i1_gap_formula():
    result = multi_armed_bandit(num_arms=10, steps=60, eta=0.5, seed=3, progress=False)
    best = result["config"]["best_arm"]
    theta = torch.zeros(10, dtype=DTYPE, requires_grad=True)
    for k in range(61):
        success = torch.softmax(theta, 0)[best]
        (grad,) = torch.autograd.grad(success, theta)
        pi = torch.softmax(theta, 0).detach()
        p_star = float(pi[best])
        others = torch.cat([pi[:best], pi[best + 1 :]])
        # App. I.1: Δμ(k) = π*(1 − π*) + π*·Σ_{a≠a*} π_a² / (1 − π*)
        expected_gap = p_star * (1 - p_star) + p_star * float((others**2).sum()) / (1 - p_star)
        assert result["success_rate"][k] == pytest.approx(float(success.detach()), rel=1e-10)
        assert result["gap_alignment"][k] == pytest.approx(expected_gap, rel=1e-9)
        theta = (theta + 0.5 * grad).detach().requires_grad_(True)


def test_mab_converges_and_stays_above_the_lower_bound_eq13b():
    result = multi_armed_bandit(steps=3_000, progress=False)
    success, cumulative = result["success_rate"], result["cumulative_gap_alignment"]
    # Theorem 1(b) applies only if every step obeys eq. (13a)
    assert all(result["step_size_condition_holds"])
    bounds = success_rate_lower_bound(torch.tensor(success[0]), torch.tensor(cumulative))
    assert bool((torch.tensor(success) >= bounds - 1e-12).all())
    assert success[-1] > 0.99
    assert all(b >= a for a, b in zip(cumulative, cumulative[1:], strict=False))


# --- Fig. 1: contextual bandit ------------------------------------------------------------


def test_linear_softmax_closed_forms_match_autograd_and_gradient_gap():
    generator = torch.Generator().manual_seed(0)
    dim, arms = 4, 6
    theta = torch.randn(dim, arms, generator=generator, dtype=DTYPE)
    contexts = torch.rand(3, dim, generator=generator, dtype=DTYPE)
    best = torch.tensor([2, 0, 5])
    success, v = linear_softmax_gap_factors(contexts, theta, best)
    for i, x in enumerate(contexts):
        log_pi = lambda t, x=x: torch.log_softmax(x @ t, dim=0)  # noqa: E731
        scores = torch.autograd.functional.jacobian(log_pi, theta).reshape(arms, -1)
        pi = log_pi(theta).exp()
        rewards = torch.zeros(arms, dtype=DTYPE)
        rewards[best[i]] = 1.0
        gap = gradient_gap(scores, rewards, weights=pi)
        torch.testing.assert_close(gap, torch.outer(x, v[i]).reshape(-1))
        assert float(success[i]) == pytest.approx(float(pi[best[i]]))
    # Δμ_x for the update at context 0 (w = ∇J_{x_0}) has the factorised form used in the run
    t = theta.clone().requires_grad_(True)
    (grad0,) = torch.autograd.grad(torch.softmax(contexts[0] @ t, 0)[best[0]], t)
    j0 = success[0]
    factorised = j0 * (1 - j0) * (contexts @ contexts[0]) * (v @ v[0])
    direct = torch.stack(
        [gap_alignment(grad0.reshape(-1), torch.outer(x, v[i]).reshape(-1)) for i, x in enumerate(contexts)]
    )
    torch.testing.assert_close(factorised, direct)


def test_contextual_run_records_consistent_series():
    result = contextual_bandit(num_eval_contexts=50, steps=300, record_every=100, progress=False)
    assert result["record_step"] == [0, 100, 200, 300]
    success = torch.tensor(result["success_rate"])
    cumulative = torch.tensor(result["cumulative_gap_alignment"])
    assert success.shape == cumulative.shape == (4, 50)
    assert bool(((success >= 0) & (success <= 1)).all())
    assert bool((cumulative.diff(dim=0) >= 0).all())  # a sum of [Δμ]₊·η never decreases
    # θ_0 ~ N(0, 0.01²): every context starts near the uniform policy, J ≈ 1/N
    assert success[0].mean().item() == pytest.approx(0.01, rel=0.05)


# --- Theorems 2 and 4: the overshooting instance ------------------------------------------


def test_three_token_scores_match_autograd():
    theta = torch.tensor([0.3, -0.2], dtype=DTYPE)
    instance = three_token_instance(theta, score_bound=2.0, length=2)
    features = torch.tensor([[0.0, 1.0], [1.0, 0.0], [-1.0, 0.0]], dtype=DTYPE)  # times G/2 = 1
    responses = [(a, b) for a in range(3) for b in range(3)]

    def log_probs(t):
        token = torch.log_softmax(features @ t, 0)
        return torch.stack([token[a] + token[b] for a, b in responses])

    torch.testing.assert_close(instance["scores"], torch.autograd.functional.jacobian(log_probs, theta))
    torch.testing.assert_close(instance["probs"], log_probs(theta).exp())
    assert instance["rewards"].tolist() == [1.0] + [0.0] * 8


def test_theorem2_construction_matches_app_f1_closed_form():
    g, eta, steps = 1.0, 0.4, 200
    run = overshoot_instance_run(eta, steps, score_bound=g)
    delta = eta * g / 15
    for k in range(steps + 1):
        cosh_term = math.exp(eta * g / 6) + math.exp(-eta * g / 6)
        expected = 1 / (1 + cosh_term * math.exp(delta * eta * g / 6 * k))
        assert run["success_rate"][k] == pytest.approx(expected, rel=1e-10)
        assert run["gap_alignment"][k] >= eta * g**2 / 30  # the uniform gap App. F.1 proves
    assert all(b < a for a, b in zip(run["success_rate"], run["success_rate"][1:], strict=False))


def test_theorem4_construction_has_the_claimed_gap_and_decreases():
    g, length = 1.0, 3
    eta = 1 / (2 * math.sqrt(length * g**2))
    run = overshoot_instance_run(eta, 300, score_bound=g, length=length)
    delta = eta * g / 10
    cosh_term = math.exp(eta * g / 6) + math.exp(-eta * g / 6)
    expected_final = (1 / (1 + cosh_term * math.exp(delta * eta * g / 6 * 300))) ** length
    assert run["success_rate"][-1] == pytest.approx(expected_final, rel=1e-10)
    assert min(run["gap_alignment"]) >= length * eta * g**2 / 60
    assert all(b < a for a, b in zip(run["success_rate"], run["success_rate"][1:], strict=False))


def test_held_gap_instance_has_constant_gap_and_the_closed_form_log_odds_step():
    g, target = 1.0, 0.028
    eta = 0.8 * overshoot_threshold(target, g)
    run = overshoot_instance_run(eta, 50, score_bound=g, target_gap=target)
    assert run["gap_alignment"] == pytest.approx([target] * 51, rel=1e-9)
    steps = [b - a for a, b in zip(run["log_odds"], run["log_odds"][1:], strict=False)]
    assert steps == pytest.approx([-g * eta * run["delta"] / 6] * 50, rel=1e-8)


@pytest.mark.parametrize(("ratio", "collapses"), [(0.5, False), (0.9, False), (1.1, True), (2.0, True)])
def test_constant_step_above_threshold_collapses_and_below_converges(ratio, collapses):
    g, target = 1.0, 0.028
    run = overshoot_instance_run(
        ratio * overshoot_threshold(target, g), 3_000, score_bound=g, target_gap=target
    )
    success = run["success_rate"]
    assert min(run["gap_alignment"]) > 0  # the alignment is positive throughout, in both regimes
    if collapses:
        assert all(b < a for a, b in zip(success, success[1:], strict=False))
        assert success[-1] < 0.01
    else:
        assert all(b > a for a, b in zip(success, success[1:], strict=False))
        assert success[-1] > 0.9


def test_threshold_rejects_a_gap_the_instance_cannot_hold():
    with pytest.raises(ValueError, match="target_gap"):
        overshoot_threshold(0.5, 1.0)


# --- eqs. (17)–(18): GRPO vs Dr. GRPO -----------------------------------------------------


@pytest.mark.parametrize("length", [1, 3, 6])
@pytest.mark.parametrize("success_rate", [0.2, 0.7])
def test_effective_step_sizes_follow_eq17_for_fixed_length(length, success_rate):
    out = effective_step_sizes(success_rate, length, alpha=0.3)
    delta_mu, variance = out["grpo_gap_alignment"], success_rate * (1 - success_rate)
    assert out["success_rate"] == pytest.approx(success_rate)
    # with |o| = T for every response, eq. (5) is ∇J/(Tσ) and eq. (4) is ∇J (eq. 9): (17) with T_ψ1 → T
    assert out["grpo_eta"] == pytest.approx(0.3 * delta_mu * math.sqrt(variance) / length, rel=1e-9)
    assert out["dr_grpo_eta"] == pytest.approx(0.3 * delta_mu * variance, rel=1e-9)


def test_gradient_directions_match_autograd_of_the_surrogates():
    # eq. (5) is the gradient of E[ρ·A/(σ|o|)] at θ_old; eq. (4) is ∇J
    length, target = 3, 0.4
    out = effective_step_sizes(target, length)
    token_prob = target ** (1 / length)
    theta = torch.tensor(
        [0.0, 2 * math.log(2 * token_prob / (1 - token_prob))], dtype=DTYPE, requires_grad=True
    )
    features = 0.5 * torch.tensor([[0.0, 1.0], [1.0, 0.0], [-1.0, 0.0]], dtype=DTYPE)
    success = torch.softmax(features @ theta, 0)[0] ** length
    (grad,) = torch.autograd.grad(success, theta)
    sigma = math.sqrt(target * (1 - target))
    assert out["dr_grpo_eta"] == pytest.approx(float(grad.norm()), rel=1e-9)
    assert out["grpo_eta"] == pytest.approx(float(grad.norm()) / (sigma * length), rel=1e-9)


def test_grpo_ratio_to_safe_step_is_flat_in_length_and_dr_grpo_grows_linearly():
    rows = [effective_step_sizes(0.5, t) for t in (1, 2, 4, 8)]
    grpo = [r["grpo_eta"] / r["safe_eta_eq18"] for r in rows]
    dr_grpo = [r["dr_grpo_eta"] / r["safe_eta_eq18"] for r in rows]
    # eqs. (17)/(18): GRPO/safe ≍ √(J/(1−J)), Dr.GRPO/safe ≍ J·T (T_ψ1 = T/ln 2 for a fixed length)
    assert grpo == pytest.approx([math.sqrt(0.5 / 0.5) / math.log(2)] * 4, rel=1e-9)
    assert dr_grpo == pytest.approx([0.5 * t / math.log(2) for t in (1, 2, 4, 8)], rel=1e-9)
