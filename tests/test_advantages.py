"""Advantage estimators (paper §4.2, eqs. 11–13), per-step normalisation (§4.4), group baselines, GAE."""

import numpy as np
import pytest
import torch

from lco import (
    dpo_advantages,
    gae,
    group_advantages,
    lco_mse,
    logprob_advantages,
    normalize_advantages,
    optimal_logits,
    ppo_gae_advantages,
    ppo_token_rewards,
    reinforce_advantages,
    sparse_advantages,
    whiten_advantages,
)


def _log_softmax_np(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x, dtype=np.float64)
    for i in np.ndindex(x.shape[:-1]):
        row = x[i].astype(np.float64)
        out[i] = row - (row.max() + np.log(np.sum(np.exp(row - row.max()))))
    return out


# --- eq. (11): sampled-action sparse estimate ---------------------------------------------------------


def test_sparse_advantages_put_the_advantage_on_the_sampled_token_only_eq11():
    g = torch.Generator().manual_seed(0)
    actions = torch.randint(0, 7, (2, 3), generator=g)
    token_adv = torch.randn(2, 3, generator=g)
    dense = sparse_advantages(token_adv, actions, 7)
    assert dense.shape == (2, 3, 7) and dense.dtype == torch.float32
    for b, t in np.ndindex(2, 3):
        for a in range(7):
            expected = float(token_adv[b, t]) if a == int(actions[b, t]) else 0.0
            assert float(dense[b, t, a]) == expected


def test_sparse_advantages_move_only_the_sampled_logit_of_z_star():
    """With eq. (11) in eq. (7), z* differs from z_old only at a_t, by A(s_t, a_t)/β."""
    z_old = torch.randn(4, 5)
    actions = torch.tensor([0, 4, 2, 2])
    token_adv = torch.tensor([1.0, -2.0, 0.5, 3.0])
    moved = optimal_logits(z_old, sparse_advantages(token_adv, actions, 5), 0.5) - z_old
    expected = torch.zeros(4, 5)
    expected[torch.arange(4), actions] = token_adv / 0.5
    torch.testing.assert_close(moved, expected)


@pytest.mark.parametrize(
    ("actions", "match"),
    [
        (torch.tensor([0, 5]), "actions"),  # id == |V|
        (torch.tensor([-1, 0]), "actions"),
        (torch.tensor([0.0, 1.0]), "actions"),  # not integer ids
        (torch.tensor([0, 1, 2]), "token_advantages"),  # shape mismatch
    ],
)
def test_sparse_advantages_reject_bad_actions(actions, match):
    with pytest.raises(ValueError, match=match):
        sparse_advantages(torch.zeros(2), actions, 5)


def test_sparse_advantages_reject_a_bad_vocab_size_or_non_finite_advantage():
    with pytest.raises(ValueError, match="vocab_size"):
        sparse_advantages(torch.zeros(2), torch.tensor([0, 1]), 0)
    with pytest.raises(ValueError, match="vocab_size"):
        sparse_advantages(torch.zeros(2), torch.tensor([0, 1]), 5.0)
    with pytest.raises(ValueError, match="token_advantages"):
        sparse_advantages(torch.tensor([0.0, float("nan")]), torch.tensor([0, 1]), 5)


# --- eqs. (12)–(13): dense estimates --------------------------------------------------------------------


def test_logprob_advantages_are_the_log_probabilities_of_phi_eq12():
    phi_logits = torch.randn(3, 4, 6) * 3
    got = logprob_advantages(phi_logits)
    np.testing.assert_allclose(
        got.double().numpy(), _log_softmax_np(phi_logits.numpy()), rtol=1e-5, atol=1e-6
    )
    torch.testing.assert_close(got.exp().sum(-1), torch.ones(3, 4))


