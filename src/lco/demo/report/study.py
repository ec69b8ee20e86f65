"""The stability study's report (``lco demo --study stability``, issues 12 and 23).

The study's *raw results* are one compact record per run (:func:`compact_run`: its curve, its final
pass@1 and, per problem, how many of the k samples were correct) — what ``results.json`` holds and
docs/study/results.json commits. Every table, interval and sentence is a pure function of those
records (:func:`analyse`), so the report can be regenerated from the JSON alone
(:func:`report_from_results`).

The rules, stated once:

- **Choice** (:func:`choose`, on the *selection* runs: validation split, selection seeds): within a
  family, fewest runs ending below π_0 (the warm-up at the same seed), then the highest mean sampled
  pass@1, then the order the settings give.
- **Report** (the *confirmation* runs: test split, disjoint seeds): sampled pass@1 (k completions per
  problem), the greedy curve's minimum, its final point and its area (the mean pass@1 over the rollouts,
  trapezoids, with π_0's greedy pass@1 as the point at 0 rollouts), all against π_0 evaluated at the
  same seeds. A run *ends below π_0* when its final sampled pass@1 is below π_0's at its seed, and
  *collapses* when it is at most half of it (or when training diverged).
- **Intervals**: every difference the report states is a mean over seeds × problems with a 95 %
  paired bootstrap interval (:func:`.stats.paired_bootstrap`); a sentence says "better" or "more
  stable" only when that interval excludes zero, and "not distinguishable" otherwise.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, fields
from pathlib import Path

from ..plan import selection_families
from ..settings import DemoSettings, StudySettings
from .collect import collect_run, gate_record, reward_model_info
from .markdown import gate_markdown
from .stats import excludes_zero, mean_std, paired_bootstrap
from .study_results import area, compact_run, curve, decode_counts, rollouts_to_reach, scores  # noqa: F401
from .text import fmt, pct, sanitize, settings_markdown, tidy_markdown

COLLAPSE_FRACTION = 0.5  # a final pass@1 at most half of π_0's is a collapse
THRESHOLD_POINTS = 0.05  # Fig. 7: rollouts until the mean greedy curve is 5 points above π_0


# ----------------------------------------------------------------------------------------- choice


def _index(runs: list[dict], phase: str) -> dict:
    out: dict = {}
    for r in runs:
        if r["phase"] == phase:
            out.setdefault((r["method"], r["learning_rate"]), {})[r["seed"]] = r
    return out


def choose(runs: list[dict], study: StudySettings | DemoSettings) -> dict:
    """The choice of each family's configuration on the selection runs (validation split), by the
    rule of the module docstring, and what the confirmation must add for it."""
    settings = study if isinstance(study, DemoSettings) else None
    study = settings.study if settings is not None else study
    families = selection_families(settings) if settings is not None else _families_of(study)
    by = _index(runs, "selection")
    warmup = by.get(("warmup", None), {})
    out: dict = {"families": {}, "confirm": []}
    for family, pairs in families.items():
        rows = []
        for order, (name, lr) in enumerate(pairs):
            seeded = by.get((name, lr), {})
            if not seeded:
                continue
            below = sum(
                1 for seed, r in seeded.items() if seed in warmup and r["pass@1"] < warmup[seed]["pass@1"]
            )
            row = {
                "method": name,
                "label": next(iter(seeded.values()))["label"],
                "learning_rate": lr,
                "runs": len(seeded),
                "below_warmup": below,
                "pass@1": mean_std([r["pass@1"] for r in seeded.values()]),
            }
            rows.append(((below / len(seeded), -row["pass@1"]["mean"], order), row))
        if not rows:
            continue
        ranking = [row for _, row in sorted(rows, key=lambda pair: pair[0])]
        out["families"][family] = {"chosen": ranking[0], "ranking": ranking}
    confirmed = set(study.confirmed)
    for family, entry in out["families"].items():
        best = entry["chosen"]
        if family == "grpo_kl":
            # GRPO + KL is a confirmed row: at its chosen weight, at every learning rate
            out["confirm"].append((best["method"], list(study.learning_rates)))
        elif family.startswith("lco_kld/") and best["method"] not in confirmed:
            out["confirm"].append((best["method"], [best["learning_rate"]]))
    warm = mean_std([r["pass@1"] for r in warmup.values()])
    out["warmup_pass@1"] = warm
    return out


def _families_of(study: StudySettings) -> dict:
    return selection_families(DemoSettings(profile="study", study=study))


# ----------------------------------------------------------------------------------------- analysis


def _matrix(seeded: dict[int, dict], seeds, get) -> list[list[float]]:
    return [get(seeded[s]) for s in seeds]


class _Confirmation:
    """The confirmation runs indexed by (method, learning rate) → seed, with π_0 at the same seeds."""

    def __init__(self, runs: list[dict], budget: int):
        self.by = _index(runs, "confirmation")
        self.warmup = self.by.get(("warmup", None), {})
        self.budget = budget

    def start(self, seed: int) -> dict | None:
        return self.warmup.get(seed) or next(iter(self.warmup.values()), None)

    def seeds(self, *keys) -> list[int]:
        sets = [set(self.by.get(k, {})) for k in keys]
        return sorted(set.intersection(*sets)) if sets else []

    def scores(self, key, seeds) -> list[list[float]]:
        return _matrix(self.by[key], seeds, scores)

    def areas(self, key, seeds) -> list[list[float]]:
        return [area(curve(self.by[key][s], self.start(s)), self.budget) for s in seeds]


def row_summary(conf: _Confirmation, key) -> dict:
    """One confirmation row: pass@1 over seeds, against π_0 at the same seeds, and the curve's measures."""
    seeded = conf.by[key]
    seeds = sorted(seeded)
    runs = [seeded[s] for s in seeds]
    warm = conf.warmup
    row = {
        "method": key[0],
        "learning_rate": key[1],
        "label": runs[0]["label"],
        "trained": runs[0]["trained"],
        "seeds": seeds,
        "pass@1": mean_std([r["pass@1"] for r in runs]),
        "greedy_pass@1": mean_std([r["greedy_pass@1"] for r in runs]),
    }
    paired = [s for s in seeds if s in warm]
    if key[0] != "warmup" and paired:
        row["vs_warmup"] = paired_bootstrap(conf.scores(key, paired), conf.scores(("warmup", None), paired))
    if runs[0]["trained"]:
        curves = [curve(seeded[s], conf.start(s)) for s in seeds]
        means = [[(x, sum(y) / len(y)) for x, y in c] for c in curves]
        row["curve_min"] = mean_std([min(y for _, y in m) for m in means])
        row["curve_final"] = mean_std([m[-1][1] for m in means])
        row["auc"] = mean_std([sum(a) / len(a) for a in conf.areas(key, seeds)])
        if paired:
            warm_flat = [area(curve(warm[s], None), conf.budget) for s in paired]
            row["auc_vs_warmup"] = paired_bootstrap(conf.areas(key, paired), warm_flat)
        below = [s for s in paired if seeded[s]["pass@1"] < warm[s]["pass@1"]]
        collapsed = [
            s
            for s in seeds
            if seeded[s]["status"] == "diverged"
            or (s in warm and seeded[s]["pass@1"] <= COLLAPSE_FRACTION * warm[s]["pass@1"])
        ]
        row["ends_below_warmup"] = len(below)
        row["collapses"] = len(collapsed)
        start = conf.start(seeds[0])
        row["rollouts_to_threshold"] = None
        if start is not None:
            start_greedy = decode_counts(start["greedy"], 1)
            threshold = sum(start_greedy) / len(start_greedy) + THRESHOLD_POINTS
            row["rollouts_to_threshold"] = rollouts_to_reach(_mean_points(means), threshold)
        row["spikiness"] = mean_std([r["grad_norm_p99_over_median"] for r in runs])
    return row


