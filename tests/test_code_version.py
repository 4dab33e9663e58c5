"""A raw record's bytes change only with its code version (docs/PROTOCOL.md §6): every
hsmlbench module that runs while a job builds its record is among the modules the version
hashes, and only such modules build raw records."""

from __future__ import annotations

import ast
import dataclasses
import sys
from pathlib import Path

import pytest

from hsmlbench.run.jobs import Job
from hsmlbench.run.single_job import run_job
from hsmlbench.run.versioning import job_sources

PACKAGE = Path(__file__).resolve().parents[1] / "hsmlbench"

# Modules that run during a job but put nothing into its record, and why.
WRITE_NOTHING_TO_THE_RECORD = {
    "hsmlbench.run.progress": "progress lines on the terminal",
    "hsmlbench.run.projection": "the progress line's ETA (ProgressLine)",
}


def _at_import(frame) -> bool:
    """Whether ``frame`` runs as part of importing a module (the import system is on its
    stack)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib._bootstrap"):
            return True
        frame = frame.f_back
    return False


def _modules_run_outside(allowed: set[str], call) -> set[str]:
    """The hsmlbench modules not in ``allowed`` whose functions ran during ``call()``, not
    counting what runs while a module is imported (a module merely loaded, e.g. another
    domain's built-ins registered through their entry point, shapes no record: whoever uses
    its names at run time is caught here)."""
    ran: set[str] = set()

    def profile(frame, event, arg):
        if event != "call":
            return
        name = frame.f_globals.get("__name__", "")
        if name in allowed or name in ran or not name.startswith("hsmlbench"):
            return
        if not _at_import(frame):
            ran.add(name)

    sys.setprofile(profile)
    try:
        call()
    finally:
        sys.setprofile(None)
    return ran


@pytest.mark.parametrize(
    "job",
    [Job("T1", "hsml", "5-shot", 0, "smoke"), Job("T2", "hsml-d", "5-shot", 0, "smoke")],
    ids=lambda job: job.name,
)
def test_every_module_that_runs_during_a_job_is_inside_its_code_version(tmp_path, monkeypatch, job):
    from hsmlbench.domains.regression import configs

    short = dataclasses.replace(configs.BUDGETS["smoke"], iterations=3, n_test_tasks=20)
    monkeypatch.setitem(configs.BUDGETS, "smoke", short)  # the same code, run briefly
    hashed = set(job_sources(job.domain.name))
    outside = _modules_run_outside(
        hashed | set(WRITE_NOTHING_TO_THE_RECORD),
        lambda: run_job(job, tmp_path / "out", tmp_path / "work", progress=True),
    )
    assert (tmp_path / "out" / "runs" / job.table).is_dir()  # the job did write its record
    assert outside == set(), f"not in the code version, yet ran during the job: {sorted(outside)}"


def test_the_check_sees_a_module_outside_the_code_version(tmp_path):
    """The same check, told that the record builder and the report statistics are not hashed,
    finds both running (so it can fail)."""
    from hsmlbench.report.statistics import mean_ci95
    from hsmlbench.results.record import job_record

    def a_job_that_uses_report_code():
        mean_ci95([1.0, 2.0])
        with pytest.raises(ValueError):
            job_record(
                job="x",
                config=None,
                seed=0,
                status="?",
                code_version="",
                provenance={},
                measurements={},
            )

    outside = _modules_run_outside({"hsmlbench.run.jobs"}, a_job_that_uses_report_code)
    assert outside == {"hsmlbench.report.statistics", "hsmlbench.results.record"}


def test_only_modules_inside_the_code_version_build_raw_records():
    """``job_record`` is the one builder of raw records; whoever calls it is hashed."""
    callers = set()
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        calls = {
            node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
        }
        if "job_record" in calls:
            parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
            callers.add(".".join(parts))
    assert callers == {"hsmlbench.run.single_job"}
    for domain in ("regression", "images"):
        assert callers <= set(job_sources(domain))
