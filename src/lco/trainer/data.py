"""Checks on the training data that can run before any model is loaded."""

from __future__ import annotations

import json
import os

from datasets import Dataset, IterableDataset

from ..jsonl import json_lines


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


# local file extension -> the `datasets` builder that reads it
DATASET_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}


def check_dataset_file(path: str) -> None:
    """A local dataset file is non-empty and, for JSON, parseable — with the line of the first bad record.

    ``datasets`` would otherwise fail with ``StopIteration`` on an empty file and a
    ``DatasetGenerationError`` naming neither the file's line nor the problem.
    """
    extension = os.path.splitext(path)[1].lower()
    if extension not in DATASET_BUILDERS:
        raise ValueError(f"dataset file {path!r} must be .json, .jsonl, .csv or .parquet")
    if os.path.getsize(path) == 0:
        raise ValueError(f"dataset file {path!r} is empty")
    if extension == ".parquet":
        return
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    if not text.strip():
        raise ValueError(f"dataset file {path!r} is empty (only whitespace)")
    if extension == ".csv":
        if len([line for line in text.splitlines() if line.strip()]) < 2:
            raise ValueError(f"dataset file {path!r} has a header but no records")
        return
    if extension == ".json":
        try:
            document = json.loads(text)
        except json.JSONDecodeError:
            document = None  # `datasets` also reads JSON Lines from a .json file
        if isinstance(document, list):
            if not document:
                raise ValueError(f"dataset file {path!r} holds an empty list")
            for index, record in enumerate(document):
                if not isinstance(record, dict):
                    raise ValueError(f"dataset file {path!r}: record {index + 1} is not a JSON object")
            return
        if isinstance(document, dict):
            return  # one object (e.g. columns of lists); `datasets` decides
    json_lines(text, f"dataset file {path!r}")


def load_train_dataset(spec: str, split: str):
    """The training split of a local file, a ``save_to_disk`` folder, or a hub dataset, checked first."""
    from datasets import DatasetDict, load_dataset, load_from_disk

    if os.path.isfile(spec):
        check_dataset_file(spec)
        if split != "train":  # one file is one split; reading it as another would silently train on it
            raise ValueError(
                f"dataset_split={split!r} does not apply to the file {spec!r}: a single file is the 'train' split; "
                "leave dataset_split at train, or save the splits with DatasetDict.save_to_disk and give that folder"
            )
        builder = DATASET_BUILDERS[os.path.splitext(spec)[1].lower()]
        try:
            dataset = load_dataset(builder, data_files=spec, split="train")
        except Exception as err:  # datasets wraps the reader's error; name the file, keep the cause
            raise ValueError(f"dataset file {spec!r} could not be read: {_root_cause(err)}") from err
    elif os.path.isdir(spec):
        try:
            loaded = load_from_disk(spec)
        except FileNotFoundError as err:
            raise ValueError(
                f"dataset folder {spec!r} is not a datasets save_to_disk folder ({err})"
            ) from err
        if isinstance(loaded, DatasetDict):
            if split not in loaded:
                raise ValueError(f"dataset_split {split!r} is not in {spec!r} (splits: {', '.join(loaded)})")
            loaded = loaded[split]
        dataset = loaded
    elif spec.startswith(("/", ".", "~")) or spec.endswith((*DATASET_BUILDERS, "/")):
        raise ValueError(f"dataset {spec!r} does not exist (no such file or folder)")
    else:
        from ..preflight import check_hub_dataset

        # offline: one line at once; online: a bounded wait, not ~50 s of retries
        check_hub_dataset(spec, "dataset")
        dataset = load_dataset(spec, split=split)
    if isinstance(dataset, Dataset) and len(dataset) == 0:
        raise ValueError(f"dataset {spec!r} has no records")
    return dataset


def _root_cause(err: BaseException) -> str:
    while err.__cause__ is not None or err.__context__ is not None:
        err = err.__cause__ or err.__context__
    return f"{type(err).__name__}: {err}"
