"""The closed-form optimum of the KL-regularised objective (paper §4, Prop. 4.1), with its stability options.

For a behaviour policy π_old = softmax(z_old) and an advantage A over the vocabulary,

    max_π  E_{a~π}[A(s, a)] − β·KL(π ‖ π_old)                       (eq. 2)

is solved by π*(a|s) ∝ π_old(a|s)·exp(A(s, a)/β)                   (eq. 6)
which is induced by the logits z* = z_old + A/β                     (eq. 7).

Three options, all off by default (then every result is the paper's, bit for bit):

- ``beta_negative``: the KL weight for entries with A < 0 (per entry; ``None`` = β), so that
  π* ∝ π_old·exp(A/β) where A ≥ 0 and ∝ π_old·exp(A/β_negative) where A < 0 (eqs. 6–7 per sign).
  With a sparse ±A the KLD push on a confident token is about twice as strong for A < 0 as for
  A > 0; the authors' public code multiplies β by 100 where A ≤ 0 (rule reward).
- ``normalization``: the §4.4 per-token normalisation of A (:func:`lco.normalize_advantages`),
  done here so that β_negative acts on the *uncentred* advantage: the sign of A decides the β,
  and the centring is applied to the shift A/β_± afterwards (:func:`target_shift`). So π* of
  eq. (6) stays invariant to the centring with β_negative too, and is exactly the documented
  π_old·exp(A/β_±); centring the advantage first would give the sampled token's negative A a tilt
  of (A − A/V)/β_negative + (A/V)/β on the other entries (at V = 260 with β_negative = 100β, 1.38×
  the documented A/β_negative for the sampled token).
- ``support``: the entries π* may put mass on, per token. ``None`` is the whole vocabulary
  (eq. 6); an int k is the top-k entries of z_old; a LongTensor ``[..., k]`` lists token ids
  (e.g. the sampled action, ``actions[..., None]``). π* is 0 outside the support and
  ∝ π_old·exp(A/β) inside it, i.e. eq. (6) with the sum over a' restricted to the support.
  With the sampled ``actions`` given (a sparse advantage, eq. 11, lives at a_t only), a top-k
  support always holds a_t: it takes the k-th place when z_old does not rank it in its top k
  (:func:`include_sampled`), else a_t would get zero target mass and be pushed down whatever
  the sign of its advantage.

The advantage stays dense, ``[..., V]`` like z_old, whatever the support: only its entries on the
support are read; the normalisation's statistics are taken over the support. A sparse advantage
(eq. 11) is dense through :func:`lco.sparse_advantages`. (The fused loss takes the sparse pair
without forming ``[N, V]``.)
"""

from __future__ import annotations

import torch

from .._checks import check_actions, check_beta, check_finite, check_same_shape
from ..advantages import NORMALIZATIONS, normalize_advantages

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


def target_shift(
    advantages: torch.Tensor,
    beta: float,
    beta_negative: float | None = None,
    normalization: str = "none",
    eps: float = 1e-6,
) -> torch.Tensor:
    """z* − z_old of eq. (7) with the §4.4 normalisation, over the last axis; no checks.

    Without ``beta_negative`` this is ``normalize_advantages(A, normalization) / β`` (the paper).
    With it, the per-sign β is applied to the uncentred advantage: s·A is divided by β where A ≥ 0
    and by β_negative where A < 0 (s = 1/std for ``"std"``/``"mean_std"``, else 1), and then the
    shift itself is centred (``"mean"``, ``"mean_std"``). A per-row constant leaves π* of eq. (6)
    unchanged, so π* ∝ π_old·exp(s·A/β_±) whatever the centring; for LCO-MSE/LCH the centred shift
    is the constant with the tightest bound (Props. 4.8/4.9, argmin_C ‖Δ + C‖).
    """
    if beta_negative is None:
        return normalize_advantages(advantages, normalization, eps) / beta
    adv = advantages.float()
    if normalization in ("std", "mean_std"):
        std = adv.std(-1, keepdim=True, unbiased=False)
        scale = torch.where(std > eps, std, torch.ones_like(std)) if normalization == "std" else std + eps
        adv = adv / scale
    shift = tilt(adv, beta, beta_negative)
    if normalization in ("mean", "mean_std"):
        shift = shift - shift.mean(-1, keepdim=True)
    return shift


