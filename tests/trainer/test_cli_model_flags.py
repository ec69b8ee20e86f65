"""`lco train` takes TRL's model flags (``ModelConfig``: --use_peft --lora_r --lora_alpha --lora_target_modules,
--dtype, ...) as `trl grpo` does."""

from __future__ import annotations

import json

import pytest
import torch

from lco.cli import main as lco_main
from lco.trainer.cli import model_arguments, parse

from .test_trainer_lifecycle import _write_cli_inputs

pytest.importorskip("peft")


def test_model_flags_are_parsed_into_trls_model_config(tmp_path, tiny_models):
    config = _write_cli_inputs(tmp_path, tiny_models)
    flags = [
        "--use_peft",
        "true",
        "--lora_r",
        "4",
        "--lora_alpha",
        "8",
        "--lora_target_modules",
        "q_proj",
        "v_proj",
    ]
    script, args = parse(config, [*flags, "--dtype", "bfloat16"])
    assert script.model_name_or_path == tiny_models["policy"]  # from the YAML, now a ModelConfig field
    extra = model_arguments(script.model, args)
    lora = extra["peft_config"]
    assert (lora.r, lora.lora_alpha, set(lora.target_modules)) == (4, 8, {"q_proj", "v_proj"})
    assert extra["quantization_config"] is None
    assert args.model_init_kwargs["dtype"] == "bfloat16"
    # without --use_peft there is no adapter
    script, args = parse(config, [])
    assert model_arguments(script.model, args)["peft_config"] is None


@pytest.mark.slow
def test_cli_trains_a_lora_adapter_with_the_initial_policy_anchor(tmp_path, tiny_models):
    config = _write_cli_inputs(tmp_path, tiny_models)
    flags = [
        "--use_peft",
        "true",
        "--lora_r",
        "4",
        "--lora_alpha",
        "8",
        "--lora_target_modules",
        "q_proj",
        "v_proj",
    ]
    assert lco_main(["train", config, *flags, "--lco_anchor_update_steps", "0", "--max_steps", "2"]) == 0
    run = tmp_path / "run"
    adapter = json.loads((run / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"], set(adapter["target_modules"])) == (
        4,
        8,
        {"q_proj", "v_proj"},
    )
    assert (run / "adapter_model.safetensors").exists() and not (run / "model.safetensors").exists()
    # the initial-policy anchor (m = 0) under LoRA is the base with adapters disabled: no snapshot adapter saved
    assert not (run / "lco_anchor").exists()
    args = torch.load(run / "training_args.bin", weights_only=False)
    assert args.lco_anchor_update_steps == 0
