"""GPU check: the fused LCO losses and LCOTrainer on a CUDA device, in one JSON object (never part of CI).

Six checks, chosen with ``--checks`` (default ``a,b,c,d,e,f``), unattended in about 8 minutes on one
H100/H200 (``--budget-s``, default 480: a trainer check that would start past it is skipped with that
reason, and each trainer subprocess is killed after ``--worker-timeout-s``, default 150):

a. One forward + backward of the LM-head loss of z = h Wᵀ w.r.t. ``hidden`` and ``weight`` at
   N = 16384 tokens, V = 152064, H = 2048 (``--n``, ``--vocab``, ``--hidden``), for LCO-KLD, LCO-LCH,
   LCO-MSE (eqs. 8–10 of "Stabilizing Policy Optimization via Logits Convexity") and cross-entropy
   (SFT, eq. 1):

   - ``fused``: :func:`lco.fused_lco_loss` / :func:`lco.fused_sft_loss` at their default chunk size;
   - ``naive``: ``z = (hidden @ weight.T).float()`` for all N tokens, then ``lco.lco_<loss>`` /
     ``lco.sft_loss`` and autograd (the ``[N, V]`` logits and autograd's intermediates all live at
     once; at the default sizes one fp32 ``[N, V]`` block is 10 GB, so it may run out of memory:
     ``torch.cuda.OutOfMemoryError`` is recorded as ``{"oom": true}``, not raised);
   - ``liger`` (cross-entropy only): Liger-Kernel's ``LigerFusedLinearCrossEntropyLoss``, the
     yardstick for a fused LM-head loss; imported lazily and skipped with the import error when absent.

   Inputs are the trainer's on-policy step with sparse outcome advantages (eq. 11): ``[N]`` token
   advantages and sampled actions (fused: :class:`lco.SparseAdvantages`, ``old_logits=None``; naive:
   ``lco.sparse_advantages`` inside the measured step, ``z.detach()`` as z_old), mean-normalised (§4.4).
   Per step: ``peak_mib`` = ``torch.cuda.max_memory_allocated`` during the step minus the memory
   allocated right before it (the inputs), parameter gradients included; ``time_s`` = median
   CUDA-synchronised wall time over ``--repeats`` steps after ``--warmup`` untimed ones; ``loss`` =
   the value of the first step (fused and naive compute the same quantity).

b. ``--steps`` (default 5) ``LCOTrainer`` steps of a randomly initialised Qwen2-0.5B-sized policy
   (hidden 896, 24 layers, 14 heads, 2 KV heads, intermediate 4864, vocabulary 151936) with
   ``objective="lco_kld"``, ``advantage="dpo_dense"`` (eq. 13; φ_DPO and φ_ref are small random
   Qwen2 models of the same vocabulary), all built from configs and saved with ``save_pretrained``
   to a temporary directory (no hub access), with a word-level tokenizer of the same vocabulary;
   weights stored in bf16 under ``--dtype bf16`` (as the real checkpoint), trained with ``bf16=True``.
   Per step 8 completions (2 prompts of 16 tokens × 4) of up to ``--completion-length`` (128) tokens.
   Records TRL's ``step_time`` per step, its median after the first (warm-up) step, and
   ``torch.cuda.max_memory_allocated`` / ``max_memory_reserved`` over ``train()``.

c. The same with ``use_vllm=True, vllm_mode="colocate"``, when ``import vllm`` works. vLLM allocates
   its KV cache outside torch's caching allocator, so ``device_used_mib`` (from
   ``torch.cuda.mem_get_info``) is recorded next to the torch peak.

d. The same with LoRA (``peft_config``: r = 16, α = 32 on the attention and MLP projections), with vLLM
   colocate when ``import vllm`` works (else HF generation; ``use_vllm`` says which), when ``import peft``
   works. The dense advantage's default anchor (m = 0) is the base with the adapters disabled: no copy
   (``anchor`` in the record; :mod:`lco.trainer.anchor`).

e. ``--sharded-steps`` (default 3) steps under DeepSpeed ZeRO-3, one process (``torch.distributed`` of
   world size 1), once with the anchor at the initial policy (m = 0: a partitioned frozen copy) and
   once per-step (m = 1), when ``import deepspeed`` works; completions of at most 64 tokens.

f. The same under FSDP2 (``fsdp="full_shard auto_wrap"``, ``fsdp_version=2``, Qwen2 decoder layers
   wrapped), m = 0 (a frozen copy placed by TRL's ``prepare_fsdp``) and m = 1.

b to f each run in a subprocess of this script (e and f one per anchor setting), so that one's
allocator state, vLLM engine, process group or crash cannot touch the others; a failure is recorded
as ``{"error": ...}`` with the end of its stderr.

Output: one JSON object on stdout (and in ``--out FILE``) with the configuration, every figure,
``skipped`` (a list of ``{check, reason}``) and ``errors``. Without a CUDA device nothing crashes:
every CUDA-only check is skipped with reason ``"no CUDA device"``. ``--device cpu`` runs check a on
the CPU (time and loss values only; CPU torch keeps no allocator counters) as a smoke test at tiny
sizes; b and c are CUDA-only.

    python benchmarks/gpu_check.py --out gpu_check.json                      # on the GPU machine
    python benchmarks/gpu_check.py --device cpu --checks a --n 64 --vocab 512 --hidden 32   # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

CHECKS = ("a", "b", "c", "d", "e", "f")
CUDA_ONLY = ("b", "c", "d", "e", "f")  # a also runs on the CPU, as a smoke test
# the subprocess cases of each trainer check: (worker name, settings)
CASES = {
    "b": (("b", {}),),
    "c": (("c", {"use_vllm": True}),),
    "d": (("d", {"peft": True}),),
    "e": (("e_m0", {"shard": "zero3", "anchor": 0}), ("e_m1", {"shard": "zero3", "anchor": 1})),
    "f": (("f_m0", {"shard": "fsdp", "anchor": 0}), ("f_m1", {"shard": "fsdp", "anchor": 1})),
}
WORKERS = {name: settings for cases in CASES.values() for name, settings in cases}
SHARDED_COMPLETION_LENGTH = 64
ZERO3_CONFIG = {
    "zero_optimization": {"stage": 3},
    "bf16": {"enabled": "auto"},
    "fp16": {"enabled": "auto"},
    "train_micro_batch_size_per_gpu": "auto",
    "gradient_accumulation_steps": "auto",
    "train_batch_size": "auto",
    "gradient_clipping": "auto",
}
LOSSES = ("lco_kld", "lco_lch", "lco_mse", "ce")
DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
BETA = 1.0
NO_CUDA = "no CUDA device"

# Qwen2-0.5B's architecture (its config.json), built here with random weights.
QWEN2_0_5B = dict(
    hidden_size=896,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
    intermediate_size=4864,
    vocab_size=151936,
    max_position_embeddings=32768,
    rope_theta=1000000.0,
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,
)
# φ_DPO and φ_ref: the same vocabulary (the dense advantage is over the policy's vocabulary), small.
REWARD_MODEL = dict(
    hidden_size=256,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=4,
    intermediate_size=1024,
    vocab_size=151936,
    max_position_embeddings=32768,
    tie_word_embeddings=False,
)


# --- arguments, probes, plan, JSON: no CUDA needed (tested on the CPU) ------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _checks(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [name for name in names if name not in CHECKS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated subset of {','.join(CHECKS)}, got {text!r}"
        )
    # Keep the canonical order and drop repeats: "c,a,a" runs a then c.
    return tuple(name for name in CHECKS if name in names)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpu_check.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--checks", type=_checks, default=CHECKS, help="subset of a,b,c,d,e,f (default all)")
    parser.add_argument("--n", type=_positive_int, default=16384, help="tokens N for check a")
    parser.add_argument("--vocab", type=_positive_int, default=152064, help="vocabulary V for check a")
    parser.add_argument("--hidden", type=_positive_int, default=2048, help="hidden size H for check a")
    parser.add_argument(
        "--dtype", choices=tuple(DTYPES), default="bf16", help="parameter dtype (default bf16)"
    )
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cpu: smoke run of a only")
    parser.add_argument("--steps", type=_positive_int, default=5, help="trainer steps for checks b, c, d")
    parser.add_argument(
        "--sharded-steps", type=_positive_int, default=3, help="trainer steps per case of checks e, f"
    )
    parser.add_argument(
        "--budget-s", type=_positive_int, default=480, help="no trainer check starts past this many seconds"
    )
    parser.add_argument(
        "--worker-timeout-s",
        type=_positive_int,
        default=150,
        help="each trainer subprocess is killed after this",
    )
    parser.add_argument("--warmup", type=_non_negative_int, default=1, help="untimed steps per case in a")
    parser.add_argument("--repeats", type=_positive_int, default=3, help="timed steps per case in a")
    parser.add_argument(
        "--completion-length", type=_positive_int, default=128, help="max completion tokens in b and c"
    )
    parser.add_argument("--out", help="also write the JSON object to this file")
    parser.add_argument("--worker", choices=tuple(WORKERS), help=argparse.SUPPRESS)  # internal: one case here
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``argv``; a bad argument exits with argparse's one-line ``error:`` message (status 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.device == "cpu" and args.dtype == "fp16":
        # CPU matmuls in fp16 are slow or unsupported depending on the build; nothing to learn there.
        parser.error("argument --dtype: fp16 needs --device cuda")
    return args


def probe_liger():
    """``(LigerFusedLinearCrossEntropyLoss, None)`` or ``(None, reason)``; imported only when called."""
    try:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss
    except Exception as exc:  # ImportError, or Triton / CUDA errors raised while importing
        return None, f"liger_kernel not importable: {type(exc).__name__}: {exc}"
    return LigerFusedLinearCrossEntropyLoss, None


def probe_vllm() -> str | None:
    """``None`` when ``import vllm`` works, else the reason it does not."""
    return probe_module("vllm")


def probe_module(name: str) -> str | None:
    """``None`` when ``import name`` works, else the reason it does not."""
    try:
        __import__(name)
    except Exception as exc:
        return f"{name} not importable: {type(exc).__name__}: {exc}"
    return None


def plan(
    checks: tuple[str, ...],
    device: str,
    cuda_available: bool,
    liger_reason: str | None,
    vllm_reason: str | None,
    peft_reason: str | None = None,
    deepspeed_reason: str | None = None,
) -> tuple[list[str], list[dict], bool]:
    """Which checks run, which are skipped and why, and whether a includes Liger.

    Returns ``(to_run, skipped, with_liger)``. The ``*_reason`` arguments are the probes' answers
    (``None`` = importable); they are only consulted for checks that would otherwise run. d runs
    without vLLM (HF generation) when vLLM is missing; it needs peft, e needs deepspeed.
    """
    to_run: list[str] = []
    skipped: list[dict] = []
    with_liger = False
    for check in checks:
        if device == "cuda" and not cuda_available:
            skipped.append({"check": check, "reason": NO_CUDA})
        elif device == "cpu" and check in CUDA_ONLY:
            skipped.append({"check": check, "reason": "CUDA-only check; --device cpu runs check a only"})
        elif check == "c" and vllm_reason is not None:
            skipped.append({"check": check, "reason": vllm_reason})
        elif check == "d" and peft_reason is not None:
            skipped.append({"check": check, "reason": peft_reason})
        elif check == "e" and deepspeed_reason is not None:
            skipped.append({"check": check, "reason": deepspeed_reason})
        else:
            to_run.append(check)
    if "a" in to_run:
        if device == "cpu":
            skipped.append({"check": "a.liger", "reason": "Liger-Kernel's Triton kernels need a CUDA device"})
        elif liger_reason is not None:
            skipped.append({"check": "a.liger", "reason": liger_reason})
        else:
            with_liger = True
    return to_run, skipped, with_liger


def assemble(args: argparse.Namespace, environment: dict, results: dict, skipped: list, errors: list) -> dict:
    """The one JSON object: configuration, environment, figures per check, skips and errors."""
    return {
        "config": {
            "checks": list(args.checks),
            "device": args.device,
            "dtype": args.dtype,
            "n": args.n,
            "vocab": args.vocab,
            "hidden": args.hidden,
            "warmup": args.warmup,
            "repeats": args.repeats,
            "steps": args.steps,
            "sharded_steps": args.sharded_steps,
            "completion_length": args.completion_length,
            "budget_s": args.budget_s,
        },
        "environment": environment,
        "results": results,
        "skipped": skipped,
        "errors": errors,
    }


def environment_info(torch, device: str) -> dict:
    info = {"torch": torch.__version__, "python": sys.version.split()[0]}
    for name in ("transformers", "trl", "accelerate", "peft", "deepspeed", "liger_kernel", "vllm"):
        try:
            from importlib.metadata import version

            info[name] = version(name.replace("_", "-"))
        except Exception:
            info[name] = None
    if device == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_total_mib"] = torch.cuda.get_device_properties(0).total_memory / 2**20
        info["cuda"] = torch.version.cuda
    return info


# --- check a: one loss step per (loss, implementation) ---------------------------------------------


def _loss_inputs(torch, n, v, h, dtype, device, seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    hidden = torch.randn(n, h, generator=g).to(device=device, dtype=dtype)
    weight = (torch.randn(v, h, generator=g) / h**0.5).to(device=device, dtype=dtype)
    return {
        "hidden": hidden.requires_grad_(),
        "weight": weight.requires_grad_(),
        "token_advantages": torch.randn(n, generator=g).to(device),
        "actions": torch.randint(0, v, (n,), generator=g).to(device),
    }


def loss_step(torch, lco, loss: str, impl: str, inp: dict, liger_cls=None):
    """One forward (returns the loss tensor) of ``loss`` by ``impl``, in the trainer's on-policy form."""
    hidden, weight, actions = inp["hidden"], inp["weight"], inp["actions"]
    if impl == "liger":
        out = liger_cls()(weight, hidden, actions)
        # Liger versions with optional extra outputs (z-loss, accuracy) return a tuple, the loss first.
        return out[0] if isinstance(out, tuple) else out
    if impl == "fused":
        if loss == "ce":
            return lco.fused_sft_loss(hidden, weight, actions)
        adv = lco.SparseAdvantages(inp["token_advantages"], actions)
        return lco.fused_lco_loss(hidden, weight, loss=loss, beta=BETA, advantages=adv, old_logits=None)
    # naive: what a trainer without the fused path does — fp32 logits for every token at once.
    z = (hidden @ weight.T).float()
    if loss == "ce":
        return lco.sft_loss(z, actions)
    with torch.no_grad():
        adv = lco.normalize_advantages(
            lco.sparse_advantages(inp["token_advantages"], actions, z.shape[-1]), "mean"
        )
    return getattr(lco, loss)(z, z.detach(), adv, BETA)


