import pytest

from lco.eval.datasets import (
    JUDGE_FIELDS,
    load_math_dataset,
    read_records,
    resolve_math_sources,
    select_fields,
)


def test_registered_set_from_a_local_file_maps_its_fields(jsonl):
    # AMC23 on the hub has "question"/"answer", with float answers
    path = jsonl("amc23.jsonl", [{"question": "Q1", "answer": 27.0}, {"question": "Q2", "answer": 3.5}])
    rows = load_math_dataset("amc23", path)
    assert rows == [
        {"problem": "Q1", "answer": "27", "id": "0"},
        {"problem": "Q2", "answer": "3.5", "id": "1"},
    ]


def test_a_file_without_the_expected_fields_is_one_clear_error(jsonl):
    path = jsonl("math500.jsonl", [{"problem": "Q", "answer": "1"}, {"question": "Q", "solution": "1"}])
    with pytest.raises(
        ValueError, match=r"math500.jsonl: record 2 lacks field\(s\) 'problem', 'answer'.*has: question"
    ):
        load_math_dataset("math500", path)


def test_bad_json_and_missing_files_name_the_file(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem": "Q", "answer": "1"}\nnot json\n')
    with pytest.raises(ValueError, match="bad.jsonl line 2 is not valid JSON"):
        read_records(bad, "--data")
    with pytest.raises(FileNotFoundError, match="--data: .*missing.jsonl does not exist"):
        read_records(tmp_path / "missing.jsonl", "--data")


def test_json_list_files_are_accepted(tmp_path):
    path = tmp_path / "alpaca.json"
    path.write_text('[{"instruction": "Say hi", "output": "Hi!", "generator": "gpt4_1106_preview"}]')
    rows = select_fields(read_records(path, "--data"), JUDGE_FIELDS, str(path))
    assert rows == [{"instruction": "Say hi", "reference": "Hi!", "id": "0"}]


def test_dataset_names_resolve_to_hub_data_dir_or_explicit_file(tmp_path, jsonl):
    jsonl("math500.jsonl", [{"problem": "Q", "answer": "1"}])
    assert resolve_math_sources(["math500", "amc23"], None) == [("math500", None), ("amc23", None)]
    assert resolve_math_sources(["math500"], tmp_path) == [("math500", tmp_path / "math500.jsonl")]
    assert resolve_math_sources(["mine=x.jsonl"], None)[0][0] == "mine"
    with pytest.raises(FileNotFoundError, match="amc23.jsonl does not exist"):
        resolve_math_sources(["amc23"], tmp_path)
    with pytest.raises(ValueError, match="unknown dataset 'gsm8k'"):
        resolve_math_sources(["gsm8k"], None)


def test_hub_failure_is_a_clear_error_pointing_to_local_files(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'HuggingFaceH4/MATH-500' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(
        ValueError, match=r"could not load math500 from the hub .*--data-dir DIR holding math500.jsonl"
    ):
        load_math_dataset("math500")


def test_limit_keeps_the_first_examples(math_jsonl):
    assert [r["id"] for r in load_math_dataset("math500", math_jsonl, limit=2)] == ["p0", "p1"]
