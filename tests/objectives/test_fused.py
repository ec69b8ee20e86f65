"""The fused, chunked LM-head losses (lco.objectives.fused) against the naive objectives.

The naive reference is always ``lco.<loss>(hidden @ weight.T + bias, z_old, A, beta, mask)`` with
autograd; the fused path never forms the [N, V] logits and uses the closed-form logit gradients.
"""

import math
import shutil
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode

import lco
from lco import (
    SparseAdvantages,
    dpo_advantage_chunks,
    fused_lco_loss,
    fused_sft_loss,
    logprob_advantage_chunks,
)
from lco.objectives import compiled, fused
from lco.objectives.fused import default_chunk_size

LOSSES = ("lco_mse", "lco_lch", "lco_kld")
TOL = {"atol": 1e-5, "rtol": 1e-5}


def _problem(n=13, v=7, h=5, seed=0, dtype=torch.float32, bias=True):
    """Policy head and inputs, plus every form of advantages and old logits for the same step."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(dtype)

    p = {
        "hidden": rnd(n, h),
        "weight": rnd(v, h, scale=0.7),
        "bias": rnd(v, scale=0.3) if bias else None,
        "token_advantages": rnd(n),
        "actions": torch.randint(0, v, (n,), generator=g),
        "dense_advantages": rnd(n, v),
        "mask": torch.rand(n, generator=g) > 0.4,
        # The reward models' hidden states and heads for the dense DPO advantage (eq. 13), and the
        # old policy's for an off-policy z_old.
        "dpo": (rnd(n, h + 1), rnd(v, h + 1, scale=0.5), rnd(v, scale=0.2)),
        "ref": (rnd(n, h + 2), rnd(v, h + 2, scale=0.5), None),
        "old": (rnd(n, h), rnd(v, h, scale=0.7)),
    }
    return p


def _advantages(p, form):
    """(what the fused loss gets, the dense [N, V] A the naive loss gets) for one advantage form."""
    v = p["weight"].shape[0]
    if form == "dense":
        return p["dense_advantages"], p["dense_advantages"]
    if form == "sparse":
        sparse = SparseAdvantages(p["token_advantages"], p["actions"])
        return sparse, lco.sparse_advantages(p["token_advantages"], p["actions"], v)
    (hd, wd, bd), (hr, wr, br) = p["dpo"], p["ref"]
    dense = lco.dpo_advantages(hd @ wd.T + bd, hr @ wr.T)
    return dpo_advantage_chunks(hd, wd, bd, hr, wr, br), dense


def _old_logits(p, form):
    """(what the fused loss gets, the naive z_old or None for 'the current logits, detached')."""
    h_old, w_old = p["old"]
    if form is None:
        return None, None
    full = h_old @ w_old.T
    if form == "tensor":
        return full, full
    return (lambda start, end: h_old[start:end] @ w_old.T), full


def _leaves(p, requires_grad=True):
    leaves = [p["hidden"].clone(), p["weight"].clone()]
    if p["bias"] is not None:
        leaves.append(p["bias"].clone())
    return [t.requires_grad_(requires_grad) for t in leaves]


def _naive_lco(
    p,
    loss,
    adv_dense,
    old_full,
    mask,
    beta=0.8,
    normalization="mean",
    beta_negative=None,
    support=None,
    actions=None,
):
    """The naive loss, normalising A itself (β_negative by the sign of the uncentred A); a top-k
    support holds the sampled ``actions`` when they are given (a sparse advantage)."""
    leaves = _leaves(p)
    z = leaves[0] @ leaves[1].T + (leaves[2] if len(leaves) == 3 else 0.0)
    z_old = z.detach() if old_full is None else old_full
    value = getattr(lco, loss)(
        z,
        z_old,
        adv_dense,
        beta,
        mask,
        beta_negative=beta_negative,
        support=support,
        normalization=normalization,
        actions=actions,
    )
    return value, torch.autograd.grad(value, leaves)


def _fused_lco(p, loss, adv, old, mask, chunk_size, beta=0.8, normalization="mean", **kw):
    leaves = _leaves(p)
    out = fused_lco_loss(
        leaves[0],
        leaves[1],
        bias=leaves[2] if len(leaves) == 3 else None,
        loss=loss,
        beta=beta,
        advantages=adv,
        old_logits=old,
        normalization=normalization,
        mask=mask,
        chunk_size=chunk_size,
        **kw,
    )
    value = out[0] if isinstance(out, tuple) else out
    return value, torch.autograd.grad(value, leaves), out


def _masks(p):
    n = p["hidden"].shape[0]
    return {"none": None, "partial": p["mask"], "all_false": torch.zeros(n, dtype=torch.bool)}


# --- fused == naive ---------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [4, 13])  # 4 does not divide N = 13; 13 is one chunk
@pytest.mark.parametrize("mask_kind", ["none", "partial", "all_false"])
@pytest.mark.parametrize("old_form", ["tensor", "callable", None])
@pytest.mark.parametrize("adv_form", ["dense", "sparse", "callable"])
@pytest.mark.parametrize("loss", LOSSES)
def test_fused_value_and_grads_equal_naive(loss, adv_form, old_form, mask_kind, chunk_size):
    p = _problem()
    adv, adv_dense = _advantages(p, adv_form)
    old, old_full = _old_logits(p, old_form)
    mask = _masks(p)[mask_kind]
    naive_value, naive_grads = _naive_lco(p, loss, adv_dense, old_full, mask)
    fused_value, fused_grads, _ = _fused_lco(p, loss, adv, old, mask, chunk_size)
    torch.testing.assert_close(fused_value, naive_value, **TOL)
    for name, f, n in zip(("hidden", "weight", "bias"), fused_grads, naive_grads, strict=True):
        torch.testing.assert_close(f, n, **TOL, msg=lambda m, name=name: f"grad {name}: {m}")


@pytest.mark.parametrize("normalization", ["mean", "mean_std", "std", "none"])
@pytest.mark.parametrize("loss", LOSSES)
def test_every_normalization_matches_normalize_advantages(loss, normalization):
    p = _problem(bias=False)
    adv, adv_dense = _advantages(p, "dense")
    naive_value, naive_grads = _naive_lco(p, loss, adv_dense, None, None, normalization=normalization)
    fused_value, fused_grads, _ = _fused_lco(p, loss, adv, None, None, 5, normalization=normalization)
    torch.testing.assert_close(fused_value, naive_value, **TOL)
    for f, n in zip(fused_grads, naive_grads, strict=True):
        torch.testing.assert_close(f, n, **TOL)


@pytest.mark.parametrize("normalization", ["mean", "mean_std", "std", "none"])
def test_the_callers_advantages_and_old_logits_are_not_modified(normalization):
    p = _problem()
    adv, old = p["dense_advantages"], p["old"][0] @ p["old"][1].T
    adv_before, old_before = adv.clone(), old.clone()
    _fused_lco(p, "lco_mse", adv, old, None, 4, normalization=normalization)
    assert torch.equal(adv, adv_before) and torch.equal(old, old_before)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 40),
    v=st.integers(1, 12),
    h=st.integers(1, 6),
    chunk_size=st.integers(1, 48),
    loss=st.sampled_from(LOSSES),
    adv_form=st.sampled_from(["dense", "sparse", "callable"]),
    old_form=st.sampled_from(["tensor", "callable", None]),
    masked=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_property_fused_equals_naive_for_any_shape_and_chunking(
    n, v, h, chunk_size, loss, adv_form, old_form, masked, seed
):
    p = _problem(n=n, v=v, h=h, seed=seed)
    adv, adv_dense = _advantages(p, adv_form)
    old, old_full = _old_logits(p, old_form)
    mask = p["mask"] if masked else None
    naive_value, naive_grads = _naive_lco(p, loss, adv_dense, old_full, mask)
    fused_value, fused_grads, _ = _fused_lco(p, loss, adv, old, mask, chunk_size)
    torch.testing.assert_close(fused_value, naive_value, **TOL)
    for f, n_ in zip(fused_grads, naive_grads, strict=True):
        torch.testing.assert_close(f, n_, **TOL)


# --- stability options: per-sign β and the support of π* ------------------------------------------


def _support(p, form, k=3):
    """(what the fused loss gets, what the naive loss gets) for one support form."""
    n, v = p["hidden"].shape[0], p["weight"].shape[0]
    if form is None or isinstance(form, int):
        return form, form
    if form == "ids":
        g = torch.Generator().manual_seed(n + v)
        ids = torch.rand(n, v, generator=g).argsort(-1)[:, :k]
        return ids, ids
    return "sampled", p["actions"][:, None]


def _assert_fused_equals_naive(p, loss, adv_form, old_form, mask, chunk_size, support_form, **options):
    adv, adv_dense = _advantages(p, adv_form)
    old, old_full = _old_logits(p, old_form)
    fused_support, naive_support = _support(p, support_form)
    if adv_form == "sparse" and options.get("normalization", "mean") in ("std", "mean_std"):
        # the std of a one-hot row keeps only the sign of A: refused, naming the argument
        with pytest.raises(ValueError, match="normalization=.* with a sparse advantage .* only the sign"):
            _fused_lco(p, loss, adv, old, mask, chunk_size, support=fused_support, **options)
        return
    # a sparse advantage's top-k support holds the sampled token in the fused loss; tell the naive one
    actions = p["actions"] if adv_form == "sparse" and isinstance(support_form, int) else None
    naive_value, naive_grads = _naive_lco(
        p, loss, adv_dense, old_full, mask, support=naive_support, actions=actions, **options
    )
    kw = {"actions": p["actions"]} if support_form == "sampled" and adv_form != "sparse" else {}
    fused_value, fused_grads, _ = _fused_lco(
        p, loss, adv, old, mask, chunk_size, support=fused_support, **options, **kw
    )
    torch.testing.assert_close(fused_value, naive_value, **TOL)
    for name, f, n in zip(("hidden", "weight", "bias"), fused_grads, naive_grads, strict=True):
        torch.testing.assert_close(f, n, **TOL, msg=lambda m, name=name: f"grad {name}: {m}")


@pytest.mark.parametrize("mask_kind", ["partial", "all_false"])
@pytest.mark.parametrize("old_form", ["tensor", None])
@pytest.mark.parametrize("support_form", [3, "ids"])
@pytest.mark.parametrize("adv_form", ["dense", "sparse", "callable"])
@pytest.mark.parametrize("loss", LOSSES)
def test_fused_with_a_support_std_over_it_and_beta_negative_equals_naive(
    loss, adv_form, support_form, old_form, mask_kind
):
    """The authors' setting: top-k (or given ids) support, std over it without centring for a dense
    advantage (a sparse one as it is, as the authors' preset does), β×k for A < 0."""
    p = _problem()
    mask = _masks(p)[mask_kind]
    normalization = "none" if adv_form == "sparse" else "std"
    _assert_fused_equals_naive(
        p, loss, adv_form, old_form, mask, 4, support_form, normalization=normalization, beta_negative=5.0
    )


@pytest.mark.parametrize("normalization", ["mean", "mean_std", "std", "none"])
@pytest.mark.parametrize("chunk_size", [1, 13])
@pytest.mark.parametrize("loss", LOSSES)
def test_fused_normalizations_over_a_top_k_support_equal_naive(loss, chunk_size, normalization):
    p = _problem()
    _assert_fused_equals_naive(p, loss, "dense", "callable", None, chunk_size, 5, normalization=normalization)


@pytest.mark.parametrize("old_form", ["tensor", "callable", None])
@pytest.mark.parametrize("adv_form", ["dense", "sparse", "callable"])
@pytest.mark.parametrize("loss", ["lco_mse", "lco_lch"])
def test_fused_sampled_support_is_the_naive_sampled_logit_regression(loss, adv_form, old_form):
    p = _problem()
    _assert_fused_equals_naive(
        p, loss, adv_form, old_form, p["mask"], 4, "sampled", normalization="none", beta_negative=0.3
    )


@pytest.mark.parametrize("adv_form", ["dense", "sparse"])
@pytest.mark.parametrize("loss", LOSSES)
def test_fused_beta_negative_alone_equals_naive(loss, adv_form):
    p = _problem()
    _assert_fused_equals_naive(p, loss, adv_form, "tensor", p["mask"], 5, None, beta_negative=12.0)


@pytest.mark.parametrize("loss", LOSSES)
def test_fused_options_off_are_the_papers_path_bit_for_bit(loss):
    p = _problem()
    adv, _ = _advantages(p, "dense")
    plain_value, plain_grads, _ = _fused_lco(p, loss, adv, None, p["mask"], 4)
    off_value, off_grads, _ = _fused_lco(p, loss, adv, None, p["mask"], 4, beta_negative=None, support=None)
    assert torch.equal(plain_value, off_value)
    assert all(torch.equal(a, b) for a, b in zip(plain_grads, off_grads, strict=True))


def test_fused_int32_support_ids_give_the_int64_result():
    p = _problem()
    ids, _ = _support(p, "ids")
    adv, _ = _advantages(p, "dense")
    v64, g64, _ = _fused_lco(p, "lco_kld", adv, None, None, 4, support=ids, normalization="std")
    v32, g32, _ = _fused_lco(p, "lco_kld", adv, None, None, 4, support=ids.int(), normalization="std")
    assert torch.equal(v64, v32) and all(torch.equal(a, b) for a, b in zip(g64, g32, strict=True))


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 30),
    v=st.integers(2, 12),
    chunk_size=st.integers(1, 40),
    k=st.integers(2, 12),
    loss=st.sampled_from(LOSSES),
    adv_form=st.sampled_from(["dense", "sparse", "callable"]),
    old_form=st.sampled_from(["tensor", "callable", None]),
    normalization=st.sampled_from(["mean", "mean_std", "std", "none"]),
    beta_negative=st.sampled_from([None, 0.2, 50.0]),
    masked=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_property_fused_with_options_equals_naive_for_any_shape_and_chunking(
    n, v, chunk_size, k, loss, adv_form, old_form, normalization, beta_negative, masked, seed
):
    p = _problem(n=n, v=v, h=4, seed=seed)
    mask = p["mask"] if masked else None
    _assert_fused_equals_naive(
        p, loss, adv_form, old_form, mask, chunk_size, min(k, v),
        normalization=normalization, beta_negative=beta_negative,
    )  # fmt: skip


