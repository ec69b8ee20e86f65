"""Signal-aware defaults and presets that never overwrite (issue 22).

The anchor and β_negative follow the advantage's kind (a fixed reward-model signal vs a policy-dependent
one); a preset fills only the options the user left unset, and a conflicting explicit option — even one
equal to an old default — is one error naming both, from Python, YAML and the command line.
"""

from __future__ import annotations

import json
import logging

import pytest

from lco.cli import main as lco_main
from lco.objectives.registry import ADVANTAGE_SPECS
from lco.trainer.cli import parse
from lco.trainer.config import (
    LCO_OPTION_FIELDS,
    LCO_PRESETS,
    RESOLVED_FIELDS,
    SIGNAL_DEFAULTS,
    LCOConfig,
    default_lco_options,
)

# the paper as written (arXiv 2603.00963): π* over the whole vocabulary (eq. 6), π_old = the policy that
# generated the batch, one β for both signs, mean-centred advantage, T = 1 logits
PAPER = {
    "lco_support": "full",
    "lco_support_k": 5,
    "lco_anchor_update_steps": 1,
    "lco_beta_negative": None,
    "advantage_normalization": "mean",
    "lco_temperature_consistent": False,
}
# issue 22, written out here independently of the config's table: the anchor and β_negative / β of each
# advantage when nothing sets them. dpo_token is eq. 13 read at the sampled token: a fixed function of
# the state like the dense reward-model advantages.
EXPECTED_SIGNAL = {
    "outcome": (1, 100.0),
    "dpo_token": (0, None),
    "dpo_dense": (0, None),
    "logprob_dense": (0, None),
}
MODELS = {"reward_model_path": "phi_dpo", "reference_reward_model_path": "phi_ref"}


def _config(tmp_path, **fields) -> LCOConfig:
    return LCOConfig(output_dir=str(tmp_path / "out"), use_cpu=True, report_to="none", **MODELS, **fields)


def _options(config) -> dict:
    return {name: getattr(config, name) for name in PAPER}


# --- defaults from the advantage's signal ------------------------------------------------------------


def test_every_advantage_has_a_row_in_the_signal_table():
    assert set(EXPECTED_SIGNAL) == set(ADVANTAGE_SPECS)
    assert {spec.signal for spec in ADVANTAGE_SPECS.values()} <= set(SIGNAL_DEFAULTS)


@pytest.mark.parametrize("objective", ["lco_kld", "lco_lch", "lco_mse"])
@pytest.mark.parametrize("advantage", sorted(EXPECTED_SIGNAL))
def test_each_advantage_kind_resolves_its_anchor_and_beta_negative(tmp_path, advantage, objective):
    beta = 0.5
    config = _config(tmp_path, objective=objective, advantage=advantage, lco_beta=beta)
    anchor, factor = EXPECTED_SIGNAL[advantage]
    expected = {
        **PAPER,
        "lco_anchor_update_steps": anchor,
        "lco_beta_negative": None if factor is None else factor * beta,
    }
    assert _options(config) == expected
    assert default_lco_options(objective, advantage, beta) == expected


@pytest.mark.parametrize(
    ("advantage", "explicit"),
    [
        # values equal to the *other* kind's default, and values equal to this kind's own default
        ("outcome", {"lco_anchor_update_steps": 0, "lco_beta_negative": 1.0}),
        ("outcome", {"lco_anchor_update_steps": 1, "lco_beta_negative": 100.0}),
        ("dpo_dense", {"lco_anchor_update_steps": 1, "lco_beta_negative": 100.0}),
        ("dpo_token", {"lco_anchor_update_steps": 4}),
        ("outcome", {"lco_beta_negative": 7.0}),
    ],
)
def test_explicit_values_always_win(tmp_path, advantage, explicit):
    config = _config(tmp_path, advantage=advantage, **explicit)
    assert {name: getattr(config, name) for name in explicit} == explicit


def test_the_resolution_is_logged_once_in_one_line_with_its_reason(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="lco.trainer.config"):
        _config(tmp_path, advantage="outcome")
    lines = [r.getMessage() for r in caplog.records if r.name == "lco.trainer.config"]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert "lco_anchor_update_steps=1" in lines[0] and "lco_beta_negative=100.0" in lines[0]
    assert "policy-dependent" in lines[0] and "mirror descent" in lines[0]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="lco.trainer.config"):
        _config(tmp_path, advantage="dpo_dense", lco_beta_negative=2.0)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "lco.trainer.config"]
    assert "lco_anchor_update_steps=0" in line and "lco_beta_negative" not in line and "fixed" in line
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="lco.trainer.config"):
        _config(tmp_path, advantage="outcome", lco_anchor_update_steps=1, lco_beta_negative=50.0)
        _config(tmp_path, advantage="outcome", lco_preset="paper")
        _config(tmp_path, objective="grpo")
    assert not [r for r in caplog.records if r.name == "lco.trainer.config"]  # nothing was decided


