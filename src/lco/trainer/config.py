"""``LCOConfig``: TRL's ``GRPOConfig`` plus two orthogonal choices, the objective and the advantage.

A TRL user keeps every ``GRPOConfig`` field they already set; ``objective`` picks the loss and
``advantage`` picks the estimator of §4.2 that feeds it. Pairs that make no sense are rejected
here, before any model is loaded (see :data:`REJECTED_PAIRS` and docs/trainer.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from trl import GRPOConfig

# LCO's own objectives (eqs. 8–10) and the baselines of §5.
LCO_OBJECTIVES = ("lco_kld", "lco_lch", "lco_mse")
# Objectives whose loss is TRL's own `GRPOTrainer._compute_loss`: objective -> GRPOConfig overrides.
TRL_OBJECTIVES: dict[str, dict] = {
    "grpo": {"loss_type": "grpo"},
    "dapo": {"loss_type": "dapo"},
    "dr_grpo": {"loss_type": "dr_grpo"},
    # GSPO is TRL's GRPO loss with sequence-level importance sampling (Zheng et al., 2025).
    "gspo": {"loss_type": "grpo", "importance_sampling_level": "sequence"},
    "cispo": {"loss_type": "cispo"},
}
# Each method's own published defaults, applied only where the user left TRL's default in place
# (epsilon 0.2, epsilon_high None, scale_rewards "group"): DAPO's clip-higher 0.28, CISPO's
# ε_max 5.0 (TRL's docs; with None TRL would clamp the IS weight at 0.2), GSPO's 3e-4/4e-4
# sequence-ratio clip, and Dr. GRPO's unscaled advantages.
METHOD_DEFAULTS: dict[str, dict] = {
    "dapo": {"epsilon_high": 0.28},
    "cispo": {"epsilon_high": 5.0},
    "gspo": {"epsilon": 3e-4, "epsilon_high": 4e-4},
    "dr_grpo": {"scale_rewards": "none"},
}
_TRL_DEFAULTS = {"epsilon": 0.2, "epsilon_high": None, "scale_rewards": "group"}
OWN_BASELINES = ("ppo", "reinforce", "minillm", "gkd", "sft")
OBJECTIVES = LCO_OBJECTIVES + tuple(TRL_OBJECTIVES) + OWN_BASELINES

# outcome: group/batch-normalised sequence reward on the sampled tokens (sparse, eq. 11).
# dpo_token: log φ_DPO/φ_ref at the sampled token (sparse). dpo_dense: eq. 13 over the whole
# vocabulary (the paper's default). logprob_dense: eq. 12.
ADVANTAGES = ("outcome", "dpo_token", "dpo_dense", "logprob_dense")
DENSE_ADVANTAGES = ("dpo_dense", "logprob_dense")
REWARD_MODEL_ADVANTAGES = ("dpo_token", "dpo_dense", "logprob_dense")
# Step-size guard of the Gradient-Gap metrics (docs/gap.md): off, warn, or warn and lower the lr.
GAP_STEP_GUARDS = ("off", "warn", "scale")


def _rejected_pairs() -> dict[tuple[str, str], str]:
    """Objective × advantage pairs that make no sense, each with the reason shown to the user."""
    rejected: dict[tuple[str, str], str] = {}
    for objective in (*TRL_OBJECTIVES, "reinforce"):
        for advantage in DENSE_ADVANTAGES:
            rejected[(objective, advantage)] = (
                "a policy-gradient objective only sees the sampled token, so a dense advantage over the "
                "vocabulary has nothing to act on; use advantage='outcome' or 'dpo_token'"
            )
    rejected[("gspo", "dpo_token")] = (
        "GSPO weights whole sequences by one sequence-level ratio and advantage; a per-token advantage "
        "contradicts it; use advantage='outcome'"
    )
    for advantage in ("dpo_token", *DENSE_ADVANTAGES):
        rejected[("ppo", advantage)] = (
            "PPO here estimates token advantages itself with a critic and GAE from the outcome reward "
            "(with the per-token KL folded in); use advantage='outcome'"
        )
        rejected[("sft", advantage)] = (
            "sft imitates the completions whose outcome advantage is positive; it needs advantage='outcome'"
        )
        for objective in ("minillm", "gkd"):
            rejected[(objective, advantage)] = (
                "distillation follows the teacher's distribution and uses no advantage; leave "
                "advantage='outcome' (only the teacher is used)"
            )
    return rejected


REJECTED_PAIRS = _rejected_pairs()
VALID_PAIRS = tuple((o, a) for o in OBJECTIVES for a in ADVANTAGES if (o, a) not in REJECTED_PAIRS)


@dataclass
class LCOConfig(GRPOConfig):
    r"""Configuration for :class:`lco.LCOTrainer`: every ``GRPOConfig`` field, plus the following.

    Parameters:
        objective: the loss — ``lco_kld`` (default), ``lco_lch``, ``lco_mse``, or a baseline:
            ``ppo``, ``reinforce``, ``grpo``, ``dapo``, ``dr_grpo``, ``gspo``, ``cispo`` (TRL's own code
            path), ``minillm``, ``gkd``, ``sft``.
        advantage: ``outcome`` (default), ``dpo_token``, ``dpo_dense`` (the paper's default), ``logprob_dense``.
        lco_beta: β of eqs. 2, 6, 7 (default 1.0, the paper's).
        advantage_normalization: per-step normalisation over the vocabulary (§4.4).
        reward_model_path: φ_DPO, a causal LM trained with TRL's DPOTrainer (for the DPO advantages).
        reference_reward_model_path: φ_ref, the model φ_DPO was trained from.
        teacher_model_path: the teacher for ``minillm``/``gkd`` (defaults to ``reward_model_path``, as in Table 4).
        gap_every: log the Gradient-Gap metrics (Δμ, η_k, M, the bound on J) every this many steps; 0 = off.
        gap_step_guard: ``off`` (default), ``warn`` or ``scale``: the heuristic step-size guard of docs/gap.md.
    """

    objective: str = field(
        default="lco_kld",
        metadata={"help": f"Training objective, one of: {', '.join(OBJECTIVES)}."},
    )
    advantage: str = field(
        default="outcome",
        metadata={
            "help": "Advantage estimator (paper §4.2): 'outcome' (sequence reward on the sampled tokens, eq. 11), "
            "'dpo_token' (log φ_DPO/φ_ref at the sampled token), 'dpo_dense' (eq. 13 over the vocabulary; the "
            "paper's default), 'logprob_dense' (eq. 12)."
        },
    )
    lco_beta: float = field(
        default=1.0,
        metadata={"help": "β of the KL-regularised objective (eq. 2): z* = z_old + A/β (eq. 7)."},
    )
    advantage_normalization: str = field(
        default="mean",
        metadata={
            "help": "Per-step normalisation of the advantage over the vocabulary: 'mean', 'mean_std', 'none'."
        },
    )
    reward_model_path: str | None = field(
        default=None,
        metadata={"help": "Path or hub id of φ_DPO (a causal LM trained with TRL's DPOTrainer)."},
    )
    reference_reward_model_path: str | None = field(
        default=None,
        metadata={"help": "Path or hub id of φ_ref, the reference model φ_DPO was trained from."},
    )
    teacher_model_path: str | None = field(
        default=None,
        metadata={
            "help": "Teacher for 'minillm'/'gkd'; defaults to reward_model_path (the paper's Table 4)."
        },
    )
    lco_chunk_size: int = field(
        default=1024,
        metadata={
            "help": "Tokens per chunk in the fused LCO loss: bounds the [chunk, V] logits held at once."
        },
    )
    gkd_beta: float = field(
        default=0.5,
        metadata={
            "help": "β of GKD's generalised JSD (TRL's GKDConfig default; 0 = forward KL, 1 = reverse KL)."
        },
    )
    # PPO (defaults from TRL's former PPOConfig, trl 0.19: gamma=1, lam=0.95, cliprange_value=0.2,
    # vf_coef=0.1, kl_coef=0.05, num_ppo_epochs=4).
    ppo_gamma: float = field(default=1.0, metadata={"help": "PPO: discount γ of GAE."})
    ppo_lam: float = field(default=0.95, metadata={"help": "PPO: λ of GAE."})
    ppo_cliprange_value: float = field(default=0.2, metadata={"help": "PPO: value-function clip range."})
    ppo_vf_coef: float = field(default=0.1, metadata={"help": "PPO: value-loss coefficient."})
    ppo_kl_coef: float = field(
        default=0.05, metadata={"help": "PPO: per-token KL penalty to the reference, folded into the reward."}
    )
    ppo_epochs: int = field(
        default=4,
        metadata={"help": "PPO: optimisation epochs per rollout (sets num_iterations for objective='ppo')."},
    )
    dynamics_every: int = field(
        default=0,
        metadata={
            "help": "Every this many steps, log the parameter-gradient norm split by advantage sign (two extra "
            "backward passes; paper Figs. 3-6). 0 disables."
        },
    )
    gap_every: int = field(
        default=0,
        metadata={
            "help": "Every this many optimizer steps, log the Gradient-Gap metrics of Suk & Duan (gap/delta_mu, "
            "gap/eta, gap/M, gap/J_lower_bound, ...; docs/gap.md) for any objective: two extra backward passes "
            "over the correct and incorrect completions and three parameter-sized fp32 buffers. Needs binary "
            "sequence rewards (correct = reward > 0). 0 disables."
        },
    )
    gap_step_guard: str = field(
        default="off",
        metadata={
            "help": "Step-size guard (a heuristic beyond the paper, docs/gap.md): 'off', 'warn' (warn when the "
            "step η_k exceeds gap_step_guard_tolerance × the estimated threshold of eq. 15a) or 'scale' (also "
            "lower the learning rate). Needs gap_every > 0; it judges the steps the gap metrics measure."
        },
    )
    gap_step_guard_tolerance: float = field(
        default=4.0,
        metadata={
            "help": "Step-size guard: act when η_k > tolerance × the estimated threshold η*_k. The estimate is "
            "conservative: on the paper's App. F instance the sharp collapse step is 5.8× it for J ≤ 0.8 (docs/gap.md)."
        },
    )
    gap_step_guard_min_lr_scale: float = field(
        default=0.01,
        metadata={"help": "Step-size guard 'scale': the learning-rate multiplier never goes below this."},
    )
    max_nonfinite_steps: int = field(
        default=3,
        metadata={
            "help": "Stop with an error after this many consecutive steps with a NaN/inf loss or gradient."
        },
    )

    def __post_init__(self):
        validate_choices(self)
        if self.objective in TRL_OBJECTIVES:
            for name, value in TRL_OBJECTIVES[self.objective].items():
                setattr(self, name, value)
        for name, value in METHOD_DEFAULTS.get(self.objective, {}).items():
            if getattr(self, name) == _TRL_DEFAULTS[name]:
                setattr(self, name, value)
        if self.objective == "ppo":
            self.num_iterations = self.ppo_epochs
        super().__post_init__()


def validate_choices(config: LCOConfig) -> None:
    """Reject bad objective/advantage settings with one clear error, before anything is loaded."""
    if config.objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}; got {config.objective!r}")
    if config.advantage not in ADVANTAGES:
        raise ValueError(f"advantage must be one of {', '.join(ADVANTAGES)}; got {config.advantage!r}")
    reason = REJECTED_PAIRS.get((config.objective, config.advantage))
    if reason is not None:
        raise ValueError(
            f"objective={config.objective!r} with advantage={config.advantage!r} is not supported: {reason}"
        )
    if not (config.lco_beta > 0):
        raise ValueError(f"lco_beta must be > 0 (β of eq. 2), got {config.lco_beta}")
    if config.advantage_normalization not in ("mean", "mean_std", "none"):
        raise ValueError(
            f"advantage_normalization must be 'mean', 'mean_std' or 'none'; got {config.advantage_normalization!r}"
        )
    if config.advantage in ("dpo_token", "dpo_dense") and not (
        config.reward_model_path and config.reference_reward_model_path
    ):
        raise ValueError(
            f"advantage={config.advantage!r} needs both reward_model_path (φ_DPO) and reference_reward_model_path (φ_ref)"
        )
    if config.advantage == "logprob_dense" and not config.reward_model_path:
        raise ValueError("advantage='logprob_dense' needs reward_model_path (the model φ of eq. 12)")
    if config.objective in ("minillm", "gkd") and not (config.teacher_model_path or config.reward_model_path):
        raise ValueError(f"objective={config.objective!r} needs teacher_model_path (or reward_model_path)")
    if config.lco_chunk_size <= 0:
        raise ValueError(f"lco_chunk_size must be positive, got {config.lco_chunk_size}")
    if config.dynamics_every < 0:
        raise ValueError(f"dynamics_every must be >= 0, got {config.dynamics_every}")
    if config.gap_every < 0:
        raise ValueError(
            f"gap_every must be >= 0 (0 disables the Gradient-Gap metrics), got {config.gap_every}"
        )
    if config.gap_step_guard not in GAP_STEP_GUARDS:
        raise ValueError(
            f"gap_step_guard must be one of {', '.join(GAP_STEP_GUARDS)}; got {config.gap_step_guard!r}"
        )
    if config.gap_step_guard != "off" and config.gap_every == 0:
        raise ValueError(
            f"gap_step_guard={config.gap_step_guard!r} needs gap_every > 0: the guard judges the steps whose Gap "
            "Alignment the gap metrics measure"
        )
    if not (math.isfinite(config.gap_step_guard_tolerance) and config.gap_step_guard_tolerance > 0):
        raise ValueError(
            f"gap_step_guard_tolerance must be finite and > 0, got {config.gap_step_guard_tolerance}"
        )
    if not 0 < config.gap_step_guard_min_lr_scale <= 1:
        raise ValueError(
            f"gap_step_guard_min_lr_scale must lie in (0, 1], got {config.gap_step_guard_min_lr_scale}"
        )
    if config.gap_step_guard == "scale" and config.lr_scheduler_type in ("reduce_lr_on_plateau", "greedy"):
        raise ValueError(
            "gap_step_guard='scale' rescales the rate the scheduler sets from its base each step; "
            f"lr_scheduler_type={str(config.lr_scheduler_type)!r} changes the rate in place, so the scaling would "
            "compound"
        )
    if config.max_nonfinite_steps < 1:
        raise ValueError(f"max_nonfinite_steps must be >= 1, got {config.max_nonfinite_steps}")
    if config.objective == "ppo" and config.ppo_epochs < 1:
        raise ValueError(f"ppo_epochs must be >= 1, got {config.ppo_epochs}")
    if not 0.0 <= config.gkd_beta <= 1.0:
        raise ValueError(f"gkd_beta must lie in [0, 1], got {config.gkd_beta}")
