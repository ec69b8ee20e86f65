"""Issue 13: every bad input to ``lco train`` is one line ``lco train: error: …`` with exit 2, before any model loads."""

from __future__ import annotations

import json
import os
import re

import pytest
import trl

from lco.cli import main as lco_main

from .conftest import tiny_config


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if TRL's trainer starts (that is where the policy is loaded)."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the bad input was reported")

    monkeypatch.setattr(trl.GRPOTrainer, "__init__", refuse)


def unwritable_dir(tmp_path) -> str:
    """A directory this process cannot create files in (root ignores permission bits: use /proc)."""
    if os.geteuid() == 0:
        return "/proc/self"
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    return str(locked)


def _config(tmp_path, tiny_models, **fields) -> str:
    data = tmp_path / "data.jsonl"
    if not data.exists():
        data.write_text("\n".join(json.dumps({"prompt": f"{i}+1=", "answer": str(i + 1)}) for i in range(4)))
    settings = {
        "model_name_or_path": tiny_models["policy"],
        "dataset": str(data),
        "reward_funcs": "[math]",
        "output_dir": str(tmp_path / "run"),
        "num_generations": 2,
        "max_completion_length": 4,
        "per_device_train_batch_size": 2,
        "max_steps": 1,
        "use_cpu": "true",
        "bf16": "false",
        "report_to": "none",
        "save_strategy": "'no'",
    }
    settings.update(fields)
    config = tmp_path / "config.yaml"
    config.write_text("\n".join(f"{k}: {v}" for k, v in settings.items()))
    return str(config)


def _one_line_error(capsys, *argv) -> str:
    assert lco_main(["train", *argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    # progress bars of a run that started may precede it; the error itself is one line
    lines = re.findall(r"lco train: error: [^\r\n]*", err)
    assert len(lines) == 1, err
    return lines[0]


def test_empty_dataset_file(tmp_path, tiny_models, capsys, no_model_load):
    (tmp_path / "empty.jsonl").write_text("")
    err = _one_line_error(capsys, _config(tmp_path, tiny_models, dataset=tmp_path / "empty.jsonl"))
    assert "empty.jsonl" in err and "is empty" in err


def test_malformed_jsonl_line_is_named_with_its_number(tmp_path, tiny_models, capsys, no_model_load):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "1+1=", "answer": "2"}\n\n{"prompt": "2+2=", "answer": 4\n')
    err = _one_line_error(capsys, _config(tmp_path, tiny_models, dataset=bad))
    assert "bad.jsonl" in err and "line 3" in err


def test_missing_dataset_path(tmp_path, tiny_models, capsys, no_model_load):
    err = _one_line_error(capsys, _config(tmp_path, tiny_models, dataset=tmp_path / "nope.jsonl"))
    assert "nope.jsonl" in err and "does not exist" in err


@pytest.mark.parametrize("field", ["model_name_or_path", "reward_model_path"])
def test_nonexistent_model_paths_fail_without_the_hub(tmp_path, tiny_models, capsys, no_model_load, field):
    extra = {"advantage": "logprob_dense"} if field == "reward_model_path" else {}
    missing = tmp_path / "models" / "no-such-model"
    err = _one_line_error(capsys, _config(tmp_path, tiny_models, **{field: missing}, **extra))
    expected_name = "model" if field == "model_name_or_path" else field
    assert expected_name in err and str(missing) in err and "does not exist" in err


def test_folder_without_config_is_not_a_model(tmp_path, tiny_models, capsys, no_model_load):
    (tmp_path / "not-a-model").mkdir()
    err = _one_line_error(capsys, _config(tmp_path, tiny_models, model_name_or_path=tmp_path / "not-a-model"))
    assert "config.json" in err


def test_output_dir_under_a_regular_file(tmp_path, tiny_models, capsys, no_model_load):
    (tmp_path / "file").write_text("x")
    err = _one_line_error(capsys, _config(tmp_path, tiny_models, output_dir=tmp_path / "file" / "run"))
    assert "output_dir" in err and "regular file" in err


def test_output_dir_not_writable_is_found_before_training(tmp_path, tiny_models, capsys, no_model_load):
    out = os.path.join(unwritable_dir(tmp_path), "run")
    err = _one_line_error(capsys, _config(tmp_path, tiny_models, output_dir=out))
    assert "output_dir" in err and "not writable" in err


def test_beta_too_small_for_float32(tmp_path, tiny_models, capsys, no_model_load):
    err = _one_line_error(capsys, _config(tmp_path, tiny_models, lco_beta="1e-45"))
    assert "lco_beta" in err and "too small" in err


def test_report_to_an_integration_that_is_not_installed(tmp_path, tiny_models, capsys, no_model_load):
    from transformers.integrations import is_tensorboard_available

    if is_tensorboard_available():
        pytest.skip("tensorboard is installed here")
    err = _one_line_error(capsys, _config(tmp_path, tiny_models, report_to="tensorboard"))
    assert "report_to" in err and "tensorboard" in err


def test_the_guard_stop_is_one_line_with_exit_2(tmp_path, tiny_models, capsys, monkeypatch):
    from lco.trainer import LCOTrainer

    original = LCOTrainer.compute_loss

    def nan_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        return original(self, model, inputs) * float("nan")

    monkeypatch.setattr(LCOTrainer, "compute_loss", nan_loss)
    err = _one_line_error(
        capsys, _config(tmp_path, tiny_models, max_steps=4, max_nonfinite_steps=2, objective="lco_kld")
    )
    assert "2 consecutive steps produced NaN/inf gradients" in err


def test_reward_module_in_the_working_directory_is_found(tmp_path, tiny_models, monkeypatch, capsys):
    """``reward_funcs: module:function`` finds ``./module.py`` without PYTHONPATH (as the console script runs)."""
    import sys

    (tmp_path / "my_lco_rewards_13.py").write_text(
        "def length(completions, **kwargs):\n    return [float(len(c) % 2) for c in completions]\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", os.getcwd())])
    config = _config(tmp_path, tiny_models, reward_funcs="['my_lco_rewards_13:length']")
    assert lco_main(["train", config]) == 0, capsys.readouterr().err
    assert (tmp_path / "run" / "model.safetensors").exists()