def test_resolved_values_are_saved_with_the_config_and_reload_unchanged(tmp_path, caplog):
    config = _config(tmp_path, advantage="outcome", lco_beta=2.0)
    saved = json.loads(config.to_json_string())
    assert (saved["lco_anchor_update_steps"], saved["lco_beta_negative"]) == (1, 200.0)
    reloadable = {
        *RESOLVED_FIELDS,
        "output_dir",
        "use_cpu",
        "advantage",
        "lco_beta",
        "lco_preset",
        "objective",
    }
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="lco.trainer.config"):
        reloaded = LCOConfig(**{name: saved[name] for name in reloadable})
    assert _options(reloaded) == _options(config)
    assert not [r for r in caplog.records if r.name == "lco.trainer.config"]  # explicit now: nothing decided


# --- non-LCO objectives -------------------------------------------------------------------------


@pytest.mark.parametrize("objective", ["grpo", "ppo", "reinforce", "sft"])
def test_other_objectives_hold_the_lco_options_at_the_papers_neutral_values(tmp_path, objective):
    """A baseline never reads the options; whatever the LCO defaults, it keeps no anchor snapshot."""
    config = _config(tmp_path, objective=objective, advantage="outcome")
    assert {name: getattr(config, name) for name in LCO_OPTION_FIELDS} == {
        **{name: PAPER[name] for name in LCO_OPTION_FIELDS if name in PAPER},
        "lco_preset": None,
    }
    # the neutral value given explicitly is accepted (β_negative = β is "one β for both signs")
    _config(tmp_path, objective=objective, lco_anchor_update_steps=1, lco_beta_negative=1.0)
    with pytest.raises(ValueError, match="lco_anchor_update_steps applies to the LCO objectives"):
        _config(tmp_path, objective=objective, lco_anchor_update_steps=0)


# --- presets -----------------------------------------------------------------------------------


def test_the_paper_preset_names_every_stability_option():
    assert set(LCO_PRESETS["paper"]) == set(RESOLVED_FIELDS)
    assert LCO_PRESETS["paper"] == PAPER


@pytest.mark.parametrize("advantage", sorted(EXPECTED_SIGNAL))
def test_the_paper_preset_is_the_paper_for_every_advantage(tmp_path, advantage):
    assert _options(_config(tmp_path, advantage=advantage, lco_preset="paper")) == PAPER


@pytest.mark.parametrize(
    ("advantage", "normalization"),
    [("dpo_dense", "std"), ("logprob_dense", "std"), ("outcome", "none"), ("dpo_token", "none")],
)
def test_the_authors_preset_divides_only_a_dense_advantage_by_its_std(tmp_path, advantage, normalization):
    config = _config(tmp_path, advantage=advantage, lco_preset="authors", lco_beta=2.0)
    assert _options(config) == {
        "lco_support": "top_k",
        "lco_support_k": 5,
        "lco_anchor_update_steps": 0,
        "lco_beta_negative": 200.0,
        "advantage_normalization": normalization,
        "lco_temperature_consistent": False,
    }


def test_a_preset_fills_only_the_unset_options(tmp_path):
    config = _config(tmp_path, lco_preset="authors", lco_temperature_consistent=True)
    assert config.lco_temperature_consistent is True and config.lco_support == "top_k"
    # an explicit value equal to the preset's is no conflict (β_negative None means β)
    _config(tmp_path, lco_preset="paper", lco_anchor_update_steps=1, lco_beta_negative=1.0)
    _config(tmp_path, lco_preset="authors", lco_support_k=5, lco_beta_negative=100.0)


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"lco_preset": "paper", "lco_anchor_update_steps": 0}, "lco_anchor_update_steps=0"),
        # "full" was the old default, so "left at the default" used to swallow it
        ({"lco_preset": "authors", "lco_support": "full"}, "lco_support='full'"),
        ({"lco_preset": "authors", "lco_support_k": 3}, "lco_support_k=3"),
        ({"lco_preset": "paper", "lco_beta_negative": 100.0}, "lco_beta_negative=100.0"),
        ({"lco_preset": "paper", "advantage_normalization": "none"}, "advantage_normalization='none'"),
        ({"lco_preset": "paper", "lco_temperature_consistent": True}, "lco_temperature_consistent=True"),
    ],
)
def test_a_preset_and_a_conflicting_explicit_option_is_one_error_naming_both(tmp_path, fields, named):
    with pytest.raises(ValueError, match=f"lco_preset='{fields['lco_preset']}' conflicts with .*{named}"):
        _config(tmp_path, **fields)


