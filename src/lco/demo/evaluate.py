"""Stage 4 — evaluation: pass@1 on the test and hard splits, sampled (T = 0.6, top-p 0.95, as in the
paper) and greedy, with :mod:`lco.eval`'s generation and math-verify answer checking.

Input: a policy — a checkpoint, π* (eq. 6) around the warm-up with φ_DPO/φ_ref, or φ_DPO itself —
and a sampling seed. Output (on disk): ``metrics.json`` (pass@1 per split and decoding) and
``completions.jsonl`` (every completion with its verdict).
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

from ..eval.answers import is_correct
from ..tasks.arithmetic import generate_splits
from .settings import EvalSettings, TaskSettings

SPLITS = ("test", "hard")  # the splits the demo evaluates every policy on; the report reads them from here
ALL_SPLITS = ("test", "hard", "validation")  # the study evaluates its selection runs on the validation split


def problems_evaluated(split: str, task: TaskSettings, settings: EvalSettings) -> int:
    """How many problems of ``split`` the evaluation takes: the first ``settings.<split>_problems``.

    The validation split's size is :func:`~lco.tasks.arithmetic.generate_splits`' default (it is not a
    field of :class:`TaskSettings`, whose fields key the cached warm-up)."""
    size = getattr(task, f"{split}_size", None)
    if size is None:
        size = inspect.signature(generate_splits).parameters[f"{split}_size"].default
    return min(getattr(settings, f"{split}_problems"), size)


def pass_at_one(
    model,
    tokenizer,
    problems,
    greedy: bool,
    max_new_tokens: int,
    temperature: float = 0.6,
    top_p: float = 0.95,
    seed: int = 0,
    batch_size: int = 128,
) -> tuple[float, list[tuple[str, bool]]]:
    """pass@1 (one completion per problem) of an in-memory model and the (completion, correct) pairs.

    The global RNG is restored afterwards, so measuring a model during training does not change the
    training's own sampling.
    """
    import torch

    from ..eval.generation import DecodingConfig, TransformersGenerator, encode_prompts
    from ..eval.policies import Policy

    was_training = model.training
    model.eval()
    policy = Policy("checkpoint", "in-memory", model, tokenizer)
    decoding = DecodingConfig(
        greedy=greedy, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens
    )
    prompt_ids = encode_prompts(tokenizer, [p.prompt for p in problems], chat_template="off")
    with torch.random.fork_rng():
        completions = TransformersGenerator(policy, batch_size).generate(prompt_ids, decoding, seed)
    model.train(was_training)
    verdicts = [
        (c[0].text, is_correct(c[0].text, str(p.answer))) for c, p in zip(completions, problems, strict=True)
    ]
    return sum(ok for _, ok in verdicts) / len(verdicts), verdicts


def _generator(policy: dict, batch_size: int):
    """The generator of ``policy`` (``{"kind", "model", "reward_model", "ref_model", "beta"}``) on the
    demo's device and dtype."""
    from ..eval.generation import build_generator

    return build_generator(
        policy["kind"],
        model=policy.get("model"),
        reward_model=policy.get("reward_model"),
        ref_model=policy.get("ref_model"),
        beta=policy.get("beta", 1.0),
        device="auto",
        dtype="float32",
        batch_size=batch_size,
    )


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
    generator = _generator(policy, settings.batch_size)
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


def greedy_pass_at_one(policy: dict, task: TaskSettings, problems: int, batch_size: int = 128) -> float:
    """Greedy pass@1 of ``policy`` (as :func:`evaluate_policy` takes it) on the first ``problems``
    test problems — the decoding the reward-model gate compares (Table 1's ordering)."""
    from ..eval.generation import DecodingConfig, encode_prompts

    test = generate_splits(**vars(task))["test"][:problems]
    generator = _generator(policy, batch_size)
    prompt_ids = encode_prompts(generator.tokenizer, [p.prompt for p in test], chat_template="off")
    completions = generator.generate(prompt_ids, DecodingConfig(greedy=True, max_new_tokens=16), seed=0)
    correct = sum(is_correct(c[0].text, str(p.answer)) for c, p in zip(completions, test, strict=True))
    return correct / len(test)
