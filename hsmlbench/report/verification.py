"""``hsmlbench verify``: re-run committed jobs, compare their numbers, and say whether any
verdict of the tables would change; VERIFY.md and VERIFY.json (docs/VERIFYING.md).

The re-running and the number-by-number comparison are ``hsmlbench.run.verify``; this module
judges what the differences mean for the tables. It assembles every affected table twice,
from copies of the committed records and from the same copies with the re-run records in
place of the committed ones, and compares each cell's verdict against the published value,
each claim's verdict and each ablation effect's. Where bit identity cannot be expected
(another torch build or device, a GPU), a row agrees when its mean is within its cell's
seed-to-seed interval (the t interval over seed means the tables print) and no verdict changes.

Nothing in the results folder it checks is written, except VERIFY.md / VERIFY.json (and, with
``replace``, the re-run records and the tables rendered from them, after the comparison is
written).
"""

from __future__ import annotations

import platform
import shutil
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from hsmlbench.atomic import write_json, write_text
from hsmlbench.report.assemble import EXTENDED, assemble_table, has_extra_methods
from hsmlbench.run import verify as rv

VERIFY_MD, VERIFY_JSON = "VERIFY.md", "VERIFY.json"


@dataclass
class RowResult:
    """One committed job: how its re-run compares."""

    job: str
    table: str
    method: str
    setting: str
    seed: int
    budget: str
    outcome: str
    why: str = ""  # why not re-run / cannot be re-run, or the platform note
    bit_identity_expected: bool | None = None
    seed_aware: str | None = None  # "agrees" / "disagrees" where identity is not expected
    n_values: int = 0
    n_differing: int = 0
    max_abs: float | None = None
    max_rel: float | None = None
    first_differences: list[str] = field(default_factory=list)
    not_compared: list[str] = field(default_factory=list)
    committed_code_version: str | None = None
    rerun_code_version: str | None = None
    committed_wall_s: float | None = None
    rerun_wall_s: float | None = None
    committed_mean: float | None = None
    rerun_mean: float | None = None


@dataclass
class VerifyResult:
    rows: list[RowResult]
    verdict_changes: list[str]
    failed_jobs: list[str]
    wall_time_s: float
    info: dict

    @property
    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self.rows:
            counts[row.outcome] = counts.get(row.outcome, 0) + 1
        return counts

    def unexpected(self) -> list[RowResult]:
        """Rows not bit-identical where bit identity was expected."""
        return [
            r for r in self.rows if r.bit_identity_expected and r.outcome not in (rv.BIT_IDENTICAL,)
        ]


def _mean(record: dict | None) -> float | None:
    values = (record or {}).get("per_task")
    return sum(values) / len(values) if values else None


def _assemble_all(folder: Path, tables: list[tuple[str, str]]) -> dict[str, dict]:
    """Every table (and its -extended) of ``tables`` assembled from ``folder``'s records."""
    assembled = {}
    for table, budget in tables:
        names = [table] + ([table + EXTENDED] if has_extra_methods(table, budget, folder) else [])
        for name in names:
            try:
                assembled[f"{name} ({budget})"] = assemble_table(name, budget, folder)
            except FileNotFoundError:
                continue
    return assembled


def _verdicts(data: dict) -> dict[str, str]:
    summary = data["summary"]
    verdicts = {}
    for cell in summary["cells"]:
        if "verdict" in cell:
            verdicts[f"{cell['method']} {cell['setting']} against the published value"] = cell[
                "verdict"
            ]
    for claim in summary["comparisons"]:
        verdicts[f"claim '{claim['claim']}' ({claim['family']})"] = claim["verdict"]
    for effect in summary.get("effects", []):
        key = f"effect of {effect['change']} against {effect['reference']} ({effect['setting']})"
        verdicts[key] = effect["verdict"]
    return verdicts


