"""The stability study's report (``lco demo --study stability``, issue 12): tables per part, the
automatic choice of the LCO configuration, the stability map, Fig. 7's question and plain sentences.

Pure functions of the run records (:func:`.collect.collect_run`) except :func:`write_study_report`,
which reads the stages and writes ``report.md``, ``results.json`` and ``figures/``. Every sentence is
generated from the numbers, so that it says the opposite when the numbers say the opposite.

The rules, stated once:

- a run *collapses* by :func:`.stats.collapsed` (the demo's rule: pass@1 curve down to half its best
  and staying there, or divergence);
- the *choice* of a configuration (the LCO row of parts 2–3, a method's best rung, the defaults):
  fewest collapses over its runs (as a fraction, so that rows with a missing run compare fairly),
  then the highest mean sampled test pass@1, then the order the rows were given in.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from ..methods import ABLATION_OPTIONS, ABLATION_SIGNALS, METHODS, ablation_name
from ..settings import DemoSettings, StudySettings
from .collect import _sanitize, collect_run, gate_record, reward_model_info
from .markdown import _fmt, _pct, _settings_markdown, _tidy_markdown, gate_markdown, label_failed_rm_rows
from .stats import COLLAPSE_DROP, COLLAPSE_TAIL, mean_std, norm_stats

# a change in gradient-norm spikiness (p99 / median) smaller than this factor is not called a change
SPIKE_FACTOR = 1.5


# ----------------------------------------------------------------------------------------- tables


def summarize(runs: list[dict]) -> dict:
    """One row of a part's table from its runs (seeds, and rungs when several learning rates)."""
    norms = [e["grad_norm"] for r in runs for e in r.get("_history", ()) if "grad_norm" in e and "step" in e]
    return {
        "label": runs[0]["label"],
        "trained": bool(runs[0].get("trained", True)),
        "runs": len(runs),
        "collapses": sum(bool(r["collapsed"]) for r in runs),
        "diverged": sum(r.get("status") == "diverged" for r in runs),
        "test_pass@1": mean_std([r["splits"]["test"]["pass@1"] for r in runs]),
        "test_greedy_pass@1": mean_std([r["splits"]["test"]["greedy_pass@1"] for r in runs]),
        "hard_pass@1": mean_std([r["splits"]["hard"]["pass@1"] for r in runs]),
        "grad_norm": norm_stats(norms),
    }


def runs_of(records: list[dict], triples) -> dict[str, list[dict]]:
    """method → its records among the (method, seed, learning rate) triples, in the triples' order."""
    wanted = {triple: i for i, triple in enumerate(triples)}
    found = sorted(
        (wanted[(r["method"], r["seed"], r["learning_rate"])], r)
        for r in records
        if (r["method"], r["seed"], r["learning_rate"]) in wanted
    )
    out: dict[str, list[dict]] = {}
    for _, r in found:
        out.setdefault(r["method"], []).append(r)
    return out


def part_table(records: list[dict], triples) -> dict[str, dict]:
    """method → :func:`summarize` of its runs in a part."""
    return {method: summarize(runs) for method, runs in runs_of(records, triples).items()}


def _choice_key(row: dict, order: int) -> tuple:
    fraction = row["collapses"] / row["runs"]
    mean = row["test_pass@1"]["mean"]
    return (fraction, -(mean if mean is not None else -math.inf), order)


def rank_methods(records: list[dict], names) -> list[dict]:
    """The rows ``names`` (those with runs among ``records``), best first by the choice rule."""
    names = list(names)
    grouped: dict[str, list[dict]] = {}
    for r in records:
        if r["method"] in names:
            grouped.setdefault(r["method"], []).append(r)
    rows = [{"method": name, **summarize(grouped[name])} for name in names if name in grouped]
    return sorted(rows, key=lambda row: _choice_key(row, names.index(row["method"])))


