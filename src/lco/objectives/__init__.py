"""Objectives: pure functions of tensors, each with its equation number in the paper.

- :mod:`.targets` — z* and π* (eqs. 6–7)
- :mod:`.lco` — LCO-MSE / LCO-LCH / LCO-KLD (eqs. 8–10)
- :mod:`.policy_gradient` — SFT, PPO, DAPO, REINFORCE, GSPO, CISPO, value loss
- :mod:`.distill` — MiniLLM reverse KL, GKD generalised JSD
- :mod:`.reduction` — the GRPO-family aggregations over tokens
- :mod:`.fused` — LM head + LCO / SFT loss, chunked over tokens (no [N, V] logits), built from
  :mod:`.chunked` (the chunking base and its autograd), :mod:`.lco_chunk` (LCO's per-chunk math),
  :mod:`.row_sources` (where A and z_old come from, chunk by chunk) and :mod:`.compiled` (``torch.compile``)
- :mod:`.registry` — one row per objective and per advantage: what each needs and the functions that
  compute it (read by the trainer; ``register_objective`` adds a row)
- :mod:`.losses` — the registered losses, ``loss(LossBatch, LossContext) -> (loss, metrics)``
- :mod:`.token_advantages` — the registered token-advantage builders and the reward models' row sources
- :mod:`.rollout` — the typed record the generation step hands to the loss (``Rollout``, z_old as ``OldLogits``)
- :mod:`.heads` — z = h·Wᵀ + b one chunk of rows at a time; log-probs and distillation losses from it

The names below are imported from their module on first use, so that ``import lco`` stays light.
"""

from .._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "distill": ("generalized_jsd_loss", "reverse_kl_loss"),
        "fused": ("fused_lco_loss", "fused_sft_loss"),
        "heads": ("chunked_distribution_loss", "chunked_token_stats", "head_logit_chunks"),
        "lco": (
            "LCO_LOSSES",
            "LogitLoss",
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
        ),
        "policy_gradient": (
            "cispo_loss",
            "gspo_loss",
            "gspo_sequence_log_ratio",
            "ppo_clip_loss",
            "ppo_clip_per_token",
            "reinforce_loss",
            "sft_loss",
            "value_loss",
        ),
        "reduction": ("AGGREGATIONS", "aggregate", "masked_mean"),
        "losses": ("LossBatch", "LossContext"),
        "registry": (
            "ADVANTAGE_SPECS",
            "OBJECTIVE_SPECS",
            "AdvantageSpec",
            "ObjectiveSpec",
            "register_objective",
            "unregister_objective",
        ),
        "rollout": ("OldLogits", "Rollout"),
        "row_sources": ("SparseAdvantages", "dpo_advantage_chunks", "logprob_advantage_chunks"),
        "targets": ("optimal_log_policy", "optimal_logits"),
    },
)
