"""A reproduction is a grid of independent jobs (table, method, setting, seed).

Each job trains (resuming from its checkpoint if one exists), evaluates on the table's fixed
test tasks, and writes its raw result file atomically. A table is assembled from whatever raw
files exist for it at that budget, so finished jobs are never re-run or lost. The grid runs
in this process, on a local process pool or on a Ray cluster (``hsmlbench.run.executors``); a job
that fails is reported and the others go on.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import json
import re
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import hsmlbench
from hsmlbench.atomic import set_aside, write_json, write_text
from hsmlbench.domains import domain_for, run_config
from hsmlbench.progress import _format_seconds
from hsmlbench.report.tables import environment_info, render_markdown, summarize
from hsmlbench.run import executors
from hsmlbench.run.evaluation import evaluate
from hsmlbench.run.training import CHECKPOINT, NonFiniteLossError, previous_checkpoint, train


@dataclass(frozen=True)
class Job:
    table: str
    method: str
    setting: str
    seed: int
    budget: str

    @property
    def name(self) -> str:
        return f"{self.table}-{self.method}-{self.setting}-seed{self.seed}"

    @property
    def config(self):
        return run_config(self.table, self.method, self.setting, self.budget)

    @property
    def domain(self):
        return domain_for(self.table)

    @property
    def device(self) -> str:
        """Where the job computes: its domain's default here (images: CUDA when there is one)."""
        return str(self.domain.device())

    @property
    def gpus(self) -> int:
        """GPUs the job asks a cluster for (Ray's ``num_gpus``)."""
        return 1 if self.device.startswith("cuda") else 0


def plan(
    tables: list[str],
    methods: list[str] | None,
    seeds: int,
    budget: str,
    settings: list[str] | None = None,
) -> list[Job]:
    """The grid of jobs; raises KeyError naming the first unknown table, method, setting or
    budget."""
    jobs = []
    for table in tables:
        domain = domain_for(table)
        spec = domain.tables[table]
        if budget not in domain.budgets(table):
            raise KeyError(f"unknown budget {budget!r}; known: {', '.join(domain.budgets(table))}")
        for method in methods or spec.methods:
            for setting in settings or spec.settings:
                if setting not in spec.settings:
                    raise KeyError(
                        f"table {table} has no setting {setting!r}; it has: {', '.join(spec.settings)}"
                    )
                run_config(table, method, setting, budget)  # an unknown method fails here
                jobs += [Job(table, method, setting, seed, budget) for seed in range(seeds)]
    return jobs


RAW_KEYS = {
    "job": str,
    "table": str,
    "method": str,
    "setting": str,
    "seed": int,
    "budget": str,
}
# A finished job's record also holds these, and its domain's own ``raw_fields``.
DONE_KEYS = {"n_tasks": int, "mean": float}


def load_raw(path: Path, log=None) -> dict | None:
    """A raw job file if it is one (a JSON object with the fields of a finished job, named
    after the job it holds); otherwise it is set aside and None is returned, so its job runs
    again and a stray copy never counts as another seed."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        set_aside(Path(path), f"not a readable raw job file ({type(error).__name__})", log)
        return None
    problem = None
    if not isinstance(raw, dict):
        problem = f"holds a JSON {type(raw).__name__}, not a raw job file"
    else:
        problem = _raw_problem(raw, Path(path))
    if problem:
        set_aside(Path(path), problem, log)
        return None
    return raw


def _raw_problem(raw: dict, path: Path) -> str | None:
    """Why ``raw`` is not a valid raw job file named ``path`` (None: it is one)."""
    keys = dict(RAW_KEYS)
    if raw.get("status", "done") == "done":
        try:
            keys |= DONE_KEYS | domain_for(str(raw.get("table"))).raw_fields
        except KeyError:
            return f"names an unknown table {raw.get('table')!r}"
    for key, kind in keys.items():
        value = raw.get(key)
        if not isinstance(value, kind) and not (kind is float and isinstance(value, int)):
            return f"no valid '{key}' field"
    if path.name != f"{raw['job']}-{raw['budget']}.json":
        return f"holds job {raw['job']} at budget {raw['budget']}: a copy, not its file"
    if isinstance(raw.get("per_task"), list) and len(raw["per_task"]) != raw["n_tasks"]:
        return f"has {len(raw['per_task'])} per-task errors for n_tasks {raw['n_tasks']}"
    return None


def raw_files(out_dir: Path, table: str, budget: str, log=None) -> list[dict]:
    """Every valid raw job file of ``table`` at ``budget`` (invalid ones are set aside)."""
    raws = (
        load_raw(p, log) for p in sorted((Path(out_dir) / "runs" / table).glob(f"*-{budget}.json"))
    )
    return [raw for raw in raws if raw is not None]


def raw_path(out_dir: Path, job: Job) -> Path:
    return Path(out_dir) / "runs" / job.table / f"{job.name}-{job.budget}.json"


def run_dir(work_dir: Path, job: Job) -> Path:
    """The job's checkpoints (and, after a failure, its ``error.txt``)."""
    return Path(work_dir) / job.budget / job.name


