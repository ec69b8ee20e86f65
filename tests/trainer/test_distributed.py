"""Two CPU processes under `accelerate launch` train the same LCO run in data parallel.

`accelerate launch --cpu --num_processes 2` starts several processes only through mpirun (accelerate
1.15's simple launcher); without MPI it silently runs one. The torchrun launcher behind
`--multi_gpu` needs no MPI and, on a machine without CUDA, runs the ranks on the CPU with gloo —
so that is what this test launches, and it checks the world size really is 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def _launch(tmp_path, tiny_models, *extra) -> list[dict]:
    script = Path(__file__).with_name("distributed_run.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        str(script),
        tiny_models["policy"],
        str(tmp_path),
        *extra,
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]


@pytest.mark.slow
def test_accelerate_launch_two_cpu_processes_both_step(tmp_path, tiny_models):
    records = _launch(tmp_path, tiny_models)  # m = 0, the initial policy (the default for reward models)
    assert [r["world_size"] for r in records] == [2, 2]
    assert [r["global_step"] for r in records] == [2, 2]
    assert all(r["head_moved"] > 0 for r in records)
    # data parallel: both ranks applied the same averaged update
    assert records[0]["head_checksum"] == pytest.approx(records[1]["head_checksum"], rel=1e-6)
    # the anchor is a frozen copy of the initial policy on each rank, never refreshed
    assert [r["anchor_kind"] for r in records] == ["frozen_copy", "frozen_copy"]
    assert [r["anchor_refresh_steps"] for r in records] == [[0], [0]]
    assert all(r["anchor_moved"] == 0.0 for r in records)


@pytest.mark.slow
def test_the_anchor_snapshot_refreshes_identically_on_both_ranks(tmp_path, tiny_models):
    records = _launch(tmp_path, tiny_models, "2")  # lco_anchor_update_steps=2, three steps
    assert [r["global_step"] for r in records] == [3, 3]
    assert [r["anchor_refresh_steps"] for r in records] == [[0, 2], [0, 2]]
    # refreshed at step 2 from the DDP-synchronised policy: moved, and the same on both ranks
    assert all(r["anchor_moved"] > 0 for r in records)
    assert records[0]["anchor_checksum"] == pytest.approx(records[1]["anchor_checksum"], rel=1e-6)
