"""The TRL-native trainer: ``LCOConfig`` / ``LCOTrainer`` (extend ``GRPOConfig`` / ``GRPOTrainer``)."""

from .config import ADVANTAGES, OBJECTIVES, REJECTED_PAIRS, VALID_PAIRS, LCOConfig
from .trainer import LCOTrainer

__all__ = ["ADVANTAGES", "OBJECTIVES", "REJECTED_PAIRS", "VALID_PAIRS", "LCOConfig", "LCOTrainer"]