def test_dpo_advantages_are_the_log_ratio_of_dpo_and_reference_models_eq13():
    g = torch.Generator().manual_seed(1)
    dpo, ref = torch.randn(2, 5, 8, generator=g) * 2, torch.randn(2, 5, 8, generator=g) * 2
    expected = _log_softmax_np(dpo.numpy()) - _log_softmax_np(ref.numpy())
    np.testing.assert_allclose(dpo_advantages(dpo, ref).double().numpy(), expected, rtol=1e-5, atol=1e-5)


def test_dpo_advantages_vanish_when_the_models_agree_up_to_a_logit_shift():
    ref = torch.randn(3, 9)
    torch.testing.assert_close(dpo_advantages(ref + 4.0, ref), torch.zeros(3, 9), atol=1e-5, rtol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_dense_advantages_are_fp32_for_low_precision_logits(dtype):
    x, y = torch.randn(2, 6).to(dtype), torch.randn(2, 6).to(dtype)
    assert logprob_advantages(x).dtype == torch.float32
    torch.testing.assert_close(dpo_advantages(x, y), dpo_advantages(x.float(), y.float()))


def test_dense_advantages_reject_mismatched_or_non_finite_logits():
    with pytest.raises(ValueError, match="ref_logits"):
        dpo_advantages(torch.zeros(2, 6), torch.zeros(2, 7))
    bad = torch.zeros(2, 6)
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="^dpo_logits"):
        dpo_advantages(bad, torch.zeros(2, 6))
    with pytest.raises(ValueError, match="^ref_logits"):
        dpo_advantages(torch.zeros(2, 6), bad)
    with pytest.raises(ValueError, match="logits"):
        logprob_advantages(bad)


# --- §4.4: per-step normalisation -----------------------------------------------------------------------------


def test_mean_normalisation_centres_the_advantage_over_the_vocabulary():
    adv = torch.randn(3, 4, 10) * 5 + 2
    centred = normalize_advantages(adv, "mean")
    torch.testing.assert_close(centred.mean(-1), torch.zeros(3, 4), atol=1e-5, rtol=0)
    torch.testing.assert_close(centred, adv - adv.mean(-1, keepdim=True))


