"""Every valid objective × advantage pair trains on CPU and moves the weights; bad pairs are refused."""

from __future__ import annotations

import pytest
import torch

from lco.trainer import REJECTED_PAIRS, VALID_PAIRS, LCOConfig, LCOTrainer

from .conftest import parity_reward, tiny_config


@pytest.mark.slow
@pytest.mark.parametrize(("objective", "advantage"), VALID_PAIRS, ids=[f"{o}-{a}" for o, a in VALID_PAIRS])
def test_valid_pair_trains_two_steps_and_changes_weights(
    tmp_path, tiny_models, tokenizer, prompts, objective, advantage
):
    args = tiny_config(tmp_path, tiny_models, objective=objective, advantage=advantage)
    trainer = LCOTrainer(
        model=tiny_models["policy"],
        reward_funcs=parity_reward,
        args=args,
        train_dataset=prompts,
        processing_class=tokenizer,
    )
    before = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    trainer.train()
    assert trainer.state.global_step == 2
    moved = [k for k, v in trainer.model.named_parameters() if k in before and not torch.equal(before[k], v)]
    # the LM head feeds every objective's gradient, so it must have moved
    assert "lm_head.weight" in moved, f"{objective}/{advantage} did not update the LM head"
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert losses and all(torch.isfinite(torch.tensor(losses)))


@pytest.mark.parametrize(("objective", "advantage"), sorted(REJECTED_PAIRS))
def test_rejected_pair_names_both_choices(tmp_path, tiny_models, objective, advantage):
    with pytest.raises(ValueError, match=f"objective='{objective}' with advantage='{advantage}'"):
        tiny_config(tmp_path, tiny_models, objective=objective, advantage=advantage)


def test_method_defaults_follow_each_paper_unless_overridden(tmp_path, tiny_models):
    assert tiny_config(tmp_path, tiny_models, objective="dapo").epsilon_high == 0.28
    assert tiny_config(tmp_path, tiny_models, objective="cispo").epsilon_high == 5.0
    gspo = tiny_config(tmp_path, tiny_models, objective="gspo")
    assert (gspo.loss_type, gspo.importance_sampling_level, gspo.epsilon) == ("grpo", "sequence", 3e-4)
    assert tiny_config(tmp_path, tiny_models, objective="dr_grpo").scale_rewards == "none"
    assert tiny_config(tmp_path, tiny_models, objective="dapo", epsilon_high=0.4).epsilon_high == 0.4
    assert tiny_config(tmp_path, tiny_models, objective="ppo").num_iterations == 4
    assert isinstance(tiny_config(tmp_path, tiny_models), LCOConfig)
