"""The report's text: ``report.md`` from the tables of :mod:`.collect` and the demo's settings.

Every number in the prose comes from the settings or from the runs actually read (problem counts,
completions per prompt, steps per rollout batch, sampling temperature): a profile that evaluates
100 problems says 100. A quantity that does not exist is printed as "—".
"""

from __future__ import annotations

import os

from ...objectives.registry import ADVANTAGE_SPECS
from ..methods import GROUP_SIZE, METHODS, MIN_GROUP
from ..runtime import SPLITS
from ..settings import DemoSettings, RewardModelSettings
from .stats import COLLAPSE_DROP, COLLAPSE_TAIL, MIN_SEEDS_FOR_A_DIFFERENCE, paired_difference
from .text import fmt as _fmt
from .text import pct as _pct
from .text import settings_markdown as _settings_markdown
from .text import tidy_markdown as _tidy_markdown

LCO_PREFIX = "lco_"


def _cell(stats: dict) -> str:
    if stats["mean"] is None:
        return "—"
    if stats["std"] is None:
        return _pct(stats["mean"])
    return f"{_pct(stats['mean'])} ± {_pct(stats['std'])}"


# sampled pass@1 of every split, then greedy pass@1 of every split
_COLUMNS = tuple((split, metric) for metric in ("pass@1", "greedy_pass@1") for split in SPLITS)
_HEADINGS = {"pass@1": "pass@1", "greedy_pass@1": "greedy"}


def table_markdown(table: dict) -> str:
    names = [f"{split.capitalize()} {_HEADINGS[metric]}" for split, metric in _COLUMNS]
    header = "| Method | " + " | ".join(names) + " |\n" + "|---" * (len(names) + 1) + "|\n"
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


def _points(x) -> str:
    """A difference of pass@1 rates in percentage points, signed."""
    return f"{100 * x:+.2f}"


def _difference_text(d: dict) -> str:
    if d["low"] is None:
        return f"{_points(d['mean'])} points on {d['n']} seed"
    return (
        f"{_points(d['mean'])} points, 95 % interval [{_points(d['low'])}, {_points(d['high'])}] over "
        f"{d['n']} paired seeds"
    )


def findings(table: dict) -> list[str]:
    """What the test split's sampled pass@1 supports, LCO against the baselines and every method against
    the warm-up. A difference is stated only when :func:`.stats.paired_difference` calls it (at least
    two paired seeds and a 95 % interval excluding zero); otherwise the text says that it is not called."""

    def mean(name):
        return table[name]["stats"]["test"]["pass@1"]["mean"]

    def per_seed(name) -> dict:
        return table[name].get("per_seed", {}).get("test", {}).get("pass@1", {})

    def label(name) -> str:
        return table[name]["label"]

    lines = []
    methods = [m for m in table if mean(m) is not None]
    if not methods:
        return lines
    seeds = max(len(per_seed(m)) for m in methods)
    top = max(methods, key=mean)
    line = f"Highest mean on the test split (sampled pass@1): **{label(top)}** ({_pct(mean(top))})"
    if seeds < MIN_SEEDS_FOR_A_DIFFERENCE:
        line += (
            f". One seed: no difference between methods is called here (that needs ≥ {MIN_SEEDS_FOR_A_DIFFERENCE} "
            "seeds and a paired 95 % interval that excludes zero); the ordering may be noise"
        )
    lines.append(line + ".")
    if top == "warmup":
        lines.append(
            "The untrained warm-up (the policy every method starts from) has the highest mean: no RL run "
            "raised the test pass@1 above its starting point within this budget."
        )

    def compare(m: str, others: list[str]) -> tuple[list[str], list[str], list[str]]:
        above, below, undecided = [], [], []
        for o in others:
            d = paired_difference(per_seed(m), per_seed(o))
            if d["n"] == 0:
                continue
            text = f"{label(o)} ({_difference_text(d)})"
            (above if d["called"] and d["mean"] > 0 else below if d["called"] else undecided).append(text)
        return above, below, undecided

    if "warmup" in table and mean("warmup") is not None:
        trained = [m for m in methods if m != "warmup"]
        above = [
            label(m)
            for m in trained
            if paired_difference(per_seed(m), per_seed("warmup"))["called"] and mean(m) > mean("warmup")
        ]
        below = [
            label(m)
            for m in trained
            if paired_difference(per_seed(m), per_seed("warmup"))["called"] and mean(m) < mean("warmup")
        ]
        rest = [label(m) for m in trained if label(m) not in above + below]
        lines.append(
            f"Against the warm-up ({_pct(mean('warmup'))}): above it: {', '.join(above) or 'none'}; below it: "
            f"{', '.join(below) or 'none'}; no difference called: {', '.join(rest) or 'none'}."
        )
    lco = [m for m in methods if m.startswith(LCO_PREFIX)]
    baselines = [m for m in methods if not m.startswith(LCO_PREFIX) and m != "warmup"]
    for m in lco:
        if not baselines:
            break
        above, below, undecided = compare(m, baselines)
        parts = []
        if above:
            parts.append(f"beats {'; '.join(above)}")
        if below:
            parts.append(f"is beaten by {'; '.join(below)}")
        if undecided:
            parts.append(f"shows no difference the seeds support against {'; '.join(undecided)}")
        lines.append(f"{label(m)} (LCO − baseline, test pass@1): " + ", and ".join(parts) + ".")
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


