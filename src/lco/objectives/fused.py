"""Fused LM-head + loss: the LCO objectives (eqs. 7–10) and SFT (eq. 1) without the ``[N, V]`` logits.

The naive objectives in :mod:`lco.objectives.lco` take logits z = h Wᵀ for all N tokens. With
N = 8192 completion tokens and a 152k vocabulary those logits alone are 5 GB in fp32, and
autograd keeps several more tensors of that size alive. Here the LM-head matmul and the loss
are fused, as in Liger-Kernel's ``chunked_loss``:

- :class:`ChunkedLinearLoss` — one ``torch.autograd.Function`` owns the chunking, the custom
  autograd and the memory trick. It walks over token chunks of ``hidden [N, H]``, computes
  z = h Wᵀ (+ b) in fp32 for that chunk only, asks the per-chunk loss for its per-token value
  ℓ_t and its closed-form logit gradient ∂ℓ_t/∂z, and turns the latter into grad_hidden (per
  chunk) and grad_weight / grad_bias (accumulated) *during the forward*. Backward only scales
  the stored gradients by grad_output. Peak memory is a few ``[chunk_size, V]`` blocks.
- :class:`LCOChunk` and :class:`CrossEntropyChunk` — each loss states only its per-chunk math.
  LCO builds z* = z_old + A/β (eq. 7) for the chunk in one fresh block (a sparse advantage of
  eq. 11 in closed form, :func:`sparse_normalized`) and hands it to ``value_and_grad`` of
  :data:`lco.objectives.lco.LCO_LOSSES`, which returns the value and the closed-form gradient
  together (sharing the softmaxes) and reuses the z* block; nothing here restates eqs. 8–10.
  ``compile=True`` runs that kernel through ``torch.compile`` (:class:`CompiledKernel`).

Where z_old and A come from is the caller's choice, resolved chunk by chunk: a full tensor,
a callable ``(start, end) -> [end − start, V]`` (the trainer computes them from saved hidden
states and heads; see :func:`dpo_advantage_chunks`), a :class:`SparseAdvantages` pair (eq. 11),
or — for z_old — ``None``, meaning on-policy: z_old is the current logits, detached, at no extra
matmul. The stability options of the naive functions come along: ``beta_negative`` (β for A < 0)
and ``support`` (``None``, top-k of z_old found per chunk, token ids ``[N, k]`` or ``"sampled"``;
then only the ``[c, k]`` entries of A and z_old on the support enter z*). The tests hold every
combination against the naive functions applied to ``hidden @ weight.T``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .._checks import check_actions, check_beta, check_choice, check_finite, check_mask
from ..advantages import (
    NORMALIZATIONS,
    dpo_advantages,
    logprob_advantages,
    normalize_advantages,
    sparse_advantages,
)
from .heads import head_logit_chunks
from .lco import LCO_LOSSES, LogitLoss, check_support_size
from .targets import check_beta_negative, check_support_ids, tilt

RowSource = Callable[[int, int], torch.Tensor]
"""``(start, end) -> [end − start, V]``: one chunk of a per-token quantity over the vocabulary."""

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

STAT_NAMES = ("loss", "entropy", "kl_old")
ACTION_STAT_NAMES = ("sampled_prob", "logit_grad_sampled", "logit_grad_nonsampled")


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


# --- inputs ---------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SparseAdvantages:
    """The sampled-action sparse advantage of eq. (11), kept as ``[N]`` vectors.

    Â(s_t, a') = A(s_t, a_t) if a' = a_t else 0; the dense ``[chunk, V]`` form is built one
    chunk at a time with :func:`lco.sparse_advantages`.

    Attributes:
        token_advantages: A(s_t, a_t) of the sampled token, ``[N]``.
        actions: the sampled token ids a_t, ``[N]`` (integer).
    """

    token_advantages: torch.Tensor
    actions: torch.Tensor


def dpo_advantage_chunks(
    dpo_hidden: torch.Tensor,
    dpo_weight: torch.Tensor,
    dpo_bias: torch.Tensor | None,
    ref_hidden: torch.Tensor,
    ref_weight: torch.Tensor,
    ref_bias: torch.Tensor | None,
) -> RowSource:
    """The dense DPO advantage log φ_DPO − log φ_ref (eq. 13) as a chunk callable.

    Args:
        dpo_hidden, dpo_weight, dpo_bias: final hidden states ``[N, H_dpo]`` of the DPO reward
            model φ_DPO on the policy's tokens, its LM head ``[V, H_dpo]`` and head bias ``[V]``
            (or ``None``).
        ref_hidden, ref_weight, ref_bias: the same for its reference model φ_ref.

    Returns ``(start, end) -> A [end − start, V]`` in fp32, computed with
    :func:`lco.dpo_advantages` from the two heads' logits of those rows only, without gradient.
    Heads in a low-precision dtype are cast to fp32 once here (a ``[V, H]`` copy each).
    """
    _check_head("dpo_hidden", dpo_hidden, "dpo_weight", dpo_weight, "dpo_bias", dpo_bias)
    _check_head("ref_hidden", ref_hidden, "ref_weight", ref_weight, "ref_bias", ref_bias)
    if dpo_hidden.shape[0] != ref_hidden.shape[0]:
        raise ValueError(
            f"ref_hidden has {ref_hidden.shape[0]} tokens but dpo_hidden has {dpo_hidden.shape[0]}"
        )
    if dpo_weight.shape[0] != ref_weight.shape[0]:
        raise ValueError(
            f"ref_weight has vocabulary size {ref_weight.shape[0]} but dpo_weight has {dpo_weight.shape[0]}"
        )
    heads = [
        head_logit_chunks(h.detach(), w.detach().float(), None if b is None else b.detach().float())
        for h, w, b in ((dpo_hidden, dpo_weight, dpo_bias), (ref_hidden, ref_weight, ref_bias))
    ]

    def rows(start: int, end: int) -> torch.Tensor:
        with torch.no_grad():
            dpo_logits, ref_logits = (logits(start, end) for logits in heads)
            return dpo_advantages(dpo_logits, ref_logits)

    return rows


def logprob_advantage_chunks(
    hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
) -> RowSource:
    """The dense log-probability advantage A(s_t, a) := log φ(a|s_t) (eq. 12) as a chunk callable.

    ``hidden [N, H]``, ``weight [V, H]``, ``bias [V]`` are the scoring model φ's final hidden
    states on the policy's tokens and its LM head; each chunk is :func:`lco.logprob_advantages`
    of that chunk's logits, in fp32 and without gradient.
    """
    _check_head("hidden", hidden, "weight", weight, "bias", bias)
    logits = head_logit_chunks(
        hidden.detach(), weight.detach().float(), None if bias is None else bias.detach().float()
    )

    def rows(start: int, end: int) -> torch.Tensor:
        with torch.no_grad():
            return logprob_advantages(logits(start, end))

    return rows


def _check_finite(name: str, tensor: torch.Tensor | None) -> None:
    """:func:`check_finite` in one streaming pass: NaN or ±inf anywhere makes the sum non-finite.

    ``isfinite(t).all()`` reads t three times and allocates a bool tensor of its size; in the
    per-chunk loop that was a third of the CPU time. A non-finite sum of finite entries (fp32
    overflow, |Σ| > 3e38) is told apart by the exact check, so nothing finite is rejected.
    """
    if tensor is not None and tensor.is_floating_point() and not bool(torch.isfinite(tensor.sum())):
        check_finite(name, tensor)


def _check_head(h_name, hidden, w_name, weight, b_name, bias) -> None:
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
        _check_finite(name, t)


def _check_rows(name: str, rows: torch.Tensor, start: int, end: int, vocab_size: int) -> None:
    if not isinstance(rows, torch.Tensor) or rows.shape != (end - start, vocab_size):
        got = tuple(rows.shape) if isinstance(rows, torch.Tensor) else type(rows).__name__
        raise ValueError(
            f"{name} must give shape ({end - start}, {vocab_size}) for tokens [{start}, {end}) "
            f"(one row per token, one column per vocabulary entry), got {got}"
        )


def _row_source(name: str, source, n_tokens: int, vocab_size: int) -> RowSource:
    """A tensor ``[N, V]`` or a chunk callable → a chunk callable whose output is shape-checked."""
    if isinstance(source, torch.Tensor):
        _check_rows(name, source, 0, n_tokens, vocab_size)
        if not source.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got dtype {source.dtype}")
        # All of it, once: chunks whose tokens are all masked out are never read in the loop,
        # and the naive functions reject NaN there too.
        _check_finite(name, source)
        return lambda start, end: source[start:end].detach()
    if callable(source):

        def checked(start: int, end: int) -> torch.Tensor:
            rows = source(start, end)
            _check_rows(name, rows, start, end, vocab_size)
            _check_finite(name, rows)
            return rows.detach()

        return checked
    raise ValueError(
        f"{name} must be a [N, V] tensor or a callable (start, end) -> [end - start, V], "
        f"got {type(source).__name__}"
    )


def _check_token_vector(name: str, t: torch.Tensor, n_tokens: int) -> None:
    if not isinstance(t, torch.Tensor) or t.shape != (n_tokens,):
        got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"{name} must have shape ({n_tokens},) (one entry per token), got {got}")


def _check_chunk_size(chunk_size, hidden: torch.Tensor, vocab_size: int) -> int:
    if chunk_size is None:
        return default_chunk_size(vocab_size, hidden.shape[0], hidden.shape[1], hidden.device)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size <= 0:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    return chunk_size


def _check_support(support, actions: torch.Tensor | None, n_tokens: int, vocab_size: int):
    """``support`` of :func:`fused_lco_loss` → ``None``, an int k or token ids ``[N, k]``."""
    if support is None:
        return None
    if isinstance(support, str):
        if support != "sampled":
            raise ValueError(
                f"support must be None, an int k, token ids [N, k] or 'sampled'; got {support!r}"
            )
        if actions is None:
            raise ValueError("support='sampled' needs the sampled actions: pass SparseAdvantages or actions")
        return actions.unsqueeze(-1)
    if isinstance(support, bool) or not isinstance(support, (int, torch.Tensor)):
        raise ValueError(
            f"support must be None, an int k, token ids [N, k] or 'sampled'; got {type(support).__name__}"
        )
    if isinstance(support, int):
        if not 0 < support <= vocab_size:
            raise ValueError(f"support must be an int k with 0 < k <= V = {vocab_size}, got {support}")
        return support
    check_support_ids(support, torch.Size([n_tokens]), vocab_size)
    return support


# --- the per-chunk math -----------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ChunkOutput:
    """What a per-chunk loss returns for the logits z ``[c, V]`` of tokens [start, end).

    ``value``: ℓ_t per token ``[c]``; ``logit_grad``: ∂ℓ_t/∂z ``[c, V]`` (a fresh tensor the base
    may scale in place); ``stats``: optional per-token diagnostics ``[k, c]``.
    """

    value: torch.Tensor
    logit_grad: torch.Tensor
    stats: torch.Tensor | None = None


@dataclass(frozen=True, eq=False)
class LCOChunk:
    """Per-chunk LCO: z* = z_old + A/β (eq. 7), then ℓ(z, z*) and ∂ℓ/∂z in one ``value_and_grad``.

    ``old_logits=None`` is on-policy (z_old = z). ``advantages`` are normalised per token with
    :func:`lco.normalize_advantages` (§4.4) before entering eq. (7): over the vocabulary, or over
    the support when there is one. ``beta_negative`` is the KL weight where A < 0 (``None`` = β).

    ``support``: ``None`` (whole vocabulary), an int k (top-k of the chunk's z_old) or token ids
    ``[N, k]``. With a support only A and z_old on it are read and z* is ``[c, k]``; a
    ``sparse`` advantage is then gathered there directly, without its dense ``[c, V]`` form.
    """

    loss: LogitLoss
    beta: float
    advantages: RowSource
    old_logits: RowSource | None = None
    normalization: str = "mean"
    with_stats: bool = False
    actions: torch.Tensor | None = None
    beta_negative: float | None = None
    support: int | torch.Tensor | None = None
    sparse: SparseAdvantages | None = None
    kernel: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = None
    """``(z, z*, support) -> (ℓ, ∂ℓ/∂z)``; ``None`` is ``loss.value_and_grad`` (see :func:`chunk_kernel`)."""
    stats_temperature: float = 1.0

    @property
    def stat_names(self) -> tuple[str, ...]:
        return STAT_NAMES + (ACTION_STAT_NAMES if self.actions is not None else ())

    def __call__(self, z: torch.Tensor, start: int, end: int) -> ChunkOutput:
        z_old = z if self.old_logits is None else self.old_logits(start, end)
        if self.support is None:
            value, grad = self._whole_vocabulary(z, z_old, start, end)
        else:
            value, grad = self._on_support(z, z_old, start, end)
        stats = None
        if self.with_stats:
            actions = None if self.actions is None else self.actions[start:end]
            stats = _token_stats(value, z, z_old, grad, actions, self.stats_temperature)
        return ChunkOutput(value, grad, stats)

    def _value_and_grad(self, z, z_star, ids=None):
        kernel = self.loss.value_and_grad if self.kernel is None else self.kernel
        return kernel(z, z_star, ids)

    def _whole_vocabulary(self, z, z_old, start, end):
        # eq. 7, as lco.optimal_logits but without its isfinite scans: the sources are checked
        # once by _row_source (and z is finite when hidden and weight are). z* is built in one
        # fresh [c, V] block, which value_and_grad then takes over as scratch; the caller's A
        # and z_old (possibly views of its own tensors, or z itself) are only read.
        z_old = z_old.float()
        if self.sparse is not None:
            z_star = self._sparse_target(z_old, start, end)
        elif self.beta_negative is None:
            z_star = self._dense_target(z_old, self.advantages(start, end).float())
        else:
            adv = normalize_advantages(self.advantages(start, end), self.normalization)
            z_star = z_old + tilt(adv, self.beta, self.beta_negative)
        return self._value_and_grad(z, z_star)

    def _sparse_target(self, z_old, start, end):
        """z* for the sparse advantage of eq. (11) in one pass over ``[c, V]``: after the §4.4
        normalisation, row t of A is one value off the sampled action and another at it (the
        closed forms of :func:`sparse_normalized`), so z* = z_old + off/β, then + (on − off)/β at a_t."""
        token_adv = self.sparse.token_advantages[start:end].detach().float()
        off, on = sparse_normalized(token_adv, z_old.shape[-1], self.normalization)
        off, on = tilt(off, self.beta, self.beta_negative), tilt(on, self.beta, self.beta_negative)
        z_star = torch.add(z_old, off.unsqueeze(-1))
        idx = self.sparse.actions[start:end].long().unsqueeze(-1)
        return z_star.scatter_add_(-1, idx, (on - off).unsqueeze(-1))

    def _dense_target(self, z_old, adv):
        """z* = z_old + (A − μ)·r/β with the row statistics of the normalisation (μ = 0 and r = 1
        where it has none): one multiply-add pass and one row shift, no normalised copy of A."""
        mode = self.normalization
        if mode == "none":
            return torch.add(z_old, adv, alpha=1.0 / self.beta)
        if mode == "mean":
            z_star = torch.add(z_old, adv, alpha=1.0 / self.beta)
            return z_star.sub_(adv.mean(-1, keepdim=True) / self.beta)
        std, mean = torch.std_mean(adv, dim=-1, keepdim=True, unbiased=False)
        if mode == "std":  # as normalize_advantages: a row with no scale is left unscaled
            scale = 1.0 / (self.beta * torch.where(std > _NORMALIZE_EPS, std, torch.ones_like(std)))
            return torch.addcmul(z_old, adv, scale)
        scale = 1.0 / (self.beta * (std + _NORMALIZE_EPS))  # mean_std
        return torch.addcmul(z_old, adv, scale).sub_(mean * scale)

    def _on_support(self, z, z_old, start, end):
        if isinstance(self.support, int):
            ids = z_old.detach().topk(self.support, dim=-1).indices
        else:
            ids = self.support[start:end].long()
        if self.sparse is not None:
            # eq. 11 on the support: A(s_t, a_t) where the support entry is a_t, 0 elsewhere.
            hit = ids == self.sparse.actions[start:end].long().unsqueeze(-1)
            token_adv = self.sparse.token_advantages[start:end].detach().float().unsqueeze(-1)
            adv = torch.where(hit, token_adv, torch.zeros((), device=z.device))
        else:
            adv = self.advantages(start, end).float().gather(-1, ids)
        # Normalising the gathered [c, k] over its last axis is normalize_advantages(A, mode,
        # support=ids) read on the support, which is all the loss reads.
        adv = normalize_advantages(adv, self.normalization)
        z_star = z_old.float().gather(-1, ids) + tilt(adv, self.beta, self.beta_negative)
        return self._value_and_grad(z, z_star, ids)


_NORMALIZE_EPS = 1e-6
"""``eps`` of :func:`lco.normalize_advantages` at its default, which the naive path uses."""


def sparse_normalized(token_adv: torch.Tensor, vocab_size: int, mode: str):
    """The §4.4 normalisation of a sparse advantage row (eq. 11) in closed form: ``(off, on)``.

    The row is A = a·e_{a_t} over V entries; :func:`lco.normalize_advantages` maps it to ``off``
    everywhere except at a_t, where it is ``on``. With μ = a/V and the population std
    σ = |a|·√(V − 1)/V: ``"none"`` (0, a); ``"mean"`` (−μ, a − μ); ``"std"`` (0, a/σ, or a where
    σ ≤ eps); ``"mean_std"`` (−μ/(σ + eps), (a − μ)/(σ + eps)). Both are ``[c]`` like ``token_adv``.
    """
    if mode == "none":
        return torch.zeros_like(token_adv), token_adv
    mean = token_adv / vocab_size
    if mode == "mean":
        return -mean, token_adv - mean
    std = token_adv.abs() * (max(vocab_size - 1, 0) ** 0.5 / vocab_size)
    if mode == "std":
        return torch.zeros_like(token_adv), token_adv / torch.where(
            std > _NORMALIZE_EPS, std, torch.ones_like(std)
        )
    return -mean / (std + _NORMALIZE_EPS), (token_adv - mean) / (std + _NORMALIZE_EPS)


COMPILE_CHOICES = (False, True, "auto")
"""``compile`` of :func:`fused_lco_loss`: eager kernels, ``torch.compile``'d ones, or :data:`COMPILE_AUTO`."""

COMPILE_AUTO: dict[str, bool] = {"cpu": True, "cuda": False}
"""What ``compile="auto"`` does per device type (absent types: eager); see benchmarks/README.md.
CPU: compiled, since in the steady state the whole fused step is faster (N = 2048, V = 32000:
fused LCO-KLD / fused CE 1.08 compiled against 1.26 eager, LCH 1.17 against 1.23, MSE 1.00 against
1.04; at N = 8192, under load, no clear gain either way); the compile itself costs seconds per loss and shape (a minute for Inductor's first start
in a process). CUDA: not measured yet (no GPU in that session), so eager. ``compile`` defaults to
``False``, so nothing compiles unless asked."""


class CompiledKernel:
    """``loss.value_and_grad`` through ``torch.compile`` (Inductor: C++/OpenMP on the CPU, Triton
    on a GPU), falling back to the eager kernel — with one warning — when compiling fails.

    Inductor fuses the chunk's elementwise passes and row reductions into a few kernels. The
    compile happens on the first call per input signature (one more for the shorter last chunk,
    after which the token axis is dynamic; one more when V crosses 4096, where Inductor guards
    its softmax reduction) and costs seconds to a minute; ``failure`` keeps the
    reason once it failed (e.g. no C++ compiler on the CPU), and every later call is eager.
    """

    def __init__(self, loss: LogitLoss):
        self.loss = loss
        self.failure: str | None = None
        self._compiled = torch.compile(loss.value_and_grad)

    def __call__(self, z, z_star, support=None):
        if self.failure is None:
            try:
                return self._compiled(z, z_star, support)
            except Exception as exc:  # Inductor/Dynamo raise many types; any of them means eager
                first_line = (str(exc).strip().splitlines() or [""])[0][:300]
                self.failure = f"{type(exc).__name__}: {first_line}"
                warnings.warn(
                    f"torch.compile of the {self.loss.name} chunk kernel failed ({self.failure}); "
                    "using the eager kernel",
                    RuntimeWarning,
                    stacklevel=2,
                )
        return self.loss.value_and_grad(z, z_star, support)


_COMPILED: dict[str, CompiledKernel] = {}


def chunk_kernel(loss: LogitLoss, compile: bool | str = False, device: torch.device | str = "cpu"):
    """The per-chunk ``(z, z*, support) -> (ℓ, ∂ℓ/∂z)`` of ``loss`` for ``compile`` (one of
    :data:`COMPILE_CHOICES`): the eager ``loss.value_and_grad`` or a shared :class:`CompiledKernel`
    (one per loss per process, so a training run compiles once)."""
    if not (isinstance(compile, bool) or compile == "auto"):
        raise ValueError(f"compile must be one of {COMPILE_CHOICES}, got {compile!r}")
    if compile == "auto":
        compile = COMPILE_AUTO.get(torch.device(device).type, False)
    if compile is False:
        return loss.value_and_grad
    if loss.name not in _COMPILED:
        _COMPILED[loss.name] = CompiledKernel(loss)
    return _COMPILED[loss.name]


def _token_stats(value, z, z_old, grad, actions, temperature: float = 1.0) -> torch.Tensor:
    """The training-dynamics metrics of the paper's Figs. 1/5, per token, ``[k, c]``.

    Policy entropy H(softmax(z/T)) with T = ``temperature`` (TRL logs the entropy of z/T for its
    own objectives, so LCO's is comparable); KL(π_θ ‖ π_old) (0 on-policy, where z_old is z); and
    with the sampled actions: π_θ(a_t), |∂ℓ_t/∂z_{a_t}| and the mean of |∂ℓ_t/∂z_a| over the
    other V − 1 tokens. Gradients are per token, before the 1/#tokens of the mean.
    """
    log_pi = torch.log_softmax(z, dim=-1)
    pi = log_pi.exp()
    if temperature == 1.0:
        entropy = -(pi * log_pi).sum(-1)
    else:
        log_pi_t = torch.log_softmax(z / temperature, dim=-1)
        entropy = -(log_pi_t.exp() * log_pi_t).sum(-1)
        del log_pi_t
    if z_old is z:
        kl = torch.zeros_like(entropy)
    else:
        kl = (pi * (log_pi - torch.log_softmax(z_old.float(), dim=-1))).sum(-1)
    rows = [value, entropy, kl]
    if actions is not None:
        idx = actions.long().unsqueeze(-1)
        abs_grad = grad.abs()
        at_action = abs_grad.gather(-1, idx).squeeze(-1)
        others = (abs_grad.sum(-1) - at_action) / max(z.shape[-1] - 1, 1)
        rows += [pi.gather(-1, idx).squeeze(-1), at_action, others]
    return torch.stack(rows)


@dataclass(frozen=True, eq=False)
class CrossEntropyChunk:
    """Per-chunk SFT: ℓ_t = −log π_θ(a_t) (eq. 1), ∂ℓ_t/∂z = π_θ − e_{a_t} (eq. 4)."""

    targets: torch.Tensor
    stat_names: tuple[str, ...] = ()

    def __call__(self, z: torch.Tensor, start: int, end: int) -> ChunkOutput:
        idx = self.targets[start:end].long().unsqueeze(-1)
        log_pi = torch.log_softmax(z, dim=-1)
        value = -log_pi.gather(-1, idx).squeeze(-1)
        grad = log_pi.exp_()  # reuse the block: log π is not needed any more
        grad.scatter_add_(-1, idx, torch.full_like(idx, -1.0, dtype=grad.dtype))
        return ChunkOutput(value, grad)


# --- the base: chunking, custom autograd, memory ----------------------------------------------


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


def _run(hidden, weight, bias, chunk_loss, mask, chunk_size, return_stats):
    loss, stats = ChunkedLinearLoss.apply(hidden, weight, bias, chunk_loss, mask, chunk_size)
    if not return_stats:
        return loss
    return loss, dict(zip(chunk_loss.stat_names, stats.unbind(0), strict=True))


# --- the public losses --------------------------------------------------------------------------


def fused_lco_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    *,
    loss: str = "lco_kld",
    beta: float,
    advantages: torch.Tensor | SparseAdvantages | RowSource,
    old_logits: torch.Tensor | RowSource | None = None,
    normalization: str = "mean",
    mask: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    actions: torch.Tensor | None = None,
    chunk_size: int | None = None,
    return_stats: bool = False,
    beta_negative: float | None = None,
    support: int | torch.Tensor | str | None = None,
    compile: bool | str = False,
    stats_temperature: float = 1.0,
):
    """LCO-MSE / LCO-LCH / LCO-KLD (eqs. 8–10) of the logits z = h Wᵀ (+ b), chunk by chunk.

    Equal to ``lco.<loss>(hidden @ weight.T + bias, old_logits, normalize_advantages(A, mode,
    support=ids), beta, mask, beta_negative=..., support=ids)`` in value and in its gradients
    w.r.t. ``hidden``, ``weight`` and ``bias``, with the target z* = z_old + A/β of eq. (7) and
    peak memory of a few ``[chunk_size, V]`` blocks; ``ids`` is the support as token ids
    (``None`` by default: the whole vocabulary, the paper).

    Args:
        hidden: final hidden states h, ``[N, H]`` (fp32 or bf16; the math is fp32 per chunk and
            the gradients come back in the input dtypes).
        weight: LM head W, ``[V, H]``.
        loss: ``"lco_mse"``, ``"lco_lch"`` or ``"lco_kld"`` (keys of ``LCO_LOSSES``).
        beta: KL weight β > 0 of eq. (2).
        advantages: A as a dense ``[N, V]`` tensor; a :class:`SparseAdvantages` (eq. 11); or a
            callable ``(start, end) -> [end − start, V]`` such as :func:`dpo_advantage_chunks`
            (eq. 13). No gradient flows into A.
        old_logits: z_old as ``[N, V]``, a callable like ``advantages``, or ``None`` for an
            on-policy step (z_old = the current logits, detached).
        normalization: per-token normalisation of A over the vocabulary, as
            :func:`lco.normalize_advantages` (``"mean"``, ``"mean_std"``, ``"none"``; §4.4).
        mask: optional ``[N]``; the loss is Σ_t m_t ℓ_t / max(Σ_t m_t, 1).
        bias: optional LM-head bias ``[V]``.
        actions: sampled token ids ``[N]``, for the stats and for ``support="sampled"``; taken
            from ``advantages`` when those are sparse (a different ``actions`` is then an error).
        chunk_size: tokens per chunk; default :func:`default_chunk_size` of V, N, H and the
            device (the largest chunk, up to 256, keeping the step within a fifth of the unfused
            one's memory).
        beta_negative: KL weight for the entries with A < 0 (``None``, the default, is β); see
            :func:`lco.optimal_logits`.
        support: the entries π* may put mass on, per token (see :func:`lco.optimal_log_policy`):
            ``None`` (whole vocabulary, eq. 6); an int k, the top-k entries of z_old, found chunk
            by chunk (of the current logits when ``old_logits`` is ``None``); token ids
            ``[N, k]``; or ``"sampled"``, the sampled actions (from ``advantages`` when sparse,
            else ``actions``), i.e. ids ``actions[:, None]`` — the authors' sampled-logit
            regression for ``lco_mse`` / ``lco_lch``. The normalisation's statistics are then
            taken over the support, so a one-entry support needs ``normalization="none"``;
            ``lco_kld`` needs k ≥ 2. A :class:`SparseAdvantages` is read on the support
            directly; dense or callable advantages are gathered there chunk by chunk.
        compile: ``False`` (eager per-chunk math), ``True`` (the chunk's value and gradient
            through ``torch.compile``, see :class:`CompiledKernel`; falls back to eager with one
            warning if compiling fails) or ``"auto"`` (per device type, :data:`COMPILE_AUTO`).
        return_stats: also return a dict of per-token fp32 ``[N]`` tensors, without gradient and
            zero for masked-out tokens: ``loss`` (ℓ_t), ``entropy`` (H(π_θ)), ``kl_old``
            (KL(π_θ ‖ π_old)) and, when actions are known, ``sampled_prob`` (π_θ(a_t)),
            ``logit_grad_sampled`` (|∂ℓ_t/∂z_{a_t}|) and ``logit_grad_nonsampled`` (mean |∂ℓ_t/∂z_a|
            over a ≠ a_t).
        stats_temperature: T > 0 of the ``entropy`` stat, H(softmax(z/T)) (the sampling
            temperature, as TRL logs it); the loss and the other stats do not read it.

    Returns the scalar fp32 loss, or ``(loss, stats)`` with ``return_stats=True``.
    """
    check_choice("loss", loss, tuple(LCO_LOSSES))
    check_choice("normalization", normalization, NORMALIZATIONS)
    beta = check_beta(beta)
    beta_negative = check_beta_negative(beta_negative)
    _check_head("hidden", hidden, "weight", weight, "bias", bias)
    n_tokens, vocab_size = hidden.shape[0], weight.shape[0]
    chunk_size = _check_chunk_size(chunk_size, hidden, vocab_size)
    check_mask(mask, torch.Size([n_tokens]))
    if not (isinstance(stats_temperature, (int, float)) and stats_temperature > 0):
        raise ValueError(f"stats_temperature must be a number > 0, got {stats_temperature!r}")
    kernel = chunk_kernel(LCO_LOSSES[loss], compile, hidden.device)

    if isinstance(advantages, SparseAdvantages):
        sparse = advantages
        _check_token_vector("advantages.token_advantages", sparse.token_advantages, n_tokens)
        _check_token_vector("advantages.actions", sparse.actions, n_tokens)
        check_actions(sparse.actions, vocab_size, "advantages.actions")
        check_finite("advantages.token_advantages", sparse.token_advantages)
        if actions is not None and not torch.equal(actions, sparse.actions):
            raise ValueError("actions differs from advantages.actions; pass one or make them agree")
        actions = sparse.actions

        def advantage_rows(start: int, end: int) -> torch.Tensor:
            return sparse_advantages(
                sparse.token_advantages[start:end].detach(), sparse.actions[start:end], vocab_size
            )
    else:
        advantage_rows = _row_source("advantages", advantages, n_tokens, vocab_size)
    old_rows = None if old_logits is None else _row_source("old_logits", old_logits, n_tokens, vocab_size)
    if actions is not None:
        _check_token_vector("actions", actions, n_tokens)
        check_actions(actions, vocab_size)
    support = _check_support(support, actions, n_tokens, vocab_size)
    if support is not None:
        k = support if isinstance(support, int) else support.shape[-1]
        check_support_size(loss, k)
        if k == 1 and normalization != "none":
            raise ValueError(
                f"normalization={normalization!r} has no statistics over a one-entry support "
                "(the mean is the entry itself, the std 0); use normalization='none'"
            )

    chunk_loss = LCOChunk(
        loss=LCO_LOSSES[loss],
        beta=beta,
        advantages=advantage_rows,
        old_logits=old_rows,
        normalization=normalization,
        with_stats=return_stats,
        actions=actions if return_stats else None,
        beta_negative=beta_negative,
        support=support,
        sparse=advantages if isinstance(advantages, SparseAdvantages) else None,
        kernel=kernel,
        stats_temperature=float(stats_temperature),
    )
    return _run(hidden, weight, bias, chunk_loss, mask, chunk_size, return_stats)


def fused_sft_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """L_SFT = −E_t[log π_θ(a_t|s_t)] (eq. 1) of z = h Wᵀ (+ b), chunk by chunk.

    Equal to ``lco.sft_loss(hidden @ weight.T + bias, targets, mask)`` with the logit gradient
    π_θ − e_{a_t} of eq. (4); ``targets`` are token ids ``[N]``. Same base, memory and dtype
    handling as :func:`fused_lco_loss`.
    """
    _check_head("hidden", hidden, "weight", weight, "bias", bias)
    n_tokens, vocab_size = hidden.shape[0], weight.shape[0]
    chunk_size = _check_chunk_size(chunk_size, hidden, vocab_size)
    check_mask(mask, torch.Size([n_tokens]))
    _check_token_vector("targets", targets, n_tokens)
    check_actions(targets, vocab_size, "targets")
    return _run(hidden, weight, bias, CrossEntropyChunk(targets), mask, chunk_size, False)
