"""A tiny run that visibly learns on a CPU in about a minute: SFT warm-up, then LCO-KLD with the ±1 math reward.

    python examples/tiny_learns.py [OUT_DIR]

A randomly initialised model never produces a correct ``\\boxed{}`` answer, so its reward is −1
on every sample, every advantage is zero and RL has nothing to learn from (that is what
``examples/tiny_local.yaml`` shows on its own). Here a short supervised warm-up on the demo's
arithmetic format (``Compute 3+4. Answer in \\boxed{}.`` → ``\\boxed{7}``), on one-digit sums,
first makes some answers right; LCO-KLD (eq. 10 of "Stabilizing Policy Optimization via Logits
Convexity") then raises the reward with group-normalised outcome advantages.
It prints the mean reward per RL step and the greedy accuracy before and after, and saves both
policies (``OUT_DIR/sft``, the warm-up; ``OUT_DIR/lco``, after RL) for ``lco eval``. The measured
output is in docs/examples.md; tests/examples/test_tiny_learns.py runs a shorter version.
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

OPERANDS = range(10)  # one-digit sums: 100 problems, answers 0–18
DEFAULT_OBJECTIVE = "lco_kld"


def problems(seed: int = 0):
    from lco.tasks.arithmetic import Problem

    rows = [Problem(f"{a}+{b}", a + b) for a in OPERANDS for b in OPERANDS]
    random.Random(seed).shuffle(rows)
    return rows


def greedy_accuracy(model, tokenizer, rows) -> float:
    """Fraction of ``rows`` whose greedy completion's boxed answer is right (the math reward's rule)."""
    import torch

    from lco.eval.answers import math_reward

    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(rows), 50):
            batch = rows[start : start + 50]
            inputs = tokenizer([p.prompt for p in batch], return_tensors="pt", padding=True)
            out = model.generate(
                **inputs, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )
            texts = tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
            correct += sum(math_reward(t, str(p.answer)) > 0 for t, p in zip(texts, batch, strict=True))
    model.train()
    return correct / len(rows)


def warm_up(out: Path, steps: int, seed: int) -> Path:
    """A short SFT warm-up (TRL's SFTTrainer) of a fresh tiny model; returns the saved policy folder."""
    from transformers import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    from lco.tasks import build_byte_tokenizer, build_tiny_causal_lm, to_dataset

    tokenizer = build_byte_tokenizer()
    model = build_tiny_causal_lm(tokenizer, hidden_size=64, num_layers=2, seed=seed)
    args = SFTConfig(
        output_dir=str(out / "sft"),
        max_steps=steps,
        per_device_train_batch_size=32,
        learning_rate=3e-3,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=5,
        logging_steps=steps,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=seed,
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
    )
    train = to_dataset(problems(seed), with_solution=True)
    trainer = SFTTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer)
    trainer.remove_callback(PrinterCallback)  # the summary below says what happened
    trainer.train()
    policy = out / "sft"  # the warm-up policy, saved where SFTTrainer's output_dir points
    model.save_pretrained(policy)
    tokenizer.save_pretrained(policy)
    return policy


def run(
    out: str | os.PathLike,
    warmup_steps: int = 150,
    rl_steps: int = 60,
    learning_rate: float = 1e-3,
    objective: str = DEFAULT_OBJECTIVE,
    prompts_per_step: int = 8,
    lco_beta: float = 4.0,
    seed: int = 0,
) -> dict:
    """Warm up, then train with ``objective``; the mean reward of every RL step and the greedy accuracies.

    The anchor and β_negative are LCOConfig's defaults for ``advantage="outcome"`` (the generating
    policy, β_negative = 100·β). β = 4 rather than the paper's 1: both learn with those defaults, β = 4
    a little more over three seeds (docs/examples.md); with one β for both signs this 64-wide model
    collapses (reward −0.88 → −0.94 in 60 steps, measured), consistent with the asymmetric tilt of
    a sparse ±A that β_negative softens.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, TrainerCallback

    from lco import LCOConfig, LCOTrainer
    from lco.rewards import math_verify_reward
    from lco.tasks import to_dataset

    out = Path(out)
    rows = problems(seed)
    policy = warm_up(out, warmup_steps, seed)
    tokenizer = AutoTokenizer.from_pretrained(policy, padding_side="left")
    before = greedy_accuracy(AutoModelForCausalLM.from_pretrained(policy), tokenizer, rows)

    rewards: list[float] = []

    class RewardLog(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "reward" in logs:
                rewards.append(float(logs["reward"]))

    config = LCOConfig(
        output_dir=str(out / "lco"),
        objective=objective,
        advantage="outcome",
        lco_beta=lco_beta,
        # the anchor and β_negative are LCOConfig's defaults for advantage="outcome": z_old re-anchored at
        # the generating policy every step and β_negative = 100·β (docs/trainer.md, "Defaults, from the
        # evidence")
        learning_rate=learning_rate,
        lr_scheduler_type="constant",
        num_generations=8,
        per_device_train_batch_size=8 * prompts_per_step,  # 8 completions per prompt
        max_completion_length=8,
        temperature=1.0,
        max_steps=rl_steps,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        seed=seed,
    )
    trainer = LCOTrainer(
        str(policy),
        math_verify_reward,
        config,
        train_dataset=to_dataset(rows),
        processing_class=tokenizer,
        callbacks=[RewardLog()],
    )
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    trainer.save_model(config.output_dir)  # the trained policy and its tokenizer, for `lco eval --model`
    after = greedy_accuracy(trainer.model, tokenizer, rows)
    return {
        "rewards": rewards,
        "accuracy_before": before,
        "accuracy_after": after,
        "policies": {"sft": str(policy), objective: config.output_dir},
    }


def main(out: str) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    start = time.perf_counter()
    result = run(out)
    rewards = result["rewards"]
    print("step  mean reward (±1 math reward; 8 prompts × 8 samples per step)")
    for step, reward in enumerate(rewards, start=1):
        print(f"{step:4d}  {reward:+.3f}  {'#' * round((reward + 1) * 20)}")
    first, last = rewards[:10], rewards[-10:]
    print(
        f"mean reward, first 10 steps {sum(first) / len(first):+.3f} -> last 10 steps {sum(last) / len(last):+.3f}"
    )
    print(
        f"greedy accuracy on the 100 problems: {result['accuracy_before']:.0%} after the warm-up -> "
        f"{result['accuracy_after']:.0%} after LCO-KLD"
    )
    print(f"wall time {time.perf_counter() - start:.0f} s")
    for name, path in result["policies"].items():
        print(f"{name} policy saved to {path}")
    # the policies learned the arithmetic task's prompt, not the paper's: give lco eval that template
    print(
        f"evaluate one with: lco eval --suite math --model {result['policies'][DEFAULT_OBJECTIVE]} --datasets "
        "sums=FILE.jsonl --prompt-template $'Compute {problem}. Answer in \\\\boxed{{}}.\\n' --out DIR"
        '   (FILE.jsonl: one {"problem": "3+4", "answer": "7"} per line)'
    )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/tiny-learns")
