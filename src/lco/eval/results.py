"""Per-run result files, resuming, and the mean ± std / standard error over seeds.

Layout of an output directory::

    OUT/config.json                   what was evaluated (a resumed run must match it)
    OUT/<suite>/<dataset>/seed_<s>.json   one file per finished seed, written as soon as it completes
    OUT/<suite>/<dataset>/greedy.json     the greedy-decoding run, when asked for
    OUT/summary.json                  per-seed metrics and their mean ± std (± standard error)

A run file is written atomically (temporary file + rename), so a killed evaluation leaves either a
complete file or none; restarting the same command skips the runs whose file exists.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def aggregate(values: Sequence[float]) -> dict[str, Any]:
    """Mean, sample standard deviation (n − 1) and standard error std/√n of per-seed values.

    With a single value the spread is undefined and reported as ``None``.
    """
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("aggregate needs at least one value")
    n = len(vals)
    mean = statistics.fmean(vals)
    std = statistics.stdev(vals) if n > 1 else None
    sem = std / math.sqrt(n) if std is not None else None
    return {"mean": mean, "std": std, "sem": sem, "n": n, "values": vals}


def aggregate_runs(run_metrics: Sequence[Mapping[str, float]]) -> dict[str, dict[str, Any]]:
    """Aggregate each metric over runs (seeds); only metrics present in every run are aggregated."""
    if not run_metrics:
        raise ValueError("aggregate_runs needs at least one run")
    keys = [k for k in run_metrics[0] if all(k in m for m in run_metrics)]
    return {k: aggregate([m[k] for m in run_metrics]) for k in keys}


def format_aggregate(agg: Mapping[str, Any], scale: float = 1.0, digits: int = 2) -> str:
    """``mean ± std`` (the paper's tables), with the standard error and the number of seeds."""
    mean = agg["mean"] * scale
    if agg["std"] is None:
        return f"{mean:.{digits}f} (1 seed)"
    return f"{mean:.{digits}f} ± {agg['std'] * scale:.{digits}f} (s.e. {agg['sem'] * scale:.{digits}f}, {agg['n']} seeds)"


def _write_json_atomic(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=1, ensure_ascii=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class ResultStore:
    """The output directory of one evaluation: its configuration, per-run files and summary.

    ``config`` holds everything that changes what is measured (models, suite, decoding settings,
    data). Resuming into a directory written with a different ``config`` is refused, naming the
    settings that differ, so results of two different evaluations are never mixed. The number of
    seeds is not part of it: re-running with more seeds reuses the finished ones. ``config.json`` is
    written with the first result, so a run that failed before computing anything can be retried
    with corrected arguments.
    """

    def __init__(self, out_dir: str | os.PathLike, config: Mapping[str, Any]):
        self.root = Path(out_dir)
        if self.root.exists() and not self.root.is_dir():
            raise ValueError(f"--out {self.root} exists and is not a directory")
        self.config = json.loads(json.dumps(dict(config)))  # normalise (tuples → lists, …)
        self._config_path = self.root / "config.json"
        if self._config_path.exists():
            try:
                previous = json.loads(self._config_path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as err:
                raise ValueError(f"{self._config_path} is not valid JSON ({err}); use another --out") from err
            if previous != self.config:
                differing = sorted(
                    k
                    for k in set(previous) | set(self.config)
                    if previous.get(k, "<missing>") != self.config.get(k, "<missing>")
                )
                raise ValueError(
                    f"--out {self.root} holds results of a different evaluation (differing settings: "
                    f"{', '.join(differing)}); use another --out directory to avoid mixing results"
                )

    def run_path(self, suite: str, dataset: str, run: str) -> Path:
        return self.root / suite / dataset / f"{run}.json"

    def load(self, suite: str, dataset: str, run: str) -> dict[str, Any] | None:
        """The finished run's record, or None if it has not been written yet."""
        path = self.run_path(suite, dataset, run)
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            return None  # cannot happen with atomic writes unless edited by hand: redo the run

    def save(self, suite: str, dataset: str, run: str, record: Mapping[str, Any]) -> Path:
        if not self._config_path.exists():  # written with the first result, so a failed start leaves no trace
            _write_json_atomic(self._config_path, self.config)
        path = self.run_path(suite, dataset, run)
        _write_json_atomic(path, dict(record))
        return path

    def write_summary(self, summary: Mapping[str, Any]) -> Path:
        path = self.root / "summary.json"
        _write_json_atomic(path, dict(summary))
        return path