def include_sampled(ids: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Top-k token ids ``[..., k]`` (best first) with the sampled token a_t in them: a_t takes the
    k-th (last) place in the rows that do not hold it. The support keeps k entries either way."""
    sampled = actions.long().unsqueeze(-1)
    held = (ids == sampled).any(-1, keepdim=True)
    return torch.cat([ids[..., :-1], torch.where(held, ids[..., -1:], sampled)], dim=-1)


def support_ids(
    old_logits: torch.Tensor, support: Support, actions: torch.Tensor | None = None
) -> torch.Tensor | None:
    """The support as token ids ``[..., k]`` (``None`` for the whole vocabulary), checked.

    An int k gives the top-k entries of ``old_logits`` per token (``torch.topk``), and with the
    sampled ``actions`` (token shape of ``old_logits``) a_t in place of the k-th where it is not
    among them (:func:`include_sampled`); an integer tensor is checked (token shape of
    ``old_logits``, ids in [0, V), no id twice in a row) and returned as int64.
    """
    vocab_size = old_logits.shape[-1]
    if support is None:
        return None
    if isinstance(support, bool):
        raise ValueError(f"support must be None, an int k or a LongTensor of token ids, got {support!r}")
    if isinstance(support, int):
        if not 0 < support <= vocab_size:
            raise ValueError(f"support must be an int k with 0 < k <= V = {vocab_size}, got {support}")
        ids = old_logits.detach().topk(support, dim=-1).indices
        if actions is None:
            return ids
        if not isinstance(actions, torch.Tensor) or actions.shape != old_logits.shape[:-1]:
            got = tuple(actions.shape) if isinstance(actions, torch.Tensor) else type(actions).__name__
            raise ValueError(
                f"actions must have the token shape {tuple(old_logits.shape[:-1])} of old_logits, got {got}"
            )
        check_actions(actions, vocab_size)
        return include_sampled(ids, actions)
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


def check_normalization(normalization: str, support_size: int | None = None) -> None:
    """``normalization`` is one of :data:`lco.NORMALIZATIONS` and has statistics over a support of
    ``support_size`` entries (``None``: the whole vocabulary)."""
    if normalization not in NORMALIZATIONS:
        raise ValueError(
            f"normalization must be one of {', '.join(repr(n) for n in NORMALIZATIONS)}; got {normalization!r}"
        )
    if support_size == 1 and normalization != "none":
        raise ValueError(
            f"normalization={normalization!r} has no statistics over a one-entry support "
            "(the mean is the entry itself, the std 0); use normalization='none'"
        )


def optimal_logits(
    old_logits: torch.Tensor,
    advantages: torch.Tensor,
    beta: float,
    *,
    beta_negative: float | None = None,
    normalization: str = "none",
) -> torch.Tensor:
    """z* = z_old + A/β (eq. 7), with A/β_negative where A < 0; fp32 whatever the input dtype.

    Args:
        old_logits: z_old, ``[..., V]``.
        advantages: A over the vocabulary, ``[..., V]`` (dense; see :func:`lco.sparse_advantages`).
        beta: the KL weight β > 0 of eq. (2).
        beta_negative: the KL weight for entries with A < 0; ``None`` (default) is β, the paper.
        normalization: the §4.4 normalisation of A over the last axis (``"none"``, the default,
            takes A as given): with ``beta_negative`` the sign of the raw A picks the β and the
            centring applies to the shift (:func:`target_shift`), so π* is invariant to it.
    """
    beta_negative = check_beta_negative(beta_negative)
    z_old, adv, beta = _checked_fp32(old_logits, advantages, beta)
    check_normalization(normalization)
    z_star = z_old + target_shift(adv, beta, beta_negative, normalization)
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
    normalization: str = "none",
    actions: torch.Tensor | None = None,
) -> torch.Tensor:
    """log π*, π* ∝ π_old·exp(A/β_±) on the support and 0 (log = −inf) outside it (eq. 6).

    Written through the logits as in eq. (29): log_softmax of z* = z_old + A/β over the support.
    ``support=None`` is the whole vocabulary (the paper); see the module docstring for the int k
    and token-id forms, ``normalization`` (statistics over the support) and ``actions`` (the
    sampled tokens, always in a top-k support). Returns ``[..., V]`` fp32.
    """
    ids = support_ids(old_logits, support, actions)
    if ids is None:
        z_star = optimal_logits(
            old_logits, advantages, beta, beta_negative=beta_negative, normalization=normalization
        )
        return torch.log_softmax(z_star, dim=-1)
    check_same_shape("advantages", advantages, "old_logits", old_logits)
    check_normalization(normalization, ids.shape[-1])
    z_star = optimal_logits(
        old_logits.gather(-1, ids),
        advantages.gather(-1, ids),
        beta,
        beta_negative=beta_negative,
        normalization=normalization,
    )
    out = torch.full(old_logits.shape, -float("inf"), dtype=torch.float32, device=old_logits.device)
    return out.scatter_(-1, ids, torch.log_softmax(z_star, dim=-1))
