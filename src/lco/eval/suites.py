"""The four suites as plain loops: for each dataset and run (seed or greedy) that is not on disk yet,
generate, score, write the run's file; then aggregate what is on disk into the summary.

Every suite takes factories (zero-argument callables) for the expensive objects — the generator with
its models, the reward models, the judge — and calls them only when a run actually has to be
computed, so a resumed evaluation whose runs are all finished loads nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from .answers import extract_answer, is_correct
from .generation import Completion, DecodingConfig, encode_prompts
from .pass_at_k import mean_pass_at_k
from .results import ResultStore, aggregate_runs
from .reward_models import rm_metrics

MATH_PROMPT = "{problem}\nPlease reason step by step, and put your final answer within \\boxed{{}}."


@dataclass(frozen=True)
class Run:
    """One evaluation pass: a sampling seed, or greedy decoding."""

    name: str
    seed: int
    greedy: bool


def plan_runs(seeds: int, decoding: str) -> list[Run]:
    """``seeds`` sampled runs (seeds 0 … seeds−1) and/or one greedy run."""
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"--seeds must be a positive number of seeds, got {seeds!r}")
    if decoding not in ("sample", "greedy", "both"):
        raise ValueError(f"--decoding must be sample, greedy or both, got {decoding!r}")
    runs = [Run(f"seed_{s}", s, False) for s in range(seeds)] if decoding != "greedy" else []
    if decoding != "sample":
        runs.append(Run("greedy", 0, True))
    return runs


def _log(message: str) -> None:
    print(f"[lco eval] {message}", file=sys.stderr, flush=True)


def _completion_fields(completions: Sequence[Completion]) -> dict[str, list]:
    return {
        "completions": [c.text for c in completions],
        "num_tokens": [c.num_tokens for c in completions],
        "stopped": [c.stopped for c in completions],
    }


# ----------------------------------------------------------------------------------------------- math


def math_metrics(problems: Sequence[dict[str, Any]], ks: Sequence[int]) -> dict[str, float]:
    """pass@k (in %) for each k ≤ samples per problem, plus how often an answer was boxed / cut off."""
    n = len(problems[0]["correct"])
    counts = [sum(p["correct"]) for p in problems]
    metrics = {f"pass@{k}": 100.0 * mean_pass_at_k(counts, n, k) for k in ks if k <= n}
    total = sum(len(p["completions"]) for p in problems)
    metrics["boxed_rate"] = 100.0 * sum("\\boxed" in c for p in problems for c in p["completions"]) / total
    metrics["truncated_rate"] = 100.0 * sum(not s for p in problems for s in p["stopped"]) / total
    metrics["mean_tokens"] = sum(t for p in problems for t in p["num_tokens"]) / total
    return metrics


def evaluate_math(
    make_generator: Callable[[], Any],
    store: ResultStore,
    datasets: dict[str, list[dict[str, str]]],
    decoding: DecodingConfig,
    runs: Sequence[Run],
    ks: Sequence[int],
    chat_template: str = "auto",
    prompt_template: str = MATH_PROMPT,
) -> dict[str, Any]:
    """Math pass@k on each dataset for each run; returns the summary (also written to ``summary.json``)."""
    for name, problems in datasets.items():
        prompt_ids = None
        for run in runs:
            if store.load("math", name, run.name) is not None:
                _log(f"math/{name}/{run.name}: finished earlier, skipped")
                continue
            generator = make_generator()
            if prompt_ids is None:
                texts = [prompt_template.format(problem=p["problem"]) for p in problems]
                prompt_ids = encode_prompts(generator.tokenizer, texts, chat_template)
            completions = generator.generate(
                prompt_ids, replace(decoding, greedy=run.greedy), run.seed, desc=f"math/{name}/{run.name}"
            )
            records = []
            for problem, comps in zip(problems, completions, strict=True):
                records.append(
                    {
                        "id": problem["id"],
                        "answer": problem["answer"],
                        "extracted": [extract_answer(c.text) for c in comps],
                        "correct": [is_correct(c.text, problem["answer"]) for c in comps],
                        **_completion_fields(comps),
                    }
                )
            metrics = math_metrics(records, ks)
            store.save(
                "math",
                name,
                run.name,
                {"run": run.name, "seed": run.seed, "metrics": metrics, "problems": records},
            )
            _log(f"math/{name}/{run.name}: " + ", ".join(f"{k} {v:.2f}" for k, v in metrics.items()))
    return summarize_math(store, list(datasets), runs, ks)


def summarize_math(store: ResultStore, names: Sequence[str], runs: Sequence[Run], ks: Sequence[int]) -> dict:
    """Per-run metrics, mean ± std over the sampled seeds, pass@k pooled over all their samples, greedy."""
    summary: dict[str, Any] = {}
    for name in names:
        records = {run.name: store.load("math", name, run.name) for run in runs}
        sampled = [r for r in runs if not r.greedy]
        entry: dict[str, Any] = {"runs": {k: math_metrics(v["problems"], ks) for k, v in records.items()}}
        if sampled:
            entry["seeds"] = aggregate_runs([entry["runs"][r.name] for r in sampled])
            # all seeds' samples of a problem together: pass@k for k up to seeds × samples-per-seed
            pooled = [
                [c for r in sampled for c in records[r.name]["problems"][j]["correct"]]
                for j in range(len(records[sampled[0].name]["problems"]))
            ]
            n = len(pooled[0])
            entry["pooled"] = {
                f"pass@{k}": 100.0 * mean_pass_at_k([sum(p) for p in pooled], n, k) for k in ks if k <= n
            }
            entry["pooled"]["samples_per_problem"] = n
        summary[name] = entry
    return summary


# ------------------------------------------------------------------------------------------------- rm


def evaluate_rm(
    make_generator: Callable[[], Any],
    make_scorers: Callable[[], list],
    store: ResultStore,
    name: str,
    rows: list[dict[str, str]],
    decoding: DecodingConfig,
    runs: Sequence[Run],
    chat_template: str = "auto",
) -> dict[str, Any]:
    """Reward-model scores (QA-Feedback protocol): each scorer's mean and their average, per run."""
    prompt_ids = None
    for run in runs:
        if store.load("rm", name, run.name) is not None:
            _log(f"rm/{name}/{run.name}: finished earlier, skipped")
            continue
        scorers = make_scorers()  # loaded before generating: a bad scorer fails before the expensive part
        generator = make_generator()
        if prompt_ids is None:
            prompt_ids = encode_prompts(generator.tokenizer, [r["prompt"] for r in rows], chat_template)
        completions = generator.generate(
            prompt_ids, replace(decoding, greedy=run.greedy), run.seed, desc=f"rm/{name}/{run.name}"
        )
        flat_prompts = [r["prompt"] for r, comps in zip(rows, completions, strict=True) for _ in comps]
        flat_texts = [c.text for comps in completions for c in comps]
        scores = {s.name: s.score(flat_prompts, flat_texts) for s in scorers}
        metrics = rm_metrics(scores)
        records, pos = [], 0
        for row, comps in zip(rows, completions, strict=True):
            records.append(
                {
                    "id": row["id"],
                    "scores": {k: v[pos : pos + len(comps)] for k, v in scores.items()},
                    **_completion_fields(comps),
                }
            )
            pos += len(comps)
        store.save(
            "rm", name, run.name, {"run": run.name, "seed": run.seed, "metrics": metrics, "prompts": records}
        )
        _log(f"rm/{name}/{run.name}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return {name: _summarize_runs(store, "rm", name, runs)}


def _summarize_runs(store: ResultStore, suite: str, name: str, runs: Sequence[Run]) -> dict[str, Any]:
    metrics = {run.name: store.load(suite, name, run.name)["metrics"] for run in runs}
    entry: dict[str, Any] = {"runs": metrics}
    sampled = [metrics[r.name] for r in runs if not r.greedy]
    if sampled:
        entry["seeds"] = aggregate_runs(sampled)
    return entry


# ---------------------------------------------------------------------------------------------- judge


def evaluate_judge(
    make_generator: Callable[[], Any],
    make_judge: Callable[[], Any],
    store: ResultStore,
    name: str,
    rows: list[dict[str, str]],
    decoding: DecodingConfig,
    runs: Sequence[Run],
    chat_template: str = "auto",
) -> dict[str, Any]:
    """Win rate and LC win rate against the reference outputs, per run.

    A run's generations are written (``<run>.generations.json``) before judging, so a judge failure
    does not cost the generations: the next attempt judges them without regenerating.
    """
    from .judge import judge_metrics, judge_preferences

    if decoding.num_samples != 1:
        raise ValueError("--suite judge compares one output per instruction: --samples-per-seed must be 1")
    prompt_ids = None
    for run in runs:
        if store.load("judge", name, run.name) is not None:
            _log(f"judge/{name}/{run.name}: finished earlier, skipped")
            continue
        judge = make_judge()  # checked reachable before any generation
        generated = store.load("judge", name, f"{run.name}.generations")
        if generated is None:
            generator = make_generator()
            if prompt_ids is None:
                prompt_ids = encode_prompts(
                    generator.tokenizer, [r["instruction"] for r in rows], chat_template
                )
            completions = generator.generate(
                prompt_ids, replace(decoding, greedy=run.greedy), run.seed, desc=f"judge/{name}/{run.name}"
            )
            generated = {"run": run.name, "outputs": [_completion_fields(c) for c in completions]}
            store.save("judge", name, f"{run.name}.generations", generated)
        outputs = [o["completions"][0] for o in generated["outputs"]]
        references = [r["reference"] for r in rows]
        prefs = judge_preferences(judge, [r["instruction"] for r in rows], outputs, references, run.seed)
        metrics = judge_metrics(prefs, outputs, references)
        records = [
            {"id": r["id"], "output": o, "preference": p}
            for r, o, p in zip(rows, outputs, prefs, strict=True)
        ]
        store.save(
            "judge", name, run.name, {"run": run.name, "seed": run.seed, "metrics": metrics, "pairs": records}
        )
        _log(f"judge/{name}/{run.name}: " + ", ".join(f"{k} {v:.2f}" for k, v in metrics.items()))
    return {name: _summarize_runs(store, "judge", name, runs)}


# ------------------------------------------------------------------------------------------------- mc


def evaluate_mc(
    run_lm_eval: Callable[[int], dict[str, float]],
    store: ResultStore,
    tasks: Sequence[str],
    runs: Sequence[Run],
) -> dict[str, Any]:
    """lm-eval-harness accuracy per seed (``run_lm_eval(seed)`` → flattened metrics)."""
    name = "+".join(tasks)
    for run in runs:
        if store.load("mc", name, run.name) is not None:
            _log(f"mc/{name}/{run.name}: finished earlier, skipped")
            continue
        metrics = run_lm_eval(run.seed)
        store.save("mc", name, run.name, {"run": run.name, "seed": run.seed, "metrics": metrics})
        _log(f"mc/{name}/{run.name}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return {name: _summarize_runs(store, "mc", name, runs)}
