"""``lco demo --study stability`` (issue 12) without training: the run list from the settings, the
automatic choice of the LCO row, the stability map, Fig. 7's answer and the sentences, on synthetic
runs; and Method.lco_options reaching LCOConfig."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import replace

import pytest

from lco.demo.methods import ABLATION_OPTIONS, ABLATION_SIGNALS, METHODS, Method, ablation_name
from lco.demo.recipe import check_settings, plan_study, study_parts
from lco.demo.report.study import (
    ablation_findings,
    best_rung,
    choose_lco,
    comparison_findings,
    fig7,
    fig7_sentence,
    ladder_totals,
    rank_methods,
    rollouts_to_reach,
    stability_map,
    study_results,
)
from lco.demo.settings import LR_LADDER, study_settings

SETTINGS = study_settings("stability")
COMMON = SETTINGS.rl.learning_rate


def _curve(values, every=256):
    return [{"step": 16 * i, "rollouts": every * i, "pass@1": v} for i, v in enumerate(values)]


def _run(method, seed=0, lr=COMMON, test=0.3, collapsed=False, curve=None, norms=(1.0, 1.0, 2.0)):
    split = {"pass@1": test, "greedy_pass@1": test, "problems": 10}
    return {
        "method": method,
        "label": METHODS[method].label,
        "seed": seed,
        "learning_rate": lr,
        "purpose": "ablation",
        "trained": True,
        "status": "ok",
        "collapsed": collapsed,
        "curve": curve
        if curve is not None
        else _curve([0.3, 0.3 if not collapsed else 0.0, 0.0 if collapsed else 0.3]),
        "splits": {"test": split, "hard": split},
        "_history": [{"step": i + 1, "grad_norm": n} for i, n in enumerate(norms)],
    }


# ----------------------------------------------------------------------------------------- run list


def test_the_study_runs_every_part_at_every_seed_from_the_settings():
    study, seeds = SETTINGS.study, SETTINGS.seeds
    assert seeds >= 3 and study.ladder == LR_LADDER
    chosen = ablation_name("lco_kld", "outcome", "top_k")
    parts = study_parts(SETTINGS, chosen)
    options = len(study.ablation_objectives) * len(study.ablation_signals) * len(study.ablation_options)
    assert len(parts["ablation"]) == options * seeds
    assert len(parts["matched"]) == (len(study.baselines) + 1) * seeds
    assert len(parts["ladder"]) == (len(study.baselines) + 1) * len(study.ladder) * seeds
    assert {lr for _, _, lr in parts["ablation"] + parts["matched"]} == {COMMON}
    assert {seed for _, seed, _ in parts["ladder"]} == set(range(seeds))
    # each (method, seed, lr) is trained once: the matched part is the ladder's common rung, and the
    # chosen row at the common lr is part 1's run
    union = set(parts["ablation"]) | set(parts["matched"]) | set(parts["ladder"])
    runs = plan_study(SETTINGS, chosen)
    trained = [(r.method.name, r.seed, r.learning_rate) for r in runs if r.method.trained]
    assert len(trained) == len(set(trained)) == len(union)
    assert set(trained) == union
    assert (
        len(union)
        == options * seeds
        + len(study.baselines) * len(study.ladder) * seeds
        + (len(study.ladder) - 1) * seeds
    )


def test_before_the_choice_parts_two_and_three_hold_the_baselines_only():
    names = {name for name, _, _ in study_parts(SETTINGS, None)["ladder"]}
    assert names == set(SETTINGS.study.baselines)


def test_the_matched_rows_sample_grpos_group_with_the_verifier_reward():
    grpo = METHODS["grpo"]
    for name in (*SETTINGS.study.baselines, "lco_kld_matched"):
        m = METHODS[name]
        assert (m.num_generations, m.reward) == (grpo.num_generations, grpo.reward)
        assert m.advantage == "outcome"
    for option in ABLATION_OPTIONS:
        m = METHODS[ablation_name("lco_kld", "outcome", option)]
        assert (m.num_generations, m.advantage, m.reward) == (grpo.num_generations, "outcome", "rule")


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda s: replace(s, seeds=2), "seeds"),
        (lambda s: replace(s, study=replace(s.study, ladder=(3e-4, 1e-3))), "common learning rate"),
        (lambda s: replace(s, study=replace(s.study, baselines=("nope",))), "nope"),
        (lambda s: replace(s, study=replace(s.study, choice_signal="dense_x")), "choice_signal"),
    ],
)
def test_bad_study_settings_are_one_error(change, match):
    with pytest.raises(ValueError, match=match):
        check_settings(change(SETTINGS))


def _args(**kw):
    base = dict(
        quick=False, full=False, lr_sweep=False, methods=None, seeds=None, workers=2, study="stability"
    )
    return argparse.Namespace(**{**base, **kw})


def test_the_cli_builds_the_study_and_refuses_fewer_than_three_seeds():
    from lco.demo.cli import settings_from_args

    assert settings_from_args(_args()).study.name == "stability"
    assert settings_from_args(_args(seeds=4)).seeds == 4
    with pytest.raises(ValueError, match="seeds"):
        settings_from_args(_args(seeds=2))
    with pytest.raises(ValueError, match="--methods"):
        settings_from_args(_args(methods=["grpo"]))


# ----------------------------------------------------------------------------------------- choice


def test_choice_prefers_fewer_collapses_over_a_higher_pass_at_1():
    a, b, c = (ablation_name("lco_kld", "outcome", o) for o in ("paper", "top_k", "authors"))
    records = [
        *(_run(a, s, test=0.60, collapsed=s == 0) for s in range(3)),  # best pass@1, one collapse
        *(_run(b, s, test=0.40) for s in range(3)),
        *(_run(c, s, test=0.45) for s in range(3)),  # no collapse, higher pass@1 than b
    ]
    ranking = rank_methods(records, [a, b, c])
    assert [row["method"] for row in ranking] == [c, b, a]
    assert choose_lco(records, SETTINGS)["method"] == c
    # flip the collapse: now a has none and the best pass@1
    records = [{**r, "collapsed": False} for r in records]
    assert choose_lco(records, SETTINGS)["method"] == a


def test_choice_reads_only_the_matched_signal_rows_at_the_common_lr():
    dense = ablation_name("lco_kld", "dense", "authors")
    outcome = ablation_name("lco_kld", "outcome", "paper")
    records = [
        *(_run(dense, s, test=0.9) for s in range(3)),
        *(_run(outcome, s, test=0.2) for s in range(3)),
        _run(ablation_name("lco_kld", "outcome", "top_k"), 0, lr=3e-5, test=0.95),  # not part 1
    ]
    assert choose_lco(records, SETTINGS)["method"] == outcome


# ----------------------------------------------------------------------------------------- map, rungs, Fig. 7


def test_stability_map_counts_the_fraction_of_seeds_collapsed_per_learning_rate():
    records = [
        _run("grpo", 0, 1e-4, 0.5),
        _run("grpo", 1, 1e-4, 0.3),
        _run("grpo", 2, 1e-4, 0.4),
        _run("grpo", 0, 3e-3, 0.0, collapsed=True),
        _run("grpo", 1, 3e-3, 0.1, collapsed=True),
        _run("grpo", 2, 3e-3, 0.2),
    ]
    smap = stability_map(records, ["grpo", "dapo"], LR_LADDER)
    assert list(smap) == ["grpo"]  # no dapo run: no row
    cells = smap["grpo"]["cells"]
    assert set(cells) == {"0.0001", "0.003"}
    assert cells["0.003"]["collapsed_fraction"] == pytest.approx(2 / 3)
    assert cells["0.0001"]["collapsed_fraction"] == 0
    assert cells["0.0001"]["test_pass@1"]["mean"] == pytest.approx(0.4)
    assert ladder_totals(smap)["grpo"] == {"label": "GRPO", "collapses": 2, "runs": 6}
    assert best_rung(smap["grpo"]) == 1e-4


def test_best_rung_prefers_no_collapse_then_pass_at_1():
    records = [_run("ppo_matched", s, 3e-4, 0.6, collapsed=s == 0) for s in range(3)]
    records += [_run("ppo_matched", s, 3e-5, 0.35) for s in range(3)]
    records += [_run("ppo_matched", s, 1e-4, 0.40) for s in range(3)]
    assert best_rung(stability_map(records, ["ppo_matched"], LR_LADDER)["ppo_matched"]) == 1e-4


def test_fig7_finds_the_first_rollout_count_reaching_the_reference_or_says_never():
    assert rollouts_to_reach([0, 256, 512], [0.1, 0.4, 0.5], 0.4) == 256
    assert rollouts_to_reach([0, 256, 512], [0.1, 0.3, 0.35], 0.4) is None
    lco = ablation_name("lco_kld", "outcome", "top_k")
    records = [_run("grpo", s, curve=_curve([0.3, 0.4, 0.5])) for s in range(3)]
    records += [_run(lco, s, curve=_curve([0.3, 0.5, 0.2 + 0.1 * s])) for s in range(3)]
    result = fig7(records, lco, "grpo", COMMON, COMMON)
    assert result["reference_final"] == pytest.approx(0.5) and result["rollouts_needed"] == 256
    text = fig7_sentence(result, "LCO", "GRPO", "At lr 1e-4")
    assert "reaches GRPO's final greedy pass@1 (50.00 % after 512 rollouts) after 256 rollouts" in text
    slow = [_run(lco, s, curve=_curve([0.3, 0.35, 0.4])) for s in range(3)]
    never = fig7_sentence(fig7(records[:3] + slow, lco, "grpo", COMMON, COMMON), "LCO", "GRPO", "At lr 1e-4")
    assert "never reaches" in never and "within the budget of 512 rollouts" in never


# ----------------------------------------------------------------------------------------- sentences


def _totals(lco, baselines):
    return {
        "lco": {"label": "LCO", "collapses": lco, "runs": 15},
        **{name: {"label": name.upper(), "collapses": c, "runs": 15} for name, c in baselines.items()},
    }


def test_stability_sentence_flips_with_the_numbers():
    more = " ".join(comparison_findings(_totals(1, {"grpo": 4, "ppo": 6}), "lco"))
    assert "LCO is more stable than every baseline here" in more
    less = " ".join(comparison_findings(_totals(7, {"grpo": 4, "ppo": 9}), "lco"))
    assert "LCO is NOT more stable than the baselines here" in less
    assert "GRPO (4/15) collapsed less often" in less and "PPO (9/15) more often" in less
    tie = " ".join(comparison_findings(_totals(4, {"grpo": 4, "ppo": 9}), "lco"))
    assert "as stable as GRPO (4/15) and more stable than PPO (9/15)" in tie
    assert "more stable than every baseline" not in tie.replace("not more stable than every baseline", "")


def _row(method, collapses, test, spikes):
    return {
        "label": METHODS[method].label,
        "runs": 3,
        "collapses": collapses,
        "test_pass@1": {"mean": test, "std": None, "n": 3},
        "grad_norm": {"p99_over_median": spikes},
    }


def test_ablation_sentence_says_which_option_cures_which_failure_mode():
    study = replace(
        SETTINGS.study, ablation_signals=("dense",), ablation_options=("paper", "anchor_never", "top_k")
    )
    paper, never, topk = (ablation_name("lco_kld", "dense", o) for o in ("paper", "anchor_never", "top_k"))
    table = {
        paper: _row(paper, 3, 0.01, 30.0),
        never: _row(never, 0, 0.40, 3.0),
        topk: _row(topk, 3, 0.02, 31.0),
    }
    text = " ".join(ablation_findings(table, study))
    label = ABLATION_SIGNALS["dense"][0]
    assert f"On the {label} signal (LCO-KLD), the paper's form collapsed in 3 of 3 runs" in text
    assert "anchor never (m = 0) cures the collapse (3/3 → 0/3) and damps the gradient spikes" in text
    assert "top-5 support does not cure the collapse (3/3 → 3/3)" in text
    # the numbers flip: the paper's form is stable and the option breaks it
    table = {paper: _row(paper, 0, 0.40, 3.0), never: _row(never, 2, 0.10, 9.0)}
    text = " ".join(ablation_findings(table, study))
    assert (
        "anchor never (m = 0) makes collapse more frequent (0/3 → 2/3) and makes the gradient spikier" in text
    )


def test_study_results_from_synthetic_runs_choose_compare_and_answer_fig7():
    settings = replace(
        SETTINGS,
        study=replace(
            SETTINGS.study,
            ablation_signals=("outcome",),
            ablation_options=("paper", "top_k"),
            baselines=("grpo",),
        ),
    )
    paper, topk = (ablation_name("lco_kld", "outcome", o) for o in ("paper", "top_k"))
    records = [_run(paper, s, test=0.5, collapsed=True) for s in range(3)]
    records += [_run(topk, s, lr=lr, test=0.4) for s in range(3) for lr in LR_LADDER]
    records += [_run("grpo", s, lr=lr, test=0.45, collapsed=lr >= 1e-3) for s in range(3) for lr in LR_LADDER]
    chosen = choose_lco(records, settings)
    assert chosen["method"] == topk
    results = study_results(records, settings, chosen, gate=None)
    assert results["ladder_totals"][topk]["collapses"] == 0
    assert results["ladder_totals"]["grpo"] == {"label": "GRPO", "collapses": 6, "runs": 15}
    assert "more stable than every baseline" in results["findings"]["stability"][0]
    assert set(results["parts"]["matched"]) == {"grpo", topk}


# ----------------------------------------------------------------------------------------- options → config


def test_method_lco_options_reach_lco_config():
    from lco.demo.rl import lco_config, schedule

    rl = SETTINGS.rl
    for option in ABLATION_OPTIONS:
        method = METHODS[ablation_name("lco_kld", "outcome", option)]
        config = lco_config(method, 0, COMMON, rl, schedule(method, rl), "/tmp/unused", None)
        for name, value in method.lco_options:
            if name == "lco_beta_negative" and value is None:
                value = rl.lco_beta  # the row's one β for both signs
            assert getattr(config, name) == value, (option, name)
        assert config.num_generations == 4 and config.advantage == "outcome"
    authors = lco_config(
        METHODS[ablation_name("lco_kld", "outcome", "authors")],
        0,
        COMMON,
        rl,
        schedule(METHODS["grpo"], rl),
        "/tmp/u",
        None,
    )
    assert (authors.lco_support, authors.lco_anchor_update_steps, authors.lco_beta_negative) == (
        "top_k",
        0,
        100.0,
    )


def test_lco_options_are_validated_as_pairs():
    with pytest.raises(ValueError, match="lco_options"):
        Method("x", "X", objective="lco_kld", lco_options=(("lco_support",),))
    with pytest.raises(ValueError, match="twice"):
        Method("x", "X", objective="lco_kld", lco_options=(("lco_support", "full"), ("lco_support", "top_k")))
    with pytest.raises(ValueError, match="not trained"):
        Method("x", "X", policy="warmup", lco_options=(("lco_support", "full"),))
    # a row without options keeps the cache key it had before the field existed
    assert "lco_options" not in METHODS["grpo"].as_dict()
    options = METHODS[ablation_name("lco_kld", "dense", "top_k")].as_dict()["lco_options"]
    assert ["lco_support", "top_k"] in options and ["lco_anchor_update_steps", 1] in options


def test_ablation_rows_spell_out_the_paper_and_the_authors_presets_of_lco_config():
    """Each row is the paper's form with one change, whatever LCOConfig's defaults: its options equal
    what the config's presets resolve to (at the demo's β = 1)."""
    from lco.trainer import LCOConfig

    fields = [name for name, _ in ABLATION_OPTIONS["paper"][1]]

    def resolved(preset, advantage="dpo_dense"):
        config = LCOConfig(
            output_dir="/tmp/unused",
            objective="lco_kld",
            advantage=advantage,
            reward_model_path="phi_dpo",
            reference_reward_model_path="phi_ref",
            lco_preset=preset,
            lco_beta=1.0,
            use_cpu=True,
        )
        return {name: getattr(config, name) for name in fields}

    assert dict(ABLATION_OPTIONS["paper"][1]) == resolved("paper")
    assert dict(ABLATION_OPTIONS["authors"][1]) == resolved("authors")
    # each signal's row is the preset for that advantage (a sparse one takes A as it is: no std)
    for signal, (_, advantage, _) in ABLATION_SIGNALS.items():
        for preset in ("paper", "authors"):
            row = METHODS[ablation_name("lco_kld", signal, preset)].options
            assert row == resolved(preset, advantage), (signal, preset)
    paper = dict(ABLATION_OPTIONS["paper"][1])
    for option, (_, options) in ABLATION_OPTIONS.items():
        changed = {name for name, value in options if paper[name] != value}
        if option not in ("paper", "authors"):
            assert len(changed) == 1, option  # one option alone


def test_changed_lco_defaults_enter_the_cache_key_of_the_lco_rows_that_inherit_them(monkeypatch):
    from lco.demo import rl
    from lco.trainer import config

    # issue 22: the dense DPO rows inherit the initial-policy anchor, the verifier rows β_negative = 100β
    assert rl.lco_default_changes(METHODS["lco_kld"]) == {"lco_anchor_update_steps": 0}  # dpo_dense
    assert rl.lco_default_changes(METHODS["lco_kld_dpo_token"]) == {"lco_anchor_update_steps": 0}
    assert rl.lco_default_changes(METHODS["lco_kld_matched"]) == {"lco_beta_negative": 100.0}  # outcome
    # the study revises the one table; the keys follow
    revised = dataclasses.replace(config.SIGNAL_DEFAULTS["policy"], anchor_update_steps=4)
    monkeypatch.setitem(config.SIGNAL_DEFAULTS, "policy", revised)
    assert rl.lco_default_changes(METHODS["lco_kld_matched"])["lco_anchor_update_steps"] == 4
    assert rl.lco_default_changes(METHODS["lco_kld_rule"])["lco_anchor_update_steps"] == 4
    assert rl.lco_default_changes(METHODS[ablation_name("lco_kld", "dense", "paper")]) == {}  # spells it out
    assert rl.lco_default_changes(METHODS["grpo"]) == {} and rl.lco_default_changes(METHODS["warmup"]) == {}


def test_a_rows_beta_negative_none_is_one_beta_for_both_signs(tmp_path):
    """LCOConfig reads β_negative None as "from the advantage" (100β for the verifier's outcome); the
    study's paper-form rows mean the paper's single β, so the RL stage passes β itself."""
    from lco.demo import rl
    from lco.demo.settings import RLSettings

    settings = RLSettings()
    method = METHODS[ablation_name("lco_kld", "outcome", "paper")]
    config = rl.lco_config(method, 0, 1e-4, settings, {"max_steps": 1}, str(tmp_path), None)
    assert config.lco_beta_negative == settings.lco_beta and config.lco_anchor_update_steps == 1
    matched = rl.lco_config(
        METHODS["lco_kld_matched"], 0, 1e-4, settings, {"max_steps": 1}, str(tmp_path), None
    )
    assert matched.lco_beta_negative == 100.0 * settings.lco_beta


def test_matched_sentence_names_the_best_row_and_who_ends_above_the_warm_up():
    from lco.demo.report.study import matched_findings, summarize

    warm = {
        **_run("grpo", test=0.30),
        "method": "warmup",
        "label": "Warm-up",
        "trained": False,
        "learning_rate": None,
    }
    rows = {"warmup": summarize([warm])}
    rows["grpo"] = summarize([_run("grpo", s, test=0.40) for s in range(3)])
    rows["lco_kld_matched"] = summarize([_run("lco_kld_matched", s, test=0.20) for s in range(3)])
    text = " ".join(matched_findings(rows))
    assert "the best test pass@1 is GRPO's (40.00 ± 0.00 %)" in text
    assert "Above the warm-up (30.00 %): GRPO; not above it: LCO-KLD (matched: 4/prompt, rule RM)." in text
    rows["lco_kld_matched"] = summarize([_run("lco_kld_matched", s, test=0.50) for s in range(3)])
    text = " ".join(matched_findings(rows))
    assert (
        "best test pass@1 is LCO-KLD (matched: 4/prompt, rule RM)'s" in text and "not above it: none" in text
    )


def test_option_ranking_pools_each_option_over_both_signals():
    from lco.demo.report.study import option_ranking

    study = replace(SETTINGS.study, ablation_options=("paper", "anchor_never"))
    triples = study_parts(replace(SETTINGS, study=study), None)["ablation"]
    records = []
    for signal in ("dense", "outcome"):
        records += [
            _run(ablation_name("lco_kld", signal, "paper"), s, test=0.5, collapsed=signal == "dense")
            for s in range(3)
        ]
        records += [_run(ablation_name("lco_kld", signal, "anchor_never"), s, test=0.3) for s in range(3)]
    rows = option_ranking(records, study, triples)
    assert [row["option"] for row in rows] == ["anchor_never", "paper"]  # 0/6 beats 3/6 despite pass@1
    paper = rows[1]
    assert (paper["collapses"], paper["runs"]) == (3, 6)
    assert paper["by_signal"]["dense"]["collapses"] == 3 and paper["by_signal"]["outcome"]["collapses"] == 0
