"""SFT and the policy-gradient baselines, as pure functions of per-token log-probabilities.

These are the objectives the paper compares LCO against (§2, §5): SFT (eq. 1), PPO's clipped
surrogate (eq. 3) and its decoupled-clip variant (DAPO), REINFORCE, the GRPO-family
aggregations, GSPO's sequence-level ratio, CISPO, and PPO's clipped value loss. Inputs are
per-token log-probs ``[B, T]`` of the sampled tokens (fp32 math whatever the input dtype);
aggregation over tokens is :func:`lco.objectives.reduction.aggregate`.
"""

from __future__ import annotations

import torch

from .._checks import check_actions, check_finite, check_mask, check_same_shape
from .reduction import aggregate, masked_mean


def _check_token_inputs(mask, **tensors: torch.Tensor) -> None:
    names = list(tensors)
    ref_name, ref = names[0], tensors[names[0]]
    for name in names[1:]:
        check_same_shape(name, tensors[name], ref_name, ref)
    for name, t in tensors.items():
        check_finite(name, t)
    check_mask(mask, ref.shape)


def _broadcast_advantages(advantages: torch.Tensor, logps: torch.Tensor, name: str) -> torch.Tensor:
    """A per token ``[B, T]``, or one per sequence as ``[B, 1]`` or ``[B]`` (TRL's layout), as ``[B, T]``.

    A bare ``expand_as`` would broadcast a ``[B]`` tensor along T — silently wrong when B == T.
    """
    if advantages.dim() == logps.dim() - 1:
        advantages = advantages.unsqueeze(-1)
    per_sequence = logps.shape[:-1] + (1,)
    if advantages.shape != logps.shape and advantages.shape != per_sequence:
        raise ValueError(
            f"{name} has shape {tuple(advantages.shape)} but logps has {tuple(logps.shape)}; pass one "
            f"advantage per token {tuple(logps.shape)} or per sequence {tuple(logps.shape[:-1])} / "
            f"{tuple(per_sequence)}"
        )
    return advantages.expand_as(logps)


def sft_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """L_SFT = −E_t[log π_θ(a_t|s_t)] (eq. 1). Logit gradient π_θ − e_{a_t} (eq. 4).

    Args:
        logits: ``[..., V]``; targets: token ids ``[...]``; mask: ``[...]``.
    """
    check_mask(mask, logits.shape[:-1])
    if targets.shape != logits.shape[:-1]:
        raise ValueError(
            f"targets has shape {tuple(targets.shape)} but logits imply {tuple(logits.shape[:-1])}"
        )
    check_actions(targets, logits.shape[-1], "targets")
    check_finite("logits", logits)
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.long().unsqueeze(-1)).squeeze(-1)
    return masked_mean(-logp, mask)


def ppo_clip_per_token(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    token_advantages: torch.Tensor,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
) -> torch.Tensor:
    """−min(r·A, clip(r, 1 − ε_low, 1 + ε_high)·A) per token, r = π_θ/π_old (eq. 3).

    ε_low = ε_high is PPO/GRPO; ε_high > ε_low is DAPO's decoupled "clip-higher".
    """
    ratio = torch.exp(logps.float() - old_logps.float())
    adv = token_advantages.float()
    clipped = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high)
    return -torch.min(ratio * adv, clipped * adv)


def ppo_clip_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    token_advantages: torch.Tensor,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    mask: torch.Tensor | None = None,
    aggregation: str = "token_mean",
    max_completion_length: int | None = None,
) -> torch.Tensor:
    """PPO's clipped surrogate L_PPO (eq. 3), aggregated over the masked tokens.

    Its logit gradient in the active region is A/π_old·π_θ(a_t)·(π_θ − e_{a_t}) (eq. 5) and its
    logit Hessian (eq. 40) is indefinite (Lemma 4.5). ``token_advantages`` may be ``[B, T]``, or
    ``[B, 1]`` / ``[B]`` (one advantage per sequence, broadcast over tokens).
    """
    if not (eps_low >= 0 and eps_high >= 0):  # written so that NaN fails too
        raise ValueError(f"eps_low and eps_high must be >= 0, got {eps_low}, {eps_high}")
    token_advantages = _broadcast_advantages(token_advantages, logps, "token_advantages")
    _check_token_inputs(mask, logps=logps, old_logps=old_logps, token_advantages=token_advantages)
    per_token = ppo_clip_per_token(logps, old_logps, token_advantages, eps_low, eps_high)
    return aggregate(per_token, mask, aggregation, max_completion_length)


