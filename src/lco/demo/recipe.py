"""The demo's recipe: the paper's experiment (§5–§6) in miniature, read top to bottom in :func:`run_demo`.

    task → warm-up (π_0 and φ_ref) → reward model φ_DPO → its gate (φ_DPO > φ_ref, π* > π_0?)
         → RL (every method × seed [× lr]) → evaluation (pass@1, test and hard splits) → report

Each stage is a function with plain inputs whose outputs are files under ``OUT/stages/<name>/``,
cached under a key of its inputs (:mod:`lco.demo.cache`): a second run reuses what is finished, a
killed run resumes at the stage it was in, a changed setting rebuilds what depends on it.
Independent stages (the RL runs, the evaluations) run side by side on
``--workers`` processes (:mod:`lco.demo.pool`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from ..tasks.arithmetic import generate_splits
from . import warmup as warmup_stage
from .cache import Stage, remove_leftovers
from .evaluate import evaluate_policy
from .methods import METHODS, resolve_methods
from .plan import STUDY_PHASES, Run, plan_runs, plan_study, selection_families, study_parts
from .pool import Job, WorkerPool
from .report.collect import gate_record
from .reward_model import dpo_steps, measure_gate, train_reward_model
from .rl import lco_default_changes, schedule, train_policy
from .runtime import SPLITS, problems_evaluated
from .settings import DemoSettings

logger = logging.getLogger(__name__)

# Bump when a stage's code changes what it writes: every cached stage is then rebuilt.
STAGE_FORMAT = 2
_PACKAGES = ("lco", "torch", "transformers", "trl", "math-verify")


# ----------------------------------------------------------------------------------------- checks


def check_output_folder(out) -> Path:
    """Create the output folder and prove it is writable (one clear error otherwise)."""
    out = Path(out).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise PermissionError(f"output folder {str(out)!r} is not writable: {err.strerror or err}") from err
    return out


def check_settings(settings: DemoSettings) -> None:
    """Everything that can be wrong with the settings, before any model is built."""
    if isinstance(settings.seeds, bool) or not isinstance(settings.seeds, int) or settings.seeds <= 0:
        raise ValueError(f"--seeds must be a positive integer, got {settings.seeds!r}")
    if settings.study is not None:
        check_study(settings)
        return
    resolve_methods(settings.methods)
    resolve_methods(settings.lr_sweep_methods)
    for lr in (settings.rl.learning_rate, *settings.lr_sweep):
        if not lr > 0:
            raise ValueError(f"learning rates must be positive, got {lr}")


def check_study(settings: DemoSettings) -> None:
    """The study's settings: ≥ 5 confirmation seeds, disjoint from the selection seeds, known rows,
    positive learning rates."""
    study = settings.study
    if len(study.confirmation_seeds) < 5:
        raise ValueError(f"--seeds must be at least 5 for a study, got {len(study.confirmation_seeds)}")
    if not study.selection_seeds:
        raise ValueError("the study needs at least one selection seed")
    shared = set(study.selection_seeds) & set(study.confirmation_seeds)
    if shared:
        raise ValueError(f"selection and confirmation seeds must be disjoint; both hold {sorted(shared)}")
    if not study.learning_rates or not all(lr > 0 for lr in study.learning_rates):
        raise ValueError(f"learning rates must be positive, got {study.learning_rates}")
    if study.order not in ("selection_first", "confirmation_first"):
        raise ValueError(f"study order must be selection_first or confirmation_first, got {study.order!r}")
    if study.selection_split == study.confirmation_split:
        raise ValueError("the study must choose and report on different splits")
    names = [name for pairs in selection_families(settings).values() for name, _ in pairs]
    resolve_methods([*names, *study.confirmed, *study.static])


class _OutputLock:
    """One demo per output folder: a second one would rebuild the first one's stages under it."""

    def __init__(self, out: Path):
        self.path = out / ".demo.lock"

    def __enter__(self):
        if self.path.exists():
            try:
                pid = int(self.path.read_text().strip())
                os.kill(pid, 0)
            except (ValueError, OSError):
                pid = None  # a stale lock of a killed demo
            if pid is not None and pid != os.getpid():
                raise ValueError(
                    f"another demo (pid {pid}) is running in {self.path.parent}; wait for it or use another --out"
                )
        self.path.write_text(str(os.getpid()))
        return self

    def __exit__(self, *exc):
        self.path.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------- stages


