"""Re-running committed jobs and comparing their numbers (``hsmlbench verify``,
docs/VERIFYING.md).

A committed raw record names its job (table, method, setting, seed, budget and config). This
module rebuilds that job with the current code, runs it in a scratch work folder (finished
jobs there are reused, so an interrupted verification resumes), and compares every
measurement of the two records number by number: per-task errors at each recorded step, the
training curves, the events, the fits. It compares numbers, not code versions, so it works
across versions, machines and devices. It never writes into the results folder it checks:
it reads committed records with the validating reader and never sets one aside.

What a difference means for the tables (does a verdict change?) is report code's:
``hsmlbench.report.verification``.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from hsmlbench.methods.registry import get_method
from hsmlbench.results.schema import DIVERGED, DONE, RawFileError
from hsmlbench.results.store import read_raw
from hsmlbench.run.jobs import Job, raw_path

BIT_IDENTICAL = "bit-identical"
WITHIN_TOLERANCE = "equal within tolerance"
DIFFERS = "differs"
NOT_RERUN = "not re-run"  # the re-run did not finish (failed, or its data is missing)
CANNOT_RERUN = "cannot be re-run"  # this code cannot rebuild the committed job

DEFAULT_RTOL = 1e-6  # "equal within tolerance": |a − b| ≤ atol + rtol·|a|
DEFAULT_ATOL = 1e-9

# Fields of a record that are not measurements: the job's identity, its code and machine, and
# timings. Everything else present in both records is compared.
NOT_MEASUREMENTS = frozenset(
    {
        "schema_version",
        "job",
        "table",
        "method",
        "setting",
        "seed",
        "budget",
        "code_version",
        "provenance",
        "environment",
        "config",
        "checksum",
        "wall_time_s",
        "peak_rss_mb",
        "peak_gpu_mb",
        "meta_step",
        "reason",
    }
)


@dataclass
class CommittedJob:
    """One committed raw record and the job this code rebuilds from it (None: it cannot)."""

    path: Path
    record: dict | None
    job: Job | None
    problem: str | None = None  # why it cannot be verified (unreadable, config changed)

    @property
    def name(self) -> str:
        if self.record is not None:
            return self.record.get("job") or self.path.stem
        return self.path.stem


def job_from_record(record: dict) -> tuple[Job | None, str | None]:
    """The job the current code runs for a committed record, or (None, why not).

    The row's method is the config's ablation variant or method; a plug-in's settings that
    differ from its defaults are the job's ``--set`` overrides. The rebuilt job must have the
    record's name and a config that matches the stored one (``config_matches``)."""
    config = record["config"]
    method = config.get("variant") or config["method"]
    overrides: tuple = ()
    stored_settings = config.get("plugin_settings")
    try:
        if stored_settings:
            defaults = get_method(config["method"]).default_settings() or {}
            overrides = tuple(
                sorted((k, v) for k, v in stored_settings.items() if defaults.get(k) != v)
            )
        job = Job(
            record["table"], method, record["setting"], record["seed"], record["budget"], overrides
        )
        rebuilt = job.config
    except (KeyError, ValueError) as error:
        return None, f"this code cannot build its job: {error.args[0] if error.args else error}"
    if record.get("job") and job.name != record["job"]:
        return None, f"this code names its job {job.name}, the record {record['job']}"
    if not rebuilt.matches(config):
        current, stored = rebuilt.to_dict(), config
        fields = sorted(k for k in set(current) | set(stored) if current.get(k) != stored.get(k))
        return None, f"this code builds another config for it (fields: {', '.join(fields)})"
    return job, None


def committed_jobs(
    results_dir: Path, tables: list[str] | None = None, names: list[str] | None = None
) -> list[CommittedJob]:
    """Every committed job record under ``results_dir/runs`` (of ``tables``, or named in
    ``names``, if given) that finished (done or diverged), each with the job to re-run or
    the reason it cannot be. Unreadable files are listed with their problem, never moved."""
    found = []
    for path in sorted(Path(results_dir).glob("runs/*/*.json")):
        if tables and path.parent.name not in tables:
            continue
        try:
            record = read_raw(path, named=True)
        except RawFileError as error:
            if not names or path.stem.rsplit("-", 1)[0] in names:
                found.append(CommittedJob(path, None, None, f"unreadable: {error}"))
            continue
        if names and record.get("job") not in names:
            continue
        if record["status"] not in (DONE, DIVERGED):
            continue  # never ran (e.g. its data was missing): nothing to reproduce
        job, problem = job_from_record(record)
        found.append(CommittedJob(path, record, job, problem))
    return found


def sample(jobs: list[CommittedJob], n: int, seed: int = 0) -> list[CommittedJob]:
    """``n`` of ``jobs`` chosen at random, reproducibly: the same seed and the same committed
    jobs give the same choice on any machine (sorted by name, then Python's Random(seed))."""
    ordered = sorted(jobs, key=lambda c: c.name)
    if n >= len(ordered):
        return ordered
    chosen = random.Random(seed).sample(range(len(ordered)), n)
    return [ordered[i] for i in sorted(chosen)]


