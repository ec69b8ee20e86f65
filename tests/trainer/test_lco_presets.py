"""``lco_preset="paper"`` restores the paper's form even when LCOConfig's defaults are not the paper's
(issue 12: the defaults may follow the demo's stability study; the paper stays one preset away)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from lco.trainer.config import LCO_OPTION_FIELDS, LCO_PRESETS, LCOConfig

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


@dataclass
class _ShiftedDefaults(LCOConfig):
    """LCOConfig with every stability option moved off the paper's value, as new defaults would be."""

    lco_support: str = "top_k"
    lco_support_k: int = 3
    lco_anchor_update_steps: int = 0
    lco_beta_negative: float | None = 50.0
    advantage_normalization: str = "std"
    lco_temperature_consistent: bool = True


def _options(config) -> dict:
    return {name: getattr(config, name) for name in PAPER}


def test_the_paper_preset_names_every_stability_option():
    assert set(LCO_PRESETS["paper"]) == (set(LCO_OPTION_FIELDS) - {"lco_preset"}) | {
        "advantage_normalization"
    }
    assert LCO_PRESETS["paper"] == PAPER


def test_paper_preset_resets_shifted_defaults_to_the_paper(tmp_path):
    shifted = _ShiftedDefaults(output_dir=str(tmp_path), use_cpu=True)
    assert all(_options(shifted)[name] != value for name, value in PAPER.items())  # else nothing is tested
    paper = _ShiftedDefaults(output_dir=str(tmp_path), use_cpu=True, lco_preset="paper")
    assert _options(paper) == PAPER


def test_paper_preset_keeps_a_field_the_user_moved_off_the_default(tmp_path):
    config = _ShiftedDefaults(
        output_dir=str(tmp_path), use_cpu=True, lco_preset="paper", lco_anchor_update_steps=4
    )
    assert _options(config) == {**PAPER, "lco_anchor_update_steps": 4}


def test_lco_config_defaults_match_the_documented_default_form(tmp_path):
    """Whatever the defaults are, LCOConfig() and the dataclass fields agree, and "paper" gives PAPER."""
    declared = {f.name: f.default for f in dataclasses.fields(LCOConfig) if f.name in PAPER}
    assert _options(LCOConfig(output_dir=str(tmp_path), use_cpu=True)) == declared
    assert _options(LCOConfig(output_dir=str(tmp_path), use_cpu=True, lco_preset="paper")) == PAPER


def test_other_objectives_hold_the_lco_options_at_the_paper_whatever_the_defaults(tmp_path):
    """A baseline never reads the options; with non-paper defaults it must not keep an anchor snapshot."""
    grpo = _ShiftedDefaults(output_dir=str(tmp_path), use_cpu=True, objective="grpo")
    assert grpo.lco_anchor_update_steps == 1 and grpo.lco_support == "full" and grpo.lco_beta_negative is None