@pytest.mark.parametrize("chunk_size", [3, 16])
def test_fused_sft_equals_sft_loss_eq1(chunk_size):
    p = _problem(n=11)
    for mask in (None, p["mask"], torch.zeros(11, dtype=torch.bool)):
        leaves = _leaves(p)
        z = leaves[0] @ leaves[1].T + leaves[2]
        naive = lco.sft_loss(z, p["actions"], mask)
        naive_grads = torch.autograd.grad(naive, leaves)
        leaves = _leaves(p)
        fused = fused_sft_loss(
            leaves[0], leaves[1], p["actions"], mask=mask, bias=leaves[2], chunk_size=chunk_size
        )
        torch.testing.assert_close(fused, naive, **TOL)
        for f, n in zip(torch.autograd.grad(fused, leaves), naive_grads, strict=True):
            torch.testing.assert_close(f, n, **TOL)


def test_logprob_advantage_chunks_are_log_softmax_of_the_scoring_head_eq12():
    p = _problem()
    hd, wd, bd = p["dpo"]
    rows = logprob_advantage_chunks(hd, wd, bd)
    torch.testing.assert_close(rows(3, 9), lco.logprob_advantages(hd @ wd.T + bd)[3:9], **TOL)
    naive_value, naive_grads = _naive_lco(p, "lco_kld", lco.logprob_advantages(hd @ wd.T + bd), None, None)
    fused_value, fused_grads, _ = _fused_lco(p, "lco_kld", rows, None, None, 4)
    torch.testing.assert_close(fused_value, naive_value, **TOL)
    for f, n in zip(fused_grads, naive_grads, strict=True):
        torch.testing.assert_close(f, n, **TOL)


