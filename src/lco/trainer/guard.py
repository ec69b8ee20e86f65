"""Skip optimizer updates whose gradient is NaN/inf, and stop after too many in a row.

One non-finite gradient applied by Adam poisons the moments for good; a run that keeps producing
them has diverged. The guard runs just before ``optimizer.step()``: if any gradient is not
finite it drops all gradients (``p.grad = None``, which torch optimizers skip, so neither weights
nor moments move), counts the step, and after ``max_consecutive`` such steps raises — the last
good checkpoint on disk is untouched because no bad update was ever applied.
"""

from __future__ import annotations

import torch
from transformers import TrainerCallback

from ..errors import TrainingDivergedError


class NonFiniteGradientError(TrainingDivergedError):
    """Raised when training produced non-finite gradients too many steps in a row."""


class NonFiniteGuard(TrainerCallback):
    def __init__(self, max_consecutive: int, metrics: dict | None = None):
        if max_consecutive < 1:
            raise ValueError(f"max_consecutive must be >= 1, got {max_consecutive}")
        self.max_consecutive = max_consecutive
        self.metrics = metrics  # the trainer's _metrics["train"], where the skip count is logged
        self.consecutive = 0
        self.skipped_total = 0

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
        if self.gradients_are_finite(params):
            self.consecutive = 0
        else:
            for p in params:
                p.grad = None
            self.consecutive += 1
            self.skipped_total += 1
            if self.consecutive >= self.max_consecutive:
                raise NonFiniteGradientError(
                    f"{self.consecutive} consecutive steps produced NaN/inf gradients (up to step "
                    f"{state.global_step + 1}); stopping. No bad update was applied: the last saved checkpoint in "
                    f"{args.output_dir} is intact. Lower the learning rate or check the rewards/advantages."
                )
        if self.metrics is not None:
            self.metrics["lco/skipped_steps"].append(float(self.skipped_total))
        return control
