"""Issue 13: checkpoints appear complete or not at all; resume falls back to the last complete one."""

from __future__ import annotations

import logging
import os
import shutil

import pytest
import torch
from safetensors.torch import save_file
from transformers import TrainerCallback

from lco.trainer import LCOTrainer
from lco.trainer.checkpoints import (
    IncompleteCheckpointError,
    checkpoint_problem,
    resolve_resume_checkpoint,
)

from .conftest import parity_reward, tiny_config


def _trainer(tmp_path, tiny_models, tokenizer, prompts, **overrides):
    args = tiny_config(tmp_path, tiny_models, **overrides)
    return LCOTrainer(
        tiny_models["policy"], parity_reward, args, train_dataset=prompts, processing_class=tokenizer
    )


class _StepAtStart(TrainerCallback):
    def __init__(self):
        self.step = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.step = state.global_step


def _truncate(path, keep: float = 0.5) -> None:
    data = open(path, "rb").read()
    open(path, "wb").write(data[: int(len(data) * keep)])


def test_saves_leave_only_complete_checkpoints(tmp_path, tiny_models, tokenizer, prompts):
    trainer = _trainer(
        tmp_path,
        tiny_models,
        tokenizer,
        prompts,
        save_strategy="steps",
        save_steps=1,
        max_steps=3,
        save_total_limit=2,
    )
    trainer.train()
    out = tmp_path / "out"
    # rotation applied; no staging folder left (TRL's model card README.md sits beside them)
    assert sorted(e for e in os.listdir(out) if e != "README.md") == ["checkpoint-2", "checkpoint-3"]
    for name in ("checkpoint-2", "checkpoint-3"):
        assert checkpoint_problem(str(out / name)) is None
        assert (out / name / "optimizer.pt").exists() and (out / name / "trainer_state.json").exists()


def test_a_crash_during_a_checkpoint_write_resumes_from_the_previous_one(
    tmp_path, tiny_models, tokenizer, prompts, monkeypatch, caplog
):
    trainer = _trainer(
        tmp_path, tiny_models, tokenizer, prompts, save_strategy="steps", save_steps=1, max_steps=3
    )
    original = LCOTrainer._save_optimizer_and_scheduler

    def die_at_step_2(self, output_dir):
        if self.state.global_step == 2:  # the weights of checkpoint-2 are written, the optimizer is not
            raise KeyboardInterrupt("killed during the checkpoint write")
        return original(self, output_dir)

    monkeypatch.setattr(LCOTrainer, "_save_optimizer_and_scheduler", die_at_step_2)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    monkeypatch.setattr(LCOTrainer, "_save_optimizer_and_scheduler", original)
    out = tmp_path / "out"
    assert not (out / "checkpoint-2").exists()  # the half-written save never took the checkpoint's name
    assert (out / ".lco-partial-2" / "checkpoint-2" / "model.safetensors").exists()

    resumed = _trainer(
        tmp_path, tiny_models, tokenizer, prompts, save_strategy="steps", save_steps=1, max_steps=3
    )
    start = _StepAtStart()
    resumed.add_callback(start)
    with caplog.at_level(logging.WARNING, logger="lco.trainer.checkpoints"):
        resumed.train(resume_from_checkpoint=True)
    assert start.step == 1 and resumed.state.global_step == 3
    assert "interrupted" in caplog.text  # the stale staging folder was removed and said so
    assert [e for e in os.listdir(out) if e.startswith(".")] == []


def test_resume_skips_incomplete_checkpoints_and_says_why(tmp_path, tiny_models, tokenizer, prompts, caplog):
    """Partial folders a non-atomic save (or an older version) left are skipped, newest first."""
    _trainer(
        tmp_path, tiny_models, tokenizer, prompts, save_strategy="steps", save_steps=1, max_steps=1
    ).train()
    out = tmp_path / "out"
    # checkpoint-3: complete but its optimizer file truncated; checkpoint-2: weights, no trainer state
    shutil.copytree(out / "checkpoint-1", out / "checkpoint-3")
    _truncate(out / "checkpoint-3" / "optimizer.pt")
    (out / "checkpoint-2").mkdir()
    shutil.copy(out / "checkpoint-1" / "model.safetensors", out / "checkpoint-2")
    (out / "checkpoint-4").mkdir()  # a kill right after the folder was made

    with caplog.at_level(logging.WARNING, logger="lco.trainer.checkpoints"):
        chosen = resolve_resume_checkpoint(str(out), True)
    assert chosen == str(out / "checkpoint-1")
    assert "skipping checkpoint-4" in caplog.text and "skipping checkpoint-2" in caplog.text
    assert "checkpoint-3/optimizer.pt is truncated" in caplog.text
    assert "checkpoint-2/trainer_state.json is missing" in caplog.text

    resumed = _trainer(tmp_path, tiny_models, tokenizer, prompts, max_steps=2)
    start = _StepAtStart()
    resumed.add_callback(start)
    resumed.train(resume_from_checkpoint=True)
    assert start.step == 1 and resumed.state.global_step == 2


@pytest.mark.parametrize("name", ["model.safetensors", "trainer_state.json", "optimizer.pt", "scheduler.pt"])
def test_a_truncated_file_is_named(tmp_path, tiny_models, tokenizer, prompts, name):
    _trainer(
        tmp_path, tiny_models, tokenizer, prompts, save_strategy="steps", save_steps=1, max_steps=1
    ).train()
    checkpoint = tmp_path / "out" / "checkpoint-1"
    _truncate(checkpoint / name)
    with pytest.raises(IncompleteCheckpointError, match=rf"checkpoint-1/{name} is truncated or corrupt"):
        _trainer(tmp_path, tiny_models, tokenizer, prompts, max_steps=2).train(
            resume_from_checkpoint=str(checkpoint)
        )


def test_no_complete_checkpoint_is_one_clear_error(tmp_path):
    (tmp_path / "checkpoint-5").mkdir()
    with pytest.raises(IncompleteCheckpointError, match="holds no complete checkpoint.*checkpoint-5"):
        resolve_resume_checkpoint(str(tmp_path), True)


def test_a_corrupt_torch_member_is_found(tmp_path):
    """A same-length file whose bytes changed fails the archive's CRC check."""
    path = tmp_path / "optimizer.pt"
    torch.save({"state": torch.arange(1000.0)}, path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    (tmp_path / "trainer_state.json").write_text("{}")
    save_file({"w": torch.ones(3)}, tmp_path / "model.safetensors")
    problem = checkpoint_problem(str(tmp_path))
    assert problem is not None and "optimizer.pt is truncated or corrupt" in problem and "CRC" in problem


def test_sharded_deepspeed_weights_count_as_weights(tmp_path):
    """A ZeRO checkpoint keeps its weights under global_stepN/, not in model.safetensors."""
    (tmp_path / "trainer_state.json").write_text("{}")
    (tmp_path / "global_step5").mkdir()
    assert checkpoint_problem(str(tmp_path)) is None
    (tmp_path / "global_step5").rmdir()
    assert "holds no model weights" in checkpoint_problem(str(tmp_path))
