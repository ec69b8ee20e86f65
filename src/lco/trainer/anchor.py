"""The LCO anchor: a frozen snapshot of the policy, refreshed every m optimizer steps.

LCO's target z* = z_old + A/β (eq. 7 of "Logits Convex Optimization", arXiv 2603.00963) is
anchored at π_old. Re-anchoring at the policy every batch aims, after k batches, at
π_0·exp(k·A/β) on a state visited every batch (the compounding tilt of docs/trainer.md,
"Stability options"); holding π_old fixed for m steps bounds that tilt to m·A/β. With
``LCOConfig.lco_anchor_update_steps = m``:

- m = 1 is the paper: z_old is the policy that generated the batch, and no snapshot exists.
- m ≥ 2: the snapshot is a copy of the policy taken at the beginning of steps 0, m, 2m, …
  (``on_step_begin``, which the Trainer calls before the step's first micro-batch, and so before
  TRL generates that step's rollouts).
- m = 0: the snapshot is taken once, when the trainer is built, and never refreshed: the
  initial policy, the KL-regularised optimum around the starting model (the authors' code).

The trainer computes z_old from the snapshot at generation time, exactly, chunk by chunk, like
the reuse path (the snapshot's final hidden states and head travel in the batch as
``old_hidden`` / ``old_head``). Memory: one frozen copy of the policy's weights in its dtype,
without gradients or optimizer state; time: one extra forward pass per generation batch.
Checkpoints hold the snapshot (:data:`ANCHOR_FILE`, one more copy of the weights), so a resumed
run continues with the anchor it had.
"""

from __future__ import annotations

import os

import torch
from torch import nn
from transformers import TrainerCallback

ANCHOR_FILE = "lco_anchor.pt"
"""The snapshot's ``state_dict`` and refresh steps, in each checkpoint folder."""


class PolicyAnchor(TrainerCallback):
    """Holds the frozen snapshot and refreshes it from the policy at steps 0, m, 2m, … (never when m = 0).

    Args:
        snapshot: the frozen copy (eval mode, no grad), already placed on the device; possibly
            wrapped (``unwrap`` gives the module whose state is copied into).
        policy: ``() -> nn.Module``, the current (unwrapped) policy.
        unwrap: ``module -> nn.Module``, the accelerator's ``unwrap_model``.
        every: m ≥ 0.

    ``refresh_steps`` lists the global steps at which the snapshot was copied from the policy
    (0 for the copy made at construction).
    """

    def __init__(self, snapshot: nn.Module, policy, unwrap, every: int):
        if every == 1:
            raise ValueError("lco_anchor_update_steps=1 anchors at the generating policy itself; no snapshot")
        self.snapshot = snapshot
        self._policy = policy
        self._unwrap = unwrap
        self.every = every
        self.refresh_steps = [0]
        self._restored = False

    def on_train_begin(self, args, state, control, **kwargs):
        # Resuming from a checkpoint without ANCHOR_FILE (saved before the anchor existed): the
        # policy of step ⌊s/m⌋·m is gone, so with m ≥ 2 the anchor restarts from the resumed policy;
        # with m = 0 it stays the policy the trainer was built from.
        if not self._restored and self.every > 0 and state.global_step > 0:
            self.refresh(state.global_step)

    def save(self, folder: str) -> None:
        state = {"state_dict": self._unwrap(self.snapshot).state_dict(), "refresh_steps": self.refresh_steps}
        torch.save(state, os.path.join(folder, ANCHOR_FILE))

    @torch.no_grad()
    def load(self, folder: str) -> None:
        """Restore the snapshot saved in a checkpoint folder (called before ``on_train_begin``)."""
        path = os.path.join(folder, ANCHOR_FILE)
        if not os.path.exists(path):
            return
        state = torch.load(path, map_location="cpu", weights_only=True)
        self._unwrap(self.snapshot).load_state_dict(state["state_dict"])
        self.refresh_steps = list(state["refresh_steps"])
        self._restored = True

    def on_step_begin(self, args, state, control, **kwargs):
        step = state.global_step
        if self.every > 0 and step % self.every == 0 and step != self.refresh_steps[-1]:
            self.refresh(step)

    @torch.no_grad()
    def refresh(self, step: int) -> None:
        """Copy the policy's current parameters and buffers into the snapshot."""
        self._unwrap(self.snapshot).load_state_dict(self._unwrap(self._policy()).state_dict())
        self.refresh_steps.append(step)
