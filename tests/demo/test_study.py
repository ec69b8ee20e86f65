"""``lco demo --study stability`` (issues 12, 23) without training: the run list from the settings
(selection on validation at seeds S, confirmation on test at disjoint seeds S'), the choice rule, the
curve measures, the paired bootstrap, the sentences that flip with the numbers, the report regenerated
from a synthetic results.json; and Method.lco_options reaching LCOConfig."""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
from dataclasses import asdict, replace

import pytest

from lco.demo.methods import (
    ABLATION_OPTIONS,
    ABLATION_SIGNALS,
    METHODS,
    REGRESSION_OPTIONS,
    Method,
    ablation_name,
    grpo_name,
)
from lco.demo.plan import plan_study, selection_families, study_parts
from lco.demo.recipe import check_settings
from lco.demo.report.stats import excludes_zero, paired_bootstrap
from lco.demo.report.study import (
    analyse,
    area,
    choose,
    difference_sentence,
    report_from_results,
    rollouts_to_reach,
)
from lco.demo.settings import study_settings

SETTINGS = study_settings("stability")
STUDY = SETTINGS.study
COMMON = SETTINGS.rl.learning_rate


# ----------------------------------------------------------------------------------------- run list


def test_selection_and_confirmation_use_disjoint_seeds_and_splits():
    parts = study_parts(SETTINGS)
    selection_seeds = {seed for _, seed, _ in parts["selection"]}
    confirmation_seeds = {seed for _, seed, _ in parts["confirmation"]}
    assert selection_seeds == set(STUDY.selection_seeds)
    assert confirmation_seeds == set(STUDY.confirmation_seeds) and len(confirmation_seeds) >= 5
    assert not selection_seeds & confirmation_seeds
    runs = plan_study(SETTINGS)
    assert {r.split for r in runs if r.purpose == "selection"} == {"validation"}
    assert {r.split for r in runs if r.purpose == "confirmation"} == {"test"}
    # every (method, seed, lr, phase) once
    keys = [(r.method.name, r.seed, r.learning_rate, r.purpose) for r in runs]
    assert len(keys) == len(set(keys))


def test_every_confirmed_row_runs_at_every_rate_and_seed_with_pi0_and_pistar():
    confirmation = set(study_parts(SETTINGS)["confirmation"])
    for name in STUDY.confirmed:
        for lr in STUDY.learning_rates:
            for seed in STUDY.confirmation_seeds:
                assert (name, seed, lr) in confirmation
    for name in ("warmup", "pistar"):
        assert {(name, s, None) for s in STUDY.confirmation_seeds} <= confirmation
    # the defaults under test are among them, spelled out
    outcome = dict(METHODS["lco_kld_outcome_beta_negative"].lco_options)
    dense = dict(METHODS["lco_kld_dense_anchor_never"].lco_options)
    assert (outcome["lco_anchor_update_steps"], outcome["lco_beta_negative"]) == (1, 100.0)
    assert (dense["lco_anchor_update_steps"], dense["lco_beta_negative"]) == (0, None)
    assert {1e-4, 3e-4} <= set(STUDY.learning_rates)


def test_selection_families_cover_lco_options_regression_supports_and_baseline_tuning():
    families = selection_families(SETTINGS)
    assert len(families["lco_kld/outcome"]) == len(STUDY.kld_options) * len(STUDY.learning_rates)
    for objective in ("lco_lch", "lco_mse"):
        for signal in ("dense", "outcome"):
            names = {name for name, _ in families[f"{objective}/{signal}"]}
            assert names == {ablation_name(objective, signal, o) for o in REGRESSION_OPTIONS}
    # GRPO's own budget: the learning rates; GRPO + KL: the weights × the rates; RLOO: the rates
    assert families["grpo"] == [(grpo_name(0.0), lr) for lr in STUDY.learning_rates]
    assert {name for name, _ in families["grpo_kl"]} == {grpo_name(0.04), grpo_name(1.0)}
    assert len(families["reinforce"]) == len(STUDY.learning_rates)
    supports = {dict(options)["lco_support"] for _, options in REGRESSION_OPTIONS.values()}
    assert supports == {"sampled", "top_k", "full"}
    for _, options in REGRESSION_OPTIONS.values():
        o = dict(options)
        assert (o["advantage_normalization"] == "none") == (o["lco_support"] == "sampled")


