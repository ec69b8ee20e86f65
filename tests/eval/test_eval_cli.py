"""``lco eval`` end to end on tiny local models and JSONL fixtures."""

import json
import socket

import pytest

from lco.cli import main

FAST = ["--max-new-tokens", "4", "--batch-size", "4"]


def _run(capsys, *argv):
    code = main(["eval", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_math_suite_writes_each_seed_and_the_summary_then_resumes(models, math_jsonl, tmp_path, capsys):
    out_dir = tmp_path / "out"
    argv = [
        "--suite",
        "math",
        "--model",
        models["old"],
        "--datasets",
        f"math500={math_jsonl}",
        "--seeds",
        "2",
    ]
    argv += [
        "--samples-per-seed",
        "2",
        "--k",
        "1",
        "2",
        "4",
        "--decoding",
        "both",
        "--out",
        str(out_dir),
        *FAST,
    ]
    code, out, err = _run(capsys, *argv)
    assert code == 0, err
    for run in ("seed_0", "seed_1", "greedy"):
        record = json.loads((out_dir / "math" / "math500" / f"{run}.json").read_text())
        assert len(record["problems"]) == 3 and "pass@1" in record["metrics"]
    summary = json.loads((out_dir / "summary.json").read_text())["results"]["math500"]
    assert summary["seeds"]["pass@1"]["n"] == 2 and summary["pooled"]["samples_per_problem"] == 4
    assert "pass@4" in summary["pooled"] and "pass@2" in summary["seeds"]
    assert "math/math500" in out and "pass@1" in out and "(greedy)" in out

    code, out2, err = _run(capsys, *argv)
    assert code == 0 and err.count("finished earlier, skipped") == 3
    assert out2 == out


def test_pistar_and_rm_policies_run_end_to_end(models, math_jsonl, tmp_path, capsys):
    common = ["--suite", "math", "--datasets", f"math500={math_jsonl}", "--seeds", "1", "--limit", "2", *FAST]
    pistar = ["--policy", "pistar", "--model", models["old"], "--reward-model", models["dpo"]]
    pistar += ["--ref-model", models["ref"], "--beta", "0.5", "--out", str(tmp_path / "pistar")]
    code, _, err = _run(capsys, *common, *pistar)
    assert code == 0, err
    code, _, err = _run(
        capsys, *common, "--policy", "rm", "--reward-model", models["dpo"], "--out", str(tmp_path / "rm")
    )
    assert code == 0, err
    config = json.loads((tmp_path / "pistar" / "config.json").read_text())
    assert (config["policy"], config["beta"], config["normalize"]) == ("pistar", 0.5, "mean")


def test_rm_suite_reports_each_reward_model_and_their_average(models, jsonl, tmp_path, capsys):
    data = jsonl(
        "qa_feedback.jsonl", [{"prompt": "question: who? context: Ann."}, {"prompt": "question: when?"}]
    )
    argv = [
        "--suite",
        "rm",
        "--model",
        models["old"],
        "--data",
        data,
        "--seeds",
        "2",
        "--out",
        str(tmp_path / "o"),
    ]
    argv += [
        "--score-model",
        f"relevance={models['rm_relevance']}",
        "--score-model",
        f"factuality={models['rm_factuality']}",
    ]
    code, out, err = _run(capsys, *argv, *FAST)
    assert code == 0, err
    seeds = json.loads((tmp_path / "o" / "summary.json").read_text())["results"]["qa_feedback"]["seeds"]
    assert set(seeds) == {"relevance", "factuality", "average"}
    for i in range(2):
        m = {k: v["values"][i] for k, v in seeds.items()}
        assert m["average"] == pytest.approx((m["relevance"] + m["factuality"]) / 2)
    assert "rm/qa_feedback" in out and "average" in out


def test_judge_suite_with_a_local_judge(models, jsonl, tmp_path, capsys):
    data = jsonl(
        "alpaca.jsonl", [{"instruction": f"Say {w}", "output": f"{w}!" * 3} for w in ("hi", "bye", "yes")]
    )
    argv = ["--suite", "judge", "--model", models["old"], "--data", data, "--judge-model", models["chat"]]
    code, out, err = _run(capsys, *argv, "--seeds", "2", "--out", str(tmp_path / "o"), *FAST)
    assert code == 0, err
    seeds = json.loads((tmp_path / "o" / "summary.json").read_text())["results"]["alpaca"]["seeds"]
    assert 0 <= seeds["win_rate"]["mean"] <= 100 and 0 <= seeds["lc_win_rate"]["mean"] <= 100
    assert seeds["num_judged"]["mean"] == 3
    assert (tmp_path / "o" / "judge" / "alpaca" / "seed_0.generations.json").exists()


def test_an_unreachable_judge_stops_the_evaluation_with_a_clear_error(
    models, jsonl, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = jsonl("alpaca.jsonl", [{"instruction": "Say hi", "output": "hi"}])
    argv = [
        "--suite",
        "judge",
        "--model",
        models["old"],
        "--data",
        data,
        "--judge-url",
        f"http://127.0.0.1:{port}/v1",
    ]
    code, _, err = _run(
        capsys, *argv, "--judge-retries", "0", "--seeds", "1", "--out", str(tmp_path / "o"), *FAST
    )
    assert code == 2
    assert "lco eval: error: judge endpoint" in err and "is unreachable" in err
    assert not (tmp_path / "o" / "judge").exists()  # checked before generating anything


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--seeds", "0"], "--seeds must be at least 1"),
        (["--k", "8"], "--k 8 needs at least 8 samples per problem"),
        (
            ["--policy", "pistar"],
            "--policy pistar needs --model (π_old), --reward-model (φ_DPO) and --ref-model",
        ),
        (["--device", "cuda:7"], "--device cuda:7"),
    ],
)
def test_bad_arguments_fail_with_one_line_naming_them(models, math_jsonl, tmp_path, capsys, extra, message):
    argv = ["--suite", "math", "--model", models["old"], "--datasets", f"math500={math_jsonl}"]
    code, _, err = _run(capsys, *argv, "--out", str(tmp_path / "o"), *FAST, *extra)
    assert code == 2
    assert err.startswith("lco eval: error: ") and message in err and len(err.strip().splitlines()) == 1


def test_bad_inputs_fail_with_one_line_naming_them(models, jsonl, math_jsonl, tmp_path, capsys):
    no_fields = jsonl("amc23.jsonl", [{"problem": "Q", "solution": "1"}])
    cases = [
        (
            ["--model", models["old"], "--datasets", f"amc23={no_fields}"],
            "lacks field(s) 'question', 'answer'",
        ),
        (["--model", str(tmp_path / "missing"), "--datasets", f"math500={math_jsonl}"], "--model '"),
        (
            ["--policy", "pistar", "--model", models["old"], "--reward-model", models["other_vocab"]]
            + ["--ref-model", models["ref"], "--datasets", f"math500={math_jsonl}"],
            "--reward-model and --model have different vocabularies",
        ),
    ]
    for extra, message in cases:
        code, _, err = _run(capsys, "--suite", "math", *extra, "--out", str(tmp_path / "o"), *FAST)
        assert code == 2 and message in err, err
        assert len(err.strip().splitlines()) == 1


def test_an_output_directory_of_another_evaluation_is_not_reused(models, math_jsonl, tmp_path, capsys):
    argv = ["--suite", "math", "--datasets", f"math500={math_jsonl}", "--seeds", "1", "--limit", "1"]
    argv += ["--out", str(tmp_path / "o"), *FAST]
    assert _run(capsys, *argv, "--model", models["old"])[0] == 0
    code, _, err = _run(capsys, *argv, "--model", models["dpo"])
    assert code == 2 and "holds results of a different evaluation (differing settings: model)" in err


def test_mc_suite_without_lm_eval_says_how_to_install_it(models, tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "lm_eval" else real(name, *a)
    )
    code, _, err = _run(
        capsys, "--suite", "mc", "--model", models["old"], "--tasks", "mmlu", "--out", str(tmp_path)
    )
    assert code == 2 and "pip install 'lco[eval]'" in err


def test_vllm_backend_without_vllm_fails_before_loading_anything(math_jsonl, tmp_path, capsys, monkeypatch):
    import lco.eval.generation as generation

    monkeypatch.setattr(generation, "vllm_available", lambda: False)
    argv = ["--suite", "math", "--model", str(tmp_path / "not_loaded"), "--datasets", f"math500={math_jsonl}"]
    code, _, err = _run(capsys, *argv, "--backend", "vllm", "--out", str(tmp_path / "o"))
    assert code == 2 and "vLLM is not installed (pip install 'lco[vllm]'" in err
