"""The stability study's raw results and the measures read from them: one compact record per run
(:func:`compact_run` — its greedy curve, its final pass@1 and, per problem, how many of its k samples were
correct), the per-problem scores, the curve from π_0 on, its area and the rollouts to a threshold.

What ``results.json`` holds and docs/study/results.json commits; :mod:`.study` builds every table from them.
"""

from __future__ import annotations


def _encode(counts: list[int], samples: int):
    return "".join(str(c) for c in counts) if samples <= 9 else list(counts)


def decode_counts(value, samples: int) -> list[float]:
    counts = [int(c) for c in value] if isinstance(value, str) else list(value)
    return [c / samples for c in counts]


def compact_run(record: dict) -> dict:
    """A run's raw result, from its :func:`.collect.collect_run` record (a study run: one split)."""
    (split, metrics), *_ = record["splits"].items()
    samples = metrics.get("samples", 1)
    grad = record.get("grad_norm") or {}
    return {
        "method": record["method"],
        "label": record["label"],
        "phase": record["purpose"],
        "split": split,
        "seed": record["seed"],
        "learning_rate": record["learning_rate"],
        "trained": record["trained"],
        "status": record["status"],
        "rollouts": record["rollouts"],
        "samples": samples,
        "pass@1": metrics["pass@1"],
        "greedy_pass@1": metrics["greedy_pass@1"],
        "sampled": _encode(metrics["sampled_correct"], samples),
        "greedy": _encode(metrics["greedy_correct"], 1),
        "curve": [[p["rollouts"], p["correct"]] for p in record.get("curve", ())],
        "grad_norm_p99_over_median": grad.get("p99_over_median"),
        "train_seconds": record.get("train_seconds", 0.0),
        "eval_seconds": record.get("eval_seconds", 0.0),
    }


def scores(run: dict) -> list[float]:
    """Per problem: the fraction of the run's k samples that are correct."""
    return decode_counts(run["sampled"], run["samples"])


def curve(run: dict, start: dict | None) -> list[tuple[int, list[float]]]:
    """The run's greedy curve as (rollouts, per-problem verdicts), with π_0's greedy verdicts (``start``,
    its evaluation on the same split) at 0 rollouts; a static policy is flat at its own greedy."""
    if not run["trained"]:
        return [(0, decode_counts(run["greedy"], 1))]
    points = [(r, decode_counts(c, 1)) for r, c in run["curve"]]
    if start is not None and (not points or points[0][0] > 0):
        points = [(0, decode_counts(start["greedy"], 1)), *points]
    return points


def area(points: list[tuple[int, list[float]]], budget: int) -> list[float]:
    """Per problem: the mean of the curve over [0, budget] rollouts (trapezoids; flat past its last point)."""
    if len(points) == 1 or budget <= 0:
        return list(points[0][1])
    problems = len(points[0][1])
    total = [0.0] * problems
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        for j in range(problems):
            total[j] += (x1 - x0) * (y0[j] + y1[j]) / 2
    last_x, last_y = points[-1]
    for j in range(problems):
        total[j] += max(0, budget - last_x) * last_y[j]
    return [t / budget for t in total]


def rollouts_to_reach(points: list[tuple[int, float]], target: float) -> int | None:
    """The first rollout count at which a (mean) curve reaches ``target`` (None: never)."""
    return next((x for x, y in points if y >= target), None)
