"""PNG figures for the bandit experiments of :mod:`lco.gap.bandits`, one function per figure.

Each function takes the dict an experiment returned and a path, and writes one PNG. They use
matplotlib's object API with the Agg canvas (``Figure.savefig``), so importing this module never
touches the global pyplot backend of the caller.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter, ScalarFormatter


def _lower_bound_curve(initial_success_rate: float, cumulative: np.ndarray) -> np.ndarray:
    """J(0) / (J(0) + (1 − J(0))·exp(−M/2)), eq. (13b), evaluated on a grid of M."""
    return initial_success_rate / (
        initial_success_rate + (1 - initial_success_rate) * np.exp(-cumulative / 2)
    )


def plot_multi_armed_bandit(result: dict, path: str | Path) -> Path:
    """Fig. 4 (App. I.1): J(k); Δμ(k) against J(k); J(k) against M(k) with the bound (13b)."""
    step = np.asarray(result["step"])
    success = np.asarray(result["success_rate"])
    delta_mu = np.asarray(result["gap_alignment"])
    cumulative = np.asarray(result["cumulative_gap_alignment"])
    fig = Figure(figsize=(15, 4.2), layout="constrained")
    ax_j, ax_gap, ax_m = fig.subplots(1, 3)

    ax_j.plot(step, success)
    ax_j.set(xlabel="step k", ylabel="J(k)", title="value function")

    steps = {"vmin": 0, "vmax": max(int(step[-1]), 1)}  # the whole run, also where Δμ is NaN (converged)
    points = ax_gap.scatter(success, delta_mu, c=step, s=4, cmap="viridis", **steps)
    grid = np.linspace(0, 1, 200)
    ax_gap.plot(grid, grid * (1 - grid), "k--", lw=1, label="J(1 − J)")
    ax_gap.set(xlabel="J(k)", ylabel="Δμ(k)  (w_k = ∇J, η_k = η)", title="Gap Alignment (eq. 10)")
    ax_gap.legend(loc="upper right")

    ax_m.scatter(cumulative, success, c=step, s=4, cmap="viridis", **steps)
    m_grid = np.linspace(0, np.nanmax(cumulative), 200)
    ax_m.plot(m_grid, _lower_bound_curve(success[0], m_grid), "k--", lw=1, label="lower bound (13b)")
    ax_m.set(xlabel="M(k) = Σ [Δμ]₊ η (eq. 12)", ylabel="J(k)", title="Cumulative Gap Alignment")
    ax_m.legend(loc="lower right")
    fig.colorbar(points, ax=[ax_gap, ax_m], label="step k")
    cfg = result["config"]
    converged = result.get("converged_at_step")
    note = "" if converged is None else f"; converged (J = 1, Gap undefined) at step {converged}"
    fig.suptitle(f"Fig. 4 — REINFORCE on a {cfg['num_arms']}-armed bandit, η = {cfg['eta']}{note}")
    return _save(fig, path)


def plot_contextual_bandit(result: dict, path: str | Path, num_curves: int = 80) -> Path:
    """Fig. 1 (§6.1): J_x vs M_x; M_x(k) per context; J_x vs the relative M_x."""
    steps = np.asarray(result["record_step"])
    success = np.asarray(result["success_rate"])  # (records, contexts)
    cumulative = np.asarray(result["cumulative_gap_alignment"])
    relative = np.asarray(result["relative_cumulative_gap_alignment"])
    step_colour = np.broadcast_to(steps[:, None], success.shape)
    fig = Figure(figsize=(15, 4.2), layout="constrained")
    ax_m, ax_curves, ax_rel = fig.subplots(1, 3)

    points = ax_m.scatter(
        cumulative.ravel(), success.ravel(), c=step_colour.ravel(), s=1, cmap="viridis", rasterized=True
    )
    m_grid = np.linspace(0, cumulative.max(), 200)
    initial = float(np.mean(result["initial_success_rate"]))
    ax_m.plot(
        m_grid, _lower_bound_curve(initial, m_grid), "k--", lw=1, label=f"bound (13b), J(0) = {initial:.3f}"
    )
    ax_m.set(xlabel="M_x(k) = Σ [Δμ_x]₊ η", ylabel="J_x(k)", title="value vs Cumulative Gap Alignment")
    ax_m.legend(loc="center right")

    final = success[-1]
    shown = np.linspace(0, success.shape[1] - 1, min(num_curves, success.shape[1])).astype(int)
    colour_map = colormaps["plasma"]  # another map than the step colouring: the middle panel shows J, not k
    for context in shown:
        ax_curves.plot(steps, cumulative[:, context], color=colour_map(final[context]), lw=0.8)
    final_j = ScalarMappable(norm=Normalize(0.0, 1.0), cmap=colour_map)
    fig.colorbar(final_j, ax=ax_curves, label="final J_x(K) (middle panel)")
    ax_curves.set(
        xlabel="step k", ylabel="M_x(k)", title=f"per-context M_x (colour: final J_x), {len(shown)} contexts"
    )

    ax_rel.scatter(
        relative.ravel(), success.ravel(), c=step_colour.ravel(), s=1, cmap="viridis", rasterized=True
    )
    ax_rel.set(
        xlabel="Σ ([Δμ_x]₊ − [Δμ_{x_i}]₊) η",
        ylabel="J_x(k)",
        title="value vs relative Cumulative Gap Alignment",
    )
    fig.colorbar(points, ax=[ax_m, ax_rel], location="right", label="step k (left and right panels)")
    cfg = result["config"]
    fig.suptitle(
        f"Fig. 1 — contextual bandit: d = {cfg['dim']}, N = {cfg['num_arms']}, η = {cfg['eta']}, "
        f"{cfg['num_eval_contexts']} evaluation contexts, K = {cfg['steps']}"
    )
    return _save(fig, path)


def plot_step_size_threshold(result: dict, path: str | Path) -> Path:
    """Theorem 2 instance: J(k) at several η; J(K) against η/η*; the paper's own constructions."""
    eta_star = result["eta_star"]
    fig = Figure(figsize=(15, 4.2), layout="constrained")
    ax_runs, ax_sweep, ax_paper = fig.subplots(1, 3)

    for run in result["trajectories"]:
        ax_runs.semilogy(run["success_rate"], label=f"η = {run['eta_ratio']}·η*")
    ax_runs.set(
        xlabel="step k", ylabel="J(k)", title=f"held Gap Alignment Δμ = {result['config']['target_gap']}"
    )
    ax_runs.legend()

    sweep = result["sweep"]
    ax_sweep.axhline(0.0, color="grey", lw=0.8)
    ax_sweep.plot(
        sweep["eta_ratio"],
        sweep["predicted_log_odds_change_per_step"],
        "k-",
        lw=1,
        label="App. F closed form",
    )
    ax_sweep.plot(sweep["eta_ratio"], sweep["log_odds_change_per_step"], "o", label="simulated")
    for value, label, colour in [
        (1.0, "η* (exact threshold)", "k"),
        (result["theorem1_safe_eta"] / eta_star, "Thm 1 safe η (13a)", "g"),
        (result["theorem2_collapse_eta_low"] / eta_star, "Thm 2 collapse range starts", "r"),
    ]:
        ax_sweep.axvline(value, color=colour, ls="--", lw=1, label=label)
    ax_sweep.set(
        xscale="log",
        xlabel="η / η*",
        ylabel="mean change of log(J/(1 − J)) per step",
        title=f"constant step size sweep, K = {result['config']['steps']}",
    )
    ax_sweep.legend(loc="lower left", fontsize=8)

    for run in result["paper_constructions"]:
        ax_paper.semilogy(
            run["success_rate"], label=f"Thm {run['theorem']} (T = {run['length']}), η = {run['eta']:.3f}"
        )
    ax_paper.set(xlabel="step k", ylabel="J(k)", title="paper's constructions: Δμ(k) > 0, J → 0")
    ax_paper.legend()
    fig.suptitle("Step-size threshold on the Theorem 2 instance (App. F)")
    return _save(fig, path)


