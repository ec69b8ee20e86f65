"""The closed-form optimum of the KL-regularised objective (paper §4, Prop. 4.1), with its stability options.

For a behaviour policy π_old = softmax(z_old) and an advantage A over the vocabulary,

    max_π  E_{a~π}[A(s, a)] − β·KL(π ‖ π_old)                       (eq. 2)

is solved by π*(a|s) ∝ π_old(a|s)·exp(A(s, a)/β)                   (eq. 6)
which is induced by the logits z* = z_old + A/β                     (eq. 7).

Two options, both off by default (then every result is the paper's, bit for bit):

- ``beta_negative``: the KL weight for entries with A < 0 (per entry; ``None`` = β). With a sparse
  ±A the KLD push on a confident token is about twice as strong for A < 0 as for A > 0; the
  authors' public code multiplies β by 100 where A ≤ 0 (rule reward).
- ``support``: the entries π* may put mass on, per token. ``None`` is the whole vocabulary
  (eq. 6); an int k is the top-k entries of z_old; a LongTensor ``[..., k]`` lists token ids
  (e.g. the sampled action, ``actions[..., None]``). π* is 0 outside the support and
  ∝ π_old·exp(A/β) inside it, i.e. eq. (6) with the sum over a' restricted to the support.

The advantage stays dense, ``[..., V]`` like z_old, whatever the support: only its entries on the
support are read. A sparse advantage (eq. 11) is dense through :func:`lco.sparse_advantages`; its
value at a support entry other than a_t is 0, so on a top-k support without a_t π* is π_old's
top-k renormalised. (The fused loss takes the sparse pair without forming ``[N, V]``.)
"""

from __future__ import annotations

import torch

from .._checks import check_beta, check_finite, check_same_shape

Support = int | torch.Tensor | None
"""``None`` (whole vocabulary), an int k (top-k of z_old) or token ids ``[..., k]`` (integer)."""


def _checked_fp32(old_logits: torch.Tensor, advantages: torch.Tensor, beta: float):
    beta = check_beta(beta)
    check_same_shape("advantages", advantages, "old_logits", old_logits)
    check_finite("old_logits", old_logits)
    check_finite("advantages", advantages)
    return old_logits.float(), advantages.float(), beta


def check_beta_negative(beta_negative: float | None) -> float | None:
    """``None`` (use β for every sign) or a positive finite KL weight for the entries with A < 0."""
    if beta_negative is None:
        return None
    try:
        return check_beta(beta_negative)
    except ValueError:
        raise ValueError(
            f"beta_negative must be None or a positive finite number (the KL weight used where A < 0), "
            f"got {beta_negative!r}"
        ) from None


def tilt(advantages: torch.Tensor, beta: float, beta_negative: float | None) -> torch.Tensor:
    """A/β per entry, with β_negative where A < 0 (the logit shift of eq. 7); no checks.

    ``beta_negative=None`` is exactly ``A / β``, so the paper's path is unchanged bit for bit.
    """
    if beta_negative is None:
        return advantages / beta
    return torch.where(advantages < 0, advantages / beta_negative, advantages / beta)


def support_ids(old_logits: torch.Tensor, support: Support) -> torch.Tensor | None:
    """The support as token ids ``[..., k]`` (``None`` for the whole vocabulary), checked.

    An int k gives the top-k entries of ``old_logits`` per token (``torch.topk``); an integer
    tensor is checked (token shape of ``old_logits``, ids in [0, V), no id twice in a row) and
    returned as int64.
    """
    vocab_size = old_logits.shape[-1]
    if support is None:
        return None
    if isinstance(support, bool):
        raise ValueError(f"support must be None, an int k or a LongTensor of token ids, got {support!r}")
    if isinstance(support, int):
        if not 0 < support <= vocab_size:
            raise ValueError(f"support must be an int k with 0 < k <= V = {vocab_size}, got {support}")
        return old_logits.detach().topk(support, dim=-1).indices
    if not isinstance(support, torch.Tensor):
        raise ValueError(
            f"support must be None, an int k or a LongTensor of token ids, got {type(support).__name__}"
        )
    check_support_ids(support, old_logits.shape[:-1], vocab_size)
    return support.long()  # gather / scatter index with int64 only