def _sync(torch, device):
    if device == "cuda":
        torch.cuda.synchronize()


def measure_loss(torch, lco, loss, impl, inp, device, warmup, repeats, liger_cls=None) -> dict:
    """Loss value, median time and (CUDA) peak extra memory of forward + backward; OOM is a figure."""
    cuda = device == "cuda"
    times: list[float] = []
    peak_mib = None
    value = None
    try:
        for i in range(warmup + repeats):
            # Fresh gradients every step, so each step's peak includes allocating them.
            inp["hidden"].grad = None
            inp["weight"].grad = None
            _sync(torch, device)
            if cuda:
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
            start = time.perf_counter()
            out = loss_step(torch, lco, loss, impl, inp, liger_cls)
            out.backward()
            _sync(torch, device)
            elapsed = time.perf_counter() - start
            if value is None:
                value = float(out.detach().float())
            del out
            if cuda:
                step_peak = (torch.cuda.max_memory_allocated() - base) / 2**20
                peak_mib = step_peak if peak_mib is None else max(peak_mib, step_peak)
            if i >= warmup:
                times.append(elapsed)
    except torch.cuda.OutOfMemoryError as exc:
        record = {"oom": True, "error": str(exc).splitlines()[0], "steps_done": len(times)}
        if cuda:
            record["peak_mib_before_oom"] = (torch.cuda.max_memory_allocated() - base) / 2**20
        return record
    finally:
        inp["hidden"].grad = None
        inp["weight"].grad = None
        if cuda:
            torch.cuda.empty_cache()
    return {
        "oom": False,
        "loss": value,
        "time_s": statistics.median(times),
        "times_s": times,
        "peak_mib": peak_mib,
    }


