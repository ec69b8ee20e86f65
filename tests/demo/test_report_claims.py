"""Issue 20: the demo report claims only what its seeds support, labels a smoke test, states the warm-up's
targets, and explains M(K)."""

from __future__ import annotations

import math
import statistics

import pytest

from lco.demo.report.collect import evaluated_problems, method_table, stability
from lco.demo.report.markdown import findings, report_markdown, warmup_markdown
from lco.demo.report.stats import paired_difference, t975
from lco.demo.settings import profile_settings


def _record(method, label, seed, test):
    split = {"pass@1": test, "greedy_pass@1": test, "problems": 100}
    return {
        "method": method,
        "label": label,
        "seed": seed,
        "purpose": "table",
        "trained": method != "warmup",
        "status": "ok",
        "collapsed": False,
        "curve": [],
        "rollouts": 320,
        "num_generations": 4,
        "iterations_per_rollout": 1,
        "steps": 20,
        "splits": {"test": split, "hard": {**split, "problems": 50}},
        "_history": [{"step": 1, "grad_norm": 1.0}],
    }


# ---------------------------------------------------------------- the rule, defined once


def test_paired_difference_matches_the_t_interval_by_hand():
    a, b = {0: 0.50, 1: 0.40, 2: 0.45}, {0: 0.30, 1: 0.35, 2: 0.30}
    diffs = [0.20, 0.05, 0.15]
    mean, sd = statistics.fmean(diffs), statistics.stdev(diffs)
    half = 4.303 * sd / math.sqrt(3)  # t_{0.975, 2}
    d = paired_difference(a, b)
    assert d["n"] == 3 and d["mean"] == pytest.approx(mean)
    assert (d["low"], d["high"]) == pytest.approx((mean - half, mean + half))
    assert d["called"] is (mean - half > 0)  # 0.1333 − 0.1862 < 0: not called
    assert d["called"] is False


def test_a_difference_is_called_when_the_interval_excludes_zero():
    d = paired_difference({0: 0.50, 1: 0.52, 2: 0.51}, {0: 0.30, 1: 0.31, 2: 0.30})
    assert d["called"] and d["low"] > 0


def test_one_seed_never_calls_a_difference():
    d = paired_difference({0: 0.03}, {0: 0.02})
    assert d == {"n": 1, "mean": pytest.approx(0.01), "low": None, "high": None, "called": False}


def test_only_the_seeds_both_ran_are_paired():
    d = paired_difference({0: 0.5, 1: 0.6, 7: 0.9}, {0: 0.4, 1: 0.5, 3: 0.0})
    assert d["n"] == 2 and d["mean"] == pytest.approx(0.1)


def test_t_quantiles():
    assert t975(1) == pytest.approx(12.706) and t975(4) == pytest.approx(2.776) and t975(200) == 1.96


# ---------------------------------------------------------------- the findings use it


def test_one_seed_3_vs_2_of_100_is_not_a_win():
    """The issue's case: "LCO-KLD beats PPO" from 3 vs 2 problems of 100 on one seed."""
    table = method_table(
        [
            _record("warmup", "Warm-up", 0, 0.01),
            _record("lco_kld", "LCO-KLD", 0, 0.03),
            _record("ppo", "PPO", 0, 0.02),
        ]
    )
    text = " ".join(findings(table))
    assert "beats" not in text and "beaten" not in text
    assert "One seed: no difference between methods is called" in text
    assert "shows no difference the seeds support against PPO (+1.00 points on 1 seed)" in text


def test_the_same_gap_on_consistent_seeds_is_called():
    records = [_record("lco_kld", "LCO-KLD", s, 0.30 + 0.01 * s) for s in range(3)]
    records += [_record("ppo", "PPO", s, 0.20 + 0.01 * s + 0.002 * (s == 1)) for s in range(3)]
    text = " ".join(findings(method_table(records)))
    assert "LCO-KLD (LCO − baseline, test pass@1): beats PPO (+9.93 points, 95 % interval" in text


