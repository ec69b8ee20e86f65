"""The registered losses: how each objective's pure loss is fed from a training batch.

Each function here is the ``loss`` of one or more rows of :mod:`lco.objectives.registry`, with
one signature, as verl's registered policy losses have::

    loss(batch: LossBatch, ctx: LossContext) -> (loss, metrics)

``batch`` holds the micro-batch's tensors (the sampled tokens, the loss mask, TRL's sequence
advantage and the generation step's :class:`~lco.objectives.rollout.Rollout`); ``ctx`` is built
by the trainer for the call and holds what only the trainer has — the policy's forward, TRL's
own loss, the critic, the config — as plain callables and values, never the trainer itself (so
this module imports nothing from :mod:`lco.trainer`). The returned loss is what backward sees
(already divided by the gradient-accumulation steps); ``metrics`` maps a logged name to a float
(this process's value) or a :class:`TokenMean` (a token mean over every process, which the
trainer gathers).

Adding a loss is one function here (or anywhere) and one ``ObjectiveSpec`` row naming it; see
docs/trainer.md, "Adding an objective".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from .fused import fused_lco_loss
from .heads import chunked_distribution_loss, chunked_token_stats
from .policy_gradient import ppo_clip_loss, reinforce_loss, value_loss
from .reduction import masked_mean
from .rollout import Rollout
from .row_sources import RowSource, SparseAdvantages
from .token_weights import TokenCorrections, weighted_token_mean

HeadFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], Any]
"""``(h [B, T, H], W [V, H], b [V] | None) -> anything``: run on the policy's final hidden states."""


@dataclass(frozen=True)
class LossBatch:
    """One micro-batch as a loss reads it.

    Attributes:
        completion_ids: the sampled tokens a_t, ``[B, T]``.
        mask: the tokens the loss sees, ``[B, T]``: the completion mask times TRL's ``tool_mask``
            (tool outputs excluded; the dynamics diagnostics restrict it to one advantage sign).
        advantages: TRL's sequence advantage, ``[B]``.
        rollout: what the generation step kept for these rows.
        inputs: TRL's batch, for TRL's own loss.
    """

    completion_ids: torch.Tensor
    mask: torch.Tensor
    advantages: torch.Tensor
    rollout: Rollout
    inputs: Mapping[str, Any]


@dataclass(frozen=True)
class LossContext:
    """What a loss may use besides its batch; built by the trainer for each call.

    Attributes:
        forward: ``forward(head_fn)`` runs the policy on the batch's sequences and returns
            ``head_fn(h, W, b)``, called *inside* the (possibly DDP/ZeRO-wrapped) forward
            (:mod:`lco.trainer.hidden_state_forward`).
        base_loss: TRL's ``GRPOTrainer._compute_loss`` on a batch dict.
        config: the ``LCOConfig`` (read only).
        temperature: the sampling temperature T.
        chunk_size: tokens per chunk of a head path over a hidden-state tensor ``[..., H]``.
        accumulation_steps: the loss is divided by it (1 at evaluation).
        advantage_rows: the advantage's vocabulary rows from the reward models
            (``AdvantageSpec.rows``), ``None`` for the outcome reward.
        dense_advantage: the advantage is defined over the whole vocabulary (eqs. 12, 13).
        clip: PPO's (ε_low, ε_high).
        value_head: the critic on the policy's final hidden states, where the row asks for one.
        divergence: the distillation rows' per-token divergence ``(log_s, log_t) -> [N]``.
        corrections: TRL's per-token factors (vLLM importance ratio, off-policy mask, high-entropy
            mask; :mod:`lco.objectives.token_weights`) for the LCO losses; ``None`` when none is on.
    """

    forward: Callable[[HeadFn], Any]
    base_loss: Callable[[Mapping[str, Any]], torch.Tensor]
    config: Any
    temperature: float
    chunk_size: Callable[[torch.Tensor], int]
    accumulation_steps: float = 1.0
    advantage_rows: Callable[..., RowSource] | None = None
    dense_advantage: bool = False
    clip: tuple[float, float] = (0.2, 0.2)
    value_head: Callable[[torch.Tensor], torch.Tensor] | None = None
    divergence: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    corrections: TokenCorrections | None = None


