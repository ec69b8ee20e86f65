"""The anchor under FSDP2 on 2 CPU processes (gloo): placement as TRL's ``prepare_fsdp``, z_old, refresh, save.

accelerate drops its FSDP plugin without an accelerator, so the whole trainer cannot run under FSDP on a
CPU; ``fsdp_run.py`` drives the anchor's code with ``fully_shard`` directly (see its docstring). Logits
and weights are compared with an unsharded copy of the policy.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_fsdp2_anchor_is_sharded_computes_z_old_refreshes_and_checkpoints(tiny_models, tmp_path):
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).parents[2] / "src"), os.environ.get("PYTHONPATH", "")]
        ),
    }
    script = Path(__file__).with_name("fsdp_run.py")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
        str(script), tiny_models["policy"], str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    for rank in (0, 1):
        row = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert (
            row["anchor_sharded"] and row["anchor_local_rows"] == row["vocab"] // 2
        )  # half the head per rank
        assert row["anchor_vocab"] == row["vocab"]
        assert row["z_old_initial_max_diff"] < 1e-5  # z_old of the placed copy = the unsharded initial policy
        assert row["policy_moved"] > 1e-3  # so that the refresh below has something to copy
        assert row["refresh_steps"] == [0, 2]
        assert row["anchor_vs_policy_after_refresh"] < 1e-7
        assert row["z_old_refreshed_max_diff"] < 1e-5
        assert row["saved_vs_policy"] < 1e-7 and row["loaded_vs_policy"] < 1e-7
        assert row["restored_refresh_steps"] == [0, 2]
