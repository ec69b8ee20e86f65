"""Where the fused LCO loss reads A and z_old from, chunk by chunk: the row sources.

A row source is a callable ``(start, end) -> [end − start, V]``. :func:`lco.objectives.fused.fused_lco_loss`
takes A and z_old as a full ``[N, V]`` tensor or as a row source (:func:`row_source` makes both a
checked row source), and A also as a :class:`SparseAdvantages` pair (eq. 11), never dense over the
batch. The dense reward-model advantages (eqs. 12–13) are row sources computed from saved hidden
states and heads, one chunk of logits at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..advantages import dpo_advantages, logprob_advantages
from .chunked import check_finite_sum, check_head
from .heads import head_logit_chunks

RowSource = Callable[[int, int], torch.Tensor]
"""``(start, end) -> [end − start, V]``: one chunk of a per-token quantity over the vocabulary."""


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
    check_head("dpo_hidden", dpo_hidden, "dpo_weight", dpo_weight, "dpo_bias", dpo_bias)
    check_head("ref_hidden", ref_hidden, "ref_weight", ref_weight, "ref_bias", ref_bias)
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
    check_head("hidden", hidden, "weight", weight, "bias", bias)
    logits = head_logit_chunks(
        hidden.detach(), weight.detach().float(), None if bias is None else bias.detach().float()
    )

    def rows(start: int, end: int) -> torch.Tensor:
        with torch.no_grad():
            return logprob_advantages(logits(start, end))

    return rows


def _check_rows(name: str, rows: torch.Tensor, start: int, end: int, vocab_size: int) -> None:
    if not isinstance(rows, torch.Tensor) or rows.shape != (end - start, vocab_size):
        got = tuple(rows.shape) if isinstance(rows, torch.Tensor) else type(rows).__name__
        raise ValueError(
            f"{name} must give shape ({end - start}, {vocab_size}) for tokens [{start}, {end}) "
            f"(one row per token, one column per vocabulary entry), got {got}"
        )


def row_source(name: str, source, n_tokens: int, vocab_size: int) -> RowSource:
    """A tensor ``[N, V]`` or a chunk callable → a chunk callable whose output is shape-checked."""
    if isinstance(source, torch.Tensor):
        _check_rows(name, source, 0, n_tokens, vocab_size)
        if not source.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got dtype {source.dtype}")
        # All of it, once: chunks whose tokens are all masked out are never read in the loop,
        # and the naive functions reject NaN there too.
        check_finite_sum(name, source)
        return lambda start, end: source[start:end].detach()
    if callable(source):

        def checked(start: int, end: int) -> torch.Tensor:
            rows = source(start, end)
            _check_rows(name, rows, start, end, vocab_size)
            check_finite_sum(name, rows)
            return rows.detach()

        return checked
    raise ValueError(
        f"{name} must be a [N, V] tensor or a callable (start, end) -> [end - start, V], "
        f"got {type(source).__name__}"
    )