def _methods_markdown(records: list[dict], settings: DemoSettings) -> str:
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


def _trained_table_methods(records: list[dict]) -> dict[str, list[dict]]:
    """method → its table runs, in first-seen order, for the trained methods."""
    out: dict[str, list[dict]] = {}
    for r in records:
        if r["purpose"] == "table" and r["trained"]:
            out.setdefault(r["method"], []).append(r)
    return out


def _and(labels: list[str]) -> str:
    return labels[0] if len(labels) == 1 else f"{', '.join(labels[:-1])} and {labels[-1]}"


def intro_markdown(
    settings: DemoSettings, problems: dict[str, str], seconds: float, warmup: dict | None = None
) -> str:
    """The opening paragraph: the task, the evaluated problem counts, the models and the budget.

    φ_ref is called stronger than π_0 only when the warm-up saved them at different steps (the
    warm-up stops early at each capability target; a missed target leaves the last checkpoint, so
    both can be the same model)."""
    same = warmup is not None and _same_checkpoint(warmup)
    if warmup is None:
        models = "a tiny Qwen2 policy π_0 and a reference φ_ref taken from one SFT warm-up at two capability targets"
    elif same:
        models = (
            "a tiny Qwen2 policy π_0 and a reference φ_ref that are the same warm-up checkpoint (both capability "
            "targets were missed; see below)"
        )
    else:
        models = "a tiny Qwen2 policy π_0 and a φ_ref trained longer, taken from one SFT warm-up at two capability targets"
    return (
        f"A synthetic arithmetic task (evaluated: the first {problems['test']} problems of the test split, "
        "two-operand 2-digit ± problems, the role of MATH500; and the first "
        f"{problems['hard']} of the hard split, subtractions that need a borrow, the role of "
        f"AMC23/MinervaMath), {models}, φ_DPO trained from φ_ref on {pair_recipe_text(settings.reward_model)}, "
        "then RL from π_0 for every method with the same rollout budget "
        f"({settings.rl.rollout_budget} completions). "
        f"Wall time of this invocation: {seconds / 60:.1f} min on {os.cpu_count()} CPU core(s).\n"
    )


def _same_checkpoint(warmup: dict) -> bool:
    steps = warmup.get("steps") or {}
    return steps.get("policy") is not None and steps.get("policy") == steps.get("phi_ref")


def _validation_pass_at(warmup: dict, step) -> float | None:
    return next((c["validation_pass@1"] for c in warmup.get("checks", []) if c.get("step") == step), None)


def warmup_markdown(warmup: dict | None) -> str:
    """Whether the warm-up reached its two capability targets (``warmup.json``), and what stands in if not."""
    if not warmup:
        return ""
    names = {"policy": ("π_0", "policy_target"), "phi_ref": ("φ_ref", "reference_target")}
    parts = []
    for key, (symbol, target_key) in names.items():
        step = (warmup.get("steps") or {}).get(key)
        measured = _validation_pass_at(warmup, step)
        at = (
            f"validation pass@1 {_pct(measured)} %"
            if measured is not None
            else "validation pass@1 not measured"
        )
        target = f"{symbol}'s target, validation pass@1 ≥ {_pct(warmup[target_key])} %"
        if (warmup.get("reached") or {}).get(key):
            parts.append(f"{target}: reached at step {step} ({at})")
        else:
            parts.append(f"{target}: **missed**; the last warm-up checkpoint (step {step}, {at}) stands in")
    text = "\nWarm-up: " + "; ".join(parts) + "."  # a paragraph of its own, after the intro
    if _same_checkpoint(warmup):
        text += (
            " π_0 and φ_ref are therefore the same model: φ_DPO's reference is no stronger than the policy, "
            "unlike the paper's setting."
        )
    elif not all((warmup.get("reached") or {}).values()):
        text += " The models do not have the capabilities the demo was designed around."
    return text + "\n"


