"""z* and π* (paper §4, Prop. 4.1, eqs. 6–7 and App. D) against independent computations."""

import numpy as np
import pytest
import torch

from lco import lco_kld, lco_lch, lco_mse, optimal_log_policy, optimal_logits


def _random_step(shape=(3, 5), seed=0):
    g = torch.Generator().manual_seed(seed)
    z_old = torch.randn(*shape, generator=g) * 2.0
    adv = torch.randn(*shape, generator=g)
    return z_old, adv


def _pi_star_eq28(z_old: np.ndarray, adv: np.ndarray, beta: float) -> np.ndarray:
    """π*(a) = π_old(a)·exp(A(a)/β) / Σ_a' π_old(a')·exp(A(a')/β), eq. (28), with plain loops."""
    out = np.empty_like(z_old, dtype=np.float64)
    for idx in np.ndindex(z_old.shape[:-1]):
        row = z_old[idx].astype(np.float64)
        pi_old = np.exp(row - row.max())
        pi_old /= pi_old.sum()
        unnorm = [pi_old[a] * np.exp(adv[idx][a] / beta) for a in range(row.shape[0])]
        out[idx] = np.array(unnorm) / sum(unnorm)
    return out


def _eq2_objective(pi: np.ndarray, pi_old: np.ndarray, adv: np.ndarray, beta: float) -> float:
    """E_{a~π}[A] − β·KL(π ‖ π_old), eq. (2), for one state."""
    support = pi > 0
    kl = np.sum(pi[support] * np.log(pi[support] / pi_old[support]))
    return float(np.sum(pi * adv) - beta * kl)


