"""Issue 20: a reward function that raises, returns None or the wrong type is one line naming it and the
step; a batch with no reward at all stops the run instead of exiting 0 having learned nothing."""

from __future__ import annotations

import math
import os
import sys

import pytest
import torch

from lco.cli import main as lco_main
from lco.errors import RewardFunctionError
from lco.trainer.guard import NonFiniteGuard, checked_reward_funcs

from .test_bad_input_cli import _config, _one_line_error

REWARDS = """
def raises(completions, **kwargs):
    return [1.0 / 0 for c in completions]

def returns_none(completions, **kwargs):
    return None

def returns_strings(completions, **kwargs):
    return ["1.0" for c in completions]

def returns_a_number(completions, **kwargs):
    return 1.0

def all_none(completions, **kwargs):
    return [None for c in completions]

def all_nan(completions, **kwargs):
    return [float("nan") for c in completions]

def fine(completions, **kwargs):
    return [float(len(c) % 2) for c in completions]
"""


@pytest.fixture
def reward_module(tmp_path, monkeypatch):
    (tmp_path / "lco_rewards_20.py").write_text(REWARDS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", os.getcwd())])
    yield "lco_rewards_20"
    sys.modules.pop("lco_rewards_20", None)


@pytest.mark.parametrize(
    ("function", "says"),
    [
        ("raises", "raised ZeroDivisionError at step 1: float division by zero"),
        ("returns_none", "returned None at step 1"),
        ("returns_strings", "returned a str ('1.0') for completion 0 at step 1"),
        ("returns_a_number", "returned a float at step 1"),
    ],
)
def test_a_bad_reward_function_is_one_line_naming_it_and_the_step(
    tmp_path, tiny_models, capsys, reward_module, function, says
):
    config = _config(tmp_path, tiny_models, reward_funcs=f"['{reward_module}:{function}']")
    err = _one_line_error(capsys, config)
    assert f"reward function '{function}'" in err and says in err, err


@pytest.mark.parametrize("function", ["all_none", "all_nan"])
def test_a_batch_without_any_reward_stops_the_run(tmp_path, tiny_models, capsys, reward_module, function):
    """Today: exit 0 and a saved model that learned nothing (every advantage 0)."""
    config = _config(tmp_path, tiny_models, reward_funcs=f"['{reward_module}:{function}']")
    err = _one_line_error(capsys, config)
    assert "every reward of step 1 is NaN/None" in err and function in err
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_a_reward_function_that_scores_is_unchanged(tmp_path, tiny_models, capsys, reward_module):
    config = _config(
        tmp_path, tiny_models, reward_funcs=f"['{reward_module}:fine', '{reward_module}:all_none']"
    )
    assert lco_main(["train", config]) == 0, capsys.readouterr().err  # one function scoring is enough


def test_the_wrapper_keeps_the_name_and_passes_models_and_async_functions_through():
    def mine(completions, **kwargs):
        return [0.5] * len(completions)

    async def later(completions, **kwargs):
        return [0.0] * len(completions)

    module = torch.nn.Linear(1, 1)
    wrapped = checked_reward_funcs([mine, later, module, "some/reward-model"])
    assert wrapped[0].__name__ == "mine" and wrapped[0] is not mine
    assert wrapped[0](prompts=["p"], completions=["a", "b"]) == [0.5, 0.5]
    assert wrapped[1:] == [later, module, "some/reward-model"]
    assert checked_reward_funcs(mine).__name__ == "mine"


def test_rewards_that_are_only_logged_may_be_missing():
    """With a dense advantage the rewards do not drive the update: an unscored batch is not a stop."""
    guard = NonFiniteGuard(3, rewards_teach=False)
    guard.check_rewards(torch.full((4, 1), math.nan), ["logged"], step=0)
    with pytest.raises(RewardFunctionError, match="every reward of step 3"):
        NonFiniteGuard(3).check_rewards(torch.full((4, 1), math.nan), ["taught"], step=2)
