"""Objectives: pure functions of tensors, each with its equation number in the paper.

- :mod:`.targets` — z* and π* (eqs. 6–7)
- :mod:`.lco` — LCO-MSE / LCO-LCH / LCO-KLD (eqs. 8–10)
- :mod:`.policy_gradient` — SFT, PPO, DAPO, REINFORCE, GSPO, CISPO, value loss
- :mod:`.distill` — MiniLLM reverse KL, GKD generalised JSD
- :mod:`.reduction` — the GRPO-family aggregations over tokens
- :mod:`.fused` — LM head + LCO / SFT loss, chunked over tokens (no [N, V] logits)
- :mod:`.registry` — one row per objective and per advantage: what each needs (read by the trainer)
- :mod:`.heads` — z = h·Wᵀ + b one chunk of rows at a time; log-probs and distillation losses from it
"""

from .distill import generalized_jsd_loss, reverse_kl_loss
from .fused import (
    SparseAdvantages,
    dpo_advantage_chunks,
    fused_lco_loss,
    fused_sft_loss,
    logprob_advantage_chunks,
)
from .heads import chunked_distribution_loss, chunked_token_stats, head_logit_chunks
from .lco import (
    LCO_LOSSES,
    LogitLoss,
    lco_kld,
    lco_kld_logit_grad,
    lco_kld_per_token,
    lco_lch,
    lco_lch_logit_grad,
    lco_lch_per_token,
    lco_mse,
    lco_mse_logit_grad,
    lco_mse_per_token,
    log_cosh,
)
from .policy_gradient import (
    cispo_loss,
    gspo_loss,
    gspo_sequence_log_ratio,
    ppo_clip_loss,
    ppo_clip_per_token,
    reinforce_loss,
    sft_loss,
    value_loss,
)
from .reduction import AGGREGATIONS, aggregate, masked_mean
from .registry import ADVANTAGE_SPECS, OBJECTIVE_SPECS, AdvantageSpec, ObjectiveSpec
from .targets import optimal_log_policy, optimal_logits

__all__ = [
    "ADVANTAGE_SPECS",
    "AGGREGATIONS",
    "LCO_LOSSES",
    "LogitLoss",
    "OBJECTIVE_SPECS",
    "AdvantageSpec",
    "ObjectiveSpec",
    "SparseAdvantages",
    "aggregate",
    "chunked_distribution_loss",
    "chunked_token_stats",
    "cispo_loss",
    "dpo_advantage_chunks",
    "fused_lco_loss",
    "fused_sft_loss",
    "generalized_jsd_loss",
    "gspo_loss",
    "gspo_sequence_log_ratio",
    "head_logit_chunks",
    "lco_kld",
    "lco_kld_logit_grad",
    "lco_kld_per_token",
    "lco_lch",
    "lco_lch_logit_grad",
    "lco_lch_per_token",
    "lco_mse",
    "lco_mse_logit_grad",
    "lco_mse_per_token",
    "log_cosh",
    "logprob_advantage_chunks",
    "masked_mean",
    "optimal_log_policy",
    "optimal_logits",
    "ppo_clip_loss",
    "ppo_clip_per_token",
    "reinforce_loss",
    "reverse_kl_loss",
    "sft_loss",
    "value_loss",
]
