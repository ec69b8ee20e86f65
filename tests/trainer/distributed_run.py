"""Run by test_distributed.py under `accelerate launch --cpu --num_processes 2` (not a test module)."""

import json
import sys

import torch
from datasets import Dataset

from lco.tasks import build_byte_tokenizer
from lco.trainer import LCOConfig, LCOTrainer


def reward(completions, **kwargs):
    return [float(sum(map(ord, c)) % 2) * 2 - 1 for c in completions]


def main(policy: str, out: str, anchor_steps: int = 0) -> None:
    torch.set_num_threads(1)
    args = LCOConfig(
        output_dir=out,
        objective="lco_kld",
        num_generations=2,
        max_completion_length=4,
        per_device_train_batch_size=2,
        max_steps=3 if anchor_steps >= 2 else 2,
        lco_anchor_update_steps=anchor_steps,
        report_to="none",
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        save_strategy="no",
        learning_rate=1e-3,
        seed=0,
        logging_steps=1,
    )
    prompts = Dataset.from_dict({"prompt": ["1+1=", "2+3=", "4+4=", "5+1=", "6+2=", "7+3=", "8+1=", "9+9="]})
    trainer = LCOTrainer(policy, reward, args, train_dataset=prompts, processing_class=build_byte_tokenizer())
    before = trainer.model.lm_head.weight.detach().clone()
    trainer.train()
    rank = trainer.accelerator.process_index
    record = {
        "rank": rank,
        "world_size": trainer.accelerator.num_processes,
        "global_step": trainer.state.global_step,
        "head_moved": float((trainer.model.lm_head.weight.detach() - before).norm()),
        "head_checksum": float(trainer.model.lm_head.weight.detach().double().sum()),
    }
    if trainer._anchor is not None:
        snapshot = trainer.accelerator.unwrap_model(trainer._anchor.snapshot)
        record["anchor_kind"] = trainer._anchor.kind
        record["anchor_refresh_steps"] = trainer._anchor.refresh_steps
        record["anchor_moved"] = float((snapshot.lm_head.weight.detach() - before).norm())
        record["anchor_checksum"] = float(snapshot.lm_head.weight.detach().double().sum())
    with open(f"{out}/rank{rank}.json", "w") as f:
        json.dump(record, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:]))
