"""LCO-MSE / LCO-LCH / LCO-KLD (paper §4.1, eqs. 8–10): values, logit gradients, properties, bad input.

Every expected value is computed independently here (float64 NumPy with plain loops), from the
paper's formulas: the mean over the vocabulary for MSE/LCH, the sum over it for KLD, the mean over
the masked tokens for E_t, and the closed-form logit gradients 2/|V|·(z − z*), tanh(z − z*)/|V|
(eq. 44) and π_θ − π* (eq. 47).
"""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lco import lco_kld, lco_lch, lco_mse, optimal_logits
from lco.objectives import LCO_LOSSES, log_cosh

LOSSES = {"lco_mse": lco_mse, "lco_lch": lco_lch, "lco_kld": lco_kld}


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def _reference_per_token(name: str, z: np.ndarray, z_star: np.ndarray) -> float:
    """One token's bracket of eq. (8), (9) or (10), written from the paper."""
    V = z.shape[0]
    if name == "lco_mse":
        return sum((z[a] - z_star[a]) ** 2 for a in range(V)) / V
    if name == "lco_lch":
        return sum(np.log(np.cosh(z[a] - z_star[a])) for a in range(V)) / V
    pi, pi_star = _softmax(z), _softmax(z_star)
    return sum(pi_star[a] * np.log(pi_star[a] / pi[a]) for a in range(V))


def _reference_logit_grad(name: str, z: np.ndarray, z_star: np.ndarray) -> np.ndarray:
    """∂(bracket)/∂z for one token: 2/|V|·(z − z*), eq. (44), eq. (47)."""
    V = z.shape[0]
    if name == "lco_mse":
        return 2.0 / V * (z - z_star)
    if name == "lco_lch":
        return np.tanh(z - z_star) / V
    return _softmax(z) - _softmax(z_star)


def _reference_loss_and_grad(name, z, z_old, adv, beta, mask):
    """E_t over the masked tokens of the bracket, and its gradient w.r.t. z (float64)."""
    z, z_old, adv = (t.double().numpy() for t in (z, z_old, adv))
    mask = np.ones(z.shape[:-1], bool) if mask is None else mask.numpy().astype(bool)
    n = int(mask.sum())
    total, grad = 0.0, np.zeros_like(z)
    for idx in np.ndindex(z.shape[:-1]):
        if not mask[idx]:
            continue
        z_star = z_old[idx] + adv[idx] / beta  # eq. (7)
        total += _reference_per_token(name, z[idx], z_star)
        grad[idx] = _reference_logit_grad(name, z[idx], z_star) / n
    return (total / n if n else 0.0), grad