@dataclass(frozen=True)
class TokenMean:
    """A metric that is a weighted token mean over every process: Σ values·weights / Σ weights."""

    values: torch.Tensor
    weights: torch.Tensor


Metrics = dict[str, float | TokenMean]
LossFn = Callable[[LossBatch, LossContext], tuple[torch.Tensor, Metrics]]


def _per_step(loss: torch.Tensor, metrics: Metrics, ctx: LossContext) -> tuple[torch.Tensor, Metrics]:
    """Log the micro-batch's objective and scale it for gradient accumulation."""
    metrics["lco/objective"] = float(loss.detach())
    return loss / ctx.accumulation_steps, metrics


def lco_batch_loss(batch: LossBatch, ctx: LossContext) -> tuple[torch.Tensor, Metrics]:
    """LCO-MSE / LCH / KLD (eqs. 8–10) with :func:`lco.objectives.fused.fused_lco_loss`, chunked.

    z_old is the rollout's :class:`~lco.objectives.rollout.OldLogits` (reused rollouts, or the
    anchor), else ``None``: the current logits, detached (no extra pass). With
    ``lco_temperature_consistent`` the fused kernel sees z/T and z_old/T. TRL's per-token corrections
    (``ctx.corrections``) weight ℓ_t as TRL weights its own per-token loss.
    """
    cfg, rollout = ctx.config, batch.rollout
    actions = batch.completion_ids.reshape(-1)
    mask = batch.mask.reshape(-1).bool()
    if ctx.dense_advantage:
        advantages = ctx.advantage_rows(*rollout.reward_models)
    else:
        advantages = SparseAdvantages(rollout.token_advantages.reshape(-1), actions)
    old_logits = None if rollout.z_old is None else rollout.z_old.logit_rows()
    support = {"full": None, "top_k": cfg.lco_support_k, "sampled": "sampled"}[cfg.lco_support]
    T = ctx.temperature if cfg.lco_temperature_consistent else 1.0
    # The logged entropy is H(softmax(z/T)) for every method (TRL logs z/T); with the
    # temperature-consistent loss the fused loss already sees z/T.
    stats_temperature = 1.0 if cfg.lco_temperature_consistent else ctx.temperature

    corrections = ctx.corrections if ctx.corrections is not None and ctx.corrections.active else None
    kept = mask

    def head_fn(h, w, b):
        nonlocal kept

        def fused(token_mask):
            h_t, b_t = h, b
            if T != 1.0:
                # z/T = (h/T)·Wᵀ + b/T: the fused kernel sees z/T, autograd carries the 1/T back to h and b.
                h_t, b_t = h / T, (None if b is None else b / T)
            return fused_lco_loss(
                h_t.reshape(-1, h.shape[-1]),
                w,
                bias=b_t,
                loss=cfg.objective,
                beta=cfg.lco_beta,
                advantages=advantages,
                old_logits=old_logits,
                actions=actions,
                normalization=cfg.advantage_normalization,
                mask=token_mask,
                chunk_size=ctx.chunk_size(h),
                return_stats=True,
                beta_negative=cfg.lco_beta_negative,
                support=support,
                stats_temperature=stats_temperature,
            )

        if corrections is None:
            return fused(mask)
        logps = entropies = None
        if corrections.needs_policy_stats:  # π_θ's, detached, at the sampling temperature (as TRL's)
            with torch.no_grad():
                logps, entropies = chunked_token_stats(
                    h.detach(), w.detach(), None if b is None else b.detach(), batch.completion_ids,
                    ctx.chunk_size(h), ctx.temperature,
                )  # fmt: skip
        weights = corrections.weights(batch.mask, rollout.token_advantages, logps, entropies)
        kept = mask & (weights.reshape(-1) != 0)
        return weighted_token_mean(fused, mask, weights)

    loss, stats = ctx.forward(head_fn)
    m, token_adv = kept.float(), rollout.token_advantages.reshape(-1)
    metrics: Metrics = {
        f"lco/{name}": TokenMean(stats[name], m)
        for name in ("entropy", "kl_old", "sampled_prob")
        if name in stats
    }
    # KL(π_θ ‖ π_anchor): the anchor is the snapshot (lco_anchor_update_steps != 1), else the
    # generating policy (0 on-policy); the same number as lco/kl_old, named for what it measures.
    metrics["lco/kl_anchor"] = TokenMean(stats["kl_old"], m)
    for sign, selected in (("pos", m * (token_adv > 0)), ("neg", m * (token_adv < 0))):
        for name in ("logit_grad_sampled", "logit_grad_nonsampled"):
            if name in stats:
                metrics[f"lco/{name}_{sign}"] = TokenMean(stats[name], selected)
    return _per_step(loss, metrics, ctx)