def _yaml(tmp_path, **fields) -> str:
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(json.dumps({"prompt": f"{i}+1=", "answer": str(i + 1)}) for i in range(4)))
    settings = {
        "model_name_or_path": "unused",
        "dataset": str(data),
        "output_dir": str(tmp_path / "run"),
        "use_cpu": "true",
        "report_to": "none",
        **fields,
    }
    path = tmp_path / "config.yaml"
    path.write_text("\n".join(f"{k}: {v}" for k, v in settings.items()))
    return str(path)


@pytest.mark.parametrize(
    ("yaml_fields", "overrides", "named"),
    [
        ({"lco_preset": "paper"}, ["--lco_anchor_update_steps", "0"], "lco_anchor_update_steps=0"),
        ({}, ["--lco_preset", "authors", "--lco_support", "full"], "lco_support='full'"),
        ({"lco_preset": "authors", "lco_support": "full"}, [], "lco_support='full'"),
        ({"lco_anchor_update_steps": 0}, ["--lco_preset", "paper"], "lco_anchor_update_steps=0"),
    ],
)
def test_preset_conflicts_from_yaml_and_the_command_line(tmp_path, yaml_fields, overrides, named):
    with pytest.raises(ValueError, match=f"lco_preset=.* conflicts with .*{named}"):
        parse(_yaml(tmp_path, **yaml_fields), overrides)


def test_a_bare_boolean_flag_is_true_and_conflicts_with_the_paper_preset(tmp_path):
    _, config = parse(_yaml(tmp_path), ["--lco_temperature_consistent"])
    assert config.lco_temperature_consistent is True
    with pytest.raises(ValueError, match="lco_preset='paper' conflicts with lco_temperature_consistent=True"):
        parse(_yaml(tmp_path, lco_preset="paper"), ["--lco_temperature_consistent"])


def test_lco_train_reports_a_preset_conflict_as_one_line(tmp_path, capsys):
    code = lco_main(["train", _yaml(tmp_path), "--lco_preset", "paper", "--lco_anchor_update_steps", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("lco train: error: lco_preset='paper' conflicts with lco_anchor_update_steps=0")


def test_the_command_line_and_yaml_resolve_the_same_defaults_as_python(tmp_path):
    _, from_cli = parse(_yaml(tmp_path), [])
    assert (from_cli.lco_anchor_update_steps, from_cli.lco_beta_negative) == (1, 100.0)  # outcome
    _, explicit = parse(_yaml(tmp_path, lco_anchor_update_steps=0), ["--lco_beta_negative", "1.0"])
    assert (explicit.lco_anchor_update_steps, explicit.lco_beta_negative) == (0, 1.0)
    _, dense = parse(_yaml(tmp_path, advantage="dpo_dense", **MODELS), [])
    assert (dense.lco_anchor_update_steps, dense.lco_beta_negative) == (0, None)


# --- a sparse advantage refuses the std normalisations ------------------------------------------


@pytest.mark.parametrize("normalization", ["std", "mean_std"])
@pytest.mark.parametrize("advantage", ["outcome", "dpo_token"])
def test_std_normalisation_of_a_sparse_advantage_is_refused_naming_the_field(
    tmp_path, advantage, normalization
):
    with pytest.raises(
        ValueError, match=f"advantage_normalization='{normalization}' .* sparse .* only the sign"
    ):
        _config(tmp_path, advantage=advantage, advantage_normalization=normalization)


def test_std_normalisation_stays_for_dense_advantages_and_is_ignored_by_baselines(tmp_path):
    assert (
        _config(tmp_path, advantage="dpo_dense", advantage_normalization="std").advantage_normalization
        == "std"
    )
    assert _config(tmp_path, objective="grpo", advantage_normalization="std").advantage_normalization == "std"