def _inputs(shape=(2, 3, 7), seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(*shape, generator=g) * scale
    old_logits = torch.randn(*shape, generator=g) * scale
    adv = torch.randn(*shape, generator=g)
    mask = torch.rand(*shape[:-1], generator=g) < 0.6
    mask.view(-1)[0] = True
    return logits, old_logits, adv, mask


# --- values and gradients vs the paper --------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.3, 1.0, 4.0])
@pytest.mark.parametrize("use_mask", [True, False])
@pytest.mark.parametrize("name", LOSSES)
def test_loss_value_matches_the_papers_formula_averaged_over_masked_tokens(name, use_mask, beta):
    logits, old_logits, adv, mask = _inputs(seed=1)
    mask = mask if use_mask else None
    expected, _ = _reference_loss_and_grad(name, logits, old_logits, adv, beta, mask)
    got = LOSSES[name](logits, old_logits, adv, beta, mask=mask)
    assert got.dtype == torch.float32 and got.dim() == 0
    np.testing.assert_allclose(float(got), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("beta", [0.3, 1.0])
@pytest.mark.parametrize("name", LOSSES)
def test_autograd_logit_gradient_is_the_closed_form_over_the_number_of_masked_tokens(name, beta):
    """MSE: 2/|V|·(z − z*); LCH: tanh(z − z*)/|V| (eq. 44); KLD: π_θ − π* (eq. 47); 0 off the mask."""
    logits, old_logits, adv, mask = _inputs(seed=2, scale=2.0)
    logits.requires_grad_(True)
    LOSSES[name](logits, old_logits, adv, beta, mask=mask).backward()
    _, expected = _reference_loss_and_grad(name, logits.detach(), old_logits, adv, beta, mask)
    np.testing.assert_allclose(logits.grad.double().numpy(), expected, rtol=1e-5, atol=1e-8)
    assert torch.all(logits.grad[~mask] == 0)


@pytest.mark.parametrize("name", LOSSES)
def test_logit_grad_function_agrees_with_autograd_of_the_per_token_value(name):
    logits, old_logits, adv, _ = _inputs(shape=(4, 5, 9), seed=3, scale=3.0)
    target = optimal_logits(old_logits, adv, 0.5)
    spec = LCO_LOSSES[name]
    assert spec.name == name
    z = logits.clone().requires_grad_(True)
    per_token = spec.value(z, target)
    assert per_token.shape == logits.shape[:-1]
    (autograd,) = torch.autograd.grad(per_token.sum(), z)
    torch.testing.assert_close(spec.logit_grad(logits, target), autograd, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", LOSSES)
def test_no_gradient_reaches_old_logits_or_advantages(name):
    """z* = z_old + A/β is a fixed target (it comes from the behaviour policy and the RM)."""
    logits, old_logits, adv, mask = _inputs(seed=4)
    for t in (logits, old_logits, adv):
        t.requires_grad_(True)
    LOSSES[name](logits, old_logits, adv, 1.0, mask=mask).backward()
    assert logits.grad is not None
    assert old_logits.grad is None and adv.grad is None


@pytest.mark.parametrize("name", LOSSES)
def test_no_mask_is_the_same_as_an_all_true_mask(name):
    logits, old_logits, adv, mask = _inputs(seed=5)
    all_true = torch.ones_like(mask)
    torch.testing.assert_close(
        LOSSES[name](logits, old_logits, adv, 0.7), LOSSES[name](logits, old_logits, adv, 0.7, mask=all_true)
    )


def test_log_cosh_matches_numpy_and_does_not_overflow_for_large_arguments():
    x = torch.linspace(-30, 30, 121)
    np.testing.assert_allclose(log_cosh(x).double().numpy(), np.log(np.cosh(x.double().numpy())), atol=1e-6)
    big = torch.tensor([1e3, -1e4, 1e30])
    np.testing.assert_allclose(
        log_cosh(big).double().numpy(), big.double().abs().numpy() - np.log(2.0), rtol=1e-6
    )
    z = big.clone().requires_grad_(True)
    log_cosh(z).sum().backward()
    torch.testing.assert_close(z.grad, torch.tensor([1.0, -1.0, 1.0]))  # tanh(±∞) = ±1


def test_lco_lch_logit_gradient_is_bounded_by_one_over_vocab_whatever_the_advantage():
    """The robustness claim under eq. (9): |∂ℓ/∂z_a| = |tanh(·)|/|V| ≤ 1/|V| even for huge |A|/β."""
    logits, old_logits, adv, _ = _inputs(shape=(1, 6), seed=6)
    logits.requires_grad_(True)
    lco_lch(logits, old_logits, adv * 1e6, 0.1).backward()
    assert float(logits.grad.abs().max()) <= 1.0 / 6 + 1e-7
    assert float(logits.grad.abs().max()) > 0.99 / 6


def test_lco_kld_equals_cross_entropy_to_pi_star_minus_its_entropy():
    """An independent route to eq. (10): KL(π*‖π_θ) = H(π*, π_θ) − H(π*), via torch's cross_entropy."""
    logits, old_logits, adv, _ = _inputs(shape=(5, 8), seed=7)
    pi_star = torch.softmax(old_logits + adv / 0.5, -1)
    cross = torch.nn.functional.cross_entropy(logits, pi_star, reduction="none")
    entropy = -(pi_star * pi_star.log()).sum(-1)
    torch.testing.assert_close(lco_kld(logits, old_logits, adv, 0.5), (cross - entropy).mean())


# --- properties over shapes, dtypes and masks ----------------------------------------------------


@st.composite
def lco_case(draw):
    lead = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    vocab = draw(st.integers(2, 16))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    scale = draw(st.sampled_from([0.1, 1.0, 8.0]))
    logits = torch.randn(*lead, vocab, generator=g) * scale
    old_logits = torch.randn(*lead, vocab, generator=g) * scale
    adv = torch.randn(*lead, vocab, generator=g) * scale
    kind = draw(st.sampled_from(["random", "all_true", "all_false", "none"]))
    mask = {
        "random": torch.rand(lead, generator=g) < 0.5,
        "all_true": torch.ones(lead, dtype=torch.bool),
        "all_false": torch.zeros(lead, dtype=torch.bool),
        "none": None,
    }[kind]
    dtype = draw(st.sampled_from([torch.float32, torch.bfloat16, torch.float16]))
    beta = draw(st.sampled_from([0.05, 0.5, 1.0, 7.0]))
    return logits.to(dtype), old_logits.to(dtype), adv.to(dtype), mask, beta


PROPERTY_SETTINGS = settings(max_examples=30, deadline=None)


@pytest.mark.parametrize("name", LOSSES)
@PROPERTY_SETTINGS
@given(case=lco_case())
def test_property_loss_is_finite_nonnegative_fp32_with_zero_gradient_off_the_mask(name, case):
    logits, old_logits, adv, mask, beta = case
    z = logits.clone().requires_grad_(True)
    loss = LOSSES[name](z, old_logits, adv, beta, mask=mask)
    assert loss.dtype == torch.float32
    assert torch.isfinite(loss) and float(loss.detach()) >= 0.0
    loss.backward()
    assert z.grad.dtype == logits.dtype
    assert torch.isfinite(z.grad).all()
    if mask is not None:
        assert torch.all(z.grad[~mask] == 0)
        if not mask.any():
            assert float(loss.detach()) == 0.0


@pytest.mark.parametrize("name", LOSSES)
@PROPERTY_SETTINGS
@given(case=lco_case())
def test_property_low_precision_inputs_give_the_fp32_result_of_the_same_rounded_inputs(name, case):
    logits, old_logits, adv, mask, beta = case
    low = LOSSES[name](logits, old_logits, adv, beta, mask=mask)
    upcast = LOSSES[name](logits.float(), old_logits.float(), adv.float(), beta, mask=mask)
    torch.testing.assert_close(low, upcast)


@pytest.mark.parametrize("name", LOSSES)
@PROPERTY_SETTINGS
@given(case=lco_case())
def test_property_loss_and_gradient_vanish_when_logits_equal_optimal_logits(name, case):
    _, old_logits, adv, mask, beta = case
    z = optimal_logits(old_logits, adv, beta).requires_grad_(True)
    loss = LOSSES[name](z, old_logits, adv, beta, mask=mask)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(0.0, abs=1e-6)
    torch.testing.assert_close(z.grad, torch.zeros_like(z), atol=1e-6, rtol=0)


# --- all-false mask and bad input --------------------------------------------------------------------


@pytest.mark.parametrize("name", LOSSES)
def test_all_false_mask_gives_exactly_zero_loss_and_zero_gradient(name):
    logits, old_logits, adv, mask = _inputs(seed=8, scale=50.0)
    z = logits.clone().requires_grad_(True)
    loss = LOSSES[name](z, old_logits, adv, 0.01, mask=torch.zeros_like(mask))
    loss.backward()
    assert float(loss.detach()) == 0.0
    assert torch.equal(z.grad, torch.zeros_like(z))


@pytest.mark.parametrize("beta", [0.0, -0.5, float("nan"), float("inf"), "1"])
@pytest.mark.parametrize("name", LOSSES)
def test_invalid_beta_is_rejected(name, beta):
    logits, old_logits, adv, _ = _inputs()
    with pytest.raises(ValueError, match="beta"):
        LOSSES[name](logits, old_logits, adv, beta)


@pytest.mark.parametrize(
    ("argument", "shape"),
    [
        ("old_logits", (2, 3, 6)),  # another vocabulary size
        ("old_logits", (2, 4, 7)),
        ("advantages", (2, 3, 8)),
        ("advantages", (3, 7)),
        ("advantages", (2, 3)),  # token advantages where dense ones are needed (use sparse_advantages)
    ],
)
@pytest.mark.parametrize("name", LOSSES)
def test_mismatched_shapes_are_rejected_naming_the_argument(name, argument, shape):
    logits, old_logits, adv, _ = _inputs(shape=(2, 3, 7))
    args = {"old_logits": old_logits, "advantages": adv}
    args[argument] = torch.zeros(shape)
    with pytest.raises(ValueError, match=argument):
        LOSSES[name](logits, args["old_logits"], args["advantages"], 1.0)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("argument", ["logits", "old_logits", "advantages"])
@pytest.mark.parametrize("name", LOSSES)
def test_non_finite_inputs_are_rejected_naming_the_argument(name, argument, bad):
    logits, old_logits, adv, mask = _inputs()
    args = {"logits": logits, "old_logits": old_logits, "advantages": adv}
    args[argument][0, 1, 2] = bad
    with pytest.raises(ValueError, match=f"^{argument}"):
        LOSSES[name](args["logits"], args["old_logits"], args["advantages"], 1.0, mask=mask)


@pytest.mark.parametrize("mask_shape", [(2,), (3, 2), (2, 3, 7), (2, 3, 1)])
@pytest.mark.parametrize("name", LOSSES)
def test_mask_of_the_wrong_shape_is_rejected(name, mask_shape):
    logits, old_logits, adv, _ = _inputs(shape=(2, 3, 7))
    with pytest.raises(ValueError, match="mask"):
        LOSSES[name](logits, old_logits, adv, 1.0, mask=torch.ones(mask_shape, dtype=torch.bool))


@pytest.mark.parametrize("name", LOSSES)
def test_float_mask_with_nan_is_rejected(name):
    logits, old_logits, adv, mask = _inputs()
    float_mask = mask.float()
    float_mask[0, 0] = float("nan")
    with pytest.raises(ValueError, match="mask"):
        LOSSES[name](logits, old_logits, adv, 1.0, mask=float_mask)


def test_log_cosh_keeps_relative_precision_near_zero_in_fp32():
    # log cosh x = x²/2 − x⁴/12 + …; the |x| + log1p(e^{−2|x|}) − log 2 form cancels to 0 here in fp32.
    from lco.objectives.lco import log_cosh

    x = torch.tensor([1e-4, 1e-3, 3e-2], dtype=torch.float32)
    expected = x.double() ** 2 / 2 - x.double() ** 4 / 12
    torch.testing.assert_close(log_cosh(x).double(), expected, rtol=1e-5, atol=0)


# --- stability options: support of π* and per-sign β ---------------------------------------------


def _reference_on_support(name, z, z_old, adv, beta, mask, ids, beta_negative=None):
    """E_t of the support-restricted bracket and its z-gradient (float64 loops, from the definitions).

    MSE/LCH: (1/k)·Σ_{a∈S} of the squared / log-cosh error; KLD: Σ_{a∈S} π*_a log(π*_a / π_θ,a)
    with π* ∝ exp(z*) on S and π_θ the softmax over the whole vocabulary. Gradients: (2/k)(z − z*),
    tanh(z − z*)/k on S and 0 elsewhere; π_θ − π*_S.
    """
    z, z_old, adv = (t.double().numpy() for t in (z, z_old, adv))
    bn = beta if beta_negative is None else beta_negative
    mask = np.ones(z.shape[:-1], bool) if mask is None else mask.numpy().astype(bool)
    n = int(mask.sum())
    total, grad = 0.0, np.zeros_like(z)
    for idx in np.ndindex(z.shape[:-1]):
        if not mask[idx]:
            continue
        S = [int(a) for a in ids[idx]]
        k = len(S)
        z_star = {a: z_old[idx][a] + adv[idx][a] / (bn if adv[idx][a] < 0 else beta) for a in S}
        if name == "lco_kld":
            pi = _softmax(z[idx])
            e = {a: np.exp(z_star[a]) for a in S}
            pi_star = {a: e[a] / sum(e.values()) for a in S}
            total += sum(pi_star[a] * np.log(pi_star[a] / pi[a]) for a in S)
            g = pi.copy()
            for a in S:
                g[a] -= pi_star[a]
        else:
            g = np.zeros_like(z[idx])
            for a in S:
                d = z[idx][a] - z_star[a]
                total += (d * d if name == "lco_mse" else np.log(np.cosh(d))) / k
                g[a] = (2.0 * d if name == "lco_mse" else np.tanh(d)) / k
        grad[idx] = g / n
    return (total / n if n else 0.0), grad


@pytest.mark.parametrize("beta_negative", [None, 6.0])
@pytest.mark.parametrize("support", [2, 5, "ids"])
@pytest.mark.parametrize("name", LOSSES)
def test_support_value_and_autograd_gradient_match_the_closed_forms(name, support, beta_negative):
    logits, old_logits, adv, mask = _inputs(shape=(3, 4, 9), seed=11)
    if support == "ids":
        g = torch.Generator().manual_seed(3)
        support = torch.stack([torch.randperm(9, generator=g)[:3] for _ in range(12)]).view(3, 4, 3)
        ids = support.numpy()
    else:
        ids = old_logits.topk(support, dim=-1).indices.numpy()
    z = logits.clone().requires_grad_(True)
    loss = LOSSES[name](z, old_logits, adv, 0.7, mask, beta_negative=beta_negative, support=support)
    loss.backward()
    expected, expected_grad = _reference_on_support(
        name, logits, old_logits, adv, 0.7, mask, ids, beta_negative
    )
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5, abs=1e-6)
    np.testing.assert_allclose(z.grad.double().numpy(), expected_grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", LOSSES)
def test_registry_logit_grad_on_a_support_agrees_with_autograd_of_its_value(name):
    g = torch.Generator().manual_seed(12)
    z = torch.randn(6, 10, generator=g).requires_grad_(True)
    ids = torch.randn(6, 10, generator=g).topk(4, dim=-1).indices
    z_star = torch.randn(6, 4, generator=g)
    value = LCO_LOSSES[name].value(z, z_star, ids)
    (auto,) = torch.autograd.grad(value.sum(), z)
    torch.testing.assert_close(
        LCO_LOSSES[name].logit_grad(z.detach(), z_star, ids), auto, atol=1e-6, rtol=1e-5
    )
    if name != "lco_kld":  # MSE/LCH touch only the support's logits
        assert torch.all(auto.scatter(-1, ids, 0.0) == 0)


@pytest.mark.parametrize("name", LOSSES)
def test_options_off_and_whole_vocabulary_support_give_the_papers_loss(name):
    logits, old_logits, adv, mask = _inputs(seed=13)
    paper, paper_grad = _reference_loss_and_grad(name, logits, old_logits, adv, 0.9, mask)
    for kwargs in ({}, {"beta_negative": None, "support": None}, {"support": 7}, {"beta_negative": 0.9}):
        z = logits.clone().requires_grad_(True)
        loss = LOSSES[name](z, old_logits, adv, 0.9, mask, **kwargs)
        loss.backward()
        assert float(loss.detach()) == pytest.approx(paper, rel=1e-5, abs=1e-7), kwargs
        np.testing.assert_allclose(z.grad.double().numpy(), paper_grad, rtol=1e-4, atol=1e-7)
    default = LOSSES[name](logits, old_logits, adv, 0.9, mask)
    assert torch.equal(
        default, LOSSES[name](logits, old_logits, adv, 0.9, mask, beta_negative=None, support=None)
    )


@pytest.mark.parametrize("name", ["lco_mse", "lco_lch"])
def test_sampled_action_support_is_the_authors_sampled_logit_regression(name):
    """support = a_t: ℓ_t = f(z_{a_t} − z_old,{a_t} − A_t/β), whatever the other logits."""
    g = torch.Generator().manual_seed(14)
    z, z_old = torch.randn(8, 6, generator=g), torch.randn(8, 6, generator=g)
    actions = torch.randint(0, 6, (8,), generator=g)
    token_adv = torch.randn(8, generator=g)
    adv = torch.zeros(8, 6).scatter_(-1, actions[:, None], token_adv[:, None])  # eq. (11)
    loss = LOSSES[name](z, z_old, adv, 0.5, support=actions[:, None])
    d = z.gather(-1, actions[:, None])[:, 0] - z_old.gather(-1, actions[:, None])[:, 0] - token_adv / 0.5
    expected = d.pow(2).mean() if name == "lco_mse" else torch.log(torch.cosh(d)).mean()
    torch.testing.assert_close(loss, expected)


def _kld_logit_grad_at_the_sampled_token(pi_a: float, a: float, beta: float, beta_negative=None) -> float:
    """∂KL/∂z_a at z = z_old for a two-logit state with π(a) = pi_a and a sparse advantage on a.

    Read as −∂KL/∂z_b of the other token (the two sum to 0): π_b − π*_b ≈ 0.01 − 0.01 keeps its
    fp32 precision where π_a − π*_a ≈ 0.99 − 0.99 would cancel to a few digits.
    """
    z_old = torch.tensor([[np.log(pi_a), np.log(1 - pi_a)]], dtype=torch.float32)
    adv = torch.tensor([[a, 0.0]])
    z = z_old.clone().requires_grad_(True)
    lco_kld(z, z_old, adv, beta, beta_negative=beta_negative).backward()
    assert float(z.grad.sum()) == pytest.approx(0.0, abs=1e-7)
    return -float(z.grad[0, 1])


def test_kld_pushes_a_confident_token_down_twice_as_hard_as_up_and_beta_negative_removes_it():
    """At π = 0.99 with A = ±0.707 the A < 0 push is ≈2.0× the A > 0 push (the measured asymmetry)."""
    beta, a, pi = 1.0, 0.707, 0.99

    def closed_form(adv, b):  # π − π*, π* = π e^{A/b} / (π e^{A/b} + 1 − π) (eq. 6 on two tokens)
        tilted = pi * np.exp(adv / b)
        return pi - tilted / (tilted + 1 - pi)

    up = _kld_logit_grad_at_the_sampled_token(pi, +a, beta)
    down = _kld_logit_grad_at_the_sampled_token(pi, -a, beta)
    assert up == pytest.approx(closed_form(a, beta), rel=1e-4)
    assert down == pytest.approx(closed_form(-a, beta), rel=1e-4)
    assert abs(down) / abs(up) == pytest.approx(2.0, abs=0.01)
    # β_negative leaves the A > 0 push exactly as it was and divides only the A < 0 tilt.
    assert _kld_logit_grad_at_the_sampled_token(pi, +a, beta, beta_negative=100 * beta) == up
    down_100 = _kld_logit_grad_at_the_sampled_token(pi, -a, beta, beta_negative=100 * beta)
    assert down_100 == pytest.approx(closed_form(-a, 100 * beta), rel=1e-3)
    # In the linear regime (small A/β) the push is ≈ π(1 − π)·A/β: 100× smaller with β_− = 100β.
    small = 0.01
    ratio = _kld_logit_grad_at_the_sampled_token(pi, -small, beta) / _kld_logit_grad_at_the_sampled_token(
        pi, -small, beta, beta_negative=100 * beta
    )
    assert ratio == pytest.approx(100.0, rel=0.02)


@pytest.mark.parametrize("name", LOSSES)
@PROPERTY_SETTINGS
@given(case=lco_case(), k=st.integers(2, 16), beta_negative=st.sampled_from([None, 0.3, 20.0]))
def test_property_support_losses_vanish_at_the_target_and_have_the_closed_form_gradient(
    name, case, k, beta_negative
):
    logits, old_logits, adv, mask, beta = case
    k = min(k, logits.shape[-1])
    z = logits.float().clone().requires_grad_(True)
    loss = LOSSES[name](z, old_logits, adv, beta, mask, beta_negative=beta_negative, support=k)
    (grad,) = torch.autograd.grad(loss, z)
    assert torch.isfinite(loss) and float(loss.detach()) >= -1e-6
    ids = old_logits.float().topk(k, dim=-1).indices
    z_star = optimal_logits(old_logits, adv, beta, beta_negative=beta_negative).gather(-1, ids)
    closed = LCO_LOSSES[name].logit_grad(z.detach(), z_star, ids)
    weights = torch.ones(logits.shape[:-1]) if mask is None else mask.float()
    closed = closed * (weights / weights.sum().clamp(min=1.0)).unsqueeze(-1)
    torch.testing.assert_close(grad, closed, atol=1e-6, rtol=1e-4)
    # At z = z* on the support (any values elsewhere for MSE/LCH), the loss is 0.
    at_target = z.detach().scatter(-1, ids, z_star) if name != "lco_kld" else None
    if at_target is not None:
        assert float(
            LOSSES[name](at_target, old_logits, adv, beta, mask, beta_negative=beta_negative, support=k)
        ) == (pytest.approx(0.0, abs=1e-6))


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"support": 0}, "support"),
        ({"support": 8}, "support"),
        ({"support": torch.zeros(2, 3, 2, dtype=torch.long)}, "support"),  # id 0 twice
        ({"support": torch.tensor([0, 1])}, "support"),
        ({"support": torch.full((2, 3, 2), 7)}, "support"),
        ({"support": torch.zeros(3, 3, 2, dtype=torch.long)}, "support"),
        ({"beta_negative": 0.0}, "beta_negative"),
        ({"beta_negative": -3.0}, "beta_negative"),
    ],
)
@pytest.mark.parametrize("name", LOSSES)
def test_bad_options_are_rejected_naming_the_argument(name, kwargs, argument):
    logits, old_logits, adv, mask = _inputs()
    with pytest.raises(ValueError, match=argument):
        LOSSES[name](logits, old_logits, adv, 1.0, mask, **kwargs)