QUICK_BANNER = (
    "**Smoke test (`--quick`).** This report checks that the pipeline runs end to end on a tiny budget "
    "({problems} test problems, {budget} completions per method, {seeds} seed(s)); its values mean nothing "
    "about the methods. Run `lco demo` (the default profile) for numbers worth reading.\n\n"
)


def quick_banner(settings: DemoSettings, problems: dict[str, str]) -> str:
    if settings.profile != "quick":
        return ""
    return QUICK_BANNER.format(
        problems=problems["test"], budget=settings.rl.rollout_budget, seeds=settings.seeds
    )


def decoding_markdown(settings: DemoSettings) -> str:
    """How the table's two pass@1 columns were decoded."""
    return (
        f"Sampled: T = {settings.eval.temperature:g}, top-p {settings.eval.top_p:g}, one completion per "
        "problem. Greedy: deterministic decoding. For the policies that are not trained the spread is "
        "sampling noise only.\n"
    )


def methods_intro_markdown(records: list[dict], settings: DemoSettings) -> str:
    """Completions per prompt and steps per rollout batch, as the trained runs actually used them."""
    trained = _trained_table_methods(records)
    by_group: dict[int, list[str]] = {}
    by_iterations: dict[int, list[str]] = {}
    for runs in trained.values():
        label = runs[0]["label"]
        for n in {r["num_generations"] for r in runs}:
            by_group.setdefault(n, []).append(label)
        for k in {r["iterations_per_rollout"] for r in runs}:
            by_iterations.setdefault(k, []).append(label)
    text = []
    notes = {GROUP_SIZE: ", the paper's group size", MIN_GROUP: ", the fewest TRL's GRPOTrainer allows"}
    parts = [
        f"{_and(labels)} sample{'s' if len(labels) == 1 else ''} {n} completions per prompt{notes.get(n, '')}"
        for n, labels in sorted(by_group.items(), reverse=True)
    ]
    if parts:
        text.append("; ".join(parts) + ".")
    if len(by_group) > 1:
        most, fewest = max(by_group), min(by_group)
        text.append(
            f"With the same rollout budget, a method that samples {fewest} sees {most / fewest:g}× as many "
            f"prompts as one that samples {most}."
        )
    several = {k: labels for k, labels in by_iterations.items() if k > 1}
    for k, labels in sorted(several.items()):
        text.append(
            f"{_and(labels)} optimise{'s' if len(labels) == 1 else ''} each rollout batch for {k} epochs."
        )
    if several:
        text.append("Every other method takes one optimizer step per rollout batch.")
    text.append(
        "LCO's advantage is the dense DPO advantage log φ_DPO/φ_ref (eq. 13) unless the row says otherwise; "
        "the baselines use the rule reward (math-verify ±1). One learning rate for every method "
        f"({settings.rl.learning_rate:g}); no method is tuned."
    )
    return " ".join(text) + "\n\n"


def stability_intro_markdown(settings: DemoSettings) -> str:
    """The collapse rule and how to read the gradient-norm columns."""
    return (
        f"A run *collapses* when its greedy pass@1 curve (first {settings.rl.curve_problems} test problems, "
        f"every {settings.rl.curve_every} rollouts) falls to ≤ {int(100 * COLLAPSE_DROP)} % of its best and "
        f"stays there (its last {COLLAPSE_TAIL} points), or when training diverges. Gradient norms are "
        "TRL's `grad_norm` (before clipping), pooled over the seeds; their scale differs between losses, "
        "so compare p99 / median (spikiness) rather than absolute values.\n\n"
    )


def reward_model_markdown(rm_info: dict, settings: DemoSettings) -> str:
    """φ_DPO's data, held-out preference accuracy and, if measured, how its dense advantage ranks tokens."""
    rm = settings.reward_model
    md = [
        f"{rm_info['pairs']} pairs from {rm_info['prompts']} train prompts: {pair_recipe_text(rm)}; "
        f"{rm.samples_per_prompt} samples per prompt (π_0's sample accuracy: "
        f"{_pct(rm_info['sample_accuracy'])} %), at most {rm.max_pairs_per_prompt} pairs per prompt, "
        f"{rm.epochs} epoch(s) at learning rate {rm.learning_rate:g}, DPO β = {rm.beta:g}. "
        f"φ_DPO's preference accuracy on {rm_info['held_out_pairs']} "
        f"held-out pairs (implicit reward of the chosen above the rejected): "
        f"{_pct(rm_info['held_out_accuracy'])} %, mean margin {_fmt(rm_info['held_out_margin'])}.\n"
    ]
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
    return "".join(md)


