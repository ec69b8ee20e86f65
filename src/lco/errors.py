"""Errors whose message is the whole story: the ``lco`` command line shows them as one line, exit 2.

Kept free of heavy imports so that ``lco.cli`` can catch them without loading torch.
"""

from __future__ import annotations


class TrainingDivergedError(RuntimeError):
    """Training diverged (non-finite gradients, or a policy that collapsed to uniform or non-finite).

    Raised before any bad update is applied, so the last checkpoint on disk is intact.
    """