def check_losses(args, with_liger: bool) -> dict:
    import torch

    import lco

    dtype = getattr(torch, DTYPES[args.dtype])
    inp = _loss_inputs(torch, args.n, args.vocab, args.hidden, dtype, args.device)
    liger_cls = probe_liger()[0] if with_liger else None
    out: dict = {"n": args.n, "vocab": args.vocab, "hidden": args.hidden, "dtype": args.dtype, "losses": {}}
    for loss in LOSSES:
        impls = (
            ("fused", "liger", "naive") if (loss == "ce" and liger_cls is not None) else ("fused", "naive")
        )
        # Naive last: if it runs out of memory, the others' figures are already taken.
        row = {
            impl: measure_loss(torch, lco, loss, impl, inp, args.device, args.warmup, args.repeats, liger_cls)
            for impl in impls
        }
        fused, naive = row["fused"], row["naive"]
        if not fused["oom"] and not naive["oom"]:
            # Same quantity both ways; in bf16 the naive logits are rounded to bf16 first.
            row["loss_rel_diff"] = abs(fused["loss"] - naive["loss"]) / max(abs(naive["loss"]), 1e-30)
            row["time_ratio"] = fused["time_s"] / naive["time_s"]
            if fused["peak_mib"] is not None and naive["peak_mib"]:
                row["mem_ratio"] = fused["peak_mib"] / naive["peak_mib"]
        out["losses"][loss] = row
    ce_fused = out["losses"]["ce"]["fused"]
    liger = out["losses"]["ce"].get("liger")
    for loss in LOSSES:
        fused = out["losses"][loss]["fused"]
        if loss != "ce" and not fused["oom"] and not ce_fused["oom"]:
            out["losses"][loss]["ce_time_ratio"] = fused["time_s"] / ce_fused["time_s"]
        # Every fused loss (our CE included) against Liger's fused CE, the cost of a fused LM-head loss.
        if liger and not liger["oom"] and not fused["oom"]:
            out["losses"][loss]["liger_time_ratio"] = fused["time_s"] / liger["time_s"]
            if fused["peak_mib"] is not None and liger["peak_mib"]:
                out["losses"][loss]["liger_mem_ratio"] = fused["peak_mib"] / liger["peak_mib"]
    return out


