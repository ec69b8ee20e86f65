"""head_logit_chunks: the one z = h·Wᵀ + b of every head path, against the full product."""

from __future__ import annotations

import pytest
import torch

from lco.objectives import chunked_token_stats, head_logit_chunks


@pytest.mark.parametrize("with_bias", [False, True])
def test_head_logit_chunks_are_the_rows_of_the_full_fp32_product(with_bias):
    torch.manual_seed(0)
    hidden = torch.randn(2, 5, 8, dtype=torch.bfloat16)
    weight = torch.randn(11, 8, dtype=torch.bfloat16)
    bias = torch.randn(11, dtype=torch.bfloat16) if with_bias else None
    full = hidden.double().reshape(-1, 8) @ weight.double().T
    if with_bias:
        full = full + bias.double()
    rows = head_logit_chunks(hidden, weight, bias)
    pieces = [rows(start, min(start + 3, 10)) for start in range(0, 10, 3)]
    assert all(p.dtype == torch.float32 for p in pieces)
    torch.testing.assert_close(torch.cat(pieces).double(), full, rtol=1e-6, atol=1e-5)


def test_head_logit_chunks_carry_the_gradient_of_h_w_transpose():
    torch.manual_seed(1)
    hidden = torch.randn(4, 3, requires_grad=True)
    weight = torch.randn(5, 3, requires_grad=True)
    upstream = torch.randn(2, 5)
    head_logit_chunks(hidden, weight)(1, 3).mul(upstream).sum().backward()
    expected_h = torch.zeros(4, 3)
    expected_h[1:3] = upstream @ weight.detach()
    torch.testing.assert_close(hidden.grad, expected_h)
    torch.testing.assert_close(weight.grad, upstream.T @ hidden.detach()[1:3])


def test_chunked_token_stats_match_log_softmax_of_the_full_logits():
    torch.manual_seed(2)
    hidden, weight, bias = torch.randn(2, 3, 4), torch.randn(7, 4), torch.randn(7)
    tokens = torch.randint(0, 7, (2, 3))
    logps, entropy = chunked_token_stats(hidden, weight, bias, tokens, chunk_size=2, temperature=0.5)
    log_pi = torch.log_softmax((hidden @ weight.T + bias) / 0.5, dim=-1)
    torch.testing.assert_close(logps, log_pi.gather(-1, tokens.unsqueeze(-1)).squeeze(-1))
    torch.testing.assert_close(entropy, -(log_pi.exp() * log_pi).sum(-1))