def _versions() -> dict:
    found = {}
    for package in _PACKAGES:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return {**found, "stage_format": STAGE_FORMAT}


def write_task(out: Path, settings: DemoSettings) -> dict[str, Path]:
    """The task's splits as JSONL files (deterministic from the seed; rewritten each run)."""
    folder = out / "task"
    folder.mkdir(exist_ok=True)
    paths = {}
    for split, problems in generate_splits(**vars(settings.task)).items():
        paths[split] = folder / f"{split}.jsonl"
        with open(paths[split], "w") as f:
            for p in problems:
                f.write(json.dumps({"prompt": p.prompt, "answer": p.answer, "solution": p.solution}) + "\n")
    return paths


def _run_stages(pool: WorkerPool | None, jobs: list[tuple[Stage, Job]], desc: str) -> None:
    """Build the stages that are not cached, as pool jobs (none without a pool: the stages are only named)."""
    if pool is None:
        return
    todo = [(stage, job) for stage, job in jobs if not stage.is_done()]
    if todo:
        pool.run([job for _, job in todo], desc)


def _build(stage: Stage, function: Callable, progress=None, **kwargs):
    """Worker entry point: build ``stage`` by calling ``function(tmp_dir, **kwargs)``."""
    stage.build(lambda tmp: function(tmp, progress=progress, **kwargs))
    return str(stage.path)


def _job(stage: Stage, function: Callable, units: int, **kwargs) -> Job:
    """The pool job that builds ``stage`` with the stage function ``function`` (e.g. :func:`.rl.train_policy`)."""
    return Job(
        _build,
        {"stage": stage, "function": function, **kwargs},
        units=units,
        label=stage.name,
        log=str(Path(stage.out) / "logs" / f"{stage.name}.log"),
    )


def warm_up(pool: WorkerPool, out: Path, settings: DemoSettings, versions: dict) -> Stage:
    """Stage 1: one SFT warm-up run; π_0 and φ_ref are its checkpoints at two capability targets."""
    inputs = {"task": vars(settings.task), "model": vars(settings.policy), "warmup": vars(settings.warmup)}
    stage = Stage(out, "warmup", {"stage": "warmup", **inputs, "versions": versions})
    job = _job(
        stage,
        warmup_stage.warm_up,
        settings.warmup.max_steps,
        task=settings.task,
        model=settings.policy,
        warmup=settings.warmup,
    )
    _run_stages(pool, [(stage, job)], "warm-up (SFT)")
    return stage


def reward_model(pool: WorkerPool, out: Path, settings: DemoSettings, warmup: Stage, versions: dict) -> Stage:
    """Stage 2: φ_DPO, DPO-trained from φ_ref on verifier-labelled pairs of π_0's samples."""
    rm = settings.reward_model
    stage = Stage(
        out,
        "reward-model",
        {
            "stage": "reward_model",
            "warmup": warmup.fingerprint(),
            "task": vars(settings.task),
            "settings": vars(rm),
            "versions": versions,
        },
    )
    # for the bar only: on the default warm-up ~88 % of the possible pairs form when the reference
    # solution counts as chosen (every prompt with a wrong sample), ~42 % when it does not
    share = 0.9 if rm.reference_chosen else 0.5
    expected_pairs = int(rm.pair_prompts * rm.max_pairs_per_prompt * share)
    job = _job(
        stage,
        train_reward_model,
        dpo_steps(rm, expected_pairs),
        policy_path=str(warmup.path / "policy"),
        reference_path=str(warmup.path / "phi_ref"),
        task=settings.task,
        settings=rm,
    )
    _run_stages(pool, [(stage, job)], "reward model (DPO)")
    return stage


