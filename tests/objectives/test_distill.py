"""On-policy distillation baselines: MiniLLM's reverse KL and GKD's generalised JSD (paper Table 4).

Held against float64 NumPy written from the definitions and against TRL 1.16's own
``GKDTrainer.generalized_jsd_loss`` (β = 0 forward KL(teacher ‖ student), β = 1 reverse).
"""

import os

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lco import generalized_jsd_loss, reverse_kl_loss


def _batch(shape=(3, 4, 9), seed=0):
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(*shape, generator=g) * 2
    teacher = torch.randn(*shape, generator=g) * 2
    mask = torch.rand(shape[:-1], generator=g) < 0.6
    mask.view(-1)[0] = True
    return student, teacher, mask


def _softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def _kl(p, q):
    return float(sum(p[a] * np.log(p[a] / q[a]) for a in range(len(p))))


def _reference(student, teacher, mask, per_token):
    s, t = student.double().numpy(), teacher.double().numpy()
    m = np.ones(s.shape[:-1], bool) if mask is None else mask.numpy()
    values = [per_token(_softmax(s[i]), _softmax(t[i])) for i in np.ndindex(s.shape[:-1]) if m[i]]
    return sum(values) / len(values) if values else 0.0


def _jsd(beta):
    def per_token(p_s, p_t):
        if beta == 0.0:
            return _kl(p_t, p_s)  # forward KL(teacher ‖ student)
        if beta == 1.0:
            return _kl(p_s, p_t)  # reverse KL(student ‖ teacher)
        mix = beta * p_t + (1 - beta) * p_s
        return beta * _kl(p_t, mix) + (1 - beta) * _kl(p_s, mix)

    return per_token


def _trl_jsd(student, teacher, mask, beta, temperature):
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl.experimental.gkd.gkd_trainer import GKDTrainer

    labels = torch.where(mask, 0, -100)  # TRL masks tokens whose label is -100
    return GKDTrainer.generalized_jsd_loss(
        student, teacher, labels=labels, beta=beta, temperature=temperature
    )


# --- values ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [1.0, 2.0])
@pytest.mark.parametrize("use_mask", [True, False])
def test_reverse_kl_is_the_token_mean_of_kl_student_to_teacher(use_mask, temperature):
    student, teacher, mask = _batch(seed=1)
    mask = mask if use_mask else None
    expected = _reference(student / temperature, teacher / temperature, mask, lambda p_s, p_t: _kl(p_s, p_t))
    got = reverse_kl_loss(student, teacher, mask=mask, temperature=temperature)
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)