def _mean_points(means: list[list[tuple[int, float]]]) -> list[tuple[int, float]]:
    xs = sorted(set.intersection(*(set(x for x, _ in m) for m in means))) if means else []
    return [(x, sum(dict(m)[x] for m in means) / len(means)) for x in xs]


def comparisons(study: StudySettings, chosen: dict | None) -> list[tuple[str, str]]:
    """The pairs (a, b) of confirmed rows whose differences the report states, at every learning rate."""
    outcome_default, outcome_paper = "lco_kld_outcome_beta_negative", "lco_kld_outcome_paper"
    dense_default, dense_paper = "lco_kld_dense_anchor_never", "lco_kld_dense_paper"
    grpo_kl = None
    if chosen and "grpo_kl" in chosen["families"]:
        grpo_kl = chosen["families"]["grpo_kl"]["chosen"]["method"]
    pairs = [
        (outcome_default, outcome_paper),
        (dense_default, dense_paper),
        (outcome_default, "grpo_beta0"),
        (outcome_default, "reinforce"),
        (dense_default, "grpo_beta0"),
        (outcome_paper, "grpo_beta0"),
    ]
    if grpo_kl:
        pairs += [(outcome_default, grpo_kl), (dense_default, grpo_kl), (grpo_kl, "grpo_beta0")]
    for family in ("lco_kld/outcome", "lco_kld/dense"):
        if chosen and family in chosen["families"]:
            best = chosen["families"][family]["chosen"]["method"]
            default = outcome_default if family.endswith("outcome") else dense_default
            if best != default:
                pairs.append((best, default))
    return pairs


