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
        return bool(ADVANTAGE_SPECS[self.advantage].reward_models) or OBJECTIVE_SPECS[self.objective].needs_teacher

    def as_dict(self) -> dict:
        return asdict(self)


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
        # the starting point of every run; always in the table
        Method("warmup", "SFT warm-up (no RL)", policy="warmup"),
    )
}

# The six, plus one Table-5 row: LCO-KLD on the rule reward separates what the LCO objective
# does from what the DPO reward model's dense advantage does (the other LCO rows use both).
DEFAULT_METHODS = ("lco_kld", "lco_lch", "lco_mse", "ppo", "grpo", "reinforce", "lco_kld_rule")
QUICK_METHODS = ("lco_kld", "ppo", "grpo")
FULL_METHODS = tuple(name for name in METHODS if name != "warmup")
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