def choose_lco(records: list[dict], settings: DemoSettings) -> dict:
    """The LCO row of parts 2–3: the best part-1 row on the matched signal by the choice rule."""
    from ..recipe import study_parts

    study = settings.study
    ablation = set(study_parts(settings, None)["ablation"])
    candidates = [
        ablation_name(objective, study.choice_signal, option)
        for objective in study.ablation_objectives
        for option in study.ablation_options
    ]
    part1 = [r for r in records if (r["method"], r["seed"], r["learning_rate"]) in ablation]
    ranking = rank_methods(part1, candidates)
    if not ranking:
        raise ValueError(f"no part-1 run of the {study.choice_signal!r} signal to choose the LCO row from")
    return {
        "method": ranking[0]["method"],
        "label": ranking[0]["label"],
        "signal": study.choice_signal,
        "ranking": [
            {k: row[k] for k in ("method", "label", "runs", "collapses", "test_pass@1")} for row in ranking
        ],
    }


def option_ranking(records: list[dict], study: StudySettings, triples) -> list[dict]:
    """Each stability option pooled over the ablation's signals (and objectives), best first by the
    choice rule: the evidence for ``LCOConfig``'s defaults, which serve both kinds of advantage."""
    wanted = set(triples)
    part1 = [r for r in records if (r["method"], r["seed"], r["learning_rate"]) in wanted]
    rows = []
    for order, option in enumerate(study.ablation_options):
        names = {
            ablation_name(objective, signal, option)
            for objective in study.ablation_objectives
            for signal in study.ablation_signals
        }
        runs = [r for r in part1 if r["method"] in names]
        if runs:
            row = {"option": option, **summarize(runs), "label": ABLATION_OPTIONS[option][0]}
            row["by_signal"] = {}
            for signal in study.ablation_signals:
                of_signal = {
                    ablation_name(objective, signal, option) for objective in study.ablation_objectives
                }
                sub = [r for r in runs if r["method"] in of_signal]
                if sub:
                    summary = summarize(sub)
                    row["by_signal"][signal] = {k: summary[k] for k in ("runs", "collapses", "test_pass@1")}
            rows.append((_choice_key(row, order), row))
    return [row for _, row in sorted(rows, key=lambda pair: pair[0])]


def stability_map(records: list[dict], methods, ladder) -> dict[str, dict]:
    """method → learning rate → runs, collapses, fraction of seeds collapsed, mean test pass@1."""
    out: dict[str, dict] = {}
    for method in methods:
        cells = {}
        for lr in ladder:
            runs = [r for r in records if r["method"] == method and r["learning_rate"] == lr]
            if not runs:
                continue
            collapses = sum(bool(r["collapsed"]) for r in runs)
            cells[f"{lr:g}"] = {
                "learning_rate": lr,
                "runs": len(runs),
                "collapses": collapses,
                "collapsed_fraction": collapses / len(runs),
                "test_pass@1": mean_std([r["splits"]["test"]["pass@1"] for r in runs]),
            }
        if cells:
            label = next(r["label"] for r in records if r["method"] == method)
            out[method] = {"label": label, "cells": cells}
    return out


def best_rung(entry: dict) -> float:
    """A method's own best learning rate on the ladder, by the choice rule."""
    cells = list(entry["cells"].values())
    rows = [{"runs": c["runs"], "collapses": c["collapses"], "test_pass@1": c["test_pass@1"]} for c in cells]
    best = min(range(len(cells)), key=lambda i: _choice_key(rows[i], i))
    return cells[best]["learning_rate"]


def ladder_totals(smap: dict) -> dict[str, dict]:
    """method → collapses and runs summed over the ladder × seeds."""
    return {
        m: {
            "label": e["label"],
            "collapses": sum(c["collapses"] for c in e["cells"].values()),
            "runs": sum(c["runs"] for c in e["cells"].values()),
        }
        for m, e in smap.items()
    }


def mean_curve(runs: list[dict]) -> tuple[list[int], list[float]]:
    """Mean greedy pass@1 curve over runs at the rollout counts they all have."""
    curves = [{p["rollouts"]: p["pass@1"] for p in r["curve"]} for r in runs if r["curve"]]
    if not curves:
        return [], []
    xs = sorted(set.intersection(*(set(c) for c in curves)))
    return xs, [sum(c[x] for c in curves) / len(curves) for x in xs]


