"""The objective × advantage registry: every row is consistent with what the trainer and config read."""

from __future__ import annotations

import pytest

from lco.objectives import losses, token_advantages
from lco.objectives.registry import ADVANTAGE_SPECS, OBJECTIVE_SPECS, advantage_spec, objective_spec

LOSSES = (
    losses.lco_batch_loss,
    losses.trl_batch_loss,
    losses.ppo_batch_loss,
    losses.reinforce_batch_loss,
    losses.sft_batch_loss,
    losses.distillation_batch_loss,
)
BUILDERS = (
    token_advantages.sequence_token_advantages,
    token_advantages.leave_one_out_token_advantages,
    token_advantages.gae_token_advantages,
)


@pytest.mark.parametrize("name", list(OBJECTIVE_SPECS))
def test_every_objective_names_a_known_loss_builder_and_rejects_only_known_advantages(name):
    spec = OBJECTIVE_SPECS[name]
    assert spec.name == name
    assert spec.loss in LOSSES and spec.token_advantages in BUILDERS
    assert set(spec.rejected_advantages) <= set(ADVANTAGE_SPECS)
    assert all(reason.strip() for reason in spec.rejected_advantages.values())
    # every objective can be run with the outcome reward
    assert spec.accepts("outcome")
    assert (spec.distill_per_token is not None) == (spec.loss is losses.distillation_batch_loss)


def test_only_the_trl_path_forces_grpo_config_fields():
    for spec in OBJECTIVE_SPECS.values():
        assert bool(spec.grpo_config) == (spec.loss is losses.trl_batch_loss)


def test_a_dense_advantage_is_accepted_only_by_lco():
    dense = [name for name, spec in ADVANTAGE_SPECS.items() if spec.dense]
    for spec in OBJECTIVE_SPECS.values():
        assert all(spec.accepts(a) == (spec.loss is losses.lco_batch_loss) for a in dense), spec.name


def test_advantages_that_read_rows_name_their_reward_models():
    for spec in ADVANTAGE_SPECS.values():
        assert (spec.rows is None) == (not spec.reward_models) == spec.uses_outcome_reward
        assert not spec.dense or spec.rows is not None


def test_unknown_names_are_one_value_error_listing_the_choices():
    with pytest.raises(ValueError, match="objective must be one of lco_kld"):
        objective_spec("trpo")
    with pytest.raises(ValueError, match="advantage must be one of outcome"):
        advantage_spec("gae")
