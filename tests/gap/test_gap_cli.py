"""``lco gap bandit``: writes its PNGs and JSON, and rejects bad input before running anything."""

import argparse
import json
import time

import pytest

from lco.gap.cli import add_parser, main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _run(tmp_path, *flags):
    return main(["bandit", *flags, "--out", str(tmp_path), "--no-progress"])


def _assert_png(path):
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_mab_writes_figure_and_json(tmp_path):
    assert _run(tmp_path, "--mab", "--steps", "40", "--seed", "3") == 0
    _assert_png(tmp_path / "fig4_multi_armed_bandit.png")
    payload = json.loads((tmp_path / "multi_armed_bandit.json").read_text())
    result = payload["multi_armed_bandit"]
    assert result["config"]["steps"] == 40 and result["config"]["seed"] == 3
    assert len(result["success_rate"]) == 41
    assert payload["runtime_seconds"] >= 0


def test_contextual_writes_figure_and_json(tmp_path):
    assert _run(tmp_path, "--contextual", "--steps", "30", "--eta", "0.2") == 0
    _assert_png(tmp_path / "fig1_contextual_bandit.png")
    result = json.loads((tmp_path / "contextual_bandit.json").read_text())["contextual_bandit"]
    assert result["config"]["eta"] == 0.2
    assert len(result["success_rate"][0]) == 500  # the paper's 500 evaluation contexts


def test_threshold_writes_both_figures_and_json(tmp_path):
    assert _run(tmp_path, "--threshold", "--steps", "30") == 0
    _assert_png(tmp_path / "step_size_threshold.png")
    _assert_png(tmp_path / "grpo_vs_dr_grpo_step_sizes.png")
    payload = json.loads((tmp_path / "step_size_threshold.json").read_text())
    assert {"step_size_threshold", "grpo_vs_dr_grpo_step_sizes"} <= payload.keys()


def test_out_directory_is_created(tmp_path):
    out = tmp_path / "nested" / "dir"
    assert main(["bandit", "--mab", "--steps", "5", "--out", str(out), "--no-progress"]) == 0
    assert (out / "multi_armed_bandit.json").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bandit", "--out", "x"], "one of the arguments --contextual --mab --threshold is required"),
        (["bandit", "--mab", "--threshold", "--out", "x"], "not allowed with argument"),
        (["bandit", "--mab"], "--out"),
        (["bandit", "--mab", "--steps", "0", "--out", "x"], "positive integer"),
        (["bandit", "--mab", "--eta", "-1", "--out", "x"], "positive finite number"),
        ([], "bandit"),
    ],
)
def test_bad_arguments_exit_with_a_usage_error(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_unwritable_out_dir_is_rejected_before_running(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    start = time.perf_counter()
    with pytest.raises(SystemExit) as exit_info:
        main(["bandit", "--contextual", "--out", str(blocker / "out")])
    assert exit_info.value.code == 2
    assert "cannot write to output directory" in capsys.readouterr().err
    assert time.perf_counter() - start < 1.0  # failed at parse time, no experiment ran


def test_eta_is_rejected_for_the_threshold_sweep(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _run(tmp_path, "--threshold", "--eta", "0.1")
    assert exit_info.value.code == 2
    assert "--threshold sweeps η itself" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_add_parser_registers_gap_bandit_on_a_parent_command(tmp_path):
    parser = argparse.ArgumentParser(prog="lco")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        ["gap", "bandit", "--mab", "--steps", "5", "--out", str(tmp_path), "--no-progress"]
    )
    assert args.command == "gap" and args.mode == "mab"
    assert args.func(args) == 0
    assert (tmp_path / "multi_armed_bandit.json").exists()


def test_a_bandit_that_converges_writes_its_results(tmp_path, capsys):
    """Issue 20: η = 1e30 puts all of π on the best arm in one step; that is a result, not an error."""
    assert (
        main(["bandit", "--mab", "--eta", "1e30", "--steps", "50", "--out", str(tmp_path), "--no-progress"])
        == 0
    )
    _assert_png(tmp_path / "fig4_multi_armed_bandit.png")
    result = json.loads((tmp_path / "multi_armed_bandit.json").read_text())["multi_armed_bandit"]
    k = result["converged_at_step"]
    assert k is not None and 1 <= k <= 50
    # one step of η·∇J with ∇J_best = J(1 − J) > 0 and every other component < 0: J = 1 in float64 after it
    assert result["success_rate"][-1] == 1.0 and result["step"] == list(range(k + 1))
    assert result["gap_alignment"][-1] == "nan"  # the Gradient Gap is undefined once no wrong arm has mass
    assert result["success_rate"][0] == pytest.approx(0.01)  # θ_0 = 0: uniform over 100 arms


def test_a_bandit_that_does_not_converge_reports_none(tmp_path):
    assert _run(tmp_path, "--mab", "--steps", "20") == 0
    result = json.loads((tmp_path / "multi_armed_bandit.json").read_text())["multi_armed_bandit"]
    assert result["converged_at_step"] is None and len(result["success_rate"]) == 21


def test_fig1_colour_bars_name_what_they_colour(tmp_path, monkeypatch):
    """The middle panel is coloured by the final J_x, the outer ones by the step: one colour bar each."""
    from matplotlib.figure import Figure

    from lco.gap import bandits, figures

    saved = []
    monkeypatch.setattr(Figure, "savefig", lambda self, path, **kw: saved.append(self))
    figures.plot_contextual_bandit(bandits.contextual_bandit(steps=4, progress=False), tmp_path / "f.png")
    (fig,) = saved
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert sorted(labels) == ["final J_x(K) (middle panel)", "step k (left and right panels)"]