def rollouts_to_reach(xs: list[int], ys: list[float], target: float) -> int | None:
    """The first rollout count at which the curve reaches ``target`` (None: never within the budget)."""
    return next((x for x, y in zip(xs, ys, strict=True) if y >= target), None)


def fig7(records: list[dict], lco: str, reference: str, lco_lr: float, reference_lr: float) -> dict | None:
    """Fig. 7's question: rollouts LCO needs to reach the reference method's final pass@1 (curves'
    greedy pass@1, mean over seeds)."""
    ref_xs, ref_ys = mean_curve(
        [r for r in records if r["method"] == reference and r["learning_rate"] == reference_lr]
    )
    xs, ys = mean_curve([r for r in records if r["method"] == lco and r["learning_rate"] == lco_lr])
    if not ref_xs or not xs:
        return None
    return {
        "lco_learning_rate": lco_lr,
        "reference_learning_rate": reference_lr,
        "reference_final": ref_ys[-1],
        "reference_rollouts": ref_xs[-1],
        "lco_final": ys[-1],
        "rollouts_needed": rollouts_to_reach(xs, ys, ref_ys[-1]),
        "budget": xs[-1],
    }


# ----------------------------------------------------------------------------------------- sentences


def _spikes(row: dict) -> float | None:
    return (row.get("grad_norm") or {}).get("p99_over_median")


def ablation_findings(table: dict[str, dict], study: StudySettings) -> list[str]:
    """Per objective × signal, one sentence per option: what it does to the paper's failure modes —
    collapse (and divergence) and gradient spikes — against the paper's form, and the pass@1 it ends at."""
    lines = []
    for objective in study.ablation_objectives:
        for signal in study.ablation_signals:
            paper = table.get(ablation_name(objective, signal, "paper"))
            if paper is None:
                continue
            where = f"On the {ABLATION_SIGNALS[signal][0]} signal ({paper['label'].split(' [')[0]})"
            pc, pn = paper["collapses"], paper["runs"]
            lines.append(
                f"{where}, the paper's form collapsed in {pc} of {pn} runs "
                f"(test pass@1 {_pct(paper['test_pass@1']['mean'])} %, gradient p99/median {_fmt(_spikes(paper))})."
            )
            for option in study.ablation_options:
                row = table.get(ablation_name(objective, signal, option))
                if option == "paper" or row is None:
                    continue
                oc, on = row["collapses"], row["runs"]
                name = ABLATION_OPTIONS[option][0]
                ratio_p, ratio_o = pc / pn, oc / on
                if ratio_p > 0 and ratio_o == 0:
                    verdict = f"cures the collapse ({pc}/{pn} → {oc}/{on})"
                elif ratio_o < ratio_p:
                    verdict = f"reduces the collapses ({pc}/{pn} → {oc}/{on}) but does not cure them"
                elif ratio_o > ratio_p:
                    verdict = f"makes collapse more frequent ({pc}/{pn} → {oc}/{on})"
                elif ratio_p > 0:
                    verdict = f"does not cure the collapse ({pc}/{pn} → {oc}/{on})"
                else:
                    verdict = f"keeps it free of collapse ({oc}/{on})"
                sp, so = _spikes(paper), _spikes(row)
                if sp is not None and so is not None and so * SPIKE_FACTOR <= sp:
                    verdict += f" and damps the gradient spikes (p99/median {_fmt(sp)} → {_fmt(so)})"
                elif sp is not None and so is not None and so >= SPIKE_FACTOR * sp:
                    verdict += f" and makes the gradient spikier (p99/median {_fmt(sp)} → {_fmt(so)})"
                pm, om = paper["test_pass@1"]["mean"], row["test_pass@1"]["mean"]
                lines.append(f"{where}, {name} {verdict}; test pass@1 {_pct(pm)} → {_pct(om)} %.")
    return lines