def test_the_choice_adds_grpo_kl_and_an_lco_choice_that_is_not_yet_confirmed():
    chosen = {
        "confirm": [(grpo_name(0.04), [1e-4, 3e-4]), (ablation_name("lco_kld", "outcome", "paper"), [3e-4])]
    }
    before = set(study_parts(SETTINGS)["confirmation"])
    after = set(study_parts(SETTINGS, chosen)["confirmation"])
    added = after - before
    assert {(n, lr) for n, _, lr in added} == {(grpo_name(0.04), 1e-4), (grpo_name(0.04), 3e-4)}
    assert len(added) == 2 * len(STUDY.confirmation_seeds)  # the paper form at 3e-4 was already confirmed


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda s: replace(s, study=replace(s.study, confirmation_seeds=(10, 11, 12))), "seeds"),
        (lambda s: replace(s, study=replace(s.study, selection_seeds=(0, 10))), "disjoint"),
        (lambda s: replace(s, study=replace(s.study, confirmed=("nope",))), "nope"),
        (lambda s: replace(s, study=replace(s.study, learning_rates=(0.0,))), "positive"),
        (lambda s: replace(s, study=replace(s.study, selection_split="test")), "different splits"),
    ],
)
def test_bad_study_settings_are_one_error(change, match):
    with pytest.raises(ValueError, match=match):
        check_settings(change(SETTINGS))


def _args(**kw):
    base = dict(
        quick=False,
        full=False,
        lr_sweep=False,
        methods=None,
        seeds=None,
        workers=2,
        study="stability",
        report_only=False,
    )
    return argparse.Namespace(**{**base, **kw})


def test_the_cli_builds_the_study_and_refuses_fewer_than_five_confirmation_seeds():
    from lco.demo.cli import settings_from_args

    settings = settings_from_args(_args())
    assert settings.study.name == "stability" and settings.eval.samples >= 8
    six = settings_from_args(_args(seeds=6)).study
    assert len(six.confirmation_seeds) == 6 and not set(six.confirmation_seeds) & set(six.selection_seeds)
    with pytest.raises(ValueError, match="seeds"):
        settings_from_args(_args(seeds=4))
    with pytest.raises(ValueError, match="--methods"):
        settings_from_args(_args(methods=["grpo"]))


def test_the_study_keeps_the_default_warmup_reward_model_and_gate_inputs():
    """The cached warm-up / φ_DPO / gate of the default demo are the study's: same task, model, warm-up
    and RM settings, and the gate reads only the test size, which the study keeps."""
    from lco.demo.settings import profile_settings

    default = profile_settings("default")
    assert (SETTINGS.task, SETTINGS.policy, SETTINGS.warmup, SETTINGS.reward_model) == (
        default.task,
        default.policy,
        default.warmup,
        default.reward_model,
    )
    assert SETTINGS.eval.test_problems == default.eval.test_problems
    assert SETTINGS.rl.lco_beta == default.rl.lco_beta


# ----------------------------------------------------------------------------------------- synthetic runs


def _run(method, seed, lr, phase, correct, samples=8, curve=None, status="ok"):
    """A compact run: ``correct`` per problem (of ``samples``); greedy = correct > samples / 2."""
    split = "validation" if phase == "selection" else "test"
    trained = METHODS[method].trained
    greedy = ["1" if c * 2 > samples else "0" for c in correct]
    return {
        "method": method,
        "label": METHODS[method].label,
        "phase": phase,
        "split": split,
        "seed": seed,
        "learning_rate": lr if trained else None,
        "trained": trained,
        "status": status,
        "rollouts": 64 if trained else 0,
        "samples": samples,
        "pass@1": sum(correct) / (samples * len(correct)),
        "greedy_pass@1": greedy.count("1") / len(greedy),
        "sampled": "".join(str(c) for c in correct),
        "greedy": "".join(greedy),
        "curve": curve
        if curve is not None
        else ([[32, "".join(greedy)], [64, "".join(greedy)]] if trained else []),
        "grad_norm_p99_over_median": 2.0 if trained else None,
        "train_seconds": 1.0,
    }


