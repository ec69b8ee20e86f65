"""Time and peak memory per training step: LCOTrainer against TRL's GRPOTrainer, in one run.

Cases (each in its own subprocess, so peak RSS is the case's own):
  trl_grpo          trl.GRPOTrainer, loss_type="grpo"                 (the baseline)
  lco_kld_outcome   LCOTrainer, objective="lco_kld", advantage="outcome"
  lco_kld_dpo_dense LCOTrainer, objective="lco_kld", advantage="dpo_dense" (two extra frozen forwards)

Same model, prompts, batch, completion length and seed for all. Per step we report the median of
TRL's own ``step_time`` (generation + loss + backward + optimizer) and of the update part alone
(``step_time`` minus the time spent in ``_generate_and_score_completions``), skipping the first
(warm-up) step. Peak memory is the process's peak RSS during training above its RSS right before
``train()`` (VmHWM is reset through /proc/self/clear_refs). Ratios are against trl_grpo measured
in the same run, since this shared 2-core machine is noisy.

    python benchmarks/step_vs_trl.py --json results/step_vs_trl.json [--quick]

Targets: time and memory ratios ≤ 1.1 for ``outcome``, ≤ 1.5 for ``dpo_dense``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

CASES = ("trl_grpo", "lco_kld_outcome", "lco_kld_dpo_dense")
TARGETS = {"lco_kld_outcome": 1.1, "lco_kld_dpo_dense": 1.5}


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status")


def _reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS


def build_models(root: str, vocab_size: int, hidden: int, layers: int) -> dict:
    """A word-level tokenizer of ``vocab_size`` tokens and Qwen2 models (policy; larger φ_DPO, φ_ref)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from lco.tasks import build_tiny_causal_lm

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3}
    vocab.update({f"w{i}": i + 4 for i in range(vocab_size - 4)})
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        eos_token="<eos>",
        bos_token="<bos>",
        unk_token="<unk>",
        padding_side="left",
    )
    paths = {}
    for name, size, seed in (("policy", hidden, 0), ("dpo", hidden * 2, 1), ("ref", hidden * 2, 2)):
        path = os.path.join(root, name)
        if not os.path.exists(os.path.join(path, "config.json")):
            model = build_tiny_causal_lm(
                tokenizer, hidden_size=size, num_layers=layers, num_heads=4, seed=seed
            )
            model.save_pretrained(path)
            tokenizer.save_pretrained(path)
        paths[name] = path
    return {"tokenizer": tokenizer, **paths}


def run_case(case: str, settings: dict) -> dict:
    """Train ``settings['steps']`` steps of one case in this process; return its measurements."""
    import torch

    torch.set_num_threads(settings["threads"])
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from lco.trainer import LCOConfig, LCOTrainer

    built = build_models(settings["models"], settings["vocab_size"], settings["hidden"], settings["layers"])
    words = [f"w{i}" for i in range(4, 4 + 64)]
    prompts = Dataset.from_dict({"prompt": [" ".join(words[i : i + 8]) for i in range(0, 56, 2)]})

    def reward(completions, **kwargs):
        return [float(len(c) % 3) for c in completions]

    common = dict(
        output_dir=tempfile.mkdtemp(),
        num_generations=4,
        per_device_train_batch_size=8,
        max_completion_length=settings["completion_length"],
        max_steps=settings["steps"],
        report_to="none",
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        save_strategy="no",
        learning_rate=1e-5,
        seed=0,
        logging_steps=1,
    )
    generation_seconds: list[float] = []

    def timed(cls):
        class Timed(cls):
            def _generate_and_score_completions(self, inputs):
                start = time.perf_counter()
                out = super()._generate_and_score_completions(inputs)
                generation_seconds.append(time.perf_counter() - start)
                return out

        return Timed

    if case == "trl_grpo":
        trainer = timed(GRPOTrainer)(
            built["policy"],
            reward,
            GRPOConfig(loss_type="grpo", **common),
            train_dataset=prompts,
            processing_class=built["tokenizer"],
        )
    else:
        advantage = case.removeprefix("lco_kld_")
        config = LCOConfig(
            objective="lco_kld",
            advantage=advantage,
            reward_model_path=built["dpo"],
            reference_reward_model_path=built["ref"],
            **common,
        )
        trainer = timed(LCOTrainer)(
            built["policy"], reward, config, train_dataset=prompts, processing_class=built["tokenizer"]
        )
    baseline_kib = _rss_kib("VmRSS")
    _reset_peak_rss()
    trainer.train()
    peak_kib = _rss_kib("VmHWM")
    step_times = [log["step_time"] for log in trainer.state.log_history if "step_time" in log]
    update_times = [s - g for s, g in zip(step_times, generation_seconds, strict=False)]
    return {
        "case": case,
        "median_step_s": statistics.median(step_times[1:]),
        "median_update_s": statistics.median(update_times[1:]),
        "peak_extra_mib": (peak_kib - baseline_kib) / 1024,
        "steps_timed": len(step_times) - 1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", required=True, help="where to write the records")
    parser.add_argument("--quick", action="store_true", help="a tiny configuration, to check the script runs")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved repetitions of all cases")
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)  # internal: run one case
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.case:
        print(json.dumps(run_case(args.case, json.loads(args.settings))))
        return

    settings = (
        dict(vocab_size=2048, hidden=64, layers=2, completion_length=8, steps=3, threads=2)
        if args.quick
        else dict(vocab_size=32000, hidden=256, layers=4, completion_length=64, steps=7, threads=2)
    )
    settings["models"] = tempfile.mkdtemp(prefix="lco_bench_models_")
    # Cases run interleaved, `--rounds` times; each case keeps its fastest round (the least disturbed
    # by other load on a shared machine) for time, and its largest peak for memory.
    rounds: dict[str, list[dict]] = {case: [] for case in CASES}
    for _ in range(args.rounds):
        for case in CASES:
            command = [sys.executable, __file__, "--json", args.json, "--case", case]
            command += ["--settings", json.dumps(settings)]
            env = {**os.environ, "OMP_NUM_THREADS": str(settings["threads"]), "HF_HUB_OFFLINE": "1"}
            done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
            if done.returncode != 0:
                raise SystemExit(f"case {case} failed:\n{done.stderr[-4000:]}")
            rounds[case].append(json.loads(done.stdout.strip().splitlines()[-1]))
    records = []
    for case in CASES:
        runs = rounds[case]
        record = dict(min(runs, key=lambda r: r["median_step_s"]))
        record["median_update_s"] = min(r["median_update_s"] for r in runs)
        record["peak_extra_mib"] = max(r["peak_extra_mib"] for r in runs)
        record["rounds"] = len(runs)
        records.append(record)
    base = records[0]
    for record in records:
        record.update({k: v for k, v in settings.items() if k != "models"})
        record["time_ratio"] = record["median_step_s"] / base["median_step_s"]
        record["update_time_ratio"] = record["median_update_s"] / base["median_update_s"]
        record["mem_ratio"] = record["peak_extra_mib"] / base["peak_extra_mib"]
        if record["case"] in TARGETS:
            target = TARGETS[record["case"]]
            record["target"] = target
            record["meets_time_target"] = record["time_ratio"] <= target
            record["meets_mem_target"] = record["mem_ratio"] <= target
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(records, f, indent=2)
    for record in records:
        print(json.dumps(record))


if __name__ == "__main__":
    main()
