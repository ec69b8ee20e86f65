"""The stability options on a sparse advantage (eq. 11; issue 22, item 3), naive and fused, against closed forms.

- A top-k support holds the sampled token: without it a_t gets zero target mass and is pushed down
  whatever the sign of A.
- β_negative acts by the sign of the *uncentred* A, so π* ∝ π_old·exp(A/β_±) (eqs. 6–7) whatever the
  centring; centring first would tilt the sampled token 1.38× the documented A/β_negative at V = 260.
- The std normalisations of a sparse advantage keep only its sign: refused by the fused loss.
"""

from __future__ import annotations

import pytest
import torch

import lco
from lco.objectives.fused import SparseAdvantages, fused_lco_loss
from lco.objectives.targets import include_sampled, support_ids, target_shift

LOSSES = ("lco_kld", "lco_mse", "lco_lch")


def _fused_logit_grad(z, old, token_adv, actions, beta, **options):
    """(loss, ∂loss/∂z) of the fused loss, read through h = I and W = zᵀ (then z = h Wᵀ and ∂/∂W = (∂/∂z)ᵀ)."""
    n = z.shape[0]
    weight = z.detach().T.contiguous().requires_grad_(True)
    loss = fused_lco_loss(
        torch.eye(n),
        weight,
        beta=beta,
        advantages=SparseAdvantages(token_adv, actions),
        old_logits=old,
        chunk_size=3,
        **options,
    )
    (grad,) = torch.autograd.grad(loss, weight)
    return loss, grad.T


def _naive_logit_grad(loss_name, z, old, token_adv, sampled, beta, **options):
    z = z.detach().clone().requires_grad_(True)
    dense = lco.sparse_advantages(token_adv, sampled, z.shape[-1])
    loss = getattr(lco, loss_name)(z, old, dense, beta, **options)
    (grad,) = torch.autograd.grad(loss, z)
    return loss, grad


