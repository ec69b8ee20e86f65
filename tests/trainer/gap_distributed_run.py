"""Run by test_gap_metrics.py under a 2-process `accelerate launch` (not a test module).

Each rank trains two steps with the gap metrics and the guard on, and saves what the test needs to
recompute Δμ(0) in one process: its rows of step 0, the weights around step 0 and its gap logs.
"""

import sys

import torch
from datasets import Dataset
from transformers import TrainerCallback

from lco.objectives.rollout import ROLLOUT_KEY, Rollout
from lco.tasks import build_byte_tokenizer
from lco.trainer import LCOConfig, LCOTrainer
from lco.trainer.gap_monitor import policy_parameters


def reward(completions, **kwargs):
    return [float(sum(map(ord, c)) % 2) * 2 - 1 for c in completions]


class _KeepsFirstStep(LCOTrainer):
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.model.training and self.state.global_step == 0:
            rows = {k: v.detach().clone() for k, v in inputs.items() if torch.is_tensor(v)}
            rows["sequence_rewards"] = Rollout.collate(inputs[ROLLOUT_KEY]).sequence_rewards.detach().clone()
            self.first_step_rows = [*getattr(self, "first_step_rows", []), rows]
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)


class _Weights(TrainerCallback):
    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step == 0:
            self.before = [p.detach().clone() for p in policy_parameters(model)]

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == 1:
            self.after = [p.detach().clone() for p in policy_parameters(model)]


def main(policy: str, out: str) -> None:
    torch.set_num_threads(1)
    args = LCOConfig(
        output_dir=out,
        objective="lco_kld",
        num_generations=2,
        max_completion_length=4,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=2,
        max_steps=2,
        report_to="none",
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        save_strategy="no",
        learning_rate=1e-2,
        seed=0,
        logging_steps=1,
        gap_every=1,
        gap_step_guard="warn",
    )
    prompts = Dataset.from_dict({"prompt": ["1+1=", "2+3=", "4+4=", "5+1=", "6+2=", "7+3=", "8+1=", "9+9="]})
    trainer = _KeepsFirstStep(
        policy, reward, args, train_dataset=prompts, processing_class=build_byte_tokenizer()
    )
    weights = _Weights()
    trainer.add_callback(weights)
    trainer.train()
    record = {
        "world_size": trainer.accelerator.num_processes,
        "rows": trainer.first_step_rows,
        "before": weights.before,
        "after": weights.after,
        "logs": [log for log in trainer.state.log_history if "gap/eta" in log],
    }
    torch.save(record, f"{out}/gap_rank{trainer.accelerator.process_index}.pt")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
