"""The report's prose states the numbers of the run it describes, read from the settings and the runs."""

from __future__ import annotations

import re
from dataclasses import replace

from lco.demo import evaluate, runtime
from lco.demo.report import collect
from lco.demo.report.collect import evaluated_problems, method_table, stability
from lco.demo.report.markdown import decoding_markdown, methods_intro_markdown, report_markdown
from lco.demo.settings import profile_settings


def _record(method, label, seed, problems, generations=2, iterations=1, trained=True):
    split = {"pass@1": 0.3 + 0.01 * seed, "greedy_pass@1": 0.3, "problems": problems}
    return {
        "method": method,
        "label": label,
        "seed": seed,
        "purpose": "table",
        "trained": trained,
        "status": "ok" if trained else "not trained",
        "collapsed": False,
        "curve": [],
        "rollouts": 320 if trained else 0,
        "num_generations": generations,
        "iterations_per_rollout": iterations,
        "steps": 20 * iterations,
        "splits": {"test": split, "hard": {**split, "problems": problems // 2}},
        "_history": [{"step": 1, "grad_norm": 1.0}] if trained else [],
    }


def _prose(settings, records) -> str:
    """Everything report.md says before its dump of every hyper-parameter (which names all sizes)."""
    md = report_markdown(
        settings,
        records,
        evaluated_problems(records, settings),
        method_table(records),
        stability([r for r in records if r["trained"]]),
        sweep=None,
        figures={},
        rm_info=None,
        times={"cpu_count": 2},
        seconds=60.0,
    )
    return md.split("## Setup: every hyper-parameter")[0]


def test_quick_report_states_the_problem_counts_quick_evaluates_not_the_default_ones():
    quick = profile_settings("quick")
    assert (quick.eval.test_problems, quick.eval.hard_problems) != (500, 200)  # else this test proves nothing
    records = [
        _record("warmup", "SFT warm-up (no RL)", 0, quick.eval.test_problems, trained=False),
        _record("lco_kld", "LCO-KLD", 0, quick.eval.test_problems),
    ]
    prose = _prose(quick, records)
    assert f"the first {quick.eval.test_problems} problems of the test split" in prose
    assert f"the first {quick.eval.hard_problems} of the hard split" in prose
    # the default profile's counts as numbers of their own ("MATH500" names a benchmark, not a count)
    assert not re.search(r"\b500\b", prose) and not re.search(r"\b200\b", prose)


def test_problem_counts_without_runs_come_from_the_settings_capped_by_the_split_size():
    settings = profile_settings("quick")
    assert evaluated_problems([], settings) == {
        "test": str(settings.eval.test_problems),
        "hard": str(settings.eval.hard_problems),
    }
    larger = replace(settings, eval=replace(settings.eval, test_problems=settings.task.test_size + 100))
    assert evaluated_problems([], larger)["test"] == str(larger.task.test_size)


def test_problem_counts_are_read_from_the_runs_when_there_are_runs():
    settings = profile_settings("default")
    counts = evaluated_problems([_record("grpo", "GRPO", 0, 37)], settings)
    assert counts == {"test": "37", "hard": "18"}


def test_completions_per_prompt_and_epochs_are_those_the_runs_used():
    # values other than the library's 4 and 2, so that a hard-coded sentence would fail
    records = [
        _record("grpo", "GRPO", 0, 100, generations=8),
        _record("ppo", "PPO", 0, 100, generations=2, iterations=3),
        _record("lco_kld", "LCO-KLD", 0, 100, generations=2),
    ]
    text = methods_intro_markdown(records, profile_settings("default"))
    assert "GRPO samples 8 completions per prompt" in text
    assert "PPO and LCO-KLD sample 2 completions per prompt" in text
    assert "sees 4× as many prompts" in text
    assert "PPO optimises each rollout batch for 3 epochs" in text
    assert "4 completions" not in text and "4 epochs" not in text


def test_no_epoch_sentence_when_every_method_takes_one_step_per_batch():
    text = methods_intro_markdown([_record("grpo", "GRPO", 0, 100, generations=4)], profile_settings("quick"))
    assert "epochs" not in text and "GRPO samples 4 completions per prompt" in text


def test_decoding_and_learning_rate_come_from_the_settings():
    settings = profile_settings("quick")
    settings = replace(
        settings,
        eval=replace(settings.eval, temperature=0.7, top_p=0.9),
        rl=replace(settings.rl, learning_rate=3e-5),
    )
    assert "T = 0.7, top-p 0.9," in decoding_markdown(settings)
    assert "One learning rate for every method (3e-05)" in methods_intro_markdown([], settings)


def test_the_evaluated_splits_are_defined_once():
    assert collect.SPLITS is evaluate.SPLITS is runtime.SPLITS
