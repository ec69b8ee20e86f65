"""Issue 13: ``lco demo``'s worker processes die with their parent, and a later run reaps a dead run's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from lco.demo.pool import _start_time, reap_orphans

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _alive(pid: int) -> bool:
    return _start_time(pid) is not None  # None: gone, or a zombie that has already exited


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_workers_die_when_the_demo_is_killed(tmp_path):
    (tmp_path / "orphan_jobs.py").write_text(
        textwrap.dedent(
            """
            import os, time

            def hang(marker, progress=None):
                with open(marker, "w") as f:
                    f.write(str(os.getpid()))
                time.sleep(300)
            """
        )
    )
    registry = tmp_path / "registry"
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        from lco.demo.pool import Job, WorkerPool
        from orphan_jobs import hang

        if __name__ == "__main__":
            jobs = [Job(hang, {{"marker": {str(tmp_path)!r} + f"/worker{{i}}"}}) for i in range(2)]
            with WorkerPool(2, registry_dir={str(registry)!r}) as pool:
                pool.run(jobs, "hang")
        """
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    parent = subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.DEVNULL)
    try:
        markers = [tmp_path / "worker0", tmp_path / "worker1"]
        _wait_for(lambda: all(m.exists() and m.read_text() for m in markers), 180, "both workers to start")
        workers = [int(m.read_text()) for m in markers]
        record = json.loads((registry / f"{parent.pid}.json").read_text())
        manager = [pid for pid, _ in record["processes"] if pid not in workers]
        assert set(workers) <= {pid for pid, _ in record["processes"]} and len(manager) == 1
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        _wait_for(lambda: not any(_alive(p) for p in [*workers, *manager]), 15, "the workers to exit")
    finally:
        if parent.poll() is None:
            parent.kill()


def test_a_later_run_reaps_what_a_dead_run_left(tmp_path):
    registry = tmp_path / "registry"
    registry.mkdir()
    dead_parent = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_parent.wait()
    leftover = subprocess.Popen(["sleep", "300"])  # stands for a worker that outlived its run
    bystander = subprocess.Popen(["sleep", "300"])  # a live run's worker
    try:
        (registry / f"{dead_parent.pid}.json").write_text(
            json.dumps(
                {"parent": [dead_parent.pid, "1"], "processes": [[leftover.pid, _start_time(leftover.pid)]]}
            )
        )
        me = os.getpid()
        (registry / f"{me}.json").write_text(
            json.dumps(
                {"parent": [me, _start_time(me)], "processes": [[bystander.pid, _start_time(bystander.pid)]]}
            )
        )
        # a reused pid (start time differs) is never killed
        (registry / "999999.json").write_text(
            json.dumps({"parent": [999999, "1"], "processes": [[bystander.pid, "12345"]]})
        )
        assert reap_orphans(str(registry)) == [leftover.pid]
        assert leftover.wait(timeout=10) == -signal.SIGKILL
        assert bystander.poll() is None
        assert sorted(os.listdir(registry)) == [f"{me}.json"]  # the dead runs' entries are gone
    finally:
        for process in (leftover, bystander):
            if process.poll() is None:
                process.kill()
                process.wait()
