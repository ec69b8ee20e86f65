"""Builders for tiny local models and data files: hub access is not needed by any eval test.

A byte-level BPE tokenizer trained on a few strings (every text is encodable), tiny Qwen2 causal LMs
and sequence classifiers built from a config, saved with ``save_pretrained`` and loaded back by path
exactly like real checkpoints.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

CORPUS = [
    "Please reason step by step, and put your final answer within \\boxed{}.",
    "The answer is \\boxed{\\frac{1}{2}} = 0.5 and 1/2 and 42.",
    "What is 2 + 3? Response A Response B Instruction",
]
SIMPLE_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_tokenizer(vocab_size: int = 300, corpus: list[str] | None = None, chat_template: str | None = None):
    """A byte-level BPE ``PreTrainedTokenizerFast`` with ``<pad>`` (id 0) and ``<eos>`` (id 1)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator((corpus or CORPUS) * 4, trainer)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>")
    if chat_template is not None:
        hf.chat_template = chat_template
    return hf


def _config(tokenizer, **overrides):
    from transformers import Qwen2Config

    kwargs = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    kwargs.update(overrides)
    return Qwen2Config(**kwargs)


def build_causal_lm(path: Path, tokenizer, seed: int = 0, logit_scale: float = 1.0) -> str:
    """A tiny random ``Qwen2ForCausalLM`` saved with its tokenizer under ``path``; returns the path.

    ``logit_scale`` multiplies the output head so that distributions are not near-uniform.
    """
    from transformers import Qwen2ForCausalLM

    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(_config(tokenizer))
    with torch.no_grad():
        model.lm_head.weight.mul_(logit_scale)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def build_classifier(path: Path, tokenizer, num_labels: int = 1, seed: int = 0) -> str:
    """A tiny ``Qwen2ForSequenceClassification`` reward model saved under ``path``."""
    from transformers import Qwen2ForSequenceClassification

    torch.manual_seed(seed)
    Qwen2ForSequenceClassification(_config(tokenizer, num_labels=num_labels)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


@pytest.fixture
def jsonl(tmp_path):
    """``jsonl(name, rows)`` writes ``rows`` to ``tmp_path/name`` and returns the path (as a str)."""
    return lambda name, rows: write_jsonl(tmp_path / name, rows)


@pytest.fixture(scope="session")
def tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="session")
def models(tmp_path_factory, tokenizer):
    """Paths of tiny models sharing one tokenizer: a policy (π_old), φ_DPO, φ_ref, a chat model,
    a model with another vocabulary, and two sequence-classification reward models."""
    root = tmp_path_factory.mktemp("models")
    other_tok = build_tokenizer(vocab_size=280, corpus=["a completely different corpus of words 123"])
    return {
        "old": build_causal_lm(root / "old", tokenizer, seed=0, logit_scale=20.0),
        "dpo": build_causal_lm(root / "dpo", tokenizer, seed=1, logit_scale=20.0),
        "ref": build_causal_lm(root / "ref", tokenizer, seed=2, logit_scale=20.0),
        "chat": build_causal_lm(
            root / "chat", build_tokenizer(chat_template=SIMPLE_CHAT_TEMPLATE), seed=3, logit_scale=20.0
        ),
        "other_vocab": build_causal_lm(root / "other_vocab", other_tok, seed=4),
        "rm_relevance": build_classifier(root / "rm_relevance", tokenizer, num_labels=1, seed=5),
        "rm_factuality": build_classifier(root / "rm_factuality", tokenizer, num_labels=2, seed=6),
        "rm_three_labels": build_classifier(root / "rm_three_labels", tokenizer, num_labels=3, seed=7),
    }


@pytest.fixture
def math_jsonl(tmp_path):
    """A small MATH500-style file (fields problem/answer)."""
    return write_jsonl(
        tmp_path / "math500.jsonl",
        [
            {"problem": "What is 1/2 as a decimal?", "answer": "0.5", "unique_id": "p0"},
            {"problem": "What is 2 + 3?", "answer": "5", "unique_id": "p1"},
            {"problem": "Write one half as a fraction.", "answer": "\\frac{1}{2}", "unique_id": "p2"},
        ],
    )