def test_an_untrained_warm_up_on_top_gets_a_comment():
    records = [_record("warmup", "Warm-up", s, 0.30) for s in range(2)]
    records += [_record("lco_kld", "LCO-KLD", s, 0.10 + 0.01 * s) for s in range(2)]
    text = " ".join(findings(method_table(records)))
    assert "**Warm-up**" in text and "no RL run raised the test pass@1 above its starting point" in text
    assert "below it: LCO-KLD" in text


# ---------------------------------------------------------------- the report's framing


def _report(settings, records, warmup=None, figures=None) -> str:
    return report_markdown(
        settings,
        records,
        evaluated_problems(records, settings),
        method_table(records),
        stability([r for r in records if r["trained"]]),
        sweep=None,
        figures=figures or {},
        rm_info=None,
        times={"cpu_count": 2},
        seconds=60.0,
        warmup=warmup,
    )


def test_a_quick_report_says_it_is_a_smoke_test():
    records = [_record("lco_kld", "LCO-KLD", 0, 0.1)]
    quick = _report(profile_settings("quick"), records)
    assert "Smoke test (`--quick`)" in quick and "its values mean nothing" in quick
    assert quick.index("Smoke test") < quick.index("## Results")
    assert "Smoke test" not in _report(profile_settings("default"), records)


MISSED = {
    "policy_target": 0.3,
    "reference_target": 0.6,
    "reached": {"policy": False, "phi_ref": False},
    "steps": {"policy": 250, "phi_ref": 250},
    "checks": [{"step": 240, "validation_pass@1": 0.02}, {"step": 250, "validation_pass@1": 0.025}],
}
REACHED = {
    "policy_target": 0.3,
    "reference_target": 0.6,
    "reached": {"policy": True, "phi_ref": True},
    "steps": {"policy": 60, "phi_ref": 140},
    "checks": [{"step": 60, "validation_pass@1": 0.31}, {"step": 140, "validation_pass@1": 0.62}],
}


def test_missed_warm_up_targets_are_stated_and_phi_ref_is_not_called_stronger():
    text = _report(profile_settings("default"), [_record("lco_kld", "LCO-KLD", 0, 0.1)], warmup=MISSED)
    assert "π_0's target, validation pass@1 ≥ 30.00 %: **missed**" in text
    assert "the last warm-up checkpoint (step 250, validation pass@1 2.50 %) stands in" in text
    assert "π_0 and φ_ref are therefore the same model" in text
    assert "a stronger φ_ref" not in text and "φ_ref trained longer" not in text


def test_reached_warm_up_targets_are_stated():
    text = warmup_markdown(REACHED)
    assert "π_0's target, validation pass@1 ≥ 30.00 %: reached at step 60 (validation pass@1 31.00 %)" in text
    assert "φ_ref's target, validation pass@1 ≥ 60.00 %: reached at step 140" in text
    assert "missed" not in text and "same model" not in text


def test_m_of_k_is_explained_where_its_figure_is_shown():
    records = [_record("lco_kld", "LCO-KLD", 0, 0.1)]
    with_gap = _report(profile_settings("default"), records, figures={"gap": "gap_m_vs_pass.png"})
    assert "M(K) = Σ_{k<K} [Δμ(k)]₊·η_k" in with_gap and "arXiv:2510.08539" in with_gap
    assert "Σ_{k<K}" not in _report(profile_settings("default"), records)


def test_identical_differences_on_two_seeds_are_not_called():
    # Measured in the default demo (LCO-LCH vs PPO): -4.20 points on both seeds gave the interval
    # [-4.20, -4.20]; a zero-width interval is no evidence about the spread, so nothing is called.
    result = paired_difference({0: 0.261, 1: 0.250}, {0: 0.303, 1: 0.292})
    assert result["n"] == 2 and result["low"] == pytest.approx(result["high"])
    assert result["mean"] == pytest.approx(-0.042)
    assert not result["called"]
    # nor when float rounding leaves the two differences a few ulps apart
    assert not paired_difference({0: 0.261, 1: 0.250 + 1e-15}, {0: 0.303, 1: 0.292})["called"]
    # the same mean with a spread (and three seeds) is called, as before
    assert paired_difference({0: 0.26, 1: 0.25, 2: 0.25}, {0: 0.30, 1: 0.30, 2: 0.29})["called"]