def gate_reward_model(
    pool: WorkerPool, out: Path, settings: DemoSettings, warmup: Stage, rm: Stage, versions: dict
) -> dict:
    """Stage 2b: is φ_DPO a reward model of the paper's kind (φ_DPO > φ_ref and π* > π_0, greedy test
    pass@1)? Measured before any RL run, and announced loudly when it fails."""
    stage = Stage(
        out,
        "reward-model-gate",
        {
            "stage": "reward_model_gate",
            "warmup": warmup.fingerprint(),
            "reward_model": rm.fingerprint(),
            "task": vars(settings.task),
            "problems": settings.eval.test_problems,
            "beta": settings.rl.lco_beta,
            "versions": versions,
        },
    )
    job = _job(
        stage,
        measure_gate,
        4,
        policy_path=str(warmup.path / "policy"),
        reference_path=str(warmup.path / "phi_ref"),
        dpo_path=str(rm.path / "phi_dpo"),
        task=settings.task,
        problems=settings.eval.test_problems,
        beta=settings.rl.lco_beta,
    )
    _run_stages(pool, [(stage, job)], "reward-model gate")
    gate = json.loads((stage.path / "gate.json").read_text())
    announce_failed_gate(gate)
    return gate


def announce_failed_gate(gate: dict | None) -> None:
    """Log and print a warning when the reward-model gate is not met (nothing otherwise)."""
    if gate is None or gate["met"]:
        return
    message = (
        "REWARD MODEL GATE NOT MET: greedy test pass@1 "
        f"π_0 {gate['warmup']:.1%}, φ_ref {gate['phi_ref']:.1%}, φ_DPO {gate['phi_dpo']:.1%}, "
        f"π*(β={gate['pistar_beta']:g}) {gate['pistar']:.1%}; the paper's Table 1 has φ_DPO > φ_ref "
        "and π* > π_0. The dense-DPO LCO rows are run on a failed reward model."
    )
    logger.warning(message)
    print(f"\n!!! {message}\n", flush=True)


def record_gate(results_path: Path, gate: dict | None) -> None:
    """Add ``reward_model_gate`` (the four pass@1 and ``met``) to ``results.json``."""
    results = json.loads(Path(results_path).read_text())
    results["reward_model_gate"] = gate_record(gate)
    Path(results_path).write_text(json.dumps(results, indent=1))


def _rm_paths(settings: DemoSettings, warmup: Stage, rm: Stage) -> dict:
    return {
        "phi_dpo": str(rm.path / "phi_dpo"),
        "phi_ref": str(warmup.path / "phi_ref"),
        "beta": settings.reward_model.beta,
    }


def study_curve(run: Run, settings: DemoSettings) -> dict | None:
    """Where a study run's greedy pass@1 curve is measured: its own evaluation split, all of it, without
    the step-0 point (π_0's, the same for every run: the report takes it from π_0's evaluation); every
    ``rl.curve_every`` rollouts for a confirmation run, only at the end for a selection run (the choice
    reads the final pass@1 alone). None for the demo's runs (their curve is ``RLSettings``')."""
    if run.split is None:
        return None
    return {
        "split": run.split,
        "problems": problems_evaluated(run.split, settings.task, settings.eval),
        "every": settings.rl.curve_every if run.purpose == "confirmation" else settings.rl.rollout_budget,
        "start": False,
    }


def train_policies(
    pool: WorkerPool,
    out: Path,
    settings: DemoSettings,
    runs: list[Run],
    warmup: Stage,
    rm: Stage | None,
    versions: dict,
) -> None:
    """Stage 3: one RL run per trained (method, seed, learning rate), all from π_0, same rollout budget."""
    jobs = []
    for run in runs:
        if not run.method.trained:
            continue
        needs_rm = run.method.needs_reward_model
        run.train = Stage(
            out,
            f"rl/{run.name}",
            {
                "stage": "rl",
                "method": run.method.as_dict(),
                "seed": run.seed,
                "learning_rate": run.learning_rate,
                "rl": vars(settings.rl),
                "task": vars(settings.task),
                "warmup": warmup.fingerprint(),
                "reward_model": rm.fingerprint() if needs_rm else None,
                "versions": versions,
                # only when LCOConfig's defaults are not the paper's: keeps older keys valid
                **({"lco_defaults": changed} if (changed := lco_default_changes(run.method)) else {}),
                # only for the study's runs, whose curve is measured on their own split
                **({"curve": curve} if (curve := study_curve(run, settings)) else {}),
            },
        )
        job = _job(
            run.train,
            train_policy,
            schedule(run.method, settings.rl, curve["every"] if curve else None)["max_steps"],
            method=run.method,
            seed=run.seed,
            learning_rate=run.learning_rate,
            rl=settings.rl,
            task=settings.task,
            policy_path=str(warmup.path / "policy"),
            rm=_rm_paths(settings, warmup, rm) if needs_rm else None,
            curve=curve,
        )
        jobs.append((run.train, job))
        run.policy = {"kind": "checkpoint", "model": str(run.train.path / "model")}
    _run_stages(pool, jobs, "RL runs")