def verdict_changes(
    results_dir: Path, replacements: dict[Path, Path], scratch: Path
) -> tuple[list[str], dict[str, dict]]:
    """Which verdicts change when the committed records in ``replacements`` (committed path →
    re-run record's path) are replaced; also the committed tables' assembled data (for the
    seed intervals). Works on copies under ``scratch``: the results folder is only read."""
    tables = sorted({(p.parent.name, p.stem.rsplit("-", 1)[-1]) for p in replacements})
    if any(t == "T1" for t, _ in tables):  # the ablations compare with T1's rows
        tables += [(t, b) for t, b in _committed_tables(results_dir) if t == "ablations"]
    tables = sorted(set(tables))
    committed_copy, rerun_copy = scratch / "committed", scratch / "rerun"
    for folder in (committed_copy, rerun_copy):
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(Path(results_dir) / "runs", folder / "runs")
    for committed_path, rerun_path in replacements.items():
        shutil.copyfile(
            rerun_path, rerun_copy / "runs" / committed_path.parent.name / committed_path.name
        )
    before = _assemble_all(committed_copy, tables)
    after = _assemble_all(rerun_copy, tables)
    changes = []
    for name, data in before.items():
        old, new = _verdicts(data), _verdicts(after[name]) if name in after else {}
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                changes.append(f"{name}: {key}: {old.get(key)!r} → {new.get(key)!r}")
    return changes, before


def _committed_tables(results_dir: Path) -> list[tuple[str, str]]:
    found = set()
    for path in Path(results_dir).glob("runs/*/*.json"):
        found.add((path.parent.name, path.stem.rsplit("-", 1)[-1]))
    return sorted(found)


def _seed_interval(before: dict[str, dict], record: dict) -> float | None:
    """The half-width of the t interval over seed means of the record's cell, committed."""
    for name, data in before.items():
        if not name.startswith(record["table"]):
            continue
        for cell in data["summary"]["cells"]:
            if (cell["method"], cell["setting"]) == (record["method"], record["setting"]):
                return cell.get("seed_t95")
    return None


