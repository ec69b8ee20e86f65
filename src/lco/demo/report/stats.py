"""The report's statistics: mean ± std over seeds, gradient-norm spikiness and the collapse rule.

Pure functions of numbers and curves: nothing here reads a file or knows the demo's stages.

- A run *collapses* when its pass@1 curve falls to ≤ ``COLLAPSE_DROP`` of its best and stays there
  (its last ``COLLAPSE_TAIL`` points), or when training diverged (non-finite gradients).
- Gradient norms are summarised by median, p99, max and p99/median: the losses differ in scale, so
  spikes are compared relative to each run's typical norm (scale-free).

- A difference between two methods is *called* (:func:`paired_difference`) only when at least
  ``MIN_SEEDS_FOR_A_DIFFERENCE`` seeds pair them and the 95 % Student-t interval of the per-seed
  differences excludes zero. On one seed nothing is called: the report's "beats" comes from here alone.

A quantity that does not exist (a static policy's gradient norm, a std over one seed) is ``None``,
never 0, so that the report can print "—" instead of a number that was not measured.
"""

from __future__ import annotations

import math
import statistics

COLLAPSE_DROP = 0.5  # a fall to ≤ 50 % of the best pass@1 …
COLLAPSE_TAIL = 2  # … in the last two points of the curve


def finite(values) -> list[float]:
    """The finite numbers among ``values``, as floats (NaN, ±inf and non-numbers dropped)."""
    return [float(v) for v in values if isinstance(v, int | float) and math.isfinite(v)]


def _percentile(values: list[float], q: float) -> float:
    # linear interpolation between closest ranks, as numpy's default, without importing numpy
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def norm_stats(values) -> dict | None:
    """Median, p99, max and p99/median of the finite values (None if there are none)."""
    kept = finite(values)
    if not kept:
        return None
    median = statistics.median(kept)
    p99 = _percentile(kept, 0.99)
    return {
        "median": median,
        "p99": p99,
        "max": max(kept),
        "p99_over_median": p99 / median if median > 0 else None,
        "steps": len(kept),
        "non_finite_steps": len(list(values)) - len(kept),
    }


def collapsed(curve: list[dict], diverged: bool = False) -> tuple[bool, str]:
    """Whether a run collapsed, and why (see the module docstring)."""
    if diverged:
        return True, "training diverged (non-finite gradients)"
    values = [p["pass@1"] for p in curve]
    if len(values) <= COLLAPSE_TAIL:
        return False, ""
    best_at = max(range(len(values)), key=values.__getitem__)
    best = values[best_at]
    tail = values[-COLLAPSE_TAIL:]
    if best > 0 and best_at < len(values) - COLLAPSE_TAIL and all(v <= COLLAPSE_DROP * best for v in tail):
        return True, f"pass@1 fell from {best:.2f} to {values[-1]:.2f} and stayed there"
    return False, ""


MIN_SEEDS_FOR_A_DIFFERENCE = 2
# two-sided 95 % quantiles t_{0.975, df} of Student's t, df = 1 … 30 (beyond: the normal's 1.96)
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t975(df: int) -> float:
    """The two-sided 95 % quantile of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError(f"df must be >= 1, got {df}")
    return _T975[df - 1] if df <= len(_T975) else 1.96


def paired_difference(a: dict, b: dict) -> dict:
    """A − B over the seeds both were run on (``{seed: value}`` each): n, the mean difference, its 95 %
    interval and ``called``: whether the seeds support a difference (see the module docstring).

    The interval is mean ± t_{0.975, n−1}·s/√n of the per-seed differences; with fewer than
    ``MIN_SEEDS_FOR_A_DIFFERENCE`` pairs it is ``None`` and nothing is called.
    """
    seeds = sorted(set(a) & set(b), key=str)
    diffs = finite([a[s] - b[s] for s in seeds if finite([a[s], b[s]]) == [a[s], b[s]]])
    n = len(diffs)
    if n == 0:
        return {"n": 0, "mean": None, "low": None, "high": None, "called": False}
    mean = statistics.fmean(diffs)
    if n < MIN_SEEDS_FOR_A_DIFFERENCE:
        return {"n": n, "mean": mean, "low": None, "high": None, "called": False}
    half = t975(n - 1) * statistics.stdev(diffs) / math.sqrt(n)
    low, high = mean - half, mean + half
    # identical per-seed differences give a zero-width interval: the seeds then say nothing about the
    # spread (two seeds scoring -4.2 both on a 500-problem split is rounding luck, not certainty)
    called = half > 1e-9 and (low > 0 or high < 0)  # 1e-9: float noise of equal differences
    return {"n": n, "mean": mean, "low": low, "high": high, "called": called}


def mean_std(values: list[float]) -> dict:
    """Mean, sample std (None over fewer than two values) and count of the finite values."""
    values = finite(values)
    if not values:
        return {"mean": None, "std": None, "n": 0}
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else None,
        "n": len(values),
    }


BOOTSTRAP_DRAWS = 2000
BOOTSTRAP_LEVEL = 0.95


def paired_bootstrap(
    a, b, draws: int = BOOTSTRAP_DRAWS, level: float = BOOTSTRAP_LEVEL, seed: int = 0
) -> dict | None:
    """Mean of ``a − b`` and its percentile bootstrap interval, paired by seed and problem.

    ``a`` and ``b`` are [seeds × problems] score matrices (nested lists or arrays; row i of both is
    the same seed, column j the same problem). Each draw resamples the seeds and, independently, the
    problems, with replacement, and keeps the pairing: the interval covers both the seed-to-seed
    spread of training and the problem-to-problem spread of the evaluation. ``b`` may be None (the
    interval of ``a``'s mean). None when there is nothing to compare.
    """
    import numpy as np

    a = np.asarray(a, dtype=float)
    if a.size == 0:
        return None
    d = a if b is None else a - np.asarray(b, dtype=float)
    if d.ndim != 2:
        raise ValueError(f"paired_bootstrap takes [seeds × problems] matrices, got shape {d.shape}")
    seeds, problems = d.shape
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, seeds, size=(draws, seeds))
    cols = rng.integers(0, problems, size=(draws, problems))
    # mean over the resampled seeds of each seed's mean over the resampled problems
    per_seed = np.stack([d[:, c].mean(axis=1) for c in cols])  # [draws × seeds]
    means = np.take_along_axis(per_seed, rows, axis=1).mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return {
        "mean": float(d.mean()),
        "low": float(low),
        "high": float(high),
        "level": level,
        "seeds": seeds,
        "problems": problems,
    }


def excludes_zero(interval: dict | None) -> int:
    """+1 when the interval lies above zero, −1 below, 0 when it holds zero (or is missing)."""
    if interval is None:
        return 0
    if interval["low"] > 0:
        return 1
    if interval["high"] < 0:
        return -1
    return 0


__all__ = [
    "BOOTSTRAP_DRAWS",
    "COLLAPSE_DROP",
    "COLLAPSE_TAIL",
    "MIN_SEEDS_FOR_A_DIFFERENCE",
    "collapsed",
    "excludes_zero",
    "finite",
    "mean_std",
    "norm_stats",
    "paired_bootstrap",
    "paired_difference",
    "t975",
]
