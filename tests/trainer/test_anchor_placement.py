"""Which anchor the trainer builds where (one process), the vocabulary size of a partitioned head, and a dense
advantage without a reward function."""

from __future__ import annotations

import types

import pytest
import torch
from transformers import AutoModelForCausalLM

from lco.trainer import LCOTrainer
from lco.trainer.anchor import build_anchor, output_vocab_size

from .conftest import parity_reward, tiny_config


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


def test_the_anchor_is_the_only_reference_model_under_lco(tmp_path, tiny_models, tokenizer, prompts):
    # TRL builds a ref_model only for beta > 0, which the LCO objectives refuse: no second copy exists
    args = tiny_config(tmp_path, tiny_models, objective="lco_kld", lco_anchor_update_steps=0)
    trainer = LCOTrainer(
        tiny_models["policy"], parity_reward, args, train_dataset=prompts, processing_class=tokenizer
    )
    assert trainer.ref_model is None
    assert trainer._anchor.kind == "frozen_copy" and trainer._anchor.saves_state
    with pytest.raises(ValueError, match="beta=0.05 is TRL's KL weight"):
        LCOTrainer(
            tiny_models["policy"],
            parity_reward,
            tiny_config(tmp_path, tiny_models, objective="lco_kld", beta=0.05),
            train_dataset=prompts,
            processing_class=tokenizer,
        )


@pytest.mark.slow
def test_dense_advantage_trains_without_a_reward_function(tmp_path, tiny_models, tokenizer, prompts):
    args = tiny_config(tmp_path, tiny_models, objective="lco_kld", advantage="dpo_dense", max_steps=1)
    trainer = LCOTrainer(tiny_models["policy"], None, args, train_dataset=prompts, processing_class=tokenizer)
    assert trainer.reward_func_names == ["no_reward_function"]
    before = trainer.model.lm_head.weight.detach().clone()
    trainer.train()
    assert trainer.state.global_step == 1
    assert (trainer.model.lm_head.weight.detach() - before).abs().max() > 0  # the dense advantage taught


def test_a_policy_on_the_meta_device_is_refused_with_the_fsdp_setting_to_change(tiny_models):
    # FSDP's cpu_ram_efficient_loading leaves ranks > 0 with meta weights at construction: no copy to take
    from transformers import AutoConfig

    with torch.device("meta"):
        policy = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(tiny_models["policy"]))
    trainer = types.SimpleNamespace(
        args=types.SimpleNamespace(lco_anchor_update_steps=0), model=policy, accelerator=None
    )
    with pytest.raises(ValueError, match="fsdp_cpu_ram_efficient_loading: false"):
        build_anchor(trainer, False, lambda m: m)