# --- autograd plumbing ------------------------------------------------------------------------


def test_backward_scales_the_stored_gradients_by_grad_output():
    p = _problem()
    adv, _ = _advantages(p, "sparse")
    leaves = _leaves(p)
    loss = fused_lco_loss(leaves[0], leaves[1], bias=leaves[2], beta=0.5, advantages=adv, chunk_size=4)
    once = torch.autograd.grad(loss, leaves, retain_graph=True)
    scaled = torch.autograd.grad(-2.5 * loss, leaves)
    for a, b in zip(once, scaled, strict=True):
        torch.testing.assert_close(b, -2.5 * a)


def test_only_the_inputs_that_require_grad_get_one():
    p = _problem()
    adv, _ = _advantages(p, "dense")
    hidden = p["hidden"].clone().requires_grad_()
    loss = fused_lco_loss(hidden, p["weight"], bias=p["bias"], beta=1.0, advantages=adv, chunk_size=4)
    (grad,) = torch.autograd.grad(loss, [hidden])
    z = hidden @ p["weight"].T + p["bias"]
    naive = lco.lco_kld(z, z.detach(), lco.normalize_advantages(adv), 1.0)
    torch.testing.assert_close(grad, torch.autograd.grad(naive, [hidden])[0], **TOL)
    with torch.no_grad():
        value = fused_lco_loss(p["hidden"], p["weight"], beta=1.0, advantages=adv)
    assert value.grad_fn is None and math.isfinite(float(value))


