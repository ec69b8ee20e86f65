"""π* decoding: the ``LogitsProcessor`` that turns π_old's logits into log π* (Prop. 4.1).

    π*(a|s_t) ∝ π_old(a|s_t)·exp(A(s_t, a)/β)                           (eq. 6)
    z*(s_t, ·) = z_old(s_t, ·) + A(s_t, ·)/β                              (eq. 7)
    A(s_t, a) = log φ_DPO(a|s_t) − log φ_ref(a|s_t)                      (eq. 13)

``generate`` runs π_old and hands its logits z_old to the processor, which runs φ_DPO and φ_ref on
the same prefix — each with its own KV cache, so one new token per step — and returns log π*. The
advantage is normalised over the vocabulary exactly as the trainer does
(:func:`lco.normalize_advantages`); with the default ``"mean"`` centring π* is unchanged.
"""

from __future__ import annotations

import inspect

import torch
from transformers import LogitsProcessor

from .._checks import check_beta, check_choice
from ..advantages import NORMALIZATIONS, dpo_advantages, normalize_advantages
from ..objectives.targets import optimal_log_policy


def _position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    # left padding: positions count real tokens only (what generate() does for the policy itself)
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def last_logits_only(model) -> dict:
    """``logits_to_keep=1`` where the model supports it: the prompt's forward pass then does not
    materialise [B, L, V] logits (at |V| ≈ 150k that is gigabytes), as ``generate`` does for π_old."""
    return {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}


class PiStarLogitsProcessor(LogitsProcessor):
    """z_old → log π* = log_softmax(z_old + normalize(log φ_DPO − log φ_ref)/β) (eqs. 6, 7, 13).

    Used as a ``logits_processor`` of ``generate`` on the π_old model. Call :meth:`begin` with the
    prompt batch's attention mask before each ``generate`` call; the processor then follows the
    sequence step by step, feeding each new token to φ_DPO and φ_ref through their KV caches.
    Temperature and top-p, which ``generate`` applies after custom processors, act on π*.
    """

    def __init__(self, dpo_model, ref_model, beta: float, normalize: str = "mean"):
        self.dpo_model = dpo_model
        self.ref_model = ref_model
        self.beta = check_beta(beta)
        self.normalize = check_choice("normalize", normalize, NORMALIZATIONS)
        self._prompt_mask: torch.Tensor | None = None
        self._reset()

    def _reset(self) -> None:
        self._mask = None
        self._caches = None
        self._length = 0

    def begin(self, attention_mask: torch.Tensor) -> None:
        """Start a new batch whose (left-padded) prompts have this attention mask ``[B, L]``."""
        self._prompt_mask = attention_mask
        self._reset()

    @torch.no_grad()
    def _advance(self, model, cache, input_ids, mask):
        out = model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=_position_ids(mask)[:, -input_ids.shape[1] :],
            past_key_values=cache,
            use_cache=True,
            **last_logits_only(model),
        )
        return out.logits[:, -1, :], out.past_key_values

    def advantages(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The normalised dense DPO advantage A(s_t, ·) at the end of ``input_ids``, ``[B, V]``."""
        if self._caches is None:  # first step: the whole prompt
            if self._prompt_mask is None or self._prompt_mask.shape != input_ids.shape:
                raise RuntimeError(
                    "PiStarLogitsProcessor.begin(attention_mask) must be called with the prompt batch's "
                    "mask before each generate() call"
                )
            self._mask = self._prompt_mask.to(input_ids.device)
            new_ids, caches = input_ids, (None, None)
        else:
            if input_ids.shape[1] != self._length + 1:
                raise RuntimeError(
                    f"PiStarLogitsProcessor expected one new token (length {self._length + 1}), got length "
                    f"{input_ids.shape[1]}; call begin() before each generate() call"
                )
            self._mask = torch.cat([self._mask, self._mask.new_ones(self._mask.shape[0], 1)], dim=1)
            new_ids, caches = input_ids[:, -1:], self._caches
        dpo_logits, dpo_cache = self._advance(self.dpo_model, caches[0], new_ids, self._mask)
        ref_logits, ref_cache = self._advance(self.ref_model, caches[1], new_ids, self._mask)
        self._caches, self._length = (dpo_cache, ref_cache), input_ids.shape[1]
        return normalize_advantages(dpo_advantages(dpo_logits, ref_logits), self.normalize)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        adv = self.advantages(input_ids)
        return optimal_log_policy(scores, adv.to(scores.device), self.beta).to(scores.dtype)
