"""LCO's stability options outside the config class: the signal-aware defaults, the presets, and what an
unset option resolves to (read by :class:`lco.trainer.config.LCOConfig`; docs/trainer.md, "Stability options"
and "Defaults, from the evidence").

Every function here is pure: a config is only read (for a preset's value that follows it, e.g. β_negative =
100·``lco_beta``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..objectives.registry import advantage_spec, objective_spec

# The π* support of the LCO target: the whole vocabulary (eq. 6), π_old's top-k, or the sampled token.
LCO_SUPPORTS = ("full", "top_k", "sampled")
# Fields that only act on an LCO objective's target z* (ObjectiveSpec.accepts_lco_options);
# any other objective refuses them when they differ from their defaults.
LCO_OPTION_FIELDS = (
    "lco_anchor_update_steps",
    "lco_support",
    "lco_support_k",
    "lco_beta_negative",
    "lco_temperature_consistent",
    "lco_preset",
)


@dataclass(frozen=True)
class SignalDefaults:
    """What LCO's anchor and β_negative default to for one kind of advantage signal.

    Attributes:
        anchor_update_steps: ``lco_anchor_update_steps`` (0 = the initial policy, 1 = the policy that
            generated the batch, the paper).
        beta_negative_factor: ``lco_beta_negative`` = this × ``lco_beta``; ``None`` leaves it unset
            (one β for both signs, the paper).
        why: the reason, as logged once when the config resolves the defaults.
    """

    anchor_update_steps: int
    beta_negative_factor: float | None
    why: str


# The signal-aware defaults (issue 22; docs/trainer.md, "Defaults, from the evidence"): the ONE table
# to revise when the evidence changes, keyed by ``AdvantageSpec.signal`` of the advantage's row.
# Measured on the demo's miniature on seeds the choosing study never used (LCO-KLD, 1,920 rollouts,
# sampled test pass@1, mean ± std over the seeds):
# - "fixed" (a reward model's advantage, a fixed function of the state): re-anchoring every batch aims at
#   π_0·exp(k·A/β) after k batches and walks to argmax A; the initial policy bounds the tilt. Dense DPO:
#   28.7 ± 2.1 at lr 1e-4 and 28.3 ± 0.2 at 3e-4 (no collapse), the per-batch anchor collapsed 2 of 2.
# - "policy" (the outcome reward, whose group baseline moves with the policy): re-anchoring is mirror
#   descent and lets the policy move; held at π_0 it stays there (24.1 ± 0.4 at 1e-4). Paper anchor with
#   β_negative = 100β: 31.5 ± 0.6 (GRPO 29.4 ± 2.5) at 1e-4, 14.5 ± 3.8 (1 of 3 collapsed; GRPO 8.3, 3 of 3) at 3e-4.
# The stability study (issue 23; docs/demo.md) chose both rows again on its validation split and confirmed them
# on 5 disjoint test seeds (1,280 rollouts, k = 8): verifier default 29.6 ± 0.8 vs GRPO 26.7 ± 0.7 at 1e-4
# (+2.8 [+1.5, +4.1]); dense default 26.5 ± 0.4 (GRPO 26.7) at 1e-4 and 24.3 ± 2.4 at 3e-4 (GRPO 5.4, 5/5 collapsed).
SIGNAL_DEFAULTS: dict[str, SignalDefaults] = {
    "fixed": SignalDefaults(
        anchor_update_steps=0,
        beta_negative_factor=None,
        why="a fixed reward-model signal: re-anchoring every batch would compound the tilt "
        "π_0·exp(k·A/β), the initial policy bounds it",
    ),
    "policy": SignalDefaults(
        anchor_update_steps=1,
        beta_negative_factor=100.0,
        why="a policy-dependent signal (the group baseline moves with the policy): re-anchoring at the "
        "generating policy lets it move (mirror descent), β_negative = 100·β softens the push down on "
        "confident tokens",
    ),
}

# The options no signal decides: the paper's values (arXiv 2603.00963).
PAPER_OPTION_DEFAULTS: dict[str, object] = {
    "lco_support": "full",
    "lco_support_k": 5,
    "advantage_normalization": "mean",
    "lco_temperature_consistent": False,
}

# Every field a preset or the advantage may fill; each defaults to None ("not set"), so that a value the
# user gave — even one equal to a default — is told apart from one they left.
RESOLVED_FIELDS = (
    "lco_anchor_update_steps",
    "lco_support",
    "lco_support_k",
    "lco_beta_negative",
    "advantage_normalization",
    "lco_temperature_consistent",
)


# What "not set" looks like per field: None, except the bool flag (see its field).
_UNSET = {name: (False if name == "lco_temperature_consistent" else None) for name in RESOLVED_FIELDS}


def _hundred_beta(config) -> float:
    return 100.0 * config.lco_beta


def _authors_normalization(config) -> str:
    # The authors divide the dense DPO advantage by its std over the top-5 (no centring); their rule
    # reward is regressed as it is. A sparse advantage's std over a support keeps only its sign.
    return "std" if advantage_spec(config.advantage).dense else "none"


# Named settings of the stability options (docs/trainer.md, "Stability options"). A preset fills the
# fields the user did not set and refuses one they set to something else. A value may be a function of
# the config (β_negative follows lco_beta). "paper": the paper as written (arXiv 2603.00963), every
# option named, so that it is the paper whatever the defaults are. "authors": their public code
# (llama-rlhf): π_old's top-5, the dense advantage divided by its std over those 5 without centring
# (a sparse one as it is), β × 100 where A < 0 (their rule-reward trainers, A ≤ 0: at A = 0 the tilt is
# 0 either way) and the old logits of all rollouts from the initial policy.
LCO_PRESETS: dict[str, dict] = {
    "paper": {
        "lco_support": "full",
        "lco_support_k": 5,
        "lco_anchor_update_steps": 1,
        "lco_beta_negative": None,
        "advantage_normalization": "mean",
        "lco_temperature_consistent": False,
    },
    "authors": {
        "lco_support": "top_k",
        "lco_support_k": 5,
        "advantage_normalization": _authors_normalization,
        "lco_beta_negative": _hundred_beta,
        "lco_anchor_update_steps": 0,
    },
}


def signal_defaults(advantage: str, lco_beta: float) -> dict:
    """``lco_anchor_update_steps`` and ``lco_beta_negative`` for ``advantage`` when nothing sets them
    (:data:`SIGNAL_DEFAULTS` of its row's ``signal``)."""
    row = SIGNAL_DEFAULTS[advantage_spec(advantage).signal]
    factor = row.beta_negative_factor
    # a bad β is reported as lco_beta's own error (validation, preflight), not as β_negative's
    usable = isinstance(lco_beta, (int, float)) and math.isfinite(lco_beta) and lco_beta > 0
    return {
        "lco_anchor_update_steps": row.anchor_update_steps,
        "lco_beta_negative": None if factor is None or not usable else factor * lco_beta,
    }


def default_lco_options(objective: str, advantage: str, lco_beta: float = 1.0) -> dict:
    """The stability options an ``LCOConfig`` with none of them set resolves to (the fields of
    :data:`RESOLVED_FIELDS`): the paper's neutral values for a non-LCO objective, else the paper's
    options with the anchor and β_negative of the advantage's signal."""
    neutral = {name: LCO_PRESETS["paper"][name] for name in RESOLVED_FIELDS}
    if not objective_spec(objective).accepts_lco_options:
        return neutral
    return {**neutral, **PAPER_OPTION_DEFAULTS, **signal_defaults(advantage, lco_beta)}


def _same_option(name: str, a, b, lco_beta: float) -> bool:
    """Whether two values of an option mean the same (β_negative ``None`` is β)."""
    if name == "lco_beta_negative":
        return (lco_beta if a is None else a) == (lco_beta if b is None else b)
    return a == b
