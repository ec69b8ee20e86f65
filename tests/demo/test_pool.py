"""The job pool's bookkeeping, in the calling process (``workers=1``); the CLI smoke test spawns workers."""

from __future__ import annotations

import pytest

from lco.demo.pool import Job, WorkerPool

CALLS: list[str] = []


def record(name: str, steps: int = 0, progress=None) -> str:
    for _ in range(steps):
        progress(1)
    CALLS.append(name)
    return name.upper()


def fail(progress=None) -> None:
    raise RuntimeError("job failed")


def _job(function, **kwargs) -> Job:
    return Job(function, kwargs, units=3, label=kwargs.get("name", function.__name__))


def test_results_come_back_in_job_order():
    CALLS.clear()
    with WorkerPool(1) as pool:
        assert pool.run([_job(record, name="a", steps=5), _job(record, name="b")], "test") == ["A", "B"]
    assert CALLS == ["a", "b"]


def test_a_failing_job_raises_its_error():
    with WorkerPool(1) as pool, pytest.raises(RuntimeError, match="job failed"):
        pool.run([_job(fail)], "test")


@pytest.mark.parametrize("workers", [0, -1, True, 1.5])
def test_workers_must_be_a_positive_integer(workers):
    with pytest.raises(ValueError, match="--workers"):
        WorkerPool(workers)
