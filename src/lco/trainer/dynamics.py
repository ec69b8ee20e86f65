"""The training-dynamics diagnostics of the paper's Figs. 3–6: ‖∇_θ L‖ split by the advantage's sign."""

from __future__ import annotations

from collections.abc import Callable

import torch


def gradient_norms_by_sign(
    objective_loss: Callable[[torch.nn.Module, dict], torch.Tensor],
    module: torch.nn.Module,
    inputs: dict,
    token_advantages: torch.Tensor,
    accumulation_steps: int,
    gather: Callable[[torch.Tensor], torch.Tensor],
) -> dict[str, float]:
    """‖∇_θ L‖ restricted to tokens with A > 0 (``"pos"``) and with A < 0 (``"neg"``), by two separate passes.

    ``module`` is the unwrapped policy and the gradients are taken with ``torch.autograd.grad``, so
    that neither ``.grad`` nor the DDP reducer sees these passes. The sign selects the loss's tokens
    through ``tool_mask`` (multiplying one TRL put there), which every loss reads as
    ``completion_mask * tool_mask`` (TRL's ``_compute_loss`` and :class:`lco.objectives.losses.LossBatch`);
    ``completion_mask`` is also the attention mask and stays whole, so each pass sees the same
    context as the training step. Each norm is multiplied back by ``accumulation_steps`` (per
    optimizer step) and averaged over processes with ``gather``.
    """
    params = [p for p in module.parameters() if p.requires_grad]
    norms = {}
    for sign, selected in (("pos", token_advantages > 0), ("neg", token_advantages < 0)):
        keep = selected.to(inputs["completion_mask"].dtype)
        masked = {**inputs, "tool_mask": inputs["tool_mask"] * keep if "tool_mask" in inputs else keep}
        norm = torch.zeros((), device=token_advantages.device)
        if bool(selected.any()):
            loss = objective_loss(module, masked)
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            norm = torch.sqrt(sum((g.float() ** 2).sum() for g in grads if g is not None))
            # undo the gradient-accumulation scaling so the norm is per optimizer step
            norm = norm * accumulation_steps
        norms[sign] = float(gather(norm.reshape(1)).mean())
    return norms
