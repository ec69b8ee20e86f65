"""Skip optimizer updates whose gradient is NaN/inf, and stop after too many in a row.

One non-finite gradient applied by Adam poisons the moments for good; a run that keeps producing
them has diverged. The guard runs just before ``optimizer.step()``: if any gradient is not
finite it drops all gradients (``p.grad = None``, which torch optimizers skip, so neither weights
nor moments move), counts the step, and after ``max_consecutive`` such steps raises: none of those
updates was applied.

Two other ways a run diverges are caught too: a policy whose logits became non-finite (sampling
then fails inside ``torch.multinomial`` before any gradient exists), and a policy that collapsed to
the uniform distribution (entropy ln |V|: every gradient is then zero, so the gradient check never
fires and training would go on learning nothing). There the damage was done by an update whose
gradients were finite, so the message says which step's update was applied, and which checkpoint on
disk predates it, if any.

Rewards: every user reward function is wrapped (:func:`checked_reward_funcs`) so that one that
raises, returns ``None`` or returns something other than one number per completion is one
:class:`~lco.errors.RewardFunctionError` naming the function and the step; a batch in which every
reward is NaN/None stops the run (nothing can be learned from it), and ±inf rewards (which normalise
to zero advantages: zero loss, no learning) are warned about once, with the step.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import numbers
import os

import torch
from transformers import TrainerCallback

from ..errors import RewardFunctionError, TrainingDivergedError


class NonFiniteGradientError(TrainingDivergedError):
    """Raised when training produced non-finite gradients too many steps in a row."""


class PolicyDivergedError(NonFiniteGradientError):
    """Raised when the policy itself diverged: non-finite probabilities, or a collapse to uniform."""


logger = logging.getLogger(__name__)

# The entropy keys the objectives log (TRL's and the policy-gradient baselines', and LCO's own).
ENTROPY_METRICS = ("entropy", "lco/entropy")
# Uniform: entropy within this relative distance of ln |V|. Only a policy that was once clearly
# below it counts as having *gone* uniform — a freshly initialised model starts there.
UNIFORM_TOLERANCE = 1e-4
UNIFORM_MARGIN = 0.05
_SAMPLING_FAILURE = "probability tensor contains either"


_ADVICE = "Lower the learning rate or check the rewards/advantages."


def _checkpoint_sentence(output_dir: str, damaged_from: int | None) -> str:
    """Which checkpoint in ``output_dir`` holds a policy from before step ``damaged_from``'s update, if any.

    ``damaged_from`` is the first step whose update produced the bad policy (``None``: no bad update
    was applied, so every checkpoint is good).
    """
    from .checkpoints import checkpoints_newest_first

    found = [(int(os.path.basename(c).rsplit("-", 1)[1]), c) for c in checkpoints_newest_first(output_dir)]
    if not found:
        return f"{output_dir} holds no checkpoint (none was saved yet; save_steps sets how often)."
    if damaged_from is None:
        step, path = found[0]
        return f"The newest checkpoint is {path} (step {step})."
    good = [(step, path) for step, path in found if step < damaged_from]
    bad = [path for step, path in found if step >= damaged_from]
    names = ", ".join(os.path.basename(p) for p in bad)
    sentence = f"{names} (saved after that update) {'holds' if len(bad) == 1 else 'hold'} it; " if bad else ""
    if good:
        return sentence + f"the newest checkpoint from before it is {good[0][1]} (step {good[0][0]})."
    return sentence + f"{output_dir} holds no checkpoint from before it."


def _stop_message(what: str, step: int, output_dir: str) -> str:
    """``what`` was seen at step ``step``, before its update: the update of step ``step`` − 1 made it."""
    if step <= 1:
        return (
            f"{what} (step {step}); stopping. This happened before any update was applied: the starting model "
            f"already gives it. {_ADVICE}"
        )
    return (
        f"{what} (step {step}); stopping. The update of step {step - 1} was applied and produced this policy (its "
        f"gradients were finite, so the gradient check let it through); step {step}'s update was not applied. "
        f"{_checkpoint_sentence(output_dir, step - 1)} {_ADVICE}"
    )


def _reward_step(kwargs) -> str:
    """The step a reward call belongs to (TRL passes ``trainer_state``: ``global_step`` steps are done)."""
    state = kwargs.get("trainer_state")
    return f"step {state.global_step + 1}" if state is not None else "an unknown step"


def _is_score(value) -> bool:
    if isinstance(value, torch.Tensor):
        return value.dim() == 0 and not value.dtype.is_complex
    return (
        value is None
        or (isinstance(value, numbers.Real) and not isinstance(value, bool))
        or (
            hasattr(value, "dtype")
            and getattr(value, "shape", None) == ()
            and isinstance(value.item(), numbers.Real)
        )
    )


def _is_async(func) -> bool:
    """TRL awaits these itself (``asyncio.gather``); a synchronous wrapper would hand it a coroutine."""
    call = type(func).__call__ if not inspect.isroutine(func) else None
    return inspect.iscoroutinefunction(func) or (call is not None and inspect.iscoroutinefunction(call))


def check_reward_output(name: str, output, completions: int, step: str) -> None:
    """``output`` is one number (or ``None``, TRL's "not scored") per completion; else one clear error."""
    if output is None:
        raise RewardFunctionError(
            f"reward function {name!r} returned None at {step}; it must return a list of {completions} numbers, one "
            "per completion (None for a completion it does not score)"
        )
    if (
        isinstance(output, (str, bytes, dict))
        or not hasattr(output, "__len__")
        or not hasattr(output, "__iter__")
    ):
        raise RewardFunctionError(
            f"reward function {name!r} returned a {type(output).__name__} at {step}; it must return a list of "
            f"{completions} numbers, one per completion"
        )
    if isinstance(output, torch.Tensor) and output.dim() != 1:
        raise RewardFunctionError(
            f"reward function {name!r} returned a tensor of shape {tuple(output.shape)} at {step}; it must return "
            f"{completions} numbers, one per completion"
        )
    if len(output) != completions:
        raise RewardFunctionError(
            f"reward function {name!r} returned {len(output)} rewards at {step}, but there are {completions} "
            "completions; it must return one per completion"
        )
    for index, value in enumerate(output):
        if not _is_score(value):
            raise RewardFunctionError(
                f"reward function {name!r} returned a {type(value).__name__} ({value!r:.40}) for completion {index} "
                f"at {step}; each reward must be a number (or None)"
            )


def checked_reward_funcs(reward_funcs):
    """``reward_funcs`` with every plain function wrapped by :func:`check_reward_output` (same ``__name__``).

    Models (``nn.Module``), model ids (``str``) and async functions pass through unchanged.
    """
    if reward_funcs is None:
        return None
    single = not isinstance(reward_funcs, (list, tuple))
    funcs = [reward_funcs] if single else list(reward_funcs)
    checked = [
        _checked(f) if callable(f) and not isinstance(f, torch.nn.Module) and not _is_async(f) else f
        for f in funcs
    ]
    return checked[0] if single else checked


def _checked(func):
    name = getattr(func, "__name__", None) or type(func).__name__

    @functools.wraps(func)
    def reward(*args, **kwargs):
        completions = kwargs.get("completions", args[1] if len(args) > 1 else None)
        try:
            output = func(*args, **kwargs)
        except RewardFunctionError:
            raise
        except Exception as err:
            message = " ".join(str(err).split())[:300]
            raise RewardFunctionError(
                f"reward function {name!r} raised {type(err).__name__} at {_reward_step(kwargs)}: {message}"
            ) from err
        if completions is not None:
            check_reward_output(name, output, len(completions), _reward_step(kwargs))
        return output

    reward.__name__ = name  # TRL names the reward's metrics and columns after it
    return reward


class NonFiniteGuard(TrainerCallback):
    def __init__(
        self,
        max_consecutive: int,
        metrics: dict | None = None,
        vocab_size: int | None = None,
        rewards_teach: bool = True,
    ):
        if max_consecutive < 1:
            raise ValueError(f"max_consecutive must be >= 1, got {max_consecutive}")
        self.max_consecutive = max_consecutive
        self.metrics = metrics  # the trainer's _metrics["train"], where the skip count is logged
        self.vocab_size = vocab_size  # |V| of the policy's logits, for the uniform-collapse check
        self.consecutive = 0
        self.skipped_total = 0
        self.lowest_entropy = math.inf
        self.warned_rewards = False
        # whether the rewards drive the update (outcome advantages); else they are only logged
        self.rewards_teach = rewards_teach

    # ---------------------------------------------------------------- rewards and the policy

    def check_rewards(self, rewards: torch.Tensor, names: list[str], step: int) -> None:
        """Stop on a batch with no reward at all; warn once when a reward function returned ±inf.

        ``step`` is the number of finished steps (TRL's ``global_step``). One NaN (TRL's "not scored",
        from ``None``) is fine; a batch in which every reward is NaN gives zero advantages everywhere,
        so the step — and a run of them — learns nothing while exiting 0.
        """
        if self.rewards_teach and rewards.numel() > 0 and bool(torch.isnan(rewards).all()):
            raise RewardFunctionError(
                f"every reward of step {step + 1} is NaN/None ({rewards.shape[0]} completions; reward function(s) "
                f"{', '.join(names)}): nothing can be learned from it; make the reward functions score the "
                "completions (None means 'not scored')"
            )
        if self.warned_rewards or not bool(torch.isinf(rewards).any()):
            return
        self.warned_rewards = True
        columns = torch.isinf(rewards).any(dim=0).tolist() if rewards.dim() == 2 else [True]
        culprits = [n for n, bad in zip(names, columns, strict=False) if bad] or names
        logger.warning(
            "step %d: reward function(s) %s returned inf; the group-normalised advantages of those prompts are "
            "NaN/0, so they teach nothing (warned once)",
            step,
            ", ".join(culprits),
        )

    def check_sampling_error(self, error: BaseException, step: int, output_dir: str) -> None:
        """Turn torch's sampling failure on non-finite probabilities into the divergence error.

        ``step`` is the number of finished steps (TRL's ``global_step``): sampling is step + 1's.
        """
        if _SAMPLING_FAILURE in str(error):
            raise PolicyDivergedError(
                _stop_message(
                    "the policy's probabilities became NaN/inf: sampling failed", step + 1, output_dir
                )
            ) from error

    def check_entropy(self, step: int, output_dir: str) -> None:
        """Stop when the policy, once clearly sharper, has collapsed to the uniform distribution."""
        if self.metrics is None or not self.vocab_size or self.vocab_size < 2:
            return
        values = [v for key in ENTROPY_METRICS for v in self.metrics.get(key, [])[-1:]]
        if not values:
            return
        entropy, uniform = values[-1], math.log(self.vocab_size)
        if not math.isfinite(entropy):
            raise PolicyDivergedError(_stop_message("the policy's entropy became NaN/inf", step, output_dir))
        self.lowest_entropy = min(self.lowest_entropy, entropy)
        went_uniform = entropy >= uniform * (1 - UNIFORM_TOLERANCE)
        if went_uniform and self.lowest_entropy <= uniform * (1 - UNIFORM_MARGIN):
            raise PolicyDivergedError(
                _stop_message(
                    f"the policy collapsed to the uniform distribution (entropy {entropy:.4f} = ln {self.vocab_size}, "
                    f"down to {self.lowest_entropy:.4f} before); its gradients are zero",
                    step,
                    output_dir,
                )
            )

    @staticmethod
    def gradients_are_finite(parameters) -> bool:
        grads = [p.grad for p in parameters if p.grad is not None]
        if not grads:
            return True
        # One fused reduction instead of a host sync per parameter.
        return bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())

    def on_pre_optimizer_step(self, args, state, control, model=None, optimizer=None, **kwargs):
        params = (
            [p for group in optimizer.param_groups for p in group["params"]]
            if optimizer
            else list(model.parameters())
        )
        self.check_entropy(state.global_step + 1, args.output_dir)
        if self.gradients_are_finite(params):
            self.consecutive = 0
        else:
            for p in params:
                p.grad = None
            self.consecutive += 1
            self.skipped_total += 1
            if self.consecutive >= self.max_consecutive:
                last = state.global_step + 1
                first = last - self.consecutive + 1
                raise NonFiniteGradientError(
                    f"{self.consecutive} consecutive steps produced NaN/inf gradients (steps {first}-{last}); "
                    f"stopping. None of their updates was applied (their gradients were dropped): the weights are "
                    f"those after step {first - 1}. {_checkpoint_sentence(args.output_dir, None)} {_ADVICE}"
                )
        if self.metrics is not None:
            self.metrics["lco/skipped_steps"].append(float(self.skipped_total))
        return control
