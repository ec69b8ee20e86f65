"""The reward-model gate (issue 12): Table 1's ordering φ_DPO > φ_ref and π* > π_0, checked as a pure
function of four pass@1 values, and the verifier-labelled pairs the reward model is trained on."""

from __future__ import annotations

import itertools
import random

import pytest

from lco.demo.reward_model import label_pairs, reward_model_gate
from lco.tasks.arithmetic import generate_splits


@pytest.mark.parametrize(
    "warmup, phi_ref, phi_dpo, pistar",
    list(itertools.product((0.35,), (0.5, 0.565), (0.5, 0.565, 0.6), (0.285, 0.35, 0.4))),
)
def test_gate_is_met_iff_dpo_beats_its_reference_and_pistar_beats_the_policy(
    warmup, phi_ref, phi_dpo, pistar
):
    gate = reward_model_gate(warmup=warmup, phi_ref=phi_ref, phi_dpo=phi_dpo, pistar=pistar)
    assert gate["met"] is ((phi_dpo > phi_ref) and (pistar > warmup))
    assert (gate["warmup"], gate["phi_ref"], gate["phi_dpo"], gate["pistar"]) == (
        warmup,
        phi_ref,
        phi_dpo,
        pistar,
    )


def test_gate_on_the_numbers_measured_on_main_is_not_met():
    # issue 12: π_0 35.0 %, φ_ref 56.5 %, φ_DPO 50.0 %, π* 28.5 % — both orderings fail
    assert reward_model_gate(0.35, 0.565, 0.5, 0.285)["met"] is False


def test_ties_do_not_meet_the_gate():
    assert reward_model_gate(0.35, 0.5, 0.5, 0.4)["met"] is False
    assert reward_model_gate(0.35, 0.5, 0.6, 0.35)["met"] is False


@pytest.mark.parametrize("name", ["warmup", "phi_ref", "phi_dpo", "pistar"])
@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), True, "0.5", None])
def test_gate_rejects_a_value_that_is_not_a_pass_at_1_naming_it(name, bad):
    values = {"warmup": 0.3, "phi_ref": 0.5, "phi_dpo": 0.6, "pistar": 0.4, name: bad}
    with pytest.raises(ValueError, match=name):
        reward_model_gate(**values)


def _problems(n=3):
    return generate_splits(seed=0, train_size=20, test_size=5, hard_size=5)["train"][:n]


def test_pairs_put_a_correct_completion_above_an_incorrect_one():
    problems = _problems()
    samples = [[p.solution, "\\boxed{99999}", p.solution, "\\boxed{99998}"] for p in problems]
    pairs = label_pairs(problems, samples, max_pairs=5, reference_chosen=False, rng=random.Random(0))
    # one distinct correct × two distinct incorrect completions per problem
    assert len(pairs) == 2 * len(problems)
    answers = {p.prompt: p.answer for p in problems}
    for pair in pairs:
        assert pair["chosen"] == f"\\boxed{{{answers[pair['prompt']]}}}"
        assert pair["rejected"] in ("\\boxed{99999}", "\\boxed{99998}")


def test_reference_chosen_gives_pairs_to_prompts_whose_samples_are_all_wrong():
    problems = _problems()
    wrong = [["\\boxed{99999}", "\\boxed{99998}", "\\boxed{99999}"] for _ in problems]
    rng = random.Random(0)
    assert label_pairs(problems, wrong, max_pairs=2, reference_chosen=False, rng=rng) == []
    pairs = label_pairs(problems, wrong, max_pairs=2, reference_chosen=True, rng=rng)
    assert len(pairs) == 2 * len(problems)
    assert {pair["chosen"] for pair in pairs} == {p.solution for p in problems}
    # at most max_pairs per prompt
    assert len(label_pairs(problems, wrong, max_pairs=1, reference_chosen=True, rng=rng)) == len(problems)


def _gate(**values):
    return {**reward_model_gate(**values), "test_problems": 200, "pistar_beta": 1.0}


def test_a_failed_gate_is_logged_and_printed_and_a_met_one_is_silent(capsys, caplog):
    from lco.demo.recipe import announce_failed_gate

    with caplog.at_level("WARNING", logger="lco.demo.recipe"):
        announce_failed_gate(_gate(warmup=0.35, phi_ref=0.565, phi_dpo=0.5, pistar=0.285))
    assert "REWARD MODEL GATE NOT MET" in capsys.readouterr().out
    assert any("REWARD MODEL GATE NOT MET" in r.getMessage() for r in caplog.records)
    caplog.clear()
    announce_failed_gate(_gate(warmup=0.35, phi_ref=0.565, phi_dpo=0.785, pistar=0.46))
    announce_failed_gate(None)  # no reward model in this run: nothing to gate
    assert capsys.readouterr().out == "" and not caplog.records


def test_record_gate_adds_the_four_numbers_and_met_to_results_json(tmp_path):
    import json

    from lco.demo.recipe import record_gate

    path = tmp_path / "results.json"
    path.write_text(json.dumps({"profile": "quick", "table": {}}))
    record_gate(path, _gate(warmup=0.35, phi_ref=0.565, phi_dpo=0.785, pistar=0.46))
    results = json.loads(path.read_text())
    assert results["profile"] == "quick"  # the report's keys are kept
    assert results["reward_model_gate"] == {
        "warmup": 0.35,
        "phi_ref": 0.565,
        "phi_dpo": 0.785,
        "pistar": 0.46,
        "met": True,
    }