def test_kld_on_a_one_entry_support_is_rejected_since_pi_star_would_ignore_the_advantage():
    logits, old_logits, adv, _ = _inputs()
    with pytest.raises(ValueError, match="support"):
        lco_kld(logits, old_logits, adv, 1.0, support=1)
    with pytest.raises(ValueError, match="support"):
        lco_kld(logits, old_logits, adv, 1.0, support=torch.zeros(2, 3, 1, dtype=torch.long))


# --- value and gradient in one pass ----------------------------------------------------------------


@pytest.mark.parametrize("with_support", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", LOSSES)
def test_value_and_grad_is_the_value_and_the_autograd_gradient(name, dtype, with_support):
    """One pass gives the registry's value and the gradient autograd takes of that value, and
    the closed form; it writes into z* (the caller's copy here) but never into z."""
    g = torch.Generator().manual_seed(21)
    z = (torch.randn(5, 3, 11, generator=g) * 4).to(dtype)
    ids = torch.randn(5, 3, 11, generator=g).topk(4, dim=-1).indices if with_support else None
    z_star = (torch.randn(5, 3, 4 if with_support else 11, generator=g) * 4).to(dtype)
    spec = LCO_LOSSES[name]
    z_before, z_star_before = z.clone(), z_star.clone()
    value, grad = spec.value_and_grad(z, z_star.clone(), ids)
    assert torch.equal(z, z_before) and torch.equal(z_star, z_star_before)
    leaf = z.clone().requires_grad_(True)
    expected = spec.value(leaf, z_star, ids)
    (auto,) = torch.autograd.grad(expected.sum(), leaf)
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-12}
    torch.testing.assert_close(value, expected.detach(), **tol)
    torch.testing.assert_close(grad, auto, **tol)
    torch.testing.assert_close(grad, spec.logit_grad(z, z_star, ids), **tol)


