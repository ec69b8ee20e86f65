"""The chunking base of the fused LM-head losses: one autograd function, the chunk size, the checks.

As in Liger-Kernel's ``chunked_loss``, the base owns *how* a loss of z = h Wᵀ (+ b) is computed
without the ``[N, V]`` logits, and each loss states only its per-chunk math, a callable
``(z [c, V], start, end) -> ChunkOutput`` (:class:`lco.objectives.lco_chunk.LCOChunk`,
:class:`lco.objectives.fused.CrossEntropyChunk`):

- :class:`ChunkedLinearLoss` walks over token chunks of ``hidden [N, H]``, computes z in fp32 for
  that chunk only, asks the chunk loss for ℓ_t and its closed-form logit gradient ∂ℓ_t/∂z, and
  turns the latter into grad_hidden (per chunk) and grad_weight / grad_bias (accumulated)
  *during the forward*. Backward only scales the stored gradients by grad_output. Peak memory is
  a few ``[chunk_size, V]`` blocks.
- :func:`default_chunk_size` picks the chunk from N, V, H and the device.
- The input checks that the public losses and the row sources (:mod:`.row_sources`) share.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .._checks import check_finite
from .heads import head_logit_chunks

DEFAULT_CHUNK_TOKENS = 256
"""Tokens per chunk when ``chunk_size`` is not given: enough rows for the three per-chunk
matmuls to run near full speed (fewer rows make ``grad_weight += gᵀ h`` bandwidth-bound: it
reads and writes all of ``[V, H]`` once per chunk), few enough that the chunk's ``[c, V]``
blocks stay a small fraction of the ``[N, V]`` logits."""

DEFAULT_CHUNK_BYTES = 256 * 2**20
"""Cap on one fp32 ``[chunk, V]`` block for the default chunk size."""

MIN_CHUNK_TOKENS = 32
"""The smallest chunk :func:`default_chunk_size` picks: below it ``grad_weight += gᵀ h`` turns
bandwidth-bound (all of ``[V, H]`` read and written per chunk) and the step slows by whole factors."""

CHUNK_BLOCKS = 4
"""fp32 ``[chunk, V]`` blocks alive at once in a chunk: z, z* and the two (log-)softmax or
scratch blocks of ``value_and_grad`` (CE: z and log π)."""

NAIVE_BLOCKS = 4
"""fp32 ``[N, V]`` blocks an unfused LCO loss keeps at least: the logits, z*, their difference or
(log-)softmaxes, and the gradient (benchmarks/README.md: 4.4 for LCO-MSE, 7–11 for LCH and KLD;
cross-entropy keeps 2.5, which is why its fused step stays above a fifth at small N)."""

MEMORY_SHARE = 0.2
"""Target for the fused step's memory over the unfused step's (gradients included)."""

DEVICE_MEMORY_SHARE = 0.25
"""On a device that reports its free memory, the chunk's blocks take at most this share of it."""


