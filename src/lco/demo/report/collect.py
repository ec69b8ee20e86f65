"""Reading the stages on disk into the report's tables: one record per run, then per-method tables.

A *record* is everything the report says about one run (method × seed × learning rate): pass@1 per
split from its evaluation stage, and for trained methods the training status, the pass@1 curve, the
collapse verdict and gradient-norm statistics from its RL stage. Keys that start with ``_`` (the raw
log history) are for the figures only and are not written to ``results.json``.
"""

from __future__ import annotations

import json
import os
import platform

from ..runtime import SPLITS, problems_evaluated
from ..settings import DemoSettings
from .stats import collapsed, mean_std, norm_stats
from .text import sanitize


def collect_run(run, settings: DemoSettings) -> dict:
    """Everything the report says about one run, from its stage directories."""
    metrics = json.loads((run.evaluation.path / "metrics.json").read_text())
    splits = SPLITS if getattr(run, "split", None) is None else (run.split,)
    record = {
        "method": run.method.name,
        "label": run.method.label,
        "seed": run.seed,
        "learning_rate": run.learning_rate,
        "purpose": run.purpose,
        "trained": run.method.trained,
        "splits": {
            split: {
                "pass@1": metrics[split]["sampled_pass@1"],
                "greedy_pass@1": metrics[split]["greedy_pass@1"],
                "problems": metrics[split]["problems"],
                # per problem (the study's paired comparisons): correct samples of k, greedy verdict
                **(
                    {
                        "samples": metrics.get("samples", 1),
                        "sampled_correct": metrics[split]["sampled_correct"],
                        "greedy_correct": metrics[split]["greedy_correct"],
                    }
                    if getattr(run, "split", None) is not None
                    else {}
                ),
            }
            for split in splits
        },
        "eval_seconds": run.evaluation.build_seconds(),
        "rollouts": 0,
        "status": "not trained",
        "collapsed": False,
        "collapse_reason": "",
        "grad_norm": None,
        "grad_norm_pos": None,
        "grad_norm_neg": None,
        "train_seconds": 0.0,
        "wall_seconds": run.evaluation.build_seconds(),
        "curve": [],
    }
    if not run.method.trained:
        return record
    info = json.loads((run.train.path / "run.json").read_text())
    history = json.loads((run.train.path / "log_history.json").read_text())
    curve = json.loads((run.train.path / "curve.json").read_text())
    is_collapsed, reason = collapsed(curve, diverged=info["status"] == "diverged")
    record.update(
        status=info["status"],
        error=info.get("error"),
        rollouts=info["rollouts"],
        steps=info["steps"],
        iterations_per_rollout=info["iterations_per_rollout"],
        num_generations=info["num_generations"],
        collapsed=is_collapsed,
        collapse_reason=reason,
        grad_norm=norm_stats([e["grad_norm"] for e in history if "grad_norm" in e and "step" in e]),
        grad_norm_pos=norm_stats([e["lco/grad_norm_pos"] for e in history if "lco/grad_norm_pos" in e]),
        grad_norm_neg=norm_stats([e["lco/grad_norm_neg"] for e in history if "lco/grad_norm_neg" in e]),
        train_seconds=info["train_seconds"],
        wall_seconds=info["train_seconds"] + record["eval_seconds"],
        curve=curve,
        best_curve_pass=max((p["pass@1"] for p in curve), default=None),
        final_curve_pass=curve[-1]["pass@1"] if curve else None,
    )
    record["_history"] = history
    return record


def evaluated_problems(records: list[dict], settings: DemoSettings) -> dict[str, str]:
    """split → how many problems were evaluated, as the report prints it.

    Read from the runs' metrics (what was actually evaluated); without runs, from the settings through
    :func:`lco.demo.evaluate.problems_evaluated`. Runs that disagree, which a cache keyed by the
    settings should make impossible, show every count.
    """
    counts = {}
    for split in SPLITS:
        seen = sorted({r["splits"][split]["problems"] for r in records})
        if not seen:
            seen = [problems_evaluated(split, settings.task, settings.eval)]
        counts[split] = " or ".join(str(n) for n in seen)
    return counts