def check_support_ids(
    ids: torch.Tensor, token_shape: torch.Size, vocab_size: int, name: str = "support"
) -> None:
    """Token ids ``[*token_shape, k]``, 1 ≤ k ≤ V, in [0, V), distinct within each row.

    A repeated id would count its π* mass (or its MSE term) twice.
    """
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor of token ids, got dtype {ids.dtype}")
    if (
        ids.dim() != len(token_shape) + 1
        or ids.shape[:-1] != token_shape
        or not 0 < ids.shape[-1] <= vocab_size
    ):
        raise ValueError(
            f"{name} must have shape (*{tuple(token_shape)}, k) with 0 < k <= V = {vocab_size} "
            f"(token ids per token), got {tuple(ids.shape)}"
        )
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        raise ValueError(
            f"{name} holds token ids outside the vocabulary [0, {vocab_size}): "
            f"min {int(ids.min())}, max {int(ids.max())}"
        )
    if ids.shape[-1] > 1 and bool((ids.sort(-1).values.diff(dim=-1) == 0).any()):
        raise ValueError(
            f"{name} lists the same token id twice in a row; each support entry must be distinct"
        )


def optimal_logits(
    old_logits: torch.Tensor,
    advantages: torch.Tensor,
    beta: float,
    *,
    beta_negative: float | None = None,
) -> torch.Tensor:
    """z* = z_old + A/β (eq. 7), with A/β_negative where A < 0; fp32 whatever the input dtype.

    Args:
        old_logits: z_old, ``[..., V]``.
        advantages: A over the vocabulary, ``[..., V]`` (dense; see :func:`lco.sparse_advantages`).
        beta: the KL weight β > 0 of eq. (2).
        beta_negative: the KL weight for entries with A < 0; ``None`` (default) is β, the paper.
    """
    beta_negative = check_beta_negative(beta_negative)
    z_old, adv, beta = _checked_fp32(old_logits, advantages, beta)
    z_star = z_old + tilt(adv, beta, beta_negative)
    # A finite β can still overflow A/β in fp32 (β = 1e-40 is "positive and finite"); an inf in z*
    # would turn every loss into NaN, so name the culprit here instead.
    if not bool(torch.isfinite(z_star).all()):
        which = (
            f"beta={beta!r}" if beta_negative is None else f"beta={beta!r} or beta_negative={beta_negative!r}"
        )
        raise ValueError(
            f"{which} is too small: z* = z_old + A/β overflows fp32 for advantages up to "
            f"{float(adv.abs().max()):.3g}"
        )
    return z_star


def optimal_log_policy(
    old_logits: torch.Tensor,
    advantages: torch.Tensor,
    beta: float,
    *,
    beta_negative: float | None = None,
    support: Support = None,
) -> torch.Tensor:
    """log π*, π* ∝ π_old·exp(A/β) on the support and 0 (log = −inf) outside it (eq. 6).

    Written through the logits as in eq. (29): log_softmax of z* = z_old + A/β over the support.
    ``support=None`` is the whole vocabulary (the paper); see the module docstring for the int k
    and token-id forms. Returns ``[..., V]`` fp32.
    """
    z_star = optimal_logits(old_logits, advantages, beta, beta_negative=beta_negative)
    ids = support_ids(old_logits, support)
    if ids is None:
        return torch.log_softmax(z_star, dim=-1)
    out = torch.full_like(z_star, -float("inf"))
    return out.scatter_(-1, ids, torch.log_softmax(z_star.gather(-1, ids), dim=-1))
