"""Checks on the training data that can run before any model is loaded."""

from __future__ import annotations

from datasets import Dataset, IterableDataset


def check_train_dataset(dataset) -> None:
    """The dataset must exist, be non-empty, and have the ``prompt`` column GRPO samples from."""
    if dataset is None:
        raise ValueError("train_dataset is required: a datasets.Dataset with a 'prompt' column")
    if isinstance(dataset, IterableDataset):
        columns = dataset.column_names
        if columns is not None and "prompt" not in columns:
            raise ValueError(f"train_dataset has no 'prompt' column (columns: {', '.join(columns)})")
        return
    if not isinstance(dataset, Dataset):
        raise ValueError(f"train_dataset must be a datasets.Dataset, got {type(dataset).__name__}")
    if "prompt" not in dataset.column_names:
        raise ValueError(
            f"train_dataset has no 'prompt' column (columns: {', '.join(dataset.column_names) or 'none'})"
        )
    if len(dataset) == 0:
        raise ValueError("train_dataset is empty")
