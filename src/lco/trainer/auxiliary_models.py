"""Which frozen models an objective × advantage needs, and the check that they share the policy's tokenizer.

Both run before any weights are loaded (:mod:`lco.trainer.preflight`, ``lco train``, ``LCOTrainer``).
"""

from __future__ import annotations

import logging
import os

from transformers import AutoTokenizer

from ..objectives.registry import ADVANTAGE_SPECS, OBJECTIVE_SPECS
from ..vocabularies import vocabulary_difference

logger = logging.getLogger(__name__)
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")
TEACHER = "teacher"
"""The role of the distillation teacher among :func:`auxiliary_model_paths`' models."""


def auxiliary_model_paths(args) -> dict[str, str]:
    """Which frozen models the objective × advantage needs, by role (read from their specs): the
    advantage's reward models in the order of ``AdvantageSpec.reward_models``, then the teacher."""
    role_paths = {"dpo": args.reward_model_path, "ref": args.reference_reward_model_path}
    paths = {role: role_paths[role] for role in ADVANTAGE_SPECS[args.advantage].reward_models}
    if OBJECTIVE_SPECS[args.objective].needs_teacher:
        paths[TEACHER] = args.teacher_model_path or args.reward_model_path
    return paths


def check_vocabularies(policy_tokenizer, paths: dict[str, str]) -> None:
    """Reward models, references and teachers must share the policy's tokenizer (checked before loading weights).

    A local model folder saved without tokenizer files cannot be compared here; it is then only
    held to the LM-head size check at load time, with a warning.
    """
    tokenizer = getattr(policy_tokenizer, "tokenizer", policy_tokenizer)
    policy_vocab = tokenizer.get_vocab()
    for role, path in paths.items():
        if os.path.isdir(path) and not any(os.path.exists(os.path.join(path, f)) for f in _TOKENIZER_FILES):
            if not os.path.exists(os.path.join(path, "config.json")):
                raise ValueError(f"the {role} model path {path} holds no model (no config.json)")
            logger.warning(
                "%s model at %s has no tokenizer files; its vocabulary cannot be compared", role, path
            )
            continue
        other = AutoTokenizer.from_pretrained(path)
        if other.get_vocab() != policy_vocab:
            raise ValueError(
                f"the {role} model at {path} has a different vocabulary than the policy's tokenizer "
                f"({vocabulary_difference(other.get_vocab(), policy_vocab)}); LCO's dense advantages compare "
                "distributions token by token, so every model must share the policy's tokenizer"
            )