def matched_findings(table: dict[str, dict]) -> list[str]:
    """At matched signal and the common learning rate: the best row, and who ends above the warm-up."""
    trained = {m: row for m, row in table.items() if m != "warmup" and row["test_pass@1"]["mean"] is not None}
    if not trained:
        return []
    top = max(trained, key=lambda m: trained[m]["test_pass@1"]["mean"])
    lines = [
        f"At matched signal and the common learning rate the best test pass@1 is {trained[top]['label']}'s "
        f"({_ms(trained[top]['test_pass@1'])} %)."
    ]
    if "warmup" in table and table["warmup"]["test_pass@1"]["mean"] is not None:
        start = table["warmup"]["test_pass@1"]["mean"]
        above = [row["label"] for row in trained.values() if row["test_pass@1"]["mean"] > start]
        below = [row["label"] for row in trained.values() if row["test_pass@1"]["mean"] <= start]
        lines.append(
            f"Above the warm-up ({_pct(start)} %): {', '.join(above) or 'none'}; not above it: {', '.join(below) or 'none'}."
        )
    return lines


def comparison_findings(totals: dict[str, dict], lco: str) -> list[str]:
    """Whether the LCO row is more stable than each baseline over the ladder × seeds, and overall —
    whichever way it falls."""
    if lco not in totals:
        return []
    mine = totals[lco]
    share = mine["collapses"] / mine["runs"]
    more, less, same = [], [], []
    for method, entry in totals.items():
        if method == lco:
            continue
        other = entry["collapses"] / entry["runs"]
        text = f"{entry['label']} ({entry['collapses']}/{entry['runs']})"
        (more if share < other else less if share > other else same).append(text)
    head = f"Over the learning-rate ladder × seeds, {mine['label']} collapsed in {mine['collapses']} of {mine['runs']} runs"
    lines = []
    gaps = [abs(e["collapses"] - mine["collapses"]) for m, e in totals.items() if m != lco]
    # a difference of one run in a ladder × seeds grid is what one seed flipping at one rung makes
    marginal = f" — by {max(gaps)} run at most: a marginal difference" if gaps and max(gaps) <= 1 else ""
    if not less and not same and more:
        lines.append(f"{head}: LCO is more stable than every baseline here{marginal} — {', '.join(more)}.")
    elif less:
        lines.append(
            f"{head}: LCO is NOT more stable than the baselines here — "
            f"{', '.join(less)} collapsed less often"
            + (f"; {', '.join(same)} as often" if same else "")
            + (f"; {', '.join(more)} more often" if more else "")
            + (f"{marginal}." if marginal else ".")
        )
    else:
        lines.append(
            f"{head}: LCO is as stable as {', '.join(same)}"
            + (f" and more stable than {', '.join(more)}" if more else "")
            + " here, not more stable than every baseline."
        )
    return lines


def fig7_sentence(result: dict | None, lco_label: str, reference_label: str, where: str) -> str | None:
    if result is None:
        return None
    target = f"{reference_label}'s final greedy pass@1 ({_pct(result['reference_final'])} % after {result['reference_rollouts']} rollouts)"
    if result["rollouts_needed"] is None:
        return (
            f"{where}: {lco_label} never reaches {target} within the budget of {result['budget']} rollouts "
            f"(it ends at {_pct(result['lco_final'])} %)."
        )
    return f"{where}: {lco_label} reaches {target} after {result['rollouts_needed']} rollouts."


# ----------------------------------------------------------------------------------------- markdown


def _ms(stats: dict) -> str:
    if stats["mean"] is None:
        return "—"
    return _pct(stats["mean"]) if stats["std"] is None else f"{_pct(stats['mean'])} ± {_pct(stats['std'])}"


