"""The raw-file schema (docs/PROTOCOL.md §6 "Provenance"): field names, statuses, validation.

Version 2 (this one) holds measurements only. Version 1 files (no ``schema_version``) also
held derived fields (``mean``, ``ci95``, cluster statistics); ``migrations`` reads them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from pathlib import Path

import numpy as np

SCHEMA_VERSION = 2

DONE = "done"
DIVERGED = "diverged"  # training or test-time adaptation diverged: a result, not retried
NOT_RUN = "not run"  # the data was missing: tried again next time
STATUSES = (DONE, DIVERGED, NOT_RUN)

# Every record: the job's identity.
IDENTITY = {"job": str, "table": str, "method": str, "setting": str, "seed": int, "budget": str}


def raw_file_path(out_dir: Path, table: str, job: str, budget: str) -> Path:
    """Where a job's raw record lives: ``<out>/runs/<table>/<job>-<budget>.json``."""
    return Path(out_dir) / "runs" / table / f"{job}-{budget}.json"


class RawFileError(ValueError):
    """A file that is not a valid raw job record (one line says why)."""


def checksum(record: dict) -> str:
    """SHA-256 of a record's canonical JSON, its own ``checksum`` field left out: any edit of
    its identity, config or measurements changes it."""
    body = {k: v for k, v in record.items() if k != "checksum"}
    canonical = json.dumps(json.loads(json.dumps(body)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _name_matches(raw: dict) -> bool:
    """Whether the record's ``job`` names its own table, method, setting and seed (a method
    with ``--set`` settings is named ``<method>+set<hash>`` in its job)."""
    method = raw["method"]
    if "[" in method:
        prefix = f"{raw['table']}-{method.partition('[')[0]}+set"
        return raw["job"].startswith(prefix) and raw["job"].endswith(
            f"-{raw['setting']}-seed{raw['seed']}"
        )
    return raw["job"] == f"{raw['table']}-{method}-{raw['setting']}-seed{raw['seed']}"


def encode_array(values: np.ndarray) -> dict:
    """A float array stored compactly and exactly as float32 (per-task assignments)."""
    array = np.ascontiguousarray(values, dtype="<f4")
    return {
        "dtype": "float32",
        "shape": list(array.shape),
        "base64": base64.b64encode(array.tobytes()).decode("ascii"),
    }


def decode_array(stored: dict) -> np.ndarray:
    data = base64.b64decode(stored["base64"])
    return np.frombuffer(data, dtype="<f4").reshape(stored["shape"]).astype(np.float64)


def _finite_list(values, name: str) -> str | None:
    if not isinstance(values, list) or not values:
        return f"'{name}' is not a non-empty list of numbers"
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"'{name}' holds a non-number ({value!r})"
        try:
            if not math.isfinite(value):
                return f"'{name}' holds a non-finite value ({value!r})"
        except OverflowError:  # an integer too large for a float
            return f"'{name}' holds a number out of range"
    return None


def _per_task_problem(cell: dict, where: str) -> str | None:
    """Per-task measurements of one cell: finite, and every per-task field the same length."""
    problem = _finite_list(cell.get("per_task"), f"{where}per_task")
    if problem:
        return problem
    n = len(cell["per_task"])
    if not isinstance(cell.get("per_step_mean"), list):
        return f"no valid '{where}per_step_mean' field"
    by_step = cell.get("per_task_by_step") or {}
    if not isinstance(by_step, dict):
        return f"'{where}per_task_by_step' is not an object"
    for step, values in by_step.items():
        problem = _finite_list(values, f"{where}per_task_by_step[{step}]")
        if problem:
            return problem
        if len(values) != n:
            return f"'{where}per_task_by_step[{step}]' has {len(values)} tasks, per_task {n}"
    family = cell.get("task_family")
    if family is not None and (not isinstance(family, list) or len(family) != n):
        return f"'{where}task_family' is not a list of {n} family indices"
    assignments = cell.get("assignments") or {}
    if not isinstance(assignments, dict):
        return f"'{where}assignments' is not an object"
    for name, stored in assignments.items():
        try:
            shape = decode_array(stored).shape
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            return f"'{where}assignments[{name}]' is not a stored array ({error})"
        if len(shape) != 2 or shape[0] != n:
            return f"'{where}assignments[{name}]' has shape {list(shape)}, not [{n}, clusters]"
    if "n_tasks" in cell and cell["n_tasks"] != n:  # a version-1 file's own count
        return f"has {n} per-task errors for n_tasks {cell['n_tasks']}"
    return None


# A version-2 record of a finished job holds these besides its identity and measurements.
DONE_FIELDS = {"code_version": str, "provenance": dict, "config": dict, "meta_step": str}


def record_problem(raw, path: Path | None = None) -> str | None:
    """Why ``raw`` is not a valid raw job record (None: it is one). With ``path``, the file
    must also be named after the job it holds (a stray copy never counts as another seed)."""
    if not isinstance(raw, dict):
        return f"holds a JSON {type(raw).__name__}, not a raw job file"
    version = raw.get("schema_version", 1)
    if version not in (1, SCHEMA_VERSION):
        return f"has schema_version {version!r}; this hsmlbench reads 1 and {SCHEMA_VERSION}"
    for key, kind in IDENTITY.items():
        value = raw.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            return f"no valid '{key}' field"
    if not _name_matches(raw):
        return (
            f"names job {raw['job']} but holds {raw['table']} {raw['method']} "
            f"{raw['setting']} seed {raw['seed']}: edited or mixed up"
        )
    if version == SCHEMA_VERSION and "status" not in raw:
        return "no 'status' field"
    if version == SCHEMA_VERSION and raw.get("checksum") != checksum(raw):
        return "its checksum does not match its content: edited or damaged"
    status = raw.get("status", DONE)  # version 1 wrote none for a finished job
    if status not in STATUSES:
        return f"has an unknown status {status!r}"
    if path is not None and Path(path).name != f"{raw['job']}-{raw['budget']}.json":
        return f"holds job {raw['job']} at budget {raw['budget']}: a copy, not its file"
    if status != DONE:
        return None
    if version == SCHEMA_VERSION:
        for key, kind in DONE_FIELDS.items():
            if not isinstance(raw.get(key), kind):
                return f"no valid '{key}' field"
    config = raw.get("config")
    per_dataset = isinstance(config, dict) and "datasets" in config  # an image job
    if per_dataset:
        cells = raw.get("per_dataset")
        if not isinstance(cells, dict) or not cells:
            return "'per_dataset' is not a non-empty object"
        for name, cell in cells.items():
            if not isinstance(cell, dict) or not isinstance(cell.get("label"), str):
                return f"'per_dataset[{name}]' is not an object with a 'label'"
            problem = _per_task_problem(cell, f"per_dataset[{name}].")
            if problem:
                return problem
        return None
    return _per_task_problem(raw, "")
