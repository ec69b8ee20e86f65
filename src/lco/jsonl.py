"""JSON Lines: the one reader of ``.jsonl`` text, for the training data and the evaluation sets."""

from __future__ import annotations

import json
from typing import Any


def json_lines(text: str, source: str) -> list[dict[str, Any]]:
    """The JSON objects of a JSON Lines text, one per non-blank line.

    ``source`` names the file in the errors, which give the 1-based line:
    ``"<source> line 3 is not valid JSON (Expecting value, column 1)"`` or
    ``"<source> line 3 is not a JSON object"``.
    """
    records = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(
                f"{source} line {lineno} is not valid JSON ({err.msg}, column {err.colno})"
            ) from err
        if not isinstance(record, dict):
            raise ValueError(f"{source} line {lineno} is not a JSON object")
        records.append(record)
    return records
