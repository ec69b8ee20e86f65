"""SFT (eq. 1) and the policy-gradient baselines (eq. 3, DAPO, REINFORCE, GSPO, CISPO, value loss).

Expected values are written independently here (NumPy loops, or a separately built autograd graph),
and the GRPO-family losses are also held against TRL 1.16's own ``GRPOTrainer._compute_loss``.
"""

import types
from collections import defaultdict

import numpy as np
import pytest
import torch

from lco import (
    cispo_loss,
    gspo_loss,
    gspo_sequence_log_ratio,
    ppo_clip_loss,
    reinforce_loss,
    sft_loss,
    value_loss,
)
from lco.objectives import ppo_clip_per_token


def _token_batch(B=4, T=6, seed=0, spread=0.3):
    g = torch.Generator().manual_seed(seed)
    logps = -torch.rand(B, T, generator=g) * 3.0
    old_logps = logps + spread * torch.randn(B, T, generator=g)
    adv = torch.randn(B, T, generator=g)
    mask = torch.rand(B, T, generator=g) < 0.7
    mask[:, 0] = True
    return logps, old_logps, adv, mask


def _masked_token_mean(values: np.ndarray, mask: np.ndarray) -> float:
    n = int(mask.sum())
    return float(sum(values[i] for i in np.ndindex(values.shape) if mask[i]) / n) if n else 0.0


def _ppo_reference_per_token(logp, old_logp, adv, eps_low, eps_high):
    """−min(r·A, clip(r, 1 − ε_low, 1 + ε_high)·A), eq. (3), one token at a time."""
    out = np.empty(logp.shape)
    for i in np.ndindex(logp.shape):
        r = np.exp(float(logp[i]) - float(old_logp[i]))
        a = float(adv[i])
        out[i] = -min(r * a, min(max(r, 1 - eps_low), 1 + eps_high) * a)
    return out


# --- TRL 1.16's GRPOTrainer._compute_loss, run on our tensors ----------------------------------------


class _SingleProcess:
    num_processes = 1
    sync_gradients = True

    def gather(self, x):
        return x

    gather_for_metrics = gather

    def reduce(self, x, reduction="sum"):
        return x


def _trl_grpo_loss(loss_type, logps, old_logps, advantages, mask, eps_low, eps_high, level="token", L=None):
    """TRL's loss for precomputed per-token log-probs (β = 0: no reference-model KL term)."""
    from trl.trainer.grpo_trainer import GRPOTrainer

    B, T = logps.shape
    trainer = types.SimpleNamespace(
        top_entropy_quantile=1.0,
        off_policy_mask_threshold=None,
        importance_sampling_level=level,
        beta=0.0,
        loss_type=loss_type,
        epsilon_low=eps_low,
        epsilon_high=eps_high,
        args=types.SimpleNamespace(delta=None, steps_per_generation=1),
        use_vllm=False,
        vllm_importance_sampling_correction=False,
        model=types.SimpleNamespace(training=True),
        current_gradient_accumulation_steps=1,
        max_completion_length=L,
        _entropy_bonus_enabled=False,
        aux_loss_enabled=False,
        accelerator=_SingleProcess(),
        _metrics={"train": defaultdict(list)},
        _get_per_token_logps_and_entropies=lambda *a, **k: (logps, torch.zeros_like(logps), None),
    )
    inputs = {
        "prompt_ids": torch.zeros(B, 1, dtype=torch.long),
        "prompt_mask": torch.ones(B, 1, dtype=torch.long),
        "completion_ids": torch.zeros(B, T, dtype=torch.long),
        "completion_mask": mask.long(),
        "advantages": advantages,
        "old_per_token_logps": old_logps,
        "num_items_in_batch": mask.sum().float(),
    }
    return GRPOTrainer._compute_loss(trainer, None, inputs)


def _loss_and_grad(fn, logps):
    x = logps.clone().requires_grad_(True)
    loss = fn(x)
    (grad,) = torch.autograd.grad(loss, x)
    return loss.detach(), grad


