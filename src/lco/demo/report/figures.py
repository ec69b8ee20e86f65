"""The report's figures (matplotlib, Agg backend): one PNG per figure that has data.

- gradient norm vs rollouts for the dynamics methods, PPO and LCO-KLD (the paper's Figs. 1–2);
- gradient norm of the positive- and negative-advantage tokens (Fig. 6);
- policy entropy and the probability of the sampled token (Fig. 6 a-1/b-1);
- greedy pass@1 vs rollouts (Fig. 7);
- the learning-rate sweep, collapses marked;
- Gradient-Gap M(K) vs pass@1, when the trainer logged ``gap/M``.

The x axis is *rollouts* (completions sampled), not optimizer steps: PPO takes several steps per
rollout batch, and the methods are compared at equal sampling cost. A method that optimises each
batch for several epochs has its steps spread evenly over that batch's interval (step j of E over a
batch of B completions at (j/E)·B into it), not stacked at one rollout count.

Each method has one colour in every figure (:func:`method_colours`); within a method's own panel the
seeds are coloured instead, each seed's raw and smoothed lines in the same colour.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from ..methods import DYNAMICS_METHODS
from ..settings import DemoSettings


def _series(log_history: list[dict], key: str, iterations: int, batch_size: int) -> tuple[list, list]:
    """(rollouts, values) of a logged metric; a step's x is the completions sampled up to it, with the
    ``iterations`` epochs of one rollout batch spread over that batch (see the module docstring)."""
    xs, ys = [], []
    for entry in log_history:
        if (
            key in entry
            and "step" in entry
            and isinstance(entry[key], int | float)
            and math.isfinite(entry[key])
        ):
            xs.append(entry["step"] / iterations * batch_size)
            ys.append(float(entry[key]))
    return xs, ys


def method_colours(methods) -> dict[str, str]:
    """One matplotlib colour per method, in the given order, shared by every figure and legend."""
    return {m: f"C{i % 10}" for i, m in enumerate(methods)}


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


def _method_panels(plt, groups: list[list[dict]], draw, what: str, ylabel: str, per_row: int = 4):
    """One panel per method (its runs), ``per_row`` to a row: ``draw(ax, runs)`` plots them against
    rollouts; the panel is titled "<method>: <what>" and has a legend."""
    rows = math.ceil(len(groups) / per_row)
    cols = min(len(groups), per_row)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 3.8 * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax, runs in zip(flat, groups, strict=False):
        draw(ax, runs)
        ax.set(title=f"{runs[0]['label']}: {what}", xlabel="rollouts", ylabel=ylabel)
        ax.legend(fontsize=8)
    for ax in flat[len(groups) :]:
        ax.set_visible(False)
    return fig


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

    colours = method_colours(by_method)
    # every trained method (GRPO included), the paper's PPO vs LCO-KLD pair first
    plotted = [m for m in DYNAMICS_METHODS if m in by_method] + [
        m for m in by_method if m not in DYNAMICS_METHODS
    ]

    def grad_norm_panel(ax, runs):
        for i, r in enumerate(runs):
            xs, ys = series(r, "grad_norm")
            seed_colour = f"C{i % 10}"  # the raw and the smoothed line of one seed share its colour
            ax.plot(xs, ys, lw=0.6, alpha=0.35, color=seed_colour)
            ax.plot(xs, _smooth(ys), lw=1.6, color=seed_colour, label=f"seed {r['seed']}")

    def by_sign_panel(ax, runs):
        for key, color, name in (
            ("lco/grad_norm_pos", "tab:green", "A > 0"),
            ("lco/grad_norm_neg", "tab:red", "A < 0"),
        ):
            for i, r in enumerate(runs):
                xs, ys = series(r, key)
                ax.plot(xs, ys, color=color, lw=1.2, alpha=0.8, label=name if i == 0 else None)

    # Figs. 1–2: gradient norm during training, PPO vs LCO-KLD
    if plotted:
        groups = [by_method[m] for m in plotted]
        fig = _method_panels(plt, groups, grad_norm_panel, "gradient norm", "‖∇θ L‖ (before clipping)")
        save(fig, "grad_norm", "grad_norm.png")

    # Fig. 6: gradient norm restricted to tokens with A > 0 and A < 0
    sign_methods = [m for m in plotted if any(series(r, "lco/grad_norm_pos")[0] for r in by_method[m])]
    if sign_methods:
        groups = [by_method[m] for m in sign_methods]
        fig = _method_panels(plt, groups, by_sign_panel, "gradient norm by advantage sign", "‖∇θ L‖")
        save(fig, "grad_norm_by_sign", "grad_norm_by_sign.png")

    # entropy and sampled-token probability (Fig. 6 a-1/b-1), every trained method, mean over seeds
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    any_line = False
    panels = (
        (axes[0], ("lco/entropy", "entropy"), "policy entropy (nats/token)"),
        (axes[1], ("lco/sampled_prob",), "probability of the sampled token"),
    )
    for ax, keys, title in panels:
        missing = []
        for method, runs in by_method.items():
            per_run = []
            for r in runs:
                key = next((k for k in keys if series(r, k)[0]), None)
                if key is not None:
                    per_run.append(series(r, key))
            xs, ys = _mean_curve(per_run)
            if xs:
                ax.plot(xs, _smooth(ys), lw=1.4, color=colours[method], label=runs[0]["label"])
                any_line = True
            else:
                missing.append(runs[0]["label"])
        ax.set(title=title, xlabel="rollouts")
        if missing:  # say who is absent instead of leaving the reader to wonder
            ax.text(
                0.02,
                0.02,
                f"not logged: {', '.join(missing)}",
                transform=ax.transAxes,
                fontsize=7,
                color="dimgray",
                va="bottom",
            )
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
        for method, runs in by_method.items():
            curves = [
                ([p["rollouts"] for p in r["curve"]], [p["pass@1"] for p in r["curve"]])
                for r in runs
                if r["curve"]
            ]
            xs, ys = _mean_curve(curves)
            if not xs:
                continue
            colour = colours[method]
            ax.plot(xs, [100 * y for y in ys], marker="o", ms=3, lw=1.4, color=colour, label=runs[0]["label"])
            if len(curves) > 1:  # the band of the seeds, in the line's colour
                lows = [100 * min(dict(zip(*c, strict=True))[x] for c in curves) for x in xs]
                highs = [100 * max(dict(zip(*c, strict=True))[x] for c in curves) for x in xs]
                ax.fill_between(xs, lows, highs, alpha=0.12, color=colour)
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
                ax.scatter(xs, ys, s=14, color=colours[m], label=by_method[m][0]["label"])
        if ax.collections:
            ax.set(
                title="Gradient-Gap M(K) vs pass@1",
                xlabel="M(K) = Σ [Δμ(k)]₊ η_k (cumulative Gap Alignment, eq. 12 of arXiv:2510.08539)",
                ylabel="greedy pass@1 (%)",
            )
            ax.legend(fontsize=7)
            save(fig, "gap", "gap_m_vs_pass.png")
        else:
            plt.close(fig)
    return written


def stability_map_figure(smap: dict, ladder, path: Path) -> None:
    """The study's stability map: method × learning rate, coloured by the fraction of seeds that
    collapsed (0 white … 1 red), each cell annotated with its mean test pass@1 (%) and collapses/runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(smap)
    grid = [[math.nan] * len(ladder) for _ in methods]
    fig, ax = plt.subplots(figsize=(1.3 * len(ladder) + 4.5, 0.55 * len(methods) + 1.8))
    for i, m in enumerate(methods):
        for j, lr in enumerate(ladder):
            cell = smap[m]["cells"].get(f"{lr:g}")
            if cell is None:
                continue
            grid[i][j] = cell["collapsed_fraction"]
            mean = cell["test_pass@1"]["mean"]
            text = f"{'—' if mean is None else f'{100 * mean:.1f}'}\n{cell['collapses']}/{cell['runs']}"
            colour = "white" if cell["collapsed_fraction"] > 0.6 else "black"  # readable on dark red
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color=colour)
    image = ax.imshow(grid, cmap="Reds", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(ladder)), [f"{lr:g}" for lr in ladder])
    ax.set_yticks(range(len(methods)), [smap[m]["label"] for m in methods], fontsize=8)
    ax.set(
        xlabel="learning rate",
        title="colour: fraction of seeds collapsed\nnumbers: mean test pass@1 %, collapses/runs",
    )
    ax.title.set_fontsize(9)
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def study_curves_figure(panels: dict[str, dict[str, tuple[list, list]]], problems: int, path: Path) -> None:
    """Greedy pass@1 vs rollouts, one panel per setting (title → label → mean curve)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (title, curves) in zip(axes[0], panels.items(), strict=True):
        for label, (xs, ys) in curves.items():
            ax.plot(xs, [100 * y for y in ys], marker="o", ms=3, lw=1.4, label=label)
        ax.set(
            title=title,
            xlabel="rollouts (completions sampled)",
            ylabel=f"greedy pass@1 on {problems} test problems (%)",
        )
        if curves:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


__all__ = ["make_figures", "stability_map_figure", "study_curves_figure"]
