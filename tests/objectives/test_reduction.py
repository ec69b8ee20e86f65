"""The GRPO-family aggregations of per-token losses, against loops written from their definitions.

(The same aggregations are also held against TRL's ``GRPOTrainer._compute_loss`` through the
policy losses in test_policy_gradient.py.)
"""

import numpy as np
import pytest
import torch

from lco import aggregate
from lco.objectives import AGGREGATIONS, masked_mean


def _batch(B=4, T=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    per_token = torch.randn(B, T, generator=g)
    lengths = torch.tensor([6, 3, 1, 4])[:B]
    mask = torch.arange(T)[None, :] < lengths[:, None]  # right-padded completions
    return per_token, mask


def _loop_reference(per_token, mask, mode, max_len=None):
    x, m = per_token.double().numpy(), mask.numpy()
    B, T = x.shape
    if mode == "token_mean":
        n = m.sum()
        return sum(x[b, t] for b in range(B) for t in range(T) if m[b, t]) / max(n, 1)
    if mode == "sequence_mean":
        seq_means = []
        for b in range(B):
            n_b = m[b].sum()
            seq_means.append(sum(x[b, t] for t in range(T) if m[b, t]) / n_b if n_b else 0.0)
        return sum(seq_means) / B
    return sum(x[b, t] for b in range(B) for t in range(T) if m[b, t]) / (B * max_len)


@pytest.mark.parametrize("mode", AGGREGATIONS)
def test_aggregate_matches_a_loop_over_the_definition(mode):
    per_token, mask = _batch(seed=1)
    expected = _loop_reference(per_token, mask, mode, max_len=10)
    got = aggregate(per_token, mask, mode, max_completion_length=10)
    np.testing.assert_allclose(float(got), expected, rtol=1e-6)


@pytest.mark.parametrize("mode", AGGREGATIONS)
def test_no_mask_is_an_all_true_mask(mode):
    per_token, mask = _batch(seed=2)
    torch.testing.assert_close(
        aggregate(per_token, None, mode, 6), aggregate(per_token, torch.ones_like(mask), mode, 6)
    )


def test_a_fully_masked_sequence_counts_as_zero_in_the_sequence_mean():
    """As TRL's 'grpo' loss: Σ_t / clamp(|y_i|, 1), then the mean over all B sequences."""
    per_token, mask = _batch(seed=3)
    mask[2] = False
    expected = _loop_reference(per_token, mask, "sequence_mean")
    np.testing.assert_allclose(float(aggregate(per_token, mask, "sequence_mean")), expected, rtol=1e-6)


def test_per_token_gradient_weights_show_each_aggregations_length_treatment():
    """token_mean: 1/Σ|y|; sequence_mean: 1/(B·|y_i|) (GRPO's length bias); constant: 1/(B·L) (Dr. GRPO)."""
    per_token, mask = _batch(seed=4)
    lengths = mask.sum(-1, keepdim=True).float()
    B, L = mask.shape[0], 8
    expected = {
        "token_mean": torch.full_like(per_token, 1.0) / mask.sum(),
        "sequence_mean": (1.0 / (B * lengths)).expand_as(per_token),
        "constant": torch.full_like(per_token, 1.0 / (B * L)),
    }
    for mode, weight in expected.items():
        x = per_token.clone().requires_grad_(True)
        aggregate(x, mask, mode, max_completion_length=L).backward()
        torch.testing.assert_close(x.grad, torch.where(mask, weight, 0.0), msg=mode)


def test_masked_mean_is_the_mean_over_selected_entries():
    per_token, mask = _batch(seed=5)
    torch.testing.assert_close(masked_mean(per_token, mask), per_token[mask].mean())
    torch.testing.assert_close(masked_mean(per_token, None), per_token.mean())
    assert float(masked_mean(torch.zeros(0), None)) == 0.0  # an empty batch is 0, not NaN


@pytest.mark.parametrize("mode", AGGREGATIONS)
def test_all_false_mask_gives_exactly_zero_and_zero_gradient(mode):
    per_token, mask = _batch(seed=6)
    x = (per_token * 1e30).requires_grad_(True)
    loss = aggregate(x, torch.zeros_like(mask), mode, max_completion_length=6)
    loss.backward()
    assert float(loss.detach()) == 0.0
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_unknown_mode_is_rejected():
    per_token, mask = _batch()
    with pytest.raises(ValueError, match="mode"):
        aggregate(per_token, mask, "seq_mean")


@pytest.mark.parametrize("max_len", [None, 0, -3])
def test_constant_aggregation_needs_a_positive_max_completion_length(max_len):
    per_token, mask = _batch()
    with pytest.raises(ValueError, match="max_completion_length"):
        aggregate(per_token, mask, "constant", max_completion_length=max_len)


def test_sequence_mean_needs_a_sequence_axis():
    with pytest.raises(ValueError, match="sequence_mean"):
        aggregate(torch.zeros(5), None, "sequence_mean")


@pytest.mark.parametrize("mask_shape", [(4,), (6, 4), (4, 6, 1)])
def test_mask_of_the_wrong_shape_is_rejected_not_broadcast(mask_shape):
    per_token = torch.zeros(4, 6)
    with pytest.raises(ValueError, match="mask"):
        aggregate(per_token, torch.ones(mask_shape, dtype=torch.bool))
    square = torch.zeros(4, 4)  # a [B] mask would broadcast along T here
    with pytest.raises(ValueError, match="mask"):
        aggregate(square, torch.ones(4, dtype=torch.bool))
