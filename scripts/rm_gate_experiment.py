"""Search for a reward-model recipe that passes the demo's gate (issue 12): on the test split, greedy
pass@1 must order φ_DPO > φ_ref and π*(β = 1) > π_0, as Table 1 of "Stabilizing Policy Optimization
via Logits Convexity" (Chen et al., arXiv:2603.00963) orders φ_DPO > π* > SFT.

Each trial re-trains only φ_DPO (the demo's own :func:`lco.demo.reward_model.train_reward_model`)
from the default warm-up, which is built once and cached like the demo's own stage, and measures
the four models with :func:`lco.demo.evaluate.greedy_pass_at_one`. One JSON line per trial is
appended to ``OUT/trials.jsonl``::

    OMP_NUM_THREADS=1 python scripts/rm_gate_experiment.py --out /tmp/rmg/out \\
        --name lr3e-4 --set learning_rate=3e-4 --set 'loss_type=["sigmoid","sft"]'

Overrides apply to the demo's *current* default ``RewardModelSettings``; each line records the full
settings it ran with. docs/rm_gate_trials.md holds the measured table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import fields, replace
from pathlib import Path

from lco.demo.evaluate import greedy_pass_at_one
from lco.demo.pool import WorkerPool
from lco.demo.recipe import _versions, warm_up
from lco.demo.reward_model import train_reward_model
from lco.demo.settings import RewardModelSettings, profile_settings


def parse_override(text: str) -> tuple[str, object]:
    name, _, value = text.partition("=")
    known = {f.name for f in fields(RewardModelSettings)}
    if name not in known:
        raise ValueError(f"--set: unknown reward-model setting {name!r} (known: {', '.join(sorted(known))})")
    parsed = json.loads(value)
    return name, tuple(parsed) if isinstance(parsed, list) else parsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="cache folder (the warm-up stage lives in OUT/stages)")
    parser.add_argument("--name", required=True, help="trial name")
    parser.add_argument("--set", action="append", default=[], help="NAME=JSON reward-model setting override")
    parser.add_argument("--problems", type=int, default=200, help="first test problems to evaluate")
    parser.add_argument("--pistar-beta", type=float, default=1.0)
    parser.add_argument("--init-seed", type=int, default=0, help="the warm-up model's initialisation seed")
    args = parser.parse_args()
    if not args.name or "/" in args.name or args.name in (".", ".."):
        raise ValueError(f"--name must be a plain folder name, got {args.name!r}")  # it names OUT/trials/NAME

    out = Path(args.out)
    settings = profile_settings("default")
    settings = replace(settings, policy=replace(settings.policy, init_seed=args.init_seed))
    rm = replace(settings.reward_model, **dict(parse_override(o) for o in args.set))
    with WorkerPool(1) as pool:
        warmup = warm_up(pool, out, settings, _versions())
    policy, phi_ref = str(warmup.path / "policy"), str(warmup.path / "phi_ref")

    # the two warm-up checkpoints do not change between trials: measure them once
    base_file = out / f"base-{args.problems}.json"
    if base_file.exists():
        base = json.loads(base_file.read_text())
    else:
        base = {
            "warmup": greedy_pass_at_one(
                {"kind": "checkpoint", "model": policy}, settings.task, args.problems
            ),
            "phi_ref": greedy_pass_at_one(
                {"kind": "checkpoint", "model": phi_ref}, settings.task, args.problems
            ),
        }
        base_file.write_text(json.dumps(base))

    trial_dir = out / "trials" / args.name
    shutil.rmtree(trial_dir, ignore_errors=True)
    trial_dir.mkdir(parents=True)
    start = time.time()
    phi_dpo = train_reward_model(trial_dir, policy, phi_ref, settings.task, rm)
    rm_seconds = time.time() - start
    phi_dpo_acc = greedy_pass_at_one(
        {"kind": "checkpoint", "model": str(phi_dpo)}, settings.task, args.problems
    )
    pistar = {"kind": "pistar", "model": policy, "reward_model": str(phi_dpo), "ref_model": phi_ref}
    pistar_acc = greedy_pass_at_one({**pistar, "beta": args.pistar_beta}, settings.task, args.problems)
    info = json.loads((trial_dir / "rm.json").read_text())
    row = {
        "name": args.name,
        "overrides": args.set,
        "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(rm).items()},
        "rm_seconds": round(rm_seconds, 1),
        "pairs": info["pairs"],
        "held_out_accuracy": info["held_out_accuracy"],
        "problems": args.problems,
        **base,
        "phi_dpo": phi_dpo_acc,
        "pistar": pistar_acc,
        "pistar_beta": args.pistar_beta,
        "init_seed": args.init_seed,
        "met": phi_dpo_acc > base["phi_ref"] and pistar_acc > base["warmup"],
    }
    with open(out / "trials.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