def test_all_false_mask_gives_zero_loss_zero_grads_and_skips_every_matmul():
    p = _problem()
    adv, _ = _advantages(p, "sparse")
    leaves = _leaves(p)
    with _OpRecorder() as ops:
        loss = fused_lco_loss(
            leaves[0],
            leaves[1],
            bias=leaves[2],
            beta=1.0,
            advantages=adv,
            mask=torch.zeros(13, dtype=torch.bool),
            chunk_size=4,
        )
        grads = torch.autograd.grad(loss, leaves)
    assert float(loss.detach()) == 0.0
    assert all(bool((g == 0).all()) for g in grads)
    assert not ops.matmuls


def test_chunks_whose_tokens_are_all_masked_out_are_skipped():
    p = _problem(n=12)
    adv, _ = _advantages(p, "sparse")
    mask = torch.zeros(12, dtype=torch.bool)
    mask[5] = True  # only the second of three chunks of 4 has a token
    with _OpRecorder() as ops:
        fused_lco_loss(p["hidden"], p["weight"], beta=1.0, advantages=adv, mask=mask, chunk_size=4)
    assert ops.matmuls == 1  # z of one chunk; no grads are needed here


# --- stats --------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("old_form", ["tensor", None])
def test_stats_match_an_independent_naive_computation(loss, old_form):
    p = _problem(n=10, v=6)
    adv, adv_dense = _advantages(p, "sparse")
    old, old_full = _old_logits(p, old_form)
    mask = p["mask"][:10]
    _, _, (value, stats) = _fused_lco(p, loss, adv, old, mask, 3, return_stats=True)

    z = (p["hidden"] @ p["weight"].T + p["bias"]).requires_grad_()
    z_old = z.detach() if old_full is None else old_full
    policy = torch.distributions.Categorical(logits=z.detach())
    a = p["actions"]
    # Per-token logit gradient by autograd through the naive loss: N·∂(mean_t ℓ_t)/∂z_t = ∂ℓ_t/∂z_t.
    mean_loss = getattr(lco, loss)(z, z_old, lco.normalize_advantages(adv_dense), 0.8)
    (grad,) = torch.autograd.grad(mean_loss * z.shape[0], [z])
    per_token = getattr(lco.objectives, f"{loss}_per_token")(
        z.detach(), lco.optimal_logits(z_old, lco.normalize_advantages(adv_dense), 0.8)
    )
    not_sampled = torch.ones_like(grad, dtype=torch.bool).scatter_(-1, a.unsqueeze(-1), False)
    expected = {
        "loss": per_token,
        "entropy": policy.entropy(),
        "kl_old": torch.distributions.kl_divergence(policy, torch.distributions.Categorical(logits=z_old)),
        "sampled_prob": policy.probs.gather(-1, a.unsqueeze(-1)).squeeze(-1),
        "logit_grad_sampled": grad.abs().gather(-1, a.unsqueeze(-1)).squeeze(-1),
        "logit_grad_nonsampled": (grad.abs() * not_sampled).sum(-1) / 5,
    }
    assert set(stats) == set(expected)
    for name, want in expected.items():
        got = stats[name]
        assert got.shape == (10,) and got.dtype == torch.float32 and not got.requires_grad
        torch.testing.assert_close(got, want * mask, **TOL, msg=lambda m, name=name: f"{name}: {m}")


