"""Gradient-Gap toolkit (Suk & Duan, "On the Optimization Dynamics of RLVR", §3–§6).

Pure quantities for diagnosing an RLVR run — g⁺, g⁻, the Gradient Gap, the Gap Alignment Δμ,
the step η_k, the Cumulative Gap Alignment M(K) and the lower bound it puts on J — and
exact-gradient bandit reproductions of the paper's figures in :mod:`lco.gap.bandits`
(figures in :mod:`lco.gap.figures`, command line ``lco gap bandit`` in :mod:`lco.gap.cli`).
"""

from .quantities import (
    CumulativeGapAlignment,
    expected_score_correct,
    expected_score_incorrect,
    gap_alignment,
    gap_alignment_per_prompt,
    gradient_gap,
    log_odds,
    success_rate_lower_bound,
    token_step_size_bound,
    trajectory_step_size_bound,
    update_step,
)

__all__ = [
    "CumulativeGapAlignment",
    "expected_score_correct",
    "expected_score_incorrect",
    "gap_alignment",
    "gap_alignment_per_prompt",
    "gradient_gap",
    "log_odds",
    "success_rate_lower_bound",
    "token_step_size_bound",
    "trajectory_step_size_bound",
    "update_step",
]
