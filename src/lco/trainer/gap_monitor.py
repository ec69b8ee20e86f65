"""Gradient-Gap metrics of a live run (Suk & Duan §3–§5) and the step-size guard built on them.

:class:`GapMonitor` measures, every ``gap_every`` optimizer steps and for any objective:

1. while the step's micro-batches are processed (``accumulate``, called from ``compute_loss``):
   the score sums Σ_{o ∈ +} ∇_θ log π_θ(o|q) and Σ_{o ∈ −} ∇_θ log π_θ(o|q) over the correct and
   incorrect completions (two extra backward passes on the unwrapped module, with
   ``torch.autograd.grad`` so that neither ``.grad`` nor the DDP reducer sees them);
2. just before ``optimizer.step()``: a copy of θ_k;
3. at ``on_step_end``: g^± (eq. 7, batch level of §5), the actual update split as η_k·w_k
   (eq. 3), Δμ(k) (eq. 10), M (eq. 12) and the lower bound (21) on J, all through
   :mod:`lco.gap.quantities`.

:class:`StepSizeGuard` then compares η_k with the heuristic threshold of
:mod:`lco.gap.step_guard` and warns or lowers the learning rate. docs/gap.md states the
definitions, the sampling when ``gap_every > 1`` and the memory cost.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import TrainerCallback

from ..gap import CumulativeGapAlignment, gap_alignment, success_rate_lower_bound, update_step
from ..gap.step_guard import (
    directional_token_score,
    empirical_psi1_norm,
    estimated_step_threshold,
    next_lr_scale,
)

GAP_STATE_FILE = "gap_monitor_state.json"  # in each checkpoint folder, next to TRL's own state files
# (module, micro-batch) -> (log π_θ(o_t | q, o_<t) [B, T] with grad, mask of the policy's tokens [B, T])
TokenLogps = Callable[[torch.nn.Module, dict], tuple[torch.Tensor, torch.Tensor]]


def binary_rewards(values: set[float]) -> bool:
    """Whether sequence rewards taking ``values`` split into correct (r > 0) / incorrect (r ≤ 0) as r* does.

    At most two distinct values, and two only when they straddle 0 ({0, 1}, {−1, 1}): with
    {0.5, 1} "r > 0" would call everything correct, with {0, 0.3, 1} the reward is graded.
    """
    if len(values) > 2:
        return False
    return len(values) < 2 or (min(values) <= 0 < max(values))


def policy_parameters(module: torch.nn.Module) -> list[torch.nn.Parameter]:
    """θ of the paper: the trainable parameters of π_θ (PPO's value head is not part of the policy)."""
    return [p for name, p in module.named_parameters() if p.requires_grad and "lco_value_head" not in name]


def _flat(tensors) -> torch.Tensor:
    return torch.cat([t.detach().float().reshape(-1) for t in tensors])


def _pad_to(x: torch.Tensor, width: int) -> torch.Tensor:
    return torch.nn.functional.pad(x, (0, width - x.shape[1]))


@dataclass
class GapStep:
    """What one measured step produced; the guard reads it."""

    step: int  # k: the update θ_k → θ_{k+1}
    eta: float  # η_k = ‖θ_{k+1} − θ_k‖
    delta_mu: float | None  # Δμ(k); None when the batch had no correct or no incorrect completion
    success_rate: float  # J(k) of the batch
    token_log_ratios: torch.Tensor | None = None  # [N, T] log π_{k+1} − log π_k, all processes
    token_mask: torch.Tensor | None = None  # [N, T]


class GapMonitor(TrainerCallback):
    """Δμ(k), η_k, M(K) and the bound on J(K) from the training batches, every ``every`` steps.

    Args:
        every: measure at optimizer steps k with k % every == 0.
        token_logps: the trainer's per-token log-probabilities of a micro-batch's completions
            (sampling temperature applied), see :data:`TokenLogps`.
        accelerator: the trainer's, for the cross-process sums.
        metrics: the trainer's ``_metrics["train"]``, where the values are appended.
        keep_log_ratios: also measure log π_{k+1} − log π_k on the step's tokens (one no-grad
            forward after the update), which :class:`StepSizeGuard` needs.
    """

    def __init__(
        self,
        every: int,
        token_logps: TokenLogps,
        accelerator,
        metrics: dict,
        keep_log_ratios: bool = False,
    ):
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.every = every
        self.token_logps = token_logps
        self.accelerator = accelerator
        self.metrics = metrics
        self.keep_log_ratios = keep_log_ratios
        self.cumulative = CumulativeGapAlignment()
        self.initial_success_rate: float | None = None
        self.last: GapStep | None = None
        self._warned_non_binary = False
        self._module: torch.nn.Module | None = None
        self._params: list[torch.nn.Parameter] = []
        self._reset()

    def _reset(self) -> None:
        self._pending = False
        self._sums: dict[str, torch.Tensor] = {}  # "+" / "−": Σ of ∇ log π over the class, flat fp32
        self._counts = {"+": 0, "−": 0}
        self._reward_values: set[float] = set()
        self._theta_before: torch.Tensor | None = None
        self._kept: list[tuple[dict, torch.Tensor, torch.Tensor]] = []  # (micro-batch, log π_k, mask)

    def due(self, step: int, training: bool) -> bool:
        return training and step % self.every == 0

    def state_dict(self) -> dict:
        """What a resumed run needs to continue M(K) and the bound (saved with each checkpoint)."""
        return {
            "cumulative_gap_alignment": float(self.cumulative.value),
            "measured_steps": self.cumulative.steps,
            "initial_success_rate": self.initial_success_rate,
        }

    def load_state_dict(self, state: dict) -> None:
        self.cumulative.value = state["cumulative_gap_alignment"]
        self.cumulative.steps = state["measured_steps"]
        self.initial_success_rate = state["initial_success_rate"]

    # ------------------------------------------------------------------ during the step

    def accumulate(self, module: torch.nn.Module, inputs: dict, rewards: torch.Tensor) -> None:
        """Add one micro-batch's per-class score sums (two backward passes at most); ``rewards`` are its
        rows' weighted sequence rewards ``[B]``, NaN where no reward function scored."""
        self._pending = True
        if self._module is not module:
            self._module, self._params = module, policy_parameters(module)
        scored = ~torch.isnan(rewards)  # rows every reward function declined to score are left out
        self._reward_values.update(float(v) for v in rewards[scored].unique())
        if not binary_rewards(self._reward_values):
            return  # the step will be dropped at on_step_end; spare the backward passes
        logps, mask = self.token_logps(module, inputs)
        sequence_logps = (logps * mask).sum(-1)  # log π_θ(o | q) = Σ_t log π_θ(o_t | q, o_<t)
        classes = {"+": scored & (rewards > 0), "−": scored & (rewards <= 0)}
        present = [c for c, rows in classes.items() if bool(rows.any())]
        for i, c in enumerate(present):
            grads = torch.autograd.grad(
                sequence_logps[classes[c]].sum(),
                self._params,
                retain_graph=i + 1 < len(present),
                allow_unused=True,
            )
            flat = _flat(
                g if g is not None else torch.zeros_like(p) for g, p in zip(grads, self._params, strict=True)
            )
            self._sums[c] = self._sums[c] + flat if c in self._sums else flat
            self._counts[c] += int(classes[c].sum())
        if self.keep_log_ratios:
            self._kept.append((inputs, logps.detach(), (mask * scored.unsqueeze(-1)).detach()))

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        if self._pending and self._params:
            self._theta_before = _flat(self._params)  # θ_k: the parameters every micro-batch saw
        return control

    # ------------------------------------------------------------------ after the update

    def _reward_values_everywhere(self) -> set[float] | None:
        """The union of every process's reward values, or None when some process saw > 2."""
        local = sorted(self._reward_values)
        row = torch.full((1, 4), math.nan, dtype=torch.float64, device=self.accelerator.device)
        row[0, 0] = float(len(local) > 2)
        if len(local) <= 2:
            row[0, 1 : 1 + len(local)] = torch.tensor(local, dtype=torch.float64)
        rows = self.accelerator.gather(row)
        if bool((rows[:, 0] > 0).any()):
            return None
        values = rows[:, 1:3]
        return {float(v) for v in values[~torch.isnan(values)]}

    def on_step_end(self, args, state, control, **kwargs):
        if not self._pending:
            return control
        try:
            self._measure(state.global_step - 1)
        finally:
            self._reset()
        return control

    def _measure(self, step: int) -> None:
        if self._theta_before is None:
            return  # no optimizer step followed the micro-batches (e.g. training stopped)
        values = self._reward_values_everywhere()
        if values is None or not binary_rewards(values):
            self.last = None
            if not self._warned_non_binary:
                self._warned_non_binary = True
                shown = "more than two values" if values is None else f"the values {sorted(values)}"
                warnings.warn(
                    f"gap_every: the Gradient-Gap metrics need binary sequence rewards (two values, correct = "
                    f"reward > 0, as the verifiable reward r* of the paper); step {step} has {shown}. Nothing "
                    "is logged for such steps (this warning is shown once).",
                    stacklevel=2,
                )
            return
        device = self.accelerator.device
        counts = self.accelerator.reduce(
            torch.tensor([self._counts["+"], self._counts["−"]], dtype=torch.float64, device=device), "sum"
        )
        n_plus, n_minus = float(counts[0]), float(counts[1])
        zeros = torch.zeros_like(self._theta_before)
        sums = {c: self.accelerator.reduce(self._sums.get(c, zeros), "sum") for c in ("+", "−")}
        eta_t, direction = update_step(self._theta_before, _flat(self._params))
        eta = float(eta_t)
        success_rate = n_plus / max(n_plus + n_minus, 1.0)
        metrics = self.metrics
        delta_mu = None
        if n_plus > 0 and n_minus > 0:
            g_plus, g_minus = sums["+"] / n_plus, sums["−"] / n_minus  # eq. (7) over the batch (§5)
            gap = g_plus - g_minus  # eq. (8)
            delta_mu = float(gap_alignment(direction, gap))
            gap_norm = float(torch.linalg.vector_norm(gap))
            metrics["gap/delta_mu"].append(delta_mu)
            metrics["gap/gap_norm"].append(gap_norm)
            metrics["gap/cosine"].append(delta_mu / gap_norm if gap_norm > 0 else 0.0)
            metrics["gap/g_plus_norm"].append(float(torch.linalg.vector_norm(g_plus)))
            metrics["gap/g_minus_norm"].append(float(torch.linalg.vector_norm(g_minus)))
        if self.initial_success_rate is None:
            self.initial_success_rate = success_rate
        # A measured step stands for the `every` steps until the next one (sampled estimate of eq. 12).
        self.cumulative.update(math.nan if delta_mu is None else delta_mu, eta * self.every)
        bound = success_rate_lower_bound(self.initial_success_rate, float(self.cumulative.value))
        metrics["gap/eta"].append(eta)
        metrics["gap/success_rate"].append(success_rate)
        # Cumulative values: the logged number is the latest, not a mean over the logging window.
        metrics["gap/M"] = [float(self.cumulative.value)]
        metrics["gap/J_lower_bound"] = [bound]
        self.last = GapStep(step=step, eta=eta, delta_mu=delta_mu, success_rate=success_rate)
        if self.keep_log_ratios and self._kept:
            self.last.token_log_ratios, self.last.token_mask = self._log_ratios_after_update()

    @torch.no_grad()
    def _log_ratios_after_update(self) -> tuple[torch.Tensor, torch.Tensor]:
        """log π_{k+1}(o_t|·) − log π_k(o_t|·) on the step's tokens, from every process."""
        ratios, masks = [], []
        for inputs, old_logps, mask in self._kept:
            new_logps, _ = self.token_logps(self._module, inputs)
            ratios.append((new_logps - old_logps) * mask)
            masks.append(mask)
        width = max(r.shape[1] for r in ratios)
        ratio = torch.cat([_pad_to(r, width) for r in ratios])
        mask = torch.cat([_pad_to(m.float(), width) for m in masks])
        ratio = self.accelerator.gather(self.accelerator.pad_across_processes(ratio, dim=1))
        mask = self.accelerator.gather(self.accelerator.pad_across_processes(mask, dim=1))
        return ratio, mask


class StepSizeGuard(TrainerCallback):
    """Warn about — or, opted in, shrink — steps above the heuristic threshold of :mod:`lco.gap.step_guard`.

    At each step the monitor measured with Δμ(k) > 0, η*_k = :func:`estimated_step_threshold`
    and the ratio η_k/η*_k are logged (``gap/step_threshold``, ``gap/step_ratio``). Above
    ``tolerance``: ``mode="warn"`` warns (the first time, then at most once per
    ``warn_interval`` steps, with a count); ``mode="scale"`` also multiplies the learning rate
    the scheduler sets by :func:`next_lr_scale`'s factor from then on (``gap/lr_scale``). Steps
    with Δμ(k) ≤ 0 get no verdict: a smaller step does not fix a misaligned direction.

    Must come after the :class:`GapMonitor` in the callback list: both act at ``on_step_end``. The
    scale is applied at ``on_step_begin``, to the rate the scheduler set for that step.
    """

    def __init__(
        self,
        monitor: GapMonitor,
        mode: str,
        tolerance: float,
        min_lr_scale: float,
        max_length: int,
        metrics: dict,
        warn_interval: int = 100,
    ):
        if mode not in ("warn", "scale"):
            raise ValueError(f"mode must be 'warn' or 'scale', got {mode!r}")
        self.monitor, self.mode, self.tolerance = monitor, mode, tolerance
        self.min_lr_scale, self.max_length, self.metrics = min_lr_scale, max_length, metrics
        self.warn_interval = warn_interval
        self.lr_scale = 1.0
        self.exceeded = 0  # steps above tolerance·η* since the last warning
        self._last_warning_step: int | None = None

    def state_dict(self) -> dict:
        return {"lr_scale": self.lr_scale}

    def load_state_dict(self, state: dict) -> None:
        self.lr_scale = state["lr_scale"]

    def on_step_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):
        if self.mode == "scale" and optimizer is not None and lr_scheduler is not None:
            # The scheduler sets each step's rate from its base; scale that one, every step (and after a resume).
            for group, scheduled in zip(optimizer.param_groups, lr_scheduler.get_last_lr(), strict=True):
                group["lr"] = scheduled * self.lr_scale
        return control

    def on_step_end(self, args, state, control, **kwargs):
        record, self.monitor.last = self.monitor.last, None
        if record is not None and record.token_log_ratios is not None:
            self._judge(record)
        return control

    def _judge(self, record: GapStep) -> None:
        if record.delta_mu is None or record.delta_mu <= 0 or record.eta == 0:
            return
        token_score = directional_token_score(record.token_log_ratios, record.token_mask, record.eta)
        lengths = record.token_mask.sum(-1)
        threshold = estimated_step_threshold(
            record.delta_mu,
            record.success_rate,
            token_score,
            max_length=max(self.max_length, float(lengths.max())),
            length_psi1=empirical_psi1_norm(lengths[lengths > 0]),
        )
        ratio = record.eta / threshold
        self.metrics["gap/step_threshold"].append(threshold)
        self.metrics["gap/step_ratio"].append(ratio)
        self.metrics["gap/token_score"].append(token_score)
        if self.mode == "scale":
            self.lr_scale = next_lr_scale(self.lr_scale, ratio, self.tolerance, self.min_lr_scale)
            self.metrics["gap/lr_scale"].append(self.lr_scale)
        if ratio <= self.tolerance:
            return
        self.exceeded += 1
        last = self._last_warning_step
        if last is None or record.step - last >= self.warn_interval:
            action = (
                f"the learning rate is now scaled by {self.lr_scale:.3g}"
                if self.mode == "scale"
                else "set gap_step_guard='scale' to lower the learning rate automatically"
            )
            warnings.warn(
                f"gap_step_guard: step {record.step} moved η = {record.eta:.3g}, {ratio:.3g}× the estimated "
                f"threshold η* = {threshold:.3g} (Δμ = {record.delta_mu:.3g}, J = {record.success_rate:.3g}; "
                f"tolerance {self.tolerance:g}); {self.exceeded} step(s) above it since the last warning. "
                f"A heuristic (docs/gap.md); {action}.",
                stacklevel=2,
            )
            self._last_warning_step, self.exceeded = record.step, 0