@pytest.mark.parametrize(
    ("trl_type", "aggregation", "eps_low", "eps_high"),
    [
        ("grpo", "sequence_mean", 0.2, 0.2),  # original GRPO: mean of per-sequence token means
        ("bnpo", "token_mean", 0.2, 0.2),
        ("dr_grpo", "constant", 0.2, 0.2),  # Σ / (B · max_completion_length)
        ("dapo", "token_mean", 0.2, 0.28),  # clip-higher
    ],
)
def test_ppo_clip_loss_matches_trl_grpo_loss_types(trl_type, aggregation, eps_low, eps_high):
    logps, old_logps, _, mask = _token_batch(B=4, T=6, seed=1, spread=0.4)
    seq_adv = torch.tensor([1.5, -0.7, 0.3, -2.0])
    L = 9
    ours = _loss_and_grad(
        lambda x: ppo_clip_loss(x, old_logps, seq_adv, eps_low, eps_high, mask, aggregation, L), logps
    )
    theirs = _loss_and_grad(
        lambda x: _trl_grpo_loss(trl_type, x, old_logps, seq_adv, mask, eps_low, eps_high, L=L), logps
    )
    torch.testing.assert_close(ours, theirs)


def test_gspo_loss_matches_trl_sequence_level_importance_sampling():
    logps, old_logps, _, mask = _token_batch(B=5, T=7, seed=2, spread=0.05)
    seq_adv = torch.tensor([1.0, -1.0, 0.5, -0.3, 2.0])
    eps_low, eps_high = 0.01, 0.02  # some sequences inside, some outside the clip range
    ours = _loss_and_grad(lambda x: gspo_loss(x, old_logps, seq_adv, eps_low, eps_high, mask), logps)
    theirs = _loss_and_grad(
        lambda x: _trl_grpo_loss("grpo", x, old_logps, seq_adv, mask, eps_low, eps_high, level="sequence"),
        logps,
    )
    torch.testing.assert_close(ours, theirs)


def test_cispo_loss_matches_trl():
    logps, old_logps, _, mask = _token_batch(B=4, T=6, seed=3, spread=0.5)
    seq_adv = torch.tensor([1.0, -0.5, 2.0, -1.0])
    eps_high = 1.2  # caps some of the ratios
    ours = _loss_and_grad(lambda x: cispo_loss(x, old_logps, seq_adv, eps_high, mask), logps)
    theirs = _loss_and_grad(
        lambda x: _trl_grpo_loss("cispo", x, old_logps, seq_adv, mask, 0.2, eps_high), logps
    )
    torch.testing.assert_close(ours, theirs)


# --- SFT (eq. 1, gradient eq. 4) ----------------------------------------------------------------


def _sft_batch(seed=0, shape=(3, 4, 6)):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(*shape, generator=g) * 2
    targets = torch.randint(0, shape[-1], shape[:-1], generator=g)
    mask = torch.rand(shape[:-1], generator=g) < 0.6
    mask.view(-1)[0] = True
    return logits, targets, mask


def test_sft_loss_is_minus_mean_log_likelihood_of_the_targets_eq1():
    logits, targets, mask = _sft_batch(seed=1)
    z = logits.double().numpy()
    nll = np.empty(targets.shape)
    for i in np.ndindex(targets.shape):
        row = z[i]
        nll[i] = -(row[targets[i]] - np.log(np.sum(np.exp(row))))
    np.testing.assert_allclose(
        float(sft_loss(logits, targets, mask)), _masked_token_mean(nll, mask.numpy()), rtol=1e-6
    )


def test_sft_logit_gradient_is_pi_minus_one_hot_over_masked_tokens_eq4():
    logits, targets, mask = _sft_batch(seed=2)
    z = logits.clone().requires_grad_(True)
    sft_loss(z, targets, mask).backward()
    pi = torch.softmax(logits.double(), -1)
    expected = (pi - torch.nn.functional.one_hot(targets, logits.shape[-1]).double()) / mask.sum()
    expected[~mask] = 0
    torch.testing.assert_close(z.grad.double(), expected, rtol=1e-5, atol=1e-7)


