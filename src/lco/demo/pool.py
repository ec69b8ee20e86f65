"""Independent jobs (warm-ups, RL runs, evaluations) on ``--workers`` single-threaded processes.

Tiny models gain little from intra-op threads, and several threads per process on a 2-core machine
only fight each other — measured: a 2-thread warm-up dropped from 9 to 1 step/s as soon as another
process took one core, because OpenMP threads wait on each other. One thread per process and one
process per core uses both cores fully and degrades gracefully when the machine is shared.
Workers are *spawned* (a fresh interpreter, no inherited torch state), with ``OMP_NUM_THREADS=1``
in their environment before torch is imported, and they live for the whole demo so that the
imports of torch/transformers/TRL are paid once per worker. Jobs report progress through a queue
to the parent's ``tqdm`` bar. ``workers=1`` runs jobs in the calling process instead.

This module does not import torch at module level: a spawned worker unpickles functions from it
before its initializer has set the thread count.

Workers (and the queue's manager process) die with the process that started them: on Linux the
kernel sends them SIGKILL when it dies (``PR_SET_PDEATHSIG``), and a watchdog thread in each also
exits once its parent is gone (the fallback elsewhere). Each pool also records its processes in a
small registry file; a later pool kills what a run that died uncleanly left behind.
"""

from __future__ import annotations

import ctypes
import json
import multiprocessing
import os
import queue as queue_module
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field

from tqdm.auto import tqdm

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass(frozen=True)
class Job:
    """``function`` called as ``function(progress=…, **kwargs)`` in a worker.

    ``function`` is the function itself, defined at the top level of a module: a spawned worker
    receives it pickled by reference (its module and name) and imports that module on first use.

    ``units`` is how much the job will advance the stage's progress bar (e.g. its training steps);
    ``threads`` is the torch thread count it runs with; its stdout/stderr (library warnings, load
    reports) go to ``log`` rather than through the progress bars.
    """

    function: Callable
    kwargs: dict = field(default_factory=dict)
    units: int = 1
    label: str = ""
    threads: int = 1
    log: str | None = None

    def __post_init__(self):
        if not callable(self.function):
            raise ValueError(
                f"Job.function must be the function itself (a top-level function of a module), got {self.function!r}"
            )


class Progress:
    """What a job calls to advance the stage's bar: ``progress(n)``. Picklable (holds a queue)."""

    def __init__(self, sink=None, job: int = 0):
        self._sink = sink
        self._job = job

    def __call__(self, n: int = 1) -> None:
        if self._sink is None:
            return
        if callable(self._sink):
            self._sink(self._job, n)
        else:
            self._sink.put((self._job, n))


class _Bar:
    """The stage's bar; each job's share is capped at its ``units`` and completed when it ends (a
    job's units are an estimate, e.g. DPO steps before the pairs are counted)."""

    def __init__(self, jobs: Sequence[Job], desc: str):
        self.units = [j.units for j in jobs]
        self.done = [0] * len(jobs)
        self.bar = tqdm(total=sum(self.units), desc=desc, unit="step", dynamic_ncols=True)

    def advance(self, job: int, n: int) -> None:
        n = max(0, min(n, self.units[job] - self.done[job]))
        self.done[job] += n
        self.bar.update(n)

    def finish(self, job: int, label: str) -> None:
        self.advance(job, self.units[job])
        self.bar.set_postfix_str(f"done: {label}")


def _set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def _worker_init(parent_pid: int | None = None) -> None:
    if parent_pid is not None:
        die_with_parent(parent_pid)
    for name, value in _WORKER_ENVIRONMENT.items():
        os.environ[name] = value
    _set_threads(1)


# ------------------------------------------------------------------ no orphans

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_WATCHDOG_PERIOD_S = 1.0


