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
