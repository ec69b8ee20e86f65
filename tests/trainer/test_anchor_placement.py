"""Which anchor the trainer builds where (one process), the vocabulary size of a partitioned head, and a dense
advantage without a reward function."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from lco.trainer import LCOTrainer
from lco.trainer.anchor import output_vocab_size

from .conftest import parity_reward, tiny_config
from .test_stability_options import _batch_old_logits, _initial_policy
from .test_trainer_exact import _completion_logits


class _Batches(LCOTrainer):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.batches = []

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        self.batches.append(inputs)
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)


def test_vocabulary_size_is_read_from_the_full_shape_of_a_partitioned_head(tiny_models):
    model = AutoModelForCausalLM.from_pretrained(tiny_models["policy"])
    head = model.get_output_embeddings()
    full = head.weight.shape[0]
    # what ZeRO-3 leaves on a rank: an empty local tensor, the full shape in ds_shape
    head.weight = torch.nn.Parameter(torch.empty(0))
    head.weight.ds_shape = torch.Size([full, model.config.hidden_size])
    assert output_vocab_size(model) == full
    del head.weight.ds_shape  # no full shape recorded at all: the config's vocabulary
    assert output_vocab_size(model) == model.config.vocab_size


@pytest.mark.slow
def test_initial_policy_anchor_shares_trls_reference_model_when_beta_is_positive(
    tmp_path, tiny_models, tokenizer, prompts
):
    args = tiny_config(tmp_path, tiny_models, objective="lco_kld", lco_anchor_update_steps=0, beta=0.05)
    trainer = _Batches(
        tiny_models["policy"], parity_reward, args, train_dataset=prompts, processing_class=tokenizer
    )
    assert trainer._anchor.kind == "trl_reference" and trainer._anchor.snapshot is trainer.ref_model
    assert not trainer._anchor.saves_state  # TRL's reference is rebuilt from the path: nothing to checkpoint
    trainer.train()
    initial = _initial_policy(tiny_models)
    for inputs in trainer.batches:
        with torch.no_grad():
            _, z_initial = _completion_logits(initial, inputs)
        torch.testing.assert_close(_batch_old_logits(inputs), z_initial, atol=1e-5, rtol=1e-5)


def test_a_model_object_gets_its_own_copy_not_trls_reference(tmp_path, tiny_models, tokenizer, prompts):
    # TRL loads its reference from the object's config path, which need not hold the object's weights
    model = AutoModelForCausalLM.from_pretrained(tiny_models["policy"])
    args = tiny_config(tmp_path, tiny_models, objective="lco_kld", lco_anchor_update_steps=0, beta=0.05)
    trainer = LCOTrainer(model, parity_reward, args, train_dataset=prompts, processing_class=tokenizer)
    assert trainer._anchor.kind == "frozen_copy" and trainer._anchor.snapshot is not trainer.ref_model


def test_synced_reference_is_not_shared(tmp_path, tiny_models, tokenizer, prompts):
    args = tiny_config(
        tmp_path, tiny_models, objective="lco_kld", lco_anchor_update_steps=0, beta=0.05, sync_ref_model=True
    )
    trainer = LCOTrainer(
        tiny_models["policy"], parity_reward, args, train_dataset=prompts, processing_class=tokenizer
    )
    assert (
        trainer._anchor.kind == "frozen_copy"
    )  # TRL refreshes its reference; the m = 0 anchor must not move


@pytest.mark.slow
def test_dense_advantage_trains_without_a_reward_function(tmp_path, tiny_models, tokenizer, prompts):
    args = tiny_config(tmp_path, tiny_models, objective="lco_kld", advantage="dpo_dense", max_steps=1)
    trainer = LCOTrainer(tiny_models["policy"], None, args, train_dataset=prompts, processing_class=tokenizer)
    assert trainer.reward_func_names == ["no_reward_function"]
    before = trainer.model.lm_head.weight.detach().clone()
    trainer.train()
    assert trainer.state.global_step == 1
    assert (trainer.model.lm_head.weight.detach() - before).abs().max() > 0  # the dense advantage taught