@pytest.mark.parametrize("beta", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_generalized_jsd_matches_its_definition(beta):
    student, teacher, mask = _batch(seed=2)
    expected = _reference(student, teacher, mask, _jsd(beta))
    np.testing.assert_allclose(
        float(generalized_jsd_loss(student, teacher, beta, mask=mask)), expected, rtol=1e-5
    )


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("beta", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_generalized_jsd_matches_trl_gkd_value_and_student_gradient(beta, temperature):
    student, teacher, mask = _batch(seed=3)
    s_ours, s_trl = student.clone().requires_grad_(True), student.clone().requires_grad_(True)
    ours = generalized_jsd_loss(s_ours, teacher, beta, mask=mask, temperature=temperature)
    theirs = _trl_jsd(s_trl, teacher, mask, beta, temperature)
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(ours.detach(), theirs.detach())
    torch.testing.assert_close(s_ours.grad, s_trl.grad)


def test_jsd_with_beta_one_is_the_reverse_kl_loss():
    student, teacher, mask = _batch(seed=4)
    torch.testing.assert_close(
        generalized_jsd_loss(student, teacher, 1.0, mask=mask), reverse_kl_loss(student, teacher, mask=mask)
    )


def test_symmetric_jsd_is_symmetric_and_bounded_by_log_two():
    student, teacher, mask = _batch(seed=5)
    forward = generalized_jsd_loss(student, teacher, 0.5, mask=mask)
    backward = generalized_jsd_loss(teacher, student, 0.5, mask=mask)
    torch.testing.assert_close(forward, backward)
    far = generalized_jsd_loss(torch.tensor([[50.0, 0.0]]), torch.tensor([[0.0, 50.0]]), 0.5)
    assert float(forward) < np.log(2) and float(far) == pytest.approx(np.log(2), rel=1e-4)


@pytest.mark.parametrize("loss", ["reverse_kl", "jsd"])
def test_no_gradient_reaches_the_teacher(loss):
    student, teacher, mask = _batch(seed=6)
    student.requires_grad_(True)
    teacher.requires_grad_(True)
    fn = reverse_kl_loss if loss == "reverse_kl" else generalized_jsd_loss
    fn(student, teacher, mask=mask).backward()
    assert student.grad is not None and teacher.grad is None


def test_reverse_kl_student_gradient_matches_the_closed_form():
    """∂KL(π‖p)/∂z = π ⊙ (log π − log p − KL), per masked token, over the number of masked tokens."""
    student, teacher, mask = _batch(seed=7)
    z = student.clone().requires_grad_(True)
    reverse_kl_loss(z, teacher, mask=mask).backward()
    log_pi, log_p = torch.log_softmax(student.double(), -1), torch.log_softmax(teacher.double(), -1)
    kl = (log_pi.exp() * (log_pi - log_p)).sum(-1, keepdim=True)
    expected = log_pi.exp() * (log_pi - log_p - kl) / mask.sum()
    expected[~mask] = 0
    torch.testing.assert_close(z.grad.double(), expected, rtol=1e-5, atol=1e-8)


# --- properties ------------------------------------------------------------------------------------------


@st.composite
def distill_case(draw):
    lead = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    vocab = draw(st.integers(2, 12))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    scale = draw(st.sampled_from([0.1, 1.0, 8.0]))
    student = torch.randn(*lead, vocab, generator=g) * scale
    teacher = torch.randn(*lead, vocab, generator=g) * scale
    mask = draw(st.sampled_from(["random", "all_true", "all_false", "none"]))
    mask = {
        "random": torch.rand(lead, generator=g) < 0.5,
        "all_true": torch.ones(lead, dtype=torch.bool),
        "all_false": torch.zeros(lead, dtype=torch.bool),
        "none": None,
    }[mask]
    dtype = draw(st.sampled_from([torch.float32, torch.bfloat16, torch.float16]))
    beta = draw(st.sampled_from([0.0, 0.3, 0.5, 1.0]))
    return student.to(dtype), teacher.to(dtype), mask, beta


@settings(max_examples=30, deadline=None)
@given(case=distill_case())
def test_property_distill_losses_are_finite_nonnegative_zero_at_the_teacher_and_masked(case):
    student, teacher, mask, beta = case
    for fn in (
        lambda s, t: reverse_kl_loss(s, t, mask=mask),
        lambda s, t: generalized_jsd_loss(s, t, beta, mask),
    ):
        z = student.clone().requires_grad_(True)
        loss = fn(z, teacher)
        loss.backward()
        assert loss.dtype == torch.float32
        assert torch.isfinite(loss) and float(loss.detach()) >= -1e-6  # ≥ 0 up to fp32 rounding
        torch.testing.assert_close(loss.detach(), fn(student.float(), teacher.float()))
        assert torch.isfinite(z.grad).all()
        if mask is not None:
            assert torch.all(z.grad[~mask] == 0)
            if not mask.any():
                assert float(loss.detach()) == 0.0
        assert float(fn(teacher, teacher)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_all_false_mask_gives_exactly_zero_loss_and_zero_gradient(beta):
    student, teacher, mask = _batch(seed=8)
    for fn in (
        lambda s: reverse_kl_loss(s, teacher, mask=~torch.ones_like(mask)),
        lambda s: generalized_jsd_loss(s, teacher, beta, mask=torch.zeros_like(mask)),
    ):
        z = student.clone().requires_grad_(True)
        loss = fn(z)
        loss.backward()
        assert float(loss.detach()) == 0.0
        assert torch.equal(z.grad, torch.zeros_like(z))


# --- bad input ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 4, 8), (3, 5, 9), (4, 9)])
def test_teacher_of_another_shape_is_rejected(shape):
    student, _, _ = _batch()
    for fn in (reverse_kl_loss, generalized_jsd_loss):
        with pytest.raises(ValueError, match="teacher_logits"):
            fn(student, torch.zeros(shape))


@pytest.mark.parametrize("argument", ["student_logits", "teacher_logits"])
def test_non_finite_logits_are_rejected_naming_the_argument(argument):
    student, teacher, _ = _batch()
    (student if argument == "student_logits" else teacher)[0, 0, 0] = float("inf")
    for fn in (reverse_kl_loss, generalized_jsd_loss):
        with pytest.raises(ValueError, match=f"^{argument}"):
            fn(student, teacher)


@pytest.mark.parametrize("beta", [-0.1, 1.5, float("nan")])
def test_jsd_beta_outside_the_unit_interval_is_rejected(beta):
    student, teacher, _ = _batch()
    with pytest.raises(ValueError, match="beta"):
        generalized_jsd_loss(student, teacher, beta)


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan"), float("inf")])
def test_non_positive_or_non_finite_temperature_is_rejected(temperature):
    student, teacher, _ = _batch()
    for fn in (reverse_kl_loss, generalized_jsd_loss):
        with pytest.raises(ValueError, match="temperature"):
            fn(student, teacher, temperature=temperature)


def test_wrong_mask_shape_is_rejected():
    student, teacher, _ = _batch(shape=(3, 4, 9))
    for fn in (reverse_kl_loss, generalized_jsd_loss):
        with pytest.raises(ValueError, match="mask"):
            fn(student, teacher, mask=torch.ones(4, 3, dtype=torch.bool))