def evaluate_policies(
    pool: WorkerPool,
    out: Path,
    settings: DemoSettings,
    runs: list[Run],
    warmup: Stage,
    rm: Stage | None,
    versions: dict,
) -> None:
    """Stage 4: pass@1 (sampled and greedy) on the test and hard splits for every run."""
    policy0 = str(warmup.path / "policy")
    static = {"warmup": ({"kind": "checkpoint", "model": policy0}, [warmup.fingerprint()])}
    if rm is not None:
        static["phi_dpo"] = ({"kind": "rm", "reward_model": str(rm.path / "phi_dpo")}, [rm.fingerprint()])
        pistar = {
            "kind": "pistar",
            "model": policy0,
            "reward_model": str(rm.path / "phi_dpo"),
            "ref_model": str(warmup.path / "phi_ref"),
            "beta": settings.rl.lco_beta,
        }
        static["pistar"] = (pistar, [warmup.fingerprint(), rm.fingerprint()])
    jobs = []
    for run in runs:
        if run.method.trained:
            if pool is None and not _done(run.train):
                continue  # naming only: an unfinished run has no fingerprint to key its evaluation
            sources = [run.train.fingerprint()]
        else:
            run.policy, sources = static[run.method.policy]
        run.evaluation = Stage(
            out,
            f"eval/{run.name}",
            {
                "stage": "eval",
                "sources": sources,
                "policy_kind": run.policy["kind"],
                "beta": run.policy.get("beta"),
                "seed": run.seed,
                "eval": vars(settings.eval),
                "task": vars(settings.task),
                "versions": versions,
                **({"splits": [run.split]} if run.split is not None else {}),
            },
        )
        job = _job(
            run.evaluation,
            evaluate_policy,
            4,
            policy=run.policy,
            seed=run.seed,
            task=settings.task,
            settings=settings.eval,
            splits=SPLITS if run.split is None else (run.split,),
        )
        jobs.append((run.evaluation, job))
    _run_stages(pool, jobs, "evaluation")


def _done(stage: Stage | None) -> bool:
    return stage is not None and stage.status()[0] == "done"


# ----------------------------------------------------------------------------------------- recipe


def run_demo(settings: DemoSettings, out, workers: int = 2) -> dict[str, Path]:
    """Run (or resume) the whole demo into ``out``; returns the report's paths."""
    from .report import write_report

    check_settings(settings)
    out = check_output_folder(out)
    versions = _versions()
    runs = plan_runs(settings)
    needs_rm = any(run.method.needs_reward_model for run in runs)
    clock = _StageClock()
    with _OutputLock(out), WorkerPool(workers) as pool:
        remove_leftovers(out)
        write_task(out, settings)
        with clock("warm-up"):
            warmup = warm_up(pool, out, settings, versions)  # π_0 and φ_ref
        with clock("reward model"):
            rm = reward_model(pool, out, settings, warmup, versions) if needs_rm else None  # φ_DPO
            gate = gate_reward_model(pool, out, settings, warmup, rm, versions) if needs_rm else None
        with clock("RL"):
            train_policies(pool, out, settings, runs, warmup, rm, versions)
        with clock("evaluation"):
            evaluate_policies(pool, out, settings, runs, warmup, rm, versions)
    paths = write_report(out, settings, runs, warmup=warmup, rm=rm, clock=clock.seconds, gate=gate)
    announce_failed_gate(gate)  # again after the report, where the table is read
    return paths