_SOURCES = {"policy": "π_0", "reference": "φ_ref"}


def pair_recipe_text(rm: RewardModelSettings) -> str:
    """How φ_DPO's preference pairs and loss are made, in words, from the reward-model settings."""
    sources = " and ".join(f"{_SOURCES.get(s, s)}'s" for s in rm.pair_sources)
    chosen = f"a correct sample of {sources}"
    if rm.reference_chosen:
        chosen += " or the task's reference solution"
    losses = set(rm.loss_type)
    if losses == {"sigmoid", "sft"}:
        loss = "DPO + NLL on the chosen (RPO)"
    elif losses == {"sigmoid"}:
        loss = "DPO"
    else:
        loss = "TRL loss " + " + ".join(rm.loss_type)
    return (
        f"verifier-labelled pairs — rejected: an incorrect sample of {sources} (T = {rm.sample_temperature:g}), "
        f"chosen: {chosen} — with {loss}"
    )


def failed_rm_methods(gate: dict | None) -> set[str]:
    """The trained rows whose reward or advantage reads φ_DPO, when the gate failed (else none)."""
    if gate is None or gate["met"]:
        return set()
    return {
        name
        for name, m in METHODS.items()
        if m.trained and (m.reward == "dpo" or ADVANTAGE_SPECS[m.advantage].reward_models)
    }


FAILED_RM_LABEL = " — run on a failed reward model"


def label_failed_rm_rows(entries: dict, gate: dict | None) -> dict:
    """A copy of a method → {label, …} table whose φ_DPO-driven rows say they ran on a failed RM."""
    failed = failed_rm_methods(gate)
    return {
        name: {**entry, "label": entry["label"] + FAILED_RM_LABEL} if name in failed else entry
        for name, entry in entries.items()
    }


def gate_markdown(gate: dict | None) -> str:
    """The reward-model gate, before any RL number: the four greedy pass@1 and met / NOT met."""
    if gate is None:
        return ""
    beta = gate.get("pistar_beta", 1.0)
    problems = gate.get("test_problems")
    md = [
        "## Reward-model gate (before RL)\n",
        f"Greedy test pass@1 in %{f' on the first {problems} test problems' if problems else ''}. The "
        "paper's Table 1 orders φ_DPO > π* > SFT; the gate asks φ_DPO > φ_ref (DPO improved its "
        f"reference) and π*(β = {beta:g}) > π_0 (the dense advantage points towards better answers).\n\n",
        f"| π_0 (warm-up) | φ_ref | φ_DPO | π*(β = {beta:g}) | Gate |\n|---|---|---|---|---|\n",
        f"| {_pct(gate['warmup'])} | {_pct(gate['phi_ref'])} | {_pct(gate['phi_dpo'])} | {_pct(gate['pistar'])} | "
        f"{'met' if gate['met'] else '**NOT MET**'} |\n\n",
    ]
    if gate["met"]:
        md.append("Gate met: φ_DPO > φ_ref and π* > π_0, the ordering of the paper's Table 1.\n")
    else:
        failed = []
        if not gate["phi_dpo"] > gate["phi_ref"]:
            failed.append(f"φ_DPO ({_pct(gate['phi_dpo'])}) is not above φ_ref ({_pct(gate['phi_ref'])})")
        if not gate["pistar"] > gate["warmup"]:
            failed.append(f"π* ({_pct(gate['pistar'])}) is not above π_0 ({_pct(gate['warmup'])})")
        md.append(
            f"**⚠ REWARD MODEL GATE NOT MET: {'; '.join(failed)}.** The dense advantage log φ_DPO − log φ_ref "
            "does not point towards better answers here, so every row driven by φ_DPO is labelled "
            f"“{FAILED_RM_LABEL.strip(' —')}”: it tests LCO on a reward model unlike the paper's, "
            "not LCO itself.\n"
        )
    return "".join(md)


def timing_markdown(times: dict) -> str:
    return (
        "\n".join(
            f"- {k}: "
            + (
                ", ".join(f"{stage} {t:.0f} s" for stage, t in v.items())
                if isinstance(v, dict)
                else _fmt(v, 4)
            )
            for k, v in times.items()
        )
        + "\n"
    )