def _difference(conf: _Confirmation, ka: tuple, kb: tuple) -> dict | None:
    """a − b for the confirmation rows ``ka`` and ``kb`` ((method, learning rate)), paired by seed and
    problem: sampled pass@1 and the curve's area (None for a static row)."""
    if ka not in conf.by or kb not in conf.by:
        return None
    seeds = conf.seeds(ka, kb)
    if not seeds:
        return None
    trained = next(iter(conf.by[ka].values()))["trained"] and next(iter(conf.by[kb].values()))["trained"]
    return {
        "a": ka[0],
        "b": kb[0],
        "a_label": next(iter(conf.by[ka].values()))["label"],
        "b_label": next(iter(conf.by[kb].values()))["label"],
        "learning_rate": ka[1] if ka[1] == kb[1] else None,
        "a_learning_rate": ka[1],
        "b_learning_rate": kb[1],
        "seeds": seeds,
        "pass@1": paired_bootstrap(conf.scores(ka, seeds), conf.scores(kb, seeds)),
        "auc": paired_bootstrap(conf.areas(ka, seeds), conf.areas(kb, seeds)) if trained else None,
    }


CHOSEN_LCO = ("lco_kld/outcome", "lco_kld/dense")
CHOSEN_BASELINES = ("grpo", "grpo_kl", "reinforce")


def stated_differences(conf: _Confirmation, study: StudySettings, chosen: dict | None) -> list[dict]:
    """Every stated difference, a − b, paired by seed and problem: the fixed pairs at each learning rate
    (:func:`comparisons`), LCO's chosen configurations against each baseline's chosen one (each at its own
    chosen rate: the equal-footing comparison), and π* against π_0."""
    out, seen = [], set()
    collapse_rate = max(study.learning_rates)
    for a, b in comparisons(study, chosen):
        for lr in study.learning_rates:
            diff = _difference(conf, (a, lr), (b, lr))
            if diff is not None and ((a, lr), (b, lr)) not in seen:
                seen.add(((a, lr), (b, lr)))
                out.append({**diff, "kind": "same rate", "collapse_regime": lr == collapse_rate})
    families = (chosen or {}).get("families", {})
    for lco in CHOSEN_LCO:
        for base in CHOSEN_BASELINES:
            if lco in families and base in families:
                x, y = families[lco]["chosen"], families[base]["chosen"]
                ka, kb = (x["method"], x["learning_rate"]), (y["method"], y["learning_rate"])
                diff = _difference(conf, ka, kb)
                if diff is not None and (ka, kb) not in seen:
                    seen.add((ka, kb))
                    out.append({**diff, "kind": "each at its chosen configuration", "collapse_regime": False})
    diff = _difference(conf, ("pistar", None), ("warmup", None))
    if diff is not None:
        out.append({**diff, "kind": "static"})
    return out


