"""A reproduction is a grid of independent jobs (table, method, setting, seed): this module
runs the unfinished ones and reuses the finished ones.

Each job (``hsmlbench.run.single_job``) trains, resuming from its checkpoint if one exists,
evaluates on the table's fixed test tasks, and writes its raw record atomically, so finished
jobs are never re-run or lost. The grid runs in this process, on a local process pool or on
a Ray cluster (``hsmlbench.run.executors``); a job that fails is reported and the others go
on. Tables are written afterwards from whatever raw records exist
(``hsmlbench.report.assemble.write_reports``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from hsmlbench.atomic import write_json, write_text
from hsmlbench.results.schema import DIVERGED, DONE
from hsmlbench.results.store import load_raw
from hsmlbench.run import executors
from hsmlbench.run.jobs import Job, error_path, raw_path
from hsmlbench.run.progress import _format_seconds
from hsmlbench.run.single_job import run_job
from hsmlbench.run.versioning import code_version, job_code_version


def local_workers(jobs: list[Job], requested: int | None) -> int:
    """How many jobs run at once on this machine: ``--jobs`` if given; else one per core, or
    one at a time when any job computes on the GPU (one GPU here; ``--jobs N`` shares it
    when its memory allows). The plan's projection uses the same number."""
    if requested is not None:
        return requested
    return 1 if any(job.gpus for job in jobs) else executors.available_cores()


def finished_result(job: Job, out_dir: Path, version: str | None = None) -> dict | None:
    """The job's raw record if it is finished for this config, seed and code version
    (``version``, default: ``code_version`` of its domain now).

    A record without ``code_version`` (written before the field existed) is of unknown code
    and is not reused: the job runs again. A "not run" record (data missing) is never
    finished either: the job is tried again. A "diverged" record is a finished result: the
    same config, seed and code diverge again (delete the file to try anyway).
    """
    path = raw_path(out_dir, job)
    if not path.exists():
        return None
    version = job_code_version(job, version or code_version(job.domain.name))
    done = load_raw(path)
    if done is None or done["status"] not in (DONE, DIVERGED):
        return None
    if not job.config.matches(done.get("config", {})) or done.get("seed", job.seed) != job.seed:
        return None
    if done.get("code_version") != version:
        return None
    return done


def _grid_job(
    job: Job,
    out_dir: Path,
    work_dir: Path,
    progress: bool,
    versions: dict[str, str],
    check_version: bool,
    data_root=None,
) -> dict:
    """``run_job`` as executors call it, recording the grid's code version of the job's
    domain (``versions``). With ``check_version`` (Ray), a node whose installed hsmlbench
    differs from the driver's fails the job at once instead of writing results of other code.
    Local workers run the code this process's fork server loaded when the grid was planned:
    nothing to check."""
    version = versions[job.domain.name]
    if check_version and (here := code_version(job.domain.name)) != version:
        import platform

        raise RuntimeError(
            f"hsmlbench on {platform.node()} is {here}, the grid was planned with "
            f"{version}: install the same hsmlbench on every node of the cluster "
            "(or the source changed while the grid ran)"
        )
    return run_or_reuse(job, out_dir, work_dir, progress, version, data_root)


def run_or_reuse(
    job: Job,
    out_dir: Path,
    work_dir: Path,
    progress: bool = True,
    version: str | None = None,
    data_root=None,
) -> dict:
    """The job's finished record (``finished_result``) if there is one, else ``run_job``'s."""
    done = finished_result(job, out_dir, version)  # e.g. another grid finished it meanwhile
    if done is not None:
        return done
    return run_job(job, out_dir, work_dir, progress, version, data_root)


@dataclass
class GridReport:
    """What a grid run did: files written, jobs finished (reused ones included), failures."""

    total: int
    finished: int = 0
    reused: int = 0
    failed: list[tuple[Job, str, str]] = field(default_factory=list)  # job, error, traceback at
    written: list[Path] = field(default_factory=list)
    not_run: list[tuple[Job, str]] = field(default_factory=list)  # job, why (data missing)
    diverged: list[tuple[Job, str]] = field(default_factory=list)  # job, why (run this time)


