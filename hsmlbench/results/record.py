"""``job_record``: the only builder of a raw job record, for ``reproduce`` and ``evaluate``.

It is part of every job's code version (``hsmlbench.run.versioning``), as is everything it
calls: a raw file's bytes change only with the code version.
"""

from __future__ import annotations

from hsmlbench.results.schema import SCHEMA_VERSION, STATUSES, checksum, record_problem


def job_record(
    *,
    job: str,
    config,
    seed: int,
    status: str,
    code_version: str,
    provenance: dict,
    measurements: dict,
    method: str | None = None,
) -> dict:
    """The raw record of one job: identity (from ``config`` and ``seed``), status, what was
    measured (``measurements``: per-task errors and assignments, curves, events, timings, or
    why the job did not finish), and the code and machine that measured it. Raises
    ValueError if the result would not pass the validating reader. ``method``: the row's
    name when it is not the config's (a plug-in with ``--set`` settings)."""
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}; known: {', '.join(STATUSES)}")
    record = {
        "schema_version": SCHEMA_VERSION,
        "job": job,
        "table": config.table,
        "method": method or getattr(config, "variant", None) or config.method,
        "setting": config.setting,
        "seed": seed,
        "budget": config.budget.name,
        "status": status,
        **measurements,
        "code_version": code_version,
        "provenance": provenance,
        "config": config.to_dict(),
    }
    record["checksum"] = checksum(record)
    problem = record_problem(record)
    if problem:
        raise ValueError(f"raw record of {job} would be invalid: {problem}")
    return record