def difference_sentence(diff: dict) -> list[str]:
    """The words for one stated difference: "better" / "more stable" only when the interval excludes 0."""
    lines = []
    if diff["learning_rate"] is not None:
        where = f" at lr {diff['learning_rate']:g}"
    elif diff.get("a_learning_rate") is not None and diff.get("b_learning_rate") is not None:
        where = f" (each at its chosen lr: {diff['a_learning_rate']:g} vs {diff['b_learning_rate']:g})"
    else:
        where = ""
    a, b = diff["a_label"], diff["b_label"]
    p = diff["pass@1"]
    if p is not None:
        sign = excludes_zero(p)
        text = f"{_signed(p)} points of sampled test pass@1 {_interval(p)}"
        if sign > 0:
            lines.append(f"{a} is better than {b}{where}: {text}.")
        elif sign < 0:
            lines.append(f"{a} is worse than {b}{where}: {text}.")
        else:
            lines.append(
                f"{a} and {b} are not distinguishable{where} in pass@1: {text}; the interval holds 0."
            )
    auc = diff.get("auc")
    if auc is not None:
        sign = excludes_zero(auc)
        text = f"{_signed(auc)} points of area under the greedy curve {_interval(auc)}"
        if diff.get("collapse_regime"):
            # at the collapse-regime rate the area says who holds up: stability words
            if sign > 0:
                lines.append(f"{a} is more stable than {b}{where} (higher over the whole run): {text}.")
            elif sign < 0:
                lines.append(f"{a} is less stable than {b}{where} (lower over the whole run): {text}.")
            else:
                lines.append(f"{a} is not more stable than {b}{where}: {text}; the interval holds 0.")
        elif sign != 0:
            ahead = "ahead of" if sign > 0 else "behind"
            lines.append(f"{a} is {ahead} {b} over the whole run{where}: {text}.")
        else:
            lines.append(f"{a} and {b} are level over the whole run{where}: {text}; the interval holds 0.")
    return lines


def learning_checks(runs: list[dict], chosen: dict) -> list[dict]:
    """For each selection family's chosen configuration: its validation pass@1 against π_0's at the same
    seeds (paired by seed and problem) — whether it learns at all, the question for LCO-LCH / LCO-MSE,
    which are chosen but not confirmed."""
    by = _index(runs, "selection")
    warm = by.get(("warmup", None), {})
    out = []
    for family, entry in chosen.get("families", {}).items():
        best = entry["chosen"]
        seeded = by.get((best["method"], best["learning_rate"]), {})
        seeds = sorted(set(seeded) & set(warm))
        if not seeds:
            continue
        out.append(
            {
                "family": family,
                "method": best["method"],
                "label": best["label"],
                "learning_rate": best["learning_rate"],
                "seeds": seeds,
                "vs_warmup": paired_bootstrap(
                    [scores(seeded[s]) for s in seeds], [scores(warm[s]) for s in seeds]
                ),
            }
        )
    return out


def learning_sentence(check: dict) -> str:
    ci = check["vs_warmup"]
    text = (
        f"{_signed(ci)} points of validation pass@1 over π_0 {_interval(ci)}, {len(check['seeds'])} seed(s)"
    )
    verdict = {1: "learns", -1: "ends below π_0", 0: "does not measurably learn"}[excludes_zero(ci)]
    return f"{check['family']}: the chosen configuration, {check['label']} at lr {check['learning_rate']:g}, {verdict} ({text})."


def _signed(interval: dict) -> str:
    return f"{100 * interval['mean']:+.2f}"


def _interval(interval: dict) -> str:
    return f"(95 % CI {100 * interval['low']:+.2f} to {100 * interval['high']:+.2f})"