# --- closed forms -------------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.1, 1.0, 3.0])
def test_optimal_logits_equals_old_logits_plus_advantage_over_beta_eq7(beta):
    z_old, adv = _random_step()
    expected = np.empty(z_old.shape)
    for i in range(z_old.shape[0]):
        for a in range(z_old.shape[1]):
            expected[i, a] = float(z_old[i, a]) + float(adv[i, a]) / beta
    np.testing.assert_allclose(optimal_logits(z_old, adv, beta).numpy(), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("beta", [0.1, 1.0, 3.0])
def test_optimal_log_policy_is_pi_old_times_exp_advantage_over_beta_eq28(beta):
    z_old, adv = _random_step(shape=(2, 3, 7), seed=1)
    expected = _pi_star_eq28(z_old.numpy(), adv.numpy(), beta)
    got = optimal_log_policy(z_old, adv, beta).exp().double().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_optimal_log_policy_is_normalised():
    z_old, adv = _random_step(shape=(4, 11), seed=2)
    total = optimal_log_policy(z_old, adv, 0.5).exp().sum(-1)
    torch.testing.assert_close(total, torch.ones(4))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_targets_are_fp32_whatever_the_input_dtype(dtype):
    z_old, adv = _random_step()
    z_old, adv = z_old.to(dtype), adv.to(dtype)
    z_star = optimal_logits(z_old, adv, 2.0)
    assert z_star.dtype == torch.float32
    assert optimal_log_policy(z_old, adv, 2.0).dtype == torch.float32
    # fp32 math on the rounded inputs, not an fp16/bf16 division
    torch.testing.assert_close(z_star, z_old.float() + adv.float() / 2.0, rtol=0, atol=0)


# --- π* solves eq. (2) (Prop. 4.1, App. D) -------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.2, 1.0, 5.0])
def test_pi_star_maximises_eq2_against_random_points_of_the_simplex(beta):
    rng = np.random.default_rng(3)
    z_old, adv = _random_step(shape=(1, 6), seed=3)
    pi_old = torch.softmax(z_old.double(), -1).numpy()[0]
    a = adv.double().numpy()[0]
    pi_star = optimal_log_policy(z_old, adv, beta).double().exp().numpy()[0]
    pi_star /= pi_star.sum()  # remove fp32 rounding from the normalisation
    best = _eq2_objective(pi_star, pi_old, a, beta)
    for _ in range(200):
        q = rng.dirichlet(np.ones(6))
        for t in (1e-3, 0.1, 1.0):  # small and large moves along the simplex
            candidate = (1 - t) * pi_star + t * q
            assert _eq2_objective(candidate, pi_old, a, beta) <= best + 1e-9


def test_pi_star_is_a_stationary_point_of_the_lagrangian_eq25():
    """A − β·log(π*/π_old) is the same for every action (eq. 25 with a common multiplier λ)."""
    beta = 0.7
    z_old, adv = _random_step(shape=(3, 9), seed=4)
    log_pi_old = torch.log_softmax(z_old.double(), -1)
    residual = adv.double() - beta * (optimal_log_policy(z_old, adv, beta).double() - log_pi_old)
    spread = residual.max(-1).values - residual.min(-1).values
    assert float(spread.max()) < 1e-5


def test_pi_star_tends_to_pi_old_as_beta_grows_and_to_argmax_as_beta_shrinks():
    z_old, adv = _random_step(shape=(2, 5), seed=5)
    big = optimal_log_policy(z_old, adv, 1e5).exp()
    torch.testing.assert_close(big, torch.softmax(z_old, -1), atol=1e-4, rtol=0)
    small = optimal_log_policy(z_old, adv, 1e-4).exp()
    assert torch.equal(small.argmax(-1), adv.argmax(-1))
    assert float(small.max(-1).values.min()) > 0.999


# --- invariance to per-step constant shifts of A (§4.4) -------------------------------------------


def test_pi_star_and_lco_kld_are_invariant_to_a_per_step_constant_shift_of_the_advantage():
    z_old, adv = _random_step(shape=(4, 8), seed=6)
    logits = torch.randn(4, 8, generator=torch.Generator().manual_seed(7))
    shift = torch.tensor([[3.0], [-2.0], [0.5], [10.0]])  # one constant per step
    torch.testing.assert_close(
        optimal_log_policy(z_old, adv + shift, 0.5), optimal_log_policy(z_old, adv, 0.5)
    )
    torch.testing.assert_close(lco_kld(logits, z_old, adv + shift, 0.5), lco_kld(logits, z_old, adv, 0.5))


def test_lco_mse_and_lch_change_under_a_per_step_constant_shift_of_the_advantage():
    """The regression losses target z* itself, not π*: a shift C moves z* by C/β (§4.4)."""
    z_old, adv = _random_step(shape=(4, 8), seed=6)
    logits = torch.randn(4, 8, generator=torch.Generator().manual_seed(7))
    shift = torch.full((4, 1), 1.5)
    beta = 0.5
    for loss in (lco_mse, lco_lch):
        assert not torch.allclose(loss(logits, z_old, adv + shift, beta), loss(logits, z_old, adv, beta))
    # and for MSE by exactly the closed form: mean((z − z* − C/β)²)
    diff = (logits - z_old - adv / beta - 1.5 / beta).double()
    torch.testing.assert_close(
        lco_mse(logits, z_old, adv + shift, beta).double(), (diff**2).mean(), rtol=1e-5, atol=1e-6
    )


# --- bad input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "beta", [0.0, -1.0, float("nan"), float("inf"), -float("inf"), "1.0", None, True, torch.ones(2)]
)
@pytest.mark.parametrize("fn", [optimal_logits, optimal_log_policy])
def test_invalid_beta_is_rejected_with_a_message_naming_beta(fn, beta):
    z_old, adv = _random_step()
    with pytest.raises(ValueError, match="beta"):
        fn(z_old, adv, beta)


@pytest.mark.parametrize("beta", [np.float32(0.5), np.float64(0.5), torch.tensor(0.5), 1])
def test_numeric_scalar_betas_are_accepted(beta):
    z_old, adv = _random_step()
    torch.testing.assert_close(optimal_logits(z_old, adv, beta), z_old + adv / float(beta))


def test_a_beta_small_enough_to_overflow_z_star_is_rejected_naming_beta():
    z_old, adv = _random_step()
    with pytest.raises(ValueError, match="beta"):
        optimal_logits(z_old, adv, 1e-40)


