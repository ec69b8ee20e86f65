"""Gradient-Gap metrics in the trainer (gap_every) and the step-size guard (gap_step_guard).

The independent reference for Δμ recomputes g^± with plain autograd on the full logits of a
freshly loaded policy, from the very rows the trainer trained on, and w_k from weights
snapshotted around the step.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, TrainerCallback

from lco.gap import success_rate_lower_bound
from lco.objectives.rollout import ROLLOUT_KEY, Rollout
from lco.trainer import LCOTrainer
from lco.trainer.gap_monitor import GapMonitor, StepSizeGuard, binary_rewards, policy_parameters

from .conftest import parity_reward, tiny_config

GAP_KEYS = ("gap/eta", "gap/success_rate", "gap/M", "gap/J_lower_bound")
GAP_STEP_KEYS = ("gap/delta_mu", "gap/gap_norm", "gap/cosine", "gap/g_plus_norm", "gap/g_minus_norm")


def _trainer(tmp_path, tiny_models, tokenizer, prompts, reward=parity_reward, cls=LCOTrainer, **overrides):
    settings = dict(gap_every=1, per_device_train_batch_size=4, max_steps=3)
    settings.update(overrides)
    args = tiny_config(tmp_path, tiny_models, **settings)
    return cls(tiny_models["policy"], reward, args, train_dataset=prompts, processing_class=tokenizer)


def _gap_logs(trainer) -> list[dict]:
    return [log for log in trainer.state.log_history if "gap/eta" in log]


class _Weights(TrainerCallback):
    """θ of the policy before and after every optimizer step."""

    def __init__(self):
        self.before, self.after = {}, {}

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        self.before[state.global_step] = [p.detach().clone() for p in policy_parameters(model)]

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.after[state.global_step - 1] = [p.detach().clone() for p in policy_parameters(model)]


class _KeepsInputs(LCOTrainer):
    """Records every training micro-batch, by optimizer step."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.model.training:
            kept = {k: (v.detach().clone() if torch.is_tensor(v) else v) for k, v in inputs.items()}
            self.kept_inputs = getattr(self, "kept_inputs", {})
            self.kept_inputs.setdefault(self.state.global_step, []).append(kept)
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)


# --- the metrics ------------------------------------------------------------------------------


def test_gap_metrics_are_logged_every_step_with_a_binary_reward(tmp_path, tiny_models, tokenizer, prompts):
    trainer = _trainer(tmp_path, tiny_models, tokenizer, prompts)
    trainer.train()
    logs = _gap_logs(trainer)
    assert [log["step"] for log in logs] == [1, 2, 3]
    for log in logs:
        for key in GAP_KEYS:
            assert key in log, f"{key} missing from {sorted(log)}"
        if 0 < log["gap/success_rate"] < 1:  # Δμ needs a correct and an incorrect completion
            for key in GAP_STEP_KEYS:
                assert key in log, f"{key} missing from {sorted(log)}"
    assert any("gap/delta_mu" in log for log in logs)


def test_cumulative_alignment_is_the_running_sum_and_the_bound_follows_eq_21(
    tmp_path, tiny_models, tokenizer, prompts
):
    trainer = _trainer(tmp_path, tiny_models, tokenizer, prompts, max_steps=4, learning_rate=1e-2)
    trainer.train()
    logs = _gap_logs(trainer)
    running = 0.0
    initial = logs[0]["gap/success_rate"]  # J(0): the batch success rate of the first measured step
    for log in logs:
        running += max(log.get("gap/delta_mu", 0.0), 0.0) * log["gap/eta"]
        assert log["gap/M"] == pytest.approx(running, rel=1e-6, abs=1e-12)
        assert log["gap/J_lower_bound"] == pytest.approx(success_rate_lower_bound(initial, running), rel=1e-9)
    cumulative = [log["gap/M"] for log in logs]
    assert cumulative == sorted(cumulative) and cumulative[-1] > 0


def test_sampled_steps_stand_for_gap_every_steps(tmp_path, tiny_models, tokenizer, prompts):
    trainer = _trainer(tmp_path, tiny_models, tokenizer, prompts, gap_every=2, max_steps=4)
    trainer.train()
    logs = _gap_logs(trainer)
    assert [log["step"] for log in logs] == [1, 3]  # updates k = 0 and k = 2
    running = 0.0
    for log in logs:
        running += 2 * max(log.get("gap/delta_mu", 0.0), 0.0) * log["gap/eta"]
        assert log["gap/M"] == pytest.approx(running, rel=1e-6, abs=1e-12)


