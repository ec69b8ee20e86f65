"""Run by test_fsdp.py on 2 CPU processes (gloo) with FSDP2 ``fully_shard`` (not a test module).

accelerate drops its FSDP plugin on a machine without an accelerator, so ``LCOTrainer`` cannot be built
under FSDP here. This checks the anchor's part at the level it runs on a GPU: the frozen copy placed by the
library's :func:`lco.trainer.anchor.place_frozen` (TRL's ``prepare_fsdp``, FSDP2) beside a policy sharded
as accelerate shards it (each decoder layer, then the root), z_old through the patched forward, the refresh
by TRL's sync at α = 1 between the two sharded models, and the checkpointed state. Writes ``rank<r>.json``.
"""

import copy
import json
import sys
import types

import torch
import torch.distributed as dist
from accelerate import Accelerator
from accelerate.utils import FullyShardedDataParallelPlugin
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor
from transformers import AutoModelForCausalLM

from lco.trainer.anchor import FrozenModelAnchor, output_vocab_size, place_frozen
from lco.trainer.hidden_state_forward import head_outputs


def logits(model, ids, am, k) -> torch.Tensor:
    """z = h Wᵀ at the completion positions through the patched forward (the trainer's z_old path)."""
    return head_outputs(model, ids, am, k, lambda h, w, b: (h @ w.T).detach().clone())


@torch.no_grad()
def full_state(model) -> dict[str, torch.Tensor]:
    return {
        n: (p.full_tensor() if isinstance(p, DTensor) else p).detach().clone()
        for n, p in model.named_parameters()
    }


def main(policy_path: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    Accelerator(cpu=True)  # the state TRL's sync reads (it asks AcceleratorState for a DeepSpeed plugin)
    rank = dist.get_rank()
    torch.manual_seed(0)
    policy = AutoModelForCausalLM.from_pretrained(policy_path)
    reference = copy.deepcopy(policy).eval()  # unsharded, for the expected logits
    # what LCOTrainer does in __init__ (before the policy is wrapped): copy, then place like TRL's ref model
    accelerator = types.SimpleNamespace(
        state=types.SimpleNamespace(fsdp_plugin=FullyShardedDataParallelPlugin(fsdp_version=2)),
        device=torch.device("cpu"),
        torch_device_mesh=None,
    )
    frozen = place_frozen(copy.deepcopy(policy), accelerator, deepspeed=False, fsdp=True)
    # the policy as accelerate's FSDP2 prepare shards it: every decoder layer, then the root
    for layer in policy.model.layers:
        fully_shard(layer)
    fully_shard(policy)
    anchor = FrozenModelAnchor(frozen, lambda: policy, lambda m: m, every=2, shard="fsdp")

    g = torch.Generator().manual_seed(1)
    ids = torch.randint(4, policy.config.vocab_size, (2, 9), generator=g)
    am = torch.ones_like(ids)
    k = 4
    record = {
        "rank": rank,
        "anchor_sharded": all(isinstance(p, DTensor) for p in frozen.parameters()),
        "anchor_local_rows": frozen.lm_head.weight.to_local().shape[0],
        "vocab": policy.config.vocab_size,
        "anchor_vocab": output_vocab_size(frozen),  # a DTensor head reports its global shape
    }
    with torch.no_grad():
        expected = reference.lm_head(reference.model(input_ids=ids, attention_mask=am).last_hidden_state)
    record["z_old_initial_max_diff"] = float(
        (logits(frozen, ids, am, k) - expected[:, -k - 1 : -1]).abs().max()
    )

    # one optimizer step of the sharded policy (gradients reduced by FSDP), then the refresh
    optimizer = torch.optim.SGD(policy.parameters(), lr=0.5)
    loss = policy(input_ids=ids, attention_mask=am, labels=ids).loss
    loss.backward()
    optimizer.step()
    moved = full_state(policy)
    before = full_state(frozen)
    record["policy_moved"] = max(float((moved[n] - before[n]).abs().max()) for n in moved)
    anchor.refresh(2)
    record["refresh_steps"] = anchor.refresh_steps
    after = full_state(frozen)
    record["anchor_vs_policy_after_refresh"] = max(float((after[n] - moved[n]).abs().max()) for n in moved)
    reference.load_state_dict(moved, strict=False)
    with torch.no_grad():
        expected = reference.lm_head(reference.model(input_ids=ids, attention_mask=am).last_hidden_state)
    record["z_old_refreshed_max_diff"] = float(
        (logits(frozen, ids, am, k) - expected[:, -k - 1 : -1]).abs().max()
    )

    # the checkpointed anchor: a full state dict written by rank 0, loaded by every rank into a fresh copy
    anchor.save(out, write=rank == 0)
    dist.barrier()
    saved = torch.load(f"{out}/lco_anchor.pt", weights_only=True)
    record["saved_vs_policy"] = max(float((saved["tensors"][n] - moved[n]).abs().max()) for n in moved)
    fresh = place_frozen(
        AutoModelForCausalLM.from_pretrained(policy_path), accelerator, deepspeed=False, fsdp=True
    )
    restored = FrozenModelAnchor(fresh, lambda: policy, lambda m: m, every=2, shard="fsdp")
    restored.load(out)
    loaded = full_state(fresh)
    record["loaded_vs_policy"] = max(float((loaded[n] - moved[n]).abs().max()) for n in moved)
    record["restored_refresh_steps"] = restored.refresh_steps
    with open(f"{out}/rank{rank}.json", "w") as f:
        json.dump(record, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