def _leaves(value, path: str, into: dict) -> None:
    """Flattens a record's measurement into path → number or text (encoded arrays decoded)."""
    if isinstance(value, dict) and set(value) == {"dtype", "shape", "base64"}:
        from hsmlbench.results.schema import decode_array

        for i, v in enumerate(decode_array(value).ravel().tolist()):
            into[f"{path}[{i}]"] = v
    elif isinstance(value, dict):
        for key in value:
            _leaves(value[key], f"{path}.{key}" if path else str(key), into)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _leaves(v, f"{path}[{i}]", into)
    else:
        into[path] = value


def _same(a, b) -> bool:
    """Equal as stored (NaN equals NaN: a diverged curve holds them)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _numeric(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


@dataclass
class NumberComparison:
    """How a re-run's measurements compare with the committed ones."""

    outcome: str
    n_values: int = 0
    n_differing: int = 0
    max_abs: float = 0.0
    max_rel: float = 0.0
    first_differences: list[str] = field(default_factory=list)  # up to five, path: a → b
    not_compared: list[str] = field(default_factory=list)  # fields in only one record


def compare_measurements(
    committed: dict, rerun: dict, rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL
) -> NumberComparison:
    """Every measurement present in both records, number by number: "bit-identical" when all
    are equal, "equal within tolerance" when every number is within ``atol + rtol·|a|`` and
    every text equal, else "differs" (with the largest absolute and relative difference)."""
    keys = (set(committed) | set(rerun)) - NOT_MEASUREMENTS
    shared = sorted(k for k in keys if k in committed and k in rerun)
    result = NumberComparison(BIT_IDENTICAL)
    result.not_compared = sorted(keys - set(shared))
    if committed.get("status") != rerun.get("status"):
        result.outcome = DIFFERS
        result.first_differences.append(
            f"status: {committed.get('status')} → {rerun.get('status')}"
        )
    a_leaves: dict = {}
    b_leaves: dict = {}
    for key in shared:
        _leaves(committed[key], key, a_leaves)
        _leaves(rerun[key], key, b_leaves)
    within = True
    for path in sorted(set(a_leaves) | set(b_leaves)):
        result.n_values += 1
        if path not in a_leaves or path not in b_leaves:
            within = False
            result.n_differing += 1
            _note(result, f"{path}: only in the {'re-run' if path in b_leaves else 'committed'}")
            continue
        a, b = a_leaves[path], b_leaves[path]
        if _same(a, b):
            continue
        result.n_differing += 1
        _note(result, f"{path}: {a!r} → {b!r}")
        if _numeric(a) and _numeric(b) and math.isfinite(a) and math.isfinite(b):
            diff = abs(a - b)
            result.max_abs = max(result.max_abs, diff)
            if a != 0:
                result.max_rel = max(result.max_rel, diff / abs(a))
            elif diff > 0:
                result.max_rel = math.inf
            within = within and diff <= atol + rtol * abs(a)
        else:
            within = False
    if result.outcome == BIT_IDENTICAL and result.n_differing:
        result.outcome = WITHIN_TOLERANCE if within else DIFFERS
    return result


def _note(result: NumberComparison, text: str) -> None:
    if len(result.first_differences) < 5:
        result.first_differences.append(text)


def platform_of(record: dict) -> dict:
    """What decides whether two runs can be bit-identical: torch build, device and threads
    (version-1 records keep them under ``environment``)."""
    source = record.get("provenance") or {}
    if "torch" not in source:
        source = record.get("environment") or {}
    numerics = source.get("numerics") or {}
    device = source.get("device")
    if isinstance(device, str):  # "1 threads" (older records) and "1 thread" are one device
        device = re.sub(r"\b1 threads\b", "1 thread", device)
    return {
        "torch": source.get("torch"),
        "device": device,
        "tf32": bool(numerics.get("matmul_allow_tf32") or numerics.get("cudnn_allow_tf32")),
    }


def bit_identity_expected(committed: dict, rerun: dict) -> tuple[bool, str]:
    """(expected, why): bit identity is expected on the same torch build, device kind and
    thread count, with no TF32; otherwise agreement is judged by the seed-aware rule."""
    a, b = platform_of(committed), platform_of(rerun)
    on_cpu = str(a["device"]).startswith("CPU")  # a GPU's name is its model's
    if a == b and on_cpu and not a["tf32"]:
        return True, f"same torch ({a['torch']}) and device ({a['device']})"
    changed = [f"{k} {a[k]} → {b[k]}" for k in a if a[k] != b[k]]
    if not changed:
        return False, f"a GPU ({a['device']}): results may vary run to run"
    return False, "another platform: " + "; ".join(changed)


def rerun_record(work_dir: Path, job: Job) -> dict | None:
    """The re-run's raw record in the scratch folder, if it finished."""
    path = raw_path(work_dir, job)
    if not path.exists():
        return None
    try:
        return read_raw(path, named=True)
    except RawFileError:
        return None
