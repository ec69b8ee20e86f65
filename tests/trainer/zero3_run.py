"""Run by test_zero3.py on 2 CPU processes under DeepSpeed ZeRO-3 (not a test module).

DeepSpeed runs on the CPU with ``DS_ACCELERATOR=cpu`` and gloo: accelerate's state is configured here
(``PartialState(backend="gloo")`` with ``ACCELERATE_USE_DEEPSPEED``) and the trainer told to use it
(``accelerator_config={"use_configured_state": True}``). Several trainers run one after the other in
the same processes (the DeepSpeed start-up is paid once); each case writes ``<case>.rank<r>.json``.
"""

import json
import os
import sys

os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"

import torch  # noqa: E402
from accelerate.state import AcceleratorState, PartialState  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM  # noqa: E402

from lco.objectives.rollout import ROLLOUT_KEY, Rollout  # noqa: E402
from lco.tasks import build_byte_tokenizer  # noqa: E402
from lco.trainer import LCOConfig, LCOTrainer  # noqa: E402

DS_CONFIG = {
    "zero_optimization": {"stage": 3},
    "train_micro_batch_size_per_gpu": "auto",
    "gradient_accumulation_steps": "auto",
    "train_batch_size": "auto",
    "gradient_clipping": "auto",
    "bf16": {"enabled": False},
}


def reward(completions, **kwargs):
    return [float(sum(map(ord, c)) % 2) * 2 - 1 for c in completions]


def gathered_state(module) -> dict[str, torch.Tensor]:
    """The full (unpartitioned) parameters of a ZeRO-3 module, on every rank."""
    import deepspeed

    params = dict(module.named_parameters())
    with deepspeed.zero.GatheredParameters(list(params.values())):
        return {name: p.detach().clone() for name, p in params.items()}


