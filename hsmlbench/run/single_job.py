"""One job of the grid, start to finish: train (resuming), evaluate on the fixed test tasks,
and write its raw record atomically (docs/PROTOCOL.md §3, §6).

Everything this module runs is inside the job's code version (``hsmlbench.run.versioning``).
"""

from __future__ import annotations

import json
import resource
from pathlib import Path

from hsmlbench.atomic import set_aside, write_json, write_text
from hsmlbench.results.provenance import probe
from hsmlbench.results.record import job_record
from hsmlbench.results.schema import DIVERGED, DONE, NOT_RUN
from hsmlbench.run.evaluation import evaluate
from hsmlbench.run.jobs import Job, raw_path, run_dir
from hsmlbench.run.numerics import apply_numerics_policy, set_job_threads
from hsmlbench.run.training import (
    CHECKPOINT,
    CheckpointOfAnotherRun,
    NonFiniteLossError,
    previous_checkpoint,
    train,
)
from hsmlbench.run.versioning import CODE_VERSION_FILE, code_version, job_code_version, job_sources


def _prepare_run_dir(folder: Path, version: str) -> bool:
    """Whether to resume from the checkpoint in ``folder``, tagging the run with this code.

    A checkpoint started by another code version is renamed aside (kept, not resumed), so a
    stale job trains again from scratch; one with no tag (older than the tag) is resumed.
    """
    checkpoint, tag = folder / CHECKPOINT, folder / CODE_VERSION_FILE
    previous = previous_checkpoint(checkpoint)
    started_by = tag.read_text().strip() if tag.exists() else None
    if started_by not in (None, version):
        if checkpoint.exists():
            checkpoint.rename(folder / f"checkpoint-{started_by}.pt")
        if previous.exists():
            previous.rename(folder / f"checkpoint-{started_by}.previous.pt")
    write_text(tag, version + "\n")  # from here on the run goes on under this code
    return checkpoint.exists() or previous.exists()


def run_job(
    job: Job,
    out_dir: Path,
    work_dir: Path,
    progress: bool = True,
    version: str | None = None,
    data_root=None,
) -> dict:
    """Runs one job and returns its raw record, also written atomically to
    ``raw_path(out_dir, job)``. Whether a finished record can be reused instead is the grid's
    decision (``hsmlbench.run.grid.finished_result``), made before this is called.

    ``version``: the code version to record (a grid passes the one it was planned with, the
    code its processes loaded); default: ``code_version`` of the job's domain now. A job whose
    data is missing (the image datasets) writes a "not run" record naming what is missing
    and how to get it."""
    config, domain = job.config, job.domain
    version = job_code_version(job, version or code_version(domain.name))
    device = domain.device()
    apply_numerics_policy()  # before the probe records the flags
    set_job_threads(domain.name)
    provenance = probe(str(device), job_sources(domain.name).values())

    def write(status: str, measurements: dict) -> dict:
        return _write(out_dir, job, _record(job, status, version, provenance, measurements))

    problems = domain.data_problems(config, data_root)
    if problems:
        return write(NOT_RUN, domain.not_run_fields(config, problems, data_root))
    folder = run_dir(work_dir, job)
    resume = _prepare_run_dir(folder, version)

    def trained_here(resume: bool):
        return train(
            config,
            job.seed,
            folder,
            resume=resume,
            progress=progress,
            data_root=data_root,
            device=device,
        )

    try:
        try:
            trained = trained_here(resume)
        except CheckpointOfAnotherRun:  # e.g. another seed or meta-step left it here
            for stale in (folder / CHECKPOINT, previous_checkpoint(folder / CHECKPOINT)):
                if stale.exists():
                    set_aside(
                        stale,
                        "a checkpoint of another run (another config or seed); this job "
                        "starts afresh",
                        kind="superseded",
                    )
            trained = trained_here(False)
    except NonFiniteLossError as error:
        # A result, not a crash: this config and seed diverge at this code. The table says so
        # beside the seeds that finished instead of silently averaging only those.
        return write(DIVERGED, _diverged(error, error.iteration, config))
    try:
        results = evaluate(trained.model, config, data_root, device)
    except FloatingPointError as error:  # trained, but its test-time adaptation blows up
        return write(DIVERGED, _diverged(error, None, config))
    return _write(out_dir, job, finished_record(job, trained, results, version, provenance))


def _record(job: Job, status: str, version: str, provenance: dict, measurements: dict) -> dict:
    """The job's raw record (``job_record``), named as its table rows name it."""
    return job_record(
        job=job.name,
        config=job.config,
        seed=job.seed,
        status=status,
        code_version=version,
        provenance=provenance,
        measurements=measurements,
        method=job.row_method,
    )


def _write(out_dir: Path, job: Job, record: dict) -> dict:
    """``record`` written atomically to the job's raw file, the file it replaces kept."""
    _keep_previous(raw_path(out_dir, job))
    write_json(raw_path(out_dir, job), record)
    return record


def _keep_previous(path: Path) -> None:
    """A raw file the new record replaces (of another config or code version: the grid reuses
    a current one instead of running its job) is kept under another name, never overwritten."""
    if not path.exists():
        return
    try:
        previous = json.loads(path.read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        previous = None
    if previous != NOT_RUN:  # a "not run" record measured nothing: it is simply replaced
        set_aside(
            path, "replaced by a new run of its job (other config or code)", kind="superseded"
        )


def finished_record(job: Job, trained, results: dict, version: str, provenance: dict) -> dict:
    """The raw record of a job that trained and evaluated: its domain's measurements, the
    timings and events of training. ``hsmlbench evaluate`` writes its records through this
    too, so both are the same shape, from code inside the code version."""
    config = job.config
    measurements = job.domain.job_fields(config, trained, results) | {
        "iterations": config.budget.iterations,
        "wall_time_s": trained.wall_time_s,
        "events": trained.events,
        "meta_step": trained.meta_step,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mb": trained.peak_gpu_mb,
    }
    return _record(job, DONE, version, provenance, measurements)


def _diverged(error: Exception, iteration: int | None, config) -> dict:
    """What a diverged job measured: where it diverged (``iteration`` None: in evaluation,
    after training finished)."""
    return {
        "reason": str(error),
        "diverged_at_iteration": iteration,
        "iterations": config.budget.iterations,
    }
