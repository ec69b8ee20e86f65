"""lco/jsonl.py: the one JSON Lines reader, and that training data and eval sets both go through it."""

from __future__ import annotations

import pytest

from lco.eval.datasets import read_records
from lco.jsonl import json_lines
from lco.trainer.data import check_dataset_file


def test_objects_come_back_in_order_and_blank_lines_are_skipped():
    assert json_lines('{"a": 1}\n\n  \n{"b": [2]}\n', "f.jsonl") == [{"a": 1}, {"b": [2]}]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '{"a": 1}\n\n{"a": 2\n',
            r"^f\.jsonl line 3 is not valid JSON \(Expecting ',' delimiter, column 8\)$",
        ),
        ('{"a": 1}\n[1, 2]\n', r"^f\.jsonl line 2 is not a JSON object$"),
    ],
)
def test_a_bad_line_is_named_with_its_number(text, message):
    with pytest.raises(ValueError, match=message):
        json_lines(text, "f.jsonl")


def test_training_data_and_eval_sets_give_the_same_message(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "1+1="}\n7\n')
    with pytest.raises(ValueError) as train_err:
        check_dataset_file(str(bad))
    with pytest.raises(ValueError) as eval_err:
        read_records(bad, "--data")
    assert str(train_err.value) == f"dataset file {str(bad)!r} line 2 is not a JSON object"
    assert str(eval_err.value) == f"--data: {bad} line 2 is not a JSON object"
