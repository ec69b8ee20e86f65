"""Evaluation data: the suite registry and loading with field validation.

Every evaluation set is a list of records with fixed fields. The math sets are read from the
Hugging Face hub by their public names when online, or from a local JSONL file with the same fields
(one JSON object per line; a ``.json`` file holding a list of objects is accepted too). The other
suites read local files only (see docs/eval.md for the formats).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..jsonl import json_lines


@dataclass(frozen=True)
class DatasetSpec:
    """Where an evaluation set lives and how its source fields map to ours.

    ``fields`` maps our field name (``problem``, ``answer``, …) to the field in the source records.
    """

    name: str
    fields: dict[str, str]
    hub_id: str | None = None
    split: str = "test"
    description: str = field(default="", compare=False)


MATH_DATASETS: dict[str, DatasetSpec] = {
    "math500": DatasetSpec(
        "math500",
        {"problem": "problem", "answer": "answer"},
        hub_id="HuggingFaceH4/MATH-500",
        description="500 held-out MATH problems (Lightman et al., 2023)",
    ),
    "amc23": DatasetSpec(
        "amc23",
        {"problem": "question", "answer": "answer"},
        hub_id="math-ai/amc23",
        description="40 AMC 2023 problems",
    ),
    "minervamath": DatasetSpec(
        "minervamath",
        {"problem": "question", "answer": "answer"},
        hub_id="math-ai/minervamath",
        description="272 MinervaMath problems (Lewkowycz et al., 2022)",
    ),
}

# a math file that is not one of the registered sets uses these field names
CUSTOM_MATH_FIELDS = {"problem": "problem", "answer": "answer"}
# --suite rm: policy inputs, e.g. QA-Feedback test prompts already formatted for the policy
RM_FIELDS = {"prompt": "prompt"}
# --suite judge: AlpacaEval's format — the instruction and the reference model's output
JUDGE_FIELDS = {"instruction": "instruction", "reference": "output"}


def read_records(path: str | os.PathLike, what: str) -> list[dict[str, Any]]:
    """Records of a ``.jsonl`` file (one object per line) or a ``.json`` file (a list of objects).

    ``what`` names the file in errors (e.g. ``"--data"``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: {path} does not exist or is not a file")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            records = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{what}: {path} is not valid JSON ({err})") from err
        if not isinstance(records, list):
            raise ValueError(f"{what}: {path} must hold a JSON list of objects")
        for i, record in enumerate(records, start=1):
            if not isinstance(record, dict):
                raise ValueError(f"{what}: {path} record {i} is not a JSON object")
    else:
        records = json_lines(text, f"{what}: {path}")
    if not records:
        raise ValueError(f"{what}: {path} holds no records")
    return records


def _as_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # AMC answers are stored as floats (27.0)
    return str(value)


def select_fields(records: list[dict[str, Any]], fields: dict[str, str], source: str) -> list[dict[str, str]]:
    """Map records to our field names, checking that every record has every expected source field.

    Each result also carries an ``id``: the record's ``unique_id``/``id`` if any, else its index.
    """
    out = []
    for i, record in enumerate(records):
        missing = [src for src in fields.values() if record.get(src) is None]
        if missing:
            raise ValueError(
                f"{source}: record {i + 1} lacks field(s) {', '.join(repr(m) for m in missing)} "
                f"(expected fields: {', '.join(fields.values())}; the record has: "
                f"{', '.join(sorted(record)) or 'none'})"
            )
        # present but blank: saying it "lacks" a field the record visibly has would mislead
        empty = [src for src in fields.values() if not str(record[src]).strip()]
        if empty:
            raise ValueError(
                f"{source}: record {i + 1} has an empty {', '.join(repr(e) for e in empty)} field "
                f"({'it needs' if len(empty) == 1 else 'they need'} a value)"
            )
        row = {ours: _as_text(record[src]) for ours, src in fields.items()}
        row["id"] = _as_text(record.get("unique_id", record.get("id", i)))
        out.append(row)
    return out


def _load_hub(spec: DatasetSpec) -> list[dict[str, Any]]:
    import datasets  # the Hugging Face library; imported lazily (slow import)

    try:
        ds = datasets.load_dataset(spec.hub_id, split=spec.split)
    except Exception as err:  # offline, renamed, gated: all mean "use a local file"
        raise ValueError(
            f"could not load {spec.name} from the hub ({spec.hub_id}, split {spec.split!r}): "
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}. Offline, pass "
            f"--data-dir DIR holding {spec.name}.jsonl with fields {', '.join(spec.fields.values())}"
        ) from err
    return [dict(r) for r in ds]


def load_math_dataset(
    name: str, path: str | os.PathLike | None = None, limit: int | None = None
) -> list[dict[str, str]]:
    """Problems of a math set as ``{"id", "problem", "answer"}`` records.

    ``name`` is a key of :data:`MATH_DATASETS` (its hub copy is used unless ``path`` is given) or any
    other name with a local ``path`` whose records have ``problem`` and ``answer`` fields.
    """
    spec = MATH_DATASETS.get(name)
    if path is not None:
        fields = spec.fields if spec else CUSTOM_MATH_FIELDS
        records = read_records(path, f"dataset {name!r}")
        source = str(path)
    elif spec is None:
        raise ValueError(
            f"unknown math dataset {name!r}: choose from {', '.join(MATH_DATASETS)} or give a local "
            f"file as {name}=PATH.jsonl"
        )
    else:
        fields = spec.fields
        records = _load_hub(spec)
        source = f"{spec.hub_id} ({spec.split})"
    rows = select_fields(records, fields, source)
    return rows[:limit] if limit is not None else rows


def resolve_math_sources(
    entries: list[str], data_dir: str | os.PathLike | None
) -> list[tuple[str, Path | None]]:
    """Parse ``--datasets`` entries (``name`` or ``name=PATH``) into (name, local path or None for the hub).

    With ``data_dir``, a registered name is read from ``data_dir/<name>.jsonl`` (or ``.json``).
    """
    out: list[tuple[str, Path | None]] = []
    for entry in entries:
        name, sep, path = entry.partition("=")
        name = name.strip()
        if not name:
            raise ValueError(f"--datasets entry {entry!r} has no name")
        if sep:
            out.append((name, Path(path)))
        elif name not in MATH_DATASETS:
            raise ValueError(
                f"--datasets: unknown dataset {name!r}; choose from {', '.join(MATH_DATASETS)} "
                "or give a local file as NAME=PATH.jsonl"
            )
        elif data_dir is not None:
            candidates = [Path(data_dir) / f"{name}.jsonl", Path(data_dir) / f"{name}.json"]
            found = next((c for c in candidates if c.is_file()), None)
            if found is None:
                raise FileNotFoundError(f"--data-dir: {candidates[0]} does not exist")
            out.append((name, found))
        else:
            out.append((name, None))
    if len({n for n, _ in out}) != len(out):
        raise ValueError(f"--datasets names must be distinct, got {entries}")
    return out