def part_markdown(table: dict[str, dict]) -> str:
    lines = [
        "| Method | Test pass@1 | Test greedy | Hard pass@1 | Collapses / runs | Grad-norm p99 | median | p99 / median |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in table.values():
        g = row["grad_norm"] or {}
        collapses = f"{row['collapses']}/{row['runs']}" if row["trained"] else "—"
        lines.append(
            f"| {row['label']} | {_ms(row['test_pass@1'])} | {_ms(row['test_greedy_pass@1'])} | "
            f"{_ms(row['hard_pass@1'])} | {collapses} | {_fmt(g.get('p99'))} | "
            f"{_fmt(g.get('median'))} | {_fmt(g.get('p99_over_median'))} |"
        )
    return "\n".join(lines) + "\n"


def ladder_markdown(smap: dict, ladder) -> str:
    lines = [
        "| Method | " + " | ".join(f"lr {lr:g}" for lr in ladder) + " | Collapses (ladder × seeds) |",
        "|---" * (len(ladder) + 2) + "|",
    ]
    for entry in smap.values():
        cells = []
        for lr in ladder:
            c = entry["cells"].get(f"{lr:g}")
            cells.append(
                "—" if c is None else f"{_pct(c['test_pass@1']['mean'])} ({c['collapses']}/{c['runs']})"
            )
        total = sum(c["collapses"] for c in entry["cells"].values())
        runs = sum(c["runs"] for c in entry["cells"].values())
        lines.append(f"| {entry['label']} | " + " | ".join(cells) + f" | {total}/{runs} |")
    return "\n".join(lines) + "\n"


def rungs_markdown(smap: dict, common: float) -> str:
    lines = [
        f"| Method | At the common lr {common:g}: test pass@1 | collapses | Own best rung | test pass@1 | collapses |",
        "|---|---|---|---|---|---|",
    ]
    for entry in smap.values():
        c = entry["cells"].get(f"{common:g}")
        best = best_rung(entry)
        b = entry["cells"][f"{best:g}"]
        at_common = ("—", "—") if c is None else (_ms(c["test_pass@1"]), f"{c['collapses']}/{c['runs']}")
        lines.append(
            f"| {entry['label']} | {at_common[0]} | {at_common[1]} | {best:g} | {_ms(b['test_pass@1'])} | "
            f"{b['collapses']}/{b['runs']} |"
        )
    return "\n".join(lines) + "\n"


def ranking_markdown(chosen: dict) -> str:
    lines = [
        "| Rank | LCO row (matched signal, common lr) | Collapses / runs | Test pass@1 |",
        "|---|---|---|---|",
    ]
    for i, row in enumerate(chosen["ranking"], 1):
        lines.append(
            f"| {i} | {row['label']} | {row['collapses']}/{row['runs']} | {_ms(row['test_pass@1'])} |"
        )
    return "\n".join(lines) + "\n"


def option_ranking_markdown(rows: list[dict], study: StudySettings) -> str:
    signals = list(study.ablation_signals)
    head = "| Rank | Option | " + " | ".join(f"{ABLATION_SIGNALS[s][0]}: collapses, pass@1" for s in signals)
    lines = [head + " | All: collapses | All: test pass@1 |", "|---" * (len(signals) + 4) + "|"]
    for i, row in enumerate(rows, 1):
        cells = []
        for signal in signals:
            sub = row["by_signal"].get(signal)
            cells.append(
                "—"
                if sub is None
                else f"{sub['collapses']}/{sub['runs']}, {_pct(sub['test_pass@1']['mean'])}"
            )
        lines.append(
            f"| {i} | {row['label']} | "
            + " | ".join(cells)
            + f" | {row['collapses']}/{row['runs']} | {_ms(row['test_pass@1'])} |"
        )
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------- report


def study_results(records: list[dict], settings: DemoSettings, chosen: dict, gate: dict | None) -> dict:
    """Every table, map, rung, Fig. 7 answer and sentence of the study, from the records."""
    from ..recipe import study_parts

    study = settings.study
    parts = study_parts(settings, chosen["method"])
    lco = chosen["method"]
    compared = [*study.baselines, lco]
    # the starting point, as the first row of the tables at the common learning rate
    start = part_table(records, [("warmup", 0, None)])
    ablation = {**start, **label_failed_rm_rows(part_table(records, parts["ablation"]), gate)}
    matched = {**start, **part_table(records, parts["matched"])}
    ladder_records = [
        r for r in records if (r["method"], r["seed"], r["learning_rate"]) in set(parts["ladder"])
    ]
    smap = stability_map(ladder_records, compared, study.ladder)
    rungs = {m: best_rung(e) for m, e in smap.items()}
    common = settings.rl.learning_rate
    reference = "grpo"
    answers = {
        "common_lr": fig7(records, lco, reference, common, common),
        "best_rungs": fig7(records, lco, reference, rungs.get(lco, common), rungs.get(reference, common))
        if lco in rungs and reference in rungs
        else None,
    }
    lco_label = METHODS[lco].label
    ref_label = METHODS[reference].label
    sentences = {
        "matched": matched_findings(matched),
        "ablation": ablation_findings(part_table(records, parts["ablation"]), study),
        "stability": comparison_findings(ladder_totals(smap), lco),
        "fig7": [
            s
            for s in (
                fig7_sentence(
                    answers["common_lr"], lco_label, ref_label, f"At the common learning rate {common:g}"
                ),
                fig7_sentence(
                    answers["best_rungs"],
                    lco_label,
                    ref_label,
                    "Each at its own best rung"
                    + (
                        f" (LCO {rungs[lco]:g}, {ref_label} {rungs[reference]:g})"
                        if lco in rungs and reference in rungs
                        else ""
                    ),
                ),
            )
            if s
        ],
    }
    return {
        "chosen": chosen,
        "option_ranking": option_ranking(records, study, parts["ablation"]),
        "parts": {"ablation": ablation, "matched": matched, "ladder": smap},
        "best_rungs": rungs,
        "ladder_totals": ladder_totals(smap),
        "fig7": answers,
        "findings": sentences,
    }


def study_curves(records: list[dict], methods, lrs: dict[str, float]) -> dict[str, tuple[list, list]]:
    """label → mean pass@1 curve of each method at its learning rate in ``lrs``."""
    out = {}
    for m in methods:
        runs = [r for r in records if r["method"] == m and r["learning_rate"] == lrs.get(m)]
        if runs:
            out[f"{runs[0]['label']} (lr {lrs[m]:g})"] = mean_curve(runs)
    return out


def study_markdown(
    settings: DemoSettings, results: dict, gate: dict | None, figures: dict, seconds: float
) -> str:
    study = settings.study
    rl = settings.rl
    chosen = results["chosen"]
    md = [f"# lco demo --study {study.name}: LCO's stability options, matched signal, learning rates\n"]
    md.append(
        f"The demo's task, warm-up π_0, φ_ref and φ_DPO; every RL run from π_0 with {rl.rollout_budget} rollouts "
        f"(batch {rl.batch_size}, T = {rl.temperature:g}), {settings.seeds} seeds each; pass@1 sampled "
        f"(T = {settings.eval.temperature:g}) on the first {settings.eval.test_problems} test and "
        f"{settings.eval.hard_problems} hard problems, in %, mean ± std over the runs of a row. A run "
        f"*collapses* when its greedy pass@1 curve (first {rl.curve_problems} test problems, every "
        f"{rl.curve_every} rollouts) falls to ≤ {int(100 * COLLAPSE_DROP)} % of its best and stays there "
        f"(last {COLLAPSE_TAIL} points), or when training diverges. Gradient norms: TRL's `grad_norm` before "
        f"clipping, pooled over the runs; compare p99 / median across rows (losses differ in scale). "
        f"Wall time of this invocation: {seconds / 60:.1f} min on {os.cpu_count()} CPU core(s).\n"
    )
    md.append(gate_markdown(gate))
    md.append(f"\n## Part 1 — ablation of the stability options (lr {rl.learning_rate:g})\n")
    md.append(part_markdown(results["parts"]["ablation"]))
    md.append(
        f"\n**Chosen for parts 2–3, automatically** (rows of the {ABLATION_SIGNALS[chosen['signal']][0]} signal; "
        "rule: fewest collapses, then the highest mean test pass@1): "
        f"**{chosen['label']}**.\n\n"
    )
    md.append(ranking_markdown(chosen))
    md.append(
        "\nEach option pooled over both signals (the evidence for LCOConfig's defaults, which serve the dense "
        "and the sparse advantage alike), by the same rule:\n\n"
    )
    md.append(option_ranking_markdown(results["option_ranking"], study))
    md.append(
        f"\n## Part 2 — matched signal (4 completions per prompt, verifier reward, lr {rl.learning_rate:g})\n"
    )
    md.append(part_markdown(results["parts"]["matched"]))
    md.append("\n## Part 3 — learning-rate ladder (test pass@1 %, collapses / seeds)\n")
    md.append(ladder_markdown(results["parts"]["ladder"], study.ladder))
    md.append(
        "\nEvery method with the same tuning budget: at the common learning rate and at its own best rung.\n\n"
    )
    md.append(rungs_markdown(results["parts"]["ladder"], rl.learning_rate))
    md.append("\n## What the numbers say\n")
    for key in ("matched", "ablation", "stability", "fig7"):
        md.extend(f"- {line}\n" for line in results["findings"][key])
    md.append("\n## Figures\n")
    captions = {
        "stability_map": "Stability map: fraction of seeds collapsed (colour) and mean test pass@1 % (number)",
        "study_curves": "Greedy pass@1 vs rollouts (Fig. 7): at the common lr and at each method's best rung",
    }
    for key, name in figures.items():
        md.append(f"\n**{captions[key]}**\n\n![{captions[key]}](figures/{name})\n")
    md.append("\n## Setup: every hyper-parameter\n")
    md.append(_settings_markdown(settings))
    return _tidy_markdown("".join(md))


def write_study_report(
    out: Path, settings: DemoSettings, runs, chosen: dict, warmup, rm, clock: dict, gate: dict | None
) -> dict[str, Path]:
    """Write the study's results.json, report.md and figures into ``out``; returns their paths."""
    from .figures import stability_map_figure, study_curves_figure

    out = Path(out)
    records = [collect_run(run, settings) for run in runs]
    results = study_results(records, settings, chosen, gate)
    folder = out / "figures"
    folder.mkdir(exist_ok=True)
    figures = {}
    if results["parts"]["ladder"]:
        stability_map_figure(results["parts"]["ladder"], settings.study.ladder, folder / "stability_map.png")
        figures["stability_map"] = "stability_map.png"
    compared = [*settings.study.baselines, chosen["method"]]
    common = {m: settings.rl.learning_rate for m in compared}
    panels = {
        f"common lr {settings.rl.learning_rate:g}": study_curves(records, compared, common),
        "each method's best rung": study_curves(records, compared, results["best_rungs"]),
    }
    if any(panels.values()):
        study_curves_figure(panels, settings.rl.curve_problems, folder / "pass_vs_rollouts.png")
        figures["study_curves"] = "pass_vs_rollouts.png"
    seconds = clock.get("total", 0.0)
    payload = {
        "profile": settings.profile,
        "settings": settings.as_dict(),
        "reward_model_gate": gate_record(gate),
        "reward_model": reward_model_info(rm),
        **results,
        "figures": figures,
        "timing": {
            "this_invocation_seconds": {k: round(v, 1) for k, v in clock.items()},
            "cpu_count": os.cpu_count(),
        },
        "runs": [{k: v for k, v in r.items() if not k.startswith("_")} for r in records],
    }
    results_path = out / "results.json"
    results_path.write_text(json.dumps(_sanitize(payload), indent=1))
    report_path = out / "report.md"
    report_path.write_text(study_markdown(settings, results, gate, figures, seconds))
    return {"report": report_path, "results": results_path, "figures": folder}


__all__ = [
    "ablation_findings",
    "best_rung",
    "choose_lco",
    "comparison_findings",
    "fig7",
    "fig7_sentence",
    "ladder_totals",
    "matched_findings",
    "option_ranking",
    "rank_methods",
    "rollouts_to_reach",
    "stability_map",
    "study_results",
    "write_study_report",
]
