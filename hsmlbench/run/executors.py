"""Where the jobs of a grid run: in this process, on a local process pool, or as Ray tasks.

Every executor calls the same module-level job function, ``fn(job, *args) -> dict``, and
reports each job as it starts and as it ends (``tracker.started(job)``,
``tracker.finished(outcome)``). A job that raises becomes a failed :class:`Outcome` carrying
its traceback; the other jobs go on. On a cluster, scheduling, transport and retries are
Ray's (``max_retries``): nothing here re-implements them.
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import select
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Protocol

# Ray re-runs a task whose worker or node died (not one that raised: that would fail again).
RAY_MAX_RETRIES = 3
RAY_MISSING = "the Ray executor needs Ray: pip install 'hsmlbench[ray]'"

# What a regression job imports, preloaded by the pool's fork server so that no worker pays
# for it: the job itself, the methods (imported lazily by hsmlbench.methods.builtin) and
# torch._dynamo, which the first torch.optim optimizer of a process imports (1.4 s).
JOB_MODULES = (
    "hsmlbench.run.grid",
    "hsmlbench.run.single_job",
    "hsmlbench.run.training",
    "hsmlbench.run.evaluation",
    "hsmlbench.domains.regression.domain",
    "hsmlbench.methods.builtin",
    "hsmlbench.methods.maml",
    "hsmlbench.methods.mumomaml",
    "hsmlbench.methods.hsml",
    "hsmlbench.methods.continual",
    "torch._dynamo",
)


class ExecutorUnavailable(RuntimeError):
    """The chosen executor cannot run here (e.g. Ray is not installed)."""


@dataclass
class Outcome:
    """How one job ended: its raw result, or its error in one line plus the full traceback."""

    job: Any
    raw: dict | None
    error: str | None = None
    traceback: str | None = None
    seconds: float = 0.0
    host: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None


class Tracker(Protocol):
    def started(self, job: Any) -> None: ...

    def finished(self, outcome: Outcome) -> None: ...


def available_cores() -> int:
    """Cores this process may use (its CPU affinity, where the OS tells)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def guarded(fn: Callable, job: Any, args: tuple, threads: int | None = None) -> Outcome:
    """``fn(job, *args)`` with its exception turned into a failed Outcome.

    Only ``Exception`` is caught: Ctrl-C (KeyboardInterrupt) still stops the run.
    """
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    try:
        raw = fn(job, *args)
    except Exception as error:
        return Outcome(
            job,
            None,
            one_line(error),
            traceback.format_exc(),
            time.perf_counter() - t0,
            platform.node(),
        )
    return Outcome(job, raw, seconds=time.perf_counter() - t0, host=platform.node())


def run_serial(fn: Callable, jobs: list, args: tuple, tracker: Tracker) -> None:
    """One job after another in this process (``--jobs 1``: the path without any pool)."""
    for job in jobs:
        tracker.started(job)
        tracker.finished(guarded(fn, job, args))


def _exit_with(grid_pid: int) -> None:
    """A worker ends as soon as the grid's process ends, however it ended (no orphans that
    keep training after the grid was killed). The worker's parent is the fork server, not
    the grid, so the parent-death signal cannot do this: a daemon thread waits on the grid's
    process instead (a pidfd on Linux, else a poll every second). Not on Windows, where
    ``os.kill(pid, 0)`` would interrupt the process instead of probing it."""
    if os.name != "posix":
        return

    def wait_then_exit() -> None:
        try:
            handle = os.pidfd_open(grid_pid)
        except (AttributeError, OSError):  # not Linux ≥ 5.3
            handle = None
        if handle is not None:
            select.select([handle], [], [])
        else:
            while True:
                time.sleep(1.0)
                try:
                    os.kill(grid_pid, 0)
                except ProcessLookupError:
                    break
        os._exit(1)

    threading.Thread(target=wait_then_exit, name="exit-with-grid", daemon=True).start()


def _init_worker(grid_pid: int, threads: int, environment: dict[str, str]) -> None:
    _exit_with(grid_pid)
    # A fork-server worker inherits the environment the server started with; give it this
    # grid's, as a spawned process would have (e.g. HSMLBENCH_KERNELS set since).
    os.environ.clear()
    os.environ.update(environment)
    import torch

    torch.set_num_threads(threads)


