"""What each objective and each advantage needs, in one table that every caller reads.

One :class:`ObjectiveSpec` row per objective and one :class:`AdvantageSpec` row per advantage
estimator. :mod:`lco.trainer.config` validates against them (and derives ``REJECTED_PAIRS``),
:func:`lco.trainer.auxiliary_models.auxiliary_model_paths` reads the models they name, the trainer's
generation step reads what to save and which token-advantage builder to run, its loss step reads
which loss to call, and :mod:`lco.demo.methods` reads whether a method needs the reward model.
A row carries behaviour, not a label: its ``loss`` is a function of :mod:`lco.objectives.losses`
(one signature, as verl's registered losses) and its ``token_advantages`` a builder of
:mod:`lco.objectives.token_advantages`; an advantage's ``rows`` is the function that reads its
vocabulary rows from the reward models. A new objective is one function and one row here, not a
new ``if objective == ...`` chain (docs/trainer.md, "Adding an objective").
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from .distill import generalized_jsd_per_token, reverse_kl_per_token
from .losses import (
    LossFn,
    distillation_batch_loss,
    lco_batch_loss,
    ppo_batch_loss,
    reinforce_batch_loss,
    sft_batch_loss,
    trl_batch_loss,
)
from .token_advantages import (
    AdvantageInputs,
    TokenAdvantages,
    dpo_rows,
    gae_token_advantages,
    leave_one_out_token_advantages,
    logprob_rows,
    sequence_token_advantages,
)

TokenAdvantageBuilder = Callable[[AdvantageInputs], TokenAdvantages]
# ``builder(inputs) -> TokenAdvantages``: the token advantages ``[B, T]`` of a generation batch.


@dataclass(frozen=True)
class AdvantageSpec:
    """One advantage estimator of §4.2.

    Attributes:
        name: the ``LCOConfig.advantage`` value.
        reward_models: roles of the frozen models it reads — ``"dpo"`` (φ_DPO) and ``"ref"`` (φ_ref).
        dense: it is defined over the whole vocabulary (eqs. 12, 13), not only at the sampled token.
        rows: the chunk source of its vocabulary rows, called with the reward models' saved
            :class:`~lco.objectives.rollout.HiddenStates` in the order of ``reward_models`` —
            :func:`~lco.objectives.token_advantages.dpo_rows` (eq. 13),
            :func:`~lco.objectives.token_advantages.logprob_rows` (eq. 12) or ``None`` (the outcome reward).
        uses_outcome_reward: it is built from the reward functions' sequence rewards (eq. 11).
        signal: what the advantage is a function of, which decides LCO's anchor and β_negative
            when the user leaves them unset (:data:`lco.trainer.config.SIGNAL_DEFAULTS`):
            ``"fixed"`` — a fixed function of the state (a frozen reward model's log-ratios,
            eqs. 12–13), where re-anchoring every batch compounds the tilt; ``"policy"`` — it
            moves with the policy (the outcome reward's group baseline), where re-anchoring is
            what lets the policy move (mirror descent).
    """

    name: str
    reward_models: tuple[str, ...] = ()
    dense: bool = False
    rows: Callable[..., Callable[[int, int], object]] | None = None
    uses_outcome_reward: bool = False
    signal: str = "fixed"


ADVANTAGE_SPECS: Mapping[str, AdvantageSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            # group/batch-normalised sequence reward on the sampled tokens (sparse, eq. 11)
            AdvantageSpec("outcome", uses_outcome_reward=True, signal="policy"),
            # log φ_DPO/φ_ref read at the sampled token (sparse; eq. 13 at a_t: still a fixed
            # function of the state)
            AdvantageSpec("dpo_token", reward_models=("dpo", "ref"), rows=dpo_rows),
            # eq. 13 over the whole vocabulary (the paper's default)
            AdvantageSpec("dpo_dense", reward_models=("dpo", "ref"), dense=True, rows=dpo_rows),
            # eq. 12 over the whole vocabulary
            AdvantageSpec("logprob_dense", reward_models=("dpo",), dense=True, rows=logprob_rows),
        )
    }
)

_DENSE_ON_SAMPLED_TOKEN = (
    "a policy-gradient objective only sees the sampled token, so a dense advantage over the "
    "vocabulary has nothing to act on; use advantage='outcome' or 'dpo_token'"
)
_GSPO_SEQUENCE_LEVEL = (
    "GSPO weights whole sequences by one sequence-level ratio and advantage; a per-token advantage "
    "contradicts it; use advantage='outcome'"
)
_PPO_OWN_ADVANTAGE = (
    "PPO here estimates token advantages itself with a critic and GAE from the outcome reward "
    "(with the per-token KL folded in); use advantage='outcome'"
)
_SFT_OUTCOME_ONLY = (
    "sft imitates the completions whose outcome advantage is positive; it needs advantage='outcome'"
)
_DISTILLATION_NO_ADVANTAGE = (
    "distillation follows the teacher's distribution and uses no advantage; leave "
    "advantage='outcome' (only the teacher is used)"
)


def _rejecting(reason: str, *advantages: str) -> Mapping[str, str]:
    return MappingProxyType(dict.fromkeys(advantages, reason))


@dataclass(frozen=True)
class ObjectiveSpec:
    """One objective: which loss computes it and what it needs from the generation step.

    Attributes:
        name: the ``LCOConfig.objective`` value.
        loss: the loss the trainer calls, ``loss(batch, ctx) -> (loss, metrics)``
            (:mod:`lco.objectives.losses`) — ``lco_batch_loss`` (:func:`lco.objectives.fused.fused_lco_loss`,
            eqs. 8–10), ``trl_batch_loss`` (TRL's own ``GRPOTrainer._compute_loss``), ``ppo_batch_loss``
            (:func:`lco.ppo_clip_loss` + :func:`lco.value_loss`), ``reinforce_batch_loss``
            (:func:`lco.reinforce_loss`), ``sft_batch_loss`` (NLL of the completions with a positive
            advantage), ``distillation_batch_loss`` (``distill_per_token`` to the teacher, chunked).
        token_advantages: the builder of the token advantages ``[B, T]``
            (:mod:`lco.objectives.token_advantages`) — ``sequence_token_advantages`` (the advantage
            estimator's own value: TRL's outcome advantage on every token, or a reward model's read
            at the sampled token), ``leave_one_out_token_advantages`` (:func:`lco.reinforce_advantages`
            on the raw rewards, then as the former) or ``gae_token_advantages``
            (:func:`lco.ppo_token_rewards` and :func:`lco.ppo_gae_advantages` with the critic).
        needs_old_hidden: keep the old policy's final hidden states and head for z_old when
            rollouts are reused (the LCO target z* = z_old + A/β of eq. 7 is anchored at π_old).
        accepts_lco_options: the LCO stability options of ``LCOConfig`` (``lco_anchor_update_steps``,
            ``lco_support``, ``lco_beta_negative``, ``lco_temperature_consistent``, ``lco_preset``)
            act on this objective's target z*; every other objective refuses them.
        needs_values: a critic (value head) on the policy; its values and the old log-probs are saved.
        needs_reference: the frozen initial policy for a per-token KL penalty (when its coefficient > 0).
        iterations_field: the ``LCOConfig`` field (≥ 1) that sets ``num_iterations``, the optimisation
            epochs per rollout (PPO's ``ppo_epochs``); ``None`` keeps TRL's ``num_iterations``.
        needs_teacher: a teacher model (``teacher_model_path``, else ``reward_model_path``).
        uses_advantage: the loss reads an advantage at all (distillation does not).
        grpo_config: ``GRPOConfig`` fields forced for this objective (TRL's loss paths).
        published_defaults: the method's published settings, applied only where the user kept TRL's default.
        rejected_advantages: advantage → why this objective refuses it; every other advantage is accepted.
        distill_per_token: for ``distillation_batch_loss``, config → the per-token divergence
            ``(student_log_probs, teacher_log_probs) -> [N]`` of :mod:`lco.objectives.distill`.
    """

    name: str
    loss: LossFn
    token_advantages: TokenAdvantageBuilder = sequence_token_advantages
    needs_old_hidden: bool = False
    accepts_lco_options: bool = False
    needs_values: bool = False
    needs_reference: bool = False
    iterations_field: str | None = None
    needs_teacher: bool = False
    uses_advantage: bool = True
    grpo_config: Mapping[str, object] = field(default_factory=dict)
    published_defaults: Mapping[str, object] = field(default_factory=dict)
    rejected_advantages: Mapping[str, str] = field(default_factory=dict)
    distill_per_token: Callable[[object], Callable] | None = None

    def accepts(self, advantage: str) -> bool:
        return advantage not in self.rejected_advantages


def _lco(name: str) -> ObjectiveSpec:
    return ObjectiveSpec(name, loss=lco_batch_loss, needs_old_hidden=True, accepts_lco_options=True)


def _trl(name: str, grpo_config: dict, published_defaults: dict | None = None, **rejected) -> ObjectiveSpec:
    rejects = dict(_rejecting(_DENSE_ON_SAMPLED_TOKEN, "dpo_dense", "logprob_dense"))
    return ObjectiveSpec(
        name,
        loss=trl_batch_loss,
        grpo_config=MappingProxyType(grpo_config),
        published_defaults=MappingProxyType(published_defaults or {}),
        rejected_advantages=MappingProxyType({**rejects, **rejected}),
    )


def _reverse_kl(config) -> Callable:
    return reverse_kl_per_token  # MiniLLM (Gu et al., 2024)


def _generalized_jsd(config) -> Callable:
    return functools.partial(generalized_jsd_per_token, beta=config.gkd_beta)  # GKD (Agarwal et al., 2024)


def _distillation(name: str, per_token: Callable[[object], Callable]) -> ObjectiveSpec:
    return ObjectiveSpec(
        name,
        loss=distillation_batch_loss,
        needs_teacher=True,
        uses_advantage=False,
        distill_per_token=per_token,
        rejected_advantages=_rejecting(_DISTILLATION_NO_ADVANTAGE, "dpo_token", "dpo_dense", "logprob_dense"),
    )


# Each method's own published defaults (``published_defaults``) apply only where the user left TRL's
# default in place (epsilon 0.2, epsilon_high None, scale_rewards "group"): DAPO's clip-higher 0.28,
# CISPO's ε_max 5.0 (TRL's docs; with None TRL would clamp the IS weight at 0.2), GSPO's 3e-4/4e-4
# sequence-ratio clip, and Dr. GRPO's unscaled advantages.
_OBJECTIVE_ROWS: dict[str, ObjectiveSpec] = {
    spec.name: spec
    for spec in (
        # LCO's own objectives (eqs. 8–10)
        _lco("lco_kld"),
        _lco("lco_lch"),
        _lco("lco_mse"),
        # the GRPO family: TRL's own loss with loss_type set
        _trl("grpo", {"loss_type": "grpo"}),
        _trl("dapo", {"loss_type": "dapo"}, {"epsilon_high": 0.28}),
        _trl("dr_grpo", {"loss_type": "dr_grpo"}, {"scale_rewards": "none"}),
        # GSPO is TRL's GRPO loss with sequence-level importance sampling (Zheng et al., 2025).
        _trl(
            "gspo",
            {"loss_type": "grpo", "importance_sampling_level": "sequence"},
            {"epsilon": 3e-4, "epsilon_high": 4e-4},
            dpo_token=_GSPO_SEQUENCE_LEVEL,
        ),
        _trl("cispo", {"loss_type": "cispo"}, {"epsilon_high": 5.0}),
        # the paper's other baselines (§5), with the library's own losses
        ObjectiveSpec(
            "ppo",
            loss=ppo_batch_loss,
            token_advantages=gae_token_advantages,
            needs_values=True,
            needs_reference=True,
            iterations_field="ppo_epochs",
            rejected_advantages=_rejecting(_PPO_OWN_ADVANTAGE, "dpo_token", "dpo_dense", "logprob_dense"),
        ),
        ObjectiveSpec(
            "reinforce",
            loss=reinforce_batch_loss,
            token_advantages=leave_one_out_token_advantages,
            rejected_advantages=_rejecting(_DENSE_ON_SAMPLED_TOKEN, "dpo_dense", "logprob_dense"),
        ),
        _distillation("minillm", _reverse_kl),
        _distillation("gkd", _generalized_jsd),
        ObjectiveSpec(
            "sft",
            loss=sft_batch_loss,
            rejected_advantages=_rejecting(_SFT_OUTCOME_ONLY, "dpo_token", "dpo_dense", "logprob_dense"),
        ),
    )
}
_LIBRARY_OBJECTIVES = frozenset(_OBJECTIVE_ROWS)
OBJECTIVE_SPECS: Mapping[str, ObjectiveSpec] = MappingProxyType(_OBJECTIVE_ROWS)
"""Every objective's row, read-only; :func:`register_objective` adds one from outside the library."""


def register_objective(spec: ObjectiveSpec) -> ObjectiveSpec:
    """Add an objective's row from outside the library (docs/trainer.md, "Adding an objective").

    ``LCOConfig(objective=spec.name)`` then validates against it and ``LCOTrainer`` calls its
    ``loss`` and ``token_advantages``. A taken name, or a rejected advantage that does not exist,
    is one ``ValueError``. Returns ``spec``.
    """
    if spec.name in _OBJECTIVE_ROWS:
        raise ValueError(f"objective {spec.name!r} is already registered; choose another name")
    unknown = sorted(set(spec.rejected_advantages) - set(ADVANTAGE_SPECS))
    if unknown:
        raise ValueError(
            f"rejected_advantages names unknown advantages {unknown}; known: {', '.join(ADVANTAGE_SPECS)}"
        )
    _OBJECTIVE_ROWS[spec.name] = spec
    return spec


def unregister_objective(name: str) -> ObjectiveSpec:
    """Remove a row :func:`register_objective` added (the library's own rows stay); returns it."""
    if name in _LIBRARY_OBJECTIVES or name not in _OBJECTIVE_ROWS:
        raise ValueError(f"objective {name!r} was not added with register_objective")
    return _OBJECTIVE_ROWS.pop(name)


def objective_spec(name: str) -> ObjectiveSpec:
    """The row of ``name``; an unknown objective is one ``ValueError`` listing the choices."""
    if name not in OBJECTIVE_SPECS:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVE_SPECS)}; got {name!r}")
    return OBJECTIVE_SPECS[name]


def advantage_spec(name: str) -> AdvantageSpec:
    """The row of ``name``; an unknown advantage is one ``ValueError`` listing the choices."""
    if name not in ADVANTAGE_SPECS:
        raise ValueError(f"advantage must be one of {', '.join(ADVANTAGE_SPECS)}; got {name!r}")
    return ADVANTAGE_SPECS[name]