def test_stats_without_actions_have_no_action_metrics_and_explicit_actions_add_them():
    p = _problem()
    adv, _ = _advantages(p, "dense")
    kw = {"beta": 1.0, "advantages": adv, "return_stats": True}
    _, stats = fused_lco_loss(p["hidden"], p["weight"], **kw)
    assert set(stats) == {"loss", "entropy", "kl_old"}
    assert torch.equal(stats["kl_old"], torch.zeros(13))  # on-policy: π_old is π_θ
    _, stats = fused_lco_loss(p["hidden"], p["weight"], actions=p["actions"], **kw)
    assert "sampled_prob" in stats and "logit_grad_nonsampled" in stats


# --- precision ----------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", LOSSES)
def test_bf16_inputs_run_in_fp32_and_return_bf16_grads_close_to_fp32(loss):
    p32 = _problem(n=40, v=50, h=16)
    p16 = {
        k: (v.bfloat16() if isinstance(v, torch.Tensor) and v.is_floating_point() else v)
        for k, v in p32.items()
    }
    # the fp32 reference on the very same (bf16-representable) numbers
    p_ref = {
        k: (v.float() if isinstance(v, torch.Tensor) and v.is_floating_point() else v) for k, v in p16.items()
    }
    adv16 = SparseAdvantages(p16["token_advantages"], p16["actions"])
    adv32 = SparseAdvantages(p_ref["token_advantages"], p_ref["actions"])
    value16, grads16, _ = _fused_lco(p16, loss, adv16, None, p16["mask"], 16)
    value32, grads32, _ = _fused_lco(p_ref, loss, adv32, None, p_ref["mask"], 16)
    assert value16.dtype == torch.float32
    torch.testing.assert_close(value16, value32, atol=1e-6, rtol=1e-5)  # same math, fp32 inside
    for g16, g32 in zip(grads16, grads32, strict=True):
        assert g16.dtype == torch.bfloat16
        torch.testing.assert_close(g16.float(), g32, atol=1e-6, rtol=1e-2)  # one bf16 rounding


# --- no [N, V] ----------------------------------------------------------------------------------


class _OpRecorder(TorchDispatchMode):
    """Sees every aten op run under it: the largest floating-point tensor any op produces, and the matmuls."""

    def __init__(self):
        super().__init__()
        self.largest = 0
        self.matmuls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.overloadpacket in (torch.ops.aten.mm, torch.ops.aten.addmm, torch.ops.aten.addmm_):
            self.matmuls += 1
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.is_floating_point():
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("loss", (*LOSSES, "sft"))
@pytest.mark.parametrize("adv_form", ["sparse", "callable"])
def test_no_tensor_larger_than_one_chunk_of_logits_is_ever_created(loss, adv_form):
    n, v, h, chunk = 512, 256, 4, 16  # N·V = 131072 vs chunk·V = 4096 ≥ N·H, V·H
    p = _problem(n=n, v=v, h=h)
    adv, _ = _advantages(p, adv_form)
    old = lambda start, end: p["old"][0][start:end] @ p["old"][1].T  # noqa: E731
    leaves = _leaves(p)
    with _OpRecorder() as fused_ops:
        if loss == "sft":
            value = fused_sft_loss(leaves[0], leaves[1], p["actions"], bias=leaves[2], chunk_size=chunk)
        else:
            value = fused_lco_loss(
                leaves[0], leaves[1], bias=leaves[2], loss=loss, beta=1.0, advantages=adv, old_logits=old,
                mask=p["mask"], chunk_size=chunk,
            )  # fmt: skip
        torch.autograd.grad(value, leaves)
    assert fused_ops.largest <= chunk * v
    # The probe does see [N, V] when it is there: the naive loss on the same inputs.
    with _OpRecorder() as naive_ops:
        _naive_lco(p, "lco_kld", lco.sparse_advantages(p["token_advantages"], p["actions"], v), None, None)
    assert naive_ops.largest >= n * v


@pytest.mark.parametrize(("loss", "support"), [(name, 5) for name in LOSSES] + [("lco_mse", "sampled")])
@pytest.mark.parametrize("adv_form", ["sparse", "callable"])
def test_no_tensor_larger_than_one_chunk_of_logits_is_created_with_a_support(loss, support, adv_form):
    n, v, h, chunk = 512, 256, 4, 16
    p = _problem(n=n, v=v, h=h)
    adv, _ = _advantages(p, adv_form)
    leaves = _leaves(p)
    with _OpRecorder() as fused_ops:
        value = fused_lco_loss(
            leaves[0], leaves[1], bias=leaves[2], loss=loss, beta=1.0, advantages=adv, mask=p["mask"],
            chunk_size=chunk, support=support, actions=p["actions"], beta_negative=100.0,
            normalization=("mean" if adv_form == "sparse" else "std") if support == 5 else "none",
        )  # fmt: skip
        torch.autograd.grad(value, leaves)
    assert fused_ops.largest <= chunk * v


def test_default_chunk_size_is_256_tokens_capped_by_the_block_budget():
    assert default_chunk_size(32000) == default_chunk_size(152064) == 256
    assert default_chunk_size(1_000_000) * 1_000_000 * 4 <= 256 * 2**20
    assert default_chunk_size(10**12) == 1


def _fused_share(n, v, h, chunk):
    """fp32 elements of the fused step (weight and hidden gradients + 4 chunk blocks) over those
    of the least unfused LCO step (4 [N, V] blocks + the same gradients) — the picker's memory model."""
    floor = v * h + n * h
    return (floor + 4 * chunk * v) / (4 * n * v + floor)