@pytest.mark.parametrize("adv_shape", [(3, 4), (2, 5), (3, 5, 1)])
def test_advantages_of_another_shape_than_old_logits_are_rejected(adv_shape):
    z_old = torch.zeros(3, 5)
    with pytest.raises(ValueError, match="advantages"):
        optimal_logits(z_old, torch.zeros(adv_shape), 1.0)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("which", ["old_logits", "advantages"])
def test_non_finite_inputs_are_rejected_with_the_argument_named(which, bad):
    z_old, adv = _random_step()
    target = z_old if which == "old_logits" else adv
    target[1, 2] = bad
    with pytest.raises(ValueError, match=which):
        optimal_logits(z_old, adv, 1.0)


# --- stability options: per-sign β and the support of π* -----------------------------------------


def _pi_star_on_support_np(z_old: np.ndarray, adv: np.ndarray, beta: float, ids: np.ndarray) -> np.ndarray:
    """π* of eq. (28) with the normaliser's sum restricted to the ids of each row, 0 elsewhere (loops)."""
    out = np.zeros_like(z_old, dtype=np.float64)
    for idx in np.ndindex(z_old.shape[:-1]):
        row = z_old[idx].astype(np.float64)
        pi_old = np.exp(row - row.max())
        pi_old /= pi_old.sum()
        unnorm = {int(a): pi_old[a] * np.exp(adv[idx][a] / beta) for a in ids[idx]}
        total = sum(unnorm.values())
        for a, u in unnorm.items():
            out[idx][a] = u / total
    return out


@pytest.mark.parametrize("beta_negative", [0.05, 2.0, 100.0])
def test_beta_negative_divides_exactly_the_negative_advantages(beta_negative):
    z_old, adv = _random_step(shape=(4, 9), seed=5)
    beta = 0.7
    got = optimal_logits(z_old, adv, beta, beta_negative=beta_negative).double().numpy()
    a, zo = adv.double().numpy(), z_old.double().numpy()
    expected = np.where(a < 0, zo + a / beta_negative, zo + a / beta)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    assert (adv < 0).any() and (adv > 0).any()  # both branches exercised


def test_beta_negative_none_or_equal_to_beta_is_the_paper_bit_for_bit():
    z_old, adv = _random_step(seed=6)
    paper = optimal_logits(z_old, adv, 0.9)
    assert torch.equal(optimal_logits(z_old, adv, 0.9, beta_negative=None), paper)
    assert torch.equal(optimal_logits(z_old, adv, 0.9, beta_negative=0.9), paper)
    assert torch.equal(optimal_log_policy(z_old, adv, 0.9, support=None), torch.log_softmax(paper, -1))


@pytest.mark.parametrize("k", [1, 2, 4, 7])
def test_top_k_support_is_pi_old_times_exp_advantage_renormalised_on_the_top_k_of_old_logits(k):
    z_old, adv = _random_step(shape=(3, 2, 7), seed=7)
    got = optimal_log_policy(z_old, adv, 0.6, support=k).exp().double().numpy()
    top = np.argsort(-z_old.numpy(), axis=-1)[..., :k]
    expected = _pi_star_on_support_np(z_old.numpy(), adv.numpy(), 0.6, top)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    # Outside the support log π* is exactly −inf (π* = 0), not a tiny number.
    log_pi = optimal_log_policy(z_old, adv, 0.6, support=k)
    assert int(torch.isinf(log_pi).sum()) == log_pi[..., 0].numel() * (7 - k)