def verify(
    results_dir: Path,
    work_dir: Path,
    *,
    tables: list[str] | None = None,
    names: list[str] | None = None,
    sample_n: int | None = None,
    sample_seed: int = 0,
    workers: int | None = None,
    executor: str = "local",
    address: str | None = None,
    data_root=None,
    rtol: float = rv.DEFAULT_RTOL,
    atol: float = rv.DEFAULT_ATOL,
    progress: bool = False,
    log=print,
) -> VerifyResult:
    """Re-runs the chosen committed jobs in ``work_dir`` (finished ones there reused) and
    compares them with the committed records; see the module docstring."""
    from hsmlbench.run.grid import reproduce
    from hsmlbench.run.versioning import code_version, job_code_version

    t0 = time.perf_counter()
    results_dir, work_dir = Path(results_dir), Path(work_dir)
    committed_total = len(rv.committed_jobs(results_dir))
    chosen = rv.committed_jobs(results_dir, tables, names)
    if names:
        missing = sorted(set(names) - {c.name for c in chosen})
        if missing:
            raise KeyError(f"no committed finished job named {', '.join(missing)}")
    if sample_n is not None:
        chosen = rv.sample(chosen, sample_n, sample_seed)
    runnable = [c for c in chosen if c.job is not None]
    log(
        f"verify: {len(chosen)} committed jobs chosen, {len(runnable)} to re-run or reuse in "
        f"{work_dir}"
    )
    report = reproduce(
        [c.job for c in runnable],
        work_dir,
        work_dir / "checkpoints",
        progress=progress,
        log=log,
        workers=workers,
        executor=executor,
        address=address,
        data_root=data_root,
    )
    failed = {job.name: error for job, error, _ in report.failed}
    rows, replacements = [], {}
    for c in chosen:
        record = c.record or {}
        row = RowResult(
            job=c.name,
            table=record.get("table", c.path.parent.name),
            method=record.get("method", ""),
            setting=record.get("setting", ""),
            seed=record.get("seed", -1),
            budget=record.get("budget", ""),
            outcome=rv.CANNOT_RERUN,
            why=c.problem or "",
            committed_code_version=record.get("code_version"),
            committed_wall_s=record.get("wall_time_s"),
            committed_mean=_mean(record),
        )
        rows.append(row)
        if c.job is None:
            continue
        rerun = rv.rerun_record(work_dir, c.job)
        if rerun is None or rerun["status"] not in ("done", "diverged"):
            row.outcome = rv.NOT_RERUN
            row.why = failed.get(c.job.name) or (rerun or {}).get("reason", "no record written")
            continue
        replacements[c.path] = rv.raw_path(work_dir, c.job)
        numbers = rv.compare_measurements(record, rerun, rtol, atol)
        expected, why = rv.bit_identity_expected(record, rerun)
        row.outcome, row.why, row.bit_identity_expected = numbers.outcome, why, expected
        row.n_values, row.n_differing = numbers.n_values, numbers.n_differing
        row.max_abs, row.max_rel = numbers.max_abs, numbers.max_rel
        row.first_differences, row.not_compared = numbers.first_differences, numbers.not_compared
        row.rerun_code_version = rerun.get("code_version")
        row.rerun_wall_s, row.rerun_mean = rerun.get("wall_time_s"), _mean(rerun)
    changes, before = [], {}
    if replacements:
        log("verify: assembling the affected tables from the committed and the re-run records")
        changes, before = verdict_changes(results_dir, replacements, work_dir / "compare")
    for row, c in zip(rows, chosen):
        if row.bit_identity_expected is False and c.record is not None:
            half = _seed_interval(before, c.record)
            difference = abs((row.rerun_mean or 0.0) - (row.committed_mean or 0.0))
            agrees = half is not None and difference <= half and not changes
            row.seed_aware = "agrees" if agrees else "disagrees"
    domains = sorted({c.job.domain.name for c in runnable})
    versions = {d: code_version(d) for d in domains}
    info = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": platform.node(),
        "machine": f"{platform.machine()}, {_cpu_model()}",
        "python": platform.python_version(),
        "results_dir": str(results_dir),
        "work_dir": str(work_dir),
        "code_version_now": {
            c.name: job_code_version(c.job, versions[c.job.domain.name]) for c in runnable
        },
        "selection": {
            "tables": tables,
            "names": names,
            "sample": sample_n,
            "sample_seed": sample_seed if sample_n is not None else None,
        },
        "tolerance": {"rtol": rtol, "atol": atol},
        "committed_total": committed_total,
    }
    return VerifyResult(rows, changes, sorted(failed), time.perf_counter() - t0, info)


