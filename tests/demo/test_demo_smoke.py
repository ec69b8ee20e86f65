"""``lco demo --quick`` end to end (the CI smoke test): the report's structure, finiteness, figures,
and that a second run reuses every stage except one we corrupted, which it rebuilds with a warning.

Values are not checked: the quick profile's budget is too small for them to mean anything.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys

import pytest

FIGURES = ("grad_norm.png", "grad_norm_by_sign.png", "entropy_sampled_prob.png", "pass_vs_rollouts.png")
RUN_KEYS = {
    "method",
    "seed",
    "learning_rate",
    "splits",
    "rollouts",
    "wall_seconds",
    "collapsed",
    "grad_norm",
    "status",
    "curve",
}


def _demo(out, *extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "lco.cli", "demo", "--quick", "--out", str(out), *extra],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )


def _numbers(obj):
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return
    if isinstance(obj, int | float):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _numbers(v)


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    proc = _demo(out)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return out, proc


@pytest.mark.slow
def test_results_json_has_every_run_split_and_finite_numbers(quick_demo):
    out, _ = quick_demo
    results = json.loads((out / "results.json").read_text())
    assert results["profile"] == "quick"
    methods = {r["method"] for r in results["runs"]}
    assert methods == {"warmup", "lco_kld", "ppo", "grpo"}
    for run in results["runs"]:
        assert RUN_KEYS <= set(run), RUN_KEYS - set(run)
        for split in ("test", "hard"):
            assert 0.0 <= run["splits"][split]["pass@1"] <= 1.0
            assert 0.0 <= run["splits"][split]["greedy_pass@1"] <= 1.0
        if run["method"] != "warmup":
            assert run["rollouts"] == results["settings"]["rl"]["rollout_budget"]
            assert run["grad_norm"]["steps"] > 0 and run["curve"]
    assert set(results["table"]) == methods
    assert set(results["stability"]) == methods - {"warmup"}
    numbers = list(_numbers(results))
    assert numbers and all(math.isfinite(x) for x in numbers)


@pytest.mark.slow
def test_report_md_has_the_table_the_sections_and_finite_numbers(quick_demo):
    out, proc = quick_demo
    report = (out / "report.md").read_text()
    for section in (
        "## Results",
        "## Stability",
        "## Figures",
        "## Reward model",
        "## Setup: every hyper-parameter",
    ):
        assert section in report
    assert "| Method | Test pass@1 | Hard pass@1 | Test greedy | Hard greedy |" in report
    for label in ("SFT warm-up (no RL)", "LCO-KLD", "PPO", "GRPO"):
        assert f"| {label} |" in report
    assert not re.search(r"\b(nan|inf|NaN|Infinity)\b", report)
    for name in FIGURES:
        assert (out / "figures" / name).stat().st_size > 1000
        assert f"figures/{name}" in report
    # the command prints the table and says where the report is
    assert "| Method |" in proc.stdout and str(out / "report.md") in proc.stdout
    # issue 20: --quick is a smoke test, said in the report and above the printed numbers
    assert "Smoke test (`--quick`)" in report and "its values mean nothing" in report
    assert proc.stdout.index("Smoke test (`--quick`)") < proc.stdout.index("| Method |")


@pytest.mark.slow
def test_rerun_reuses_finished_stages_and_rebuilds_a_corrupted_one(quick_demo):
    out, _ = quick_demo
    stages = out / "stages"
    done_before = {p.parent: p.stat().st_mtime_ns for p in stages.rglob("DONE")}
    weights = stages / "rl" / "grpo-s0-lr0.0001" / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # a truncated checkpoint
    proc = _demo(out)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "grpo-s0-lr0.0001 is corrupted" in proc.stderr
    done_after = {p.parent: p.stat().st_mtime_ns for p in stages.rglob("DONE")}
    rebuilt = {p.relative_to(stages).as_posix() for p in done_after if done_after[p] != done_before.get(p)}
    # the corrupted run and its evaluation (its input changed) are rebuilt; nothing else
    assert rebuilt == {"rl/grpo-s0-lr0.0001", "eval/grpo-s0-lr0.0001"}


@pytest.mark.slow
def test_reward_model_gate_is_measured_before_rl_and_recorded(quick_demo):
    out, proc = quick_demo
    results = json.loads((out / "results.json").read_text())
    gate = results["reward_model_gate"]
    assert set(gate) == {"warmup", "phi_ref", "phi_dpo", "pistar", "met"}
    assert all(0.0 <= gate[k] <= 1.0 for k in ("warmup", "phi_ref", "phi_dpo", "pistar"))
    assert gate["met"] is (gate["phi_dpo"] > gate["phi_ref"] and gate["pistar"] > gate["warmup"])
    # π_0's gate value is the greedy test pass@1 that the evaluation stage measures on its own
    warmup_run = next(r for r in results["runs"] if r["method"] == "warmup")
    assert gate["warmup"] == warmup_run["splits"]["test"]["greedy_pass@1"]
    # measured before any RL run was trained
    stages = out / "stages"
    gate_done = (stages / "reward-model-gate" / "DONE").stat().st_mtime_ns
    assert all(gate_done < p.stat().st_mtime_ns for p in (stages / "rl").rglob("DONE"))
    if not gate["met"]:
        assert "REWARD MODEL GATE NOT MET" in proc.stdout
