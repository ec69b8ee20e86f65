"""Stage 5 — the report: ``results.json``, ``report.md`` and the figures, from the stages on disk.

- The Table-1-style table: pass@1 (mean ± std over seeds) per method on the test and hard splits,
  sampled at T = 0.6 / top-p 0.95 and greedy; best in bold.
- Stability: a run *collapses* when its pass@1 curve falls to ≤ 50 % of its best and stays there
  (its last two points), or when training diverged (non-finite gradients); per method the number
  of collapses and the gradient-norm median, p99 and p99/median (scale-free: the losses differ in
  scale, so spikes are compared relative to each run's typical norm).
- Figures: gradient norm vs rollouts for PPO and LCO-KLD (Figs. 1–2), gradient norm of the
  positive- and negative-advantage tokens (Fig. 6), entropy and sampled-token probability, pass@1
  vs rollouts (Fig. 7), the learning-rate sweep, and M(K) vs pass@1 when the trainer logged the
  Gradient-Gap metrics.

Every number written is finite: a quantity that does not exist (a static policy's gradient norm, a
std over one seed) is ``null`` in JSON and "—" in Markdown.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import statistics
from pathlib import Path

from .methods import DYNAMICS_METHODS, LR_SWEEP_METHODS
from .settings import DemoSettings

COLLAPSE_DROP = 0.5  # a fall to ≤ 50 % of the best pass@1 …
COLLAPSE_TAIL = 2  # … in the last two points of the curve
SPLITS = ("test", "hard")
LCO_PREFIX = "lco_"


# ------------------------------------------------------------------------------------ statistics


def _finite(values) -> list[float]:
    return [float(v) for v in values if isinstance(v, int | float) and math.isfinite(v)]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def norm_stats(values) -> dict | None:
    """Median, p99, max and p99/median of the finite values (None if there are none)."""
    finite = _finite(values)
    if not finite:
        return None
    median = statistics.median(finite)
    p99 = _percentile(finite, 0.99)
    return {
        "median": median,
        "p99": p99,
        "max": max(finite),
        "p99_over_median": p99 / median if median > 0 else None,
        "steps": len(finite),
        "non_finite_steps": len(list(values)) - len(finite),
    }


def collapsed(curve: list[dict], diverged: bool = False) -> tuple[bool, str]:
    """Whether a run collapsed, and why (see the module docstring)."""
    if diverged:
        return True, "training diverged (non-finite gradients)"
    values = [p["pass@1"] for p in curve]
    if len(values) <= COLLAPSE_TAIL:
        return False, ""
    best_at = max(range(len(values)), key=values.__getitem__)
    best = values[best_at]
    tail = values[-COLLAPSE_TAIL:]
    if best > 0 and best_at < len(values) - COLLAPSE_TAIL and all(v <= COLLAPSE_DROP * best for v in tail):
        return True, f"pass@1 fell from {best:.2f} to {values[-1]:.2f} and stayed there"
    return False, ""


def mean_std(values: list[float]) -> dict:
    values = _finite(values)
    if not values:
        return {"mean": None, "std": None, "n": 0}
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else None,
        "n": len(values),
    }


def _series(log_history: list[dict], key: str, iterations: int, batch_size: int) -> tuple[list, list]:
    """(rollouts, values) of a logged metric; rollouts = completions sampled by that step."""
    from .rl import rollouts_after

    xs, ys = [], []
    for entry in log_history:
        if (
            key in entry
            and "step" in entry
            and isinstance(entry[key], int | float)
            and math.isfinite(entry[key])
        ):
            xs.append(rollouts_after(entry["step"], iterations, batch_size))
            ys.append(float(entry[key]))
    return xs, ys


# ------------------------------------------------------------------------------------ collection


def collect_run(run, settings: DemoSettings) -> dict:
    """Everything the report says about one run, from its stage directories."""
    metrics = json.loads((run.evaluation.path / "metrics.json").read_text())
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
            }
            for split in SPLITS
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


def method_table(records: list[dict]) -> dict:
    """method → split → {pass@1, greedy_pass@1} → mean/std/n over seeds (table runs only)."""
    table: dict = {}
    for r in records:
        if r["purpose"] != "table":
            continue
        entry = table.setdefault(r["method"], {"label": r["label"], "values": {}})
        for split in SPLITS:
            for metric in ("pass@1", "greedy_pass@1"):
                entry["values"].setdefault(split, {}).setdefault(metric, []).append(
                    r["splits"][split][metric]
                )
    for entry in table.values():
        entry["stats"] = {
            split: {metric: mean_std(vals) for metric, vals in metrics.items()}
            for split, metrics in entry.pop("values").items()
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


# ------------------------------------------------------------------------------------ markdown


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.2f}"


def _cell(stats: dict) -> str:
    if stats["mean"] is None:
        return "—"
    if stats["std"] is None:
        return _pct(stats["mean"])
    return f"{_pct(stats['mean'])} ± {_pct(stats['std'])}"


_COLUMNS = (("test", "pass@1"), ("hard", "pass@1"), ("test", "greedy_pass@1"), ("hard", "greedy_pass@1"))


def table_markdown(table: dict) -> str:
    header = "| Method | Test pass@1 | Hard pass@1 | Test greedy | Hard greedy |\n|---|---|---|---|---|\n"
    best = {}
    for split, metric in _COLUMNS:
        means = [
            e["stats"][split][metric]["mean"]
            for e in table.values()
            if e["stats"][split][metric]["mean"] is not None
        ]
        best[(split, metric)] = max(means) if means else None
    rows = []
    for entry in table.values():
        cells = []
        for split, metric in _COLUMNS:
            stats = entry["stats"][split][metric]
            text = _cell(stats)
            if stats["mean"] is not None and stats["mean"] == best[(split, metric)]:
                text = f"**{text}**"
            cells.append(text)
        rows.append(f"| {entry['label']} | " + " | ".join(cells) + " |")
    return header + "\n".join(rows) + "\n"


def findings(table: dict) -> list[str]:
    """Plain statements of who beats whom on the test split (sampled pass@1 means), LCO vs baselines."""

    def mean(name, split="test"):
        return table[name]["stats"][split]["pass@1"]["mean"]

    def std(name):
        return table[name]["stats"]["test"]["pass@1"]["std"] or 0.0

    lines = []
    methods = [m for m in table if mean(m) is not None]
    if not methods:
        return lines
    top = max(methods, key=mean)
    lines.append(f"Best on the test split (sampled pass@1): **{table[top]['label']}** ({_pct(mean(top))}).")
    if "warmup" in table:
        trained = [m for m in methods if m != "warmup"]
        better = [table[m]["label"] for m in trained if mean(m) > mean("warmup")]
        worse = [table[m]["label"] for m in trained if mean(m) <= mean("warmup")]
        lines.append(
            f"Above the warm-up ({_pct(mean('warmup'))}): {', '.join(better) or 'none'}; "
            f"not above it: {', '.join(worse) or 'none'}."
        )
    lco = [m for m in methods if m.startswith(LCO_PREFIX)]
    baselines = [m for m in methods if not m.startswith(LCO_PREFIX) and m != "warmup"]
    for m in lco:
        if not baselines:
            break
        beats = [b for b in baselines if mean(m) > mean(b)]
        loses = [b for b in baselines if mean(m) <= mean(b)]
        within = [b for b in beats + loses if abs(mean(m) - mean(b)) <= max(std(m), std(b))]
        text = f"{table[m]['label']} beats {', '.join(table[b]['label'] for b in beats) or 'no baseline'}"
        text += f" and does not beat {', '.join(table[b]['label'] for b in loses) or 'any — it beats all'}"
        if within:
            text += f" (within one seed-std of {', '.join(table[b]['label'] for b in within)}: not a meaningful difference)"
        lines.append(text + ".")
    return lines


def stability_findings(stab: dict, records: list[dict]) -> list[str]:
    """One line per method whose runs collapsed: how many, and from where to where."""
    lines = []
    for method, entry in stab.items():
        if not entry["collapses"]:
            continue
        runs = [r for r in records if r["method"] == method and r["purpose"] == "table" and r["collapsed"]]
        falls = ", ".join(
            f"{_pct(r['best_curve_pass'])} → {_pct(r['final_curve_pass'])}" for r in runs if r["curve"]
        )
        lines.append(
            f"{entry['label']} collapsed in {entry['collapses']} of {entry['runs']} runs "
            f"(greedy pass@1 on the curve's problems, best → last: {falls or 'diverged'})."
        )
    if stab and not lines:
        lines.append("No run collapsed.")
    return lines


def _tidy_markdown(text: str) -> str:
    """Blank lines around headings and before tables, as every Markdown renderer wants them."""
    out: list[str] = []
    for line in text.split("\n"):
        is_heading, is_table = line.startswith("#"), line.startswith("|")
        prev = out[-1] if out else ""
        if (
            out
            and prev.strip()
            and (is_heading or (is_table and not prev.startswith("|")) or prev.startswith("#"))
        ):
            out.append("")
        out.append(line)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out))


def _fmt(x, digits=3) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def stability_markdown(stab: dict) -> str:
    lines = [
        "| Method | Collapses | Diverged | Grad-norm median | Grad-norm p99 | p99 / median | Grad-norm max |",
        "|---|---|---|---|---|---|---|",
    ]
    for entry in stab.values():
        g = entry["grad_norm"] or {}
        lines.append(
            f"| {entry['label']} | {entry['collapses']}/{entry['runs']} | {entry['diverged']}/{entry['runs']} | "
            f"{_fmt(g.get('median'))} | {_fmt(g.get('p99'))} | {_fmt(g.get('p99_over_median'))} | {_fmt(g.get('max'))} |"
        )
    return "\n".join(lines) + "\n"


def sweep_markdown(sweep: dict, ladder: tuple[float, ...]) -> str:
    head = "| Method | " + " | ".join(f"lr {lr:g}" for lr in ladder) + " | First collapse |"
    lines = [head, "|---" * (len(ladder) + 2) + "|"]
    for entry in sweep.values():
        cells = []
        for lr in ladder:
            run = entry["runs"].get(f"{lr:g}")
            if run is None:
                cells.append("—")
                continue
            mark = " (collapsed)" if run["collapsed"] else ""
            cells.append(f"{_pct(run['test_pass@1'])}{mark}")
        first = entry["first_collapse_lr"]
        lines.append(
            f"| {entry['label']} | " + " | ".join(cells) + f" | {'none' if first is None else f'{first:g}'} |"
        )
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------ figures


def _mean_curve(series: list[tuple[list, list]]):
    """Mean over runs at the x values they share."""
    if not series:
        return [], []
    common = sorted(set.intersection(*(set(xs) for xs, _ in series)))
    lookup = [dict(zip(xs, ys, strict=True)) for xs, ys in series]
    return common, [statistics.fmean(d[x] for d in lookup) for x in common]


def _smooth(ys: list[float], window: int = 9) -> list[float]:
    out = []
    for i in range(len(ys)):
        part = ys[max(0, i - window + 1) : i + 1]
        out.append(sum(part) / len(part))
    return out


def make_figures(
    records: list[dict], settings: DemoSettings, sweep: dict | None, folder: Path
) -> dict[str, str]:
    """Write the PNGs; returns {figure id: file name} of those that had data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(exist_ok=True)
    batch = settings.rl.batch_size
    trained = [r for r in records if r["trained"] and r["purpose"] == "table"]
    by_method: dict[str, list[dict]] = {}
    for r in trained:
        by_method.setdefault(r["method"], []).append(r)
    written: dict[str, str] = {}

    def save(fig, key: str, name: str) -> None:
        fig.tight_layout()
        fig.savefig(folder / name, dpi=110)
        plt.close(fig)
        written[key] = name

    def series(r, key):
        return _series(r["_history"], key, r["iterations_per_rollout"], batch)

    plotted = [m for m in DYNAMICS_METHODS if m in by_method] or list(by_method)[:2]
    # Figs. 1–2: gradient norm during training, PPO vs LCO-KLD
    if plotted:
        fig, axes = plt.subplots(1, len(plotted), figsize=(5.5 * len(plotted), 3.8), squeeze=False)
        for ax, m in zip(axes[0], plotted, strict=True):
            for r in by_method[m]:
                xs, ys = series(r, "grad_norm")
                ax.plot(xs, ys, lw=0.6, alpha=0.5)
                ax.plot(xs, _smooth(ys), lw=1.6, label=f"seed {r['seed']}")
            ax.set(
                title=f"{by_method[m][0]['label']}: gradient norm",
                xlabel="rollouts",
                ylabel="‖∇θ L‖ (before clipping)",
            )
            ax.legend(fontsize=8)
        save(fig, "grad_norm", "grad_norm.png")

    # Fig. 6: gradient norm restricted to tokens with A > 0 and A < 0
    sign_methods = [m for m in plotted if any(series(r, "lco/grad_norm_pos")[0] for r in by_method[m])]
    if sign_methods:
        fig, axes = plt.subplots(1, len(sign_methods), figsize=(5.5 * len(sign_methods), 3.8), squeeze=False)
        for ax, m in zip(axes[0], sign_methods, strict=True):
            for key, color, name in (
                ("lco/grad_norm_pos", "tab:green", "A > 0"),
                ("lco/grad_norm_neg", "tab:red", "A < 0"),
            ):
                for i, r in enumerate(by_method[m]):
                    xs, ys = series(r, key)
                    ax.plot(xs, ys, color=color, lw=1.2, alpha=0.8, label=name if i == 0 else None)
            ax.set(
                title=f"{by_method[m][0]['label']}: gradient norm by advantage sign",
                xlabel="rollouts",
                ylabel="‖∇θ L‖",
            )
            ax.legend(fontsize=8)
        save(fig, "grad_norm_by_sign", "grad_norm_by_sign.png")

    # entropy and sampled-token probability (Fig. 6 a-1/b-1), every trained method, mean over seeds
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    any_line = False
    for runs in by_method.values():
        for ax, keys, title in (
            (axes[0], ("lco/entropy", "entropy"), "policy entropy (nats/token)"),
            (axes[1], ("lco/sampled_prob",), "probability of the sampled token"),
        ):
            per_run = []
            for r in runs:
                key = next((k for k in keys if series(r, k)[0]), None)
                if key is not None:
                    per_run.append(series(r, key))
            xs, ys = _mean_curve(per_run)
            if xs:
                ax.plot(xs, _smooth(ys), lw=1.4, label=runs[0]["label"])
                ax.set(title=title, xlabel="rollouts")
                any_line = True
    if any_line:
        for ax in axes:
            if ax.lines:
                ax.legend(fontsize=7)
        save(fig, "entropy", "entropy_sampled_prob.png")
    else:
        plt.close(fig)

    # Fig. 7: pass@1 vs rollouts
    if by_method:
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        for runs in by_method.values():
            curves = [
                ([p["rollouts"] for p in r["curve"]], [p["pass@1"] for p in r["curve"]])
                for r in runs
                if r["curve"]
            ]
            xs, ys = _mean_curve(curves)
            if not xs:
                continue
            ax.plot(xs, [100 * y for y in ys], marker="o", ms=3, lw=1.4, label=runs[0]["label"])
            if len(curves) > 1:
                lows = [100 * min(dict(zip(*c, strict=True))[x] for c in curves) for x in xs]
                highs = [100 * max(dict(zip(*c, strict=True))[x] for c in curves) for x in xs]
                ax.fill_between(xs, lows, highs, alpha=0.12)
        ax.set(
            title=f"greedy pass@1 on {settings.rl.curve_problems} test problems vs rollouts",
            xlabel="rollouts (completions sampled)",
            ylabel="pass@1 (%)",
        )
        ax.legend(fontsize=7)
        save(fig, "pass_vs_rollouts", "pass_vs_rollouts.png")

    # the learning-rate sweep: final test pass@1 per learning rate, collapses marked
    if sweep:
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        for entry in sweep.values():
            runs = sorted(entry["runs"].values(), key=lambda v: v["learning_rate"])
            xs = [v["learning_rate"] for v in runs]
            (line,) = ax.plot(xs, [100 * v["test_pass@1"] for v in runs], marker="o", label=entry["label"])
            bad = [v for v in runs if v["collapsed"]]
            ax.scatter(
                [v["learning_rate"] for v in bad],
                [100 * v["test_pass@1"] for v in bad],
                marker="x",
                s=80,
                color=line.get_color(),
            )
        ax.set(
            xscale="log",
            title="learning-rate sweep (× = collapsed)",
            xlabel="learning rate",
            ylabel="test pass@1 (%)",
        )
        ax.legend(fontsize=8)
        save(fig, "lr_sweep", "lr_sweep.png")

    # Gradient-Gap: M(K) against pass@1, when the trainer logged gap/M (binary rewards only)
    gap = [r for r in trained if any("gap/M" in e for e in r["_history"])]
    if gap:
        fig, ax = plt.subplots(figsize=(6, 4.2))
        for m in dict.fromkeys(r["method"] for r in gap):
            xs, ys = [], []
            for r in (r for r in gap if r["method"] == m):
                m_by_step = {e["step"]: e["gap/M"] for e in r["_history"] if "gap/M" in e and "step" in e}
                for p in r["curve"]:
                    near = min(m_by_step, key=lambda s, p=p: abs(s - p["step"]), default=None)
                    if near is not None and math.isfinite(m_by_step[near]):
                        xs.append(m_by_step[near])
                        ys.append(100 * p["pass@1"])
            if xs:
                ax.scatter(xs, ys, s=14, label=by_method[m][0]["label"])
        if ax.collections:
            ax.set(title="Gradient-Gap M(K) vs pass@1", xlabel="M(K)", ylabel="greedy pass@1 (%)")
            ax.legend(fontsize=7)
            save(fig, "gap", "gap_m_vs_pass.png")
        else:
            plt.close(fig)
    return written


