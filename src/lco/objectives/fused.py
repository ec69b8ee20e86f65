"""Fused LM-head + loss: the LCO objectives (eqs. 7–10) and SFT (eq. 1) without the ``[N, V]`` logits.

The naive objectives in :mod:`lco.objectives.lco` take logits z = h Wᵀ for all N tokens. With
N = 8192 completion tokens and a 152k vocabulary those logits alone are 5 GB in fp32, and
autograd keeps several more tensors of that size alive. Here the LM-head matmul and the loss
are fused, as in Liger-Kernel's ``chunked_loss``: the base owns the chunking and each loss
states only its per-chunk math. The package splits that by job:

- :mod:`.chunked` — the base: :class:`~lco.objectives.chunked.ChunkedLinearLoss` (one
  ``torch.autograd.Function`` that owns the chunking, the custom autograd and the memory trick:
  per chunk it computes z = h Wᵀ (+ b) in fp32, asks the chunk loss for ℓ_t and ∂ℓ_t/∂z, and
  contracts the latter into the gradients during the forward), :func:`default_chunk_size`, and
  the input checks;
- :mod:`.lco_chunk` — LCO's per-chunk math: z* = z_old + A/β (eq. 7) in one fresh block,
  ``value_and_grad`` of :data:`lco.objectives.lco.LCO_LOSSES` (eqs. 8–10), the closed-form sparse
  normalisation :func:`sparse_normalized` and the per-token stats;
- :mod:`.row_sources` — where A and z_old come from chunk by chunk (:class:`SparseAdvantages`,
  :func:`dpo_advantage_chunks`, :func:`logprob_advantage_chunks`);
- :mod:`.compiled` — ``compile=True``: the chunk kernel through ``torch.compile``
  (:class:`CompiledKernel`, :data:`COMPILE_AUTO`);
- here — the public losses :func:`fused_lco_loss` and :func:`fused_sft_loss`, and
  :class:`CrossEntropyChunk`, SFT's per-chunk math.

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

from dataclasses import dataclass

import torch

from .._checks import check_actions, check_beta, check_choice, check_finite, check_mask
from ..advantages import NORMALIZATIONS, sparse_advantages
from .chunked import (
    MIN_CHUNK_TOKENS,
    ChunkOutput,
    check_chunk_size,
    check_head,
    check_token_vector,
    default_chunk_size,
    run_chunked,
)
from .compiled import COMPILE_AUTO, CompiledKernel, chunk_kernel
from .lco import LCO_LOSSES, check_support_size
from .lco_chunk import LCOChunk, sparse_normalized
from .row_sources import (
    RowSource,
    SparseAdvantages,
    dpo_advantage_chunks,
    logprob_advantage_chunks,
    row_source,
)
from .targets import check_beta_negative, check_support_ids

__all__ = [
    "CrossEntropyChunk",
    "fused_lco_loss",
    "fused_sft_loss",
    # the parts these are built from, importable from here as before the split
    "COMPILE_AUTO",
    "LCO_LOSSES",
    "MIN_CHUNK_TOKENS",
    "CompiledKernel",
    "RowSource",
    "SparseAdvantages",
    "chunk_kernel",
    "default_chunk_size",
    "dpo_advantage_chunks",
    "logprob_advantage_chunks",
    "sparse_normalized",
]


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

    Equal to ``lco.<loss>(hidden @ weight.T + bias, old_logits, A, beta, mask,
    beta_negative=..., support=..., normalization=mode, actions=...)`` in value and in its
    gradients w.r.t. ``hidden``, ``weight`` and ``bias``, with the target z* = z_old + A/β_± of
    eq. (7) and peak memory of a few ``[chunk_size, V]`` blocks (``actions`` there: the sampled
    tokens of a :class:`SparseAdvantages`, else ``None``; ``A`` its dense form,
    :func:`lco.sparse_advantages`). Without ``beta_negative`` that is also
    ``lco.<loss>(z, z_old, normalize_advantages(A, mode, support=ids), beta, ...)``.

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
            :func:`lco.normalize_advantages` (``"mean"``, ``"mean_std"``, ``"std"``, ``"none"``;
            §4.4). A :class:`SparseAdvantages` takes ``"mean"`` or ``"none"`` only: the std of a row
            that is A at a_t and 0 elsewhere is ∝ |A|, so dividing by it keeps only the sign of A.
        mask: optional ``[N]``; the loss is Σ_t m_t ℓ_t / max(Σ_t m_t, 1).
        bias: optional LM-head bias ``[V]``.
        actions: sampled token ids ``[N]``, for the stats and for ``support="sampled"``; taken
            from ``advantages`` when those are sparse (a different ``actions`` is then an error).
        chunk_size: tokens per chunk; default :func:`default_chunk_size` of V, N, H and the
            device (the largest chunk, up to 256, keeping the step within a fifth of the unfused
            one's memory).
        beta_negative: KL weight for the entries with A < 0 (``None``, the default, is β), by the
            sign of the uncentred A, the centring applied to the shift afterwards (eqs. 6–7 per
            sign; see :func:`lco.objectives.targets.target_shift`).
        support: the entries π* may put mass on, per token (see :func:`lco.optimal_log_policy`):
            ``None`` (whole vocabulary, eq. 6); an int k, the top-k entries of z_old, found chunk
            by chunk (of the current logits when ``old_logits`` is ``None``), with the sampled
            token in the k-th place where it is not among them when the advantages are a
            :class:`SparseAdvantages` (else it would get no target mass whatever its A); token ids
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
    check_head("hidden", hidden, "weight", weight, "bias", bias)
    n_tokens, vocab_size = hidden.shape[0], weight.shape[0]
    chunk_size = check_chunk_size(chunk_size, hidden, vocab_size)
    check_mask(mask, torch.Size([n_tokens]))
    if not (isinstance(stats_temperature, (int, float)) and stats_temperature > 0):
        raise ValueError(f"stats_temperature must be a number > 0, got {stats_temperature!r}")
    kernel = chunk_kernel(LCO_LOSSES[loss], compile, hidden.device)

    if isinstance(advantages, SparseAdvantages):
        sparse = advantages
        check_token_vector("advantages.token_advantages", sparse.token_advantages, n_tokens)
        check_token_vector("advantages.actions", sparse.actions, n_tokens)
        check_actions(sparse.actions, vocab_size, "advantages.actions")
        check_finite("advantages.token_advantages", sparse.token_advantages)
        if actions is not None and not torch.equal(actions, sparse.actions):
            raise ValueError("actions differs from advantages.actions; pass one or make them agree")
        if normalization in ("std", "mean_std"):
            raise ValueError(
                f"normalization={normalization!r} with a sparse advantage (SparseAdvantages): the std of a "
                "row that is A at the sampled token and 0 elsewhere is proportional to |A|, so dividing by it "
                "keeps only the sign of A (a tilt of ±√V/β whatever |A|); use 'mean' or 'none'"
            )
        actions = sparse.actions

        def advantage_rows(start: int, end: int) -> torch.Tensor:
            return sparse_advantages(
                sparse.token_advantages[start:end].detach(), sparse.actions[start:end], vocab_size
            )
    else:
        advantage_rows = row_source("advantages", advantages, n_tokens, vocab_size)
    old_rows = None if old_logits is None else row_source("old_logits", old_logits, n_tokens, vocab_size)
    if actions is not None:
        check_token_vector("actions", actions, n_tokens)
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
    return run_chunked(hidden, weight, bias, chunk_loss, mask, chunk_size, return_stats)


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
    check_head("hidden", hidden, "weight", weight, "bias", bias)
    n_tokens, vocab_size = hidden.shape[0], weight.shape[0]
    chunk_size = check_chunk_size(chunk_size, hidden, vocab_size)
    check_mask(mask, torch.Size([n_tokens]))
    check_token_vector("targets", targets, n_tokens)
    check_actions(targets, vocab_size, "targets")
    return run_chunked(hidden, weight, bias, CrossEntropyChunk(targets), mask, chunk_size, False)
