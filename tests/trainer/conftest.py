"""Tiny policy / reward models built locally and saved like real checkpoints (no hub access)."""

from __future__ import annotations

import pytest
from datasets import Dataset

from lco.tasks import build_byte_tokenizer, build_tiny_causal_lm
from lco.trainer import LCOConfig


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, str]:
    """Paths of a tiny policy, a (larger) DPO reward model φ_DPO and its reference φ_ref."""
    root = tmp_path_factory.mktemp("tiny_models")
    tokenizer = build_byte_tokenizer()
    paths = {}
    for name, seed, hidden in (("policy", 0, 32), ("dpo", 1, 48), ("ref", 2, 48)):
        model = build_tiny_causal_lm(tokenizer, hidden_size=hidden, seed=seed)
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
        paths[name] = str(root / name)
    return paths


@pytest.fixture(scope="session")
def tokenizer():
    return build_byte_tokenizer()


@pytest.fixture
def prompts() -> Dataset:
    return Dataset.from_dict({"prompt": ["1+1=", "2+3=", "4+4=", "5+1="], "answer": ["2", "5", "8", "6"]})


def parity_reward(completions, **kwargs) -> list[float]:
    """A deterministic reward with spread inside every group, so advantages are non-zero."""
    return [float(sum(map(ord, c)) % 2) * 2 - 1 for c in completions]


def tiny_config(tmp_path, tiny_models, **overrides) -> LCOConfig:
    settings = dict(
        output_dir=str(tmp_path / "out"),
        reward_model_path=tiny_models["dpo"],
        reference_reward_model_path=tiny_models["ref"],
        num_generations=2,
        max_completion_length=6,
        per_device_train_batch_size=2,
        max_steps=2,
        report_to="none",
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        logging_steps=1,
        save_strategy="no",
        learning_rate=1e-3,
        seed=0,
        head_chunk_size=4,
    )
    settings.update(overrides)
    return LCOConfig(**settings)
