"""The methods the demo compares: each is an ``LCOConfig`` objective × advantage × reward, or a policy
that is evaluated without training (the paper's π* and φ_DPO rows, and the warm-up itself).

Group methods (GRPO and its variants, RLOO-style REINFORCE) sample ``GROUP_SIZE`` completions per
prompt, as the paper's GRPO/DAPO/GSPO do; every other method samples the fewest TRL allows (2), so
under the same rollout budget it sees twice as many prompts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..objectives.registry import ADVANTAGE_SPECS, OBJECTIVE_SPECS

GROUP_SIZE = 4  # the paper's "four responses per instruction" (§5)
MIN_GROUP = 2  # TRL's GRPOTrainer needs at least two completions per prompt


@dataclass(frozen=True)
class Method:
    """One row of the table.

    ``policy`` says what is evaluated: ``trained`` (an ``LCOTrainer`` run from the warm-up), or a
    policy that is not trained — ``warmup`` (the starting checkpoint), ``pistar`` (π* of eq. 6
    decoded around the warm-up with φ_DPO/φ_ref), ``phi_dpo`` (the DPO reward model as a policy).
    ``reward`` is what the trainer's reward function returns: ``rule`` (math-verify ±1, Table 5) or
    ``dpo`` (φ_DPO's implicit sequence reward β·Σ log φ_DPO/φ_ref). Methods whose loss does not use the
    outcome reward (dense-advantage LCO, MiniLLM, GKD) still log the rule reward.
    """

    name: str
    label: str
    policy: str = "trained"
    objective: str | None = None
    advantage: str = "outcome"
    reward: str = "rule"
    num_generations: int = MIN_GROUP
    # LCOConfig fields this row sets on top of the defaults, as (field, value) pairs (frozen, hashable):
    # the stability options of docs/trainer.md, so that an ablation variant is one more row
    lco_options: tuple[tuple[str, object], ...] = ()

    def __post_init__(self):
        options = self.lco_options
        if not isinstance(options, tuple) or not all(
            isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], str) for pair in options
        ):
            raise ValueError(
                f"lco_options of {self.name!r} must be a tuple of (field, value) pairs, got {options!r}"
            )
        names = [name for name, _ in options]
        if len(set(names)) != len(names):
            raise ValueError(f"lco_options of {self.name!r} sets a field twice: {names}")
        if options and self.policy != "trained":
            raise ValueError(f"lco_options of {self.name!r}: a policy that is not trained has no LCOConfig")

    @property
    def options(self) -> dict:
        """``lco_options`` as the keyword arguments ``LCOConfig`` takes."""
        return dict(self.lco_options)

    @property
    def trained(self) -> bool:
        return self.policy == "trained"

    @property
    def needs_reward_model(self) -> bool:
        """φ_DPO is needed to decode π* or φ_DPO itself, for the DPO reward, by an advantage that reads
        a reward model, or as the teacher of distillation (the trainer's default teacher)."""
        if self.policy in ("pistar", "phi_dpo") or self.reward == "dpo":
            return True
        if not self.trained:
            return False
        return (
            bool(ADVANTAGE_SPECS[self.advantage].reward_models)
            or OBJECTIVE_SPECS[self.objective].needs_teacher
        )

    def as_dict(self) -> dict:
        """The row's fields (the RL stage's cache key); ``lco_options`` only when set, so that the rows
        that existed before it keep their cached stages."""
        fields = asdict(self)
        if not self.lco_options:
            fields.pop("lco_options")
        else:
            fields["lco_options"] = [list(pair) for pair in self.lco_options]
        return fields


def _lco(name: str, label: str, objective: str, advantage: str = "dpo_dense") -> Method:
    return Method(name, label, objective=objective, advantage=advantage)


def _group(name: str, label: str, objective: str) -> Method:
    return Method(name, label, objective=objective, num_generations=GROUP_SIZE)


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        # the default run: LCO with the paper's default dense DPO advantage (eq. 13), and the RL baselines
        _lco("lco_kld", "LCO-KLD", "lco_kld"),
        _lco("lco_lch", "LCO-LCH", "lco_lch"),
        _lco("lco_mse", "LCO-MSE", "lco_mse"),
        Method("ppo", "PPO", objective="ppo"),
        _group("grpo", "GRPO", "grpo"),
        _group("reinforce", "REINFORCE (RLOO)", "reinforce"),
        # --full: GRPO's variants, on-policy distillation, SFT, and the policies that are not trained
        _group("dapo", "DAPO", "dapo"),
        _group("gspo", "GSPO", "gspo"),
        _group("dr_grpo", "Dr. GRPO", "dr_grpo"),
        _group("cispo", "CISPO", "cispo"),
        Method("minillm", "MiniLLM (teacher φ_DPO)", objective="minillm"),
        Method("gkd", "GKD (teacher φ_DPO)", objective="gkd"),
        Method("sft", "SFT (on correct rollouts)", objective="sft"),
        Method("pistar", "π* (eq. 6, decoded)", policy="pistar"),
        Method("phi_dpo", "φ_DPO (RM as policy)", policy="phi_dpo"),
        # --full, Table 5: the advantage only on the sampled action, with the DPO RM and the rule RM
        Method("ppo_dpo_rm", "PPO (DPO-RM)", objective="ppo", reward="dpo"),
        _lco("lco_kld_dpo_token", "LCO-KLD (sampled, DPO-RM)", "lco_kld", "dpo_token"),
        _lco("lco_lch_dpo_token", "LCO-LCH (sampled, DPO-RM)", "lco_lch", "dpo_token"),
        _lco("lco_mse_dpo_token", "LCO-MSE (sampled, DPO-RM)", "lco_mse", "dpo_token"),
        _lco("lco_kld_rule", "LCO-KLD (sampled, rule RM)", "lco_kld", "outcome"),
        _lco("lco_lch_rule", "LCO-LCH (sampled, rule RM)", "lco_lch", "outcome"),
        _lco("lco_mse_rule", "LCO-MSE (sampled, rule RM)", "lco_mse", "outcome"),
        # matched signal (issue 12): LCO with GRPO's completions per prompt and GRPO's verifier reward,
        # and PPO at the same group size, so that only the objective differs from the group baselines
        Method(
            "lco_kld_matched",
            "LCO-KLD (matched: 4/prompt, rule RM)",
            objective="lco_kld",
            advantage="outcome",
            num_generations=GROUP_SIZE,
        ),
        _group("ppo_matched", "PPO (4/prompt)", "ppo"),
        # the starting point of every run; always in the table
        Method("warmup", "SFT warm-up (no RL)", policy="warmup"),
    )
}