class Recorder(LCOTrainer):
    """Keeps the policy's full weights at each generation and z_old's inputs at each loss call."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.policies, self.batches = {}, []

    def _generate_and_score_completions(self, inputs):
        self.policies[self.state.global_step] = gathered_state(self.accelerator.unwrap_model(self.model))
        return super()._generate_and_score_completions(inputs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        z_old = Rollout.collate(inputs[ROLLOUT_KEY]).z_old
        if z_old is not None:  # z_old as the loss reads it: the saved hidden states times the saved head
            z = z_old.hidden @ z_old.head.weight.T
            z = z if z_old.head.bias is None else z + z_old.head.bias
            keys = ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask")
            self.batches.append((self.state.global_step, {k: inputs[k] for k in keys} | {"z_old": z}))
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)


@torch.no_grad()
def z_of(model, batch) -> torch.Tensor:
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)
    am = torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1)
    k = batch["completion_ids"].shape[1]
    h = model.model(input_ids=ids, attention_mask=am).last_hidden_state[:, -k - 1 : -1]
    return model.lm_head(h)


def run_case(name: str, policy: str, aux: dict, out: str, unsharded: dict, **overrides) -> None:
    settings = dict(
        output_dir=os.path.join(out, name),
        objective="lco_kld",
        num_generations=2,
        max_completion_length=4,
        per_device_train_batch_size=2,
        max_steps=2,
        report_to="none",
        bf16=False,
        gradient_checkpointing=False,
        save_strategy="no",
        learning_rate=1e-2,
        seed=0,
        logging_steps=1,
        head_chunk_size=4,
        deepspeed=DS_CONFIG,
        accelerator_config={"use_configured_state": True},
        reward_model_path=aux["dpo"],
        reference_reward_model_path=aux["ref"],
    )
    no_reward = overrides.pop("no_reward", False)
    peft_config = None
    if overrides.pop("lora", False):
        from peft import LoraConfig

        peft_config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    settings.update(overrides)
    args = LCOConfig(**settings)
    prompts = Dataset.from_dict({"prompt": ["1+1=", "2+3=", "4+4=", "5+1=", "6+2=", "7+3=", "8+1=", "9+9="]})
    trainer = Recorder(
        policy,
        None if no_reward else reward,
        args,
        train_dataset=prompts,
        processing_class=build_byte_tokenizer(),
        peft_config=peft_config,
    )
    record = {
        "world_size": trainer.accelerator.num_processes,
        "policy_vocab": trainer._policy_vocab,
        "partitioned": any(hasattr(p, "ds_id") for p in trainer.model.parameters()),
        "reward_funcs": trainer.reward_func_names,
        "anchor": None if trainer._anchor is None else trainer._anchor.kind,
    }
    trainer.train()
    rank = trainer.accelerator.process_index
    record["global_step"] = trainer.state.global_step
    reference, initial = unsharded["reference"], unsharded["initial"]
    every = args.lco_anchor_update_steps
    diffs, behind = [], []
    if peft_config is not None:  # LoRA: the snapshot adapter against the trained adapter of its refresh step
        final = gathered_state(trainer.accelerator.unwrap_model(trainer.model))
        last = trainer.policies[trainer._anchor.refresh_steps[-1]]
        pairs = [(n, n.replace(".default.", ".lco_anchor.")) for n in last if ".default." in n]
        record["lora_snapshot_max_diff"] = max(float((final[a] - last[d]).abs().max()) for d, a in pairs)
        record["lora_pairs"] = len(pairs)
        first = trainer.policies[0]
        record["adapter_moved_by_refresh"] = max(float((last[d] - first[d]).abs().max()) for d, _ in pairs)
        record["base_moved"] = max(
            float((final[n] - v).abs().max()) for n, v in trainer.policies[0].items() if "lora_" not in n
        )
        trainer.batches = []  # z_old of a PEFT policy: checked on one process in test_anchor_peft.py
    for step, batch in trainer.batches:
        z_old = batch["z_old"]
        if every == 0:
            expected = z_of(initial, batch)
        else:
            reference.load_state_dict(trainer.policies[every * (step // every)], strict=False)
            expected = z_of(reference, batch)
        diffs.append(float((z_old - expected).abs().max()))
        if every >= 2 and step % every:
            reference.load_state_dict(trainer.policies[step], strict=False)
            behind.append(float((z_old - z_of(reference, batch)).abs().max()))
    record["z_old_max_diff"] = diffs
    record["z_old_behind_generating"] = behind
    final = gathered_state(trainer.accelerator.unwrap_model(trainer.model))
    record["policy_moved"] = max(float((final[n] - v).abs().max()) for n, v in trainer.policies[0].items())
    if trainer._anchor is not None:
        record["refresh_steps"] = trainer._anchor.refresh_steps
        if trainer._anchor.saves_state:
            trainer._anchor.save(out, write=rank == 0)  # collective: gathers the partitioned copy
            trainer.accelerator.wait_for_everyone()
            saved = torch.load(os.path.join(out, "lco_anchor.pt"), weights_only=True)["tensors"]
            last = trainer.policies[trainer._anchor.refresh_steps[-1]]
            # LoRA: the saved snapshot adapter against the trained adapter; else every weight against the policy's
            names = (
                {n.replace(".lco_anchor.", ".default."): n for n in saved}
                if peft_config
                else {n: n for n in last}
            )
            record["saved_anchor_max_diff"] = max(
                float((saved[names[n]] - last[n]).abs().max()) for n in names
            )
            trainer.accelerator.wait_for_everyone()
            if rank == 0:
                os.remove(os.path.join(out, "lco_anchor.pt"))
    with open(os.path.join(out, f"{name}.rank{rank}.json"), "w") as f:
        json.dump(record, f)
    del trainer
    AcceleratorState._reset_state()  # the next case's trainer configures DeepSpeed again


CASES = {
    # m = 0 (the initial policy): a partitioned frozen copy built under zero.Init, never refreshed
    "m0": dict(lco_anchor_update_steps=0),
    # m = 1 with the dense DPO advantage and no reward function (the V = 0 and reward_funcs=[] bugs)
    "m1_dense": dict(lco_anchor_update_steps=1, advantage="dpo_dense", no_reward=True),
    # m = 2: a partitioned frozen copy built under zero.Init, refreshed at step 2 by TRL's gathered sync
    "m2": dict(lco_anchor_update_steps=2, max_steps=3),
    # LoRA + ZeRO-3, m = 2: the snapshot adapter, partitioned, refreshed by a gathered copy
    "lora_m2": dict(lco_anchor_update_steps=2, max_steps=3, lora=True),
}


def main(policy: str, dpo: str, ref: str, out: str, *cases: str) -> None:
    torch.set_num_threads(1)
    # unsharded models for reference logits, built before any config switches transformers to zero.Init:
    # the initial policy from disk, and one of its architecture to load recorded weights into
    unsharded = {
        "initial": AutoModelForCausalLM.from_pretrained(policy).eval(),
        "reference": AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(policy)).eval(),
    }
    PartialState(backend="gloo")
    for name in cases or CASES:
        run_case(name, policy, {"dpo": dpo, "ref": ref}, out, unsharded, **dict(CASES[name]))


if __name__ == "__main__":
    main(*sys.argv[1:])