def test_token_id_support_with_per_sign_beta_matches_the_independent_formula():
    z_old, adv = _random_step(shape=(5, 8), seed=8)
    g = torch.Generator().manual_seed(1)
    ids = torch.stack([torch.randperm(8, generator=g)[:3] for _ in range(5)])
    got = optimal_log_policy(z_old, adv, 0.5, beta_negative=4.0, support=ids).exp().double().numpy()
    # Per-sign β folded into the advantage: A/β_− = (A·β/β_−)/β where A < 0.
    a = adv.double().numpy()
    a_eff = np.where(a < 0, a * 0.5 / 4.0, a)
    expected = _pi_star_on_support_np(z_old.numpy(), a_eff, 0.5, ids.numpy())
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_pi_star_on_a_support_is_the_full_pi_star_conditioned_on_that_support():
    """Restricting eq. (6)'s normaliser is the same as conditioning π* on the support event."""
    z_old, adv = _random_step(shape=(6, 11), seed=9)
    full = optimal_log_policy(z_old, adv, 1.3).exp()
    ids = z_old.topk(4, dim=-1).indices
    on_support = optimal_log_policy(z_old, adv, 1.3, support=4).exp()
    conditioned = full.gather(-1, ids) / full.gather(-1, ids).sum(-1, keepdim=True)
    torch.testing.assert_close(on_support.gather(-1, ids), conditioned, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(on_support.sum(-1), torch.ones(6))


def test_a_support_of_the_whole_vocabulary_is_the_paper():
    z_old, adv = _random_step(shape=(3, 6), seed=10)
    paper = optimal_log_policy(z_old, adv, 0.8)
    torch.testing.assert_close(optimal_log_policy(z_old, adv, 0.8, support=6), paper)
    ids = torch.arange(6).flip(0).expand(3, 6)
    torch.testing.assert_close(optimal_log_policy(z_old, adv, 0.8, support=ids), paper)


def _bad_support_cases():
    return [
        (0, "support"),
        (-2, "support"),
        (6, "support"),  # k > V = 5
        (True, "support"),
        (2.0, "support"),
        (torch.tensor([[0, 5]] * 3), "support"),  # id out of range
        (torch.tensor([[0, -1]] * 3), "support"),
        (torch.tensor([[0.0, 1.0]] * 3), "support"),  # not integer ids
        (torch.tensor([[0, 1]] * 2), "support"),  # token shape (2,) vs (3,)
        (torch.tensor([0, 1, 2]), "support"),  # no k axis
        (torch.zeros(3, 0, dtype=torch.long), "support"),  # k = 0
        (torch.tensor([[1, 1], [0, 2], [3, 4]]), "support"),  # the same id twice in a row
    ]


@pytest.mark.parametrize("case", range(len(_bad_support_cases())))
def test_bad_support_is_rejected_naming_support(case):
    z_old, adv = _random_step()
    support, name = _bad_support_cases()[case]
    with pytest.raises(ValueError, match=name):
        optimal_log_policy(z_old, adv, 1.0, support=support)


@pytest.mark.parametrize("beta_negative", [0.0, -1.0, float("nan"), float("inf"), "2", True])
@pytest.mark.parametrize("fn", [optimal_logits, optimal_log_policy])
def test_bad_beta_negative_is_rejected_naming_beta_negative(fn, beta_negative):
    z_old, adv = _random_step()
    with pytest.raises(ValueError, match="beta_negative"):
        fn(z_old, adv, 1.0, beta_negative=beta_negative)


def test_a_beta_negative_small_enough_to_overflow_is_rejected_naming_it():
    z_old, adv = _random_step()
    with pytest.raises(ValueError, match="beta_negative"):
        optimal_logits(z_old, adv, 1.0, beta_negative=1e-40)


def test_token_ids_of_any_integer_dtype_are_accepted():
    z_old, adv = _random_step(shape=(3, 5), seed=11)
    ids = torch.tensor([[0, 2], [4, 1], [3, 0]])
    expected = optimal_log_policy(z_old, adv, 1.0, support=ids)
    for dtype in (torch.int32, torch.int16, torch.uint8):
        torch.testing.assert_close(optimal_log_policy(z_old, adv, 1.0, support=ids.to(dtype)), expected)
        torch.testing.assert_close(
            lco_kld(z_old, z_old, adv, 1.0, support=ids.to(dtype)),
            lco_kld(z_old, z_old, adv, 1.0, support=ids),
        )
