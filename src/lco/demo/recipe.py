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
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from ..tasks.arithmetic import generate_splits
from .cache import Stage, remove_leftovers
from .methods import METHODS, Method, ablation_name, resolve_methods
from .pool import Job, WorkerPool
from .report.collect import gate_record
from .settings import DemoSettings

logger = logging.getLogger(__name__)

# Bump when a stage's code changes what it writes: every cached stage is then rebuilt.
STAGE_FORMAT = 2
_PACKAGES = ("lco", "torch", "transformers", "trl", "math-verify")


@dataclass
class Run:
    """One row-entry of the table: a method at a seed (and learning rate), its stages and its policy."""

    method: Method
    seed: int
    learning_rate: float | None  # None for policies that are not trained
    purpose: str  # "table" or "lr_sweep"
    train: Stage | None = None
    evaluation: Stage | None = None
    policy: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        lr = "" if self.learning_rate is None else f"-lr{self.learning_rate:g}"
        return f"{self.method.name}-s{self.seed}{lr}"


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
    """The study's settings: ≥ 3 seeds (a collapse fraction over fewer says little), known rows, a
    ladder that holds the common learning rate (the matched part is the ladder's rung there)."""
    study = settings.study
    if settings.seeds < 3:
        raise ValueError(f"--seeds must be at least 3 for a study, got {settings.seeds}")
    resolve_methods(study.baselines)
    for objective in study.ablation_objectives:
        for signal in study.ablation_signals:
            resolve_methods([ablation_name(objective, signal, option) for option in study.ablation_options])
    if study.choice_signal not in study.ablation_signals:
        raise ValueError(f"choice_signal {study.choice_signal!r} is not one of the ablation's signals")
    if not all(lr > 0 for lr in study.ladder):
        raise ValueError(f"learning rates must be positive, got {study.ladder}")
    if settings.rl.learning_rate not in study.ladder:
        raise ValueError(
            f"the common learning rate {settings.rl.learning_rate:g} must be a rung of the ladder {study.ladder}"
        )


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


def _run_stages(pool: WorkerPool, jobs: list[tuple[Stage, Job]], desc: str) -> None:
    """Build the stages that are not cached, as pool jobs."""
    todo = [(stage, job) for stage, job in jobs if not stage.is_done()]
    if todo:
        pool.run([job for _, job in todo], desc)


def _build(stage: Stage, function: str, progress=None, **kwargs):
    """Worker entry point: build ``stage`` by calling ``function(tmp_dir, **kwargs)``."""
    from .pool import resolve_function

    fn = resolve_function(function)
    stage.build(lambda tmp: fn(tmp, progress=progress, **kwargs))
    return str(stage.path)


def _job(stage: Stage, function: str, units: int, **kwargs) -> Job:
    return Job(
        "lco.demo.recipe:_build",
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
        "lco.demo.warmup:warm_up",
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
    from .reward_model import dpo_steps

    # for the bar only: on the default warm-up ~88 % of the possible pairs form when the reference
    # solution counts as chosen (every prompt with a wrong sample), ~42 % when it does not
    share = 0.9 if rm.reference_chosen else 0.5
    expected_pairs = int(rm.pair_prompts * rm.max_pairs_per_prompt * share)
    job = _job(
        stage,
        "lco.demo.reward_model:train_reward_model",
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
        "lco.demo.reward_model:measure_gate",
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


STUDY_PARTS = ("ablation", "matched", "ladder")


def study_parts(settings: DemoSettings, chosen: str | None) -> dict[str, list[tuple[str, int, float]]]:
    """part → its (method, seed, learning rate) triples, from the study's settings.

    ``chosen`` is the LCO row picked from the ablation for parts 2–3 (None before part 1 has run:
    those parts then hold the baselines only).
    """
    study = settings.study
    lr = settings.rl.learning_rate
    seeds = range(settings.seeds)
    ablation = [
        ablation_name(objective, signal, option)
        for objective in study.ablation_objectives
        for signal in study.ablation_signals
        for option in study.ablation_options
    ]
    compared = [*study.baselines, *([chosen] if chosen else [])]
    return {
        "ablation": [(m, seed, lr) for m in ablation for seed in seeds],
        "matched": [(m, seed, lr) for m in compared for seed in seeds],
        "ladder": [(m, seed, rung) for m in compared for rung in study.ladder for seed in seeds],
    }


def plan_study(settings: DemoSettings, chosen: str | None = None) -> list[Run]:
    """Every run of the study, once each (a run shared by two parts — the matched part's runs are the
    ladder's rung at the common learning rate — is trained once); ``purpose`` is its first part."""
    runs, seen = [Run(METHODS["warmup"], 0, None, "ablation")], set()
    for part, triples in study_parts(settings, chosen).items():
        for name, seed, lr in triples:
            if (name, seed, lr) not in seen:
                seen.add((name, seed, lr))
                runs.append(Run(METHODS[name], seed, lr, part))
    return runs


def _rm_paths(settings: DemoSettings, warmup: Stage, rm: Stage) -> dict:
    return {
        "phi_dpo": str(rm.path / "phi_dpo"),
        "phi_ref": str(warmup.path / "phi_ref"),
        "beta": settings.reward_model.beta,
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
    from .rl import lco_default_changes, schedule

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
            },
        )
        job = _job(
            run.train,
            "lco.demo.rl:train_policy",
            schedule(run.method, settings.rl)["max_steps"],
            method=run.method,
            seed=run.seed,
            learning_rate=run.learning_rate,
            rl=settings.rl,
            task=settings.task,
            policy_path=str(warmup.path / "policy"),
            rm=_rm_paths(settings, warmup, rm) if needs_rm else None,
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
            },
        )
        job = _job(
            run.evaluation,
            "lco.demo.evaluate:evaluate_policy",
            4,
            policy=run.policy,
            seed=run.seed,
            task=settings.task,
            settings=settings.eval,
        )
        jobs.append((run.evaluation, job))
    _run_stages(pool, jobs, "evaluation")


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
    cache and pool — in two rounds: part 1 with every baseline run of parts 2–3 (the pool stays full),
    then the chosen LCO row's runs of parts 2–3 (the one at the common lr is part 1's, cached)."""
    from .report import collect_run
    from .report.study import choose_lco, write_study_report

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
        with clock("RL and evaluation, round 1"):
            runs = plan_study(settings)
            train_policies(pool, out, settings, runs, warmup, rm, versions)
            evaluate_policies(pool, out, settings, runs, warmup, rm, versions)
        records = [collect_run(run, settings) for run in runs]
        chosen = choose_lco(records, settings)
        with clock("RL and evaluation, round 2"):
            runs = plan_study(settings, chosen["method"])
            train_policies(pool, out, settings, runs, warmup, rm, versions)
            evaluate_policies(pool, out, settings, runs, warmup, rm, versions)
    paths = write_study_report(
        out, settings, runs, chosen, warmup=warmup, rm=rm, clock=clock.seconds, gate=gate
    )
    announce_failed_gate(gate)
    return paths


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
    "STUDY_PARTS",
    "Run",
    "check_output_folder",
    "check_settings",
    "plan_runs",
    "plan_study",
    "run_demo",
    "run_study",
    "study_parts",
]