def _level(p, problems=40, samples=8, rng=None):
    """Per-problem correct counts whose mean fraction is about ``p``."""
    rng = rng or random.Random(0)
    return [sum(rng.random() < p for _ in range(samples)) for _ in range(problems)]


def test_choice_prefers_fewer_runs_below_pi0_over_a_higher_mean():
    study = replace(STUDY, selection_seeds=(0, 1))
    family = selection_families(replace(SETTINGS, study=study))["lco_kld/outcome"]
    (a, lr_a), (b, lr_b) = family[0], family[1]
    runs = [_run("warmup", s, None, "selection", [4] * 10) for s in (0, 1)]  # π_0 at 0.5
    # a: one seed far above, one below π_0 (mean 0.56); b: both just above (mean 0.5625)
    runs += [_run(a, 0, lr_a, "selection", [8] * 10), _run(a, 1, lr_a, "selection", [1] * 10)]
    runs += [
        _run(b, 0, lr_b, "selection", [4] * 5 + [5] * 5),
        _run(b, 1, lr_b, "selection", [4] * 5 + [5] * 5),
    ]
    chosen = choose(runs, study)
    best = chosen["families"]["lco_kld/outcome"]["chosen"]
    assert (best["method"], best["learning_rate"]) == (b, lr_b)
    ranking = chosen["families"]["lco_kld/outcome"]["ranking"]
    assert [r["below_warmup"] for r in ranking] == [0, 1]
    # b is not a confirmed row at that rate → the confirmation adds it; with a ahead instead, nothing
    assert (b in study.confirmed) or any(name == b for name, _ in chosen["confirm"])
    runs[3] = _run(a, 1, lr_a, "selection", [6] * 10)
    best = choose(runs, study)["families"]["lco_kld/outcome"]["chosen"]
    assert (best["method"], best["learning_rate"]) == (a, lr_a)


def test_choice_ignores_confirmation_runs():
    study = STUDY
    name, lr = selection_families(SETTINGS)["reinforce"][0]
    other, lr2 = selection_families(SETTINGS)["reinforce"][1]
    runs = [_run("warmup", 0, None, "selection", [2] * 10)]
    runs += [_run(name, 0, lr, "selection", [5] * 10), _run(other, 0, lr2, "selection", [3] * 10)]
    runs += [_run(other, 10, lr2, "confirmation", [8] * 10)]  # a test-split result must not sway the choice
    best = choose(runs, study)["families"]["reinforce"]["chosen"]
    assert best["learning_rate"] == lr


# ----------------------------------------------------------------------------------------- measures


def test_area_is_the_trapezoid_mean_of_the_curve_per_problem():
    points = [(0, [0.0, 1.0]), (100, [1.0, 1.0]), (200, [1.0, 0.0])]
    # problem 0: (0+1)/2·100 + 1·100 = 150 → 0.75; problem 1: 100 + 50 = 150 → 0.75
    assert area(points, 200) == pytest.approx([0.75, 0.75])
    # flat past the last point
    assert area([(0, [0.0]), (100, [1.0])], 300) == pytest.approx([(50 + 200) / 300])
    assert rollouts_to_reach([(0, 0.2), (100, 0.3), (200, 0.5)], 0.3) == 100
    assert rollouts_to_reach([(0, 0.2), (100, 0.3)], 0.9) is None


