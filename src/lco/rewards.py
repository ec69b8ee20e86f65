"""Reward functions in TRL's signature ``f(completions, **columns) -> list[float]``.

Usable by name from ``lco train`` configs (``reward_funcs: [math]``) or imported directly.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from .eval.answers import math_reward


def _text(completion) -> str:
    # Conversational completions are lists of messages; plain-text ones are strings.
    if isinstance(completion, list):
        return "".join(message.get("content", "") for message in completion)
    return completion


def math_verify_reward(completions, answer=None, solution=None, **kwargs) -> list[float]:
    """+1 if the completion's ``\\boxed{}`` (or final number) equals the reference by math-verify, else −1.

    The rule-based reward of the paper's Table 5. The reference comes from the dataset's ``answer``
    column, or ``solution`` (the column name TRL's math datasets such as trl-lib/DeepMath-103K use).
    """
    references = answer if answer is not None else solution
    if references is None:
        raise ValueError("the 'math' reward needs an 'answer' (or 'solution') column in the dataset")
    return [math_reward(_text(c), str(a)) for c, a in zip(completions, references, strict=True)]


BUILTIN_REWARDS: dict[str, Callable] = {"math": math_verify_reward}


def resolve_reward(spec: str) -> Callable:
    """``"math"`` or ``"package.module:function"`` → the reward function (clear error otherwise)."""
    if spec in BUILTIN_REWARDS:
        return BUILTIN_REWARDS[spec]
    if ":" not in spec:
        raise ValueError(
            f"reward function {spec!r} is neither a built-in ({', '.join(BUILTIN_REWARDS)}) nor 'module:function'"
        )
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"reward function {spec!r}: cannot import module {module_name!r} ({err})") from err
    if not callable(getattr(module, attr, None)):
        raise ValueError(f"reward function {spec!r}: {module_name} has no callable {attr!r}")
    return getattr(module, attr)
