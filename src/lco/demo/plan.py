"""The demo's plan: which runs a profile or a study asks for, before any stage is built.

A :class:`Run` is one row-entry of a table — a method at a seed (and learning rate), evaluated on a
split. :func:`plan_runs` lists a profile's runs; :func:`study_parts` and :func:`plan_study` list the
stability study's (issue 23): the *selection* runs on the validation split at the selection seeds, and
the *confirmation* runs on the test split at the disjoint confirmation seeds. Pure functions of the
settings (and, for the study's second round, of the choice made on the selection runs): nothing here
builds a stage or reads a file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .cache import Stage
from .methods import METHODS, Method, ablation_name, grpo_name, resolve_methods
from .settings import DemoSettings

STUDY_PHASES = ("selection", "confirmation")


@dataclass
class Run:
    """One row-entry of a table: a method at a seed (and learning rate), its stages and its policy.

    ``split`` is the one split the study evaluates it on (``None``: the demo's test and hard splits).
    """

    method: Method
    seed: int
    learning_rate: float | None  # None for policies that are not trained
    purpose: str  # "table", "lr_sweep", or a study phase ("selection", "confirmation")
    split: str | None = None
    train: Stage | None = None
    evaluation: Stage | None = None
    policy: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        lr = "" if self.learning_rate is None else f"-lr{self.learning_rate:g}"
        split = "" if self.split is None else f"-{self.split}"
        return f"{self.method.name}-s{self.seed}{lr}{split}"


def plan_runs(settings: DemoSettings) -> list[Run]:
    """Every (method, seed[, learning rate]) the settings ask for; sweep runs use seed 0."""
    runs = []
    for method in resolve_methods(settings.methods):
        for seed in range(settings.seeds):
            runs.append(Run(method, seed, settings.rl.learning_rate if method.trained else None, "table"))
    planned = {(r.method.name, r.seed, r.learning_rate) for r in runs}
    for method in resolve_methods(settings.lr_sweep_methods) if settings.lr_sweep else ():
        if not method.trained:
            continue
        for lr in settings.lr_sweep:
            if (method.name, 0, lr) not in planned:
                runs.append(Run(method, 0, lr, "lr_sweep"))
    return runs


def selection_families(settings: DemoSettings) -> dict[str, list[tuple[str, float]]]:
    """family → its candidate (method, learning rate) pairs, among which the selection chooses one.

    A family is what one default or one tuned baseline stands for: LCO-KLD on one signal (its options
    × learning rates), LCO-LCH / LCO-MSE on one signal (support × anchor at the first rate), GRPO
    (learning rates), GRPO + KL (weights × rates), and each other baseline (rates)."""
    study = settings.study
    lrs = study.learning_rates
    families: dict[str, list[tuple[str, float]]] = {}
    for signal in study.signals:
        families[f"lco_kld/{signal}"] = [
            (ablation_name("lco_kld", signal, option), lr) for option in study.kld_options for lr in lrs
        ]
    for objective in study.regression_objectives:
        for signal in study.signals:
            families[f"{objective}/{signal}"] = [
                (ablation_name(objective, signal, option), lrs[0]) for option in study.regression_options
            ]
    if 0.0 in study.grpo_kl_weights:
        families["grpo"] = [(grpo_name(0.0), lr) for lr in lrs]
    kl = [w for w in study.grpo_kl_weights if w > 0]
    if kl:
        families["grpo_kl"] = [(grpo_name(w), lr) for w in kl for lr in lrs]
    for name in study.other_baselines:
        families[name] = [(name, lr) for lr in lrs]
    return families


def family_seeds(settings: DemoSettings, family: str) -> tuple[int, ...]:
    """The selection seeds of a family (LCO-LCH / LCO-MSE run at ``regression_seeds``)."""
    study = settings.study
    if family.split("/")[0] in study.regression_objectives:
        return study.regression_seeds
    return study.selection_seeds


def study_parts(settings: DemoSettings, chosen: dict | None = None) -> dict[str, list[tuple]]:
    """phase → its (method, seed, learning rate) triples (learning rate None: not trained).

    ``chosen`` (:func:`lco.demo.report.study.choose`, after the selection runs) adds to the
    confirmation what the selection picked and the fixed rows do not hold: ``chosen["confirm"]``,
    a list of (method, learning rates). Before the choice (None) the confirmation holds the fixed rows.
    """
    study = settings.study
    selection: list[tuple] = [("warmup", seed, None) for seed in study.selection_seeds]
    for family, pairs in selection_families(settings).items():
        seeds = family_seeds(settings, family)
        selection += [(name, seed, lr) for name, lr in pairs for seed in seeds]
    confirmation: list[tuple] = [
        (name, seed, None) for name in study.static for seed in study.confirmation_seeds
    ]
    rows = [(name, study.learning_rates) for name in study.confirmed]
    if chosen is not None:
        rows += [(name, tuple(lrs)) for name, lrs in chosen["confirm"]]
    seen = set()
    for name, lrs in rows:
        for lr in lrs:
            for seed in study.confirmation_seeds:
                if (name, seed, lr) not in seen:
                    seen.add((name, seed, lr))
                    confirmation.append((name, seed, lr))
    return {"selection": selection, "confirmation": confirmation}


def plan_study(settings: DemoSettings, chosen: dict | None = None) -> list[Run]:
    """Every run of the study, once each, with its phase's split."""
    study = settings.study
    split = {"selection": study.selection_split, "confirmation": study.confirmation_split}
    runs, seen = [], set()
    for phase, triples in study_parts(settings, chosen).items():
        for name, seed, lr in triples:
            if (name, seed, lr, phase) not in seen:
                seen.add((name, seed, lr, phase))
                runs.append(Run(METHODS[name], seed, lr, phase, split=split[phase]))
    return runs


__all__ = [
    "STUDY_PHASES",
    "Run",
    "family_seeds",
    "plan_runs",
    "plan_study",
    "selection_families",
    "study_parts",
]
