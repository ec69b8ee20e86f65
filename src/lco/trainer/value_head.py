"""PPO's critic: a value head on the policy's final hidden states, saved apart from the policy.

The head is registered on the policy module (``lco_value_head``) so that the optimizer, DDP and
gradient clipping see it, as TRL's former ``AutoModelForCausalLMWithValueHead`` did. Its weights
are kept out of the policy's ``model.safetensors`` (``_keys_to_ignore_on_save``) — a saved policy
then loads as a plain causal LM, without an "UNEXPECTED keys" report — and written next to it as
``value_head.safetensors``, from which a resumed run restores the critic.
"""

from __future__ import annotations

import logging
import os

import torch
from safetensors.torch import load_file, save_file
from torch import nn

logger = logging.getLogger(__name__)

VALUE_HEAD_ATTRIBUTE = "lco_value_head"
VALUE_HEAD_FILE = "value_head.safetensors"


def attach_value_head(policy: nn.Module, hidden_size: int) -> nn.Linear:
    """A zero-initialised float32 ``Linear(hidden_size, 1)`` on ``policy``, excluded from its saved weights."""
    head = nn.Linear(hidden_size, 1).to(device=policy.device, dtype=torch.float32)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    setattr(policy, VALUE_HEAD_ATTRIBUTE, head)
    keys = {f"{VALUE_HEAD_ATTRIBUTE}.{name}" for name, _ in head.named_parameters()}
    policy._keys_to_ignore_on_save = set(policy._keys_to_ignore_on_save or ()) | keys
    return head


def save_value_head(head: nn.Module, folder: str) -> str:
    path = os.path.join(folder, VALUE_HEAD_FILE)
    save_file({k: v.detach().to("cpu").contiguous() for k, v in head.state_dict().items()}, path)
    return path


def load_value_head(head: nn.Module, folder: str) -> bool:
    """Restore the critic from ``folder``; ``False`` (with a warning) if the folder has none."""
    path = os.path.join(folder, VALUE_HEAD_FILE)
    if not os.path.exists(path):
        logger.warning("%s has no %s: the PPO critic restarts from zero", folder, VALUE_HEAD_FILE)
        return False
    device = next(head.parameters()).device
    head.load_state_dict({k: v.to(device) for k, v in load_file(path).items()})
    return True