@pytest.mark.parametrize("name", LOSSES)
def test_value_and_grad_equals_the_float64_reference_of_the_paper(name):
    """Against the loops of eqs. (8)–(10) and the closed-form gradients (44), (47), independently."""
    g = torch.Generator().manual_seed(22)
    z, z_star = torch.randn(4, 9, generator=g) * 3, torch.randn(4, 9, generator=g) * 3
    value, grad = LCO_LOSSES[name].value_and_grad(z, z_star.clone())
    for t in range(4):
        zt, zst = z[t].double().numpy(), z_star[t].double().numpy()
        assert float(value[t]) == pytest.approx(_reference_per_token(name, zt, zst), rel=1e-5, abs=1e-6)
        np.testing.assert_allclose(grad[t].double().numpy(), _reference_logit_grad(name, zt, zst), atol=1e-6)


def _tilted_target(z: np.ndarray, off: float, on: float, action: int) -> np.ndarray:
    """z* = z + u off the sampled action and z + w at it (an on-policy step with eq. 11's advantage)."""
    z_star = z + off
    z_star[action] = z[action] + on
    return z_star


def _check_sparse_against_reference(name, z, off, on, actions, **tol):
    value, grad = LCO_LOSSES[name].sparse_value_and_grad(z, off, on, actions)
    for t in range(z.shape[0]):
        zt = z[t].double().numpy()
        zst = _tilted_target(zt, float(off[t]), float(on[t]), int(actions[t]))
        assert float(value[t]) == pytest.approx(_reference_per_token(name, zt, zst), **tol)
        np.testing.assert_allclose(
            grad[t].double().numpy(), _reference_logit_grad(name, zt, zst), rtol=tol["rel"], atol=tol["abs"]
        )


