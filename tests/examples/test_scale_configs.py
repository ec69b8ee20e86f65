"""The scale-out example configs parse as accelerate and `lco train` read them (no model is loaded)."""

from __future__ import annotations

from pathlib import Path

import pytest
from accelerate.commands.config.config_args import ClusterConfig

from lco.trainer.cli import model_arguments, parse

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize(("name", "kind"), [("ddp", "MULTI_GPU"), ("zero3", "DEEPSPEED"), ("fsdp2", "FSDP")])
def test_accelerate_configs_load(name, kind):
    config = ClusterConfig.from_yaml_file(str(EXAMPLES / "accelerate" / f"{name}.yaml"))
    assert str(config.distributed_type).endswith(kind)
    if name == "zero3":
        assert config.deepspeed_config["zero_stage"] == 3
    if name == "fsdp2":
        # a full-weight anchor copies the policy at construction: every rank must hold the weights then
        assert config.fsdp_config["fsdp_version"] == 2
        assert config.fsdp_config["fsdp_cpu_ram_efficient_loading"] is False


def test_lora_example_parses_into_trls_lora_config(tmp_path):
    pytest.importorskip("peft")
    script, args = parse(
        str(EXAMPLES / "qwen2.5-7b-lora-vllm.yaml"),
        ["--output_dir", str(tmp_path / "run"), "--bf16", "false"],
    )
    assert script.model_name_or_path == "Qwen/Qwen2.5-7B-Instruct" and args.use_vllm
    lora = model_arguments(script.model, args)["peft_config"]
    assert (lora.r, lora.lora_alpha) == (64, 128) and "down_proj" in lora.target_modules
    assert args.lco_anchor_update_steps == 1  # the outcome advantage's default (the paper): no anchor object
