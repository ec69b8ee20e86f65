"""Evaluation of policies as in the paper's §5–§6: ``lco eval`` and the functions behind it.

- :mod:`~lco.eval.answers` — final-answer extraction, math-verify equivalence, the ±1 rule reward.
- :mod:`~lco.eval.pass_at_k` — the unbiased pass@k estimator.
- :mod:`~lco.eval.datasets` — MATH500 / AMC23 / MinervaMath registry, JSONL loading with field checks.
- :mod:`~lco.eval.policies` — loading the policy: a checkpoint, φ_DPO, or π_old + φ_DPO + φ_ref for π*.
- :mod:`~lco.eval.pistar` — π* of eq. (6) decoded with a ``LogitsProcessor``.
- :mod:`~lco.eval.generation` — batched ``transformers`` generation, or vLLM.
- :mod:`~lco.eval.reward_models`, :mod:`~lco.eval.judge`, :mod:`~lco.eval.mc` — the other suites.
- :mod:`~lco.eval.results` — per-seed files, resume, mean ± std / standard error.
- :mod:`~lco.eval.suites` — the suite loops; :mod:`~lco.eval.cli` — the command line.

The names below are imported on first use, so that ``lco --help`` does not pay for transformers,
sympy (math-verify) and friends.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "answers_match": "answers",
    "extract_answer": "answers",
    "is_correct": "answers",
    "math_reward": "answers",
    "pass_at_k": "pass_at_k",
    "mean_pass_at_k": "pass_at_k",
    "ResultStore": "results",
    "aggregate": "results",
    "aggregate_runs": "results",
    "MATH_DATASETS": "datasets",
    "load_math_dataset": "datasets",
    "PiStarLogitsProcessor": "pistar",
    "Policy": "policies",
    "load_policy": "policies",
    "DecodingConfig": "generation",
    "TransformersGenerator": "generation",
    "build_generator": "generation",
    "encode_prompts": "generation",
    "SequenceScorer": "reward_models",
    "JudgeError": "judge",
    "LocalJudge": "judge",
    "OpenAIJudge": "judge",
    "length_controlled_win_rate": "judge",
    "win_rate": "judge",
    "run_lm_eval": "mc",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_LAZY)