def run_study(settings: DemoSettings, out, workers: int = 2) -> dict[str, Path]:
    """Run (or resume) a study into ``out`` with the demo's stages — same warm-up, reward model, gate,
    cache and pool — in two rounds: the selection runs (validation split) with the fixed confirmation
    rows (test split), so that the pool stays full; then, from the choice made on the selection runs
    alone, the confirmation runs of what was chosen and is not yet confirmed."""
    from .report import collect_run
    from .report.study import choose, compact_run, write_study_report

    check_settings(settings)
    out = check_output_folder(out)
    versions = _versions()
    clock = _StageClock()
    with _OutputLock(out), WorkerPool(workers) as pool:
        remove_leftovers(out)
        write_task(out, settings)
        with clock("warm-up"):
            warmup = warm_up(pool, out, settings, versions)
        with clock("reward model"):
            rm = reward_model(pool, out, settings, warmup, versions)
            gate = gate_reward_model(pool, out, settings, warmup, rm, versions)
        with clock("round 1: selection and the fixed confirmation rows"):
            runs = plan_study(settings)
            phases = [runs]
            if settings.study.order == "confirmation_first":
                phases = [[r for r in runs if r.purpose == phase] for phase in ("confirmation", "selection")]
            for phase_runs in phases:
                train_policies(pool, out, settings, phase_runs, warmup, rm, versions)
                evaluate_policies(pool, out, settings, phase_runs, warmup, rm, versions)
        selection = [compact_run(collect_run(run, settings)) for run in runs if run.purpose == "selection"]
        chosen = choose(selection, settings)
        with clock("round 2: confirmation of the choices"):
            runs = plan_study(settings, chosen)
            train_policies(pool, out, settings, runs, warmup, rm, versions)
            evaluate_policies(pool, out, settings, runs, warmup, rm, versions)
    paths = write_study_report(
        out, settings, runs, chosen, warmup=warmup, rm=rm, clock=clock.seconds, gate=gate
    )
    announce_failed_gate(gate)
    return paths


def study_report_from_cache(settings: DemoSettings, out, report_dir=None) -> dict[str, Path]:
    """The study's report from the stages already finished in ``out``, training and evaluating nothing:
    the choice is made on the finished selection runs, and a run whose stages are not (yet) there is
    left out of every table. For a study still running, or cut short. The report goes to ``report_dir``
    (default ``out``)."""
    from .report import collect_run
    from .report.study import choose, compact_run, write_study_report

    check_settings(settings)
    out = Path(out)
    versions = _versions()
    warmup = warm_up(None, out, settings, versions)
    rm = reward_model(None, out, settings, warmup, versions) if _done(warmup) else None
    if rm is None or not _done(rm):
        raise ValueError(f"{out} holds no finished warm-up and reward model for these settings")
    try:
        gate = gate_reward_model(None, out, settings, warmup, rm, versions)
    except FileNotFoundError as err:
        raise ValueError(f"{out} holds no finished reward-model gate for these settings") from err

    def finished(chosen):
        runs = plan_study(settings, chosen)
        train_policies(None, out, settings, runs, warmup, rm, versions)
        evaluate_policies(None, out, settings, runs, warmup, rm, versions)
        done = [r for r in runs if _done(r.evaluation) and (not r.method.trained or _done(r.train))]
        return done, [r.name for r in runs if r not in done]

    done, _ = finished(None)
    selection = [compact_run(collect_run(r, settings)) for r in done if r.purpose == "selection"]
    chosen = choose(selection, settings)
    runs, missing = finished(chosen)
    report_dir = check_output_folder(report_dir or out)
    return write_study_report(
        report_dir, settings, runs, chosen, warmup=warmup, rm=rm, clock={}, gate=gate, missing=missing
    )


class _StageClock:
    """Wall time of each stage in this invocation (a cached stage takes about no time)."""

    def __init__(self):
        self.started = time.time()
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        start = time.time()
        try:
            yield
        finally:
            self.seconds[name] = time.time() - start
            self.seconds.pop("total", None)  # kept last
            self.seconds["total"] = time.time() - self.started


__all__ = [
    "METHODS",
    "STUDY_PHASES",
    "Run",
    "check_output_folder",
    "check_settings",
    "plan_runs",
    "plan_study",
    "run_demo",
    "run_study",
    "study_parts",
    "study_report_from_cache",
]