def analyse(payload: dict) -> dict:
    """Every table, interval and sentence of the study, from its raw results (``payload``: ``study``,
    ``rl.rollout_budget``, ``chosen``, ``runs``)."""
    study = study_from_dict(payload["study"])
    chosen = payload.get("chosen")
    runs = payload["runs"]
    if chosen is None:
        chosen = choose(runs, study)
    conf = _Confirmation(runs, payload["rollout_budget"])
    rows = {}
    for key in conf.by:
        rows[f"{key[0]}@{'-' if key[1] is None else f'{key[1]:g}'}"] = row_summary(conf, key)
    diffs = stated_differences(conf, study, chosen)
    checks = learning_checks(runs, chosen)
    sentences = [line for diff in diffs for line in difference_sentence(diff)]
    sentences += collapse_sentences(rows, study)
    sentences += [learning_sentence(check) for check in checks]
    return {
        "chosen": chosen,
        "confirmation": rows,
        "differences": diffs,
        "learning": checks,
        "findings": sentences,
    }


def collapse_sentences(rows: dict, study: StudySettings) -> list[str]:
    """Per learning rate: which confirmed rows end below π_0 in every seed, and which collapse."""
    lines = []
    for lr in study.learning_rates:
        at = [r for r in rows.values() if r["learning_rate"] == lr and r.get("trained")]
        if not at:
            continue
        below = [
            f"{r['label']} ({r['ends_below_warmup']}/{len(r['seeds'])})" for r in at if r["ends_below_warmup"]
        ]
        collapsed = [f"{r['label']} ({r['collapses']}/{len(r['seeds'])})" for r in at if r["collapses"]]
        lines.append(
            f"At lr {lr:g}, runs ending below π_0 (at their seed): {', '.join(below) or 'none'}; "
            f"collapsed (≤ {int(100 * COLLAPSE_FRACTION)} % of π_0's pass@1, or diverged): {', '.join(collapsed) or 'none'}."
        )
    return lines


def study_from_dict(values: dict) -> StudySettings:
    """The :class:`StudySettings` written into ``results.json`` (lists back to tuples)."""
    known = {f.name for f in fields(StudySettings)}
    return StudySettings(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in known}
    )


# ----------------------------------------------------------------------------------------- markdown


def _ms(stats: dict | None) -> str:
    if not stats or stats["mean"] is None:
        return "—"
    return pct(stats["mean"]) if stats["std"] is None else f"{pct(stats['mean'])} ± {pct(stats['std'])}"


def _ci(interval: dict | None) -> str:
    if interval is None:
        return "—"
    return f"{_signed(interval)} [{100 * interval['low']:+.2f}, {100 * interval['high']:+.2f}]"


def selection_markdown(chosen: dict) -> str:
    lines = [
        "| Family | Configuration | lr | Runs | Below π_0 | Validation pass@1 | Chosen |",
        "|---|---|---|---|---|---|---|",
    ]
    for family, entry in chosen["families"].items():
        best = entry["chosen"]
        for row in entry["ranking"]:
            mark = "**chosen**" if row is best or row == best else ""
            lines.append(
                f"| {family} | {row['label']} | {row['learning_rate']:g} | {row['runs']} | "
                f"{row['below_warmup']}/{row['runs']} | {_ms(row['pass@1'])} | {mark} |"
            )
    return "\n".join(lines) + "\n"


