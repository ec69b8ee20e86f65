"""Checkpoints and resume, the non-finite guard, the dynamics metrics, bad input, and the CLI."""

from __future__ import annotations

import copy
import json
import os

import pytest
import torch
from datasets import Dataset
from transformers import TrainerCallback

from lco.cli import main as lco_main
from lco.tasks import build_byte_tokenizer, build_tiny_causal_lm
from lco.trainer import LCOTrainer
from lco.trainer.guard import NonFiniteGradientError, NonFiniteGuard

from .conftest import parity_reward, tiny_config


def _trainer(tmp_path, tiny_models, tokenizer, prompts, cls=LCOTrainer, **overrides):
    args = tiny_config(tmp_path, tiny_models, **overrides)
    return cls(tiny_models["policy"], parity_reward, args, train_dataset=prompts, processing_class=tokenizer)


def test_resume_from_checkpoint_keeps_step_count_and_optimizer_state(
    tmp_path, tiny_models, tokenizer, prompts
):
    first = _trainer(
        tmp_path, tiny_models, tokenizer, prompts, save_strategy="steps", save_steps=1, max_steps=1
    )
    first.train()
    checkpoint = tmp_path / "out" / "checkpoint-1"
    saved_optimizer = torch.load(checkpoint / "optimizer.pt", weights_only=False)

    # What the resumed run starts from, seen at on_train_begin (after the checkpoint was loaded).
    seen = {}

    class Snapshot(TrainerCallback):
        def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
            seen["step"] = state.global_step
            seen["optimizer"] = copy.deepcopy(optimizer.state_dict()["state"])

    resumed = _trainer(tmp_path, tiny_models, tokenizer, prompts, max_steps=3)
    resumed.add_callback(Snapshot())
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert seen["step"] == 1
    assert seen["optimizer"].keys() == saved_optimizer["state"].keys()
    for index, state in saved_optimizer["state"].items():
        torch.testing.assert_close(seen["optimizer"][index]["exp_avg"], state["exp_avg"], rtol=0, atol=0)
        torch.testing.assert_close(
            seen["optimizer"][index]["exp_avg_sq"], state["exp_avg_sq"], rtol=0, atol=0
        )
    assert resumed.state.global_step == 3
    # step 1's log comes from the checkpoint's history; steps 2 and 3 are the continued run
    assert [log["step"] for log in resumed.state.log_history if "loss" in log] == [1, 2, 3]


class _NaNLoss(LCOTrainer):
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        return super().compute_loss(model, inputs) * float("nan")


def test_nonfinite_steps_are_skipped_then_stop_with_weights_untouched(
    tmp_path, tiny_models, tokenizer, prompts
):
    trainer = _trainer(
        tmp_path, tiny_models, tokenizer, prompts, cls=_NaNLoss, max_steps=5, max_nonfinite_steps=2
    )
    before = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    with pytest.raises(NonFiniteGradientError, match="2 consecutive steps"):
        trainer.train()
    for name, value in trainer.model.named_parameters():
        assert torch.equal(before[name], value), f"{name} was updated by a non-finite step"
    assert trainer._guard.skipped_total == 2


def test_guard_resets_its_count_after_a_finite_step():
    layer = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    guard = NonFiniteGuard(max_consecutive=2)
    state = type("S", (), {"global_step": 0})()
    args = type("A", (), {"output_dir": "out"})()
    for grad_value in (float("inf"), 1.0, float("nan")):
        for p in layer.parameters():
            p.grad = torch.full_like(p, grad_value)
        guard.on_pre_optimizer_step(args, state, None, optimizer=optimizer)
    assert guard.skipped_total == 2 and guard.consecutive == 1
    assert all(p.grad is None for p in layer.parameters())  # the last (NaN) step was dropped


@pytest.mark.parametrize("objective", ["lco_kld", "ppo"])
def test_dynamics_metrics_are_logged(tmp_path, tiny_models, tokenizer, prompts, objective):
    trainer = _trainer(tmp_path, tiny_models, tokenizer, prompts, objective=objective, dynamics_every=1)
    trainer.train()
    logged = trainer.state.log_history[0]
    for key in (
        "lco/grad_norm_pos",
        "lco/grad_norm_neg",
        "lco/sampled_prob",
        "lco/objective",
        "lco/skipped_steps",
    ):
        assert key in logged, f"{key} missing from {sorted(logged)}"
    assert logged["lco/grad_norm_pos"] > 0 and logged["lco/grad_norm_neg"] > 0


# --- bad input --------------------------------------------------------------------------------


def test_missing_prompt_column_is_refused_before_loading(tmp_path, tiny_models, tokenizer):
    with pytest.raises(ValueError, match="no 'prompt' column"):
        _trainer(tmp_path, tiny_models, tokenizer, Dataset.from_dict({"question": ["1+1="]}))