def reinforce_loss(
    logps: torch.Tensor,
    token_advantages: torch.Tensor,
    mask: torch.Tensor | None = None,
    aggregation: str = "token_mean",
    max_completion_length: int | None = None,
) -> torch.Tensor:
    """REINFORCE (Williams, 1992): −E_t[A·log π_θ(a_t|s_t)], A fixed (a baseline is already in A).

    Build A with :func:`lco.group_advantages` (``baseline="leave_one_out"`` for RLOO).
    ``token_advantages`` is ``[B, T]``, ``[B, 1]`` or ``[B]``; ``max_completion_length`` is needed
    by the ``"constant"`` aggregation only.
    """
    token_advantages = _broadcast_advantages(token_advantages, logps, "token_advantages")
    _check_token_inputs(mask, logps=logps, token_advantages=token_advantages)
    per_token = -token_advantages.detach().float() * logps.float()
    return aggregate(per_token, mask, aggregation, max_completion_length)


def gspo_sequence_log_ratio(
    logps: torch.Tensor, old_logps: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """GSPO's length-normalised sequence log-ratio (1/|y|)·Σ_t log(π_θ/π_old), ``[B, 1]``.

    Returned in the "GSPO-token" form log π_θ(y_t) − sg[log π_θ(y_t)] + sg[s], so that it has the
    value of the sequence ratio s at every token while its gradient flows through each token —
    the form TRL uses for ``importance_sampling_level="sequence"``.
    """
    _check_token_inputs(mask, logps=logps, old_logps=old_logps)
    if mask is None:
        mask = torch.ones_like(logps, dtype=torch.bool)
    w = mask.float()
    log_ratio = logps.float() - old_logps.float()
    seq = (log_ratio * w).sum(-1, keepdim=True) / w.sum(-1, keepdim=True).clamp(min=1.0)
    return logps.float() - logps.float().detach() + seq.detach()


def gspo_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    sequence_advantages: torch.Tensor,
    eps_low: float = 3e-4,
    eps_high: float = 4e-4,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """GSPO (Zheng et al., 2025): PPO clipping on the sequence-level ratio s_i, sequence mean.

    The default ε's are the GSPO paper's (3e-4 / 4e-4); ``sequence_advantages`` is ``[B]`` or ``[B, 1]``.
    """
    if not (eps_low >= 0 and eps_high >= 0):  # written so that NaN fails too
        raise ValueError(f"eps_low and eps_high must be >= 0, got {eps_low}, {eps_high}")
    if logps.dim() != 2:
        raise ValueError(f"logps must be [B, T] for GSPO, got shape {tuple(logps.shape)}")
    if sequence_advantages.shape not in ((logps.shape[0],), (logps.shape[0], 1)):
        raise ValueError(
            f"sequence_advantages has shape {tuple(sequence_advantages.shape)} but GSPO needs one advantage "
            f"per sequence, ({logps.shape[0]},) or ({logps.shape[0]}, 1)"
        )
    check_finite("sequence_advantages", sequence_advantages)
    log_s = gspo_sequence_log_ratio(logps, old_logps, mask)
    adv = sequence_advantages.float().reshape(-1, 1).expand_as(log_s)
    ratio = torch.exp(log_s)
    per_token = -torch.min(ratio * adv, torch.clamp(ratio, 1 - eps_low, 1 + eps_high) * adv)
    return aggregate(per_token, mask, "sequence_mean")


def cispo_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    token_advantages: torch.Tensor,
    eps_high: float = 5.0,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """CISPO (MiniMax-M1): −sg[min(r, ε_max)]·A·log π_θ, token mean.

    Clips the importance weight, not the update, so no token drops out of the gradient.
    """
    if not eps_high > 0:  # a weight capped at ≤ 0 would flip or kill every update
        raise ValueError(f"eps_high must be > 0 (the cap on the importance weight), got {eps_high}")
    token_advantages = _broadcast_advantages(token_advantages, logps, "token_advantages")
    _check_token_inputs(mask, logps=logps, old_logps=old_logps, token_advantages=token_advantages)
    weight = torch.clamp(torch.exp(logps.float() - old_logps.float()), max=eps_high).detach()
    return aggregate(-weight * token_advantages.float() * logps.float(), mask, "token_mean")


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    clip_range_value: float = 0.2,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """PPO's clipped value loss ½·E_t[max((V − R)², (clip(V, V_old ± ε_v) − R)²)].

    ε_v = 0.2 is TRL's former ``PPOConfig.cliprange_value``.
    """
    if not clip_range_value >= 0:
        raise ValueError(f"clip_range_value must be >= 0, got {clip_range_value}")
    _check_token_inputs(mask, values=values, old_values=old_values, returns=returns)
    v, v_old, ret = values.float(), old_values.float().detach(), returns.float().detach()
    v_clipped = v_old + torch.clamp(v - v_old, -clip_range_value, clip_range_value)
    per_token = 0.5 * torch.max((v - ret) ** 2, (v_clipped - ret) ** 2)
    return masked_mean(per_token, mask)
