"""Tasks and models that are built locally: no hub access is needed to run the study in miniature."""

from .arithmetic import Problem, generate_splits, to_dataset
from .tiny_models import build_byte_tokenizer, build_tiny_causal_lm

__all__ = ["Problem", "build_byte_tokenizer", "build_tiny_causal_lm", "generate_splits", "to_dataset"]