def plot_grpo_vs_dr_grpo(result: dict, path: str | Path) -> Path:
    """Eqs. (17)–(18): η_k / η_safe of GRPO and Dr. GRPO against T and against J."""
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    ax_length, ax_rate = fig.subplots(1, 2)
    for ax, rows, key in [
        (ax_length, result["by_length"], "length"),
        (ax_rate, result["by_success_rate"], "success_rate"),
    ]:
        x = [row[key] for row in rows]
        for name, label, colour in [
            ("grpo", "GRPO (5)", "C0"),
            ("dr_grpo", "Dr. GRPO / REINFORCE (4)", "C1"),
        ]:
            safe = [row["safe_eta_eq18"] for row in rows]
            measured = [row[f"{name}_eta"] / s for row, s in zip(rows, safe, strict=True)]
            forecast = [row[f"{name}_eta_eq17"] / s for row, s in zip(rows, safe, strict=True)]
            ax.plot(x, measured, "o-", color=colour, label=f"{label}, exact")
            ax.plot(x, forecast, "--", color=colour, lw=1, label=f"{label}, eq. (17)")
        ax.set_yscale("log")
        ax.set_ylabel("η_k / (Δμ(1 − J)/T_ψ1)   [eq. 18 scale]")
        ax.legend(fontsize=8)
    cfg = result["config"]
    ax_length.set(xscale="log", xlabel="response length T", title=f"J = {cfg['fixed_success_rate']}")
    ax_length.set_xticks([row["length"] for row in result["by_length"]])
    for axis in (ax_length.xaxis, ax_length.yaxis, ax_rate.yaxis):
        axis.set_major_formatter(ScalarFormatter())
        axis.set_minor_formatter(NullFormatter())
    ax_rate.set(xlabel="success rate J", title=f"T = {cfg['fixed_length']}")
    fig.suptitle(f"Effective step size relative to the safe scale, α = {cfg['alpha']} (Theorem 4 instance)")
    return _save(fig, path)


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path