def test_mean_std_normalisation_gives_mean_zero_and_unit_std_over_the_vocabulary():
    adv = torch.randn(3, 4, 10) * 5 + 2
    out = normalize_advantages(adv, "mean_std")
    a = adv.double().numpy()
    expected = (a - a.mean(-1, keepdims=True)) / (a.std(-1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(out.double().numpy(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.std(-1, unbiased=False), torch.ones(3, 4), atol=1e-5, rtol=0)


def test_none_normalisation_is_the_identity_in_fp32():
    adv = torch.randn(2, 7, dtype=torch.bfloat16)
    out = normalize_advantages(adv, "none")
    assert out.dtype == torch.float32
    assert torch.equal(out, adv.float())


def test_a_constant_advantage_row_normalises_to_zero_not_nan():
    out = normalize_advantages(torch.full((2, 5), 3.0), "mean_std")
    assert torch.equal(out, torch.zeros(2, 5))


def test_unknown_normalisation_is_rejected():
    with pytest.raises(ValueError, match="mode"):
        normalize_advantages(torch.zeros(2, 3), "zscore")


def test_after_centring_the_zero_shift_minimises_the_advantage_norm_sec44():
    """argmin_C ‖A + C‖² is C = −mean_a A (§4.4), which is 0 once A is centred; so is z* of eq. (7)."""
    g = torch.Generator().manual_seed(2)
    adv = (torch.randn(12, generator=g) + 1.5).double()
    shifts = np.linspace(-5, 5, 2001)
    norms = [float(torch.linalg.vector_norm(adv + c)) for c in shifts]
    assert shifts[int(np.argmin(norms))] == pytest.approx(-float(adv.mean()), abs=5e-3)

    centred = normalize_advantages(adv, "mean").double()
    centred_norms = [float(torch.linalg.vector_norm(centred + c)) for c in shifts]
    assert shifts[int(np.argmin(centred_norms))] == pytest.approx(0.0, abs=5e-3)


def test_after_centring_the_initial_lco_mse_is_smallest_for_the_unshifted_target():
    """At z = z_old, L_MSE = ‖A + C‖²/(|V|β²) — the numerator of the bound (19) — is minimised at C = 0."""
    g = torch.Generator().manual_seed(3)
    z_old = torch.randn(1, 12, generator=g)
    adv = normalize_advantages(torch.randn(1, 12, generator=g) + 2.0, "mean")
    beta = 0.5
    at_zero = float(lco_mse(z_old, z_old, adv, beta))
    np.testing.assert_allclose(at_zero, float((adv**2).sum()) / (12 * beta**2), rtol=1e-5)
    for c in (-1.0, -0.1, 0.01, 0.3, 2.0):
        assert float(lco_mse(z_old, z_old, adv + c, beta)) > at_zero


# --- group baselines (GRPO / RLOO / Dr. GRPO / batch) -------------------------------------------------------------


REWARDS = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 0.5, 0.5, 2.0, -1.0, 0.0, 3.0])


def _groups(rewards, G):
    return [rewards[i : i + G].double().numpy() for i in range(0, len(rewards), G)]


def test_group_mean_baseline_with_std_scale_is_grpo():
    """(r − mean_group) / (std_group + 1e-4), Bessel-corrected std as in TRL's GRPOTrainer."""
    expected = np.concatenate([(g - g.mean()) / (g.std(ddof=1) + 1e-4) for g in _groups(REWARDS, 4)])
    np.testing.assert_allclose(group_advantages(REWARDS, 4).double().numpy(), expected, rtol=1e-5, atol=1e-6)


def test_group_mean_baseline_without_scale_is_dr_grpo():
    expected = np.concatenate([g - g.mean() for g in _groups(REWARDS, 4)])
    got = group_advantages(REWARDS, 4, scale="none")
    np.testing.assert_allclose(got.double().numpy(), expected, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(got.view(3, 4).mean(-1), torch.zeros(3), atol=1e-6, rtol=0)


@pytest.mark.parametrize("scale", ["none", "std"])
def test_leave_one_out_baseline_is_the_mean_of_the_other_completions(scale):
    expected = []
    for g in _groups(REWARDS, 4):
        loo = np.array([g[i] - np.mean([g[j] for j in range(4) if j != i]) for i in range(4)])
        expected.append(loo / (g.std(ddof=1) + 1e-4) if scale == "std" else loo)
    got = group_advantages(REWARDS, 4, baseline="leave_one_out", scale=scale)
    np.testing.assert_allclose(got.double().numpy(), np.concatenate(expected), rtol=1e-5, atol=1e-6)


def test_no_baseline_keeps_the_rewards():
    torch.testing.assert_close(group_advantages(REWARDS, 4, baseline="none", scale="none"), REWARDS)


def test_a_group_with_identical_rewards_gets_zero_advantage_not_nan():
    adv = group_advantages(REWARDS, 4)
    assert torch.equal(adv[4:8], torch.zeros(4))


@pytest.mark.parametrize("baseline", ["mean", "leave_one_out", "none"])
def test_batch_scale_takes_baseline_and_population_std_over_the_whole_batch(baseline):
    r = REWARDS.double().numpy()
    if baseline == "mean":
        centred = r - r.mean()
    elif baseline == "leave_one_out":
        centred = np.array([r[i] - np.mean(np.delete(r, i)) for i in range(len(r))])
    else:
        centred = r
    expected = centred / (r.std() + 1e-4)
    got = group_advantages(REWARDS, 1, baseline=baseline, scale="batch")
    np.testing.assert_allclose(got.double().numpy(), expected, rtol=1e-5, atol=1e-6)


def test_std_scale_with_one_completion_per_prompt_is_rejected_not_nan():
    with pytest.raises(ValueError, match="group_size"):
        group_advantages(REWARDS, 1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rewards": REWARDS.view(3, 4), "group_size": 4}, "rewards"),
        ({"rewards": REWARDS, "group_size": 5}, "group_size"),
        ({"rewards": REWARDS, "group_size": 0}, "group_size"),
        ({"rewards": REWARDS, "group_size": 4, "baseline": "median"}, "baseline"),
        ({"rewards": REWARDS, "group_size": 4, "scale": "group"}, "scale"),
        ({"rewards": torch.tensor([1.0, float("nan")]), "group_size": 2}, "rewards"),
        ({"rewards": REWARDS, "group_size": 1, "baseline": "leave_one_out", "scale": "none"}, "group_size"),
    ],
)
def test_group_advantages_reject_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        group_advantages(**kwargs)


# --- GAE ------------------------------------------------------------------------------------------------------------


def _gae_reference(rewards, values, mask, gamma, lam):
    """Â_t = Σ_l (γλ)^l δ_{t+l} over each row's valid tokens, δ_t = r_t + γ·V_{t+1} − V_t, V past the end = 0."""
    r, v, m = rewards.double().numpy(), values.double().numpy(), mask.numpy()
    adv = np.zeros_like(r)
    for b in range(r.shape[0]):
        steps = [t for t in range(r.shape[1]) if m[b, t]]
        for k, t in enumerate(steps):
            total = 0.0
            for ell, t_l in enumerate(steps[k:]):
                v_next = v[b, steps[k + ell + 1]] if k + ell + 1 < len(steps) else 0.0
                delta = r[b, t_l] + gamma * v_next - v[b, t_l]
                total += (gamma * lam) ** ell * delta
            adv[b, t] = total
    return adv, np.where(m, adv + v, 0.0)


@pytest.mark.parametrize(("gamma", "lam"), [(1.0, 0.95), (0.9, 0.8), (0.99, 1.0), (1.0, 0.0)])
def test_gae_matches_the_hand_written_sum_of_discounted_td_errors(gamma, lam):
    g = torch.Generator().manual_seed(4)
    rewards = torch.randn(4, 7, generator=g)
    values = torch.randn(4, 7, generator=g)
    mask = torch.ones(4, 7, dtype=torch.bool)
    mask[1, 5:] = False  # right padding
    mask[2, 1:] = False
    mask[3, :3] = False  # left padding
    adv, ret = gae(rewards, values, mask, gamma=gamma, lam=lam)
    expected_adv, expected_ret = _gae_reference(rewards, values, mask, gamma, lam)
    np.testing.assert_allclose(adv.double().numpy(), expected_adv, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ret.double().numpy(), expected_ret, rtol=1e-5, atol=1e-6)
    assert torch.all(adv[~mask] == 0)


def test_gae_with_lambda_one_is_the_monte_carlo_return_minus_the_value():
    rewards = torch.tensor([[0.0, 0.0, 1.0, 2.0]])
    values = torch.tensor([[0.5, -0.2, 0.3, 0.1]])
    adv, ret = gae(rewards, values, gamma=0.9, lam=1.0)
    mc = torch.tensor([[0.9**2 * 1 + 0.9**3 * 2, 0.9 * 1 + 0.9**2 * 2, 1 + 0.9 * 2, 2.0]])
    torch.testing.assert_close(ret, mc)
    torch.testing.assert_close(adv, mc - values)


def test_gae_rejects_mismatched_or_non_finite_inputs():
    with pytest.raises(ValueError, match="values"):
        gae(torch.zeros(2, 5), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="mask"):
        gae(torch.zeros(2, 5), torch.zeros(2, 5), torch.ones(5, dtype=torch.bool))
    with pytest.raises(ValueError, match="^rewards"):
        gae(torch.full((2, 5), float("nan")), torch.zeros(2, 5))
    with pytest.raises(ValueError, match="^values"):
        gae(torch.zeros(2, 5), torch.full((2, 5), float("inf")))


def test_std_normalisation_divides_by_the_population_std_without_centring():
    g = torch.Generator().manual_seed(4)
    adv = torch.randn(3, 4, 10, generator=g) * 5 + 2
    out = normalize_advantages(adv, "std")
    a = adv.double().numpy()
    np.testing.assert_allclose(out.double().numpy(), a / a.std(-1, keepdims=True), rtol=1e-5)
    # No centring: the mean keeps its sign and the ratio between entries is unchanged.
    assert torch.all(torch.sign(out.mean(-1)) == torch.sign(adv.mean(-1)))


def test_std_normalisation_leaves_a_row_without_spread_unscaled():
    out = normalize_advantages(torch.full((2, 5), 3.0), "std")
    assert torch.equal(out, torch.full((2, 5), 3.0))


@pytest.mark.parametrize("mode", ["mean", "mean_std", "std", "none"])
def test_statistics_over_a_support_are_those_of_its_entries_applied_to_the_whole_row(mode):
    g = torch.Generator().manual_seed(5)
    adv = torch.randn(4, 9, generator=g) * 3 + 1
    ids = torch.stack([torch.randperm(9, generator=g)[:4] for _ in range(4)])
    out = normalize_advantages(adv, mode, support=ids)
    assert out.shape == adv.shape
    a = adv.double().numpy()
    s = np.take_along_axis(a, ids.numpy(), -1)
    mean, std = s.mean(-1, keepdims=True), s.std(-1, keepdims=True)
    expected = {
        "mean": a - mean,
        "mean_std": (a - mean) / (std + 1e-6),
        "std": a / std,
        "none": a,
    }[mode]
    np.testing.assert_allclose(out.double().numpy(), expected, rtol=1e-5, atol=1e-6)
    # Without a support the statistics are the whole row's, which differ.
    if mode != "none":
        assert not torch.allclose(out, normalize_advantages(adv, mode))


def test_a_support_of_the_whole_vocabulary_gives_the_whole_vocabulary_statistics():
    adv = torch.randn(3, 6)
    ids = torch.arange(6).flip(0).expand(3, 6)
    for mode in ("mean", "mean_std", "std"):
        torch.testing.assert_close(
            normalize_advantages(adv, mode, support=ids), normalize_advantages(adv, mode)
        )


@pytest.mark.parametrize(
    ("support", "mode"),
    [
        (torch.zeros(3, 1, dtype=torch.long), "mean"),  # one entry: no statistics
        (torch.zeros(3, 1, dtype=torch.long), "std"),
        (torch.tensor([[0, 6]] * 3), "mean"),  # id out of range
        (torch.tensor([[0, 1]] * 2), "mean"),  # token shape mismatch
        (torch.tensor([0, 1, 2]), "mean"),  # no k axis
        (torch.tensor([[0.0, 1.0]] * 3), "std"),  # not integer ids
        (3, "mean"),  # top-k needs z_old: resolve it with support_ids first
    ],
)
def test_bad_support_for_normalisation_is_rejected_naming_support(support, mode):
    with pytest.raises(ValueError, match="support"):
        normalize_advantages(torch.randn(3, 6), mode, support=support)


def test_one_entry_support_is_accepted_without_normalisation():
    adv = torch.randn(3, 6)
    assert torch.equal(normalize_advantages(adv, "none", support=torch.zeros(3, 1, dtype=torch.long)), adv)


# --- REINFORCE's baseline and PPO's reward shaping / whitening (pure functions the trainer calls) -----


def test_reinforce_advantages_subtract_the_mean_of_the_other_completions_without_scaling():
    rewards = torch.tensor([1.0, 0.0, 0.0, 2.0, 5.0, 1.0])
    adv = reinforce_advantages(rewards, 3)
    expected = []
    for group in rewards.view(2, 3).tolist():
        for i, r in enumerate(group):
            others = [x for j, x in enumerate(group) if j != i]
            expected.append(r - sum(others) / len(others))
    torch.testing.assert_close(adv, torch.tensor(expected))


def test_reinforce_advantages_with_one_completion_per_prompt_use_the_batch_mean_and_std():
    rewards = torch.tensor([1.0, 3.0, 2.0, 6.0])
    r = rewards.double().numpy()
    expected = (r - r.mean()) / (r.std() + 1e-4)
    np.testing.assert_allclose(reinforce_advantages(rewards, 1).double().numpy(), expected, rtol=1e-6)


def test_ppo_token_rewards_put_the_outcome_on_the_last_valid_token_and_the_kl_on_every_token():
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    old = torch.tensor([[-1.0, -2.0, -0.5, -9.0], [-0.1, -0.2, -7.0, -7.0]])
    ref = torch.tensor([[-1.5, -1.0, -0.5, -1.0], [-0.3, -0.2, -1.0, -1.0]])
    rewards = torch.tensor([2.0, -1.0])
    kl_coef = 0.1
    expected = torch.zeros(2, 4)
    for b in range(2):
        valid = [t for t in range(4) if mask[b, t]]
        for t in valid:
            expected[b, t] = -kl_coef * float(old[b, t] - ref[b, t])
        expected[b, valid[-1]] += float(rewards[b])
    torch.testing.assert_close(ppo_token_rewards(rewards, mask, old, ref, kl_coef), expected)
    without_reference = ppo_token_rewards(rewards, mask)
    torch.testing.assert_close(without_reference, torch.tensor([[0, 0, 2.0, 0], [0, -1.0, 0, 0]]))


def test_ppo_token_rewards_reject_mismatched_shapes_and_a_reference_without_old_logps():
    mask = torch.ones(2, 3)
    with pytest.raises(ValueError, match="sequence_rewards"):
        ppo_token_rewards(torch.ones(3), mask)
    with pytest.raises(ValueError, match="old_logps"):
        ppo_token_rewards(torch.ones(2), mask, None, torch.zeros(2, 3), 0.1)
    with pytest.raises(ValueError, match="ref_logps"):
        ppo_token_rewards(torch.ones(2), mask, torch.zeros(2, 3), torch.zeros(2, 2), 0.1)


def test_whiten_advantages_have_zero_mean_and_unit_std_over_the_valid_tokens_and_zero_elsewhere():
    adv = torch.tensor([[1.0, 4.0, 100.0], [2.0, -3.0, -50.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])
    valid = np.array([1.0, 4.0, 2.0, -3.0])
    expected = np.zeros((2, 3))
    expected[:, :2] = ((valid - valid.mean()) / (valid.std() + 1e-8)).reshape(2, 2)
    np.testing.assert_allclose(whiten_advantages(adv, mask).double().numpy(), expected, rtol=1e-6, atol=1e-7)


def test_ppo_gae_advantages_are_whitened_gae_and_leave_the_returns_unwhitened():
    torch.manual_seed(0)
    rewards, values = torch.randn(3, 5), torch.randn(3, 5)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]])
    raw, returns = gae(rewards, values, mask, 0.9, 0.8)
    adv, ret = ppo_gae_advantages(rewards, values, mask, 0.9, 0.8)
    m = mask.bool()
    torch.testing.assert_close(ret, returns)
    torch.testing.assert_close(adv[m].mean(), torch.tensor(0.0), atol=1e-6, rtol=0)
    torch.testing.assert_close(adv[m].std(unbiased=False), torch.tensor(1.0), atol=1e-5, rtol=0)
    # whitening is affine over the valid tokens: the order of the raw advantages is kept
    assert torch.equal(adv[m].argsort(), raw[m].argsort())
    assert bool((adv[~m] == 0).all())