@pytest.mark.parametrize("n", [64, 512, 2048, 8192, 32768])
@pytest.mark.parametrize("v", [4096, 32000, 152064])
@pytest.mark.parametrize("h", [64, 1024, 4096])
def test_default_chunk_size_from_the_shapes_is_the_largest_within_a_fifth_of_naive(n, v, h):
    chunk = default_chunk_size(v, n, h)
    assert 1 <= chunk <= min(n, 256)
    if chunk == n or chunk == 256:
        assert chunk == 256 or _fused_share(n, v, h, chunk) <= 0.2 or chunk == fused.MIN_CHUNK_TOKENS
    elif _fused_share(n, v, h, fused.MIN_CHUNK_TOKENS) > 0.2:
        assert chunk == fused.MIN_CHUNK_TOKENS  # the floor alone is above a fifth: smallest efficient chunk
    else:
        assert chunk % 8 == 0 and _fused_share(n, v, h, chunk) <= 0.2 < _fused_share(n, v, h, chunk + 8)


def test_default_chunk_size_at_the_benchmark_shapes():
    # N = 2048 is where the fixed 256 missed mem_ratio ≤ 0.2 (benchmarks/README.md).
    assert default_chunk_size(32000, 2048, 1024) == 184
    assert default_chunk_size(152064, 2048, 1024) == 200
    assert default_chunk_size(32000, 8192, 1024) == default_chunk_size(152064, 8192, 1024) == 256
    assert default_chunk_size(32000, 10, 1024) == 10  # never more than N
    assert default_chunk_size(10**12, 8192, 1024) == 1  # the per-block byte cap stays hard


def test_default_chunk_size_leaves_most_of_a_cuda_devices_free_memory(monkeypatch):
    v = 32000
    free = 64 * 4 * 4 * v * 4 + 123  # room for 4 blocks of 64 tokens in a quarter
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free, 10 * free))
    assert default_chunk_size(v, 8192, 1024, "cuda") == 64
    assert default_chunk_size(v, 8192, 1024, "cpu") == 256


@pytest.mark.parametrize("chunk_size", [None, 7])
def test_the_chunk_size_is_the_callers_or_the_one_picked_from_the_shapes(chunk_size):
    n, v, h = 300, 256, 4
    p = _problem(n=n, v=v, h=h, bias=False)
    expected = chunk_size or default_chunk_size(v, n, h)
    assert expected != 7 and expected < n or chunk_size == 7
    leaves, sparse = _leaves(p), SparseAdvantages(p["token_advantages"], p["actions"])
    with _OpRecorder() as ops:
        value = fused_lco_loss(
            leaves[0], leaves[1], loss="lco_kld", beta=1.0, advantages=sparse,
            chunk_size=chunk_size,
        )  # fmt: skip
        torch.autograd.grad(value, leaves)
    # Three matmuls per chunk (logits, grad_hidden, grad_weight), no [c, V] block beyond the chunk.
    assert ops.matmuls == 3 * math.ceil(n / expected)
    assert ops.largest <= expected * v


# --- one pass: z* in closed form, compiled kernels -------------------------------------------------


@pytest.mark.parametrize("v", [1, 2, 7, 32000])
@pytest.mark.parametrize("normalization", ["mean", "mean_std", "std", "none"])
def test_sparse_normalized_is_normalize_advantages_of_the_one_hot_row(v, normalization):
    if v == 1 and normalization in ("mean_std",):
        pytest.skip("σ = 0 over one entry: the row is 0/eps, nothing to compare beyond 'mean'")
    token_adv = torch.tensor([1.7, -0.4, 0.0, 3e-7, -250.0])
    actions = torch.arange(5) % v
    dense = lco.normalize_advantages(lco.sparse_advantages(token_adv, actions, v), normalization)
    off, on = fused.sparse_normalized(token_adv, v, normalization)
    at_action = dense.gather(-1, actions[:, None]).squeeze(-1)
    torch.testing.assert_close(on, at_action, rtol=1e-5, atol=1e-6)
    if v > 1:
        elsewhere = dense.scatter(-1, actions[:, None], float("nan"))
        torch.testing.assert_close(elsewhere.nanmean(-1), off, rtol=1e-5, atol=1e-6)
        assert torch.all((elsewhere - off[:, None]).nan_to_num(0.0).abs() <= 1e-6 + 1e-5 * off.abs()[:, None])


@pytest.mark.parametrize("beta_negative", [None, 12.0])
@pytest.mark.parametrize("normalization", ["mean", "mean_std", "std", "none"])
@pytest.mark.parametrize("old_form", ["tensor", None])
@pytest.mark.parametrize("adv_form", ["dense", "sparse", "callable"])
@pytest.mark.parametrize("loss", LOSSES)
def test_whole_vocabulary_target_for_every_normalization_and_beta_negative_equals_naive(
    loss, adv_form, old_form, normalization, beta_negative
):
    """The one-pass z* (closed forms for sparse A, multiply-add for dense A) against
    normalize_advantages + optimal_logits of the naive path; a zero token advantage included."""
    p = _problem()
    p["token_advantages"][3] = 0.0
    _assert_fused_equals_naive(
        p,
        loss,
        adv_form,
        old_form,
        p["mask"],
        4,
        None,
        normalization=normalization,
        beta_negative=beta_negative,
    )