def confirmation_markdown(rows: dict, lr: float | None) -> str:
    lines = [
        "| Row | Seeds | Test pass@1 | Δ vs π_0 [95 % CI] | Greedy | Curve min | Curve final | Area | "
        "Δ area vs π_0 [95 % CI] | Below π_0 | Collapses | Rollouts to π_0 + 5 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows.values():
        if row["learning_rate"] != lr and row["trained"]:
            continue
        if not row["trained"] and lr is not None and row["method"] not in ("warmup", "pistar"):
            continue
        n = len(row["seeds"])
        trained = row["trained"]
        below = f"{row['ends_below_warmup']}/{n}" if trained else "—"
        collapses = f"{row['collapses']}/{n}" if trained else "—"
        lines.append(
            f"| {row['label']} | {n} | {_ms(row['pass@1'])} | {_ci(row.get('vs_warmup'))} | "
            f"{_ms(row['greedy_pass@1'])} | {_ms(row.get('curve_min')) if trained else '—'} | "
            f"{_ms(row.get('curve_final')) if trained else '—'} | {_ms(row.get('auc')) if trained else '—'} | "
            f"{_ci(row.get('auc_vs_warmup'))} | "
            f"{below} | {collapses} | "
            f"{fmt(row.get('rollouts_to_threshold')) if trained else '—'} |"
        )
    return "\n".join(lines) + "\n"


def chosen_markdown(rows: dict, chosen: dict) -> str:
    """The confirmation row of each family's chosen configuration (families that were confirmed)."""
    lines = [
        "| Family | Chosen configuration | lr | Test pass@1 | Δ vs π_0 [95 % CI] | Area | Below π_0 | Collapses |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for family, entry in chosen.get("families", {}).items():
        best = entry["chosen"]
        row = rows.get(f"{best['method']}@{best['learning_rate']:g}")
        if row is None:
            continue
        n = len(row["seeds"])
        lines.append(
            f"| {family} | {row['label']} | {best['learning_rate']:g} | {_ms(row['pass@1'])} | "
            f"{_ci(row.get('vs_warmup'))} | {_ms(row.get('auc'))} | {row.get('ends_below_warmup', 0)}/{n} | "
            f"{row.get('collapses', 0)}/{n} |"
        )
    return "\n".join(lines) + "\n"


def differences_markdown(diffs: list[dict]) -> str:
    lines = [
        "| A | B | lr | Δ test pass@1, A − B [95 % CI] | Δ area under the curve [95 % CI] |",
        "|---|---|---|---|---|",
    ]
    for d in diffs:
        if d["learning_rate"] is not None:
            lr = f"{d['learning_rate']:g}"
        elif d.get("a_learning_rate") is not None:
            lr = f"{d['a_learning_rate']:g} vs {d['b_learning_rate']:g}"
        else:
            lr = "—"
        lines.append(f"| {d['a_label']} | {d['b_label']} | {lr} | {_ci(d['pass@1'])} | {_ci(d.get('auc'))} |")
    return "\n".join(lines) + "\n"


def study_markdown(payload: dict, results: dict, settings: DemoSettings | None = None) -> str:
    """report.md of the study, from its raw results and :func:`analyse`'s output."""
    study = study_from_dict(payload["study"])
    k = payload.get("samples", 1)
    md = [f"# lco demo --study {study.name}: selection on validation, confirmation on test\n"]
    md.append(
        f"Every RL run from π_0 with {payload['rollout_budget']} rollouts. Configurations are chosen on the "
        f"{study.selection_split} split at seeds {list(study.selection_seeds)} (LCO-LCH / LCO-MSE at "
        f"{list(study.regression_seeds)}); the numbers reported are on the {study.confirmation_split} split at "
        f"the disjoint seeds {list(study.confirmation_seeds)}. pass@1 in %, sampled with k = {k} completions per "
        "problem, mean ± std over seeds; differences are means over seeds × problems with 95 % paired bootstrap "
        "intervals (pairs: same seed, same problem). The greedy curve is measured on the whole split every "
        f"{payload.get('curve_every', '?')} rollouts; its area is the mean pass@1 over the run (π_0's greedy at 0 "
        f"rollouts). Wall time of this invocation: {payload.get('minutes', 0):.1f} min on "
        f"{payload.get('cpu_count', '?')} CPU core(s).\n"
    )
    missing = payload.get("missing") or []
    if missing:
        md.append(
            f"\n**Partial report: {len(missing)} planned run(s) were not finished** and are left out of every "
            f"table: {', '.join(missing[:12])}{' …' if len(missing) > 12 else ''}.\n"
        )
    md.append(gate_markdown(payload.get("reward_model_gate")))
    md.append("\n## Selection (validation split)\n")
    warm = results["chosen"].get("warmup_pass@1")
    md.append(
        f"π_0 on the validation split: {_ms(warm)} %. Rule: fewest runs below π_0, then mean pass@1.\n\n"
    )
    budgets = ", ".join(
        f"{family} {len(entry['ranking'])}" for family, entry in results["chosen"]["families"].items()
    )
    md.append(f"Tuning budget (configurations tried per family): {budgets}.\n\n")
    md.append(selection_markdown(results["chosen"]))
    if results.get("learning"):
        md.append("\nEach family's chosen configuration against π_0 on the validation split:\n\n")
        md.extend(f"- {learning_sentence(check)}\n" for check in results["learning"])
    for lr in study.learning_rates:
        md.append(f"\n## Confirmation (test split), lr {lr:g}\n")
        md.append(confirmation_markdown(results["confirmation"], lr))
    md.append("\n## Each family at its chosen configuration (test split)\n")
    md.append(chosen_markdown(results["confirmation"], results["chosen"]))
    md.append("\n## Stated differences\n")
    md.append(differences_markdown(results["differences"]))
    md.append("\n## What the numbers say\n")
    md.extend(f"- {line}\n" for line in results["findings"])
    figures = payload.get("figures") or {}
    for key, name in figures.items():
        md.append(f"\n![{key}](figures/{name})\n")
    if settings is not None:
        md.append("\n## Setup: every hyper-parameter\n")
        md.append(settings_markdown(settings))
    return tidy_markdown("".join(md))


def report_from_results(path) -> str:
    """report.md regenerated from a results.json (e.g. docs/study/results.json) alone."""
    payload = json.loads(Path(path).read_text())
    return study_markdown(payload, analyse(payload))


def curves_by_row(payload: dict, lr: float) -> dict[str, tuple[list, list]]:
    """label → mean greedy curve over seeds of each confirmed trained row at ``lr``."""
    conf = _Confirmation(payload["runs"], payload["rollout_budget"])
    out = {}
    for (_name, rate), seeded in conf.by.items():
        if rate != lr:
            continue
        means = [[(x, sum(y) / len(y)) for x, y in curve(r, conf.start(s))] for s, r in seeded.items()]
        points = _mean_points(means)
        out[next(iter(seeded.values()))["label"]] = ([x for x, _ in points], [y for _, y in points])
    return out


def write_study_report(
    out: Path,
    settings: DemoSettings,
    runs,
    chosen: dict,
    warmup,
    rm,
    clock: dict,
    gate: dict | None,
    missing: list[str] = (),
) -> dict[str, Path]:
    """Write the study's results.json (raw results + analysis), report.md and figures into ``out``;
    ``missing`` names the planned runs that were not finished (a report written from a partial cache)."""
    from .figures import study_curves_figure

    out = Path(out)
    records = [compact_run(collect_run(run, settings)) for run in runs]
    payload = {
        "profile": settings.profile,
        "study": asdict(settings.study),
        "rollout_budget": settings.rl.rollout_budget,
        "curve_every": settings.rl.curve_every,
        "samples": settings.eval.samples,
        "reward_model_gate": gate_record(gate),
        "reward_model": reward_model_info(rm),
        "minutes": clock.get("total", 0.0) / 60,
        "cpu_count": os.cpu_count(),
        "timing": {k: round(v, 1) for k, v in clock.items()},
        "chosen": chosen,
        "missing": list(missing),
        "runs": records,
    }
    results = analyse(payload)
    folder = out / "figures"
    folder.mkdir(exist_ok=True)
    panels = {f"lr {lr:g}": curves_by_row(payload, lr) for lr in settings.study.learning_rates}
    figures = {}
    if any(panels.values()):
        study_curves_figure(panels, settings.eval.test_problems, folder / "study_curves.png")
        figures["study_curves"] = "study_curves.png"
    payload["figures"] = figures
    results_path = out / "results.json"
    results_path.write_text(json.dumps(sanitize({**payload, "analysis": results}), indent=None))
    report_path = out / "report.md"
    report_path.write_text(study_markdown(payload, results, settings))
    return {"report": report_path, "results": results_path, "figures": folder}


__all__ = [
    "analyse",
    "area",
    "choose",
    "compact_run",
    "curve",
    "difference_sentence",
    "report_from_results",
    "rollouts_to_reach",
    "scores",
    "study_from_dict",
    "study_markdown",
    "write_study_report",
]