def _fmt(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "–"
    if x == 0:
        return "0"
    return f"{x:.{digits}g}"


def _seconds(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:.1f} s" if x < 10 else f"{x:.0f} s"


def _cpu_model() -> str:
    """The CPU's model name (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _selection(info: dict) -> str:
    chosen = info["selection"]
    parts = []
    if chosen["tables"]:
        parts.append(f"tables {', '.join(chosen['tables'])}")
    if chosen["names"]:
        parts.append(f"{len(chosen['names'])} jobs named with --only")
    if chosen["sample"] is not None:
        parts.append(f"a sample of {chosen['sample']} (seed {chosen['sample_seed']})")
    return "; ".join(parts) or "every committed job"


def render_markdown(result: VerifyResult) -> str:
    """VERIFY.md: the summary, then one line per committed job."""
    info, counts = result.info, result.counts
    versions_then = sorted({r.committed_code_version or "unknown" for r in result.rows})
    versions_now = sorted({r.rerun_code_version for r in result.rows if r.rerun_code_version})
    lines = [
        "# Verification of the committed results",
        "",
        "_Generated by `hsmlbench verify`; do not edit by hand._",
        "",
        f"- Date: {info['date']}; machine: {info['host']} ({info['machine']}), "
        f"Python {info['python']}",
        f"- Committed code versions: {', '.join(versions_then)}",
        f"- Re-run code versions: {', '.join(versions_now) or '–'}",
        f"- Selection: {_selection(info)}: {len(result.rows)} of the "
        f"{info['committed_total']} committed finished jobs",
        f"- Jobs: {len(result.rows)}; " + "; ".join(f"{k}: {v}" for k, v in sorted(counts.items())),
        f'- Tolerance for "equal within tolerance": |a − b| ≤ {info["tolerance"]["atol"]:g} + '
        f"{info['tolerance']['rtol']:g}·|a|",
        f"- Wall time of this verification: {result.wall_time_s / 60:.1f} min (re-runs finished "
        "earlier in the same work folder were reused; each row's re-run time is its own)",
        "",
    ]
    if result.verdict_changes:
        lines += ["## Verdicts that would change", ""]
        lines += [f"- {change}" for change in result.verdict_changes] + [""]
    else:
        lines += ["No cell, claim or ablation verdict would change.", ""]
    unexpected = result.unexpected()
    if unexpected:
        lines += [
            "## Not bit-identical where bit identity was expected",
            "",
            *[f"- {r.job}: {r.outcome}; {'; '.join(r.first_differences)}" for r in unexpected],
            "",
        ]
    lines += [
        "## Every job",
        "",
        "| job | outcome | values compared | max abs diff | max rel diff | mean (committed → "
        "re-run) | wall time (committed → re-run) | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result.rows:
        note = r.why
        if r.outcome != rv.BIT_IDENTICAL and r.first_differences:
            note += "; first differences: " + "; ".join(r.first_differences[:2])
        if r.seed_aware:
            note += f"; seed-aware rule: {r.seed_aware}"
        lines.append(
            f"| {r.job} | {r.outcome} | {r.n_values} | {_fmt(r.max_abs)} | {_fmt(r.max_rel)} | "
            f"{_fmt(r.committed_mean, 6)} → {_fmt(r.rerun_mean, 6)} | "
            f"{_seconds(r.committed_wall_s)} → {_seconds(r.rerun_wall_s)} | {note} |"
        )
    compared_apart = sorted({k for r in result.rows for k in r.not_compared})
    if compared_apart:
        lines += [
            "",
            f"Fields in only one of the two records (not compared): {', '.join(compared_apart)}. "
            "Version-1 records also stored statistics computed from their measurements; the "
            "measurements themselves are compared.",
        ]
    return "\n".join(lines) + "\n"


def write_verify_files(result: VerifyResult, folder: Path) -> list[Path]:
    data = {
        **result.info,
        "wall_time_s": result.wall_time_s,
        "counts": result.counts,
        "verdict_changes": result.verdict_changes,
        "failed_jobs": result.failed_jobs,
        "rows": [asdict(r) for r in result.rows],
    }
    json_path, md_path = Path(folder) / VERIFY_JSON, Path(folder) / VERIFY_MD
    write_json(json_path, data)
    write_text(md_path, render_markdown(result))
    return [md_path, json_path]


def replace_committed(result: VerifyResult, results_dir: Path, work_dir: Path, log=print):
    """After the comparison is written: the re-run records replace the committed ones (every
    row that re-ran), and every affected table is rendered again from them."""
    from hsmlbench.report.assemble import write_reports

    replaced = []
    for row in result.rows:
        if row.outcome in (rv.NOT_RERUN, rv.CANNOT_RERUN):
            continue
        name = f"{row.job}-{row.budget}.json"
        source = Path(work_dir) / "runs" / row.table / name
        target = Path(results_dir) / "runs" / row.table / name
        rv.read_raw(source, named=True)  # still a valid record of this job
        write_text(target, source.read_text())  # byte for byte, atomically
        replaced.append((row.table, row.budget))
    tables = sorted(set(replaced))
    if any(t == "T1" for t, _ in tables):
        tables += [(t, b) for t, b in _committed_tables(results_dir) if t == "ablations"]
    written = write_reports(sorted(set(tables)), Path(results_dir), log=log)
    log(f"verify --replace: {len(replaced)} committed records replaced by their re-runs")
    return written