def test_eta_is_the_norm_of_the_actual_parameter_change(tmp_path, tiny_models, tokenizer, prompts):
    trainer = _trainer(tmp_path, tiny_models, tokenizer, prompts, learning_rate=1e-2)
    weights = _Weights()
    trainer.add_callback(weights)
    trainer.train()
    for log in _gap_logs(trainer):
        k = log["step"] - 1
        change = torch.cat(
            [(a - b).reshape(-1) for a, b in zip(weights.after[k], weights.before[k], strict=True)]
        )
        assert log["gap/eta"] == pytest.approx(float(change.norm()), rel=1e-5)
    assert max(log["gap/eta"] for log in _gap_logs(trainer)) > 0


def _sequence_log_probs(model, batch, temperature) -> torch.Tensor:
    """log π_θ(o | q) from the full [B, T, V] logits: the plain reference for the chunked path."""
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    attention = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    k = batch["completion_ids"].shape[1]
    logits = model(input_ids=ids, attention_mask=attention).logits[:, -k - 1 : -1].float() / temperature
    token_logps = torch.log_softmax(logits, -1).gather(-1, batch["completion_ids"].unsqueeze(-1)).squeeze(-1)
    return (token_logps * batch["completion_mask"]).sum(-1)


def test_delta_mu_matches_plain_autograd_on_the_same_batch(tmp_path, tiny_models, tokenizer, prompts):
    temperature = 0.7
    trainer = _trainer(
        tmp_path,
        tiny_models,
        tokenizer,
        prompts,
        cls=_KeepsInputs,
        max_steps=2,
        learning_rate=1e-2,
        temperature=temperature,
        gradient_accumulation_steps=2,
    )
    weights = _Weights()
    trainer.add_callback(weights)
    trainer.train()
    logs = {log["step"]: log for log in _gap_logs(trainer)}
    reference = AutoModelForCausalLM.from_pretrained(tiny_models["policy"])
    checked = 0
    for k, batches in trainer.kept_inputs.items():
        log = logs[k + 1]
        if "gap/delta_mu" not in log:
            continue
        with torch.no_grad():
            for p, value in zip(policy_parameters(reference), weights.before[k], strict=True):
                p.copy_(value)
        rows = {key: torch.cat([b[key] for b in batches]) for key in ("prompt_ids", "prompt_mask")}
        width = max(b["completion_ids"].shape[1] for b in batches)
        assert all(b["completion_ids"].shape[1] == width for b in batches)
        for key in ("completion_ids", "completion_mask"):
            rows[key] = torch.cat([b[key] for b in batches])
        rows["sequence_rewards"] = torch.cat(
            [Rollout.collate(b[ROLLOUT_KEY]).sequence_rewards for b in batches]
        )
        # the rewards travelled with their rows through TRL's shuffle and split
        texts = [
            tokenizer.decode(ids[mask.bool()], skip_special_tokens=True)
            for ids, mask in zip(rows["completion_ids"], rows["completion_mask"], strict=True)
        ]
        assert rows["sequence_rewards"].tolist() == parity_reward(texts)
        correct = rows["sequence_rewards"] > 0
        logps = _sequence_log_probs(reference, rows, temperature)
        params = policy_parameters(reference)
        g_plus = torch.autograd.grad(logps[correct].mean(), params, retain_graph=True)
        g_minus = torch.autograd.grad(logps[~correct].mean(), params)
        gap = torch.cat([(a - b).reshape(-1) for a, b in zip(g_plus, g_minus, strict=True)])
        update = torch.cat(
            [(a - b).reshape(-1) for a, b in zip(weights.after[k], weights.before[k], strict=True)]
        )
        delta_mu = float(update @ gap / update.norm())
        assert log["gap/delta_mu"] == pytest.approx(delta_mu, rel=1e-4)
        assert log["gap/gap_norm"] == pytest.approx(float(gap.norm()), rel=1e-4)
        assert log["gap/success_rate"] == pytest.approx(float(correct.float().mean()))
        checked += 1
    assert checked >= 1


