"""Errors whose message is the whole story: the ``lco`` command line shows them as one line, exit 2.

Kept free of heavy imports so that ``lco.cli`` can catch them without loading torch.
"""

from __future__ import annotations


class TrainingDivergedError(RuntimeError):
    """Training diverged (non-finite gradients, or a policy that collapsed to uniform or non-finite).

    The message says which step's update, if any, was applied and which checkpoint is on disk.
    """


class RewardFunctionError(ValueError):
    """A reward function raised, returned something that is not one score per completion, or scored
    nothing in a whole batch; the message names the function and the step."""
