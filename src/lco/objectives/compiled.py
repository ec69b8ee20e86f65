"""The LCO chunk kernel through ``torch.compile``: :class:`CompiledKernel` and :func:`chunk_kernel`.

``compile`` of :func:`lco.objectives.fused.fused_lco_loss` chooses between the eager
``LCO_LOSSES[loss].value_and_grad`` and one compiled copy of it per loss per process.
"""

from __future__ import annotations

import warnings

import torch

from .lco import LogitLoss

COMPILE_CHOICES = (False, True, "auto")
"""``compile`` of :func:`fused_lco_loss`: eager kernels, ``torch.compile``'d ones, or :data:`COMPILE_AUTO`."""

COMPILE_AUTO: dict[str, bool] = {"cpu": True, "cuda": False}
"""What ``compile="auto"`` does per device type (absent types: eager); see benchmarks/README.md.
CPU: compiled, since in the steady state the whole fused step is faster (N = 2048, V = 32000:
fused LCO-KLD / fused CE 1.08 compiled against 1.26 eager, LCH 1.17 against 1.23, MSE 1.00 against
1.04; at N = 8192, under load, no clear gain either way); the compile itself costs seconds per loss and shape (a minute for Inductor's first start
in a process). Those ratios predate the closed-form on-policy sparse step
(``LogitLoss.sparse_value_and_grad``), which brings eager to CE's cost on that path (fused_vs_ce in
benchmarks/README.md); compiling it is not measured. CUDA: not measured yet (no GPU in that session), so eager. ``compile`` defaults to
``False``, so nothing compiles unless asked."""


class CompiledKernel:
    """``loss.value_and_grad`` through ``torch.compile`` (Inductor: C++/OpenMP on the CPU, Triton
    on a GPU), falling back to the eager kernel — with one warning — when compiling fails.

    Inductor fuses the chunk's elementwise passes and row reductions into a few kernels. The
    compile happens on the first call per input signature (one more for the shorter last chunk,
    after which the token axis is dynamic; one more when V crosses 4096, where Inductor guards
    its softmax reduction) and costs seconds to a minute; ``failure`` keeps the
    reason once it failed (e.g. no C++ compiler on the CPU), and every later call is eager.
    """

    def __init__(self, loss: LogitLoss):
        self.loss = loss
        self.failure: str | None = None
        self._compiled = torch.compile(loss.value_and_grad)  # compiles on the first call
        self._compiled_sparse = torch.compile(loss.sparse_value_and_grad)

    def __call__(self, z, z_star, support=None):
        return self._run(self._compiled, self.loss.value_and_grad, z, z_star, support)

    def sparse_value_and_grad(self, z, off, on, actions):
        """``loss.sparse_value_and_grad`` (the on-policy sparse step) compiled, with the same fallback."""
        return self._run(self._compiled_sparse, self.loss.sparse_value_and_grad, z, off, on, actions)

    def _run(self, compiled, eager, *args):
        if self.failure is None:
            try:
                return compiled(*args)
            except Exception as exc:  # Inductor/Dynamo raise many types; any of them means eager
                first_line = (str(exc).strip().splitlines() or [""])[0][:300]
                self.failure = f"{type(exc).__name__}: {first_line}"
                warnings.warn(
                    f"torch.compile of the {self.loss.name} chunk kernel failed ({self.failure}); "
                    "using the eager kernel",
                    RuntimeWarning,
                    stacklevel=3,
                )
        return eager(*args)


_COMPILED: dict[str, CompiledKernel] = {}


def chunk_kernel(loss: LogitLoss, compile: bool | str = False, device: torch.device | str = "cpu"):
    """The per-chunk ``(z, z*, support) -> (ℓ, ∂ℓ/∂z)`` of ``loss`` for ``compile`` (one of
    :data:`COMPILE_CHOICES`): the eager ``loss.value_and_grad`` or a shared :class:`CompiledKernel`
    (one per loss per process, so a training run compiles once)."""
    if not (isinstance(compile, bool) or compile == "auto"):
        raise ValueError(f"compile must be one of {COMPILE_CHOICES}, got {compile!r}")
    if compile == "auto":
        compile = COMPILE_AUTO.get(torch.device(device).type, False)
    if compile is False:
        return loss.value_and_grad
    if loss.name not in _COMPILED:
        _COMPILED[loss.name] = CompiledKernel(loss)
    return _COMPILED[loss.name]