@pytest.fixture
def fresh_kernels(monkeypatch):
    """An empty cache of compiled kernels for this test (they are shared per process otherwise)."""
    monkeypatch.setattr(compiled, "_COMPILED", {})


def test_compile_falls_back_to_eager_with_one_warning(monkeypatch, fresh_kernels):
    calls = []

    def broken_compile(fn, **kwargs):
        def run(*args):
            calls.append(1)
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found")

        return run

    monkeypatch.setattr(fused.torch, "compile", broken_compile)
    p = _problem()
    adv, _ = _advantages(p, "sparse")
    eager_value, eager_grads, _ = _fused_lco(p, "lco_lch", adv, None, p["mask"], 4)
    with pytest.warns(RuntimeWarning, match="lco_lch chunk kernel failed .*C\\+\\+ compiler.*eager"):
        value, grads, _ = _fused_lco(p, "lco_lch", adv, None, p["mask"], 4, compile=True)
    assert len(calls) == 1  # tried once, then eager for the remaining chunks
    torch.testing.assert_close(value, eager_value, rtol=0, atol=0)
    for f, e in zip(grads, eager_grads, strict=True):
        torch.testing.assert_close(f, e, rtol=0, atol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second step neither retries nor warns again
        _fused_lco(p, "lco_lch", adv, None, p["mask"], 4, compile=True)
    assert len(calls) == 1
    assert "C++ compiler" in compiled._COMPILED["lco_lch"].failure


def test_compile_auto_follows_the_per_device_table(monkeypatch, fresh_kernels):
    spec = fused.LCO_LOSSES["lco_kld"]
    monkeypatch.setattr(compiled, "COMPILE_AUTO", {"cpu": False})
    assert fused.chunk_kernel(spec, "auto", "cpu") is spec.value_and_grad
    assert fused.chunk_kernel(spec, "auto", "cuda") is spec.value_and_grad  # absent: eager
    monkeypatch.setattr(compiled, "COMPILE_AUTO", {"cpu": True})
    kernel = fused.chunk_kernel(spec, "auto", "cpu")
    assert isinstance(kernel, fused.CompiledKernel) and fused.chunk_kernel(spec, True) is kernel
    assert fused.chunk_kernel(spec, False) is spec.value_and_grad


@pytest.mark.parametrize("bad", [1, 0, "yes", None, "AUTO"])
def test_bad_compile_option_is_rejected_by_name(bad):
    p = _problem()
    with pytest.raises(ValueError, match="compile must be"):
        _fused_lco(p, "lco_kld", p["dense_advantages"], None, None, 4, compile=bad)


@pytest.mark.skipif(
    shutil.which("g++") is None and shutil.which("cc") is None,
    reason="Inductor's CPU backend needs a C++ compiler",
)
@pytest.mark.parametrize("loss", ["lco_lch"])  # one loss: compiling costs ~30 s on a 2-core CPU
def test_compiled_kernel_equals_naive(loss, fresh_kernels):
    p = _problem()
    for adv_form, old_form, mask, support in (
        ("sparse", None, p["mask"], None),
        ("dense", "tensor", None, 3),
    ):
        adv, adv_dense = _advantages(p, adv_form)
        old, old_full = _old_logits(p, old_form)
        naive_value, naive_grads = _naive_lco(p, loss, adv_dense, old_full, mask, support=support)
        value, grads, _ = _fused_lco(p, loss, adv, old, mask, 4, support=support, compile=True)
        torch.testing.assert_close(value, naive_value, **TOL)
        for f, n in zip(grads, naive_grads, strict=True):
            torch.testing.assert_close(f, n, **TOL)
    assert compiled._COMPILED[loss].failure is None


# --- bad input ----------------------------------------------------------------------------------


def _nan_at(t, index):
    t = t.clone()
    t[index] = float("nan")
    return t


def _bad_inputs():
    p = _problem()
    n, v = 13, 7
    sparse = SparseAdvantages(p["token_advantages"], p["actions"])
    ok = {"hidden": p["hidden"], "weight": p["weight"], "beta": 1.0, "advantages": sparse}
    cases = [
        ({"beta": 0.0}, "beta"),
        ({"beta": -1.0}, "beta"),
        ({"beta": float("nan")}, "beta"),
        ({"beta": float("inf")}, "beta"),
        ({"loss": "lco_l2"}, "loss"),
        ({"normalization": "zscore"}, "normalization"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"hidden": p["hidden"][None]}, "hidden"),
        ({"weight": p["weight"][:, :3]}, "weight"),
        ({"bias": torch.zeros(v + 1)}, "bias"),
        ({"mask": torch.ones(n + 1, dtype=torch.bool)}, "mask"),
        ({"hidden": _nan_at(p["hidden"], (2, 1))}, "hidden"),
        ({"weight": _nan_at(p["weight"], (0, 0))}, "weight"),
        ({"bias": torch.full((v,), float("inf"))}, "bias"),
        ({"advantages": p["dense_advantages"][:, :-1]}, "advantages"),
        ({"advantages": p["dense_advantages"][:-1]}, "advantages"),
        ({"advantages": _nan_at(p["dense_advantages"], (4, 2))}, "advantages"),
        # NaN in a chunk whose tokens are all masked out is still an error, as for the naive loss
        (
            {
                "advantages": _nan_at(p["dense_advantages"], (12, 0)),
                "mask": torch.arange(n) < 4,
                "chunk_size": 4,
            },
            "advantages",
        ),
        ({"advantages": lambda s, e: torch.zeros(e - s, v + 2)}, "advantages"),
        ({"advantages": lambda s, e: torch.full((e - s, v), float("nan"))}, "advantages"),
        ({"advantages": "dense"}, "advantages"),
        ({"advantages": SparseAdvantages(p["token_advantages"], p["actions"] + v)}, "advantages.actions"),
        ({"advantages": SparseAdvantages(p["token_advantages"], p["actions"] - 10)}, "advantages.actions"),
        (
            {"advantages": SparseAdvantages(p["token_advantages"], p["actions"].float())},
            "advantages.actions",
        ),
        ({"advantages": SparseAdvantages(p["token_advantages"][:-1], p["actions"])}, "token_advantages"),
        (
            {"advantages": SparseAdvantages(_nan_at(p["token_advantages"], 3), p["actions"])},
            "token_advantages",
        ),
        ({"old_logits": torch.zeros(n, v + 1)}, "old_logits"),
        ({"old_logits": torch.full((n, v), float("inf"))}, "old_logits"),
        ({"old_logits": lambda s, e: torch.zeros(e - s + 1, v)}, "old_logits"),
        ({"advantages": p["dense_advantages"], "actions": torch.full((n,), v)}, "actions"),
        ({"actions": (p["actions"] + 1) % v}, "actions"),
        ({"beta_negative": 0.0}, "beta_negative"),
        ({"beta_negative": float("nan")}, "beta_negative"),
        ({"support": 0}, "support"),
        ({"support": v + 1}, "support"),
        ({"support": "top5"}, "support"),
        ({"support": 2.5}, "support"),
        ({"support": torch.zeros(n, 2, dtype=torch.long)}, "support"),  # the same id twice
        ({"support": torch.arange(2).expand(n - 1, 2)}, "support"),  # token count mismatch
        ({"support": torch.full((n, 2), v) - torch.arange(2)}, "support"),  # id v out of range
        ({"support": torch.arange(2.0).expand(n, 2)}, "support"),  # float ids
        ({"support": "sampled", "advantages": p["dense_advantages"]}, "support"),  # no actions
        ({"support": "sampled", "normalization": "none"}, "support"),  # lco_kld on one entry
        ({"support": 1, "normalization": "none"}, "support"),
        ({"support": "sampled", "loss": "lco_mse"}, "normalization"),  # "mean" over one entry
    ]
    return ok, cases


