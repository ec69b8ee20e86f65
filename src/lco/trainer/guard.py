"""Skip optimizer updates whose gradient is NaN/inf, and stop after too many in a row.

One non-finite gradient applied by Adam poisons the moments for good; a run that keeps producing
them has diverged. The guard runs just before ``optimizer.step()``: if any gradient is not
finite it drops all gradients (``p.grad = None``, which torch optimizers skip, so neither weights
nor moments move), counts the step, and after ``max_consecutive`` such steps raises — the last
good checkpoint on disk is untouched because no bad update was ever applied.

Two other ways a run diverges are caught with the same message: a policy whose logits became
non-finite (sampling then fails inside ``torch.multinomial`` before any gradient exists), and a
policy that collapsed to the uniform distribution (entropy ln |V|: every gradient is then zero, so
the gradient check never fires and training would go on learning nothing). Rewards of ±inf
(which normalise to zero advantages: zero loss, no learning) are warned about once, with the step.
"""

from __future__ import annotations

import logging
import math

import torch
from transformers import TrainerCallback

from ..errors import TrainingDivergedError


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


def _stop_message(what: str, step: int, output_dir: str) -> str:
    return (
        f"{what} (step {step}); stopping. No bad update was applied: the last saved checkpoint in "
        f"{output_dir} is intact. Lower the learning rate or check the rewards/advantages."
    )


class NonFiniteGuard(TrainerCallback):
    def __init__(self, max_consecutive: int, metrics: dict | None = None, vocab_size: int | None = None):
        if max_consecutive < 1:
            raise ValueError(f"max_consecutive must be >= 1, got {max_consecutive}")
        self.max_consecutive = max_consecutive
        self.metrics = metrics  # the trainer's _metrics["train"], where the skip count is logged
        self.vocab_size = vocab_size  # |V| of the policy's logits, for the uniform-collapse check
        self.consecutive = 0
        self.skipped_total = 0
        self.lowest_entropy = math.inf
        self.warned_rewards = False

    # ---------------------------------------------------------------- rewards and the policy

    def check_rewards(self, rewards: torch.Tensor, names: list[str], step: int) -> None:
        """Warn once when a reward function returned ±inf (NaN is TRL's "not scored" and is fine)."""
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
        """Turn torch's sampling failure on non-finite probabilities into the divergence error."""
        if _SAMPLING_FAILURE in str(error):
            raise PolicyDivergedError(
                _stop_message("the policy's probabilities became NaN/inf: sampling failed", step, output_dir)
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
                raise NonFiniteGradientError(
                    f"{self.consecutive} consecutive steps produced NaN/inf gradients (up to step "
                    f"{state.global_step + 1}); stopping. No bad update was applied: the last saved checkpoint in "
                    f"{args.output_dir} is intact. Lower the learning rate or check the rewards/advantages."
                )
        if self.metrics is not None:
            self.metrics["lco/skipped_steps"].append(float(self.skipped_total))
        return control
