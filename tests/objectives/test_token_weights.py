"""TRL's per-token corrections on the fused LCO loss: the weighting and TRL's masks, against independent sums."""

from __future__ import annotations

import pytest
import torch
from trl import GRPOTrainer

import lco
from lco.objectives.fused import SparseAdvantages, fused_lco_loss
from lco.objectives.lco import lco_kld_per_token
from lco.objectives.token_weights import TokenCorrections, weighted_token_mean


def _inputs(n=7, v=11, h=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, h, generator=g, dtype=torch.float64).float().requires_grad_()
    weight = torch.randn(v, h, generator=g).requires_grad_()
    adv = torch.randn(n, generator=g)
    actions = torch.randint(0, v, (n,), generator=g)
    return hidden, weight, adv, actions


def test_weighted_token_mean_is_trls_per_token_weighting_of_the_lco_loss():
    hidden, weight, adv, actions = _inputs()
    mask = torch.tensor([1, 1, 0, 1, 1, 1, 0], dtype=torch.bool)
    w = torch.tensor([0.5, 2.0, 3.0, 0.0, 1.0, 0.25, 1.0])  # a dropped token (0) and one outside the mask
    beta = 0.7

    def fused(u):
        return fused_lco_loss(
            hidden, weight, beta=beta, advantages=SparseAdvantages(adv, actions), mask=u, chunk_size=3,
            return_stats=True,
        )  # fmt: skip

    loss, stats = weighted_token_mean(fused, mask, w)
    # independent: per-token KL(π* ‖ π_θ) of eq. 10 on full logits, weighted, over Σ m (TRL's normaliser)
    z = hidden @ weight.T
    A = lco.normalize_advantages(lco.sparse_advantages(adv, actions, z.shape[-1]), "mean")
    per_token = lco_kld_per_token(z, z.detach() + A / beta)
    expected = (per_token * mask * w).sum() / mask.sum()
    torch.testing.assert_close(loss, expected, atol=1e-6, rtol=1e-5)
    g_fused = torch.autograd.grad(loss, (hidden, weight))
    g_expected = torch.autograd.grad(expected, (hidden, weight))
    for a, b in zip(g_fused, g_expected, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    # the per-token stats stay π_θ's own (not multiplied by w) where a token is kept
    entropy = -(torch.softmax(z, -1) * torch.log_softmax(z, -1)).sum(-1).detach()
    kept = mask & (w != 0)
    torch.testing.assert_close(stats["entropy"][kept], entropy[kept], atol=1e-5, rtol=1e-5)


def test_off_policy_mask_is_trls():
    g = torch.Generator().manual_seed(3)
    logps = -torch.rand(4, 5, generator=g) * 3
    sampling = logps + torch.rand(4, 5, generator=g) * torch.tensor([[0.0], [2.0], [0.05], [2.0]])
    mask = torch.ones(4, 5)
    mask[1, 3:] = 0
    adv = torch.tensor([[1.0], [-1.0], [-1.0], [0.5]]).expand(4, 5)
    corrections = TokenCorrections(off_policy_threshold=0.1, sampling_logps=sampling)
    w = corrections.weights(mask, adv, logps, None)
    trl = GRPOTrainer.get_off_policy_mask(adv[:, :1], logps, sampling, mask, 0.1)  # TRL's own, (B, 1)
    torch.testing.assert_close(w, trl.expand(4, 5))
    assert w[1].sum() == 0 and w[0].sum() == 5  # a far, negative sequence dropped; a positive one kept


def test_importance_ratio_and_entropy_mask_multiply_in():
    mask = torch.ones(2, 3)
    entropies = torch.tensor([[0.1, 0.9, 0.5], [0.3, 0.7, 0.2]])
    ratio = torch.tensor([[1.5], [0.5]])  # sequence-level (B, 1), as TRL's sequence_* modes

    def top_half(e, m, threshold):  # TRL's get_high_entropy_mask on one process
        return (e >= torch.quantile(e[m.bool()], threshold)) & m.bool()

    corrections = TokenCorrections(importance_ratio=ratio, entropy_quantile=0.5, high_entropy_mask=top_half)
    w = corrections.weights(mask, torch.zeros(2, 3), torch.zeros(2, 3), entropies)
    expected = torch.tensor([[0.0, 1.5, 1.5], [0.0, 0.5, 0.0]])
    torch.testing.assert_close(w, expected)


@pytest.mark.parametrize("active", [False, True])
def test_corrections_are_active_only_when_an_option_is_on(active):
    c = TokenCorrections(importance_ratio=torch.ones(1, 1)) if active else TokenCorrections()
    assert c.active is active and c.needs_policy_stats is False