# --- PPO / DAPO (eq. 3, gradient eq. 5) -----------------------------------------------------------------

# (ratio, advantage, eps_low, eps_high, clipped?) — both sides of the clip, both signs of A, and the
# decoupled ε of DAPO where only the upper bound moves.
CLIP_CASES = [
    (1.3, 1.0, 0.2, 0.2, True),  # A > 0, r above 1 + ε: clipped
    (0.7, 1.0, 0.2, 0.2, False),  # A > 0, r below 1 − ε: still active (min picks r·A)
    (0.7, -1.0, 0.2, 0.2, True),  # A < 0, r below 1 − ε: clipped
    (1.3, -1.0, 0.2, 0.2, False),  # A < 0, r above 1 + ε: still active
    (1.0, 2.0, 0.2, 0.2, False),
    (1.25, 1.0, 0.2, 0.28, False),  # DAPO: 1.25 < 1 + ε_high, active
    (1.25, 1.0, 0.2, 0.2, True),  # ...but clipped under symmetric PPO
    (1.3, 1.0, 0.2, 0.28, True),
    (0.75, -1.0, 0.3, 0.2, False),  # decoupled lower bound 1 − 0.3 = 0.7: active
    (0.75, -1.0, 0.2, 0.28, True),
]


@pytest.mark.parametrize(("ratio", "adv", "eps_low", "eps_high", "clipped"), CLIP_CASES)
def test_ppo_clip_value_and_logprob_gradient_on_each_side_of_the_clip(ratio, adv, eps_low, eps_high, clipped):
    old = torch.tensor([[-1.0]])
    logp = (old + np.log(ratio)).requires_grad_(True)
    loss = ppo_clip_loss(logp, old, torch.tensor([[adv]]), eps_low, eps_high)
    loss.backward()
    clip_r = min(max(ratio, 1 - eps_low), 1 + eps_high)
    assert float(loss.detach()) == pytest.approx(-min(ratio * adv, clip_r * adv), rel=1e-5)
    # d/d log π of −r·A is −r·A in the active region, and exactly 0 once clipped
    expected_grad = 0.0 if clipped else -ratio * adv
    assert float(logp.grad) == pytest.approx(expected_grad, rel=1e-5, abs=0)


@pytest.mark.parametrize(("eps_low", "eps_high"), [(0.2, 0.2), (0.2, 0.28), (0.1, 0.5)])
def test_ppo_clip_per_token_matches_the_reference_formula(eps_low, eps_high):
    logps, old_logps, adv, _ = _token_batch(B=5, T=8, seed=4, spread=0.5)
    expected = _ppo_reference_per_token(logps.numpy(), old_logps.numpy(), adv.numpy(), eps_low, eps_high)
    got = ppo_clip_per_token(logps, old_logps, adv, eps_low, eps_high)
    np.testing.assert_allclose(got.double().numpy(), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("aggregation", ["token_mean", "sequence_mean", "constant"])
def test_ppo_clip_loss_aggregates_the_reference_per_token_values(aggregation):
    logps, old_logps, adv, mask = _token_batch(B=3, T=5, seed=5)
    per_token = _ppo_reference_per_token(logps.numpy(), old_logps.numpy(), adv.numpy(), 0.2, 0.2)
    m = mask.numpy()
    if aggregation == "token_mean":
        expected = _masked_token_mean(per_token, m)
    elif aggregation == "sequence_mean":
        expected = np.mean([_masked_token_mean(per_token[b], m[b]) for b in range(3)])
    else:
        expected = (per_token * m).sum() / (3 * 11)
    got = ppo_clip_loss(logps, old_logps, adv, mask=mask, aggregation=aggregation, max_completion_length=11)
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)


