"""The TRL-native trainer: ``LCOConfig`` / ``LCOTrainer`` (extend ``GRPOConfig`` / ``GRPOTrainer``).

The names are imported on first use (PEP 562): ``lco train --help`` imports :mod:`lco.trainer.cli`,
which must not pay for TRL.
"""

from __future__ import annotations

import importlib

_LAZY = {
    **dict.fromkeys(("ADVANTAGES", "OBJECTIVES", "REJECTED_PAIRS", "VALID_PAIRS", "LCOConfig"), "config"),
    "LCOTrainer": "trainer",
}

__all__ = ["ADVANTAGES", "OBJECTIVES", "REJECTED_PAIRS", "VALID_PAIRS", "LCOConfig", "LCOTrainer"]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
