"""A new kind of loss is one function and one registry row; the trainer is untouched (docs/trainer.md)."""

from __future__ import annotations

import copy

import pytest
import torch

from lco.objectives.losses import LossBatch, LossContext
from lco.objectives.reduction import masked_mean
from lco.objectives.registry import (
    OBJECTIVE_SPECS,
    ObjectiveSpec,
    register_objective,
    unregister_objective,
)
from lco.trainer import LCOConfig, LCOTrainer

from .conftest import parity_reward, tiny_config
from .test_trainer_exact import _completion_logits, _manual_batch, _token_advantages


def sampled_logit_loss(batch: LossBatch, ctx: LossContext):
    """A toy: −A(s_t, a_t)·z_{a_t} on the loss's tokens, averaged (the docs' example)."""
    actions = batch.completion_ids

    def head_fn(h, w, b):  # runs inside the policy's forward, on its final hidden states and head
        z_sampled = (h * w[actions]).sum(-1)
        return z_sampled if b is None else z_sampled + b[actions]

    z_sampled = ctx.forward(head_fn)
    loss = masked_mean(-batch.rollout.token_advantages * z_sampled, batch.mask)
    return loss / ctx.accumulation_steps, {"toy/objective": float(loss.detach())}


@pytest.fixture
def toy_objective():
    spec = register_objective(
        ObjectiveSpec(
            "toy_sampled_logit",
            loss=sampled_logit_loss,
            rejected_advantages={
                "dpo_dense": "a sampled-token loss",
                "logprob_dense": "a sampled-token loss",
            },
        )
    )
    yield spec
    unregister_objective(spec.name)


def test_a_registered_loss_trains_with_the_gradient_it_states(
    tmp_path, tiny_models, tokenizer, prompts, toy_objective
):
    args = tiny_config(tmp_path, tiny_models, objective=toy_objective.name)
    trainer = LCOTrainer(
        tiny_models["policy"], parity_reward, args, train_dataset=prompts, processing_class=tokenizer
    )
    model = trainer.model.train()
    batch = _manual_batch(tokenizer, model.config.vocab_size)
    model.zero_grad()
    trainer.compute_loss(model, batch).backward()

    with torch.no_grad():
        h, z = _completion_logits(model, batch)
        A, a = _token_advantages(batch), batch["completion_ids"]
        m = batch["completion_mask"].float()
        z_a = z.gather(-1, a.unsqueeze(-1)).squeeze(-1)
        expected_loss = float((-A * z_a * m).sum() / m.sum())
        expected_grad = torch.zeros_like(model.lm_head.weight)
        expected_grad.index_add_(
            0, a.reshape(-1), (-(A * m) / m.sum()).reshape(-1, 1) * h.reshape(-1, h.shape[-1])
        )
    assert trainer._metrics["train"]["toy/objective"][-1] == pytest.approx(expected_loss, rel=1e-5)
    torch.testing.assert_close(model.lm_head.weight.grad, expected_grad, atol=1e-6, rtol=1e-4)


class _Recorder(LCOTrainer):
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        self.seen = [
            *getattr(self, "seen", []),
            (inputs, copy.deepcopy(self.accelerator.unwrap_model(model))),
        ]
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)


def test_a_registered_loss_runs_a_training_step_and_logs_its_metric(
    tmp_path, tiny_models, tokenizer, prompts, toy_objective
):
    trainer = _Recorder(
        tiny_models["policy"],
        parity_reward,
        tiny_config(tmp_path, tiny_models, objective=toy_objective.name, max_steps=1),
        train_dataset=prompts,
        processing_class=tokenizer,
    )
    before = trainer.model.lm_head.weight.detach().clone()
    trainer.train()
    expected = []
    for inputs, policy in trainer.seen:
        with torch.no_grad():
            _, z = _completion_logits(policy, inputs)
            z_a = z.gather(-1, inputs["completion_ids"].unsqueeze(-1)).squeeze(-1)
            m = inputs["completion_mask"].float()
            expected.append(float((-_token_advantages(inputs) * z_a * m).sum() / m.sum()))
    logged = [log["toy/objective"] for log in trainer.state.log_history if "toy/objective" in log]
    assert logged == [pytest.approx(sum(expected) / len(expected), rel=1e-5)]
    assert not torch.equal(trainer.model.lm_head.weight, before), "the step did not move the head"


def test_registering_a_taken_name_or_an_unknown_advantage_is_refused(toy_objective):
    with pytest.raises(ValueError, match="already registered"):
        register_objective(ObjectiveSpec("lco_kld", loss=sampled_logit_loss))
    with pytest.raises(ValueError, match="unknown advantages"):
        register_objective(ObjectiveSpec("toy_2", loss=sampled_logit_loss, rejected_advantages={"gae": "x"}))
    with pytest.raises(ValueError, match="register_objective"):
        unregister_objective("lco_kld")
    assert "toy_2" not in OBJECTIVE_SPECS
    assert (
        LCOConfig(output_dir="unused", objective=toy_objective.name, use_cpu=True, bf16=False).objective
        == toy_objective.name
    )
