"""Issue 13: inf rewards are warned about once; a policy gone non-finite or uniform stops like the gradient guard."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from transformers import TrainerCallback

from lco.trainer import LCOTrainer
from lco.trainer.guard import NonFiniteGuard, PolicyDivergedError

from .conftest import parity_reward, tiny_config

STOP = "No bad update was applied: the last saved checkpoint in"


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
    assert STOP in str(caught.value)


class _FlattenAfterFirstStep(TrainerCallback):
    """What lr 1e3 does to a sharp policy: its logits flatten (here: the head is zeroed) after a step."""

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == 1:
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
    assert f"ln {trainer._policy_vocab}" in str(caught.value) and "(step 2)" in str(caught.value)
    assert STOP in str(caught.value)


def test_a_policy_that_starts_near_uniform_is_not_stopped():
    """A fresh model sits at ln |V|: only a policy that was once sharper has *gone* uniform."""
    V = 260
    guard = NonFiniteGuard(3, metrics={"lco/entropy": []}, vocab_size=V)
    for _ in range(3):
        guard.metrics["lco/entropy"].append(math.log(V))
        guard.check_entropy(step=1, output_dir="out")  # no error
    guard.metrics["lco/entropy"].append(0.5 * math.log(V))
    guard.check_entropy(step=4, output_dir="out")
    guard.metrics["lco/entropy"].append(math.log(V) * (1 - 1e-6))
    with pytest.raises(PolicyDivergedError, match=r"step 5"):
        guard.check_entropy(step=5, output_dir="out")