# The stability ablation of the study (``lco demo --study stability``; docs/trainer.md, "Stability
# options"): the paper as written, each option alone, and the authors' combination. Every row spells
# out all the options (the paper's form with its change), so that a row means the same thing whatever
# LCOConfig's defaults or presets are. β_negative is 100·β at the demo's β = 1 (RLSettings.lco_beta);
# its None here is the paper's one β for both signs (lco.demo.rl.lco_config passes it as β, since
# LCOConfig reads None as "from the advantage").
PAPER_FORM: tuple[tuple[str, object], ...] = (
    ("lco_support", "full"),
    ("lco_support_k", 5),
    ("lco_anchor_update_steps", 1),
    ("lco_beta_negative", None),
    ("advantage_normalization", "mean"),
    ("lco_temperature_consistent", False),
)


def _paper_with(**changes) -> tuple[tuple[str, object], ...]:
    unknown = set(changes) - {name for name, _ in PAPER_FORM}
    if unknown:
        raise ValueError(f"not a stability option: {sorted(unknown)}")
    return tuple((name, changes.get(name, value)) for name, value in PAPER_FORM)


ABLATION_OPTIONS: dict[str, tuple[str, tuple[tuple[str, object], ...]]] = {
    "paper": ("paper as written", PAPER_FORM),
    "anchor_never": ("anchor never (m = 0)", _paper_with(lco_anchor_update_steps=0)),
    "anchor_every_4": ("anchor every 4 steps", _paper_with(lco_anchor_update_steps=4)),
    "top_k": ("top-5 support", _paper_with(lco_support="top_k")),
    "beta_negative": ("β_negative = 100β", _paper_with(lco_beta_negative=100.0)),
    "temperature_consistent": ("temperature-consistent z_old", _paper_with(lco_temperature_consistent=True)),
    # LCOConfig's preset "authors" at β = 1, spelled out
    "authors": (
        "authors' preset",
        _paper_with(
            lco_support="top_k",
            advantage_normalization="std",
            lco_beta_negative=100.0,
            lco_anchor_update_steps=0,
        ),
    ),
}
# The two signals of the ablation: the paper's dense DPO advantage (eq. 13) at the LCO rows' group
# size, and the verifier's sparse reward at GRPO's group size (the matched signal).
ABLATION_SIGNALS: dict[str, tuple[str, str, int]] = {
    "dense": ("dense DPO", "dpo_dense", MIN_GROUP),
    "outcome": ("verifier, 4/prompt", "outcome", GROUP_SIZE),
}
ABLATION_OBJECTIVES = {"lco_kld": "LCO-KLD", "lco_lch": "LCO-LCH"}


def _on_signal(options: tuple[tuple[str, object], ...], advantage: str) -> tuple[tuple[str, object], ...]:
    """A row's options for one signal: a sparse advantage refuses the std normalisations (the std of a
    one-hot row keeps only the sign of A), so there the authors' form takes A as it is, as LCOConfig's
    preset "authors" does (their std is their treatment of the dense DPO advantage)."""
    if ADVANTAGE_SPECS[advantage].dense:
        return options
    return tuple(
        (name, "none" if name == "advantage_normalization" and value in ("std", "mean_std") else value)
        for name, value in options
    )