def test_gap_every_zero_computes_and_logs_nothing(tmp_path, tiny_models, tokenizer, prompts, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("GapMonitor.accumulate ran with gap_every=0")

    monkeypatch.setattr(GapMonitor, "accumulate", fail)
    trainer = _trainer(tmp_path, tiny_models, tokenizer, prompts, cls=_KeepsInputs, gap_every=0, max_steps=2)
    trainer.train()
    assert trainer._gap_monitor is None
    assert not any(isinstance(c, GapMonitor | StepSizeGuard) for c in trainer.callback_handler.callbacks)
    assert not any(key.startswith("gap/") for log in trainer.state.log_history for key in log)
    assert all(
        Rollout.collate(b[ROLLOUT_KEY]).sequence_rewards is None
        for batches in trainer.kept_inputs.values()
        for b in batches
    )


def graded_reward(completions, **kwargs) -> list[float]:
    """A reward with many values: not the binary r* of the paper."""
    return [sum(map(ord, c)) / 1000 for c in completions]


def test_a_non_binary_reward_warns_once_and_logs_nothing(tmp_path, tiny_models, tokenizer, prompts):
    trainer = _trainer(tmp_path, tiny_models, tokenizer, prompts, reward=graded_reward)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train()
    messages = [str(w.message) for w in caught if "binary sequence rewards" in str(w.message)]
    assert len(messages) == 1, messages
    assert not any(key.startswith("gap/") for log in trainer.state.log_history for key in log)


@pytest.mark.parametrize(
    ("values", "binary"),
    [
        ({0.0, 1.0}, True),
        ({-1.0, 1.0}, True),
        ({1.0}, True),
        ({0.0}, True),
        ({0.5, 1.0}, False),
        ({0, 0.3, 1}, False),
    ],
)
def test_binary_rewards_split_at_zero(values, binary):
    assert binary_rewards(values) is binary


def test_the_value_head_is_not_part_of_theta(tmp_path, tiny_models, tokenizer, prompts):
    trainer = _trainer(tmp_path, tiny_models, tokenizer, prompts, objective="ppo", max_steps=1)
    trainer.train()
    names = {id(p) for p in policy_parameters(trainer.model)}
    assert all(id(p) not in names for p in trainer.model.lco_value_head.parameters())
    assert "gap/eta" in _gap_logs(trainer)[0]


def test_resume_continues_the_cumulative_alignment_and_the_lr_scale(
    tmp_path, tiny_models, tokenizer, prompts
):
    common = dict(gap_step_guard="scale", learning_rate=1.0, save_strategy="steps", save_steps=2)
    first = _trainer(tmp_path, tiny_models, tokenizer, prompts, max_steps=2, **common)
    first.train()
    saved = {
        "M": float(first._gap_monitor.cumulative.value),
        "J0": first._gap_monitor.initial_success_rate,
        "scale": first._step_guard.lr_scale,
    }
    assert saved["M"] > 0 and saved["scale"] < 1

    resumed = _trainer(tmp_path, tiny_models, tokenizer, prompts, max_steps=3, **common)
    rates = {}

    class Rates(TrainerCallback):
        def on_step_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):
            rates[state.global_step] = (optimizer.param_groups[0]["lr"], lr_scheduler.get_last_lr()[0])

    resumed.add_callback(Rates())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        resumed.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-2"))
    actual, planned = rates[2]
    assert actual == pytest.approx(planned * saved["scale"])  # the first resumed step is already scaled
    log = next(log for log in _gap_logs(resumed) if log["step"] == 3)
    expected = saved["M"] + max(log.get("gap/delta_mu", 0.0), 0.0) * log["gap/eta"]
    assert log["gap/M"] == pytest.approx(expected, rel=1e-6)
    assert log["gap/J_lower_bound"] == pytest.approx(
        success_rate_lower_bound(saved["J0"], expected), rel=1e-9
    )