def test_paired_bootstrap_recovers_a_constant_difference_and_pairs_by_problem():
    rng = random.Random(1)
    b = [[rng.random() for _ in range(50)] for _ in range(5)]
    a = [[x + 0.1 for x in row] for row in b]
    ci = paired_bootstrap(a, b, draws=500)
    assert (
        ci["mean"] == pytest.approx(0.1)
        and ci["low"] == pytest.approx(0.1)
        and ci["high"] == pytest.approx(0.1)
    )
    assert excludes_zero(ci) == 1
    # the same means without pairing (a shuffled per seed) is far less certain: pairing is what narrows it
    shuffled = [rng.sample(row, len(row)) for row in a]
    loose = paired_bootstrap(shuffled, b, draws=500)
    assert loose["high"] - loose["low"] > 10 * (ci["high"] - ci["low"]) + 0.01
    # no difference at all: the interval holds 0
    noise = [[rng.choice((-1, 1)) * 0.5 for _ in range(50)] for _ in range(5)]
    zero = paired_bootstrap(noise, [[0.0] * 50 for _ in range(5)], draws=500)
    assert zero["low"] < 0 < zero["high"] and excludes_zero(zero) == 0


def test_paired_bootstrap_interval_matches_the_normal_approximation():
    """Independent check: for i.i.d. differences over one seed, the percentile interval's width is
    close to 2·1.96·sd/√n."""
    rng = random.Random(2)
    d = [[rng.gauss(0.05, 0.3) for _ in range(400)]]
    ci = paired_bootstrap(d, None, draws=3000)
    mean = sum(d[0]) / 400
    sd = (sum((x - mean) ** 2 for x in d[0]) / 399) ** 0.5
    assert ci["high"] - ci["low"] == pytest.approx(2 * 1.96 * sd / 400**0.5, rel=0.12)
    with pytest.raises(ValueError, match="seeds × problems"):
        paired_bootstrap([1.0, 2.0], None)


def _diff(mean, low, high):
    interval = {"mean": mean, "low": low, "high": high}
    return {
        "a": "x",
        "b": "y",
        "a_label": "A",
        "b_label": "B",
        "learning_rate": 3e-4,
        "pass@1": interval,
        "auc": interval,
        "collapse_regime": True,
    }


def test_sentences_say_better_and_more_stable_only_when_the_interval_excludes_zero():
    up = " ".join(difference_sentence(_diff(0.03, 0.01, 0.05)))
    assert "A is better than B at lr 0.0003" in up and "A is more stable than B" in up
    down = " ".join(difference_sentence(_diff(-0.03, -0.05, -0.01)))
    assert "A is worse than B" in down and "A is less stable than B" in down
    assert "better" not in down and "more stable" not in down
    unsure = " ".join(difference_sentence(_diff(0.03, -0.01, 0.07)))
    assert "not distinguishable" in unsure and "is not more stable" in unsure
    assert "is better" not in unsure
    # below the collapse regime the area says "ahead", never "more stable"
    calm = " ".join(difference_sentence({**_diff(0.03, 0.01, 0.05), "collapse_regime": False}))
    assert "ahead of B over the whole run" in calm and "stable" not in calm


def _synthetic_payload(lift=0.2):
    """A tiny study: π_0 at ~0.3; the outcome default at π_0 + ``lift``; GRPO at π_0; RLOO below."""
    study = replace(
        STUDY,
        confirmed=("lco_kld_outcome_beta_negative", "grpo_beta0", "reinforce"),
        learning_rates=(1e-4,),
    )
    rng = random.Random(3)
    runs = []
    for seed in study.selection_seeds:
        runs.append(_run("warmup", seed, None, "selection", _level(0.3, rng=rng)))
        for name, lr in selection_families(replace(SETTINGS, study=study))["grpo"]:
            runs.append(_run(name, seed, lr, "selection", _level(0.35, rng=rng)))
        runs.append(_run("lco_kld_outcome_beta_negative", seed, 1e-4, "selection", _level(0.6, rng=rng)))
    for seed in study.confirmation_seeds:
        base = _level(0.3, rng=rng)
        runs.append(_run("warmup", seed, None, "confirmation", base))
        runs.append(_run("pistar", seed, None, "confirmation", _level(0.3, rng=rng)))
        better = [min(8, c + round(8 * lift)) for c in base]
        runs.append(_run("lco_kld_outcome_beta_negative", seed, 1e-4, "confirmation", better))
        runs.append(_run("grpo_beta0", seed, 1e-4, "confirmation", list(base)))
        runs.append(_run("reinforce", seed, 1e-4, "confirmation", [max(0, c - 3) for c in base]))
    return {
        "study": asdict(study),
        "rollout_budget": 64,
        "curve_every": 32,
        "samples": 8,
        "runs": runs,
    }


