"""The reward-model gate in report.md (issue 12): shown before the RL table with the four greedy
pass@1 and met / NOT MET; when not met, the rows driven by φ_DPO say they ran on a failed reward model.
And the reward-model paragraph states the pair recipe of the settings."""

from __future__ import annotations

import json
from dataclasses import replace

from lco.demo.methods import METHODS
from lco.demo.report.collect import method_table, results_json, stability
from lco.demo.report.markdown import (
    FAILED_RM_LABEL,
    gate_markdown,
    pair_recipe_text,
    report_markdown,
    reward_model_markdown,
)
from lco.demo.reward_model import reward_model_gate
from lco.demo.settings import profile_settings

SETTINGS = profile_settings("default")


def _gate(warmup, phi_ref, phi_dpo, pistar):
    return {**reward_model_gate(warmup, phi_ref, phi_dpo, pistar), "test_problems": 500, "pistar_beta": 1.0}


MET = _gate(0.338, 0.566, 0.792, 0.526)
FAILED = _gate(0.35, 0.565, 0.5, 0.285)  # issue 12's numbers on main before the new recipe


def _record(method, seed=0):
    split = {"pass@1": 0.3, "greedy_pass@1": 0.3, "problems": 500}
    trained = METHODS[method].trained
    return {
        "method": method,
        "label": METHODS[method].label,
        "seed": seed,
        "purpose": "table",
        "trained": trained,
        "status": "ok" if trained else "not trained",
        "collapsed": False,
        "curve": [],
        "rollouts": 320 if trained else 0,
        "num_generations": METHODS[method].num_generations,
        "iterations_per_rollout": 1,
        "steps": 20,
        "splits": {"test": split, "hard": split},
        "_history": [{"step": 1, "grad_norm": 1.0}] if trained else [],
    }


def _report(gate):
    records = [_record(m) for m in ("warmup", "lco_kld", "lco_kld_rule", "grpo")]
    return report_markdown(
        SETTINGS,
        records,
        {"test": "500", "hard": "200"},
        method_table(records),
        stability(records),
        sweep=None,
        figures={},
        rm_info=None,
        times={"cpu_count": 2},
        seconds=60.0,
        gate=gate,
    )


def test_a_met_gate_is_shown_before_the_rl_table_with_its_four_numbers():
    md = _report(MET)
    assert md.index("## Reward-model gate") < md.index("## Results")
    gate = md.split("## Reward-model gate", 1)[1].split("\n## ", 1)[0]
    for value in ("33.80", "56.60", "79.20", "52.60"):
        assert value in gate
    assert "| met |" in gate and "NOT MET" not in md
    assert FAILED_RM_LABEL not in md


def test_a_failed_gate_is_loud_and_labels_the_rows_driven_by_phi_dpo():
    md = _report(FAILED)
    gate = md.split("## Reward-model gate", 1)[1].split("\n## ", 1)[0]
    assert "**NOT MET**" in gate and "REWARD MODEL GATE NOT MET" in gate
    assert (
        "φ_DPO (50.00) is not above φ_ref (56.50)" in gate and "π* (28.50) is not above π_0 (35.00)" in gate
    )
    results = md.split("## Results", 1)[1].split("\n## ", 1)[0]
    assert f"| LCO-KLD{FAILED_RM_LABEL} |" in results  # dense DPO advantage
    assert "| LCO-KLD (sampled, rule RM) |" in results and "| GRPO |" in results  # verifier reward: no label
    # only φ_DPO's ordering fails: the message names that one alone
    one = gate_markdown(_gate(0.35, 0.565, 0.5, 0.40))
    assert "is not above φ_ref" in one and "is not above π_0" not in one


def test_results_json_records_the_gate_or_null():
    for gate, expected in ((MET, True), (FAILED, False)):
        text = results_json(SETTINGS, [], {}, {}, None, None, {}, {}, gate=gate)
        recorded = json.loads(text)["reward_model_gate"]
        assert recorded == {k: gate[k] for k in ("warmup", "phi_ref", "phi_dpo", "pistar")} | {
            "met": expected
        }
    assert json.loads(results_json(SETTINGS, [], {}, {}, None, None, {}, {}))["reward_model_gate"] is None
    assert gate_markdown(None) == ""


def test_reward_model_paragraph_states_the_pair_recipe_of_the_settings():
    info = {
        "pairs": 2651,
        "prompts": 1500,
        "sample_accuracy": 0.3,
        "held_out_pairs": 100,
        "held_out_accuracy": 0.89,
        "held_out_margin": 2.0,
    }
    rm = SETTINGS.reward_model
    text = reward_model_markdown(info, SETTINGS)
    assert "rejected: an incorrect sample of π_0's" in text and f"T = {rm.sample_temperature:g}" in text
    assert "or the task's reference solution" in text and "DPO + NLL on the chosen (RPO)" in text
    assert f"{rm.epochs} epoch(s)" in text and "samples of the warm-up policy" not in text
    plain = replace(rm, reference_chosen=False, loss_type=("sigmoid",), pair_sources=("reference",))
    text = pair_recipe_text(plain)
    assert "reference solution" not in text and "RPO" not in text and "φ_ref's" in text and "with DPO" in text
