"""A forward patch: run a function on a causal LM's final hidden states and LM head *inside* its forward.

The fused LCO losses (:mod:`lco.objectives.fused`) need the final hidden states h and the head
weight W rather than the logits, so that [N, V] is never materialised. Calling the backbone
and reading ``lm_head.weight`` from outside the model would bypass the DDP/DeepSpeed/FSDP
wrappers' forward hooks (under ZeRO-3 the weight is an empty shard there), so — like TRL's own
``add_fused_lm_head`` — we patch ``model.forward``: with ``head_fn=...`` it runs the backbone,
gathers the head for the duration of the call, and returns ``head_fn(hidden, weight, bias)``.
Without ``head_fn`` the forward is the one the model had (generation is unchanged).
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable

import torch
from transformers import PreTrainedModel
from trl.trainer.utils import maybe_gather_lm_head_ctx

HeadFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], object]


def backbone_of(model: PreTrainedModel) -> torch.nn.Module:
    return getattr(model, model.base_model_prefix)


def add_hidden_state_head(model: PreTrainedModel) -> PreTrainedModel:
    """Patch ``model.forward`` to accept ``head_fn`` and ``logits_to_keep`` (idempotent).

    ``model(input_ids, attention_mask=m, head_fn=f, logits_to_keep=k)`` returns
    ``f(h, W, b)`` where ``h`` is ``[B, k, H]``: the hidden states at the k positions that
    *predict* the last k tokens (positions −k−1 … −2), i.e. those whose logits score the completion.
    """
    if getattr(model, "_lco_hidden_state_head", False):
        return model
    original_forward = model.forward

    @functools.wraps(type(model).forward)
    def forward(self, *args, head_fn: HeadFn | None = None, logits_to_keep: int = 0, **kwargs):
        if head_fn is None:
            if logits_to_keep:
                kwargs["logits_to_keep"] = logits_to_keep
            return original_forward(*args, **kwargs)
        if logits_to_keep <= 0:
            raise ValueError(
                "logits_to_keep must be the positive number of completion tokens when head_fn is given"
            )
        kwargs["use_cache"] = False
        hidden = backbone_of(self)(*args, **kwargs).last_hidden_state[:, -logits_to_keep - 1 : -1]
        head = self.get_output_embeddings()
        with maybe_gather_lm_head_ctx(head.weight, head.bias):
            return head_fn(hidden, head.weight, head.bias)

    model.forward = types.MethodType(forward, model)
    model._lco_hidden_state_head = True
    return model


def head_outputs(
    model, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int, head_fn: HeadFn
):
    """Call a patched model (possibly wrapped by DDP/DeepSpeed) with ``head_fn``."""
    return model(
        input_ids=input_ids, attention_mask=attention_mask, head_fn=head_fn, logits_to_keep=logits_to_keep
    )