def test_analysis_states_each_difference_with_an_interval_and_flips_with_the_numbers():
    results = analyse(_synthetic_payload(lift=0.2))
    diffs = {(d["a"], d["b"]): d for d in results["differences"]}
    lco_vs_grpo = diffs[("lco_kld_outcome_beta_negative", "grpo_beta0")]
    assert lco_vs_grpo["pass@1"]["low"] > 0
    text = " ".join(results["findings"])
    assert "is better than GRPO at lr 0.0001" in text
    rows = results["confirmation"]
    rloo = rows["reinforce@0.0001"]
    assert rloo["ends_below_warmup"] == 5 and rloo["vs_warmup"]["high"] < 0
    # the same study with no lift: LCO is not distinguishable from GRPO (identical scores)
    flat = analyse(_synthetic_payload(lift=0.0))
    d = {(x["a"], x["b"]): x for x in flat["differences"]}[("lco_kld_outcome_beta_negative", "grpo_beta0")]
    assert d["pass@1"]["mean"] == pytest.approx(0.0)
    text = " ".join(flat["findings"])
    assert "is better than GRPO" not in text and "not distinguishable" in text


def test_the_report_tables_regenerate_from_a_results_json(tmp_path):
    payload = _synthetic_payload()
    path = tmp_path / "results.json"
    path.write_text(json.dumps(payload))
    md = report_from_results(path)
    assert "## Selection (validation split)" in md and "## Confirmation (test split), lr 0.0001" in md
    table = md.split("## Confirmation (test split), lr 0.0001")[1].split("\n## ")[0]
    # the LCO row's pass@1 is recomputed from the per-problem counts: mean over seeds of the run means
    runs = [
        r
        for r in payload["runs"]
        if r["method"] == "lco_kld_outcome_beta_negative" and r["phase"] == "confirmation"
    ]
    expected = 100 * sum(r["pass@1"] for r in runs) / len(runs)
    assert f"{expected:.2f} ±" in table
    assert table.count("\n| ") >= 5  # π_0, π*, three rows


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


def test_each_family_is_compared_at_its_chosen_configuration_and_checked_against_pi0():
    results = analyse(_synthetic_payload(lift=0.2))
    # both chosen at the common rate: the same-rate difference is stated once, not twice
    pairs = [(d["a"], d["b"], d["a_learning_rate"], d["b_learning_rate"]) for d in results["differences"]]
    assert len(pairs) == len(set(pairs))
    assert ("lco_kld_outcome_beta_negative", "grpo_beta0", 1e-4, 1e-4) in pairs
    checks = {c["family"]: c for c in results["learning"]}
    # validation: LCO at ~0.6 against π_0 at ~0.3 learns; GRPO at ~0.35 (40 problems, 2 seeds) may or may not
    assert checks["lco_kld/outcome"]["vs_warmup"]["low"] > 0
    text = " ".join(results["findings"])
    assert "lco_kld/outcome: the chosen configuration" in text and "learns" in text
    md = report_from_results_payload(_synthetic_payload(lift=0.2))
    assert "## Each family at its chosen configuration (test split)" in md
    assert "Tuning budget (configurations tried per family): lco_kld/outcome 1, grpo 1" in md


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


def report_from_results_payload(payload):
    from lco.demo.report.study import study_markdown

    return study_markdown(payload, analyse(payload))


