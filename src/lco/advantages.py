"""Advantage estimators (paper §4.2) and their per-step normalisation (§4.4).

All are pure functions of tensors. A dense advantage has the logits' shape ``[..., V]``;
a token advantage has the token shape ``[...]`` and refers to the sampled action only.

- :func:`sparse_advantages` — sampled-action sparse estimate, eq. (11).
- :func:`logprob_advantages` — log-probability dense estimate, eq. (12).
- :func:`dpo_advantages` — DPO log-ratio dense estimate, eq. (13) (the paper's default).
- :func:`normalize_advantages` — per-step centring / scaling over the vocabulary or a support, §4.4.
- :func:`group_advantages` — sequence rewards → advantages (GRPO / RLOO / batch baselines).
- :func:`reinforce_advantages` — REINFORCE's leave-one-out (RLOO) or batch-mean baseline.
- :func:`gae` — generalised advantage estimation for PPO with a critic.
- :func:`ppo_token_rewards` — PPO's per-token reward: KL penalty on every token, outcome on the last.
- :func:`whiten_advantages` — centring and scaling over the valid tokens.
- :func:`ppo_gae_advantages` — :func:`gae` then :func:`whiten_advantages`, as the trainer runs PPO.
"""

from __future__ import annotations

import torch

from ._checks import check_actions, check_choice, check_finite, check_same_shape

NORMALIZATIONS = ("mean", "mean_std", "std", "none")


