"""lco — stable RL post-training of LLMs with Logits Convex Optimization (LCO).

The public objective API (pure functions of tensors; equation numbers refer to
"Stabilizing Policy Optimization via Logits Convexity"):

>>> import lco
>>> z_star = lco.optimal_logits(old_logits, advantages, beta=1.0)       # eq. 7
>>> loss = lco.lco_kld(logits, old_logits, advantages, beta=1.0, mask=m)  # eq. 10
"""

# Every name is imported on first use (PEP 562), so that `import lco` — which every `lco`
# command pays, even `lco --help` — does not load torch, transformers or TRL.
_LAZY = {
    **dict.fromkeys(
        (
            "NORMALIZATIONS",
            "dpo_advantages",
            "gae",
            "group_advantages",
            "logprob_advantages",
            "normalize_advantages",
            "ppo_gae_advantages",
            "ppo_token_rewards",
            "reinforce_advantages",
            "sparse_advantages",
            "whiten_advantages",
        ),
        "advantages",
    ),
    **dict.fromkeys(
        (
            "SparseAdvantages",
            "aggregate",
            "cispo_loss",
            "dpo_advantage_chunks",
            "fused_lco_loss",
            "fused_sft_loss",
            "generalized_jsd_loss",
            "gspo_loss",
            "gspo_sequence_log_ratio",
            "head_logit_chunks",
            "lco_kld",
            "lco_lch",
            "lco_mse",
            "logprob_advantage_chunks",
            "optimal_log_policy",
            "optimal_logits",
            "ppo_clip_loss",
            "reinforce_loss",
            "reverse_kl_loss",
            "sft_loss",
            "value_loss",
        ),
        "objectives",
    ),
    # the trainer imports TRL and transformers
    "LCOConfig": "trainer",
    "LCOTrainer": "trainer",
}
_SUBMODULES = ("theory",)

__version__ = "0.1.0"

__all__ = [
    "NORMALIZATIONS",
    "SparseAdvantages",
    "aggregate",
    "cispo_loss",
    "dpo_advantage_chunks",
    "dpo_advantages",
    "fused_lco_loss",
    "fused_sft_loss",
    "gae",
    "generalized_jsd_loss",
    "group_advantages",
    "gspo_loss",
    "gspo_sequence_log_ratio",
    "head_logit_chunks",
    "lco_kld",
    "lco_lch",
    "lco_mse",
    "logprob_advantage_chunks",
    "logprob_advantages",
    "normalize_advantages",
    "optimal_log_policy",
    "optimal_logits",
    "ppo_gae_advantages",
    "ppo_token_rewards",
    "reinforce_advantages",
    "ppo_clip_loss",
    "reinforce_loss",
    "reverse_kl_loss",
    "sft_loss",
    "sparse_advantages",
    "theory",
    "value_loss",
    "whiten_advantages",
]

__all__ += ["LCOConfig", "LCOTrainer"]


def __getattr__(name: str):
    import importlib

    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'lco' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