def test_the_lean_study_confirms_first_and_drops_the_regression_selection():
    lean = study_settings("stability-lean")
    check_settings(lean)
    assert lean.study.order == "confirmation_first" and lean.study.regression_objectives == ()
    assert {grpo_name(0.04), grpo_name(1.0)} <= set(lean.study.confirmed)
    families = selection_families(lean)
    assert not any(f.startswith(("lco_lch", "lco_mse")) for f in families)
    with pytest.raises(ValueError, match="order"):
        check_settings(replace(lean, study=replace(lean.study, order="random")))


@pytest.mark.parametrize(
    "name, first", [("stability", {"selection", "confirmation"}), ("stability-lean", {"confirmation"})]
)
def test_run_study_trains_and_evaluates_the_confirmation_first_when_asked(monkeypatch, tmp_path, name, first):
    """The order of the pool's rounds, with every stage replaced by a recorder (no model is built)."""
    from lco.demo import recipe
    from lco.demo.report import study as report_study

    calls = []
    monkeypatch.setattr(recipe, "warm_up", lambda *a, **k: None)
    monkeypatch.setattr(recipe, "reward_model", lambda *a, **k: None)
    monkeypatch.setattr(recipe, "gate_reward_model", lambda *a, **k: None)
    monkeypatch.setattr(recipe, "write_task", lambda *a, **k: None)
    monkeypatch.setattr(recipe, "_versions", lambda: {})
    monkeypatch.setattr(recipe, "announce_failed_gate", lambda gate: None)
    monkeypatch.setattr(
        recipe,
        "train_policies",
        lambda pool, out, s, runs, *a: calls.append(("train", {r.purpose for r in runs})),
    )
    monkeypatch.setattr(
        recipe,
        "evaluate_policies",
        lambda pool, out, s, runs, *a: calls.append(("eval", {r.purpose for r in runs})),
    )
    monkeypatch.setattr("lco.demo.report.collect_run", lambda run, s: run)
    monkeypatch.setattr(report_study, "compact_run", lambda run: run)
    monkeypatch.setattr(report_study, "choose", lambda runs, s: {"families": {}, "confirm": []})
    monkeypatch.setattr(report_study, "write_study_report", lambda *a, **k: {})
    recipe.run_study(study_settings(name), tmp_path, workers=1)
    assert calls[0] == ("train", first) and calls[1] == ("eval", first)
    if name == "stability-lean":
        assert calls[2:4] == [("train", {"selection"}), ("eval", {"selection"})]


def test_the_report_from_the_cache_needs_the_finished_warm_up_and_trains_nothing(tmp_path):
    from lco.demo.cli import settings_from_args
    from lco.demo.recipe import study_report_from_cache

    with pytest.raises(ValueError, match="no finished warm-up"):
        study_report_from_cache(SETTINGS, tmp_path)
    assert not (tmp_path / "stages").exists() or not any((tmp_path / "stages").iterdir())
    with pytest.raises(ValueError, match="--report-only needs --study"):
        settings_from_args(_args(study=None, report_only=True))


def test_the_committed_study_results_regenerate_their_tables():
    """docs/study/results.json (the measured run's raw results) regenerates the report: each row's pass@1
    is the mean over its seeds of the per-problem fractions of correct samples it stores."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "docs" / "study" / "results.json"
    payload = json.loads(path.read_text())
    md = study_markdown_from(payload)
    assert "## Confirmation (test split), lr 0.0003" in md
    runs = [
        r
        for r in payload["runs"]
        if r["method"] == "lco_kld_outcome_beta_negative"
        and r["phase"] == "confirmation"
        and r["learning_rate"] == 1e-4
    ]
    assert len(runs) == 5
    means = [sum(int(c) for c in r["sampled"]) / (8 * len(r["sampled"])) for r in runs]
    assert means == pytest.approx([r["pass@1"] for r in runs])
    table = md.split("## Confirmation (test split), lr 0.0001")[1].split("\n## ")[0]
    assert f"{100 * sum(means) / 5:.2f} ±" in table


def study_markdown_from(payload):
    from lco.demo.report.study import study_markdown

    return study_markdown(payload, analyse(payload))
