"""The token-advantage builders of the registry's rows, and the advantages' vocabulary-row sources.

A builder turns the generation batch into A(s_t, a_t) of the sampled tokens, ``[B, T]``; it is
the ``token_advantages`` of an ``ObjectiveSpec`` row, called by the trainer at generation time
with one signature::

    builder(inputs: AdvantageInputs) -> TokenAdvantages

The advantage math itself is the pure functions of :mod:`lco.advantages`. The row sources
(:func:`dpo_rows`, :func:`logprob_rows`) are the ``rows`` of the dense and reward-model
``AdvantageSpec`` rows: the reward models' saved hidden states → ``(start, end) -> A [end − start, V]``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..advantages import normalize_advantages, ppo_gae_advantages, ppo_token_rewards, reinforce_advantages
from .rollout import HiddenStates
from .row_sources import RowSource, dpo_advantage_chunks, logprob_advantage_chunks


def _flat(hidden: torch.Tensor) -> torch.Tensor:
    return hidden.reshape(-1, hidden.shape[-1])


def dpo_rows(dpo: HiddenStates, ref: HiddenStates) -> RowSource:
    """log φ_DPO − log φ_ref over the vocabulary (eq. 13; :func:`lco.objectives.row_sources.dpo_advantage_chunks`)."""
    return dpo_advantage_chunks(
        dpo_hidden=_flat(dpo.hidden),
        dpo_weight=dpo.head.weight,
        dpo_bias=dpo.head.bias,
        ref_hidden=_flat(ref.hidden),
        ref_weight=ref.head.weight,
        ref_bias=ref.head.bias,
    )


def logprob_rows(scorer: HiddenStates) -> RowSource:
    """log φ over the vocabulary (eq. 12; :func:`lco.objectives.row_sources.logprob_advantage_chunks`)."""
    return logprob_advantage_chunks(_flat(scorer.hidden), scorer.head.weight, scorer.head.bias)


@dataclass(frozen=True)
class AdvantageInputs:
    """What a token-advantage builder reads from one generation batch (this process's B completions).

    Attributes:
        advantages: TRL's sequence advantage, ``[B]``.
        completion_ids, completion_mask: the sampled tokens and their mask, ``[B, T]``.
        rewards: the weighted sequence rewards of every process's completions, ``[N]`` (NaN as 0).
        start: this process's first row in ``rewards``.
        group: completions per prompt.
        config: the ``LCOConfig`` (read only).
        chunk_size: tokens per chunk of a head path over ``n`` tokens.
        advantage_rows: ``AdvantageSpec.rows`` (``None`` for the outcome reward) and
        dense_advantage: ``AdvantageSpec.dense``.
        reward_models: the reward models' saved states, in the order ``advantage_rows`` takes them.
        old_logps, ref_logps, old_values: PPO's, ``[B, T]``, where the row keeps them.
    """

    advantages: torch.Tensor
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    rewards: torch.Tensor
    start: int
    group: int
    config: Any
    chunk_size: Callable[[int], int]
    advantage_rows: Callable[..., RowSource] | None = None
    dense_advantage: bool = False
    reward_models: tuple[HiddenStates, ...] = ()
    old_logps: torch.Tensor | None = None
    ref_logps: torch.Tensor | None = None
    old_values: torch.Tensor | None = None


@dataclass(frozen=True)
class TokenAdvantages:
    """A builder's result: the token advantages, and what else it estimated.

    Attributes:
        token_advantages: ``[B, T]``, 0 on padding.
        advantages: a sequence advantage ``[B]`` that replaces TRL's (REINFORCE's baseline), or ``None``.
        returns: GAE's returns ``[B, T]`` (PPO's critic target), or ``None``.
    """

    token_advantages: torch.Tensor
    advantages: torch.Tensor | None = None
    returns: torch.Tensor | None = None


def sequence_token_advantages(inputs: AdvantageInputs) -> TokenAdvantages:
    """The sequence advantage on every token, or a reward model's advantage read at the sampled token."""
    mask = inputs.completion_mask.float()
    if inputs.advantage_rows is None:
        return TokenAdvantages(inputs.advantages.unsqueeze(-1) * mask)
    # dpo_token is eq. 13 read at the sampled token; for the dense advantages this value is
    # only the sign split of the dynamics metrics, after the normalisation the loss applies.
    normalization = inputs.config.advantage_normalization if inputs.dense_advantage else "none"
    rows = inputs.advantage_rows(*inputs.reward_models)
    actions = inputs.completion_ids.reshape(-1)
    picked = []
    chunk = inputs.chunk_size(actions.numel())
    for start in range(0, actions.numel(), chunk):
        end = min(start + chunk, actions.numel())
        dense = normalize_advantages(rows(start, end), normalization)
        picked.append(dense.gather(-1, actions[start:end, None]).squeeze(-1))
    return TokenAdvantages(torch.cat(picked).view_as(mask) * mask)


def leave_one_out_token_advantages(inputs: AdvantageInputs) -> TokenAdvantages:
    """REINFORCE: TRL's advantage replaced by the leave-one-out (or batch-mean) baseline's
    (:func:`lco.reinforce_advantages` on the raw rewards), then as :func:`sequence_token_advantages`."""
    n_local = inputs.advantages.numel()
    advantages = reinforce_advantages(inputs.rewards, inputs.group)[inputs.start : inputs.start + n_local]
    built = sequence_token_advantages(dataclasses.replace(inputs, advantages=advantages))
    return TokenAdvantages(built.token_advantages, advantages=advantages)


def gae_token_advantages(inputs: AdvantageInputs) -> TokenAdvantages:
    """PPO: the per-token KL folded into the last-token reward (:func:`lco.ppo_token_rewards`), then GAE
    with the critic, whitened (:func:`lco.ppo_gae_advantages`)."""
    cfg = inputs.config
    mask = inputs.completion_mask.float()
    rewards = inputs.rewards[inputs.start : inputs.start + inputs.advantages.numel()]
    token_rewards = ppo_token_rewards(rewards, mask, inputs.old_logps, inputs.ref_logps, cfg.ppo_kl_coef)
    advantages, returns = ppo_gae_advantages(
        token_rewards, inputs.old_values, mask, cfg.ppo_gamma, cfg.ppo_lam
    )
    return TokenAdvantages(advantages, returns=returns)
