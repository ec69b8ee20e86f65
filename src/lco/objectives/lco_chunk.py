"""The LCO chunk kernel: one chunk's target z* (eq. 7), loss and logit gradient (eqs. 8–10), stats.

:class:`LCOChunk` is the per-chunk math of :func:`lco.objectives.fused.fused_lco_loss` for the base
:class:`lco.objectives.chunked.ChunkedLinearLoss`. It builds z* = z_old + A/β for the chunk in one
fresh block — a sparse advantage of eq. (11) in closed form (:func:`sparse_normalized`), a dense one
with one multiply-add — and hands it to ``value_and_grad`` of :data:`lco.objectives.lco.LCO_LOSSES`,
which returns the value and the closed-form gradient together (sharing the softmaxes) and reuses the
z* block; nothing here restates eqs. 8–10. With a support only the ``[c, k]`` entries of A and z_old
on it enter z*. :func:`token_stats` are the training dynamics of the paper's Figs. 1/5.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .chunked import ChunkOutput
from .lco import LogitLoss
from .row_sources import RowSource, SparseAdvantages
from .targets import include_sampled, target_shift, tilt

STAT_NAMES = ("loss", "entropy", "kl_old")
ACTION_STAT_NAMES = ("sampled_prob", "logit_grad_sampled", "logit_grad_nonsampled")


@dataclass(frozen=True, eq=False)
class LCOChunk:
    """Per-chunk LCO: z* = z_old + A/β (eq. 7), then ℓ(z, z*) and ∂ℓ/∂z in one ``value_and_grad``.

    ``old_logits=None`` is on-policy (z_old = z). ``advantages`` are normalised per token
    (§4.4, :func:`lco.normalize_advantages`) over the vocabulary, or over the support when there is
    one. ``beta_negative`` is the KL weight where A < 0 (``None`` = β), picked by the sign of the
    uncentred A; the centring then applies to the shift (:func:`lco.objectives.targets.target_shift`),
    so π* ∝ π_old·exp(A/β_±) (eqs. 6–7) whatever the centring.

    ``support``: ``None`` (whole vocabulary), an int k (top-k of the chunk's z_old; with a
    ``sparse`` advantage the sampled token takes the k-th place when it is not among them) or token
    ids ``[N, k]``. With a support only A and z_old on it are read and z* is ``[c, k]``; a
    ``sparse`` advantage is then gathered there directly, without its dense ``[c, V]`` form. A
    ``sparse`` advantage takes ``normalization`` ``"none"`` or ``"mean"`` only (the std of a one-hot
    row keeps only the sign of A; :func:`lco.objectives.fused.fused_lco_loss` refuses the others).
    """

    loss: LogitLoss
    beta: float
    advantages: RowSource
    old_logits: RowSource | None = None
    normalization: str = "mean"
    with_stats: bool = False
    actions: torch.Tensor | None = None
    beta_negative: float | None = None
    support: int | torch.Tensor | None = None
    sparse: SparseAdvantages | None = None
    kernel: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = None
    """``(z, z*, support) -> (ℓ, ∂ℓ/∂z)``; ``None`` is ``loss.value_and_grad`` (see :func:`chunk_kernel`).
    A :class:`~lco.objectives.compiled.CompiledKernel` also brings its ``sparse_value_and_grad``."""
    stats_temperature: float = 1.0

    @property
    def stat_names(self) -> tuple[str, ...]:
        return STAT_NAMES + (ACTION_STAT_NAMES if self.actions is not None else ())

    def __call__(self, z: torch.Tensor, start: int, end: int) -> ChunkOutput:
        z_old = z if self.old_logits is None else self.old_logits(start, end)
        if self.support is None:
            value, grad = self._whole_vocabulary(z, z_old, start, end)
        else:
            value, grad = self._on_support(z, z_old, start, end)
        stats = None
        if self.with_stats:
            actions = None if self.actions is None else self.actions[start:end]
            stats = token_stats(value, z, z_old, grad, actions, self.stats_temperature)
        return ChunkOutput(value, grad, stats)

    def _value_and_grad(self, z, z_star, ids=None):
        kernel = self.loss.value_and_grad if self.kernel is None else self.kernel
        return kernel(z, z_star, ids)

    def _whole_vocabulary(self, z, z_old, start, end):
        # eq. 7, as lco.optimal_logits but without its isfinite scans: the sources are checked
        # once by row_source (and z is finite when hidden and weight are). z* is built in one
        # fresh [c, V] block, which value_and_grad then takes over as scratch; the caller's A
        # and z_old (possibly views of its own tensors, or z itself) are only read.
        if self.sparse is not None and z_old is z:
            # On-policy: z* − z is the same for every z, and the loss has ℓ and ∂ℓ/∂z in closed form.
            off, on = self._sparse_tilts(start, end, z.shape[-1])
            kernel = getattr(self.kernel, "sparse_value_and_grad", self.loss.sparse_value_and_grad)
            return kernel(z, off, on, self.sparse.actions[start:end])
        z_old = z_old.float()
        if self.sparse is not None:
            z_star = self._sparse_target(z_old, start, end)
        elif self.beta_negative is None:
            z_star = self._dense_target(z_old, self.advantages(start, end).float())
        else:
            shift = target_shift(
                self.advantages(start, end), self.beta, self.beta_negative, self.normalization
            )
            z_star = z_old + shift
        return self._value_and_grad(z, z_star)

    def _sparse_target(self, z_old, start, end):
        """z* for the sparse advantage of eq. (11) in one pass over ``[c, V]``: row t's shift is one value
        off the sampled action and another at it (:meth:`_sparse_tilts`), so z* = z_old + off, then
        + (on − off) at a_t."""
        off, on = self._sparse_tilts(start, end, z_old.shape[-1])
        z_star = torch.add(z_old, off.unsqueeze(-1))
        idx = self.sparse.actions[start:end].long().unsqueeze(-1)
        return z_star.scatter_add_(-1, idx, (on - off).unsqueeze(-1))

    def _sparse_tilts(self, start, end, vocab_size):
        """z* − z_old for the sparse advantage, ``[c]`` each: off the sampled action and at it.

        The shift is u = A(s_t, a_t)/β_± at a_t (the β of the sign of the uncentred A, eqs. 6–7) and 0
        elsewhere; the normalisation then centres the shift (the closed forms of
        :func:`sparse_normalized`), which leaves π* ∝ π_old·exp(u·e_{a_t}) as documented."""
        token_adv = self.sparse.token_advantages[start:end].detach().float()
        shift = tilt(token_adv, self.beta, self.beta_negative)
        return sparse_normalized(shift, vocab_size, self.normalization)

    def _dense_target(self, z_old, adv):
        """z* = z_old + (A − μ)·r/β with the row statistics of the normalisation (μ = 0 and r = 1
        where it has none): one multiply-add pass and one row shift, no normalised copy of A."""
        mode = self.normalization
        if mode == "none":
            return torch.add(z_old, adv, alpha=1.0 / self.beta)
        if mode == "mean":
            z_star = torch.add(z_old, adv, alpha=1.0 / self.beta)
            return z_star.sub_(adv.mean(-1, keepdim=True) / self.beta)
        std, mean = torch.std_mean(adv, dim=-1, keepdim=True, unbiased=False)
        if mode == "std":  # as normalize_advantages: a row with no scale is left unscaled
            scale = 1.0 / (self.beta * torch.where(std > _NORMALIZE_EPS, std, torch.ones_like(std)))
            return torch.addcmul(z_old, adv, scale)
        scale = 1.0 / (self.beta * (std + _NORMALIZE_EPS))  # mean_std
        return torch.addcmul(z_old, adv, scale).sub_(mean * scale)

    def _on_support(self, z, z_old, start, end):
        if isinstance(self.support, int):
            ids = z_old.detach().topk(self.support, dim=-1).indices
            if self.sparse is not None:
                # the sparse advantage lives at a_t only: a top-k without it would give a_t zero
                # target mass, pushing it down whatever the sign of A
                ids = include_sampled(ids, self.sparse.actions[start:end])
        else:
            ids = self.support[start:end].long()
        if self.sparse is not None:
            # eq. 11 on the support: A(s_t, a_t) where the support entry is a_t, 0 elsewhere.
            hit = ids == self.sparse.actions[start:end].long().unsqueeze(-1)
            token_adv = self.sparse.token_advantages[start:end].detach().float().unsqueeze(-1)
            adv = torch.where(hit, token_adv, torch.zeros((), device=z.device))
        else:
            adv = self.advantages(start, end).float().gather(-1, ids)
        # Normalising the gathered [c, k] over its last axis is normalize_advantages(A, mode,
        # support=ids) read on the support, which is all the loss reads.
        shift = target_shift(adv, self.beta, self.beta_negative, self.normalization)
        z_star = z_old.float().gather(-1, ids) + shift
        return self._value_and_grad(z, z_star, ids)


_NORMALIZE_EPS = 1e-6
"""``eps`` of :func:`lco.normalize_advantages` at its default, which the naive path uses."""


def sparse_normalized(token_adv: torch.Tensor, vocab_size: int, mode: str):
    """The §4.4 normalisation of a sparse advantage row (eq. 11) in closed form: ``(off, on)``.

    The row is A = a·e_{a_t} over V entries; :func:`lco.normalize_advantages` maps it to ``off``
    everywhere except at a_t, where it is ``on``. With μ = a/V and the population std
    σ = |a|·√(V − 1)/V: ``"none"`` (0, a); ``"mean"`` (−μ, a − μ); ``"std"`` (0, a/σ, or a where
    σ ≤ eps); ``"mean_std"`` (−μ/(σ + eps), (a − μ)/(σ + eps)). Both are ``[c]`` like ``token_adv``.
    """
    if mode == "none":
        return torch.zeros_like(token_adv), token_adv
    mean = token_adv / vocab_size
    if mode == "mean":
        return -mean, token_adv - mean
    std = token_adv.abs() * (max(vocab_size - 1, 0) ** 0.5 / vocab_size)
    if mode == "std":
        return torch.zeros_like(token_adv), token_adv / torch.where(
            std > _NORMALIZE_EPS, std, torch.ones_like(std)
        )
    return -mean / (std + _NORMALIZE_EPS), (token_adv - mean) / (std + _NORMALIZE_EPS)


def token_stats(value, z, z_old, grad, actions, temperature: float = 1.0) -> torch.Tensor:
    """The training-dynamics metrics of the paper's Figs. 1/5, per token, ``[k, c]``.

    Policy entropy H(softmax(z/T)) with T = ``temperature`` (TRL logs the entropy of z/T for its
    own objectives, so LCO's is comparable); KL(π_θ ‖ π_old) (0 on-policy, where z_old is z); and
    with the sampled actions: π_θ(a_t), |∂ℓ_t/∂z_{a_t}| and the mean of |∂ℓ_t/∂z_a| over the
    other V − 1 tokens. Gradients are per token, before the 1/#tokens of the mean.
    """
    log_pi = torch.log_softmax(z, dim=-1)
    pi = log_pi.exp()
    if temperature == 1.0:
        entropy = -(pi * log_pi).sum(-1)
    else:
        log_pi_t = torch.log_softmax(z / temperature, dim=-1)
        entropy = -(log_pi_t.exp() * log_pi_t).sum(-1)
        del log_pi_t
    if z_old is z:
        kl = torch.zeros_like(entropy)
    else:
        kl = (pi * (log_pi - torch.log_softmax(z_old.float(), dim=-1))).sum(-1)
    rows = [value, entropy, kl]
    if actions is not None:
        idx = actions.long().unsqueeze(-1)
        abs_grad = grad.abs()
        at_action = abs_grad.gather(-1, idx).squeeze(-1)
        others = (abs_grad.sum(-1) - at_action) / max(z.shape[-1] - 1, 1)
        rows += [pi.gather(-1, idx).squeeze(-1), at_action, others]
    return torch.stack(rows)