def pool_context(preload: tuple[str, ...] = ()) -> multiprocessing.context.BaseContext:
    """Where pool workers come from: a fork server where the OS has one, else ``spawn``.

    A spawned worker imports torch and the job's modules itself (about 3 s on a 2-core CPU,
    as long as a whole smoke grid); the fork server pays that once, importing ``preload``,
    and forks each worker from there in milliseconds. Workers are never forked from this
    process: after torch has run OpenMP code, a forked child that uses two threads hangs.
    The fork server never computes, and lives until this process exits, so later pools of
    the same process start warm (with the modules the first one preloaded).
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(preload))  # no effect once the server runs
    return context


def start_pool_server(preload: tuple[str, ...] = ()) -> None:
    """Starts the fork server now, without waiting for its imports: called before this
    process imports torch itself, the two import side by side on two cores."""
    context = pool_context(preload)
    if context.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


def run_pool(
    fn: Callable,
    jobs: list,
    args: tuple,
    workers: int,
    tracker: Tracker,
    preload: tuple[str, ...] = (),
) -> None:
    """``workers`` processes, each with ``cores // workers`` torch threads.

    At most ``workers`` jobs are handed out at a time, so "running" is exact. A worker that
    dies (killed, out of memory) fails the jobs it was running; the pool is restarted for
    the rest. ``preload``: modules the jobs need, imported once by the fork server.
    """
    threads = max(1, available_cores() // workers)
    context = pool_context(preload)
    environment = dict(os.environ)

    def new_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            workers,
            mp_context=context,
            initializer=_init_worker,
            initargs=(os.getpid(), threads, environment),
        )

    queue, running = list(jobs), {}
    pool = new_pool()
    try:
        while queue or running:
            while queue and len(running) < workers:
                job = queue.pop(0)
                running[pool.submit(guarded, fn, job, args)] = job
                tracker.started(job)
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            broken = False
            for future in done:
                job = running.pop(future)
                try:
                    outcome = future.result()
                except BrokenProcessPool as error:
                    broken = True
                    outcome = Outcome(
                        job,
                        None,
                        "a worker process died while this job ran (killed, or out of memory?): "
                        + one_line(error),
                        traceback.format_exc(),
                    )
                except Exception as error:
                    outcome = Outcome(job, None, one_line(error), traceback.format_exc())
                tracker.finished(outcome)
            if broken:
                # Every job still in flight ends with the same error; then a fresh pool.
                for future, job in list(running.items()):
                    try:
                        future.result()
                    except Exception as error:
                        tracker.finished(
                            Outcome(job, None, one_line(error), traceback.format_exc())
                        )
                    else:  # finished just before the break: keep its result
                        tracker.finished(future.result())
                running.clear()
                pool.shutdown(wait=False, cancel_futures=True)
                pool = new_pool()
    except BaseException:
        stop_workers(pool)
        raise
    pool.shutdown()


def stop_workers(pool: ProcessPoolExecutor, grace_s: float = 5.0) -> None:
    """Ends a pool now (Ctrl-C or SIGTERM to this process alone): its workers are terminated
    rather than awaited, which would last until their jobs end (up to ~20 min at the paper
    budget). Their jobs resume from their last checkpoints on the next run."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + grace_s
    for process in processes:
        process.join(timeout=max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join(timeout=1.0)


def import_ray():
    """Ray, imported only when asked for; a clear error when it is not installed."""
    try:
        import ray
    except ImportError:
        raise ExecutorUnavailable(RAY_MISSING) from None
    return ray


def run_ray(fn: Callable, jobs: list, args: tuple, address: str | None, tracker: Tracker) -> None:
    """Each job a Ray task (1 CPU; 1 GPU for a job whose ``gpus`` says so).

    Connects to ``address`` (``auto``, ``ray://host:port``; None: Ray's own default, i.e.
    ``RAY_ADDRESS`` or else a local instance) unless Ray is already initialized in this
    process. "Running" counts tasks submitted to the cluster, which may still wait there for
    resources.
    """
    ray = import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address)
    remote = ray.remote(guarded)
    pending = {}
    try:
        for job in jobs:
            options = {
                "num_cpus": 1,
                "num_gpus": getattr(job, "gpus", 0),
                "max_retries": RAY_MAX_RETRIES,
                "name": getattr(job, "name", str(job)),
            }
            pending[remote.options(**options).remote(fn, job, args, 1)] = job
            tracker.started(job)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                job = pending.pop(ref)
                try:
                    outcome = ray.get(ref)
                except ray.exceptions.RayError as error:  # worker or node lost, retries spent
                    outcome = Outcome(job, None, one_line(error), str(error))
                tracker.finished(outcome)
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    finally:
        if started_here:
            ray.shutdown()