# ------------------------------------------------------------------------------------ report


def _sanitize(obj):
    """Non-finite floats → None, recursively (JSON numbers must be finite)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _sanitize(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_sanitize(v) for v in obj]
    return obj


def _settings_markdown(settings: DemoSettings) -> str:
    lines = []
    for group, values in settings.as_dict().items():
        if isinstance(values, dict):
            flat = []
            for k, v in values.items():
                if isinstance(v, dict):
                    flat += [f"{k}.{kk}={vv}" for kk, vv in v.items()]
                else:
                    flat.append(f"{k}={v}")
            lines.append(f"- **{group}**: " + ", ".join(flat))
        else:
            lines.append(f"- **{group}**: {values}")
    return "\n".join(lines) + "\n"


def _methods_markdown(records: list[dict], settings: DemoSettings) -> str:
    from .methods import METHODS

    lines = [
        "| Method | Objective | Advantage | Reward | Completions / prompt | Steps / rollout batch | Optimizer steps | Rollouts |",
        "|---|---|---|---|---|---|---|---|",
    ]
    seen = set()
    for r in records:
        if r["method"] in seen or r["purpose"] != "table":
            continue
        seen.add(r["method"])
        m = METHODS[r["method"]]
        if not m.trained:
            lines.append(f"| {m.label} | not trained ({m.policy}) | — | — | — | — | — | 0 |")
            continue
        lines.append(
            f"| {m.label} | {m.objective} | {m.advantage} | {m.reward} | {m.num_generations} | "
            f"{r.get('iterations_per_rollout', '—')} | {r.get('steps', '—')} | {r['rollouts']} |"
        )
    return "\n".join(lines) + "\n"


def write_report(
    out: Path, settings: DemoSettings, runs, warmup, rm, clock: dict[str, float]
) -> dict[str, Path]:
    """Write results.json, report.md and the figures into ``out``; returns their paths."""
    out = Path(out)
    records = [collect_run(run, settings) for run in runs]
    table = method_table(records)
    stab = stability(records)
    sweep = lr_sweep(records, settings)
    figures = make_figures(records, settings, sweep, out / "figures")
    rm_info = json.loads((rm.path / "rm.json").read_text()) if rm is not None else None
    if rm_info is not None:
        rm_info.pop("log_history", None)
    seconds = clock.get("total", 0.0)
    timing = {
        "this_invocation_seconds": {stage: round(t, 1) for stage, t in clock.items()},
        "warmup_build_seconds": warmup.build_seconds(),
        "reward_model_build_seconds": rm.build_seconds() if rm is not None else None,
        "rl_train_seconds_sum": sum(r["train_seconds"] for r in records),
        "eval_seconds_sum": sum(r["eval_seconds"] for r in records),
        "cpu_count": os.cpu_count(),
        "note": "build seconds are those of the run that built the cached stage; a resumed invocation is faster",
    }
    results = {
        "profile": settings.profile,
        "settings": settings.as_dict(),
        "table": table,
        "stability": stab,
        "lr_sweep": sweep,
        "reward_model": rm_info,
        "timing": timing,
        "figures": figures,
        "runs": [{k: v for k, v in r.items() if not k.startswith("_")} for r in records],
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
    }
    results_path = out / "results.json"
    results_path.write_text(json.dumps(_sanitize(results), indent=1))

    md = [f"# lco demo — the paper's experiment in miniature (profile: {settings.profile})\n"]
    md.append(
        "A synthetic arithmetic task (test split: 500 two-operand 2-digit ± problems, the role of MATH500; "
        "hard split: subtractions that need a borrow, the role of AMC23/MinervaMath), a tiny Qwen2 policy "
        "π_0 and a stronger φ_ref taken from one SFT warm-up at two capability targets, φ_DPO trained from "
        "φ_ref with DPO on verifier-labelled pairs of π_0's samples, then RL from π_0 for every method with "
        f"the same rollout budget ({settings.rl.rollout_budget} completions). "
        f"Wall time of this invocation: {seconds / 60:.1f} min on {os.cpu_count()} CPU core(s).\n"
    )
    md.append(f"## Results (pass@1 in %, mean ± std over {settings.seeds} seed(s); best in bold)\n")
    md.append(
        "Sampled: T = 0.6, top-p 0.95, one completion per problem. Greedy: deterministic decoding. "
        "For the policies that are not trained the spread is sampling noise only.\n"
    )
    md.append(table_markdown(table))
    md.append("\n### What the numbers say\n")
    md.extend(f"- {line}\n" for line in findings(table) + stability_findings(stab, records))
    md.append("\n## Stability\n")
    md.append(
        f"A run *collapses* when its greedy pass@1 curve (first {settings.rl.curve_problems} test problems, "
        f"every {settings.rl.curve_every} rollouts) falls to ≤ {int(100 * COLLAPSE_DROP)} % of its best and "
        f"stays there (its last {COLLAPSE_TAIL} points), or when training diverges. Gradient norms are "
        "TRL's `grad_norm` (before clipping), pooled over the seeds; their scale differs between losses, "
        "so compare p99 / median (spikiness) rather than absolute values.\n\n"
    )
    md.append(stability_markdown(stab))
    if sweep:
        md.append("\n## Learning-rate sweep (seed 0; test pass@1 in %)\n")
        md.append(sweep_markdown(sweep, settings.lr_sweep))
    md.append("\n## Figures\n")
    captions = {
        "grad_norm": "Gradient norm vs rollouts (the paper's Figs. 1–2)",
        "grad_norm_by_sign": "Gradient norm of the tokens with positive vs negative advantage (Fig. 6)",
        "entropy": "Policy entropy and probability of the sampled token (Fig. 6 a-1/b-1)",
        "pass_vs_rollouts": "pass@1 vs rollouts (Fig. 7)",
        "lr_sweep": "Learning-rate sweep",
        "gap": "Gradient-Gap M(K) vs pass@1",
    }
    for key, name in figures.items():
        md.append(f"\n**{captions[key]}**\n\n![{captions[key]}](figures/{name})\n")
    if rm_info is not None:
        md.append("\n## Reward model\n")
        md.append(
            f"{rm_info['pairs']} verifier-labelled pairs from {rm_info['prompts']} prompts × "
            f"{settings.reward_model.samples_per_prompt} samples of the warm-up policy (its sample accuracy: "
            f"{_pct(rm_info['sample_accuracy'])} %). φ_DPO's preference accuracy on {rm_info['held_out_pairs']} "
            f"held-out pairs (implicit reward of the chosen above the rejected): "
            f"{_pct(rm_info['held_out_accuracy'])} %, mean margin {_fmt(rm_info['held_out_margin'])}.\n"
        )
        dense = rm_info.get("dense_advantage")
        if dense:
            md.append(
                f"\nDense advantage A = log φ_DPO − log φ_ref (eq. 13, mean-normalised over the vocabulary) along "
                f"the reference solutions of {dense['problems']} validation problems ({dense['positions']} "
                f"positions): its argmax is the correct next token at {_pct(dense['argmax_is_correct_token'])} % "
                f"of them; A of the correct token averages {_fmt(dense['mean_advantage_of_correct_token'])}, the "
                f"largest A {_fmt(dense['mean_max_advantage'])}. LCO re-anchors π_old at the current policy every "
                "rollout batch, so π ∝ π_0·exp(k·A/β) after k batches if each is fitted: wherever A's argmax is "
                "not the correct token, that token ends up preferred.\n"
            )
    md.append("\n## Setup: methods\n")
    md.append(
        "Group methods (GRPO, its variants and RLOO-style REINFORCE) sample 4 completions per prompt, as in "
        "the paper; the others 2 (the fewest TRL's GRPOTrainer allows), so with the same rollout budget they "
        "see twice as many prompts. PPO optimises each rollout batch for 4 epochs. LCO's advantage is the "
        "dense DPO advantage log φ_DPO/φ_ref (eq. 13) unless the row says otherwise; the baselines use the "
        "rule reward (math-verify ±1). One learning rate for every method; no method is tuned.\n\n"
    )
    md.append(_methods_markdown(records, settings))
    md.append("\n## Setup: every hyper-parameter\n")
    md.append(_settings_markdown(settings))
    md.append("\n## Timing\n")
    md.append(
        "\n".join(
            f"- {k}: "
            + (
                ", ".join(f"{stage} {t:.0f} s" for stage, t in v.items())
                if isinstance(v, dict)
                else _fmt(v, 4)
            )
            for k, v in timing.items()
        )
        + "\n"
    )
    report_path = out / "report.md"
    report_path.write_text(_tidy_markdown("".join(md)))
    return {"report": report_path, "results": results_path, "figures": out / "figures"}


__all__ = ["LR_SWEEP_METHODS", "collapsed", "norm_stats", "write_report"]
