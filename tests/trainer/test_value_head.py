"""Issue 13: PPO's value head is saved apart, so the saved policy loads as a plain causal LM."""

from __future__ import annotations

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, TrainerCallback

from lco.trainer import LCOTrainer
from lco.trainer.value_head import VALUE_HEAD_FILE

from .conftest import parity_reward, tiny_config


def _ppo(tmp_path, tiny_models, tokenizer, prompts, **overrides):
    args = tiny_config(tmp_path, tiny_models, objective="ppo", **overrides)
    return LCOTrainer(
        tiny_models["policy"], parity_reward, args, train_dataset=prompts, processing_class=tokenizer
    )


def test_ppo_policy_weights_exclude_the_value_head_and_resume_restores_it(
    tmp_path, tiny_models, tokenizer, prompts
):
    trainer = _ppo(
        tmp_path, tiny_models, tokenizer, prompts, save_strategy="steps", save_steps=1, max_steps=1
    )
    trainer.train()
    checkpoint = tmp_path / "out" / "checkpoint-1"
    weights = load_file(checkpoint / "model.safetensors")
    assert not any(k.startswith("lco_value_head") for k in weights)
    head = load_file(checkpoint / VALUE_HEAD_FILE)
    trained = trainer._value_head().state_dict()
    assert head.keys() == {"weight", "bias"} and torch.equal(head["weight"], trained["weight"].cpu())
    assert head["weight"].abs().sum() > 0  # the critic learned something, so the round trip is meaningful

    _, info = AutoModelForCausalLM.from_pretrained(checkpoint, output_loading_info=True)
    assert not info["unexpected_keys"] and not info["missing_keys"]

    seen = {}

    class Snapshot(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            seen["weight"] = model.lco_value_head.weight.detach().clone()

    resumed = _ppo(tmp_path, tiny_models, tokenizer, prompts, max_steps=2)
    resumed.add_callback(Snapshot())
    resumed.train(resume_from_checkpoint=str(checkpoint))
    torch.testing.assert_close(seen["weight"].cpu(), head["weight"], rtol=0, atol=0)

    trainer.save_model(str(tmp_path / "final"))
    assert (tmp_path / "final" / VALUE_HEAD_FILE).exists()
    assert not any(
        k.startswith("lco_value_head") for k in load_file(tmp_path / "final" / "model.safetensors")
    )
