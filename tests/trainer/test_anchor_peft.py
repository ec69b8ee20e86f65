"""LoRA + every anchor setting: z_old from the base with adapters disabled (m = 0, no copy), a snapshot adapter
(m ≥ 2), TRL's reference shared (β > 0, m = 0), and save → resume → the identical continuation."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import AutoModelForCausalLM

from lco.trainer import LCOTrainer
from lco.trainer.anchor import ANCHOR_ADAPTER, ANCHOR_FILE

from .conftest import parity_reward, tiny_config
from .test_stability_options import _batch_old_logits
from .test_trainer_exact import _completion_logits

peft = pytest.importorskip("peft")


def _lora():
    return peft.LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"], lora_dropout=0.0
    )


class _Recorder(LCOTrainer):
    """Keeps the policy that generated each step (a copy) and, per step, the batch and the loss."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.generation_policies, self.records = {}, []

    def _generate_and_score_completions(self, inputs):
        self.generation_policies[self.state.global_step] = copy.deepcopy(
            self.accelerator.unwrap_model(self.model)
        )
        return super()._generate_and_score_completions(inputs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        self.records.append((self.state.global_step, inputs, float(loss.detach())))
        return loss


def _trainer(tmp_path, tiny_models, tokenizer, prompts, cls=_Recorder, **overrides):
    args = tiny_config(tmp_path, tiny_models, objective="lco_kld", **overrides)
    return cls(
        tiny_models["policy"],
        parity_reward,
        args,
        train_dataset=prompts,
        processing_class=tokenizer,
        peft_config=_lora(),
    )


@torch.no_grad()
def _logits(model, inputs) -> torch.Tensor:
    """z at the completion positions, from the backbone and head (LoRA layers included, as the active adapter
    says); not through ``forward``, which a deepcopy of a patched model would still route to the original."""
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    return _completion_logits(causal_lm, inputs)[1]


def _lora_weights(model, adapter="default") -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if f".{adapter}." in n}


@pytest.mark.slow
def test_lora_anchor_at_the_initial_policy_is_the_base_with_adapters_disabled(
    tmp_path, tiny_models, tokenizer, prompts
):
    trainer = _trainer(tmp_path, tiny_models, tokenizer, prompts, lco_anchor_update_steps=0, max_steps=3)
    assert trainer._anchor.kind == "adapters_disabled" and not hasattr(trainer._anchor, "snapshot")
    base_names = {n for n, _ in trainer.model.named_parameters() if "lora_" not in n}
    trainer.train()
    base = AutoModelForCausalLM.from_pretrained(tiny_models["policy"]).eval()  # independent, from disk
    for step, inputs, _ in trainer.records:
        torch.testing.assert_close(_batch_old_logits(inputs), _logits(base, inputs), atol=1e-5, rtol=1e-5)
        if step > 0:  # the policy (adapters on) has left the base, so the check above can fail
            z = _logits(trainer.generation_policies[step], inputs)
            assert (z - _logits(base, inputs)).abs().max() > 1e-4, step
    # adapters moved; every base weight is the checkpoint's, bit for bit
    lora_b = [p for n, p in trainer.model.named_parameters() if "lora_B" in n]
    assert lora_b and all(float(p.abs().max()) > 0 for p in lora_b)
    disk = dict(base.named_parameters())
    for name, param in trainer.model.named_parameters():
        if name in base_names:
            key = name.replace("base_model.model.", "").replace(".base_layer", "")
            assert torch.equal(param.detach(), disk[key].detach()), name
    assert not any(p.requires_grad for n, p in trainer.model.named_parameters() if n in base_names)