# --- checks b and c: LCOTrainer steps (CUDA only, each in its own subprocess) ----------------------


def build_word_tokenizer(vocab_size: int):
    """A word-level tokenizer with exactly ``vocab_size`` tokens ("w4", "w5", ...), left padding."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3}
    vocab.update({f"w{i}": i for i in range(4, vocab_size)})
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        eos_token="<eos>",
        bos_token="<bos>",
        unk_token="<unk>",
        padding_side="left",
    )


def build_models(root: str, policy: dict, reward: dict, dtype: str = "fp32") -> dict:
    """Save a random Qwen2 policy (``policy`` config) and φ_DPO, φ_ref (``reward``) with the tokenizer.

    Weights are stored in bf16 when ``dtype`` is ``"bf16"`` (as the real Qwen2 checkpoints are, so
    that the trainer, which loads a checkpoint in its stored dtype, trains bf16 parameters), in fp32
    otherwise (fp16 training keeps fp32 master weights under autocast).
    """
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    if policy["vocab_size"] != reward["vocab_size"]:
        raise ValueError("the reward models must share the policy's vocabulary")
    tokenizer = build_word_tokenizer(policy["vocab_size"])
    ids = dict(
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    paths = {}
    for name, config, seed in (("policy", policy, 0), ("dpo", reward, 1), ("ref", reward, 2)):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(Qwen2Config(**config, **ids))
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        if dtype == "bf16":
            model = model.to(torch.bfloat16)
        path = os.path.join(root, name)
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
        paths[name] = path
        del model
    return paths


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def trainer_steps(
    args,
    use_vllm: bool,
    policy: dict = QWEN2_0_5B,
    reward: dict = REWARD_MODEL,
    peft: bool = False,
    shard: str | None = None,
    anchor: int | None = None,
) -> dict:
    """LCOTrainer steps (lco_kld + dpo_dense) on ``args.device``; time and peak memory.

    ``args.steps`` steps, or ``args.sharded_steps`` under ``shard`` (``"zero3"`` / ``"fsdp"``, one
    process); ``peft``: a LoRA adapter; ``anchor``: ``lco_anchor_update_steps`` (``None``: the default).
    """
    import torch
    from datasets import Dataset

    from lco.trainer import LCOConfig, LCOTrainer

    cuda = args.device == "cuda"
    if use_vllm or shard is not None:
        # vLLM's colocate mode, DeepSpeed and FSDP run inside torch.distributed; one process is rank 0 of 1.
        for key, value in (
            ("RANK", "0"),
            ("LOCAL_RANK", "0"),
            ("WORLD_SIZE", "1"),
            ("MASTER_ADDR", "127.0.0.1"),
            ("MASTER_PORT", str(_free_port())),
        ):
            os.environ.setdefault(key, value)
    root = tempfile.mkdtemp(prefix="lco_gpu_check_")
    paths = build_models(root, policy, reward, args.dtype)
    words = [f"w{i}" for i in range(4, 4 + 256)]
    prompts = Dataset.from_dict({"prompt": [" ".join(words[i : i + 16]) for i in range(0, 240, 4)]})

    def reward_fn(completions, **kwargs):
        return [float(len(c) % 3) for c in completions]

    settings = dict(
        output_dir=os.path.join(root, "out"),
        objective="lco_kld",
        advantage="dpo_dense",
        reward_model_path=paths["dpo"],
        reference_reward_model_path=paths["ref"],
        num_generations=4,
        per_device_train_batch_size=8,
        max_completion_length=args.completion_length
        if shard is None
        else min(args.completion_length, SHARDED_COMPLETION_LENGTH),
        max_steps=args.steps if shard is None else args.sharded_steps,
        report_to="none",
        use_cpu=not cuda,
        bf16=args.dtype == "bf16",
        fp16=args.dtype == "fp16",
        gradient_checkpointing=False,
        save_strategy="no",
        learning_rate=1e-6,
        seed=0,
        logging_steps=1,
    )
    if use_vllm:
        # A context of prompt (16 tokens) + completion: vLLM sizes its KV cache and warm-up for it.
        settings.update(
            use_vllm=True,
            vllm_mode="colocate",
            vllm_gpu_memory_utilization=0.3,
            vllm_max_model_length=args.completion_length + 64,
        )
    if anchor is not None:
        settings["lco_anchor_update_steps"] = anchor
    if shard is not None and not cuda:
        settings["ddp_backend"] = "gloo"  # the CPU smoke run (DS_ACCELERATOR=cpu for DeepSpeed)
    if shard == "zero3":
        settings["deepspeed"] = ZERO3_CONFIG
    elif shard == "fsdp":
        settings["fsdp"] = "full_shard auto_wrap"
        settings["fsdp_config"] = {
            "fsdp_version": 2,
            "transformer_layer_cls_to_wrap": ["Qwen2DecoderLayer"],
            "reshard_after_forward": True,
        }
    peft_config = None
    if peft:
        from peft import LoraConfig

        targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
        peft_config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=targets)
    trainer = LCOTrainer(
        paths["policy"],
        reward_fn,
        LCOConfig(**settings),
        train_dataset=prompts,
        processing_class=build_word_tokenizer(policy["vocab_size"]),
        peft_config=peft_config,
    )
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    trainer.train()
    if cuda:
        torch.cuda.synchronize()
    total = time.perf_counter() - start
    step_times = [log["step_time"] for log in trainer.state.log_history if "step_time" in log]
    record = {
        "use_vllm": use_vllm,
        "peft": peft,
        "shard": shard,
        "anchor_update_steps": trainer.args.lco_anchor_update_steps,
        "anchor": None if trainer._anchor is None else trainer._anchor.kind,
        "steps": trainer.state.global_step,
        "policy_parameters": sum(
            p.ds_numel if hasattr(p, "ds_numel") else p.numel() for p in trainer.model.parameters()
        ),
        "trainable_parameters": sum(
            p.ds_numel if hasattr(p, "ds_numel") else p.numel()
            for p in trainer.model.parameters()
            if p.requires_grad
        ),
        "train_s": total,
        "step_times_s": step_times,
        # The first step pays for kernel selection and lazy initialisation; the median after it is the rate.
        "median_step_s": statistics.median(step_times[1:]) if len(step_times) > 1 else None,
    }
    if cuda:
        free, total_mem = torch.cuda.mem_get_info()
        record["peak_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
        record["peak_reserved_mib"] = torch.cuda.max_memory_reserved() / 2**20
        record["device_used_mib"] = (total_mem - free) / 2**20
    return record


def run_worker_subprocess(check: str, argv: list[str], timeout_s: float | None = None) -> dict:
    """Run one trainer case in a child process of this script; its last stdout line is its JSON."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    command = [sys.executable, os.path.abspath(__file__), *argv, "--worker", check]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, env=env, check=False, timeout=timeout_s
        )
    except subprocess.TimeoutExpired as exc:
        tail = (exc.stderr or b"")[-3000:]
        tail = tail.decode(errors="replace") if isinstance(tail, bytes) else tail
        return {"error": f"timed out after {timeout_s:.0f} s", "stderr_tail": tail}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"error": f"exit status {done.returncode}", "stderr_tail": done.stderr[-3000:]}
    return json.loads(lines[-1])