def test_api_checks_output_dir_before_loading(tmp_path, tiny_models, tokenizer, prompts, no_model_load):
    """The same checks guard ``LCOTrainer(...)`` itself, not only the CLI."""
    from lco.trainer import LCOTrainer

    (tmp_path / "file").write_text("x")
    args = tiny_config(tmp_path, tiny_models, output_dir=str(tmp_path / "file" / "out"))
    with pytest.raises(ValueError, match="output_dir .* regular file"):
        LCOTrainer(
            tiny_models["policy"],
            lambda completions, **kw: [0.0] * len(completions),
            args,
            prompts,
            processing_class=tokenizer,
        )


def test_same_size_vocabulary_reports_the_first_differing_token(tmp_path, tiny_models, tokenizer, prompts):
    """A reward model whose tokenizer swaps two tokens has the policy's size; the error says what differs."""
    import shutil

    from lco.trainer import LCOTrainer

    swapped = tmp_path / "swapped"
    shutil.copytree(tiny_models["dpo"], swapped)
    spec = json.loads((swapped / "tokenizer.json").read_text())
    vocab = spec["model"]["vocab"]
    vocab["a"], vocab["b"] = vocab["b"], vocab["a"]
    (swapped / "tokenizer.json").write_text(json.dumps(spec))
    args = tiny_config(tmp_path, tiny_models, advantage="logprob_dense", reward_model_path=str(swapped))
    with pytest.raises(ValueError, match="different vocabulary") as caught:
        LCOTrainer(tiny_models["policy"], None, args, prompts, processing_class=tokenizer)
    message = str(caught.value)
    assert f"{len(tokenizer)} vs {len(tokenizer)} tokens" in message
    assert "'a'" in message and "'b'" in message and "2 id(s) differ" in message
