"""Older raw files read as today's shape, in one place.

Version 1 (no ``schema_version``; every committed paper row up to code version
``0.1.0+b803c9e11742``) stored derived fields beside the measurements (``mean``, ``ci95``,
``n_tasks``, ``per_family_mean``, ``mean_assignments_by_family``, ``cluster_structure``) and
kept the run's machine in ``environment``, apart from ``provenance``. Read as version 2: the
measurements as they are, ``provenance`` merged with ``environment``, and ``legacy`` set.
Version 1 also left out fields that had defaults when it was written: ``status`` (then
"done") and ``meta_step`` (then "autograd", the only path there was); they are filled in here
and nowhere else. The derived fields stay where they were: per-task assignments were never stored in version 1,
so the cluster statistics of those files can only be read, not recomputed; the tables'
cluster notes say so. Nothing here rewrites a file.
"""

from __future__ import annotations

from hsmlbench.results.schema import DONE, SCHEMA_VERSION


def upgrade(raw: dict) -> dict:
    """``raw`` in the current shape (a new dict; version-2 records come back unchanged)."""
    version = raw.get("schema_version", 1)
    if version == SCHEMA_VERSION:
        return raw
    upgraded = dict(raw)
    environment = upgraded.pop("environment", {}) or {}
    started = upgraded.get("provenance") or {}
    commit = started.get("commit") or environment.get("commit")
    upgraded["provenance"] = {
        **{k: v for k, v in environment.items() if k not in ("commit", "date")},
        **started,
        "commit": commit,
        "started": started.get("started") or environment.get("date"),
    }
    upgraded.setdefault("status", DONE)
    if upgraded["status"] == DONE:
        upgraded.setdefault("meta_step", "autograd")
    upgraded["legacy"] = f"schema version {version}, read by hsmlbench.results.migrations"
    upgraded["schema_version"] = SCHEMA_VERSION
    return upgraded