def die_with_parent(parent_pid: int) -> None:
    """End this process when ``parent_pid`` (the process that spawned it) dies, even by SIGKILL.

    A worker of a killed demo would otherwise keep training and publishing stages nobody waits for
    (with the resource tracker, ≈ 1.4 GB measured after a ``kill -9`` of ``lco demo``). Linux:
    ``prctl(PR_SET_PDEATHSIG, SIGKILL)``. Everywhere: a daemon thread that polls the parent id
    (reparenting changes it) — it also covers the parent dying before the prctl call, and a
    spawning *thread* ending, which the kernel signal is tied to.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the watchdog below still applies
    if os.getppid() != parent_pid:
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(_WATCHDOG_PERIOD_S)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="lco-parent-watchdog", daemon=True).start()


def _manager_init(parent_pid: int) -> None:
    # the queue's manager server ignores Ctrl-C like the default one, and dies with its parent
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(parent_pid)


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), so that a reused pid is not mistaken."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] == "Z":
        return None  # a zombie has already exited
    return fields[19]  # field 22 of proc(5); fields[0] is field 3


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def default_registry_dir() -> str:
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    return os.path.join(tempfile.gettempdir(), f"lco-demo-pools-{uid}")


def reap_orphans(registry_dir: str) -> list[int]:
    """Kill the processes recorded by pools whose parent is gone; the pids killed.

    A registry entry names its parent and processes with their start times; a process is killed
    only if its start time still matches (its pid was not reused). Entries of live parents stay.
    """
    killed: list[int] = []
    if not os.path.isdir(registry_dir):
        return killed
    for entry in os.listdir(registry_dir):
        path = os.path.join(registry_dir, entry)
        try:
            with open(path) as f:
                record = json.load(f)
            parent, parent_start = record["parent"]
        except (OSError, ValueError, KeyError, TypeError):
            os.unlink(path)  # unreadable: a run killed while writing it; nothing can be matched
            continue
        if _start_time(parent) == parent_start if parent_start is not None else _pid_exists(parent):
            continue  # that run is alive (without /proc, a live pid is given the benefit of the doubt)
        for pid, start in record.get("processes", []):
            if start is not None and _start_time(pid) == start:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                except ProcessLookupError:
                    pass
        os.unlink(path)
    return killed


def _register(registry_dir: str, pids: list[int]) -> str:
    os.makedirs(registry_dir, exist_ok=True)
    me = os.getpid()
    record = {"parent": [me, _start_time(me)], "processes": [[pid, _start_time(pid)] for pid in pids]}
    path = os.path.join(registry_dir, f"{me}.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(record, f)
    os.replace(tmp, path)  # never a half-written registry
    return path


def _run_job(job: Job, sink, index: int) -> object:
    from transformers.utils import logging as hf_logging

    _set_threads(job.threads)
    progress = Progress(sink, index)
    if job.log is None:
        try:
            return job.function(progress=progress, **job.kwargs)
        finally:
            _set_threads(1)
    # transformers' logger holds the terminal's stderr from before the redirection: quiet it instead
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    os.makedirs(os.path.dirname(job.log), exist_ok=True)
    try:
        with open(job.log, "a") as log, redirect_stdout(log), redirect_stderr(log):
            return job.function(progress=progress, **job.kwargs)
    finally:
        hf_logging.set_verbosity(verbosity)
        _set_threads(1)


# One thread per worker, and no library progress bars inside workers (the parent draws one per stage).
# Set in the parent's environment while workers are spawned: they must hold before torch or tqdm load.
_WORKER_ENVIRONMENT = {
    **dict.fromkeys(_THREAD_VARIABLES, "1"),
    "TQDM_DISABLE": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
}


@contextmanager
def _worker_environment():
    saved = {name: os.environ.get(name) for name in _WORKER_ENVIRONMENT}
    os.environ.update(_WORKER_ENVIRONMENT)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class WorkerPool:
    """``with WorkerPool(2) as pool: results = pool.run(jobs, "RL runs")``."""

    def __init__(self, workers: int, registry_dir: str | None = None):
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"--workers must be a positive integer, got {workers!r}")
        self.workers = workers
        self.registry_dir = registry_dir or default_registry_dir()
        self._registry: str | None = None
        self._executor: ProcessPoolExecutor | None = None
        self._manager = None
        self._queue = None
        self._env = None

    def __enter__(self) -> WorkerPool:
        if self.workers > 1:
            from multiprocessing.managers import SyncManager

            reaped = reap_orphans(self.registry_dir)
            if reaped:
                print(f"lco demo: stopped {len(reaped)} process(es) left by a run that died", file=sys.stderr)
            context = multiprocessing.get_context("spawn")
            # the environment is inherited at spawn time: workers see one thread before torch loads
            self._env = _worker_environment()
            self._env.__enter__()
            self._manager = SyncManager(ctx=context)
            self._manager.start(_manager_init, (os.getpid(),))
            self._queue = self._manager.Queue()
            self._executor = ProcessPoolExecutor(
                self.workers, mp_context=context, initializer=_worker_init, initargs=(os.getpid(),)
            )
            self._record_processes()
        return self

    def _record_processes(self) -> None:
        """Write (or update) this pool's registry entry: the manager and the workers started so far."""
        pids = [self._manager._process.pid, *(self._executor._processes or {})]
        self._registry = _register(self.registry_dir, pids)

    def __exit__(self, *exc) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._manager.shutdown()
            self._env.__exit__(None, None, None)
            if self._registry is not None and os.path.exists(self._registry):
                os.unlink(self._registry)
        self._executor = self._manager = self._queue = self._env = self._registry = None

    def run(self, jobs: Sequence[Job], desc: str) -> list:
        """Run the jobs; results in job order. If a job fails, the jobs already running finish
        (their stages stay cached), the others are cancelled, and the first error is raised."""
        if not jobs:
            return []
        bar = _Bar(jobs, desc)
        try:
            if self._executor is None:
                return self._run_inline(jobs, bar)
            return self._run_pool(jobs, bar)
        finally:
            bar.bar.close()

    def _run_inline(self, jobs: Sequence[Job], bar: _Bar) -> list:
        results = []
        for i, job in enumerate(jobs):
            bar.bar.set_postfix_str(job.label)
            results.append(_run_job(job, bar.advance, i))
            bar.finish(i, job.label)
        return results

    def _run_pool(self, jobs: Sequence[Job], bar: _Bar) -> list:
        import torch

        parent_threads = torch.get_num_threads()
        torch.set_num_threads(1)  # the workers own the cores
        futures: dict[Future, int] = {
            self._executor.submit(_run_job, job, self._queue, i): i for i, job in enumerate(jobs)
        }
        self._record_processes()  # workers are spawned on the first submissions
        results: list = [None] * len(jobs)
        error: BaseException | None = None
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
                self._drain(bar)
                for future in done:
                    if future.cancelled():
                        continue
                    index = futures[future]
                    exc = future.exception()
                    if exc is None:
                        results[index] = future.result()
                        bar.finish(index, jobs[index].label)
                    elif error is None:
                        error = exc
                        for other in pending:
                            other.cancel()
            self._drain(bar)
        finally:
            torch.set_num_threads(parent_threads)
        if error is not None:
            raise error
        return results

    def _drain(self, bar: _Bar) -> None:
        while True:
            try:
                bar.advance(*self._queue.get_nowait())
            except queue_module.Empty:
                return
