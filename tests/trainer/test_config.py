"""LCOConfig's renamed chunk size: head_chunk_size, with lco_chunk_size a deprecated alias everywhere."""

from __future__ import annotations

import warnings

import pytest

from lco.objectives.fused import default_chunk_size
from lco.trainer.cli import parse

from .conftest import parity_reward, tiny_config


def test_lco_chunk_size_warns_and_sets_head_chunk_size(tmp_path, tiny_models):
    with pytest.warns(FutureWarning, match="lco_chunk_size is deprecated"):
        config = tiny_config(tmp_path, tiny_models, head_chunk_size=None, lco_chunk_size=8)
    assert config.head_chunk_size == 8


def test_head_chunk_size_alone_does_not_warn(tmp_path, tiny_models):
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="lco_chunk_size")
        config = tiny_config(tmp_path, tiny_models, head_chunk_size=16)
    assert config.head_chunk_size == 16


def test_alias_and_new_name_that_disagree_are_refused(tmp_path, tiny_models):
    with (
        pytest.warns(FutureWarning),
        pytest.raises(ValueError, match="head_chunk_size=16 and its deprecated"),
    ):
        tiny_config(tmp_path, tiny_models, head_chunk_size=16, lco_chunk_size=8)


@pytest.mark.parametrize("size", [0, -4])
def test_non_positive_head_chunk_size_is_refused(tmp_path, tiny_models, size):
    with pytest.raises(ValueError, match="head_chunk_size must be positive"):
        tiny_config(tmp_path, tiny_models, head_chunk_size=size)


def test_the_alias_works_from_yaml_and_from_the_command_line(tmp_path):
    config = tmp_path / "config.yaml"
    lines = [
        "model_name_or_path: m",
        "dataset: d.jsonl",
        f"output_dir: {tmp_path}",
        "use_cpu: true",
        "bf16: false",
    ]
    config.write_text("\n".join([*lines, "lco_chunk_size: 32"]))
    with pytest.warns(FutureWarning, match="lco_chunk_size"):
        _, from_yaml = parse(str(config), [])
    assert from_yaml.head_chunk_size == 32
    config.write_text("\n".join(lines))
    with pytest.warns(FutureWarning, match="lco_chunk_size"):
        _, from_cli = parse(str(config), ["--lco_chunk_size", "64"])
    assert from_cli.head_chunk_size == 64


def test_unset_head_chunk_size_is_picked_from_the_batch_shapes_and_a_set_one_is_kept(
    tmp_path, tiny_models, tokenizer, prompts
):
    from lco import LCOTrainer

    args = tiny_config(tmp_path, tiny_models, head_chunk_size=None)
    trainer = LCOTrainer(
        tiny_models["policy"], parity_reward, args, train_dataset=prompts, processing_class=tokenizer
    )
    vocab = trainer.model.get_output_embeddings().weight.shape[0]
    hidden = trainer.model.config.hidden_size
    # picked per batch from the shapes: never more rows than the batch has, at most 256 for a large one
    assert trainer._chunk_for(10, hidden) == default_chunk_size(vocab, 10, hidden) == 10
    assert trainer._chunk_for(100_000, hidden) == default_chunk_size(vocab, 100_000, hidden) == min(
        256, 2**28 // (4 * vocab)
    )
    trainer.args.head_chunk_size = 7  # the user's choice wins on every path
    assert trainer._chunk_for(100_000, hidden) == 7


def test_the_docstring_documents_every_field_lco_config_adds_to_grpo_config():
    import dataclasses

    from trl import GRPOConfig

    from lco.trainer import LCOConfig

    inherited = {f.name for f in dataclasses.fields(GRPOConfig)}
    own = [f.name for f in dataclasses.fields(LCOConfig) if f.name not in inherited]
    assert own, "LCOConfig adds fields to GRPOConfig"
    undocumented = [name for name in own if f"\n        {name} (`" not in LCOConfig.__doc__]
    assert not undocumented, f"LCOConfig's docstring does not document {undocumented}"
