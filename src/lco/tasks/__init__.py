"""Tasks and models that are built locally: no hub access is needed to run the study in miniature."""

from .tiny_models import build_byte_tokenizer, build_tiny_causal_lm

__all__ = ["build_byte_tokenizer", "build_tiny_causal_lm"]