@pytest.mark.parametrize("name", LOSSES)
def test_sparse_value_and_grad_equals_the_paper_at_the_tilted_target(name):
    """The on-policy sparse closed forms against the loops of eqs. (8)–(10) at z* = z + u + (w − u)·e_{a_t}."""
    g = torch.Generator().manual_seed(23)
    z = torch.randn(6, 9, generator=g) * 3
    off, on = torch.randn(6, generator=g), torch.randn(6, generator=g) * 4
    actions = torch.randint(0, 9, (6,), generator=g)
    _check_sparse_against_reference(name, z, off, on, actions, rel=1e-5, abs=1e-6)


def test_sparse_kld_keeps_the_tilt_of_a_confident_token_and_a_huge_one():
    """π_θ(a_t) = 1 − 4e-18 is 1 in fp32, yet a tilt δ = −45 must move π*(a_t) to ~0.007 (1 − p is
    summed over the other entries, not taken from 1 − p); δ = +200 (e^δ overflows fp32) stays finite."""
    g = torch.Generator().manual_seed(24)
    z = torch.randn(2, 9, generator=g)
    actions = torch.tensor([3, 5])
    z[0, 3] = 40.0
    off, on = torch.tensor([0.5, -1.0]), torch.tensor([-44.5, 199.0])
    _check_sparse_against_reference("lco_kld", z, off, on, actions, rel=1e-4, abs=1e-7)


def test_log_cosh_is_exact_across_the_split_and_far_beyond_it():
    """The branch-free form hands the linear part over at |x| = 20; both sides of that, and 1e4,
    equal log cosh in float64 (|x| − log 2 + log1p(e^{−2|x|}), which is exact there)."""
    x = torch.tensor(
        [-1e4, -25.0, -20.0, -19.5, 0.5, 1.0, 5.0, 19.99, 20.0, 20.01, 60.0, 1e4], dtype=torch.float64
    )
    expected = x.abs() - np.log(2.0) + torch.log1p(torch.exp(-2 * x.abs()))
    torch.testing.assert_close(log_cosh(x), expected, rtol=1e-14, atol=0)
    torch.testing.assert_close(log_cosh(x.float()).double(), expected, rtol=1e-6, atol=0)