@pytest.mark.slow
def test_two_ddp_processes_measure_the_gap_of_their_pooled_batch(tmp_path, tiny_models):
    script = Path(__file__).with_name("gap_distributed_run.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    done = subprocess.run(
        [*launch, str(script), tiny_models["policy"], str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"gap_rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    gap_logs = [[{k: v for k, v in log.items() if k.startswith("gap/")} for log in r["logs"]] for r in ranks]
    assert gap_logs[0] == gap_logs[1]  # every rank logs the all-reduced values
    log = ranks[0]["logs"][0]
    assert "gap/delta_mu" in log and "gap/step_ratio" in log
    # Δμ(0) of the pooled batch, recomputed in one process from both ranks' rows
    reference = AutoModelForCausalLM.from_pretrained(tiny_models["policy"])
    with torch.no_grad():
        for p, value in zip(policy_parameters(reference), ranks[0]["before"], strict=True):
            p.copy_(value)
    rows = [batch for rank in ranks for batch in rank["rows"]]
    logps = torch.cat([_sequence_log_probs(reference, batch, 1.0) for batch in rows])
    correct = torch.cat([batch["sequence_rewards"] for batch in rows]) > 0
    params = policy_parameters(reference)
    g_plus = torch.autograd.grad(logps[correct].mean(), params, retain_graph=True)
    g_minus = torch.autograd.grad(logps[~correct].mean(), params)
    gap = torch.cat([(a - b).reshape(-1) for a, b in zip(g_plus, g_minus, strict=True)])
    update = torch.cat(
        [(a - b).reshape(-1) for a, b in zip(ranks[0]["after"], ranks[0]["before"], strict=True)]
    )
    assert log["gap/delta_mu"] == pytest.approx(float(update @ gap / update.norm()), rel=1e-4)
    assert log["gap/eta"] == pytest.approx(float(update.norm()), rel=1e-5)
    assert log["gap/success_rate"] == pytest.approx(float(correct.float().mean()))


# --- the step-size guard ----------------------------------------------------------------------


def _guard_warnings(trainer) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train()
    return [str(w.message) for w in caught if "gap_step_guard" in str(w.message)]


def test_guard_is_quiet_at_a_sane_learning_rate(tmp_path, tiny_models, tokenizer, prompts):
    trainer = _trainer(tmp_path, tiny_models, tokenizer, prompts, gap_step_guard="warn", learning_rate=1e-3)
    assert _guard_warnings(trainer) == []
    ratios = [log["gap/step_ratio"] for log in _gap_logs(trainer) if "gap/step_ratio" in log]
    assert ratios and max(ratios) < trainer.args.gap_step_guard_tolerance


def test_guard_warns_when_the_learning_rate_is_absurd(tmp_path, tiny_models, tokenizer, prompts):
    trainer = _trainer(tmp_path, tiny_models, tokenizer, prompts, gap_step_guard="warn", learning_rate=1.0)
    scheduled = []

    class Rates(TrainerCallback):
        def on_step_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):
            scheduled.append((optimizer.param_groups[0]["lr"], lr_scheduler.get_last_lr()[0]))

    trainer.add_callback(Rates())
    messages = _guard_warnings(trainer)
    assert len(messages) == 1, messages  # then rate-limited
    assert "estimated threshold" in messages[0]
    assert all(actual == planned for actual, planned in scheduled)  # 'warn' leaves the rate alone
    logs = [log for log in _gap_logs(trainer) if "gap/step_ratio" in log]
    assert max(log["gap/step_ratio"] for log in logs) > trainer.args.gap_step_guard_tolerance
    for log in logs:
        assert log["gap/step_ratio"] == pytest.approx(log["gap/eta"] / log["gap/step_threshold"], rel=1e-6)


def test_guard_scales_the_learning_rate_when_opted_in(tmp_path, tiny_models, tokenizer, prompts):
    trainer = _trainer(
        tmp_path, tiny_models, tokenizer, prompts, gap_step_guard="scale", learning_rate=1.0, max_steps=3
    )
    scheduled = {}

    class Rates(TrainerCallback):
        def on_step_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):
            scheduled[state.global_step] = (optimizer.param_groups[0]["lr"], lr_scheduler.get_last_lr()[0])

    trainer.add_callback(Rates())
    assert _guard_warnings(trainer)
    logs = {log["step"]: log for log in _gap_logs(trainer)}
    scales = {step: log["gap/lr_scale"] for step, log in logs.items() if "gap/lr_scale" in log}
    assert scales and min(scales.values()) < 1
    scale = 1.0
    for step in sorted(scheduled):
        actual, planned = scheduled[step]
        assert actual == pytest.approx(planned * scale, rel=1e-9)  # the scale from step k acts on k+1, ...
        scale = scales.get(step + 1, scale)
    args, previous = trainer.args, 1.0
    for step in sorted(scales):  # each verdict moves the scale towards η = tolerance·η*, within [min, 1]
        wanted = previous * args.gap_step_guard_tolerance / logs[step]["gap/step_ratio"]
        assert scales[step] == pytest.approx(min(1.0, max(args.gap_step_guard_min_lr_scale, wanted)))
        previous = scales[step]


# --- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"gap_every": -1}, "gap_every must be >= 0"),
        ({"gap_step_guard": "loud", "gap_every": 1}, "gap_step_guard must be one of"),
        ({"gap_step_guard": "warn"}, "gap_step_guard='warn' needs gap_every > 0"),
        (
            {"gap_every": 1, "gap_step_guard_tolerance": 0.0},
            "gap_step_guard_tolerance must be finite and > 0",
        ),
        ({"gap_every": 1, "gap_step_guard_tolerance": math.nan}, "gap_step_guard_tolerance must be finite"),
        ({"gap_every": 1, "gap_step_guard_min_lr_scale": 0.0}, "gap_step_guard_min_lr_scale must lie in"),
        ({"gap_every": 1, "gap_step_guard_min_lr_scale": 1.5}, "gap_step_guard_min_lr_scale must lie in"),
        (
            {"gap_every": 1, "gap_step_guard": "scale", "lr_scheduler_type": "reduce_lr_on_plateau"},
            "lr_scheduler_type='reduce_lr_on_plateau'",
        ),
    ],
)
def test_bad_gap_config_names_the_field(tmp_path, tiny_models, overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(tmp_path, tiny_models, **overrides)


def test_defaults_leave_the_gap_metrics_off(tmp_path, tiny_models):
    args = tiny_config(tmp_path, tiny_models)
    assert args.gap_every == 0 and args.gap_step_guard == "off"
