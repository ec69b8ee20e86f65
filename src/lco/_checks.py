"""Input checks shared by the objectives, the advantage estimators, the theory and the π* decoder.

A module of its own, below both :mod:`lco.advantages` and :mod:`lco.objectives`, so that neither
imports the other to check an argument. Every public function validates its arguments up front so that a user gets one
``ValueError`` that names the offending argument, instead of a shape error from deep
inside a matmul or a silent NaN in the loss.
"""

from __future__ import annotations

import numbers

import torch


def check_beta(beta: float) -> float:
    """β of eq. (2) must be a positive finite number: it divides the advantage in eq. (7)."""
    if isinstance(beta, torch.Tensor):
        if beta.numel() != 1:
            raise ValueError(f"beta must be a scalar, got a tensor of shape {tuple(beta.shape)}")
        beta = float(beta)
    # numbers.Real admits numpy scalars (e.g. a β read from an array); bool is an int but never a β.
    if not isinstance(beta, numbers.Real) or isinstance(beta, bool) or not (0 < beta < float("inf")):
        raise ValueError(f"beta must be a positive finite number (the KL weight β of eq. 2), got {beta!r}")
    return float(beta)


def check_finite(name: str, tensor: torch.Tensor | None) -> None:
    """Reject NaN/inf early: one bad logit would otherwise poison the whole batch's loss."""
    if tensor is None:
        return
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} contains NaN or inf values")


def check_same_shape(name: str, tensor: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    if tensor.shape != ref.shape:
        what = "vocabulary size" if tensor.shape[:-1] == ref.shape[:-1] else "shape"
        raise ValueError(
            f"{name} has {what} {tuple(tensor.shape)} but {ref_name} has {tuple(ref.shape)}; they must match"
        )


def check_mask(mask: torch.Tensor | None, token_shape: torch.Size, name: str = "mask") -> None:
    """A mask selects tokens: its shape is the logits' shape without the vocabulary axis."""
    if mask is None:
        return
    if mask.shape != token_shape:
        raise ValueError(
            f"{name} has shape {tuple(mask.shape)} but must have the token shape {tuple(token_shape)} "
            "(the logits' shape without the vocabulary axis)"
        )
    check_finite(name, mask)


def check_actions(actions: torch.Tensor, vocab_size: int, name: str = "actions") -> None:
    if actions.is_floating_point() or actions.is_complex():
        raise ValueError(f"{name} must be an integer tensor of token ids, got dtype {actions.dtype}")
    if actions.numel() and (int(actions.min()) < 0 or int(actions.max()) >= vocab_size):
        raise ValueError(
            f"{name} holds token ids outside the vocabulary [0, {vocab_size}): "
            f"min {int(actions.min())}, max {int(actions.max())}"
        )


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}; got {value!r}")
    return value