@pytest.mark.slow
def test_lora_anchor_every_two_steps_snapshots_the_adapter_not_the_base(
    tmp_path, tiny_models, tokenizer, prompts
):
    trainer = _trainer(tmp_path, tiny_models, tokenizer, prompts, lco_anchor_update_steps=2, max_steps=3)
    assert trainer._anchor.kind == "adapter_snapshot"
    anchor_params = [n for n, _ in trainer.model.named_parameters() if f".{ANCHOR_ADAPTER}." in n]
    # only adapter tensors were added (no copy of the base), and they are frozen
    assert anchor_params and all("lora_" in n for n in anchor_params)
    trainer.train()
    assert trainer._anchor.refresh_steps == [0, 2]
    policies = trainer.generation_policies
    for step, inputs, _ in trainer.records:
        expected = _logits(policies[2 * (step // 2)], inputs)  # the policy at the last refresh
        torch.testing.assert_close(_batch_old_logits(inputs), expected, atol=1e-5, rtol=1e-5)
        if step == 1:  # between refreshes the anchor is behind the generating policy
            assert (_batch_old_logits(inputs) - _logits(policies[1], inputs)).abs().max() > 1e-4
    # the snapshot adapter holds the trained adapter of step 2, and it was never trained itself
    at_2 = _lora_weights(policies[2])
    snap = _lora_weights(trainer.model, ANCHOR_ADAPTER)
    for name, value in at_2.items():
        assert torch.equal(snap[name.replace(".default.", f".{ANCHOR_ADAPTER}.")], value), name
    assert not any(p.requires_grad for n, p in trainer.model.named_parameters() if f".{ANCHOR_ADAPTER}." in n)
    assert trainer.model.active_adapter == "default"


@pytest.mark.slow
def test_lora_save_and_resume_continue_identically(tmp_path, tiny_models, tokenizer, prompts):
    # run A: four steps, a checkpoint after each; run B: resumed from A's checkpoint-3 (its anchor is the
    # policy of step 2, one step behind) for the fourth step
    settings = dict(lco_anchor_update_steps=2, max_steps=4)
    first = _trainer(
        tmp_path, tiny_models, tokenizer, prompts, save_strategy="steps", save_steps=1, **settings
    )
    first.train()
    checkpoint = tmp_path / "out" / "checkpoint-3"
    assert (checkpoint / "adapter_model.safetensors").exists() and (checkpoint / ANCHOR_FILE).exists()
    saved = torch.load(checkpoint / ANCHOR_FILE, weights_only=True)
    assert saved["refresh_steps"] == [0, 2] and all("lora_" in n for n in saved["tensors"])
    at_2 = _lora_weights(first.generation_policies[2])  # the snapshot holds the adapter of step 2
    for name, value in at_2.items():
        assert torch.equal(saved["tensors"][name.replace(".default.", f".{ANCHOR_ADAPTER}.")], value), name
    resumed = _trainer(tmp_path, tiny_models, tokenizer, prompts, output_dir=str(tmp_path / "b"), **settings)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed._anchor.refresh_steps == [0, 2]
    (step_a, inputs_a, loss_a), (step_b, inputs_b, loss_b) = first.records[-1], resumed.records[-1]
    assert step_a == step_b == 3 and len(resumed.records) == 1
    assert torch.equal(inputs_a["completion_ids"], inputs_b["completion_ids"])  # the same rollouts
    torch.testing.assert_close(_batch_old_logits(inputs_b), _batch_old_logits(inputs_a), atol=1e-6, rtol=1e-6)
    assert loss_b == pytest.approx(loss_a, rel=1e-5, abs=1e-7)
    final_a, final_b = _lora_weights(first.model), _lora_weights(resumed.model)
    for name in final_a:
        torch.testing.assert_close(final_b[name], final_a[name], atol=1e-6, rtol=1e-5)


@pytest.mark.slow
def test_lora_resume_at_the_initial_policy_needs_no_anchor_file(tmp_path, tiny_models, tokenizer, prompts):
    trainer = _trainer(
        tmp_path,
        tiny_models,
        tokenizer,
        prompts,
        lco_anchor_update_steps=0,
        max_steps=1,
        save_strategy="steps",
        save_steps=1,
    )
    trainer.train()
    assert not (tmp_path / "out" / "checkpoint-1" / ANCHOR_FILE).exists()  # the base is the model's own


def test_a_pretrained_adapter_is_snapshotted_at_m_0(tmp_path, tiny_models, tokenizer, prompts):
    # a PeftModel with a trained (non-zero) adapter: disabling it is not the initial policy
    base = AutoModelForCausalLM.from_pretrained(tiny_models["policy"])
    model = peft.get_peft_model(
        base, peft.LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False)
    )
    args = tiny_config(tmp_path, tiny_models, objective="lco_kld", lco_anchor_update_steps=0, beta=0.0)
    trainer = LCOTrainer(model, parity_reward, args, train_dataset=prompts, processing_class=tokenizer)
    assert trainer._anchor.kind == "adapter_snapshot" and trainer._anchor.refresh_steps == [0]
    inputs = _fake_batch(tokenizer)
    with trainer._anchor.model() as anchor:
        z_anchor = _logits(anchor, inputs)
    torch.testing.assert_close(z_anchor, _logits(trainer.model, inputs), atol=1e-6, rtol=1e-6)
    with trainer.model.disable_adapter():
        assert (_logits(trainer.model, inputs) - z_anchor).abs().max() > 1e-4


def _fake_batch(tokenizer) -> dict:
    prompt = tokenizer(["1+1=", "2+3="], return_tensors="pt", padding=True)
    completion = tokenizer(["2 ok", "5 no"], return_tensors="pt", padding=True)
    return {
        "prompt_ids": prompt["input_ids"],
        "prompt_mask": prompt["attention_mask"],
        "completion_ids": completion["input_ids"],
        "completion_mask": completion["attention_mask"],
    }