def test_empty_dataset_is_refused(tmp_path, tiny_models, tokenizer):
    with pytest.raises(ValueError, match="train_dataset is empty"):
        _trainer(tmp_path, tiny_models, tokenizer, Dataset.from_dict({"prompt": []}))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"objective": "trpo"}, "objective must be one of"),
        ({"advantage": "gae"}, "advantage must be one of"),
        ({"lco_beta": 0.0}, "lco_beta must be > 0"),
        ({"lco_beta": -1.0}, "lco_beta must be > 0"),
        ({"advantage": "dpo_dense", "reward_model_path": None}, "needs both reward_model_path"),
        ({"advantage": "logprob_dense", "reward_model_path": None}, "needs reward_model_path"),
        ({"objective": "gkd", "reward_model_path": None}, "needs teacher_model_path"),
    ],
)
def test_bad_config_names_the_field(tmp_path, tiny_models, overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(tmp_path, tiny_models, **overrides)


def test_reward_model_with_another_vocabulary_is_refused_at_start(tmp_path, tiny_models, tokenizer, prompts):
    other = build_byte_tokenizer()
    other.add_tokens(["<extra>"])
    foreign = build_tiny_causal_lm(other, hidden_size=32)
    foreign.save_pretrained(tmp_path / "foreign")
    other.save_pretrained(tmp_path / "foreign")
    with pytest.raises(ValueError, match="different vocabulary"):
        _trainer(
            tmp_path,
            tiny_models,
            tokenizer,
            prompts,
            advantage="dpo_dense",
            reward_model_path=str(tmp_path / "foreign"),
        )


def test_outcome_advantage_without_reward_functions_is_refused(tmp_path, tiny_models, tokenizer, prompts):
    with pytest.raises(ValueError, match="reward_funcs is required"):
        LCOTrainer(
            tiny_models["policy"],
            None,
            tiny_config(tmp_path, tiny_models),
            prompts,
            processing_class=tokenizer,
        )


# --- the CLI ----------------------------------------------------------------------------------


def _write_cli_inputs(tmp_path, tiny_models) -> str:
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(json.dumps({"prompt": f"{i}+1=", "answer": str(i + 1)}) for i in range(4)))
    config = tmp_path / "config.yaml"
    config.write_text(
        "\n".join(
            [
                f"model_name_or_path: {tiny_models['policy']}",
                f"dataset: {data}",
                "reward_funcs: [math]",
                f"output_dir: {tmp_path / 'run'}",
                "objective: lco_kld",
                "num_generations: 2",
                "max_completion_length: 4",
                "per_device_train_batch_size: 2",
                "max_steps: 1",
                "use_cpu: true",
                "bf16: false",
                "gradient_checkpointing: false",
                "report_to: none",
                "save_strategy: 'no'",
            ]
        )
    )
    return str(config)


def test_cli_train_runs_a_yaml_config_with_overrides(tmp_path, tiny_models):
    config = _write_cli_inputs(tmp_path, tiny_models)
    assert lco_main(["train", config, "--objective", "lco_lch", "--max_steps", "2"]) == 0
    run = tmp_path / "run"
    assert (run / "model.safetensors").exists()
    state = (
        json.loads((run / "trainer_state.json").read_text())
        if (run / "trainer_state.json").exists()
        else None
    )
    args = torch.load(run / "training_args.bin", weights_only=False)
    assert args.objective == "lco_lch" and args.max_steps == 2
    assert state is None or state["global_step"] == 2


def test_cli_train_accepts_the_stability_options(tmp_path, tiny_models):
    config = _write_cli_inputs(tmp_path, tiny_models)
    # the preset fills what it names; an option it does not name is the user's (a conflicting one is an
    # error: tests/trainer/test_lco_presets.py)
    flags = ["--lco_preset", "authors", "--lco_support_k", "5", "--lco_temperature_consistent", "true"]
    flags += ["--lco_beta", "2", "--temperature", "0.6", "--max_steps", "2"]
    assert lco_main(["train", config, *flags]) == 0
    args = torch.load(tmp_path / "run" / "training_args.bin", weights_only=False)
    # the outcome advantage is sparse: the authors' preset takes it as it is (no std)
    assert (args.lco_support, args.lco_support_k, args.advantage_normalization) == ("top_k", 5, "none")
    assert (args.lco_anchor_update_steps, args.lco_beta_negative) == (0, 200.0)
    assert args.lco_temperature_consistent is True and args.temperature == 0.6


def test_cli_train_refuses_an_lco_option_on_a_baseline(tmp_path, tiny_models, capsys):
    config = _write_cli_inputs(tmp_path, tiny_models)
    assert lco_main(["train", config, "--objective", "grpo", "--lco_support", "top_k"]) == 2
    assert "lco_support applies to the LCO objectives" in capsys.readouterr().err


def test_cli_train_reports_bad_input_in_one_line(tmp_path, tiny_models, capsys):
    config = _write_cli_inputs(tmp_path, tiny_models)
    assert lco_main(["train", config, "--objective", "nope"]) == 2
    assert "objective must be one of" in capsys.readouterr().err
    assert lco_main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "run")


@pytest.mark.parametrize("objective", ["lco_kld", "ppo", "reinforce", "grpo"])
def test_evaluation_during_training_computes_the_objective(
    tmp_path, tiny_models, tokenizer, prompts, objective
):
    args = tiny_config(
        tmp_path,
        tiny_models,
        objective=objective,
        eval_strategy="steps",
        eval_steps=1,
        per_device_eval_batch_size=2,
    )
    trainer = LCOTrainer(
        tiny_models["policy"],
        parity_reward,
        args,
        train_dataset=prompts,
        eval_dataset=prompts,
        processing_class=tokenizer,
    )
    trainer.train()
    eval_logs = [log for log in trainer.state.log_history if "eval_loss" in log]
    assert len(eval_logs) == 2 and all(torch.isfinite(torch.tensor(log["eval_loss"])) for log in eval_logs)