def default_chunk_size(
    vocab_size: int,
    n_tokens: int | None = None,
    hidden_size: int | None = None,
    device: torch.device | str | None = None,
) -> int:
    """Tokens per chunk for N tokens, vocabulary V and hidden size H: the largest chunk up to
    :data:`DEFAULT_CHUNK_TOKENS` whose memory stays within :data:`MEMORY_SHARE` of the unfused step.

    Every bound is in fp32 elements. The fused step keeps the ``[V, H]`` weight gradient and the
    ``[N, H]`` hidden gradient (the floor F = VH + NH, which the unfused step has too) plus
    :data:`CHUNK_BLOCKS` ``[c, V]`` blocks; the unfused step at least :data:`NAIVE_BLOCKS` ``[N, V]``
    blocks plus F. So c ≤ (s·(b·N·V + F) − F) / (k·V) with s = MEMORY_SHARE, b = NAIVE_BLOCKS,
    k = CHUNK_BLOCKS. Without ``n_tokens`` (or ``hidden_size``, taken as 0) that bound is not applied.
    Further caps: one block under :data:`DEFAULT_CHUNK_BYTES`; on a CUDA ``device``, the k blocks
    under :data:`DEVICE_MEMORY_SHARE` of its free memory; these two are hard (down to 1 token).
    The share bound is rounded down to a multiple of 8 (for the matmuls) and raised to
    :data:`MIN_CHUNK_TOKENS` — where the floor F alone is more than s of the unfused step (small N
    against a large H), no chunk meets s and the smallest efficient one is taken — and the chunk
    is never more than N.

    At H = 1024: N = 2048 gives 184 tokens (V = 32000) and 200 (V = 152064); N = 8192 gives 256.
    """
    v = max(int(vocab_size), 1)
    chunk = DEFAULT_CHUNK_TOKENS
    if n_tokens is not None:
        n, h = int(n_tokens), int(hidden_size or 0)
        floor = v * h + n * h
        budget = MEMORY_SHARE * (NAIVE_BLOCKS * n * v + floor) - floor
        fits = int(budget // (CHUNK_BLOCKS * v)) // 8 * 8 if budget > 0 else 0
        chunk = min(chunk, max(MIN_CHUNK_TOKENS, fits), max(n, 1))
    # Hard caps, below MIN_CHUNK_TOKENS if need be: memory that is not there cannot be traded.
    chunk = min(chunk, DEFAULT_CHUNK_BYTES // (4 * v))
    if device is not None and torch.device(device).type == "cuda" and torch.cuda.is_available():
        free, _total = torch.cuda.mem_get_info(torch.device(device))
        chunk = min(chunk, int(DEVICE_MEMORY_SHARE * free) // (CHUNK_BLOCKS * 4 * v))
    chunk = max(chunk, 1)
    return chunk


# --- input checks ---------------------------------------------------------------------------------


def check_finite_sum(name: str, tensor: torch.Tensor | None) -> None:
    """:func:`check_finite` in one streaming pass: NaN or ±inf anywhere makes the sum non-finite.

    ``isfinite(t).all()`` reads t three times and allocates a bool tensor of its size; in the
    per-chunk loop that was a third of the CPU time. A non-finite sum of finite entries (fp32
    overflow, |Σ| > 3e38) is told apart by the exact check, so nothing finite is rejected.
    """
    if tensor is not None and tensor.is_floating_point() and not bool(torch.isfinite(tensor.sum())):
        check_finite(name, tensor)


def check_head(h_name, hidden, w_name, weight, b_name, bias) -> None:
    if hidden.dim() != 2:
        raise ValueError(f"{h_name} must be [N, H], got shape {tuple(hidden.shape)}")
    if weight.dim() != 2 or weight.shape[1] != hidden.shape[1]:
        raise ValueError(
            f"{w_name} must be [V, H] with H = {hidden.shape[1]} (the hidden size of {h_name}), "
            f"got shape {tuple(weight.shape)}"
        )
    if bias is not None and bias.shape != weight.shape[:1]:
        raise ValueError(f"{b_name} must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
    for name, t in ((h_name, hidden), (w_name, weight), (b_name, bias)):
        if t is not None and not t.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
        check_finite_sum(name, t)


def check_token_vector(name: str, t: torch.Tensor, n_tokens: int) -> None:
    if not isinstance(t, torch.Tensor) or t.shape != (n_tokens,):
        got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"{name} must have shape ({n_tokens},) (one entry per token), got {got}")


def check_chunk_size(chunk_size, hidden: torch.Tensor, vocab_size: int) -> int:
    if chunk_size is None:
        return default_chunk_size(vocab_size, hidden.shape[0], hidden.shape[1], hidden.device)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size <= 0:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    return chunk_size


# --- the base: chunking, custom autograd, memory ----------------------------------------------


@dataclass(frozen=True, eq=False)
class ChunkOutput:
    """What a per-chunk loss returns for the logits z ``[c, V]`` of tokens [start, end).

    ``value``: ℓ_t per token ``[c]``; ``logit_grad``: ∂ℓ_t/∂z ``[c, V]`` (a fresh tensor the base
    may scale in place); ``stats``: optional per-token diagnostics ``[k, c]``.
    """

    value: torch.Tensor
    logit_grad: torch.Tensor
    stats: torch.Tensor | None = None


def _active_chunks(weights: torch.Tensor | None, n_tokens: int, chunk_size: int) -> list[bool]:
    """Which chunks hold at least one token of nonzero weight (one host sync for all of them)."""
    n_chunks = -(-n_tokens // chunk_size)
    if weights is None:
        return [True] * n_chunks
    padded = torch.zeros(n_chunks * chunk_size, dtype=torch.bool, device=weights.device)
    padded[:n_tokens] = weights != 0
    return padded.view(n_chunks, chunk_size).any(-1).tolist()


def _chunk_step(hidden, w32, b32, chunk_loss, start, end, m, denom, stats, grads) -> torch.Tensor:
    """One chunk of :class:`ChunkedLinearLoss`: returns Σ_t m_t ℓ_t, fills stats and grads in place.

    A function of its own so that every ``[c, V]`` block is freed on return, before the next
    chunk's logits are allocated.
    """
    grad_hidden, grad_weight, grad_bias = grads
    h = hidden[start:end].float()
    z = head_logit_chunks(h, w32, b32)(0, h.shape[0])
    out = chunk_loss(z, start, end)
    del z  # the chunk loss has what it needs; free the block before the matmuls below
    if out.stats is not None:
        stats[:, start:end] = out.stats if m is None else out.stats * m
    if grad_hidden is not None or grad_weight is not None or grad_bias is not None:
        # The token weights s_t = m_t / Σm scale the rows of g = ∂ℓ/∂z. They are applied to the
        # [c, H] side of each product instead of to g: (diag(s) g) W = diag(s) (g W) and
        # (diag(s) g)ᵀ h = gᵀ (diag(s) h) — the same numbers, one [c, V] pass fewer.
        g = out.logit_grad
        s = None if m is None else (m / denom).unsqueeze(-1)
        if grad_hidden is not None:
            rows = grad_hidden[start:end]
            torch.mm(g, w32, out=rows)
            rows.div_(denom) if s is None else rows.mul_(s)
        if grad_weight is not None:
            if s is None:
                grad_weight.addmm_(g.T, h, alpha=1.0 / denom)
            else:
                grad_weight.addmm_(g.T, h * s)
        if grad_bias is not None:
            grad_bias += g.sum(0) / denom if s is None else s.squeeze(-1) @ g
    return out.value.sum() if m is None else (out.value * m).sum()


class ChunkedLinearLoss(torch.autograd.Function):
    """E_t[ℓ_t] over tokens of z = h Wᵀ (+ b), never materialising z for more than one chunk.

    ``forward(hidden [N, H], weight [V, H], bias [V] | None, chunk_loss, mask [N] | None,
    chunk_size)`` returns ``(loss, stats [k, N])``: the masked mean Σ_t m_t ℓ_t / max(Σ_t m_t, 1)
    (:func:`lco.objectives.reduction.masked_mean`) and the chunk loss's per-token stats (zero for
    masked-out tokens; ``k = len(chunk_loss.stat_names)``, no gradient).

    The memory trick: each chunk's logit gradient g = (m_t / Σm)·∂ℓ_t/∂z is contracted at once
    into grad_hidden = g W and grad_weight += gᵀ h, grad_bias += Σ_t g, so that no ``[c, V]``
    tensor outlives its chunk. Only the gradients of inputs that require one are formed; chunks
    whose tokens are all masked out are skipped, matmul included. Math is fp32; the stored
    gradients are cast to the inputs' dtypes.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, chunk_loss, mask, chunk_size):
        n_tokens = hidden.shape[0]
        need_hidden, need_weight, need_bias = ctx.needs_input_grad[:3]
        w32 = weight.float()  # a copy only for low-precision heads: [V, H], not [N, V]
        b32 = None if bias is None else bias.float()
        weights = None if mask is None else mask.float()
        # masked_mean's normaliser: an all-false mask gives 0 / 1, a loss of 0 with zero gradient.
        denom = float(weights.sum().clamp(min=1.0)) if weights is not None else float(max(n_tokens, 1))
        grad_hidden = torch.zeros_like(hidden, dtype=torch.float32) if need_hidden else None
        grad_weight = torch.zeros_like(w32) if need_weight else None
        grad_bias = torch.zeros_like(b32) if need_bias else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        stats = torch.zeros(len(chunk_loss.stat_names), n_tokens, dtype=torch.float32, device=hidden.device)

        grads = (grad_hidden, grad_weight, grad_bias)
        # The math is fp32 by design: under a mixed-precision autocast (Trainer with bf16=True, TRL's
        # default) the matmuls would run in bf16 and could not write into the fp32 buffers.
        with torch.autocast(device_type=hidden.device.type, enabled=False):
            for i, active in enumerate(_active_chunks(weights, n_tokens, chunk_size)):
                if active:
                    start, end = i * chunk_size, min((i + 1) * chunk_size, n_tokens)
                    m = None if weights is None else weights[start:end]
                    total += _chunk_step(hidden, w32, b32, chunk_loss, start, end, m, denom, stats, grads)

        ctx.save_for_backward(
            None if grad_hidden is None else grad_hidden.to(hidden.dtype),
            None if grad_weight is None else grad_weight.to(weight.dtype),
            None if grad_bias is None else grad_bias.to(bias.dtype),
        )
        ctx.mark_non_differentiable(stats)
        return total / denom, stats

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss, _grad_stats):
        scaled = []
        for grad in ctx.saved_tensors:
            if grad is None or bool(grad_loss == 1.0):
                scaled.append(grad)
            else:
                scaled.append(grad * grad_loss.to(grad.dtype))
        return (*scaled, None, None, None)


def run_chunked(hidden, weight, bias, chunk_loss, mask, chunk_size, return_stats):
    loss, stats = ChunkedLinearLoss.apply(hidden, weight, bias, chunk_loss, mask, chunk_size)
    if not return_stats:
        return loss
    return loss, dict(zip(chunk_loss.stat_names, stats.unbind(0), strict=True))
