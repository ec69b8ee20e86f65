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

from .._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "answers": ("answers_match", "extract_answer", "is_correct", "math_reward"),
        "pass_at_k": ("pass_at_k", "mean_pass_at_k"),
        "results": ("ResultStore", "aggregate", "aggregate_runs"),
        "datasets": ("MATH_DATASETS", "load_math_dataset"),
        "pistar": ("PiStarLogitsProcessor",),
        "policies": ("Policy", "load_policy"),
        "generation": ("DecodingConfig", "TransformersGenerator", "build_generator", "encode_prompts"),
        "reward_models": ("SequenceScorer",),
        "judge": ("JudgeError", "LocalJudge", "OpenAIJudge", "length_controlled_win_rate", "win_rate"),
        "mc": ("run_lm_eval",),
    },
)