# --- main -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.worker:
        settings = dict(WORKERS[args.worker])
        if args.worker == "d":  # LoRA with vLLM colocate when vLLM imports, else HF generation
            settings["use_vllm"] = probe_vllm() is None
        use_vllm = settings.pop("use_vllm", False)
        print(json.dumps(trainer_steps(args, use_vllm=use_vllm, **settings)))
        return 0

    import torch

    cuda_available = torch.cuda.is_available()
    runs_on_cuda = args.device == "cuda" and cuda_available
    # Probe only what would otherwise run: importing vLLM costs seconds and touches the GPU.
    liger_reason = probe_liger()[1] if (runs_on_cuda and "a" in args.checks) else None
    vllm_reason = probe_vllm() if (runs_on_cuda and "c" in args.checks) else None
    peft_reason = probe_module("peft") if (runs_on_cuda and "d" in args.checks) else None
    deepspeed_reason = probe_module("deepspeed") if (runs_on_cuda and "e" in args.checks) else None
    to_run, skipped, with_liger = plan(
        args.checks, args.device, cuda_available, liger_reason, vllm_reason, peft_reason, deepspeed_reason
    )
    started = time.perf_counter()

    results: dict = {}
    errors: list[dict] = []
    for check in to_run:
        try:
            if check == "a":
                results["a"] = check_losses(args, with_liger)
                if args.device == "cuda":
                    # Hand the cached blocks back before b and c's processes (and vLLM) size themselves.
                    torch.cuda.empty_cache()
            else:
                records = {}
                for name, _ in CASES[check]:
                    left = args.budget_s - (time.perf_counter() - started)
                    if left < 30:
                        skipped.append({"check": name, "reason": f"time budget of {args.budget_s} s spent"})
                        continue
                    records[name] = run_worker_subprocess(name, argv, min(args.worker_timeout_s, left))
                    if "error" in records[name]:
                        errors.append({"check": name, "error": records[name]["error"]})
                if records:
                    results[check] = records[check] if list(records) == [check] else records
        except Exception as exc:  # one check's failure is a figure; the others still report
            errors.append({"check": check, "error": f"{type(exc).__name__}: {exc}"})
    report = assemble(args, environment_info(torch, args.device), results, skipped, errors)
    text = json.dumps(report, indent=2)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
