"""Stage 4 — evaluation: pass@1 on the test and hard splits, sampled (T = 0.6, top-p 0.95, as in the
paper) and greedy, with :mod:`lco.eval`'s generation and math-verify answer checking.

Input: a policy — a checkpoint, π* (eq. 6) around the warm-up with φ_DPO/φ_ref, or φ_DPO itself —
and a sampling seed. Output (on disk): ``metrics.json`` (pass@1 per split and decoding) and
``completions.jsonl`` (every completion with its verdict).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..eval.answers import is_correct
from ..tasks.arithmetic import generate_splits
from .runtime import ALL_SPLITS, SPLITS, policy_generator, problems_evaluated
from .settings import EvalSettings, TaskSettings


def evaluate_policy(
    out_dir: Path,
    policy: dict,
    seed: int,
    task: TaskSettings,
    settings: EvalSettings,
    splits: tuple[str, ...] = SPLITS,
    progress=None,
) -> Path:
    """pass@1 of ``policy`` (``{"kind": "checkpoint"|"pistar"|"rm", "model", "reward_model",
    "ref_model", "beta"}``, as :func:`lco.eval.build_generator` takes it) on ``splits``; writes
    ``metrics.json``.

    Sampled pass@1 is the mean over problems of the fraction of ``settings.samples`` completions
    that are correct; ``metrics.json`` also keeps, per problem, that count (``sampled_correct``) and
    the greedy verdict (``greedy_correct``), so that the report can pair two policies problem by
    problem (paired bootstrap). ``completions.jsonl`` holds every completion with its verdict.
    """
    from ..eval.generation import DecodingConfig, encode_prompts

    out_dir = Path(out_dir)
    unknown = [s for s in splits if s not in ALL_SPLITS]
    if unknown:
        raise ValueError(f"splits must be among {', '.join(ALL_SPLITS)}, got {unknown}")
    all_splits = generate_splits(**vars(task))
    problems = {split: all_splits[split][: problems_evaluated(split, task, settings)] for split in splits}
    generator = policy_generator(policy, settings.batch_size)
    decodings = {
        "sampled": DecodingConfig(
            temperature=settings.temperature,
            top_p=settings.top_p,
            max_new_tokens=settings.max_new_tokens,
            num_samples=settings.samples,
        ),
        "greedy": DecodingConfig(greedy=True, max_new_tokens=settings.max_new_tokens),
    }
    metrics: dict = {"seed": seed, "policy": policy, "samples": settings.samples}
    with open(out_dir / "completions.jsonl", "w") as f:
        for split in splits:
            prompt_ids = encode_prompts(
                generator.tokenizer, [p.prompt for p in problems[split]], chat_template="off"
            )
            metrics[split] = {"problems": len(problems[split])}
            for name, decoding in decodings.items():
                completions = generator.generate(prompt_ids, decoding, seed=seed, desc=f"{split} {name}")
                counts = []
                for problem, samples in zip(problems[split], completions, strict=True):
                    verdicts = [is_correct(sample.text, str(problem.answer)) for sample in samples]
                    counts.append(sum(verdicts))
                    record = {
                        "split": split,
                        "decoding": name,
                        "prompt": problem.prompt,
                        "answer": problem.answer,
                    }
                    for sample, ok in zip(samples, verdicts, strict=True):
                        f.write(json.dumps({**record, "completion": sample.text, "correct": ok}) + "\n")
                per_problem = settings.samples if name == "sampled" else 1
                metrics[split][f"{name}_pass@1"] = sum(counts) / (per_problem * len(counts))
                metrics[split][f"{name}_correct"] = counts
                if progress is not None:
                    progress(1)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return out_dir / "metrics.json"