class GridProgress:
    """Tracks a grid and logs one line per change (a job started, finished or failed):
    done / running / failed / queued and an ETA. Plain lines, so logs and pipes read well."""

    def __init__(
        self, report: GridReport, work_dir: Path, log, running_word: str = "running"
    ) -> None:
        self.report, self.work_dir, self.log = report, Path(work_dir), log
        self.running_word = running_word
        self.running = 0
        self.t0 = time.perf_counter()
        self.on_success = None  # called with each successful Outcome (Ray: write its raw file)

    def _status(self) -> str:
        r = self.report
        ended = r.finished - r.reused + len(r.failed)
        queued = r.total - r.finished - len(r.failed) - self.running
        left = queued + self.running
        if left == 0:
            eta = "00:00"
        elif ended == 0:
            eta = "?"
        else:
            eta = _format_seconds((time.perf_counter() - self.t0) / ended * left)
        return (
            f"[grid: {r.finished}/{r.total} done, {self.running} {self.running_word}, "
            f"{len(r.failed)} failed, {queued} queued, ETA {eta}]"
        )

    def skipped(self, jobs: list[Job]) -> None:
        self.report.finished += len(jobs)
        self.report.reused += len(jobs)
        if jobs:
            self.log(f"{self._status()} {len(jobs)} finished already (same config, seed, code)")

    def started(self, job: Job) -> None:
        self.running += 1
        self.log(
            f"{self._status()} {'started' if self.running_word == 'running' else 'submitted'} {job.name}"
        )

    def finished(self, outcome: executors.Outcome) -> None:
        job, self.running = outcome.job, self.running - 1
        errors = error_path(self.work_dir, job)
        if outcome.ok:
            if self.on_success is not None:
                self.on_success(outcome)
            errors.unlink(missing_ok=True)
            self.report.finished += 1
            raw = outcome.raw
            if raw["status"] == DIVERGED:
                self.report.diverged.append((job, raw.get("reason", "")))
                self.log(f"{self._status()} DIVERGED {job.name}: {raw.get('reason', '')}")
                return
            if raw["status"] != DONE:
                self.report.not_run.append((job, raw.get("reason", "")))
                self.log(f"{self._status()} NOT RUN {job.name}: {raw.get('reason', '')}")
                return
            cells = raw.get("per_dataset") or {"": raw}  # regression: the record is its cell
            summary = ", ".join(
                f"{c.get('label') or 'mean'} {sum(c['per_task']) / len(c['per_task']):.4g}"
                for c in cells.values()
            )
            summary += f" over {len(next(iter(cells.values()))['per_task'])} tasks"
            self.log(
                f"{self._status()} finished {job.name}: {summary}, {outcome.seconds:.0f} s"
                + (f" on {outcome.host}" if outcome.host else "")
            )
            return
        text = (f"host: {outcome.host}\n" if outcome.host else "") + (outcome.traceback or "")
        try:
            write_text(errors, text)
            where = str(errors)
        except OSError as error:  # e.g. the run folder is unusable: the log gets it instead
            where = f"not saved ({error.strerror}), shown above"
            self.log(text)
        self.report.failed.append((job, outcome.error, where))
        self.log(f"{self._status()} FAILED {job.name}: {outcome.error} (traceback: {where})")


def reproduce(
    jobs: list[Job],
    out_dir: Path,
    work_dir: Path,
    progress: bool = True,
    log=print,
    *,
    workers: int | None = None,
    executor: str = "local",
    address: str | None = None,
    data_root=None,
) -> GridReport:
    """Runs the grid's unfinished jobs (the caller then writes the tables:
    ``hsmlbench.report.assemble.write_reports``).

    ``executor="local"``: ``workers`` processes (default: one per core), never more
    than jobs left; with one, the jobs run one after another in this process, with per-job
    progress bars.
    ``executor="ray"``: one Ray task per job on the cluster at ``address``; raw results come
    back to this process and are written under ``out_dir``; ``work_dir`` (checkpoints) should
    be on a filesystem every node shares. A failed job does not stop the others: it is in
    ``GridReport.failed`` with its traceback in ``error_path(work_dir, job)``. Jobs on a GPU
    (images, when CUDA is there) default to one at a time.
    """
    report = GridReport(total=len(jobs))
    versions = {d: code_version(d) for d in dict.fromkeys(job.domain.name for job in jobs)}
    done = [
        job for job in jobs if finished_result(job, out_dir, versions[job.domain.name]) is not None
    ]
    todo = [job for job in jobs if job not in done]
    workers = local_workers(todo, workers)
    if executor == "ray":
        executors.import_ray()  # before any line is logged
        tracker = GridProgress(report, work_dir, log, running_word="submitted")
        tracker.skipped(done)
        work = Path(work_dir).resolve()
        tracker.on_success = lambda o: write_json(raw_path(out_dir, o.job), o.raw)
        # Each node writes its copy of a raw result beside its checkpoints; the driver's
        # copy under out_dir is the one tables are made from.
        args = (work / "ray-results", work, False, versions, True, data_root)
        if todo:  # no cluster connection just to find everything finished
            executors.run_ray(_grid_job, todo, args, address, tracker)
    elif executor == "local":
        # never more workers than jobs left; one left runs in this process
        workers = max(1, min(workers or executors.available_cores(), len(todo)))
        tracker = GridProgress(report, work_dir, log)
        tracker.skipped(done)
        if workers == 1:
            args = (out_dir, work_dir, progress, versions, False, data_root)
            executors.run_serial(_grid_job, todo, args, tracker)
        else:
            root = Path(data_root).resolve() if data_root is not None else None
            args = (Path(out_dir).resolve(), Path(work_dir).resolve(), False, versions, False, root)
            executors.run_pool(_grid_job, todo, args, workers, tracker, executors.JOB_MODULES)
    else:
        raise ValueError(f"unknown executor {executor!r}; known: local, ray")

    return report
