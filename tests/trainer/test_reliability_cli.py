"""Issue 20: nothing overwritten, every bad input one line, messages that say what happened.

Each bad input is one ``lco train: error: …`` line with exit 2, before a model loads where the
input allows (``no_model_load``).
"""

from __future__ import annotations

import json
import os
import re
import time

import pytest

from lco.cli import main as lco_main

from .test_bad_input_cli import _config, _one_line_error


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if TRL's trainer starts (that is where the policy is loaded)."""
    import trl

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the bad input was reported")

    monkeypatch.setattr(trl.GRPOTrainer, "__init__", refuse)


# ---------------------------------------------------------------- the run folder


def _fake_old_run(folder, steps=(10, 20, 30)) -> dict[str, float]:
    """A folder as another run leaves it: checkpoint-N folders and a final model; returns their mtimes."""
    folder.mkdir(parents=True, exist_ok=True)
    for step in steps:
        (folder / f"checkpoint-{step}").mkdir()
        (folder / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (folder / "model.safetensors").write_bytes(b"old run")
    return {p: os.stat(folder / p).st_mtime_ns for p in os.listdir(folder)}


def test_a_folder_with_another_runs_checkpoints_is_refused(tmp_path, tiny_models, capsys, no_model_load):
    before = _fake_old_run(tmp_path / "run")
    err = _one_line_error(capsys, _config(tmp_path, tiny_models))
    assert "checkpoint-10" in err and "checkpoint-30" in err
    assert "--resume_from_checkpoint" in err and "--overwrite_output_dir" in err and "--output_dir" in err
    assert {p: os.stat(tmp_path / "run" / p).st_mtime_ns for p in os.listdir(tmp_path / "run")} == before


def test_a_folder_with_another_runs_final_model_is_refused(tmp_path, tiny_models, capsys, no_model_load):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model.safetensors").write_bytes(b"old run")
    err = _one_line_error(capsys, _config(tmp_path, tiny_models))
    assert "model.safetensors" in err and "--overwrite_output_dir" in err


@pytest.mark.slow
def test_rerun_resume_finished_and_overwrite(tmp_path, tiny_models, capsys, monkeypatch):
    """A real run's folder: a rerun is refused, resuming the finished run is refused, overwrite starts afresh."""
    config = _config(tmp_path, tiny_models, max_steps=2, save_strategy="steps", save_steps=1)
    assert lco_main(["train", config]) == 0, capsys.readouterr().err
    run = tmp_path / "run"
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    capsys.readouterr()

    import trl

    load = trl.GRPOTrainer.__init__

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the bad input was reported")

    monkeypatch.setattr(trl.GRPOTrainer, "__init__", refuse)
    err = _one_line_error(capsys, config)
    assert "another run's checkpoints (checkpoint-1, checkpoint-2)" in err
    # today: one more step and a checkpoint-3
    err = _one_line_error(capsys, config, "--resume_from_checkpoint", "true")
    assert "checkpoint-2" in err and "step 2" in err and "max_steps=2" in err and "finished" in err
    assert not (run / "checkpoint-3").exists()

    # overwrite: the old checkpoints go (a later resume cannot pick them), the new run's take their place
    monkeypatch.setattr(trl.GRPOTrainer, "__init__", load)
    marker = run / "checkpoint-2" / "old-run-marker"
    marker.write_text("x")
    config_one = _config(tmp_path, tiny_models, max_steps=1, save_strategy="steps", save_steps=1)
    assert lco_main(["train", config_one, "--overwrite_output_dir", "true"]) == 0, capsys.readouterr().err
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-1"] and not marker.exists()

    # resuming with a higher max_steps trains on from the checkpoint
    config_two = _config(tmp_path, tiny_models, max_steps=2, save_strategy="steps", save_steps=1)
    assert lco_main(["train", config_two, "--resume_from_checkpoint", "true"]) == 0, capsys.readouterr().err
    state = json.loads((run / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2


def test_the_readme_examples_write_to_distinct_folders():
    """The README's second `lco train` command must not land in the first one's output_dir."""
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    commands = re.findall(r"lco train (examples/\S+\.yaml)([^`\n]*)", readme)
    assert len(commands) >= 2, commands
    folders = []
    for path, flags in commands:
        override = re.search(r"--output_dir\s+(\S+)", flags)
        folders.append(
            override.group(1) if override else yaml.safe_load((root / path).read_text())["output_dir"]
        )
    assert len(set(folders)) == len(folders), folders
    # on a fresh clone examples/tiny/ does not exist yet: the README builds it before the first `lco train`
    assert readme.index("examples/make_tiny_example.py examples/tiny") < readme.index("lco train examples/")


# ---------------------------------------------------------------- preflight


def test_a_model_folder_without_tokenizer_fails_at_preflight(tmp_path, tiny_models, capsys, no_model_load):
    """What a kill during the final save leaves: config.json and weights, no tokenizer files."""
    import shutil

    cut = tmp_path / "cut"
    cut.mkdir()
    for name in ("config.json", "generation_config.json", "model.safetensors"):
        if os.path.exists(os.path.join(tiny_models["policy"], name)):
            shutil.copy(os.path.join(tiny_models["policy"], name), cut / name)
    err = _one_line_error(capsys, _config(tmp_path, tiny_models, model_name_or_path=cut))
    assert "model_name_or_path" in err and str(cut) in err and "no tokenizer files" in err


def test_a_truncated_tokenizer_fails_at_preflight(tmp_path, tiny_models, capsys, no_model_load):
    import shutil

    cut = tmp_path / "cut"
    shutil.copytree(tiny_models["policy"], cut)
    text = (cut / "tokenizer.json").read_text()
    (cut / "tokenizer.json").write_text(text[: len(text) // 2])
    err = _one_line_error(capsys, _config(tmp_path, tiny_models, model_name_or_path=cut))
    assert "model_name_or_path" in err and "tokenizer" in err


def test_malformed_yaml_is_one_line_with_its_line(tmp_path, capsys, no_model_load):
    config = tmp_path / "bad.yaml"
    config.write_text("model_name_or_path: x\ndataset: [a, b\noutput_dir: out\n")
    err = _one_line_error(capsys, str(config))
    assert "bad.yaml" in err and "not valid YAML" in err and "line " in err


def test_an_example_config_outside_the_repository_root_says_where_to_run(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err = _one_line_error(capsys, "examples/tiny_local.yaml")
    assert "does not exist" in err and "repository's root" in err


def test_the_tiny_example_model_missing_says_what_to_run_first(tmp_path, capsys, monkeypatch, no_model_load):
    """From a fresh clone (the YAML is there, examples/tiny/ is not): the error names the builder script."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "tiny_local.yaml").write_text(
        (root / "examples" / "tiny_local.yaml").read_text()
    )
    monkeypatch.chdir(tmp_path)
    err = _one_line_error(capsys, "examples/tiny_local.yaml")
    assert "examples/tiny/policy" in err and "python examples/make_tiny_example.py examples/tiny" in err


def test_hub_dataset_offline_is_one_line_at_once(tmp_path, tiny_models, capsys, monkeypatch, no_model_load):
    from huggingface_hub import constants

    from lco import preflight

    def no_network(*args, **kwargs):
        raise AssertionError("the hub was asked while offline")

    monkeypatch.setattr(preflight, "probe_hub", no_network)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    start = time.perf_counter()
    err = _one_line_error(capsys, _config(tmp_path, tiny_models, dataset="someone/no-such-dataset-20"))
    assert time.perf_counter() - start < 10
    assert "someone/no-such-dataset-20" in err and "HF_HUB_OFFLINE" in err


def test_hub_dataset_online_waits_a_bounded_time(tmp_path, tiny_models, capsys, monkeypatch, no_model_load):
    """A hub that never answers: one line after the bound, not a minute of retries."""
    from huggingface_hub import constants

    from lco import preflight

    asked = []

    def hanging_hub(repo_id, repo_type, timeout):
        asked.append((repo_id, repo_type, timeout))
        time.sleep(30)

    monkeypatch.setattr(preflight, "probe_hub", hanging_hub)
    monkeypatch.setattr(preflight, "HUB_PROBE_TIMEOUT_S", 0.5)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    start = time.perf_counter()
    err = _one_line_error(capsys, _config(tmp_path, tiny_models, dataset="someone/slow-dataset"))
    assert time.perf_counter() - start < 10 and asked == [("someone/slow-dataset", "dataset", 0.5)]
    assert "someone/slow-dataset" in err and "did not answer within 0.5 s" in err


def test_hub_dataset_online_connection_error_is_one_line(
    tmp_path, tiny_models, capsys, monkeypatch, no_model_load
):
    from huggingface_hub import constants

    from lco import preflight

    def unreachable(repo_id, repo_type, timeout):
        raise ConnectionError("Failed to resolve 'huggingface.co'")

    monkeypatch.setattr(preflight, "probe_hub", unreachable)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    err = _one_line_error(capsys, _config(tmp_path, tiny_models, dataset="someone/a-dataset"))
    assert "someone/a-dataset" in err and "cannot be reached" in err and "ConnectionError" in err


def test_hub_model_id_online_waits_a_bounded_time(tmp_path, tiny_models, capsys, monkeypatch, no_model_load):
    """A hub model id that is not cached: one question within the bound, not the client's minute of retries."""
    from huggingface_hub import constants

    from lco import preflight

    def hanging_hub(repo_id, repo_type, timeout):
        assert repo_type == "model"
        time.sleep(30)

    monkeypatch.setattr(preflight, "probe_hub", hanging_hub)
    monkeypatch.setattr(preflight, "HUB_PROBE_TIMEOUT_S", 0.5)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    start = time.perf_counter()
    err = _one_line_error(
        capsys, _config(tmp_path, tiny_models, model_name_or_path="someone/no-such-model-20")
    )
    assert time.perf_counter() - start < 10
    assert "model_name_or_path 'someone/no-such-model-20'" in err and "did not answer within 0.5 s" in err


def test_dataset_split_on_a_local_file_is_not_ignored(tmp_path, tiny_models, capsys, no_model_load):
    err = _one_line_error(capsys, _config(tmp_path, tiny_models), "--dataset_split", "validation")
    assert "dataset_split='validation'" in err and "data.jsonl" in err


# ---------------------------------------------------------------- fields named as the user set them


@pytest.mark.parametrize(
    ("fields", "named", "not_named"),
    [
        ({"lco_beta": "inf"}, "lco_beta must be a finite number", r"(?<!lco_)\bbeta must"),
        ({"lco_support": "top_k", "lco_support_k": 100000}, "lco_support_k=100000", r"\bsupport must"),
        ({"max_steps": 0}, "max_steps=0", None),
        ({"beta": 0.1, "objective": "lco_kld"}, "beta=0.1", None),
        ({"beta": -1, "objective": "grpo"}, "beta (TRL's KL weight)", None),
        ({"beta": ".nan", "objective": "lco_lch"}, "beta (TRL's KL weight)", None),
    ],
)
def test_errors_name_the_field_that_was_set(
    tmp_path, tiny_models, capsys, no_model_load, fields, named, not_named
):
    err = _one_line_error(capsys, _config(tmp_path, tiny_models, **fields))
    assert named in err, err
    if not_named:
        assert not re.search(not_named, err), err


def test_trl_beta_with_an_lco_objective_points_to_lco_beta(tmp_path, tiny_models, capsys, no_model_load):
    err = _one_line_error(capsys, _config(tmp_path, tiny_models, beta=0.04, objective="lco_kld"))
    assert "ignores it" in err and "lco_beta" in err


def test_trl_beta_with_grpo_is_accepted(tmp_path, tiny_models):
    """GRPO reads TRL's beta (its KL penalty): no refusal there."""
    from lco.trainer import LCOConfig
    from lco.trainer.preflight import check_trl_beta

    args = LCOConfig(
        output_dir=str(tmp_path), objective="grpo", beta=0.04, report_to="none", use_cpu=True, bf16=False
    )
    check_trl_beta(args)


def test_train_help_points_to_the_field_list(capsys):
    with pytest.raises(SystemExit) as exited:
        lco_main(["train", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "lco train CONFIG.yaml --help" in out and "--overwrite_output_dir" in out


def test_train_config_help_lists_the_fields(tmp_path, tiny_models, capsys):
    with pytest.raises(SystemExit) as exited:
        lco_main(["train", _config(tmp_path, tiny_models), "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for field in (
        "--lco_beta",
        "--objective",
        "--learning_rate",
        "--overwrite_output_dir",
        "--resume_from_checkpoint",
    ):
        assert field in out


def test_the_api_checks_the_tokenizer_only_when_it_loads_it(
    tmp_path, tiny_models, tokenizer, prompts, no_model_load
):
    """``LCOTrainer(model=folder)`` loads the tokenizer from the folder: without one it stops before loading;
    with ``processing_class`` given the folder needs none."""
    import shutil

    from lco.trainer import LCOTrainer

    from .conftest import parity_reward, tiny_config

    cut = tmp_path / "cut"
    cut.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(os.path.join(tiny_models["policy"], name), cut / name)
    args = tiny_config(
        tmp_path, tiny_models, advantage="outcome", reward_model_path=None, reference_reward_model_path=None
    )
    with pytest.raises(ValueError, match="model '.*cut' has no tokenizer files"):
        LCOTrainer(str(cut), parity_reward, args, prompts)
    with pytest.raises(AssertionError, match="a model was loaded"):  # past every check: TRL starts loading
        LCOTrainer(str(cut), parity_reward, args, prompts, processing_class=tokenizer)