def ablation_name(objective: str, signal: str, option: str) -> str:
    """The method name of one ablation row, e.g. ``lco_kld_outcome_anchor_never``."""
    return f"{objective}_{signal}_{option}"


def _register_grid(objectives: dict[str, str], options: dict, on_signal) -> None:
    """One row per objective × signal × option, named by :func:`ablation_name`; ``on_signal(options,
    advantage)`` gives the row's options for its signal."""
    for objective, objective_label in objectives.items():
        for signal, (signal_label, advantage, group_size) in ABLATION_SIGNALS.items():
            for option, (option_label, values) in options.items():
                name = ablation_name(objective, signal, option)
                METHODS[name] = Method(
                    name,
                    f"{objective_label} [{signal_label}] {option_label}",
                    objective=objective,
                    advantage=advantage,
                    num_generations=group_size,
                    lco_options=on_signal(values, advantage),
                )


_register_grid(ABLATION_OBJECTIVES, ABLATION_OPTIONS, _on_signal)

# LCO-LCH and LCO-MSE for the study (issue 23): support (the sampled logit, π_old's top-5, the whole
# vocabulary — the paper's eqs. 8–9) × anchor (the generating policy, m = 1; the initial policy, m = 0),
# every other option at the paper's value. A one-entry support has no statistics to centre the
# advantage with, so it runs unnormalised (the authors' sampled-logit regression).
REGRESSION_OBJECTIVES = {"lco_lch": "LCO-LCH", "lco_mse": "LCO-MSE"}
REGRESSION_OPTIONS: dict[str, tuple[str, tuple[tuple[str, object], ...]]] = {
    f"{support}_m{m}": (
        f"{label} support, anchor {'every step (m = 1)' if m == 1 else 'initial policy (m = 0)'}",
        _paper_with(
            lco_support=support,
            lco_anchor_update_steps=m,
            advantage_normalization="none" if support == "sampled" else "mean",
        ),
    )
    for support, label in (("sampled", "sampled-logit"), ("top_k", "top-5"), ("full", "full"))
    for m in (1, 0)
}
_register_grid(REGRESSION_OBJECTIVES, REGRESSION_OPTIONS, lambda values, _advantage: values)

# The study's group baselines with every option it varies spelled out: GRPO without and with TRL's KL
# to the reference (``beta``: 0.04, TRL's former default, and 1.0, the weight per unit of normalised
# advantage that the initial-policy anchor puts on its forward KL to π_0), and RLOO.
GRPO_KL_WEIGHTS = (0.0, 0.04, 1.0)


def grpo_name(beta: float) -> str:
    """``grpo_beta0``, ``grpo_beta0.04``, ``grpo_beta1``: the study's GRPO row at KL weight ``beta``."""
    return f"grpo_beta{beta:g}"


for _beta in GRPO_KL_WEIGHTS:
    METHODS[grpo_name(_beta)] = Method(
        grpo_name(_beta),
        "GRPO" if _beta == 0 else f"GRPO + KL (β_KL = {_beta:g})",
        objective="grpo",
        num_generations=GROUP_SIZE,
        lco_options=(("beta", _beta),),
    )

# The six, plus one Table-5 row: LCO-KLD on the rule reward separates what the LCO objective
# does from what the DPO reward model's dense advantage does (the other LCO rows use both).
DEFAULT_METHODS = (
    "lco_kld",
    "lco_lch",
    "lco_mse",
    "ppo",
    "grpo",
    "reinforce",
    "lco_kld_rule",
    "lco_kld_matched",
)
QUICK_METHODS = ("lco_kld", "ppo", "grpo")
FULL_METHODS = tuple(name for name in METHODS if name != "warmup" and not METHODS[name].lco_options)
# the baselines of the study's matched-signal and learning-rate parts: 4 completions per prompt, the
# verifier's reward
MATCHED_BASELINES = ("grpo", "reinforce", "ppo_matched", "dapo")
LR_SWEEP_METHODS = ("ppo", "grpo", "lco_kld", "lco_lch")
# the pairs of Figs. 1, 2 and 6: PPO against LCO-KLD
DYNAMICS_METHODS = ("ppo", "lco_kld")


def resolve_methods(names) -> tuple[Method, ...]:
    """Method names → methods, in the given order, with ``warmup`` first; unknown names are one error."""
    names = [n.strip() for n in names if n.strip()]
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ValueError(
            f"unknown method(s) {', '.join(repr(n) for n in unknown)}; choose from: {', '.join(METHODS)}"
        )
    if not names:
        raise ValueError("--methods is empty; choose from: " + ", ".join(METHODS))
    ordered = ["warmup", *dict.fromkeys(n for n in names if n != "warmup")]
    return tuple(METHODS[n] for n in ordered)