def sparse_advantages(token_advantages: torch.Tensor, actions: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Â(s_t, a') = A(s_t, a_t) if a' = a_t else 0 (eq. 11), as a dense ``[..., V]`` fp32 tensor.

    Args:
        token_advantages: A(s_t, a_t) for the sampled action, ``[...]``.
        actions: the sampled token ids a_t, ``[...]`` (integer).
        vocab_size: |V|.
    """
    if not isinstance(vocab_size, int) or vocab_size <= 0:
        raise ValueError(f"vocab_size must be a positive int, got {vocab_size!r}")
    if token_advantages.shape != actions.shape:
        raise ValueError(
            f"token_advantages has shape {tuple(token_advantages.shape)} but actions has "
            f"{tuple(actions.shape)}; they must match"
        )
    check_actions(actions, vocab_size)
    check_finite("token_advantages", token_advantages)
    dense = torch.zeros(*actions.shape, vocab_size, dtype=torch.float32, device=actions.device)
    return dense.scatter_(-1, actions.unsqueeze(-1).long(), token_advantages.float().unsqueeze(-1))


def normalize_advantages(
    advantages: torch.Tensor,
    mode: str = "mean",
    eps: float = 1e-6,
    *,
    support: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-step normalisation over the vocabulary axis (§4.4), or over a support of it.

    ``"mean"`` subtracts the mean over V so that (1/|V|)·Σ_a A = 0, which makes z* of eq. (7)
    the shift with the tightest convergence bound (Props. 4.8/4.9: argmin_C ‖A + C‖).
    ``"mean_std"`` also divides by the standard deviation over V; ``"std"`` only divides by it
    (no centring: the authors' public code for the dense DPO advantage); ``"none"`` leaves A as is.
    π* of eq. (6), hence LCO-KLD, is unchanged by the centring; LCO-MSE/LCH are not.

    Args:
        advantages: dense A, ``[..., V]``.
        mode: one of :data:`NORMALIZATIONS`.
        eps: added to the std in ``"mean_std"``; in ``"std"`` a row whose std is at most ``eps``
            is left unscaled (it has no scale to remove, and dividing by ``eps`` would multiply
            it by 1e6).
        support: optional token ids ``[..., k]`` (integer, the token shape of ``advantages``):
            the mean and std are taken over those k entries per token — the entries a
            support-restricted LCO loss reads — and applied to the whole row, so the result keeps
            the shape ``[..., V]``. A top-k support is resolved from z_old with
            :func:`lco.objectives.targets.support_ids`. Over one entry the statistics are
            degenerate (centring gives 0, the std is 0), so a one-entry support needs ``"none"``.

    The stds are population stds (``unbiased=False``).
    """
    check_choice("mode", mode, NORMALIZATIONS)
    adv = advantages.float()
    if support is not None:
        if (
            not isinstance(support, torch.Tensor)
            or support.shape[:-1] != adv.shape[:-1]
            or support.dim() != adv.dim()
        ):
            got = tuple(support.shape) if isinstance(support, torch.Tensor) else type(support).__name__
            raise ValueError(
                f"support must be token ids of shape (*{tuple(adv.shape[:-1])}, k) (the token shape of "
                f"advantages), got {got}"
            )
        check_actions(support, adv.shape[-1], "support")
        if support.shape[-1] == 1 and mode != "none":
            raise ValueError(
                f"support has one entry per token: mode={mode!r} has no statistics over it "
                "(the mean is the entry itself, the std 0); use mode='none'"
            )
    if mode == "none":
        return adv
    on_support = adv if support is None else adv.gather(-1, support.long())
    if mode == "std":
        std = on_support.std(-1, keepdim=True, unbiased=False)
        return adv / torch.where(std > eps, std, torch.ones_like(std))
    centred = adv - on_support.mean(-1, keepdim=True)
    if mode == "mean":
        return centred
    if support is not None:
        on_support = centred.gather(-1, support.long())
    else:
        on_support = centred
    return centred / (on_support.std(-1, keepdim=True, unbiased=False) + eps)


def logprob_advantages(logits: torch.Tensor) -> torch.Tensor:
    """A(s_t, a) := log φ(a|s_t) = Q − V (eq. 12), for every token a of the vocabulary."""
    check_finite("logits", logits)
    return torch.log_softmax(logits.float(), dim=-1)


def dpo_advantages(dpo_logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    """A(s_t, a) := log φ_DPO(a|s_t) − log φ_ref(a|s_t) (eq. 13), for every token a.

    Args:
        dpo_logits: logits of the DPO-trained reward model φ_DPO, ``[..., V]``.
        ref_logits: logits of its reference model φ_ref, ``[..., V]``.
    """
    check_same_shape("ref_logits", ref_logits, "dpo_logits", dpo_logits)
    check_finite("dpo_logits", dpo_logits)
    check_finite("ref_logits", ref_logits)
    return torch.log_softmax(dpo_logits.float(), dim=-1) - torch.log_softmax(ref_logits.float(), dim=-1)


def group_advantages(
    rewards: torch.Tensor,
    group_size: int,
    baseline: str = "mean",
    scale: str = "std",
    eps: float = 1e-4,
) -> torch.Tensor:
    """Sequence rewards → sequence advantages with a per-group baseline.

    ``rewards`` is ``[N]`` with the ``group_size`` completions of one prompt contiguous (TRL's
    layout). ``baseline``: ``"mean"`` (GRPO), ``"leave_one_out"`` (RLOO / REINFORCE with a
    leave-one-out baseline) or ``"none"``. ``scale``: ``"std"`` (GRPO; divide by the group std +
    eps) or ``"none"`` (Dr. GRPO). With ``group_size == 1`` use ``"batch"`` scaling instead:
    the baseline and scale are then taken over the whole batch.
    """
    check_choice("baseline", baseline, ("mean", "leave_one_out", "none"))
    check_choice("scale", scale, ("std", "none", "batch"))
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D [N], got shape {tuple(rewards.shape)}")
    if group_size <= 0 or rewards.numel() % group_size:
        raise ValueError(
            f"group_size={group_size} must be positive and divide the number of rewards {rewards.numel()}"
        )
    if scale == "std" and group_size < 2:
        # The unbiased std of a single reward is NaN, which would silently poison every advantage.
        raise ValueError(
            "scale='std' needs group_size >= 2; with one completion per prompt use scale='batch'"
        )
    check_finite("rewards", rewards)
    r = rewards.float()
    # With "batch" scaling the whole batch is one group for the baseline too.
    grouped = r.view(1, -1) if scale == "batch" else r.view(-1, group_size)
    n = grouped.shape[-1]
    if baseline == "mean":
        adv = grouped - grouped.mean(-1, keepdim=True)
    elif baseline == "leave_one_out":
        if n < 2:
            raise ValueError("baseline='leave_one_out' needs group_size >= 2")
        adv = grouped - (grouped.sum(-1, keepdim=True) - grouped) / (n - 1)
    else:
        adv = grouped
    if scale == "batch":
        return (adv / (r.std(unbiased=False) + eps)).reshape(-1)
    if scale == "std":
        adv = adv / (grouped.std(-1, keepdim=True) + eps)
    return adv.reshape(-1)


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor | None = None,
    gamma: float = 1.0,
    lam: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al., 2015b) for token-level PPO.

    δ_t = r_t + γ·V_{t+1} − V_t,  Â_t = δ_t + γλ·Â_{t+1},  returns R_t = Â_t + V_t,
    with V and Â zero past the last valid token of each row. ``rewards``, ``values``
    and ``mask`` are ``[B, T]``; the defaults γ = 1, λ = 0.95 are TRL's former PPOTrainer's
    (``PPOConfig.gamma``/``lam`` in TRL 0.x). Returns ``(advantages, returns)``.
    """
    check_same_shape("values", values, "rewards", rewards)
    if mask is None:
        mask = torch.ones_like(rewards, dtype=torch.bool)
    check_same_shape("mask", mask, "rewards", rewards)
    check_finite("rewards", rewards)
    check_finite("values", values)
    m = mask.float()
    r, v = rewards.float() * m, values.float() * m
    T = r.shape[-1]
    adv = torch.zeros_like(r)
    last = torch.zeros_like(r[..., 0])
    for t in reversed(range(T)):
        next_v = v[..., t + 1] if t + 1 < T else torch.zeros_like(last)
        delta = r[..., t] + gamma * next_v - v[..., t]
        last = (delta + gamma * lam * last) * m[..., t]
        adv[..., t] = last
    return adv, adv + v


def reinforce_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """REINFORCE's sequence advantages: r_i minus the mean of the *other* completions of its prompt
    (RLOO, Ahmadian et al., 2024) when ``group_size > 1``; with one completion per prompt, r_i minus
    the batch mean, divided by the batch std. Unlike GRPO there is no per-group std scaling.

    ``rewards`` is ``[N]`` with each prompt's ``group_size`` completions contiguous; returns ``[N]``.
    """
    if group_size > 1:
        return group_advantages(rewards, group_size, baseline="leave_one_out", scale="none")
    return group_advantages(rewards, 1, baseline="mean", scale="batch")


def ppo_token_rewards(
    sequence_rewards: torch.Tensor,
    mask: torch.Tensor,
    old_logps: torch.Tensor | None = None,
    ref_logps: torch.Tensor | None = None,
    kl_coef: float = 0.0,
) -> torch.Tensor:
    """PPO's per-token rewards ``[B, T]``: r_t = −kl_coef·(log π_old − log π_ref)(o_t) on every valid
    token, plus the sequence reward on the last valid token (TRL's former PPOTrainer).

    Args:
        sequence_rewards: the outcome reward of each completion, ``[B]``.
        mask: the valid completion tokens, ``[B, T]``.
        old_logps, ref_logps: log π_old and log π_ref of the sampled tokens, ``[B, T]``; without
            ``ref_logps`` there is no KL term.
        kl_coef: the KL penalty's coefficient (``LCOConfig.ppo_kl_coef``).
    """
    if sequence_rewards.dim() != 1 or mask.dim() != 2 or sequence_rewards.shape[0] != mask.shape[0]:
        raise ValueError(
            f"sequence_rewards must be [B] and mask [B, T] with the same B; got {tuple(sequence_rewards.shape)} "
            f"and {tuple(mask.shape)}"
        )
    check_finite("sequence_rewards", sequence_rewards)
    m = mask.float()
    per_token = torch.zeros_like(m)
    if ref_logps is not None:
        if old_logps is None:
            raise ValueError("old_logps is required with ref_logps: the KL penalty is log π_old − log π_ref")
        check_same_shape("old_logps", old_logps, "mask", m)
        check_same_shape("ref_logps", ref_logps, "mask", m)
        per_token = -kl_coef * (old_logps - ref_logps) * m
    last = (m.cumsum(-1) == m.sum(-1, keepdim=True)) & m.bool()
    return per_token + last.float() * sequence_rewards.float().unsqueeze(-1)


def whiten_advantages(advantages: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(A − mean)/(std + eps) over the valid tokens, zero elsewhere (TRL's former PPOTrainer).

    The mean and the (biased) std are taken over the tokens where ``mask`` is set; with no valid
    token the result is all zeros.
    """
    check_same_shape("mask", mask, "advantages", advantages)
    m = mask.float()
    count = m.sum().clamp(min=1.0)
    mean = (advantages * m).sum() / count
    std = (((advantages - mean) ** 2) * m).sum().div(count).sqrt()
    return (advantages - mean) / (std + eps) * m


def ppo_gae_advantages(
    token_rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float = 1.0,
    lam: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's token advantages and the critic's returns: :func:`gae`, then the advantages whitened
    over the valid tokens with :func:`whiten_advantages` (the returns are not whitened)."""
    advantages, returns = gae(token_rewards, values, mask, gamma, lam)
    return whiten_advantages(advantages, mask), returns