def error_path(work_dir: Path, job: Job) -> Path:
    return run_dir(work_dir, job) / "error.txt"


CODE_VERSION_FILE = "code_version.txt"  # beside a checkpoint: the code that started it


def _module_file(name: str) -> Path | None:
    """The source file of an hsmlbench module, found without importing it."""
    parts = name.split(".")
    if parts[:2] == ["hsmlbench", "kernels"]:
        spec = importlib.util.find_spec("hsmlbench.kernels")  # imports hsmlbench only
        root, rest = Path(list(spec.submodule_search_locations)[0]), parts[2:]
    else:
        root, rest = Path(hsmlbench.__file__).parent, parts[1:]
    base = root.joinpath(*rest)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_names(path: Path, module: str) -> frozenset[str]:
    """Every hsmlbench module that ``path`` imports anywhere (top level or in a function).

    Parsed once per file version (keyed by modification time and size): every job of a grid
    asks for the code version, and parsing the closure each time cost 0.14 s."""
    stat = path.stat()
    return _parsed_imports(path, module, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=512)
def _parsed_imports(path: Path, module: str, mtime_ns: int, size: int) -> frozenset[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names.add(base)
            names |= {f"{base}.{alias.name}" for alias in node.names}  # submodules
    return frozenset(n for n in names if n == "hsmlbench" or n.startswith("hsmlbench."))


# What a job's code version covers (docs/PROTOCOL.md §6): the code that defines what the job
# computes — its domain, the methods, training and evaluation, the configs, the kernels —
# found from these modules' imports. Not statistics, tables, figures, progress, the CLI or
# the executors: changing those re-renders finished jobs instead of invalidating them.
JOB_DEFINING_ROOTS = {
    "regression": ("hsmlbench.domains.regression.domain", "hsmlbench.methods.builtin"),
    "images": ("hsmlbench.domains.images.domain", "hsmlbench.domains.images.models"),
}
_SHARED_ROOTS = ("hsmlbench.run.training", "hsmlbench.run.evaluation")
NOT_JOB_DEFINING = (
    "hsmlbench.report",
    "hsmlbench.cli",
    "hsmlbench.progress",
    "hsmlbench.run.grid",
    "hsmlbench.run.executors",
    "hsmlbench.run.projection",
)


def code_version(domain: str = "regression") -> str:
    """The package version plus a hash of the job-defining source of ``domain``'s jobs
    (``job_sources``), read from the files on disk when asked: a job records it when it
    starts, a grid when it is planned."""
    digest = hashlib.sha256()
    for module, path in sorted(job_sources(domain).items()):
        digest.update(module.encode() + b"\0" + path.read_bytes() + b"\0")
    return f"{hsmlbench.__version__}+{digest.hexdigest()[:12]}"


def job_code_version(job: Job, version: str) -> str:
    """``version`` (hsmlbench's code) plus, for a plugin method, a hash of the plugin's source:
    a changed plugin is never reused."""
    from hsmlbench.methods.registry import plugin_source_hash

    plugin = plugin_source_hash(job.config.method)  # an ablation varies a registered method
    if plugin is None or version.endswith(f"+plugin-{plugin}"):
        return version
    return f"{version}+plugin-{plugin}"


def _excluded(module: str, domain: str) -> bool:
    other_domains = [f"hsmlbench.domains.{d}" for d in JOB_DEFINING_ROOTS if d != domain]
    if domain == "images":  # the image domain reuses regression's stream helpers
        other_domains = []
    return any(
        module == prefix or module.startswith(prefix + ".")
        for prefix in (*NOT_JOB_DEFINING, *other_domains)
    )


def job_sources(domain: str = "regression") -> dict[str, Path]:
    """Module name → source file of every hsmlbench module that defines what ``domain``'s
    jobs compute (what ``code_version`` hashes): the import closure of the domain's roots and
    of training and evaluation, lazy imports included, minus ``NOT_JOB_DEFINING``."""
    todo, files = [*JOB_DEFINING_ROOTS[domain], *_SHARED_ROOTS], {}
    while todo:
        name = todo.pop()
        parents = [".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)]
        for module in [*parents, name]:
            if module in files or _excluded(module, domain):
                continue
            path = _module_file(module)
            files[module] = path
            if path is not None:
                todo += sorted(_imported_names(path, module) - files.keys())
    return {module: path for module, path in files.items() if path is not None}


def job_provenance(domain: str, version: str) -> dict:
    """What a job ran, recorded when it starts: the commit checked out, the code version, and
    whether any job-defining file differed from that commit ("modified"; edits to results,
    docs or reporting code do not count). A job that resumes records its own start again:
    the checkpoint's ``code_version.txt`` guarantees the code did not change in between."""
    import subprocess
    from datetime import datetime, timezone

    sources = [str(path) for path in job_sources(domain).values()]
    root = Path(hsmlbench.__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=root,
            check=True,
        ).stdout.strip()
        modified = (
            subprocess.run(
                ["git", "diff", "--quiet", "HEAD", "--", *sources], cwd=root, check=False
            ).returncode
            != 0
        )
    except (OSError, subprocess.CalledProcessError):
        commit, modified = "unknown", None
    return {
        "commit": commit,
        "code_version": version,
        "job_code_modified": modified,
        "started": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


DIVERGED = "diverged"  # a raw record's status when its training or test-time adaptation diverged


def finished_result(job: Job, out_dir: Path, version: str | None = None) -> dict | None:
    """The job's raw result if it is finished for this config, seed and code version
    (``version``, default: ``code_version`` of its domain now).

    A raw file without ``code_version`` (written before the field existed) is of unknown code
    and is not reused: the job runs again. A "not run" record (data missing) is never
    finished either: the job is tried again. A "diverged" record is a finished result: the
    same config, seed and code diverge again (delete the file to try anyway).
    """
    path = raw_path(out_dir, job)
    if not path.exists():
        return None
    version = job_code_version(job, version or code_version(job.domain.name))
    done = load_raw(path)
    if done is None or done.get("status", "done") not in ("done", DIVERGED):
        return None
    if not job.config.matches(done.get("config", {})) or done.get("seed", job.seed) != job.seed:
        return None
    if done.get("code_version") != version:
        return None
    return done


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
    """Runs one job (or loads its finished result, see ``finished_result``) and returns its
    raw result, also written atomically to ``raw_path(out_dir, job)``.

    ``version``: the code version to record (a grid passes the one it was planned with, the
    code its processes loaded); default: ``code_version`` of the job's domain now. A job whose
    data is missing (the image datasets) writes a "not run" record naming what is missing
    and how to get it, and returns it."""
    config, domain = job.config, job.domain
    path = raw_path(out_dir, job)
    version = job_code_version(job, version or code_version(domain.name))
    done = finished_result(job, out_dir, version)
    if done is not None:
        return done
    record = {
        "job": job.name,
        "table": job.table,
        "method": job.method,
        "setting": job.setting,
        "seed": job.seed,
        "budget": job.budget,
    }
    problems = domain.data_problems(config, data_root)
    if problems:
        record |= {"status": "not run", **domain.not_run_fields(config, problems, data_root)}
        record |= {"config": config.to_dict(), "environment": environment_info()}
        write_json(path, record)
        return record
    device = domain.device()
    folder = run_dir(work_dir, job)
    provenance = job_provenance(domain.name, version)
    resume = _prepare_run_dir(folder, version)
    try:
        trained = train(
            config,
            job.seed,
            folder,
            resume=resume,
            progress=progress,
            data_root=data_root,
            device=device,
        )
    except NonFiniteLossError as error:
        # A result, not a crash: this config and seed diverge at this code. The table says so
        # beside the seeds that finished instead of silently averaging only those.
        iteration = _iteration_of(error)
        return _write_diverged(path, record, error, iteration, job, version, provenance, device)
    try:
        results = evaluate(trained.model, config, data_root, device)
    except FloatingPointError as error:  # trained, but its test-time adaptation blows up
        return _write_diverged(path, record, error, None, job, version, provenance, device)
    fields = domain.job_fields(config, trained, results)
    per_task = fields.get("per_task")
    record |= {"status": "done"}
    if per_task is not None:
        per_task = np.asarray(per_task)
        record |= {
            "n_tasks": int(per_task.size),
            "mean": float(per_task.mean()),
            "ci95": float(1.96 * per_task.std() / np.sqrt(per_task.size)),
        }
    record |= fields
    record |= {
        "iterations": config.budget.iterations,
        "wall_time_s": trained.wall_time_s,
        "events": trained.events,
        "meta_step": trained.meta_step,
        "code_version": version,
        "provenance": provenance,
        "environment": environment_info(str(device)),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mb": trained.peak_gpu_mb,
        "config": config.to_dict(),
    }
    write_json(path, record)
    return record


def _write_diverged(path, record, error, iteration, job, version, provenance, device) -> dict:
    """The raw record of a diverged job: where it diverged (``iteration`` None: in
    evaluation, after training finished) and the code that did (``provenance``: as recorded
    when the job started)."""
    record |= {
        "status": DIVERGED,
        "reason": str(error),
        "diverged_at_iteration": iteration,
        "iterations": job.config.budget.iterations,
        "code_version": version,
        "provenance": provenance,
        "environment": environment_info(str(device)),
        "config": job.config.to_dict(),
    }
    write_json(path, record)
    return record


def _iteration_of(error: NonFiniteLossError) -> int | None:
    """The iteration a ``NonFiniteLossError`` names ("... at iteration N; ...")."""
    found = re.search(r"at iteration (\d+)", str(error))
    return int(found.group(1)) if found else None


EXTENDED = "-extended"  # T1-extended: the paper's table plus registered methods' rows


def assemble_table(table: str, budget: str, out_dir: Path) -> dict:
    """The table's JSON from every raw result of that table and budget under ``out_dir``.

    ``T1`` holds the paper's methods only; ``T1-extended`` adds every other registered method
    that has runs there, each tested against the paper's methods in its own Holm family, so
    that the paper's claims keep exactly the p-values of ``T1``. Jobs that could not run
    (missing data) are listed in the notes, with how to get the data."""
    base = table.removesuffix(EXTENDED)
    domain = domain_for(base)
    spec = domain.tables[base]
    raws = [r for r in raw_files(out_dir, base, budget) if r["setting"] in spec.settings]
    extra_methods = sorted({r["method"] for r in raws} - set(spec.methods))
    if table == base:
        raws = [r for r in raws if r["method"] in spec.methods]
    order = list(spec.methods) + extra_methods
    raws.sort(
        key=lambda r: (order.index(r["method"]), spec.settings.index(r["setting"]), r["seed"])
    )
    if not raws:
        raise FileNotFoundError(f"no finished runs of {table} at budget {budget} under {out_dir}")
    done = [r for r in raws if r.get("status", "done") == "done"]
    rows = [row | _row_provenance(r) for r in done for row in domain.table_rows(r)]
    ablation_notes, effects = [], {}
    if base == ABLATIONS_TABLE:
        baseline_rows, effects, ablation_notes = _ablation_baselines(out_dir, budget, done)
        rows = baseline_rows + rows
    b = domain.budgets(base)[budget]
    data = {
        "table": table,
        "title": spec.title,
        "metric": spec.metric,
        "lower_is_better": spec.lower_is_better,
        **({"data": raws[0]["data"]} if "data" in raws[0] else {}),
        "budget": {
            "name": b.name,
            "iterations": b.iterations,
            "n_test_tasks": b.n_test_tasks,
            "description": b.description,
        },
        "environment": raws[-1]["environment"],
        "rows": rows,
        "notes": list(spec.notes)
        + _diverged_notes(raws)
        + _not_run_notes(raws, domain, budget)
        + ablation_notes,
        "diverged": [
            {
                k: r.get(k)
                for k in ("method", "setting", "seed", "diverged_at_iteration", "iterations")
            }
            for r in raws
            if r.get("status") == DIVERGED
        ],
    }
    if effects:
        data["effects"] = effects
    if table != base:
        from hsmlbench.methods.registry import get_method

        data["base_table"] = base
        data["extra_methods"] = {
            m: {"label": get_method(m).label or m, "baselines": list(spec.methods)}
            for m in extra_methods
        }
    from hsmlbench.report.figures import table_notes

    data["notes"] += table_notes(domain.name, done, base)
    data["summary"] = summarize(data)
    return data


ABLATIONS_TABLE = "ablations"
ABLATION_SOURCE = "T1"  # the ablations vary T1's methods on its tasks


def _ablation_baselines(out_dir: Path, budget: str, variants: list[dict]):
    """The ablations table's rows that come from T1's own runs, and what each row is compared
    with: each variant with the paper method it varies; T1's MUMOMAML scored after one test
    step ("mumomaml-step1") with the same runs scored after ten. Only T1 seeds that the
    variants also have are used, so each comparison sees the same seeds where it can."""
    seeds = sorted({r["seed"] for r in variants})
    settings = sorted({r["setting"] for r in variants}) or ["5-shot"]
    effects = {r["method"]: r["config"]["method"] for r in variants}
    source = [
        r
        for r in raw_files(out_dir, ABLATION_SOURCE, budget)
        if r["seed"] in seeds and r["setting"] in settings and r["config"].get("variant") is None
    ]
    bases = sorted(set(effects.values()) | {"mumomaml"})
    source = [r for r in source if r["method"] in bases]
    domain = domain_for(ABLATION_SOURCE)
    rows = []
    for raw in sorted(source, key=lambda r: (bases.index(r["method"]), r["seed"])):
        rows += [row | _row_provenance(raw) for row in domain.table_rows(raw)]
        if raw["method"] == "mumomaml" and "per_task_by_step" in raw:
            step1 = raw["per_task_by_step"]["1"]
            rows.append(
                rows[-1]
                | {
                    "method": "mumomaml-step1",
                    "per_task": step1,
                    "mean": float(np.mean(step1)),
                    "ci95": float(1.96 * np.std(step1) / np.sqrt(len(step1))),
                    "wall_time_s": None,
                }
            )
            effects["mumomaml-step1"] = "mumomaml"
    notes = []
    found = sorted({r["seed"] for r in source})
    if found != seeds:
        notes.append(
            f"Baseline rows: T1's runs at budget {budget} cover seeds {found or 'none'} of the "
            f"variants' seeds {seeds}; run `hsmlbench reproduce --tables T1 --seeds "
            f"{max(seeds) + 1} --budget {budget}` to complete them."
        )
    notes.append(
        "Baseline rows (MAML, MUMOMAML, HSML) are T1's own runs, same seeds and test tasks; "
        "'mumomaml-step1' is the same MUMOMAML runs scored after one test-time step instead of "
        "ten (nothing retrained)."
    )
    versions = {r.get("code_version") for r in source} | {r.get("code_version") for r in variants}
    if len(versions) > 1:
        notes.append(
            "Warning: the baseline and ablation rows come from different code versions "
            f"({', '.join(sorted(map(str, versions)))}); compare with care."
        )
    effects = {k: v for k, v in effects.items() if any(r["method"] == v for r in source)}
    return rows, effects, notes


def _row_provenance(raw: dict) -> dict:
    """The code behind a row: its code version, the commit when the job started (or, for
    older files, when it finished), and whether job-defining files were modified."""
    started = raw.get("provenance", {})
    return {
        "code_version": raw.get("code_version"),
        "commit": started.get("commit") or raw.get("environment", {}).get("commit"),
        "job_code_modified": started.get("job_code_modified"),
    }


def _where_diverged(raw: dict) -> str:
    if raw.get("diverged_at_iteration") is None:
        return "trained, but its test-time adaptation diverged (non-finite test error): " + raw.get(
            "reason", ""
        )
    return (
        f"meta-training diverged (meta-loss not finite at iteration "
        f"{raw['diverged_at_iteration']:,} of {raw.get('iterations') or 0:,}); no test-task errors"
    )


def _diverged_notes(raws: list[dict]) -> list[str]:
    """One line per diverged job: which cell and seed, and at which iteration. Its row's
    statistics use the seeds that finished, and the note says so."""
    lines = [
        f"- {r['method']} {r['setting']} seed {r['seed']}: " + _where_diverged(r)
        for r in raws
        if r.get("status") == DIVERGED
    ]
    if not lines:
        return []
    return [
        "Runs that diverged (a result of that config and seed at this code, kept, not "
        "retried; delete the raw file to retry): each cell's statistics use only its seeds "
        "that finished.\n\n" + "\n".join(lines)
    ]


def _not_run_notes(raws: list[dict], domain, budget: str) -> list[str]:
    """ "Cells without a result" (one line per job and dataset, with why) and how to get the
    missing data, for the jobs that wrote a "not run" record."""
    lines, how = [], {}
    for r in raws:
        if r.get("status", "done") != "not run":
            continue
        config = domain.run_config(r["table"], r["method"], r["setting"], budget)
        problems = r.get("dataset_problems", {})
        missing = ", ".join(config.dataset_label(n) for n in problems)
        for name in config.datasets:
            why = problems.get(name) or (
                f"this dataset is ready, but the model trains on all four and {missing} "
                "cannot be used"
            )
            lines.append(
                f"- {r['method']} seed {r['seed']}, {config.dataset_label(name)} "
                f"{r['setting']}: not run: {why}"
            )
        how |= {config.dataset_label(n): text for n, text in r.get("how_to_get", {}).items()}
    notes = ["Cells without a result:\n\n" + "\n".join(lines)] if lines else []
    if how:
        notes.append(
            "To get the data (then `hsmlbench data check`):\n\n"
            + "\n".join(f"- {label}: {text}" for label, text in how.items())
        )
    return notes


def write_table(table: str, budget: str, out_dir: Path) -> tuple[Path, Path]:
    data = assemble_table(table, budget, out_dir)
    json_path, md_path = Path(out_dir) / f"{table}.json", Path(out_dir) / f"{table}.md"
    write_json(json_path, data)
    write_text(md_path, render_markdown(data))
    return json_path, md_path


def has_extra_methods(table: str, budget: str, out_dir: Path) -> bool:
    """Whether ``table`` has runs of methods other than the paper's (then it also gets
    ``<table>-extended``)."""
    spec = domain_for(table).tables[table]
    return any(raw["method"] not in spec.methods for raw in raw_files(out_dir, table, budget))


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

    @property
    def complete(self) -> bool:
        return self.finished == self.total and not self.not_run


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
            if raw.get("status") == DIVERGED:
                self.report.diverged.append((job, raw.get("reason", "")))
                self.log(f"{self._status()} DIVERGED {job.name}: {raw.get('reason', '')}")
                return
            if raw.get("status", "done") != "done":
                self.report.not_run.append((job, raw.get("reason", "")))
                self.log(f"{self._status()} NOT RUN {job.name}: {raw.get('reason', '')}")
                return
            if "per_dataset" in raw:
                summary = ", ".join(
                    f"{v['label']} {v['mean']:.2f} ± {v['ci95']:.2f}"
                    for v in raw["per_dataset"].values()
                )
            else:
                summary = f"mean {raw['mean']:.4f} ± {raw['ci95']:.4f} over {raw['n_tasks']} tasks"
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
    """Runs the grid's unfinished jobs, then writes each table's JSON, markdown and figures
    from whatever jobs are finished.

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
    if workers is None and any(job.gpus for job in todo):
        workers = 1  # one GPU here: its jobs one after another
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

    for table, budget in dict.fromkeys((j.table, j.budget) for j in jobs):
        names = [table] + ([table + EXTENDED] if has_extra_methods(table, budget, out_dir) else [])
        written = []
        for name in names:
            try:
                written += write_table(name, budget, out_dir)
            except FileNotFoundError:  # e.g. only a plugin's runs: no paper-only table
                continue
        report.written += written
        if not written:
            log(f"{table} ({budget}): no finished job, no table written")
            continue
        from hsmlbench.report.figures import write_figures

        report.written += write_figures(table, budget, out_dir)
    if {j.table for j in jobs} & {"T1", "T2", ABLATIONS_TABLE}:
        from hsmlbench.report.findings import write_findings

        findings = write_findings(out_dir)
        report.written += [findings] if findings else []
    return report
