"""``LCOConfig``: TRL's ``GRPOConfig`` plus two orthogonal choices, the objective and the advantage.

A TRL user keeps every ``GRPOConfig`` field they already set; ``objective`` picks the loss and
``advantage`` picks the estimator of §4.2 that feeds it. Pairs that make no sense are rejected
here, before any model is loaded (see :data:`REJECTED_PAIRS` and docs/trainer.md).
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field

from trl import GRPOConfig

from ..advantages import NORMALIZATIONS
from ..objectives.losses import lco_batch_loss
from ..objectives.registry import ADVANTAGE_SPECS, OBJECTIVE_SPECS, advantage_spec, objective_spec

# The stability options' tables and resolution live in lco_options.py; their names stay importable from here.
from .lco_options import (  # noqa: F401
    _UNSET,
    LCO_OPTION_FIELDS,
    LCO_PRESETS,
    LCO_SUPPORTS,
    PAPER_OPTION_DEFAULTS,
    RESOLVED_FIELDS,
    SIGNAL_DEFAULTS,
    SignalDefaults,
    _same_option,
    default_lco_options,
    signal_defaults,
)

logger = logging.getLogger(__name__)

OBJECTIVES = tuple(OBJECTIVE_SPECS)
ADVANTAGES = tuple(ADVANTAGE_SPECS)
# LCO's own objectives (eqs. 8–10); the others are the baselines of §5.
LCO_OBJECTIVES = tuple(name for name, spec in OBJECTIVE_SPECS.items() if spec.loss is lco_batch_loss)
_TRL_DEFAULTS = {"epsilon": 0.2, "epsilon_high": None, "scale_rewards": "group"}

# Step-size guard of the Gradient-Gap metrics (docs/gap.md): off, warn, or warn and lower the lr.
GAP_STEP_GUARDS = ("off", "warn", "scale")

# Objective × advantage pairs that make no sense, each with the reason shown to the user
# (each objective's ``rejected_advantages`` in :data:`lco.objectives.registry.OBJECTIVE_SPECS`).
REJECTED_PAIRS: dict[tuple[str, str], str] = {
    (objective, advantage): reason
    for objective, spec in OBJECTIVE_SPECS.items()
    for advantage, reason in spec.rejected_advantages.items()
}
VALID_PAIRS = tuple((o, a) for o in OBJECTIVES for a in ADVANTAGES if OBJECTIVE_SPECS[o].accepts(a))


@dataclass
class LCOConfig(GRPOConfig):
    r"""
    Configuration class for :class:`lco.LCOTrainer`.

    Every field of TRL's ``GRPOConfig`` (and so of ``transformers.TrainingArguments``) keeps its meaning;
    this class adds only the fields below. As with ``GRPOConfig``, ``transformers.HfArgumentParser`` (and
    ``lco train``) turns them into YAML keys and ``--field value`` command-line arguments.

    Parameters:
        > Parameters that choose the method

        objective (`str`, *optional*, defaults to `"lco_kld"`):
            The loss: LCO's ``lco_kld``, ``lco_lch``, ``lco_mse`` (eqs. 10, 9, 8), or a baseline — ``grpo``,
            ``dapo``, ``dr_grpo``, ``gspo``, ``cispo`` (TRL's own loss, with ``loss_type`` and the method's
            published clip/scaling defaults set for you), ``ppo`` (critic + GAE), ``reinforce`` (leave-one-out
            baseline), ``minillm``, ``gkd`` (on-policy distillation to a teacher), ``sft`` (on the completions
            with a positive advantage). What each needs is its row of
            :data:`lco.objectives.registry.OBJECTIVE_SPECS`.
        advantage (`str`, *optional*, defaults to `"outcome"`):
            The advantage estimator of §4.2: ``outcome`` (the group-normalised sequence reward on the sampled
            tokens, eq. 11), ``dpo_token`` (log φ_DPO/φ_ref at the sampled token), ``dpo_dense`` (eq. 13 over the
            vocabulary; the paper's default), ``logprob_dense`` (eq. 12). Pairs that make no sense are rejected
            with the reason (:data:`lco.trainer.REJECTED_PAIRS`).

        > Parameters that control the LCO target (eqs. 2, 6, 7)

        lco_beta (`float`, *optional*, defaults to `1.0`):
            β of the KL-regularised objective (eq. 2): z* = z_old + A/β (eq. 7). The paper's value.
        advantage_normalization (`str`, *optional*, defaults to `"mean"` when unset):
            Per-step normalisation of the advantage over the vocabulary (§4.4), or over the support when
            ``lco_support`` is not ``full``, one of :data:`lco.NORMALIZATIONS`: ``mean`` (centring; leaves π*
            unchanged), ``mean_std``, ``std`` (divide by the std, no centring: the authors' code for the dense
            DPO advantage), ``none``. ``std``/``mean_std`` are refused for a sparse advantage (``outcome``,
            ``dpo_token``) on an LCO objective: the std of a one-hot row keeps only the sign of A.

        > Parameters that stabilise LCO (docs/trainer.md, "Stability options"; LCO objectives only)

        Each (but the bool flag) defaults to ``None`` ("not set") and is resolved when the config is built — your value, else the
        preset's, else the advantage's (:data:`SIGNAL_DEFAULTS`), else the paper's — so the saved config holds
        the values the run used, and a preset can tell a value you set from one you left.

        lco_anchor_update_steps (`int`, *optional*, from the advantage when unset):
            The anchor π_old of z* = z_old + A/β (eq. 7): a frozen snapshot of the policy refreshed every this many
            optimizer steps (at steps 0, m, 2m, …); z_old is the snapshot's exact logits on each batch. 1 is the
            paper (the policy that generated the batch; no extra copy); 0 never refreshes: the initial policy, the
            KL-regularised optimum around the starting model (the authors' code). Unset: 0 for a reward model's
            advantage (a fixed function of the state: re-anchoring would compound the tilt π_0·exp(k·A/β)), 1 for
            ``outcome`` (its group baseline moves with the policy: re-anchoring is mirror descent); see
            docs/trainer.md, "Defaults, from the evidence". Values other than 1 keep an anchor on TRL's
            reference-model machinery: under PEFT the base with the adapters disabled (m = 0) or a snapshot
            adapter, else a frozen copy placed like TRL's reference model (sharded under ZeRO-3 / FSDP);
            :mod:`lco.trainer.anchor`, docs/scale.md.
        lco_support (`str`, *optional*, defaults to `"full"` when unset):
            The entries π* may put mass on, per token: ``full`` (the whole vocabulary, eq. 6), ``top_k`` (π_old's
            ``lco_support_k`` most likely tokens, renormalised, then tilted; the authors use 5; with a sparse
            advantage the sampled token takes the k-th place when it is not among them) or ``sampled`` (the
            sampled token only: the authors' sampled-logit regression, ``lco_mse``/``lco_lch`` with
            ``advantage_normalization="none"``).
        lco_support_k (`int`, *optional*, defaults to `5` when unset):
            k of ``lco_support="top_k"``.
        lco_beta_negative (`float` or `None`, *optional*, from the advantage when unset):
            β for the entries with A < 0 (z* = z_old + A/β_negative there; the sign of the uncentred A), so
            π* ∝ π_old·exp(A/β_±) (eqs. 6–7 per sign). Unset: 100·``lco_beta`` for ``outcome`` (the authors'
            rule-reward value, confirmed on fresh seeds), else one β for both signs. A value equal to
            ``lco_beta`` is one β for both signs, whatever the advantage.
        lco_temperature_consistent (`bool`, *optional*, defaults to `False`):
            When true, z_old and the loss use z/T with T the sampling ``temperature`` (as TRL's objectives do);
            false is the paper (T = 1 logits whatever the sampling temperature).
        lco_preset (`str` or `None`, *optional*, defaults to `None`):
            Named settings of the options above: ``paper`` (full support, anchor every step, no β_negative,
            ``mean`` normalisation, T = 1; the paper as written, whatever the defaults) or ``authors`` (top-5
            support, ``std`` normalisation of a dense advantage — none of a sparse one —, β_negative = 100·β,
            anchor = the initial policy). It fills the options you left unset; one you set to another value is
            an error naming both.

        > Parameters that name the frozen models

        reward_model_path (`str` or `None`, *optional*, defaults to `None`):
            Path or hub id of φ_DPO, a causal LM trained with TRL's ``DPOTrainer``; needed by the DPO and
            log-probability advantages. Must share the policy's tokenizer.
        reference_reward_model_path (`str` or `None`, *optional*, defaults to `None`):
            Path or hub id of φ_ref, the model φ_DPO was trained from (``dpo_token`` and ``dpo_dense``).
        teacher_model_path (`str` or `None`, *optional*, defaults to `None`):
            The teacher of ``minillm``/``gkd``; when unset, ``reward_model_path`` (the paper's Table 4).

        > Parameters that control memory

        head_chunk_size (`int` or `None`, *optional*, defaults to `None`):
            Tokens per chunk on every LM-head path (the fused LCO loss, the log-probabilities of the policy-gradient
            baselines and of PPO's old policy and reference, the distillation losses, the dense advantages): bounds
            the ``[chunk, V]`` logits held at once. ``None`` picks it per batch from the shapes with
            :func:`lco.objectives.fused.default_chunk_size` (N tokens, V, H and the device's free memory: at most
            256 tokens, fewer where the chunk would pass a fifth of the unfused step's memory).
        lco_chunk_size (`int` or `None`, *optional*, defaults to `None`):
            Deprecated alias of ``head_chunk_size`` (it always set every head path, not only LCO's); setting it
            warns and sets ``head_chunk_size``.

        > Parameters of the baselines

        gkd_beta (`float`, *optional*, defaults to `0.5`):
            β of GKD's generalised JSD (TRL's ``GKDConfig`` default; 0 = forward KL, 1 = reverse KL).
        ppo_gamma (`float`, *optional*, defaults to `1.0`):
            PPO: discount γ of GAE (defaults of TRL's former ``PPOConfig``, trl 0.19).
        ppo_lam (`float`, *optional*, defaults to `0.95`):
            PPO: λ of GAE.
        ppo_cliprange_value (`float`, *optional*, defaults to `0.2`):
            PPO: clip range of the value function around the old values.
        ppo_vf_coef (`float`, *optional*, defaults to `0.1`):
            PPO: weight of the value loss.
        ppo_kl_coef (`float`, *optional*, defaults to `0.05`):
            PPO: per-token KL penalty to the frozen initial policy, folded into the reward; 0 loads no reference.
        ppo_epochs (`int`, *optional*, defaults to `4`):
            PPO: optimisation epochs per rollout; sets ``num_iterations`` when ``objective="ppo"``.

        > Parameters that control the diagnostics

        dynamics_every (`int`, *optional*, defaults to `0`):
            Every this many steps, log the parameter-gradient norm split by advantage sign (two extra backward
            passes; the paper's Figs. 3–6). 0 disables.
        gap_every (`int`, *optional*, defaults to `0`):
            Every this many optimizer steps, log the Gradient-Gap metrics (Δμ, η_k, M, the bound on J; docs/gap.md)
            for any objective: two extra backward passes and three parameter-sized fp32 buffers. Needs binary
            sequence rewards (correct = reward > 0). 0 disables.
        gap_step_guard (`str`, *optional*, defaults to `"off"`):
            The heuristic step-size guard of docs/gap.md: ``off``, ``warn`` (warn when η_k exceeds
            ``gap_step_guard_tolerance`` × the estimated threshold of eq. 15a) or ``scale`` (also lower the
            learning rate). Needs ``gap_every > 0``.
        gap_step_guard_tolerance (`float`, *optional*, defaults to `4.0`):
            The guard acts when η_k > tolerance × the estimated threshold η*_k.
        gap_step_guard_min_lr_scale (`float`, *optional*, defaults to `0.01`):
            With ``gap_step_guard="scale"``, the learning-rate multiplier never goes below this.

        > Parameters that control failure

        max_nonfinite_steps (`int`, *optional*, defaults to `3`):
            Stop with an error after this many consecutive steps with a NaN/inf loss or gradient.
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
    advantage_normalization: str | None = field(
        default=None,
        metadata={
            "help": "Per-step normalisation of the advantage over the vocabulary (or the support): 'mean' (the "
            "default), 'mean_std', 'std' (no centring; dense advantages only), 'none'."
        },
    )
    lco_anchor_update_steps: int | None = field(
        default=None,
        metadata={
            "help": "LCO anchor π_old: a frozen snapshot of the policy refreshed every this many optimizer steps "
            "(at 0, m, 2m, ...). 1 = the paper (the generating policy, no extra copy); 0 = never (the initial "
            "policy). Unset: from the advantage (0 for a reward model's, 1 for 'outcome')."
        },
    )
    lco_support: str | None = field(
        default=None,
        metadata={
            "help": "Support of π*: 'full' (whole vocabulary, eq. 6; the default), 'top_k' (π_old's lco_support_k "
            "most likely tokens, plus the sampled one for a sparse advantage) or 'sampled' (the sampled token; "
            "lco_mse/lco_lch with advantage_normalization='none')."
        },
    )
    lco_support_k: int | None = field(
        default=None, metadata={"help": "k of lco_support='top_k' (default 5)."}
    )
    lco_beta_negative: float | None = field(
        default=None,
        metadata={
            "help": "β where A < 0 (z* = z_old + A/β_negative there; equal to lco_beta: one β for both signs). "
            "Unset: from the advantage (100·lco_beta for 'outcome', else lco_beta)."
        },
    )
    # a plain bool, so that `--lco_temperature_consistent` alone means true (HfArgumentParser gives a
    # bool flag without a value only when its default is not None); no preset sets it true, so a false
    # that the user gave never conflicts with one
    lco_temperature_consistent: bool = field(
        default=False,
        metadata={
            "help": "Use z/T (T = the sampling temperature) for z_old and the loss, as TRL's objectives do; "
            "False (the default) = the paper (T = 1 logits)."
        },
    )
    lco_preset: str | None = field(
        default=None,
        metadata={
            "help": "Named stability settings for the options you leave unset: 'paper' (the paper as written) or "
            "'authors' (top-5 support, std normalisation of a dense advantage, β_negative = 100·β, anchor = "
            "initial policy). An option set to another value than the preset's is an error."
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
    head_chunk_size: int | None = field(
        default=None,
        metadata={
            "help": "Tokens per chunk on every LM-head path (fused LCO loss, policy-gradient and distillation "
            "log-probabilities, dense advantages): bounds the [chunk, V] logits held at once. Default: picked per "
            "batch from N, V, H and the device's free memory by lco.objectives.fused.default_chunk_size (at most 256)."
        },
    )
    lco_chunk_size: int | None = field(
        default=None,
        metadata={"help": "Deprecated alias of head_chunk_size (it sets every head path, not only LCO's)."},
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
        self._resolve_chunk_size_alias()
        decided = self._resolve_lco_options()
        validate_choices(self)
        spec = OBJECTIVE_SPECS[self.objective]
        for name, value in spec.grpo_config.items():
            setattr(self, name, value)
        for name, value in spec.published_defaults.items():
            if getattr(self, name) == _TRL_DEFAULTS[name]:
                setattr(self, name, value)
        if spec.iterations_field is not None:  # PPO's ppo_epochs: optimisation epochs per rollout
            self.num_iterations = getattr(self, spec.iterations_field)
        super().__post_init__()
        if decided and self.should_log:
            logger.warning(decided)

    def _resolve_lco_options(self) -> str | None:
        """Fill the stability options left unset (``None``): from ``lco_preset`` if one is named, else from
        the advantage's signal (:data:`SIGNAL_DEFAULTS`) and the paper. Returns the one-line note of what the
        signal decided, or ``None`` when the user or the preset set both of those options.

        An option the user set always stays; with a preset that sets it to something else it is one error
        naming both. Objectives other than LCO's hold the options at the paper's neutral values (so that no
        baseline keeps an anchor snapshot) and refuse any other value.
        """
        objective = objective_spec(self.objective)
        given = {name: getattr(self, name) for name in RESOLVED_FIELDS if getattr(self, name) != _UNSET[name]}
        beta = self.lco_beta
        if not objective.accepts_lco_options:
            neutral = LCO_PRESETS["paper"]
            for name in LCO_OPTION_FIELDS:
                value = getattr(self, name)
                if value is not None and not _same_option(name, value, neutral.get(name), beta):
                    raise ValueError(
                        f"{name} applies to the LCO objectives ({', '.join(LCO_OBJECTIVES)}) only; "
                        f"objective={self.objective!r} does not read it"
                    )
            for name, value in default_lco_options(self.objective, self.advantage, beta).items():
                setattr(self, name, value if name in LCO_OPTION_FIELDS else given.get(name, value))
            return None
        preset = {}
        if self.lco_preset is not None:
            if self.lco_preset not in LCO_PRESETS:
                raise ValueError(
                    f"lco_preset must be None or one of {', '.join(repr(p) for p in LCO_PRESETS)}; "
                    f"got {self.lco_preset!r}"
                )
            preset = {
                name: value(self) if callable(value) else value
                for name, value in LCO_PRESETS[self.lco_preset].items()
            }
            conflicts = [
                f"{name}={given[name]!r} (the preset sets {value!r})"
                for name, value in preset.items()
                if name in given and not _same_option(name, given[name], value, beta)
            ]
            if conflicts:
                raise ValueError(
                    f"lco_preset={self.lco_preset!r} conflicts with "
                    + "; ".join(conflicts)
                    + ": a preset never overwrites an option you set; drop the preset or the option"
                )
        defaults = default_lco_options(self.objective, self.advantage, beta)
        for name in RESOLVED_FIELDS:
            if name not in given:
                setattr(self, name, preset.get(name, defaults[name]))
        decided = [
            name for name in signal_defaults(self.advantage, beta) if name not in given and name not in preset
        ]
        if not decided:
            return None
        why = SIGNAL_DEFAULTS[advantage_spec(self.advantage).signal].why
        values = ", ".join(
            "lco_beta_negative=None (one β for both signs)"
            if name == "lco_beta_negative" and self.lco_beta_negative is None
            else f"{name}={getattr(self, name)!r}"
            for name in decided
        )
        return (
            f"LCOConfig: {values} from advantage={self.advantage!r}, {why} (set the option to override; "
            'docs/trainer.md, "Defaults, from the evidence")'
        )

    def _resolve_chunk_size_alias(self) -> None:
        if self.lco_chunk_size is None:
            return
        warnings.warn(
            "lco_chunk_size is deprecated: it sets every LM-head path, not only LCO's; use head_chunk_size",
            FutureWarning,
            stacklevel=4,
        )
        if self.head_chunk_size is not None and self.head_chunk_size != self.lco_chunk_size:
            raise ValueError(
                f"head_chunk_size={self.head_chunk_size} and its deprecated alias lco_chunk_size="
                f"{self.lco_chunk_size} disagree; set only head_chunk_size"
            )
        self.head_chunk_size = self.lco_chunk_size


def validate_choices(config: LCOConfig) -> None:
    """Reject bad objective/advantage settings with one clear error, before anything is loaded."""
    objective = objective_spec(config.objective)
    advantage = advantage_spec(config.advantage)
    reason = objective.rejected_advantages.get(advantage.name)
    if reason is not None:
        raise ValueError(
            f"objective={config.objective!r} with advantage={config.advantage!r} is not supported: {reason}"
        )
    if not (config.lco_beta > 0):
        raise ValueError(f"lco_beta must be > 0 (β of eq. 2), got {config.lco_beta}")
    if config.advantage_normalization not in NORMALIZATIONS:
        raise ValueError(
            f"advantage_normalization must be one of {', '.join(repr(n) for n in NORMALIZATIONS)}; "
            f"got {config.advantage_normalization!r}"
        )
    validate_lco_options(config)
    if advantage.reward_models == ("dpo", "ref") and not (
        config.reward_model_path and config.reference_reward_model_path
    ):
        raise ValueError(
            f"advantage={config.advantage!r} needs both reward_model_path (φ_DPO) and reference_reward_model_path (φ_ref)"
        )
    if advantage.reward_models == ("dpo",) and not config.reward_model_path:
        raise ValueError(f"advantage={config.advantage!r} needs reward_model_path (the model φ of eq. 12)")
    if objective.needs_teacher and not (config.teacher_model_path or config.reward_model_path):
        raise ValueError(f"objective={config.objective!r} needs teacher_model_path (or reward_model_path)")
    if config.head_chunk_size is not None and config.head_chunk_size <= 0:
        raise ValueError(f"head_chunk_size must be positive, got {config.head_chunk_size}")
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
    iterations_field = objective.iterations_field
    if iterations_field is not None and getattr(config, iterations_field) < 1:
        raise ValueError(f"{iterations_field} must be >= 1, got {getattr(config, iterations_field)}")
    if not 0.0 <= config.gkd_beta <= 1.0:
        raise ValueError(f"gkd_beta must lie in [0, 1], got {config.gkd_beta}")


def validate_lco_options(config: LCOConfig) -> None:
    """The stability options (docs/trainer.md, "Stability options"), each refused with its field's name."""
    m = config.lco_anchor_update_steps
    if isinstance(m, bool) or not isinstance(m, int) or m < 0:
        raise ValueError(
            f"lco_anchor_update_steps must be an int >= 0 (1 = every step, 0 = never: the initial policy) or None "
            f"(from the advantage), got {m!r}"
        )
    if config.lco_support not in LCO_SUPPORTS:
        raise ValueError(
            f"lco_support must be one of {', '.join(repr(s) for s in LCO_SUPPORTS)}; got {config.lco_support!r}"
        )
    k = config.lco_support_k
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"lco_support_k must be an int >= 1, got {k!r}")
    if k != 5 and config.lco_support != "top_k":
        raise ValueError(
            f"lco_support_k={k} is read only with lco_support='top_k' (lco_support={config.lco_support!r})"
        )
    support_size = {"full": None, "top_k": k, "sampled": 1}[config.lco_support]
    sparse = not advantage_spec(config.advantage).dense
    if (
        sparse
        and objective_spec(config.objective).accepts_lco_options
        and config.advantage_normalization
        in (
            "std",
            "mean_std",
        )
    ):
        raise ValueError(
            f"advantage_normalization={config.advantage_normalization!r} with the sparse advantage "
            f"advantage={config.advantage!r}: a row that is A at the sampled token and 0 elsewhere has a std "
            "proportional to |A|, so dividing by it keeps only the sign of A (a tilt of ±√V/β whatever |A|); "
            "use 'mean' or 'none' ('outcome' is already normalised over its group)"
        )
    if support_size == 1 and config.objective == "lco_kld":
        raise ValueError(
            f"lco_support={config.lco_support!r} with one entry per token makes lco_kld's π* the one-hot of that "
            "entry whatever the advantage (SFT on it); use lco_mse / lco_lch, or lco_support='top_k' with "
            "lco_support_k >= 2"
        )
    if support_size == 1 and config.advantage_normalization != "none":
        raise ValueError(
            f"advantage_normalization={config.advantage_normalization!r} has no statistics over a one-entry "
            f"support (lco_support={config.lco_support!r}); set advantage_normalization='none'"
        )
    beta_negative = config.lco_beta_negative
    if beta_negative is not None and not (math.isfinite(beta_negative) and beta_negative > 0):
        raise ValueError(f"lco_beta_negative must be None or a finite number > 0, got {beta_negative}")
    if not isinstance(config.lco_temperature_consistent, bool):
        raise ValueError(
            f"lco_temperature_consistent must be true or false, got {config.lco_temperature_consistent!r}"
        )
