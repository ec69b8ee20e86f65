"""Issue 13: ``lco eval`` refuses what would lose work or mislead, in one line, before loading a model."""

from __future__ import annotations

import os

import pytest

from lco.cli import main

FAST = ["--max-new-tokens", "4", "--batch-size", "4"]


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if a policy is built (the first thing that loads a model)."""
    from lco.eval import generation

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the bad input was reported")

    monkeypatch.setattr(generation, "build_generator", refuse)


def _error(capsys, *argv) -> str:
    assert main(["eval", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lco eval: error: ") and len(err.strip().splitlines()) == 1, err
    return err


def test_unwritable_out_fails_before_the_first_seed(models, math_jsonl, tmp_path, capsys, no_model_load):
    if os.geteuid() == 0:
        locked = "/proc/self"  # root ignores permission bits
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
    argv = ["--suite", "math", "--model", models["old"], "--datasets", f"math500={math_jsonl}"]
    err = _error(capsys, *argv, "--out", os.path.join(str(locked), "results"), *FAST)
    assert "--out" in err and "not writable" in err


def test_out_under_a_regular_file(models, math_jsonl, tmp_path, capsys, no_model_load):
    (tmp_path / "file").write_text("x")
    argv = ["--suite", "math", "--model", models["old"], "--datasets", f"math500={math_jsonl}"]
    err = _error(capsys, *argv, "--out", str(tmp_path / "file" / "o"), *FAST)
    assert "--out" in err and "regular file" in err


def test_nonexistent_reward_model_is_named(models, math_jsonl, tmp_path, capsys, no_model_load):
    missing = str(tmp_path / "models" / "rm")
    argv = ["--suite", "math", "--policy", "rm", "--reward-model", missing]
    err = _error(capsys, *argv, "--datasets", f"math500={math_jsonl}", "--out", str(tmp_path / "o"), *FAST)
    assert "--reward-model" in err and missing in err and "does not exist" in err


def test_an_empty_answer_is_called_empty_not_missing(models, jsonl, tmp_path, capsys):
    data = jsonl("math500.jsonl", [{"problem": "1+1?", "answer": "2"}, {"problem": "2+2?", "answer": ""}])
    argv = ["--suite", "math", "--model", models["old"], "--datasets", f"math500={data}"]
    err = _error(capsys, *argv, "--out", str(tmp_path / "o"), *FAST)
    assert "record 2 has an empty 'answer' field" in err and "lacks" not in err


def test_nonexistent_score_model_is_named(models, jsonl, tmp_path, capsys, no_model_load):
    data = jsonl("prompts.jsonl", [{"prompt": "hi"}])
    missing = str(tmp_path / "models" / "rm")
    argv = ["--suite", "rm", "--model", models["old"], "--data", data, "--score-model", f"mine={missing}"]
    err = _error(capsys, *argv, "--out", str(tmp_path / "o"), *FAST)
    assert "--score-model mine" in err and missing in err


def test_a_model_folder_without_tokenizer_fails_before_loading(
    models, math_jsonl, tmp_path, capsys, no_model_load
):
    """What a kill during the final save leaves: config.json and weights but no tokenizer files."""
    import shutil

    cut = tmp_path / "cut"
    cut.mkdir()
    for name in os.listdir(models["old"]):
        if not name.startswith(("tokenizer", "special_tokens", "vocab", "merges", "chat_template")):
            shutil.copy(os.path.join(models["old"], name), cut / name)
    argv = ["--suite", "math", "--model", str(cut), "--datasets", f"math500={math_jsonl}"]
    err = _error(capsys, *argv, "--out", str(tmp_path / "o"), *FAST)
    assert "--model" in err and str(cut) in err and "no tokenizer files" in err


@pytest.mark.parametrize(
    ("template", "says"),
    [
        ("Solve this.", "has no {problem}"),
        ("{problem} {answer}", "only {problem}"),
        ("{problem", "only {problem}"),
    ],
)
def test_a_bad_prompt_template_is_one_line(
    models, math_jsonl, tmp_path, capsys, no_model_load, template, says
):
    argv = ["--suite", "math", "--model", models["old"], "--datasets", f"math500={math_jsonl}"]
    err = _error(capsys, *argv, "--prompt-template", template, "--out", str(tmp_path / "o"), *FAST)
    assert "--prompt-template" in err and says in err


def test_the_prompt_template_sets_the_prompts(models, math_jsonl, tmp_path, capsys, monkeypatch):
    """A model trained on raw prompts is evaluated on raw prompts (the default wraps them in the paper's text)."""
    import json

    from lco.eval import suites

    seen: list[str] = []
    encode = suites.encode_prompts

    def record(tokenizer, texts, chat_template="auto"):
        seen.extend(texts)
        return encode(tokenizer, texts, chat_template)

    monkeypatch.setattr(suites, "encode_prompts", record)
    argv = [
        "--suite",
        "math",
        "--model",
        models["old"],
        "--datasets",
        f"math500={math_jsonl}",
        "--seeds",
        "1",
    ]
    assert (
        main(["eval", *argv, "--prompt-template", "Q: {problem}\nA:", "--out", str(tmp_path / "o"), *FAST])
        == 0
    )
    problems = [json.loads(line)["problem"] for line in open(math_jsonl)]
    assert seen == [f"Q: {p}\nA:" for p in problems]
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["config"]["prompt_template"] == "Q: {problem}\nA:"
