"""The report's statistics: the collapse rule, gradient-norm statistics, the table, honest findings."""

from __future__ import annotations

import math

from lco.demo.report import collapsed, findings, mean_std, method_table, norm_stats, sanitize, table_markdown


def _curve(values):
    return [{"step": 10 * i, "rollouts": 160 * i, "pass@1": v} for i, v in enumerate(values)]


def test_a_run_that_falls_below_half_its_best_and_stays_there_collapsed():
    assert collapsed(_curve([0.3, 0.5, 0.45, 0.2, 0.1]))[0]
    assert collapsed(_curve([0.3, 0.3, 0.0, 0.0]))[0]


def test_a_dip_that_recovers_or_a_late_best_is_not_a_collapse():
    assert not collapsed(_curve([0.3, 0.5, 0.1, 0.45]))[0]  # recovered
    assert not collapsed(_curve([0.3, 0.5, 0.3, 0.26]))[0]  # down, but not to half
    assert not collapsed(_curve([0.1, 0.2, 0.4, 0.6]))[0]  # improving
    assert not collapsed(_curve([0.0, 0.0, 0.0]))[0]  # never learned anything: nothing to collapse from
    assert not collapsed(_curve([0.5]))[0]


def test_divergence_is_a_collapse():
    is_collapsed, why = collapsed(_curve([0.3, 0.4]), diverged=True)
    assert is_collapsed and "diverged" in why


def test_norm_stats_ignore_non_finite_values():
    stats = norm_stats([1.0, 2.0, 3.0, float("nan"), float("inf"), 100.0])
    assert stats["median"] == 2.5 and stats["max"] == 100.0 and stats["non_finite_steps"] == 2
    assert math.isclose(stats["p99_over_median"], stats["p99"] / 2.5)
    assert norm_stats([float("nan")]) is None
    assert norm_stats([0.0, 0.0])["p99_over_median"] is None


def test_std_over_one_seed_is_absent_not_zero():
    assert mean_std([0.4]) == {"mean": 0.4, "std": None, "n": 1}
    assert math.isclose(mean_std([0.2, 0.4])["std"], math.sqrt(0.02))


def _record(method, label, seed, test, hard=0.1):
    split = {"pass@1": test, "greedy_pass@1": test, "problems": 10}
    return {
        "method": method,
        "label": label,
        "seed": seed,
        "purpose": "table",
        "splits": {"test": split, "hard": {**split, "pass@1": hard, "greedy_pass@1": hard}},
    }


def test_table_bolds_the_best_mean_and_findings_report_losses_too():
    records = [
        _record("warmup", "Warm-up", 0, 0.30),
        _record("lco_kld", "LCO-KLD", 0, 0.40),
        _record("lco_kld", "LCO-KLD", 1, 0.42),
        _record("grpo", "GRPO", 0, 0.50),
        _record("grpo", "GRPO", 1, 0.515),
        _record("ppo", "PPO", 0, 0.20),
        _record("ppo", "PPO", 1, 0.21),
    ]
    table = method_table(records)
    md = table_markdown(table)
    assert "**50.75 ± 1.06**" in md  # GRPO's mean ± std on test
    assert "| LCO-KLD | 41.00 ± 1.41 |" in md
    text = " ".join(findings(table))
    assert "Highest mean on the test split (sampled pass@1): **GRPO**" in text
    # two paired seeds, 20 and 21 points above PPO, 10 and 9.5 below GRPO: each interval excludes zero
    # (identical per-seed differences would give a zero-width interval, which calls nothing)
    assert "LCO-KLD (LCO − baseline, test pass@1): beats PPO (+20.50 points" in text
    assert "is beaten by GRPO (-9.75 points" in text
    # the warm-up was evaluated on one seed only: nothing is called against it
    assert "no difference called: LCO-KLD, GRPO, PPO" in text


def test_sanitize_turns_non_finite_numbers_into_null():
    assert sanitize({"a": [1.0, float("nan")], "b": {"c": float("-inf")}, "d": "x"}) == {
        "a": [1.0, None],
        "b": {"c": None},
        "d": "x",
    }
