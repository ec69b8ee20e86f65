"""Issue 13: inf rewards are warned about once; a policy gone non-finite or uniform stops like the gradient guard."""

from __future__ import annotations

import logging
import math
import os

import pytest
import torch
from transformers import TrainerCallback

from lco.trainer import LCOTrainer
from lco.trainer.guard import NonFiniteGuard, PolicyDivergedError

from .conftest import parity_reward, tiny_config


def _trainer(tmp_path, tiny_models, tokenizer, prompts, reward=parity_reward, **overrides):
    args = tiny_config(tmp_path, tiny_models, **overrides)
    return LCOTrainer(tiny_models["policy"], reward, args, train_dataset=prompts, processing_class=tokenizer)


def test_inf_rewards_warn_once_with_the_step(tmp_path, tiny_models, tokenizer, prompts, caplog):
    def sometimes_inf(completions, **kwargs):
        return [math.inf if i == 0 else 1.0 for i in range(len(completions))]

    trainer = _trainer(tmp_path, tiny_models, tokenizer, prompts, reward=sometimes_inf, max_steps=3)
    with caplog.at_level(logging.WARNING, logger="lco.trainer.guard"):
        trainer.train()
    warnings = [r.getMessage() for r in caplog.records if "returned inf" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("step 0: reward function(s) sometimes_inf returned inf")


def test_nonfinite_policy_stops_in_sampling_with_the_guard_message(tmp_path, tiny_models, tokenizer, prompts):
    trainer = _trainer(tmp_path, tiny_models, tokenizer, prompts)
    with torch.no_grad():
        trainer.model.get_output_embeddings().weight.fill_(float("nan"))
    with pytest.raises(PolicyDivergedError, match="probabilities became NaN/inf: sampling failed") as caught:
        trainer.train()
    # issue 20: it used to say "No bad update was applied: the last saved checkpoint … is intact"
    assert "(step 1)" in str(caught.value) and "before any update was applied" in str(caught.value)


class _FlattenAfterFirstStep(TrainerCallback):
    """What lr 1e3 does to a sharp policy: its logits flatten (here: the head is zeroed) after a step."""

    def __init__(self, at_step: int = 1):
        self.at_step = at_step

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.at_step:
            with torch.no_grad():
                model.get_output_embeddings().weight.zero_()


def test_a_policy_that_went_uniform_stops(tmp_path, tiny_models, tokenizer, prompts):
    trainer = _trainer(tmp_path, tiny_models, tokenizer, prompts, max_steps=4, learning_rate=1e-6)
    head = trainer.model.get_output_embeddings()
    with torch.no_grad():
        head.weight.mul_(200.0)  # a sharp starting policy, far below the uniform entropy
    trainer.add_callback(_FlattenAfterFirstStep())
    with pytest.raises(PolicyDivergedError, match="collapsed to the uniform distribution") as caught:
        trainer.train()
    message = str(caught.value)
    assert f"ln {trainer._policy_vocab}" in message and "(step 2)" in message
    # issue 20: the update that did it was applied, and the folder holds no checkpoint: say both
    assert "The update of step 1 was applied" in message and "No bad update" not in message
    assert f"{trainer.args.output_dir} holds no checkpoint" in message


def test_the_stop_names_the_checkpoint_from_before_the_bad_update(tmp_path, tiny_models, tokenizer, prompts):
    """Checkpoints at steps 1 and 2, the update of step 2 flattens the policy: checkpoint-2 holds it, -1 predates it."""
    trainer = _trainer(
        tmp_path,
        tiny_models,
        tokenizer,
        prompts,
        max_steps=5,
        learning_rate=1e-6,
        save_strategy="steps",
        save_steps=1,
    )
    with torch.no_grad():
        trainer.model.get_output_embeddings().weight.mul_(200.0)
    trainer.add_callback(_FlattenAfterFirstStep(at_step=2))
    with pytest.raises(PolicyDivergedError, match="collapsed to the uniform distribution") as caught:
        trainer.train()
    message = str(caught.value)
    assert "(step 3)" in message and "The update of step 2 was applied" in message
    assert "checkpoint-2 (saved after that update) holds it" in message
    assert f"{os.path.join(trainer.args.output_dir, 'checkpoint-1')} (step 1)" in message


def test_the_gradient_stop_says_no_update_was_applied_and_which_checkpoint_exists(tmp_path):
    from types import SimpleNamespace

    from lco.trainer.guard import NonFiniteGradientError

    guard = NonFiniteGuard(2)
    (tmp_path / "checkpoint-4").mkdir()
    model = torch.nn.Linear(2, 1)
    args, state = SimpleNamespace(output_dir=str(tmp_path)), SimpleNamespace(global_step=5)
    model.weight.grad = torch.full_like(model.weight, float("nan"))
    guard.on_pre_optimizer_step(args, state, None, model=model)  # step 6: skipped
    assert model.weight.grad is None
    state.global_step = 6
    model.weight.grad = torch.full_like(model.weight, float("nan"))
    with pytest.raises(NonFiniteGradientError) as caught:
        guard.on_pre_optimizer_step(args, state, None, model=model)  # step 7: the second in a row
    message = str(caught.value)
    assert "2 consecutive steps produced NaN/inf gradients (steps 6-7)" in message
    assert "None of their updates was applied" in message and "after step 5" in message
    assert f"{tmp_path / 'checkpoint-4'} (step 4)" in message
