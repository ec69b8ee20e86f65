"""Stage 5 — the report: ``results.json``, ``report.md`` and the figures, from the stages on disk.

Four modules, read in this order by :func:`write_report`:

- :mod:`.collect` — one record per run from its stage directories, then the per-method tables
  (pass@1 mean ± std over seeds on the test and hard splits, stability, the learning-rate sweep);
- :mod:`.stats` — the numbers behind them: mean ± std, gradient-norm median / p99 / p99-over-median,
  the collapse rule;
- :mod:`.figures` — the PNGs (the paper's Figs. 1–2, 6 and 7, the sweep, Gradient-Gap M(K));
- :mod:`.markdown` — ``report.md``, whose prose takes every number from the settings and the runs.

Every number written is finite: a quantity that does not exist (a static policy's gradient norm, a
std over one seed) is ``null`` in JSON and "—" in Markdown.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..methods import LR_SWEEP_METHODS
from ..settings import DemoSettings
from .collect import (
    collect_run,
    evaluated_problems,
    lr_sweep,
    method_table,
    results_json,
    reward_model_info,
    stability,
    timing,
)
from .figures import make_figures
from .markdown import findings, report_markdown, stability_findings, table_markdown
from .stats import collapsed, mean_std, norm_stats
from .text import sanitize


def write_report(
    out: Path, settings: DemoSettings, runs, warmup, rm, clock: dict[str, float], gate: dict | None = None
) -> dict[str, Path]:
    """Write results.json, report.md and the figures into ``out``; returns their paths. ``gate`` is the
    reward-model gate (``gate.json``; None when no method needed a reward model)."""
    out = Path(out)
    records = [collect_run(run, settings) for run in runs]
    table = method_table(records)
    stab = stability(records)
    sweep = lr_sweep(records, settings)
    figures = make_figures(records, settings, sweep, out / "figures")
    rm_info = reward_model_info(rm)
    times = timing(records, warmup, rm, clock)
    results_path = out / "results.json"
    results_path.write_text(
        results_json(settings, records, table, stab, sweep, rm_info, times, figures, gate=gate)
    )
    warmup_dir = getattr(warmup, "path", None)  # the warm-up's targets, reached or missed, for the prose
    warmup_file = Path(warmup_dir) / "warmup.json" if warmup_dir is not None else None
    warmup_info = (
        json.loads(warmup_file.read_text()) if warmup_file is not None and warmup_file.is_file() else None
    )
    report_path = out / "report.md"
    report_path.write_text(
        report_markdown(
            settings,
            records,
            evaluated_problems(records, settings),
            table,
            stab,
            sweep,
            figures,
            rm_info,
            times,
            seconds=clock.get("total", 0.0),
            gate=gate,
            warmup=warmup_info,
        )
    )
    return {"report": report_path, "results": results_path, "figures": out / "figures"}


__all__ = [
    "LR_SWEEP_METHODS",
    "collapsed",
    "findings",
    "mean_std",
    "method_table",
    "norm_stats",
    "sanitize",
    "stability_findings",
    "table_markdown",
    "write_report",
]
