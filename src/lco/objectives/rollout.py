"""What the generation step hands to the loss, as typed records rather than a dict of string keys.

:class:`Rollout` holds everything an objective × advantage row of :mod:`lco.objectives.registry`
asks to be kept from generation time for one batch of B completions: the token advantages, z_old
(:class:`OldLogits`), the frozen reward models' and teacher's final hidden states with their heads
(:class:`HiddenStates`), PPO's old values and log-probs, its returns and the sequence rewards.

TRL's ``GRPOTrainer`` shuffles every batch value along its first axis (``shuffle_sequence_dict``:
a tensor is indexed by a permutation, any other sequence is rebuilt as a list ``[v[i] for i in
perm]``) and then slices it (``split_tensor_dict``: ``v[a:b]``). A record under one key survives
both only as a per-completion sequence, so the trainer stores ``rollout.split()`` — B one-row
records whose tensors are views of the batch's (no copy) and whose heads are the same tensors —
and the loss reads ``Rollout.collate(rows)``. A head is never split: :class:`Head` is shared by
every row, as the model it came from is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .heads import head_logit_chunks
from .row_sources import RowSource

ROLLOUT_KEY = "lco_rollout"
"""The batch key under which the trainer stores ``Rollout.split()`` (one record per completion)."""


@dataclass(frozen=True)
class Head:
    """An LM head, ``weight`` ``[V, H]`` and ``bias`` ``[V]`` or ``None``; shared by all rows of a batch."""

    weight: torch.Tensor
    bias: torch.Tensor | None = None


@dataclass(frozen=True)
class HiddenStates:
    """A model's final hidden states at the completion positions, ``[B, T, H]``, and its head."""

    hidden: torch.Tensor
    head: Head

    def logit_rows(self) -> RowSource:
        """z = h·Wᵀ + b of the flattened tokens, chunk by chunk (:func:`lco.objectives.heads.head_logit_chunks`)."""
        return head_logit_chunks(self.hidden, self.head.weight, self.head.bias)


@dataclass(frozen=True)
class OldLogits(HiddenStates):
    """z_old, the anchor of the LCO target z* = z_old + A/β (eq. 7), recomputed exactly from saved states.

    Attributes:
        source: which model produced it — the policy that generated the batch (rollouts reused) or
            the frozen anchor (``lco_anchor_update_steps`` ≠ 1); any module that yields final hidden
            states and a head can (an adapter-disabled base model, a sharded snapshot).
        temperature: z_old is divided by it (the sampling temperature with
            ``lco_temperature_consistent``, else 1: the paper's raw logits).
    """

    source: str = "policy"
    temperature: float = 1.0

    def logit_rows(self) -> RowSource:
        rows, T = super().logit_rows(), self.temperature
        if T == 1.0:
            return rows
        return lambda start, end: rows(start, end) / T


@dataclass(frozen=True)
class Rollout:
    """The generation step's extras for B completions (fields ``None`` where the row asks for none).

    Attributes:
        token_advantages: A(s_t, a_t) of the sampled tokens, ``[B, T]`` (0 on padding), by the
            objective's token-advantage builder.
        z_old: the old policy's or anchor's logits source; ``None`` on-policy (the loss then uses
            the current logits, detached).
        reward_models: φ_DPO (and φ_ref) in the order of ``AdvantageSpec.reward_models``.
        teacher: the distillation teacher.
        old_logps: log π_old of the sampled tokens at the sampling temperature, ``[B, T]`` (PPO).
        ref_logps: log π_ref of the sampled tokens (PPO's KL penalty), ``[B, T]``.
        old_values: the critic's values at generation time, ``[B, T]`` (PPO).
        returns: GAE's returns, ``[B, T]`` (PPO).
        sequence_rewards: this process's weighted sequence rewards ``[B]``, NaN where no reward
            function scored (the Gradient-Gap monitor).
    """

    token_advantages: torch.Tensor
    z_old: OldLogits | None = None
    reward_models: tuple[HiddenStates, ...] = ()
    teacher: HiddenStates | None = None
    old_logps: torch.Tensor | None = None
    ref_logps: torch.Tensor | None = None
    old_values: torch.Tensor | None = None
    returns: torch.Tensor | None = None
    sequence_rewards: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.token_advantages.shape[0]

    def split(self) -> list[Rollout]:
        """One record per completion: row views of every per-completion tensor, the heads shared."""
        return [_take(self, i) for i in range(len(self))]

    @classmethod
    def collate(cls, rows: Sequence[Rollout]) -> Rollout:
        """The records of a micro-batch (a slice of a shuffled ``split()``) as one batch record."""
        if not rows:
            raise ValueError("rows must hold at least one Rollout")
        if not all(isinstance(row, cls) for row in rows):
            raise ValueError(
                f"rows must all be {cls.__name__} records; got {sorted({type(r).__name__ for r in rows})}"
            )
        return _join(list(rows))


def _take(value, i: int):
    """Row ``i`` of a record field: a one-row view of a tensor; heads and labels are shared."""
    if isinstance(value, torch.Tensor):
        return value[i : i + 1]
    if isinstance(value, Head) or value is None or isinstance(value, str | float | int):
        return value
    if isinstance(value, tuple):
        return tuple(_take(v, i) for v in value)
    return dataclasses.replace(
        value, **{f.name: _take(getattr(value, f.name), i) for f in dataclasses.fields(value)}
    )


def _join(values: list):
    """The inverse of :func:`_take` over a list of rows."""
    first = values[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(values)
    if isinstance(first, Head) or first is None or isinstance(first, str | float | int):
        return first
    if isinstance(first, tuple):
        return tuple(_join([v[k] for v in values]) for k in range(len(first)))
    return dataclasses.replace(
        first, **{f.name: _join([getattr(v, f.name) for v in values]) for f in dataclasses.fields(first)}
    )