def method_table(records: list[dict]) -> dict:
    """method → split → {pass@1, greedy_pass@1} → mean/std/n over seeds (table runs only); ``per_seed``
    keeps each seed's value, for the paired comparisons of the report's findings."""
    table: dict = {}
    for r in records:
        if r["purpose"] != "table":
            continue
        entry = table.setdefault(r["method"], {"label": r["label"], "per_seed": {}})
        for split in SPLITS:
            for metric in ("pass@1", "greedy_pass@1"):
                entry["per_seed"].setdefault(split, {}).setdefault(metric, {})[r["seed"]] = r["splits"][
                    split
                ][metric]
    for entry in table.values():
        entry["stats"] = {
            split: {metric: mean_std(list(by_seed.values())) for metric, by_seed in metrics.items()}
            for split, metrics in entry["per_seed"].items()
        }
    return table


def stability(records: list[dict]) -> dict:
    """Per trained method: collapses and the gradient-norm statistics pooled over its seeds."""
    out: dict = {}
    for r in records:
        if r["purpose"] != "table" or not r["trained"]:
            continue
        entry = out.setdefault(
            r["method"], {"label": r["label"], "runs": 0, "collapses": 0, "diverged": 0, "_norms": []}
        )
        entry["runs"] += 1
        entry["collapses"] += int(r["collapsed"])
        entry["diverged"] += int(r["status"] == "diverged")
        entry["_norms"] += [e["grad_norm"] for e in r["_history"] if "grad_norm" in e and "step" in e]
    for entry in out.values():
        entry["grad_norm"] = norm_stats(entry.pop("_norms"))
    return out


def lr_sweep(records: list[dict], settings: DemoSettings) -> dict | None:
    """method → learning rate → outcome, for the seed-0 runs at the sweep's learning rates."""
    if not settings.lr_sweep:
        return None
    sweep: dict = {}
    for r in records:
        if not r["trained"] or r["seed"] != 0 or r["learning_rate"] not in settings.lr_sweep:
            continue
        if r["method"] not in settings.lr_sweep_methods:
            continue
        sweep.setdefault(r["method"], {"label": r["label"], "runs": {}})["runs"][
            f"{r['learning_rate']:g}"
        ] = {
            "learning_rate": r["learning_rate"],
            "test_pass@1": r["splits"]["test"]["pass@1"],
            "best_curve_pass@1": r["best_curve_pass"],
            "final_curve_pass@1": r["final_curve_pass"],
            "collapsed": r["collapsed"],
            "status": r["status"],
            "grad_norm_p99_over_median": (r["grad_norm"] or {}).get("p99_over_median"),
        }
    for entry in sweep.values():
        collapsing = sorted(v["learning_rate"] for v in entry["runs"].values() if v["collapsed"])
        entry["first_collapse_lr"] = collapsing[0] if collapsing else None
    return sweep


def reward_model_info(rm) -> dict | None:
    """φ_DPO's ``rm.json`` without its log history (None when no method needed a reward model)."""
    if rm is None:
        return None
    info = json.loads((rm.path / "rm.json").read_text())
    info.pop("log_history", None)
    return info


def timing(records: list[dict], warmup, rm, clock: dict[str, float]) -> dict:
    """Wall time of this invocation's stages and the build time of the cached stages."""
    return {
        "this_invocation_seconds": {stage: round(t, 1) for stage, t in clock.items()},
        "warmup_build_seconds": warmup.build_seconds(),
        "reward_model_build_seconds": rm.build_seconds() if rm is not None else None,
        "rl_train_seconds_sum": sum(r["train_seconds"] for r in records),
        "eval_seconds_sum": sum(r["eval_seconds"] for r in records),
        "cpu_count": os.cpu_count(),
        "note": "build seconds are those of the run that built the cached stage; a resumed invocation is faster",
    }


def gate_record(gate: dict | None) -> dict | None:
    """``reward_model_gate`` of results.json: the four greedy pass@1 and ``met`` (None without an RM)."""
    if gate is None:
        return None
    return {k: gate[k] for k in ("warmup", "phi_ref", "phi_dpo", "pistar", "met")}


def results_json(
    settings: DemoSettings, records, table, stab, sweep, rm_info, times, figures, gate: dict | None = None
) -> str:
    """The text of ``results.json``: every table, every run (without its raw log) and the machine."""
    results = {
        "profile": settings.profile,
        "settings": settings.as_dict(),
        "reward_model_gate": gate_record(gate),
        "table": table,
        "stability": stab,
        "lr_sweep": sweep,
        "reward_model": rm_info,
        "timing": times,
        "figures": figures,
        "runs": [{k: v for k, v in r.items() if not k.startswith("_")} for r in records],
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
    }
    return json.dumps(sanitize(results), indent=1)


__all__ = [
    "collect_run",
    "gate_record",
    "evaluated_problems",
    "lr_sweep",
    "method_table",
    "results_json",
    "reward_model_info",
    "stability",
    "timing",
]
