"""``--suite rm``: score a policy's completions with sequence-classification reward models.

This is the QA-Feedback protocol of the paper (§5, Table 2, following Wu et al., 2023): each
completion is scored by several reward models — relevance, factuality, completeness — and the
report gives each model's mean score and their average.

A reward model is any ``AutoModelForSequenceClassification`` checkpoint. With one output label its
logit is the score; with two, the score is the probability of label 1 (a good/bad classifier). The
(prompt, completion) pair is fed through the scorer's chat template when its tokenizer has one, as a
text pair otherwise (encoder classifiers such as the Longformer models of Wu et al.).
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

RM_INPUT_FORMATS = ("auto", "chat", "pair", "concat")


def parse_named_paths(entries: list[str], flag: str) -> list[tuple[str, str]]:
    """``NAME=PATH_OR_ID`` entries (a bare path is named after its last path component)."""
    out = []
    for entry in entries:
        name, sep, path = entry.partition("=")
        if not sep:
            name, path = entry.rstrip("/").split("/")[-1], entry
        if not name or not path:
            raise ValueError(f"{flag} entry {entry!r} must be NAME=PATH_OR_ID")
        out.append((name, path))
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise ValueError(f"{flag} names must be distinct, got {', '.join(names)}")
    return out


class SequenceScorer:
    """One reward model: ``score(prompts, completions)`` → one float per pair."""

    def __init__(
        self,
        name: str,
        path: str,
        device: torch.device,
        dtype: torch.dtype = torch.float32,
        input_format: str = "auto",
        batch_size: int = 16,
        max_length: int = 4096,
    ):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if input_format not in RM_INPUT_FORMATS:
            raise ValueError(
                f"--rm-input-format must be one of {', '.join(RM_INPUT_FORMATS)}, got {input_format!r}"
            )
        self.name, self.path, self.device, self.batch_size = name, path, device, batch_size
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = (
                AutoModelForSequenceClassification.from_pretrained(path, dtype=dtype).to(device).eval()
            )
        except Exception as err:
            raise ValueError(
                f"--score-model {name}={path} could not be loaded as a sequence-classification model "
                f"({type(err).__name__}: {err})"
            ) from err
        self.num_labels = int(self.model.config.num_labels)
        if self.num_labels not in (1, 2):
            raise ValueError(
                f"--score-model {name}={path} has {self.num_labels} output labels; a reward model must have 1 "
                "(a scalar reward) or 2 (the score is P(label 1))"
            )
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if self.model.config.pad_token_id is None:  # needed to find each row's last token
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.tokenizer.padding_side = "right"
        if input_format == "auto":
            input_format = "chat" if getattr(self.tokenizer, "chat_template", None) else "pair"
        if input_format == "chat" and not getattr(self.tokenizer, "chat_template", None):
            raise ValueError(f"--rm-input-format chat: the tokenizer of {name}={path} has no chat template")
        self.input_format = input_format
        self.max_length = min(max_length, int(getattr(self.tokenizer, "model_max_length", max_length)))

    def _encode(self, prompts: list[str], completions: list[str]):
        kwargs = dict(padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        if self.input_format == "chat":
            texts = [
                self.tokenizer.apply_chat_template(
                    [{"role": "user", "content": p}, {"role": "assistant", "content": c}], tokenize=False
                )
                for p, c in zip(prompts, completions, strict=True)
            ]
            return self.tokenizer(texts, add_special_tokens=False, **kwargs)
        if self.input_format == "pair":
            return self.tokenizer(prompts, completions, **kwargs)
        return self.tokenizer([p + c for p, c in zip(prompts, completions, strict=True)], **kwargs)

    @torch.no_grad()
    def score(self, prompts: list[str], completions: list[str]) -> list[float]:
        scores: list[float] = []
        for start in tqdm(
            range(0, len(prompts), self.batch_size), desc=f"scoring ({self.name})", unit="batch", leave=False
        ):
            enc = self._encode(
                prompts[start : start + self.batch_size], completions[start : start + self.batch_size]
            )
            logits = self.model(**enc.to(self.device)).logits.float()
            batch = logits[:, 0] if self.num_labels == 1 else torch.softmax(logits, -1)[:, 1]
            scores.extend(batch.tolist())
        return scores


def rm_metrics(scores: dict[str, list[float]]) -> dict[str, float]:
    """Mean score of each reward model over the test set, and the average over reward models."""
    means = {name: sum(s) / len(s) for name, s in scores.items()}
    means["average"] = sum(means.values()) / len(means)
    return means
