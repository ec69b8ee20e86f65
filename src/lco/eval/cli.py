"""``lco eval``: the paper's evaluation of a policy (§5–§6).

Suites:
  math   pass@1 / pass@k on MATH500, AMC23, MinervaMath (answers verified with math-verify)
  rm     reward-model scores of the completions (QA-Feedback: relevance, factuality, completeness)
  judge  win rate and length-controlled win rate against reference outputs (AlpacaEval 2.0 style)
  mc     multiple-choice accuracy, delegated to lm-eval-harness

Policies: a checkpoint (--model), π* of eq. (6) decoded token by token (--policy pistar --model OLD
--reward-model DPO --ref-model REF --beta B), or the DPO reward model itself (--policy rm
--reward-model DPO). Results are written per seed as each completes under --out; re-running the same
command resumes, skipping finished seeds. See docs/eval.md.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from ..advantages import NORMALIZATIONS

SUITES = ("math", "rm", "judge", "mc")


def add_parser(subparsers) -> None:
    from .datasets import MATH_DATASETS
    from .generation import BACKENDS, CHAT_TEMPLATE_MODES
    from .policies import POLICIES
    from .reward_models import RM_INPUT_FORMATS

    p = subparsers.add_parser(
        "eval",
        help="Evaluate a policy: math pass@k, reward-model scores, judge win rate, multiple choice.",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--suite", required=True, choices=SUITES, help="what to measure")
    p.add_argument("--out", required=True, help="output directory (per-seed JSON files, summary.json)")

    g = p.add_argument_group("policy")
    g.add_argument(
        "--policy", default="checkpoint", choices=POLICIES, help="what to decode from (default: checkpoint)"
    )
    g.add_argument("--model", help="checkpoint path or hub id (π_old for --policy pistar)")
    g.add_argument("--reward-model", help="φ_DPO: the DPO-trained reward model (--policy pistar / rm)")
    g.add_argument("--ref-model", help="φ_ref: the reference model of φ_DPO (--policy pistar)")
    g.add_argument("--beta", type=float, default=1.0, help="β of eq. (6) for --policy pistar (default: 1.0)")
    g.add_argument(
        "--normalize",
        default="mean",
        choices=NORMALIZATIONS,
        help="per-step advantage normalisation for π*, as in the trainer (default: mean)",
    )

    g = p.add_argument_group("decoding")
    g.add_argument("--seeds", type=int, default=4, help="number of sampling seeds, 0 … N−1 (default: 4)")
    g.add_argument(
        "--decoding",
        default="sample",
        choices=("sample", "greedy", "both"),
        help="sample with --temperature/--top-p per seed, decode greedily once, or both (default: sample)",
    )
    g.add_argument("--temperature", type=float, default=0.6, help="sampling temperature (paper: 0.6)")
    g.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling mass (paper: 0.95)")
    g.add_argument("--max-new-tokens", type=int, default=2048, help="generation length limit (paper: 2048)")
    g.add_argument(
        "--samples-per-seed", type=int, default=1, help="completions per prompt and seed (default: 1)"
    )
    g.add_argument(
        "--k",
        type=int,
        nargs="+",
        default=[1],
        help="pass@k values (math; k ≤ samples per seed, or ≤ seeds × samples for the pooled estimate)",
    )
    g.add_argument(
        "--chat-template",
        default="auto",
        choices=CHAT_TEMPLATE_MODES,
        help="wrap prompts in the tokenizer's chat template (auto: when it has one)",
    )
    g.add_argument("--backend", default="transformers", choices=BACKENDS, help="generation backend")
    g.add_argument("--batch-size", type=int, default=16, help="sequences per generation batch")
    g.add_argument("--device", default="auto", help="torch device (auto: cuda if available)")
    g.add_argument(
        "--dtype",
        default="auto",
        choices=("auto", "float32", "bfloat16", "float16"),
        help="auto: bf16 on GPU",
    )

    g = p.add_argument_group("data")
    g.add_argument(
        "--datasets",
        nargs="+",
        default=list(MATH_DATASETS),
        metavar="NAME[=PATH]",
        help=f"math sets: {', '.join(MATH_DATASETS)} (from the hub) or NAME=PATH.jsonl (default: all three)",
    )
    g.add_argument("--data-dir", help="read the math sets from DIR/<name>.jsonl instead of the hub")
    g.add_argument(
        "--data", help="--suite rm: JSONL with 'prompt'; --suite judge: JSONL with 'instruction', 'output'"
    )
    g.add_argument("--limit", type=int, help="evaluate only the first N examples of each set (smoke tests)")
    g.add_argument(
        "--prompt-template",
        metavar="TEXT",
        help="--suite math: how a problem becomes the prompt, {problem} standing for it (default: the paper's "
        "'{problem}\\nPlease reason step by step, and put your final answer within \\boxed{}.'); "
        "'{problem}' alone sends the raw problem, for a model trained on raw prompts",
    )

    g = p.add_argument_group("reward models (--suite rm)")
    g.add_argument(
        "--score-model",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a sequence-classification reward model; repeat for several (e.g. relevance=…)",
    )
    g.add_argument(
        "--rm-input-format", default="auto", choices=RM_INPUT_FORMATS, help="how (prompt, completion) is fed"
    )
    g.add_argument(
        "--rm-max-length", type=int, default=4096, help="truncate scorer inputs to this many tokens"
    )

    g = p.add_argument_group("judge (--suite judge)")
    g.add_argument("--judge-model", help="a local causal LM as judge (path or hub id)")
    g.add_argument("--judge-url", help="an OpenAI-compatible API base URL, e.g. https://api.openai.com/v1")
    g.add_argument("--judge-name", default="gpt-4o-2024-11-20", help="model name sent to --judge-url")
    g.add_argument(
        "--judge-api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key"
    )
    g.add_argument("--judge-retries", type=int, default=3, help="retries of a failed judge request")

    g = p.add_argument_group("multiple choice (--suite mc)")
    g.add_argument("--tasks", nargs="+", default=["mmlu"], help="lm-eval task names (default: mmlu)")
    g.add_argument("--num-fewshot", type=int, help="few-shot examples (default: the task's)")
    p.set_defaults(func=run)


def _fingerprint(rows: list[dict[str, str]]) -> str:
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:16]


def _validate(args: argparse.Namespace) -> None:
    """Every check that needs no model, so that a typo fails in a second, not after loading."""
    from ..preflight import check_model_path, check_tokenizer, check_writable_dir
    from .policies import check_policy_args, resolve_device

    # a finished seed is written under --out: an unwritable folder must fail now, not after it
    check_writable_dir(args.out, "--out")
    resolve_device(args.device)
    if args.seeds < 1:
        raise ValueError(f"--seeds must be at least 1 (the number of sampling seeds), got {args.seeds}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be at least 1, got {args.limit}")
    if any(k < 1 for k in args.k):
        raise ValueError(f"--k values must be at least 1, got {args.k}")
    n_max = args.seeds * args.samples_per_seed
    if args.suite == "math" and args.decoding != "greedy" and max(args.k) > n_max:
        raise ValueError(
            f"--k {max(args.k)} needs at least {max(args.k)} samples per problem, but --seeds × --samples-per-seed "
            f"gives {n_max}"
        )
    if args.suite == "mc":
        if args.policy == "pistar":
            raise ValueError(
                "--suite mc evaluates a checkpoint with lm-eval; --policy pistar is not a checkpoint"
            )
        if args.backend != "transformers":
            raise ValueError("--suite mc runs through lm-eval's HF backend; --backend does not apply")
    check_policy_args(args.policy, args.model, args.reward_model, args.ref_model, args.beta)
    if args.backend == "vllm" and args.suite != "mc":
        from .generation import vllm_available

        if args.policy == "pistar":
            raise ValueError("--backend vllm cannot decode --policy pistar; use --backend transformers")
        if not vllm_available():
            raise ValueError(
                "--backend vllm: vLLM is not installed (pip install 'lco[vllm]' on a GPU machine)"
            )
    if args.suite in ("rm", "judge") and not args.data:
        what = "'prompt'" if args.suite == "rm" else "'instruction' and 'output' (the reference)"
        raise ValueError(f"--suite {args.suite} needs --data FILE.jsonl with {what} fields")
    if args.suite == "rm" and not args.score_model:
        raise ValueError("--suite rm needs at least one --score-model NAME=PATH")
    if args.suite == "judge" and bool(args.judge_model) == bool(args.judge_url):
        raise ValueError("--suite judge needs exactly one of --judge-model (local) or --judge-url (endpoint)")
    check_prompt_template(args.prompt_template, args.suite)
    # last: the flag checks above say what is wrong with the command before a path is looked at
    for flag, path in (("--model", args.model), ("--reward-model", args.reward_model)):
        check_model_path(path, flag)
    # the tokenizer comes from the model decoded from: a folder left by a killed save has none
    check_tokenizer(
        args.reward_model if args.policy == "rm" else args.model,
        "--reward-model" if args.policy == "rm" else "--model",
    )
    if args.policy == "pistar":
        check_model_path(args.ref_model, "--ref-model")
    if args.suite == "rm":
        from .reward_models import parse_named_paths

        for name, path in parse_named_paths(args.score_model, "--score-model"):
            check_model_path(path, f"--score-model {name}")
    if args.suite == "judge" and args.judge_model:
        check_model_path(args.judge_model, "--judge-model")


def check_prompt_template(template: str | None, suite: str) -> None:
    """``--prompt-template`` is for the math suite and holds ``{problem}`` (and no other field)."""
    if template is None:
        return
    if suite != "math":
        raise ValueError(
            f"--prompt-template applies to --suite math (the problems' prompts), not --suite {suite}"
        )
    try:
        rendered = template.format(problem="\0")
    except (KeyError, IndexError, ValueError) as err:
        raise ValueError(
            f"--prompt-template {template!r} is not a format string with only {{problem}} in it ({err!r}); "
            "write a literal brace as {{ or }}"
        ) from err
    if "\0" not in rendered:
        raise ValueError(
            f"--prompt-template {template!r} has no {{problem}}: every prompt would be the same text"
        )


def _common_config(args: argparse.Namespace) -> dict[str, Any]:
    config = {
        "suite": args.suite,
        "policy": args.policy,
        "model": args.model,
        "reward_model": args.reward_model,
        "ref_model": args.ref_model if args.policy == "pistar" else None,
        "beta": args.beta if args.policy == "pistar" else None,
        "normalize": args.normalize if args.policy == "pistar" else None,
        "dtype": args.dtype,
        "limit": args.limit,
    }
    if args.suite != "mc":
        config.update(
            backend=args.backend,
            temperature=args.temperature,
            top_p=args.top_p,
            max_new_tokens=args.max_new_tokens,
            samples_per_seed=args.samples_per_seed,
            chat_template=args.chat_template,
        )
    return config


def run(args: argparse.Namespace) -> int:
    from .generation import DecodingConfig, build_generator
    from .suites import plan_runs

    _validate(args)
    decoding = DecodingConfig(
        greedy=args.decoding == "greedy",  # a greedy-only evaluation needs no valid temperature
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        num_samples=args.samples_per_seed,
    )
    runs = plan_runs(args.seeds, "sample" if args.suite == "mc" else args.decoding)
    config = _common_config(args)

    @functools.cache
    def make_generator():
        return build_generator(
            args.policy,
            args.model,
            args.reward_model,
            args.ref_model,
            args.beta,
            args.normalize,
            backend=args.backend,
            device=args.device,
            dtype=args.dtype,
            batch_size=args.batch_size,
        )

    if args.suite == "math":
        store, summary = _run_math(args, config, decoding, runs, make_generator)
    elif args.suite == "rm":
        store, summary = _run_rm(args, config, decoding, runs, make_generator)
    elif args.suite == "judge":
        from .judge import JudgeError

        try:
            store, summary = _run_judge(args, config, decoding, runs, make_generator)
        except JudgeError as err:  # finished runs and generations are on disk; say what failed, no traceback
            print(f"lco eval: error: {err}", file=sys.stderr, flush=True)
            return 2
    else:
        store, summary = _run_mc(args, config, runs)
    path = store.write_summary({"config": config, "results": summary})
    print(format_summary(args.suite, summary))
    print(f"summary written to {path}")
    return 0


def _run_math(args, config, decoding, runs, make_generator):
    from .datasets import load_math_dataset, resolve_math_sources
    from .results import ResultStore
    from .suites import MATH_PROMPT, evaluate_math

    sources = resolve_math_sources(args.datasets, args.data_dir)
    datasets = {name: load_math_dataset(name, path, args.limit) for name, path in sources}
    template = MATH_PROMPT if args.prompt_template is None else args.prompt_template
    config.update(
        prompt_template=template,
        datasets={
            name: {
                "source": str(path) if path else "hub",
                "examples": len(rows),
                "sha256": _fingerprint(rows),
            }
            for (name, path), rows in zip(sources, datasets.values(), strict=True)
        },
    )
    store = ResultStore(args.out, config)
    ks = sorted(set(args.k))
    return store, evaluate_math(
        make_generator, store, datasets, decoding, runs, ks, args.chat_template, prompt_template=template
    )


def _device_and_dtype(args):
    from .policies import resolve_device, resolve_dtype

    device = resolve_device(args.device)
    return device, resolve_dtype(args.dtype, device)


def _run_rm(args, config, decoding, runs, make_generator):
    from .datasets import RM_FIELDS, read_records, select_fields
    from .results import ResultStore
    from .reward_models import SequenceScorer, parse_named_paths
    from .suites import evaluate_rm

    rows = select_fields(read_records(args.data, "--data"), RM_FIELDS, args.data)[: args.limit]
    named = parse_named_paths(args.score_model, "--score-model")
    if any(name == "average" for name, _ in named):
        raise ValueError("--score-model: 'average' is reserved for the mean over reward models; rename it")
    name = Path(args.data).stem
    config.update(
        data={"source": args.data, "examples": len(rows), "sha256": _fingerprint(rows)},
        score_models=dict(named),
        rm_input_format=args.rm_input_format,
        rm_max_length=args.rm_max_length,
    )
    store = ResultStore(args.out, config)

    @functools.cache
    def make_scorers():
        device, dtype = _device_and_dtype(args)
        return [
            SequenceScorer(n, path, device, dtype, args.rm_input_format, args.batch_size, args.rm_max_length)
            for n, path in named
        ]

    return store, evaluate_rm(
        make_generator, make_scorers, store, name, rows, decoding, runs, args.chat_template
    )


def _run_judge(args, config, decoding, runs, make_generator):
    from .datasets import JUDGE_FIELDS, read_records, select_fields
    from .judge import LocalJudge, OpenAIJudge
    from .results import ResultStore
    from .suites import evaluate_judge

    rows = select_fields(read_records(args.data, "--data"), JUDGE_FIELDS, args.data)[: args.limit]
    name = Path(args.data).stem
    config.update(
        data={"source": args.data, "examples": len(rows), "sha256": _fingerprint(rows)},
        judge={"model": args.judge_model}
        if args.judge_model
        else {"url": args.judge_url, "name": args.judge_name},
    )
    # the endpoint's key is checked now, the connection on the first run to compute
    remote = (
        OpenAIJudge(args.judge_url, args.judge_name, args.judge_api_key_env, max_retries=args.judge_retries)
        if args.judge_url
        else None
    )
    store = ResultStore(args.out, config)

    @functools.cache
    def make_judge():
        if remote is not None:
            remote.check()
            return remote
        return LocalJudge(args.judge_model, *_device_and_dtype(args))

    return store, evaluate_judge(
        make_generator, make_judge, store, name, rows, decoding, runs, args.chat_template
    )


def _run_mc(args, config, runs):
    from .mc import require_lm_eval, run_lm_eval
    from .results import ResultStore
    from .suites import evaluate_mc

    require_lm_eval()
    config.update(tasks=list(args.tasks), num_fewshot=args.num_fewshot)
    store = ResultStore(args.out, config)
    path = args.reward_model if args.policy == "rm" else args.model
    device = str(_device_and_dtype(args)[0])

    def one_seed(seed: int) -> dict[str, float]:
        return run_lm_eval(
            path, list(args.tasks), seed, args.num_fewshot, args.batch_size, args.limit, device, args.dtype
        )

    return store, evaluate_mc(one_seed, store, list(args.tasks), runs)


def format_summary(suite: str, summary: dict[str, Any]) -> str:
    """A plain-text table: one line per dataset and metric, mean ± std over seeds (and greedy)."""
    from .results import format_aggregate

    lines = []
    for name, entry in summary.items():
        for metric, agg in entry.get("seeds", {}).items():
            lines.append(f"{suite}/{name:<14} {metric:<22} {format_aggregate(agg)}")
        for metric, value in entry.get("pooled", {}).items():
            if metric != "samples_per_problem":
                n = entry["pooled"]["samples_per_problem"]
                lines.append(
                    f"{suite}/{name:<14} {metric:<22} {value:.2f} (pooled over {n} samples per problem)"
                )
        for metric, value in entry.get("runs", {}).get("greedy", {}).items():
            lines.append(f"{suite}/{name:<14} {metric:<22} {value:.2f} (greedy)")
    return "\n".join(lines)
