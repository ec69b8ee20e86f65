"""Issue 20: the report's figures show every method, draw PPO's epochs where they happen, and their legend
colours are the colours of the lines they name."""

from __future__ import annotations

import pytest
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from lco.demo.report.figures import _series, make_figures
from lco.demo.settings import profile_settings

BATCH = profile_settings("default").rl.batch_size


def _runs():
    records = []
    for method, label, iterations, logs_prob in (
        ("lco_kld", "LCO-KLD", 1, True),
        ("ppo", "PPO", 4, True),
        ("grpo", "GRPO", 1, False),  # TRL's loss logs the entropy but no sampled-token probability
    ):
        for seed in (0, 1):
            history = []
            for step in range(1, 12 * iterations + 1):
                entry = {
                    "step": step,
                    "grad_norm": 1.0 + 0.1 * seed + 0.05 * (step % 3),
                    "entropy": 2.0 - 0.01 * step,
                }
                if logs_prob:
                    entry["lco/sampled_prob"] = 0.3 + 0.01 * step
                history.append(entry)
            curve = [
                {"step": k * iterations, "rollouts": k * BATCH, "pass@1": 0.1 + 0.01 * k + 0.02 * seed}
                for k in (0, 4, 8, 12)
            ]
            if method == "lco_kld" and seed == 1:
                curve = []  # LCO-KLD then has one curve and no seed band: the bands must not shift colour
            records.append(
                {
                    "method": method,
                    "label": label,
                    "seed": seed,
                    "purpose": "table",
                    "trained": True,
                    "iterations_per_rollout": iterations,
                    "_history": history,
                    "curve": curve,
                }
            )
    return records


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    """file name → the matplotlib Figure that make_figures saved under it (drawn once for the module)."""
    saved = {}
    original = Figure.savefig

    def keep(self, path, *args, **kwargs):
        saved[str(path).rsplit("/", 1)[-1]] = self
        return original(self, path, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Figure, "savefig", keep)
        written = make_figures(_runs(), profile_settings("default"), None, tmp_path_factory.mktemp("figures"))
    assert {"grad_norm", "entropy", "pass_vs_rollouts"} <= set(written)
    return saved


def _legend_matches_lines(ax):
    legend = ax.get_legend()
    assert legend is not None
    lines = {line.get_label(): line for line in ax.get_lines()}
    for handle, text in zip(legend.legend_handles, legend.get_texts(), strict=True):
        assert to_rgba(handle.get_color()) == to_rgba(lines[text.get_text()].get_color()), text.get_text()


def test_ppo_epochs_are_spread_over_their_rollout_batch_not_stacked():
    history = [{"step": s, "grad_norm": float(s)} for s in range(1, 9)]
    xs, _ = _series(history, "grad_norm", iterations=4, batch_size=64)
    assert xs == [16.0, 32.0, 48.0, 64.0, 80.0, 96.0, 112.0, 128.0]  # step j of 4 at (j/4)·64
    assert len(set(xs)) == len(xs)  # no two steps at one x: no vertical jumps
    one_epoch, _ = _series(history, "grad_norm", iterations=1, batch_size=64)
    assert one_epoch == [64.0 * s for s in range(1, 9)]


def test_the_gradient_norm_figure_has_every_trained_method(figures):
    titles = [ax.get_title() for ax in figures["grad_norm.png"].axes if ax.get_visible()]
    assert titles == ["PPO: gradient norm", "LCO-KLD: gradient norm", "GRPO: gradient norm"]


def test_raw_and_smoothed_lines_of_a_seed_share_the_legend_colour(figures):
    for ax in figures["grad_norm.png"].axes:
        if not ax.get_visible():
            continue
        _legend_matches_lines(ax)
        lines = ax.get_lines()
        for raw, smooth in zip(lines[0::2], lines[1::2], strict=True):
            assert to_rgba(raw.get_color(), 1) == to_rgba(smooth.get_color(), 1)


def test_a_method_has_one_colour_in_both_panels_and_the_absent_one_is_named(figures):
    entropy, sampled = figures["entropy_sampled_prob.png"].axes
    colours = [
        {line.get_label(): to_rgba(line.get_color()) for line in ax.get_lines()} for ax in (entropy, sampled)
    ]
    assert set(colours[0]) == {"LCO-KLD", "PPO", "GRPO"} and set(colours[1]) == {"LCO-KLD", "PPO"}
    assert all(colours[0][m] == colours[1][m] for m in colours[1])
    for ax in (entropy, sampled):
        _legend_matches_lines(ax)
    assert any("not logged: GRPO" in t.get_text() for t in sampled.texts)


def test_the_seed_band_has_its_lines_colour(figures):
    (ax,) = figures["pass_vs_rollouts.png"].axes
    _legend_matches_lines(ax)
    bands = ax.collections
    banded = [line for line in ax.get_lines() if line.get_label() != "LCO-KLD"]
    assert len(bands) == len(banded) == 2
    for line, band in zip(banded, bands, strict=True):
        assert to_rgba(band.get_facecolor()[0], 1) == to_rgba(line.get_color(), 1)