def build_gap_monitor(
    args, token_logps, accelerator, metrics: dict
) -> tuple[GapMonitor, StepSizeGuard | None]:
    """The Gradient-Gap monitor of ``gap_every`` and, unless ``gap_step_guard="off"``, its step-size guard."""
    guard_on = args.gap_step_guard != "off"
    monitor = GapMonitor(args.gap_every, token_logps, accelerator, metrics, keep_log_ratios=guard_on)
    if not guard_on:
        return monitor, None
    guard = StepSizeGuard(
        monitor,
        args.gap_step_guard,
        args.gap_step_guard_tolerance,
        args.gap_step_guard_min_lr_scale,
        max_length=args.max_completion_length,
        metrics=metrics,
    )
    return monitor, guard


def save_gap_state(folder: str, monitor: GapMonitor, guard: StepSizeGuard | None) -> None:
    """M(K), J(0) and the guard's lr scale into ``folder`` (:data:`GAP_STATE_FILE`), to continue on resume
    as TRL does for its entropy controller."""
    state = {"monitor": monitor.state_dict()}
    if guard is not None:
        state["step_guard"] = guard.state_dict()
    with open(os.path.join(folder, GAP_STATE_FILE), "w") as f:
        json.dump(state, f)


def load_gap_state(checkpoint: str, monitor: GapMonitor, guard: StepSizeGuard | None) -> None:
    """The state :func:`save_gap_state` wrote into ``checkpoint``, if it wrote one."""
    path = os.path.join(checkpoint, GAP_STATE_FILE)
    if not os.path.exists(path):
        return
    with open(path) as f:
        state = json.load(f)
    monitor.load_state_dict(state["monitor"])
    if guard is not None and "step_guard" in state:
        guard.load_state_dict(state["step_guard"])