@pytest.mark.parametrize("case", range(len(_bad_inputs()[1])))
def test_bad_input_raises_value_error_naming_the_argument(case):
    ok, cases = _bad_inputs()
    override, name = cases[case]
    args = {**ok, **override}
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
        fused_lco_loss(args.pop("hidden"), args.pop("weight"), **args)


def test_fused_sft_and_dpo_chunks_name_their_bad_arguments():
    p = _problem()
    with pytest.raises(ValueError, match="targets"):
        fused_sft_loss(p["hidden"], p["weight"], p["actions"] + 7)
    with pytest.raises(ValueError, match="targets"):
        fused_sft_loss(p["hidden"], p["weight"], p["actions"][:-1])
    (hd, wd, bd), (hr, wr, br) = p["dpo"], p["ref"]
    with pytest.raises(ValueError, match="ref_weight"):
        dpo_advantage_chunks(hd, wd, bd, hr, wr[:-1], br)
    with pytest.raises(ValueError, match="ref_hidden"):
        dpo_advantage_chunks(hd, wd, bd, hr[:-1], wr, br)
    with pytest.raises(ValueError, match="dpo_weight"):
        dpo_advantage_chunks(hd, wd[:, :-1], bd, hr, wr, br)
    with pytest.raises(ValueError, match="dpo_hidden"):
        dpo_advantage_chunks(_nan_at(hd, (0, 0)), wd, bd, hr, wr, br)


@pytest.mark.parametrize("temperature", [0.6, 1.7])
def test_entropy_stat_is_at_the_stats_temperature_and_nothing_else_moves(temperature):
    p = _problem()
    adv, _ = _advantages(p, "dense")
    kw = {"beta": 1.0, "advantages": adv, "bias": p["bias"], "actions": p["actions"], "return_stats": True}
    loss_1, stats_1 = fused_lco_loss(p["hidden"], p["weight"], **kw)
    loss_t, stats_t = fused_lco_loss(p["hidden"], p["weight"], stats_temperature=temperature, **kw)
    z = p["hidden"] @ p["weight"].T + p["bias"]
    # TRL's entropy of the sampling distribution softmax(z/T)
    want = torch.distributions.Categorical(logits=z / temperature).entropy()
    torch.testing.assert_close(stats_t["entropy"], want, **TOL)
    assert not torch.allclose(stats_t["entropy"], stats_1["entropy"])
    assert torch.equal(loss_t, loss_1)
    for name in set(stats_1) - {"entropy"}:
        assert torch.equal(stats_t[name], stats_1[name]), name


@pytest.mark.parametrize("bad", [0.0, -1.0, "hot"])
def test_non_positive_stats_temperature_is_refused(bad):
    p = _problem()
    adv, _ = _advantages(p, "dense")
    with pytest.raises(ValueError, match="stats_temperature"):
        fused_lco_loss(p["hidden"], p["weight"], beta=1.0, advantages=adv, stats_temperature=bad)