def trl_batch_loss(batch: LossBatch, ctx: LossContext) -> tuple[torch.Tensor, Metrics]:
    """TRL's own ``GRPOTrainer._compute_loss`` (GRPO, DAPO, Dr. GRPO, GSPO, CISPO): it scales and logs itself.

    A per-token advantage read from the reward models replaces TRL's sequence advantage.
    """
    inputs = batch.inputs
    if ctx.advantage_rows is not None:
        inputs = {**inputs, "advantages": batch.rollout.token_advantages}
    return ctx.base_loss(inputs), {}


def token_log_probs(
    batch: LossBatch, ctx: LossContext, with_values: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None, Metrics]:
    """log π_θ of the sampled tokens at temperature T, ``[B, T]`` (with grad), the critic's values if
    asked, and the entropy and the sampled token's probability as metrics."""
    tokens = batch.completion_ids

    def head_fn(h, w, b):
        logps, entropy = chunked_token_stats(h, w, b, tokens, ctx.chunk_size(h), ctx.temperature)
        values = ctx.value_head(h.float()).squeeze(-1) if with_values else None
        return logps, entropy, values

    logps, entropy, values = ctx.forward(head_fn)
    metrics: Metrics = {
        "entropy": float(masked_mean(entropy, batch.mask)),
        "lco/sampled_prob": float(masked_mean(logps.detach().exp(), batch.mask)),
    }
    return logps, values, metrics


def ppo_batch_loss(batch: LossBatch, ctx: LossContext) -> tuple[torch.Tensor, Metrics]:
    """PPO: :func:`lco.ppo_clip_loss` (eq. 3) + ``ppo_vf_coef`` · :func:`lco.value_loss` on GAE's returns."""
    cfg, rollout = ctx.config, batch.rollout
    logps, values, metrics = token_log_probs(batch, ctx, with_values=True)
    pg = ppo_clip_loss(logps, rollout.old_logps, rollout.token_advantages, *ctx.clip, batch.mask)
    vf = value_loss(values, rollout.old_values, rollout.returns, cfg.ppo_cliprange_value, batch.mask)
    metrics["lco/value_loss"] = float(vf.detach())
    return _per_step(pg + cfg.ppo_vf_coef * vf, metrics, ctx)


def reinforce_batch_loss(batch: LossBatch, ctx: LossContext) -> tuple[torch.Tensor, Metrics]:
    """REINFORCE (:func:`lco.reinforce_loss`) on the leave-one-out token advantages."""
    logps, _, metrics = token_log_probs(batch, ctx)
    return _per_step(reinforce_loss(logps, batch.rollout.token_advantages, batch.mask), metrics, ctx)


def sft_batch_loss(batch: LossBatch, ctx: LossContext) -> tuple[torch.Tensor, Metrics]:
    """The NLL of the completions that beat their baseline (rejection-sampling fine-tuning)."""
    logps, _, metrics = token_log_probs(batch, ctx)
    keep = batch.mask * (batch.advantages > 0).unsqueeze(-1)
    return _per_step(masked_mean(-logps, keep), metrics, ctx)


def distillation_batch_loss(batch: LossBatch, ctx: LossContext) -> tuple[torch.Tensor, Metrics]:
    """MiniLLM / GKD: the row's per-token divergence to the teacher, chunked, per completion token."""
    teacher_logits = batch.rollout.teacher.logit_rows()

    def head_fn(h, w, b):
        return chunked_distribution_loss(
            h,
            w,
            b,
            teacher_logits,
            ctx.divergence,
            batch.mask,
            ctx.chunk_size(h),
            temperature=ctx.temperature,
        )

    total = ctx.forward(head_fn)
    return _per_step(total / batch.mask.sum().clamp(min=1.0), {}, ctx)
