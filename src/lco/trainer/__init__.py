"""The TRL-native trainer: ``LCOConfig`` / ``LCOTrainer`` (extend ``GRPOConfig`` / ``GRPOTrainer``).

The names are imported on first use (PEP 562): ``lco train --help`` imports :mod:`lco.trainer.cli`,
which must not pay for TRL.
"""

from __future__ import annotations

from .._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "config": ("ADVANTAGES", "OBJECTIVES", "REJECTED_PAIRS", "VALID_PAIRS", "LCOConfig"),
        "trainer": ("LCOTrainer",),
    },
)