def _problem(n=6, v=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    old = torch.randn(n, v, generator=g) * 2
    z = old + 0.3 * torch.randn(n, v, generator=g)
    order = old.argsort(-1, descending=True)
    # half the rows sample a token outside z_old's top 3, half one inside it
    actions = torch.where(torch.arange(n) % 2 == 0, order[:, -1], order[:, 0])
    token_adv = torch.tensor([1.5, -0.8, -1.2, 0.7, 2.0, -0.3])[:n]
    return z, old, token_adv, actions


# --- a top-k support holds the sampled token ---------------------------------------------------------


def test_include_sampled_puts_a_t_in_the_kth_place_only_where_it_is_missing():
    ids = torch.tensor([[4, 2, 7], [4, 2, 7], [1, 0, 3]])
    actions = torch.tensor([2, 5, 3])
    assert include_sampled(ids, actions).tolist() == [[4, 2, 7], [4, 2, 5], [1, 0, 3]]


def test_top_k_support_with_actions_is_top_k_minus_one_plus_the_sampled_token():
    z, old, _, actions = _problem()
    ids = support_ids(old, 3, actions)
    for row, a in zip(range(old.shape[0]), actions.tolist(), strict=True):
        top = old[row].topk(3).indices.tolist()
        expected = set(top) if a in top else set(top[:2]) | {a}
        assert set(ids[row].tolist()) == expected
    assert torch.equal(support_ids(old, 3), old.topk(3, -1).indices)  # no actions: the plain top-k


@pytest.mark.parametrize("beta_negative", [None, 50.0])
def test_kld_on_a_top_k_support_pulls_the_sampled_token_toward_its_closed_form_target(beta_negative):
    """∂ℓ/∂z = π_θ − π*, π* ∝ π_old·exp(A/β_±) on S = top-(k−1) ∪ {a_t} (eqs. 6, 47), naive and fused."""
    z, old, token_adv, actions = _problem()
    beta, k = 0.7, 3
    # the closed form, written out: S per row, π* on it, 0 elsewhere
    pi_star = torch.zeros_like(old)
    for row in range(old.shape[0]):
        top = old[row].topk(k).indices.tolist()
        a = int(actions[row])
        support = top if a in top else top[: k - 1] + [a]
        a_adv = float(token_adv[row])
        b = beta if beta_negative is None or a_adv >= 0 else beta_negative
        logits = torch.tensor([float(old[row, i]) + (a_adv / b if i == a else 0.0) for i in support])
        pi_star[row, support] = torch.softmax(logits, 0)
    expected_grad = (torch.softmax(z, -1) - pi_star) / z.shape[0]
    opts = {"beta_negative": beta_negative, "support": k}
    _, naive = _naive_logit_grad(
        "lco_kld", z, old, token_adv, actions, beta, actions=actions, normalization="mean", **opts
    )
    _, fused = _fused_logit_grad(z, old, token_adv, actions, beta, normalization="mean", **opts)
    torch.testing.assert_close(naive, expected_grad, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(fused, expected_grad, atol=1e-6, rtol=1e-5)
    # where a_t was outside the top k and A > 0 the sampled token is pulled up; before the fix π*(a_t) was 0
    # and its gradient π_θ(a_t) > 0 pushed it down
    up = (token_adv > 0) & (torch.arange(len(actions)) % 2 == 0)
    assert up.any()
    at = fused.gather(-1, actions[:, None]).squeeze(-1)
    assert (at[up] < 0).all()


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("normalization", ["mean", "none"])
def test_fused_top_k_with_a_sparse_advantage_equals_the_naive_loss_given_the_actions(loss, normalization):
    z, old, token_adv, actions = _problem()
    beta = 0.9
    naive_value, naive = _naive_logit_grad(
        loss, z, old, token_adv, actions, beta, support=3, actions=actions, normalization=normalization,
        beta_negative=40.0,
    )  # fmt: skip
    fused_value, fused = _fused_logit_grad(
        z,
        old,
        token_adv,
        actions,
        beta,
        loss=loss,
        support=3,
        normalization=normalization,
        beta_negative=40.0,
    )
    torch.testing.assert_close(fused_value, naive_value, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(fused, naive, atol=1e-6, rtol=1e-5)
    # the naive loss without the actions is another loss: the test can tell them apart
    without, _ = _naive_logit_grad(loss, z, old, token_adv, actions, beta, support=3, normalization=normalization,
                                   beta_negative=40.0)  # fmt: skip
    assert abs(float(without) - float(naive_value)) > 1e-4


# --- β_negative by the sign of the uncentred advantage -----------------------------------------------


@pytest.mark.parametrize("path", ["naive", "fused"])
def test_beta_negative_tilts_the_sampled_token_by_exactly_a_over_beta_negative_at_v_260(path):
    """log π*(a_t) − log π*(b) − (z_old(a_t) − z_old(b)) = A/β_negative for A < 0 (eq. 7 per sign), with the
    mean normalisation on, at the byte tokenizer's V = 260; centring first would give 1.38× that."""
    v, beta, beta_negative, a = 260, 1.0, 100.0, -1.0
    g = torch.Generator().manual_seed(1)
    old = torch.randn(1, v, generator=g)
    actions, token_adv = torch.tensor([7]), torch.tensor([a])
    if path == "naive":
        dense = lco.sparse_advantages(token_adv, actions, v)
        log_pi_star = lco.optimal_log_policy(
            old, dense, beta, beta_negative=beta_negative, normalization="mean"
        )
    else:
        # on the fused path π* is where the KLD gradient vanishes: at z = log π*, ∂ℓ/∂z = π_θ − π* = 0, so
        # read π* = π_θ − ∂ℓ/∂z·N at any z
        loss, grad = _fused_logit_grad(
            old.clone(), old, token_adv, actions, beta, beta_negative=beta_negative
        )
        log_pi_star = torch.log(torch.softmax(old, -1) - grad)
    tilt = (log_pi_star - old)[0]
    relative = float(tilt[7] - tilt[8])  # the sampled token against another one
    assert relative == pytest.approx(a / beta_negative, rel=1e-4)
    # the order this replaces: normalise (centre), then pick β by the sign of the centred value
    centred = lco.normalize_advantages(lco.sparse_advantages(token_adv, actions, v), "mean")
    old_order = torch.where(centred < 0, centred / beta_negative, centred / beta)[0]
    assert float(old_order[7] - old_order[8]) / (a / beta_negative) == pytest.approx(1.38, abs=0.01)


@pytest.mark.parametrize("normalization", ["mean", "mean_std", "std", "none"])
def test_target_shift_is_the_per_sign_tilt_of_the_scaled_advantage_then_centred(normalization):
    g = torch.Generator().manual_seed(2)
    adv = torch.randn(4, 11, generator=g)
    beta, beta_negative = 0.5, 20.0
    shift = target_shift(adv, beta, beta_negative, normalization)
    std = adv.std(-1, keepdim=True, unbiased=False)
    scaled = adv / std if normalization in ("std", "mean_std") else adv
    per_sign = torch.where(adv < 0, scaled / beta_negative, scaled / beta)
    expected = (
        per_sign - per_sign.mean(-1, keepdim=True) if normalization in ("mean", "mean_std") else per_sign
    )
    torch.testing.assert_close(shift, expected, atol=1e-5, rtol=1e-4)
    # without β_negative it is the paper's normalised A / β
    torch.testing.assert_close(
        target_shift(adv, beta, None, normalization), lco.normalize_advantages(adv, normalization) / beta
    )


@pytest.mark.parametrize("loss", ["lco_mse", "lco_lch"])
def test_mse_and_lch_targets_with_beta_negative_are_the_centred_per_sign_shift(loss):
    """For the regressions the centring matters: z* = z_old + tilt − mean(tilt), tilt = A/β_± (eqs. 7–9)."""
    z, old, token_adv, actions = _problem()
    beta, beta_negative = 0.8, 30.0
    dense = lco.sparse_advantages(token_adv, actions, old.shape[-1])
    tilt = torch.where(dense < 0, dense / beta_negative, dense / beta)
    target = old + tilt - tilt.mean(-1, keepdim=True)
    expected = (
        {"lco_mse": (z - target).pow(2), "lco_lch": torch.log(torch.cosh(z - target))}[loss].mean(-1).mean()
    )
    value, _ = _naive_logit_grad(loss, z, old, token_adv, actions, beta, beta_negative=beta_negative,
                                 normalization="mean")  # fmt: skip
    fused_value, _ = _fused_logit_grad(z, old, token_adv, actions, beta, beta_negative=beta_negative,
                                       normalization="mean", loss=loss)  # fmt: skip
    torch.testing.assert_close(value, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(fused_value, expected, atol=1e-6, rtol=1e-5)


# --- the std normalisations of a sparse advantage ------------------------------------------------------


@pytest.mark.parametrize("normalization", ["std", "mean_std"])
def test_the_std_of_a_sparse_row_keeps_only_the_sign_so_the_fused_loss_refuses_it(normalization):
    v = 260
    actions = torch.tensor([3, 3])
    small, large = torch.tensor([0.1, -0.1]), torch.tensor([5.0, -5.0])
    # why: the normalised value at a_t is the same ±√(V−1)-ish number for |A| = 0.1 and |A| = 5
    norm = [
        lco.normalize_advantages(lco.sparse_advantages(a, actions, v), normalization).gather(
            -1, actions[:, None]
        )
        for a in (small, large)
    ]
    torch.testing.assert_close(norm[0], norm[1], rtol=1e-3, atol=1e-3)
    assert float(norm[1][0].abs()) > 15  # ≈ √259 ≈ 16.1
    z = torch.randn(2, v)
    with pytest.raises(ValueError, match=f"normalization='{normalization}' with a sparse advantage"):
        _fused_logit_grad(z, z, large, actions, 1.0, normalization=normalization)
