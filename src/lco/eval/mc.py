"""``--suite mc``: multiple-choice accuracy (MMLU-style), delegated to lm-eval-harness.

lm-evaluation-harness already implements these tasks (prompt formats, few-shot sampling, answer
log-likelihoods, normalised accuracy) and is the reference implementation people compare against,
so ``lco eval --suite mc`` calls its ``simple_evaluate`` on the checkpoint instead of re-implementing
it. lm-eval is an optional dependency: ``pip install 'lco[eval]'``. Its tasks download their data
from the hub, so this suite needs network access (or a populated HF datasets cache).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from typing import Any


def require_lm_eval():
    """The ``lm_eval`` module, or one clear error telling how to install it."""
    if importlib.util.find_spec("lm_eval") is None:
        raise ValueError(
            "--suite mc delegates to lm-eval-harness, which is not installed: pip install 'lco[eval]' "
            "(or pip install lm-eval)"
        )
    return importlib.import_module("lm_eval")


def flatten_lm_eval_results(results: dict[str, Any]) -> dict[str, float]:
    """``{"mmlu": {"acc,none": 0.6, "acc_stderr,none": 0.01, "alias": …}}`` → ``{"mmlu/acc": 0.6}``.

    Standard errors are dropped: the spread we report is over seeds.
    """
    flat: dict[str, float] = {}
    for task, metrics in results.get("results", {}).items():
        for key, value in metrics.items():
            metric, _, filter_name = key.partition(",")
            if "stderr" in metric or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            suffix = "" if filter_name in ("", "none") else f"[{filter_name}]"
            flat[f"{task}/{metric}{suffix}"] = float(value)
    return flat


def run_lm_eval(
    model_path: str,
    tasks: list[str],
    seed: int,
    num_fewshot: int | None = None,
    batch_size: int = 16,
    limit: int | None = None,
    device: str = "cpu",
    dtype: str = "auto",
) -> dict[str, float]:
    """lm-eval's ``simple_evaluate`` with its HF backend; returns the flattened metrics.

    ``seed`` seeds lm-eval's random, numpy, torch and few-shot sampling (versions that accept them),
    so seeds change which few-shot examples are drawn; zero-shot log-likelihood tasks are deterministic.
    """
    lm_eval = require_lm_eval()
    simple_evaluate = lm_eval.simple_evaluate
    model_args = f"pretrained={model_path}" + ("" if dtype == "auto" else f",dtype={dtype}")
    kwargs: dict[str, Any] = dict(
        model="hf",
        model_args=model_args,
        tasks=tasks,
        num_fewshot=num_fewshot,
        batch_size=batch_size,
        device=device,
        limit=limit,
    )
    accepted = inspect.signature(simple_evaluate).parameters
    for name in ("random_seed", "numpy_random_seed", "torch_random_seed", "fewshot_random_seed"):
        if name in accepted:
            kwargs[name] = seed
    if "log_samples" in accepted:
        kwargs["log_samples"] = False  # per-sample logs are not kept; do not hold them in memory
    results = simple_evaluate(**kwargs)
    if not results or not results.get("results"):
        raise ValueError(f"lm-eval returned no results for --tasks {','.join(tasks)}")
    return flatten_lm_eval_results(results)