# What a figure's quantities mean, where the caption alone does not say it.
FIGURE_NOTES = {
    "gap": (
        'M(K) = Σ_{k<K} [Δμ(k)]₊·η_k is the cumulative Gap Alignment of Suk & Duan ("On the Optimization '
        'Dynamics of RLVR: Gradient Gap and Step Size Thresholds", arXiv:2510.08539, eq. 12): at each step, '
        "Δμ(k) is how far the update moves along the Gradient Gap (the direction that separates the correct "
        "responses' score from the incorrect ones'), and only its positive part, times the step size η_k, "
        "counts. Their Theorem 1 bounds the success rate from below by a function that rises with M(K), so a "
        "run whose M(K) grows should improve; the trainer logs it as `gap/M` (binary rewards only)."
    ),
    "entropy": (
        "Methods whose loss logs no sampled-token probability (TRL's own GRPO-family losses log only the "
        "entropy) are absent from the right panel; the panel says which."
    ),
    "grad_norm": "Thin lines: every logged step; thick lines of the same colour: a 9-step moving average.",
}

FIGURE_CAPTIONS = {
    "grad_norm": "Gradient norm vs rollouts (the paper's Figs. 1–2)",
    "grad_norm_by_sign": "Gradient norm of the tokens with positive vs negative advantage (Fig. 6)",
    "entropy": "Policy entropy and probability of the sampled token (Fig. 6 a-1/b-1)",
    "pass_vs_rollouts": "pass@1 vs rollouts (Fig. 7)",
    "lr_sweep": "Learning-rate sweep",
    "gap": "Gradient-Gap M(K) vs pass@1",
}


def report_markdown(
    settings: DemoSettings,
    records: list[dict],
    problems: dict[str, str],
    table: dict,
    stab: dict,
    sweep: dict | None,
    figures: dict[str, str],
    rm_info: dict | None,
    times: dict,
    seconds: float,
    gate: dict | None = None,
    warmup: dict | None = None,
) -> str:
    """The whole ``report.md``: the reward-model gate, results, stability, sweep, figures, reward
    model, setup and timing. ``warmup`` is the warm-up's ``warmup.json`` (its targets reached or missed)."""
    table = label_failed_rm_rows(table, gate)
    stab = label_failed_rm_rows(stab, gate)
    if sweep:
        sweep = label_failed_rm_rows(sweep, gate)
    md = [f"# lco demo — the paper's experiment in miniature (profile: {settings.profile})\n"]
    md.append(quick_banner(settings, problems))
    md.append(intro_markdown(settings, problems, seconds, warmup))
    md.append(warmup_markdown(warmup))
    md.append(gate_markdown(gate))
    md.append(f"## Results (pass@1 in %, mean ± std over {settings.seeds} seed(s); best in bold)\n")
    md.append(decoding_markdown(settings))
    md.append(table_markdown(table))
    md.append("\n### What the numbers say\n")
    md.extend(f"- {line}\n" for line in findings(table) + stability_findings(stab, records))
    md.append("\n## Stability\n")
    md.append(stability_intro_markdown(settings))
    md.append(stability_markdown(stab))
    if sweep:
        md.append("\n## Learning-rate sweep (seed 0; test pass@1 in %)\n")
        md.append(sweep_markdown(sweep, settings.lr_sweep))
    md.append("\n## Figures\n")
    for key, name in figures.items():
        md.append(f"\n**{FIGURE_CAPTIONS[key]}**\n\n![{FIGURE_CAPTIONS[key]}](figures/{name})\n")
        if key in FIGURE_NOTES:
            md.append(f"\n{FIGURE_NOTES[key]}\n")
    if rm_info is not None:
        md.append("\n## Reward model\n")
        md.append(reward_model_markdown(rm_info, settings))
    md.append("\n## Setup: methods\n")
    md.append(methods_intro_markdown(records, settings))
    md.append(_methods_markdown(records, settings))
    md.append("\n## Setup: every hyper-parameter\n")
    md.append(_settings_markdown(settings))
    md.append("\n## Timing\n")
    md.append(timing_markdown(times))
    return _tidy_markdown("".join(md))


__all__ = [
    "FIGURE_NOTES",
    "findings",
    "gate_markdown",
    "label_failed_rm_rows",
    "pair_recipe_text",
    "report_markdown",
    "stability_findings",
    "stability_markdown",
    "sweep_markdown",
    "table_markdown",
    "warmup_markdown",
]