def test_ppo_logit_gradient_in_the_active_region_is_eq5():
    """∂L/∂z_a' = A/π_old(a_t)·π_θ(a_t)·(π_θ(a') − 1[a' = a_t]), divided by the number of tokens."""
    g = torch.Generator().manual_seed(6)
    B, T, V = 3, 4, 7
    old_logits = torch.randn(B, T, V, generator=g)
    logits = old_logits + 0.02 * torch.randn(B, T, V, generator=g)  # r ≈ 1: every token active
    actions = torch.randint(0, V, (B, T), generator=g)
    adv = torch.randn(B, T, generator=g)
    z = logits.clone().requires_grad_(True)
    logps = torch.log_softmax(z, -1).gather(-1, actions[..., None])[..., 0]
    old_logps = torch.log_softmax(old_logits, -1).gather(-1, actions[..., None])[..., 0]
    ppo_clip_loss(logps, old_logps, adv).backward()

    pi, pi_old = torch.softmax(logits.double(), -1), torch.softmax(old_logits.double(), -1)
    expected = np.empty((B, T, V))
    for b, t in np.ndindex(B, T):
        a_t = int(actions[b, t])
        coef = float(adv[b, t]) / float(pi_old[b, t, a_t]) * float(pi[b, t, a_t])
        for a in range(V):
            expected[b, t, a] = coef * (float(pi[b, t, a]) - (a == a_t)) / (B * T)
    np.testing.assert_allclose(z.grad.double().numpy(), expected, rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize("loss_fn", ["ppo", "reinforce", "cispo"])
def test_one_advantage_per_sequence_broadcasts_over_tokens_not_over_sequences(loss_fn):
    """A [B] advantage (TRL's layout) means one per sequence, also when B == T."""
    logps, old_logps, _, mask = _token_batch(B=4, T=4, seed=7)
    seq_adv = torch.tensor([1.0, -2.0, 0.5, 3.0])
    fn = {
        "ppo": lambda a: ppo_clip_loss(logps, old_logps, a, mask=mask),
        "reinforce": lambda a: reinforce_loss(logps, a, mask=mask),
        "cispo": lambda a: cispo_loss(logps, old_logps, a, mask=mask),
    }[loss_fn]
    explicit = fn(seq_adv[:, None].repeat(1, 4))
    torch.testing.assert_close(fn(seq_adv), explicit)
    torch.testing.assert_close(fn(seq_adv[:, None]), explicit)


# --- REINFORCE -------------------------------------------------------------------------------------------


def test_reinforce_value_and_gradient_are_minus_advantage_times_logprob():
    logps, _, adv, mask = _token_batch(seed=8)
    a = adv.clone().requires_grad_(True)
    x = logps.clone().requires_grad_(True)
    loss = reinforce_loss(x, a, mask=mask)
    loss.backward()
    expected = _masked_token_mean(-(adv * logps).double().numpy(), mask.numpy())
    np.testing.assert_allclose(float(loss.detach()), expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(x.grad, torch.where(mask, -adv / mask.sum(), 0.0))
    assert a.grad is None  # A is a fixed weight: no gradient into the advantage estimator


def test_reinforce_constant_aggregation_is_dr_grpo_normaliser():
    logps, _, adv, mask = _token_batch(B=3, T=5, seed=9)
    got = reinforce_loss(logps, adv, mask=mask, aggregation="constant", max_completion_length=8)
    np.testing.assert_allclose(float(got), float((-(adv * logps) * mask).sum()) / (3 * 8), rtol=1e-6)


# --- GSPO -------------------------------------------------------------------------------------------------


def test_gspo_sequence_ratio_is_exp_of_the_mean_token_log_ratio_at_every_token():
    logps, old_logps, _, mask = _token_batch(B=3, T=6, seed=10)
    log_s = gspo_sequence_log_ratio(logps, old_logps, mask)
    assert log_s.shape == logps.shape
    for b in range(3):
        valid = [t for t in range(6) if mask[b, t]]
        # geometric mean of the token ratios π_θ/π_old over the sequence
        ratios = [np.exp(float(logps[b, t]) - float(old_logps[b, t])) for t in valid]
        s_b = float(np.prod(ratios) ** (1.0 / len(valid)))
        np.testing.assert_allclose(torch.exp(log_s[b]).numpy(), np.full(6, s_b), rtol=1e-5)


def test_gspo_sequence_log_ratio_passes_gradient_to_each_token_separately():
    """The GSPO-token form: ∂ log s_{i,t} / ∂ log π(y_t') = 1[t = t'], so the gradient flows per token."""
    logps, old_logps, _, mask = _token_batch(B=2, T=5, seed=11)
    x = logps.clone().requires_grad_(True)
    weights = torch.randn(2, 5, generator=torch.Generator().manual_seed(0))
    (gspo_sequence_log_ratio(x, old_logps, mask) * weights).sum().backward()
    torch.testing.assert_close(x.grad, weights)


@pytest.mark.parametrize(("eps_low", "eps_high"), [(3e-4, 4e-4), (0.05, 0.05), (10.0, 10.0)])
def test_gspo_loss_value_and_gradient_match_the_sequence_level_objective(eps_low, eps_high):
    """−(1/B)·Σ_i min(s_i·A_i, clip(s_i)·A_i), s_i = exp(mean_t log r_{i,t}), differentiated as a whole."""
    logps, old_logps, _, mask = _token_batch(B=4, T=6, seed=12, spread=0.05)
    seq_adv = torch.tensor([1.0, -1.0, 0.4, -0.2])
    ours = _loss_and_grad(lambda x: gspo_loss(x, old_logps, seq_adv, eps_low, eps_high, mask), logps)

    def sequence_level(x):
        m = mask.double()
        s = torch.exp(((x.double() - old_logps.double()) * m).sum(-1) / m.sum(-1))
        clipped = torch.clamp(s, 1 - eps_low, 1 + eps_high)
        return -torch.minimum(s * seq_adv.double(), clipped * seq_adv.double()).mean()

    reference = _loss_and_grad(sequence_level, logps)
    torch.testing.assert_close(ours[0].double(), reference[0], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(ours[1], reference[1], rtol=1e-5, atol=1e-7)
    if eps_low < 1e-3:  # GSPO's own ε: this batch has clipped sequences, which must get no gradient
        assert (ours[1].abs().sum(-1) == 0).any()


# --- CISPO --------------------------------------------------------------------------------------------------


def test_cispo_weight_is_clipped_and_detached_so_clipped_tokens_still_get_gradient():
    old = torch.zeros(1, 3)
    ratios = torch.tensor([[0.5, 1.0, 3.0]])
    adv = torch.tensor([[1.0, -1.0, 2.0]])
    logp = (old + ratios.log()).requires_grad_(True)
    loss = cispo_loss(logp, old, adv, eps_high=2.0)
    loss.backward()
    weight = torch.clamp(ratios, max=2.0)
    torch.testing.assert_close(loss.detach(), (-(weight * adv * logp.detach())).mean())
    # −sg[w]·A·log π: the derivative is −w·A/n, with no r-derivative and no zeroing of the capped token
    torch.testing.assert_close(logp.grad, -(weight * adv) / 3)
    assert float(logp.grad[0, 2]) != 0.0


# --- value loss ----------------------------------------------------------------------------------------------


def test_value_loss_matches_ppos_clipped_value_loss_and_its_gradient():
    eps = 0.2
    values = torch.tensor([[1.0, 0.5, 2.0, 0.0, -1.0]])
    old_values = torch.tensor([[0.5, 0.5, 1.0, 0.1, -1.5]])
    returns = torch.tensor([[2.0, 0.0, 0.0, 0.05, 1.0]])
    v = values.clone().requires_grad_(True)
    old = old_values.clone().requires_grad_(True)
    ret = returns.clone().requires_grad_(True)
    loss = value_loss(v, old, ret, clip_range_value=eps)
    loss.backward()
    expected = 0.0
    for t in range(5):
        vt, vo, rt = float(values[0, t]), float(old_values[0, t]), float(returns[0, t])
        v_clip = min(max(vt, vo - eps), vo + eps)
        expected += 0.5 * max((vt - rt) ** 2, (v_clip - rt) ** 2) / 5
    np.testing.assert_allclose(float(loss.detach()), expected, rtol=1e-6)
    # per token, by hand: (V − R)/n where the unclipped branch wins or V is inside V_old ± ε,
    # 0 where the clipped branch wins with V outside the range (that branch is flat in V)
    by_hand = [
        0.0,  # V=1, V_old=0.5, R=2: clip(V)=0.7 is farther from R and flat → no gradient
        (0.5 - 0.0) / 5,  # V = V_old: both branches equal
        (2.0 - 0.0) / 5,  # V=2, V_old=1, R=0: unclipped (V − R)² = 4 > 1.44 wins
        (0.0 - 0.05) / 5,  # inside the clip range
        0.0,  # V=−1, V_old=−1.5, R=1: clip(V)=−1.3 wins, flat
    ]
    np.testing.assert_allclose(v.grad.double().numpy()[0], by_hand, rtol=1e-6, atol=1e-8)
    assert old.grad is None and ret.grad is None


# --- all-false mask and bad input --------------------------------------------------------------------------

ALL_LOSSES = {
    "ppo_token_mean": lambda x, o, a, m: ppo_clip_loss(x, o, a, mask=m),
    "ppo_sequence_mean": lambda x, o, a, m: ppo_clip_loss(x, o, a, mask=m, aggregation="sequence_mean"),
    "ppo_constant": lambda x, o, a, m: ppo_clip_loss(
        x, o, a, mask=m, aggregation="constant", max_completion_length=6
    ),
    "reinforce": lambda x, o, a, m: reinforce_loss(x, a, mask=m),
    "gspo": lambda x, o, a, m: gspo_loss(x, o, a[:, 0], mask=m),
    "cispo": lambda x, o, a, m: cispo_loss(x, o, a, mask=m),
    "value": lambda x, o, a, m: value_loss(x, o, a, mask=m),
}


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_all_false_mask_gives_exactly_zero_loss_and_zero_gradient(name):
    logps, old_logps, adv, mask = _token_batch(seed=13, spread=3.0)
    x = logps.clone().requires_grad_(True)
    loss = ALL_LOSSES[name](x, old_logps, adv, torch.zeros_like(mask))
    loss.backward()
    assert float(loss.detach()) == 0.0
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_sft_all_false_mask_gives_exactly_zero_loss_and_zero_gradient():
    logits, targets, mask = _sft_batch(seed=14)
    z = logits.clone().requires_grad_(True)
    loss = sft_loss(z, targets, torch.zeros_like(mask))
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.equal(z.grad, torch.zeros_like(z))


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_wrong_mask_shape_is_rejected(name):
    logps, old_logps, adv, _ = _token_batch(B=4, T=6)
    with pytest.raises(ValueError, match="mask"):
        ALL_LOSSES[name](logps, old_logps, adv, torch.ones(4, dtype=torch.bool))


@pytest.mark.parametrize("name", ["ppo_token_mean", "cispo", "gspo"])
def test_mismatched_old_logps_are_rejected(name):
    logps, _, adv, _ = _token_batch(B=4, T=6)
    with pytest.raises(ValueError, match="old_logps"):
        ALL_LOSSES[name](logps, torch.zeros(4, 5), adv, None)


@pytest.mark.parametrize("shape", [(3, 6), (4, 5), (4, 6, 1), (6,)])
@pytest.mark.parametrize("name", ["ppo", "reinforce", "cispo"])
def test_token_advantages_of_a_foreign_shape_are_rejected(name, shape):
    logps, old_logps, _, _ = _token_batch(B=4, T=6)
    fn = {
        "ppo": lambda a: ppo_clip_loss(logps, old_logps, a),
        "reinforce": lambda a: reinforce_loss(logps, a),
        "cispo": lambda a: cispo_loss(logps, old_logps, a),
    }[name]
    with pytest.raises(ValueError, match="token_advantages"):
        fn(torch.zeros(shape))


@pytest.mark.parametrize("shape", [(4, 6), (3,), (3, 1)])
def test_gspo_needs_one_advantage_per_sequence(shape):
    logps, old_logps, _, _ = _token_batch(B=4, T=6)
    with pytest.raises(ValueError, match="sequence_advantages"):
        gspo_loss(logps, old_logps, torch.zeros(shape))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("argument", ["logps", "old_logps", "token_advantages"])
def test_non_finite_policy_gradient_inputs_are_rejected_naming_the_argument(argument, bad):
    logps, old_logps, adv, _ = _token_batch()
    args = {"logps": logps, "old_logps": old_logps, "token_advantages": adv}
    args[argument][1, 2] = bad
    with pytest.raises(ValueError, match=f"^{argument}"):
        ppo_clip_loss(args["logps"], args["old_logps"], args["token_advantages"])
    with pytest.raises(ValueError, match=f"^{argument}"):
        cispo_loss(args["logps"], args["old_logps"], args["token_advantages"])


def test_non_finite_sequence_advantages_are_rejected_by_gspo():
    logps, old_logps, _, _ = _token_batch()
    with pytest.raises(ValueError, match="sequence_advantages"):
        gspo_loss(logps, old_logps, torch.tensor([1.0, float("nan"), 0.0, 0.0]))


@pytest.mark.parametrize("argument", ["old_values", "returns"])
def test_value_loss_rejects_mismatched_or_non_finite_inputs(argument):
    values = torch.zeros(2, 3)
    args = {"old_values": torch.zeros(2, 3), "returns": torch.zeros(2, 3)}
    args[argument] = torch.zeros(2, 4)
    with pytest.raises(ValueError, match=argument):
        value_loss(values, args["old_values"], args["returns"])
    args[argument] = torch.full((2, 3), float("nan"))
    with pytest.raises(ValueError, match=argument):
        value_loss(values, args["old_values"], args["returns"])


def test_negative_or_nan_clip_ranges_are_rejected():
    logps, old_logps, adv, _ = _token_batch()
    with pytest.raises(ValueError, match="eps_low"):
        ppo_clip_loss(logps, old_logps, adv, eps_low=-0.1)
    with pytest.raises(ValueError, match="eps_high"):
        gspo_loss(logps, old_logps, adv[:, 0], eps_high=-1e-4)
    with pytest.raises(ValueError, match="eps_high"):
        cispo_loss(logps, old_logps, adv, eps_high=0.0)
    with pytest.raises(ValueError, match="clip_range_value"):
        value_loss(logps, old_logps, adv, clip_range_value=-0.2)
    nan = float("nan")
    with pytest.raises(ValueError, match="eps_high"):
        ppo_clip_loss(logps, old_logps, adv, eps_high=nan)
    with pytest.raises(ValueError, match="eps_low"):
        gspo_loss(logps, old_logps, adv[:, 0], eps_low=nan)
    with pytest.raises(ValueError, match="eps_high"):
        cispo_loss(logps, old_logps, adv, eps_high=nan)
    with pytest.raises(ValueError, match="clip_range_value"):
        value_loss(logps, old_logps, adv, clip_range_value=nan)


@pytest.mark.parametrize(
    "bad_targets", [torch.tensor([[0, 6]]), torch.tensor([[-1, 0]]), torch.tensor([[0.0, 1.0]])]
)
def test_sft_rejects_targets_outside_the_vocabulary_or_not_integer(bad_targets):
    logits = torch.zeros(1, 2, 6)
    with pytest.raises(ValueError, match="targets"):
        sft_loss(logits, bad_targets)


def test_sft_rejects_targets_of_the_wrong_shape_and_non_finite_logits():
    logits = torch.zeros(2, 3, 6)
    with pytest.raises(ValueError, match="targets"):
        sft_loss(logits, torch.zeros(2, 4, dtype=torch.long))
    logits[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="logits"):
        sft_loss(logits, torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="mask"):
        sft_loss(torch.zeros(2, 3, 6), torch.zeros(2, 3, dtype=torch.long), mask=torch.ones(3, 2))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_logprobs_give_the_fp32_result_of_the_rounded_inputs(dtype):
    logps, old_logps, adv, mask = _token_batch(seed=15)
    lo = [t.to(dtype) for t in (logps, old_logps, adv)]
    for name, fn in ALL_LOSSES.items():
        got = fn(*lo, mask)
        assert got.dtype == torch.float32, name
        torch.testing.assert_close(got, fn(*(t.float() for t in lo), mask), msg=name)
