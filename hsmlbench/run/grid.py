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
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

import hsmlbench
from hsmlbench.atomic import set_aside, write_json, write_text
from hsmlbench.domains.regression.configs import ALL_TABLE_NAMES, BUDGETS, TABLES, run_config
from hsmlbench.domains.regression.tasks import FAMILIES
from hsmlbench.progress import _format_seconds
from hsmlbench.report.statistics import cluster_structure
from hsmlbench.report.tables import environment_info, render_markdown, summarize
from hsmlbench.run import executors
from hsmlbench.run.evaluation import adapted_predictions, evaluate, evaluation_tasks
from hsmlbench.run.training import CHECKPOINT, previous_checkpoint, train

FIT_GRID = np.linspace(-5.0, 5.0, 101)


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
    def device(self) -> str:
        """Where the job computes: its config's ``device`` if it declares one, else the CPU."""
        return str(getattr(self.config, "device", "cpu"))

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
    """The grid of jobs; raises KeyError naming the first unknown table, method or budget."""
    if budget not in BUDGETS:
        raise KeyError(f"unknown budget {budget!r}; known: {', '.join(BUDGETS)}")
    jobs = []
    for table in tables:
        if table not in TABLES:
            raise KeyError(f"unknown table {table!r}; known: {', '.join(ALL_TABLE_NAMES)}")
        spec = TABLES[table]
        for method in methods or spec.methods:
            if method not in spec.methods:
                run_config(table, method, spec.settings[0], budget)  # a registered method?
            for setting in settings or spec.settings:
                if setting not in spec.settings:
                    raise KeyError(
                        f"table {table} has no setting {setting!r}; it has: {', '.join(spec.settings)}"
                    )
                jobs += [Job(table, method, setting, seed, budget) for seed in range(seeds)]
    return jobs


RAW_KEYS = {
    "job": str,
    "table": str,
    "method": str,
    "setting": str,
    "seed": int,
    "budget": str,
    "n_tasks": int,
    "mean": float,
    "per_task": list,
    "per_step_mean": list,
}


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
        for key, kind in RAW_KEYS.items():
            value = raw.get(key)
            if not isinstance(value, kind) and not (kind is float and isinstance(value, int)):
                problem = f"no valid '{key}' field"
                break
        else:
            if Path(path).name != f"{raw['job']}-{raw['budget']}.json":
                problem = f"holds job {raw['job']} at budget {raw['budget']}: a copy, not its file"
            elif len(raw["per_task"]) != raw["n_tasks"]:
                problem = f"has {len(raw['per_task'])} per-task errors for n_tasks {raw['n_tasks']}"
    if problem:
        set_aside(Path(path), problem, log)
        return None
    return raw


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


def code_version() -> str:
    """The package version plus a hash of the source of every hsmlbench module that this
    module imports, directly or not (read from the import statements, lazy ones included).

    It names the code that computes a job's result; editing a module outside that closure
    (the CLI, the image tables) does not make finished regression jobs stale. Read from the
    files on disk when asked: a job records it when it starts, a grid when it is planned.
    """
    digest = hashlib.sha256()
    for module, path in sorted(job_sources().items()):
        digest.update(module.encode() + b"\0" + path.read_bytes() + b"\0")
    return f"{hsmlbench.__version__}+{digest.hexdigest()[:12]}"


def job_code_version(job: Job, version: str) -> str:
    """``version`` (hsmlbench's code) plus, for a plugin method, a hash of the plugin's source:
    a changed plugin is never reused."""
    from hsmlbench.methods.registry import plugin_source_hash

    plugin = plugin_source_hash(job.method)
    if plugin is None or version.endswith(f"+plugin-{plugin}"):
        return version
    return f"{version}+plugin-{plugin}"


def job_sources() -> dict[str, Path]:
    """Module name → source file of every hsmlbench module in ``hsmlbench.run.grid``'s
    import closure (what ``code_version`` hashes)."""
    todo, files = ["hsmlbench.run.grid"], {}
    while todo:
        name = todo.pop()
        parents = [".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)]
        for module in [*parents, name]:
            if module in files:
                continue
            path = _module_file(module)
            files[module] = path
            if path is not None:
                todo += sorted(_imported_names(path, module) - files.keys())
    return {module: path for module, path in files.items() if path is not None}


def finished_result(job: Job, out_dir: Path, version: str | None = None) -> dict | None:
    """The job's raw result if it is finished for this config, seed and code version
    (``version``, default: ``code_version()`` now).

    A raw file without ``code_version`` (written before the field existed, e.g. the committed
    paper-budget runs) is of unknown version and is still reused: only a file that names a
    different version is stale.
    """
    path = raw_path(out_dir, job)
    if not path.exists():
        return None
    version = job_code_version(job, version or code_version())
    done = load_raw(path)
    if done is None:
        return None
    if not job.config.matches(done.get("config", {})) or done.get("seed", job.seed) != job.seed:
        return None
    if done.get("code_version", version) != version:
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


def _fit_examples(model, config) -> dict:
    """For the first test task of each family: support points and adapted predictions."""
    tasks = evaluation_tasks(config)
    examples = {}
    for index, family in enumerate(FAMILIES):
        task_ids = (tasks.family == index).nonzero().flatten()
        if len(task_ids) == 0:
            continue
        i = int(task_ids[0])
        one = tasks.slice(i, i + 1)
        prediction = adapted_predictions(
            model, one, config.inner_steps_test, torch.tensor(FIT_GRID, dtype=torch.float32)
        )
        examples[family] = {
            "task_index": i,
            "x_support": one.x_support.flatten().tolist(),
            "y_support": one.y_support.flatten().tolist(),
            "prediction": np.round(prediction[0], 5).tolist(),
        }
    return examples


def run_job(
    job: Job, out_dir: Path, work_dir: Path, progress: bool = True, version: str | None = None
) -> dict:
    """Runs one job (or loads its finished result, see ``finished_result``) and returns its
    raw result, also written atomically to ``raw_path(out_dir, job)``.

    ``version``: the code version to record (a grid passes the one it was planned with, the
    code its processes loaded); default: ``code_version()`` now."""
    config = job.config
    path = raw_path(out_dir, job)
    version = job_code_version(job, version or code_version())
    done = finished_result(job, out_dir, version)
    if done is not None:
        return done
    folder = run_dir(work_dir, job)
    resume = _prepare_run_dir(folder, version)
    trained = train(config, job.seed, folder, resume=resume, progress=progress)
    result = evaluate(trained.model, config)
    per_task = result.headline
    assignments = {
        name: {
            family: np.round(values[result.family == i].mean(axis=0), 5).tolist()
            for i, family in enumerate(FAMILIES)
            if (result.family == i).any()
        }
        for name, values in result.assignments.items()
    }
    raw = {
        "job": job.name,
        "table": job.table,
        "method": job.method,
        "setting": job.setting,
        "seed": job.seed,
        "budget": job.budget,
        "n_tasks": int(per_task.size),
        "mean": float(per_task.mean()),
        "ci95": float(1.96 * per_task.std() / np.sqrt(per_task.size)),
        "per_task": per_task.tolist(),
        "per_step_mean": result.curve.mean(axis=0).tolist(),
        "per_family_mean": {
            family: float(per_task[result.family == i].mean())
            for i, family in enumerate(FAMILIES)
            if (result.family == i).any()
        },
        "task_family": result.family.tolist(),
        "mean_assignments_by_family": assignments,
        **(
            {
                "cluster_structure": cluster_structure(
                    result.assignments["level1"], result.family, FAMILIES
                )
            }
            if "level1" in result.assignments
            else {}
        ),
        "fits": _fit_examples(trained.model, config),
        "iterations": config.budget.iterations,
        "wall_time_s": trained.wall_time_s,
        "train_query_loss": _downsample(trained.query_losses),
        "window_query_loss": _windows(
            trained.query_losses, config.continual.window if config.continual else 1000
        ),
        "events": trained.events,
        "meta_step": trained.meta_step,
        "code_version": version,
        "environment": environment_info(job.device),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "config": config.to_dict(),
    }
    write_json(path, raw)
    return raw


def _windows(values: list[float], window: int) -> list[list[float]]:
    """[end iteration, mean post-adaptation query loss] per window (HSML-D's signal)."""
    return [
        [min(i + window, len(values)), float(np.mean(values[i : i + window]))]
        for i in range(0, len(values), window)
    ]


def _downsample(values: list[float], points: int = 700) -> list[list[float]]:
    """[iteration, mean over its window] pairs, for loss curves in figures."""
    if not values:
        return []
    window = max(1, len(values) // points)
    return [
        [i + window, float(np.mean(values[i : i + window]))] for i in range(0, len(values), window)
    ]


EXTENDED = "-extended"  # T1-extended: the paper's table plus registered methods' rows


def assemble_table(table: str, budget: str, out_dir: Path) -> dict:
    """The table's JSON from every raw result of that table and budget under ``out_dir``.

    ``T1`` holds the paper's methods only; ``T1-extended`` adds every other registered method
    that has runs there, each tested against the paper's methods in its own Holm family, so
    that the paper's claims keep exactly the p-values of ``T1``."""
    base = table.removesuffix(EXTENDED)
    spec = TABLES[base]
    raws = raw_files(out_dir, base, budget)
    extra_methods = sorted({r["method"] for r in raws} - set(spec.methods))
    if table == base:
        raws = [r for r in raws if r["method"] in spec.methods]
    order = list(spec.methods) + extra_methods
    raws.sort(
        key=lambda r: (order.index(r["method"]), spec.settings.index(r["setting"]), r["seed"])
    )
    if not raws:
        raise FileNotFoundError(f"no finished runs of {table} at budget {budget} under {out_dir}")
    rows = [
        {k: r[k] for k in ("method", "setting", "seed", "n_tasks", "mean", "ci95", "per_task")}
        | {"wall_time_s": r["wall_time_s"], "per_step_mean": r["per_step_mean"]}
        | {"meta_step": r.get("meta_step", "autograd")}
        | ({"events": r["events"]} if r.get("events") else {})
        for r in raws
    ]
    b = BUDGETS[budget]
    data = {
        "table": table,
        "title": spec.title,
        "metric": spec.metric,
        "lower_is_better": spec.lower_is_better,
        "budget": {"name": b.name, "iterations": b.iterations, "n_test_tasks": b.n_test_tasks},
        "environment": raws[-1]["environment"],
        "rows": rows,
        "notes": list(spec.notes),
    }
    if table != base:
        from hsmlbench.methods.registry import get_method

        data["base_table"] = base
        data["extra_methods"] = {
            m: {"label": get_method(m).label or m, "baselines": list(spec.methods)}
            for m in extra_methods
        }
    from hsmlbench.report.figures import cluster_note, cluster_structure_note, growth_note

    first_seed = [r for r in raws if r["seed"] == raws[0]["seed"]]
    for note in (
        cluster_note(first_seed, base),
        cluster_structure_note(raws),
        growth_note(raws),
    ):
        if note:
            data["notes"].append(note)
    data["summary"] = summarize(data)
    return data


def write_table(table: str, budget: str, out_dir: Path) -> tuple[Path, Path]:
    data = assemble_table(table, budget, out_dir)
    json_path, md_path = Path(out_dir) / f"{table}.json", Path(out_dir) / f"{table}.md"
    write_json(json_path, data)
    write_text(md_path, render_markdown(data))
    return json_path, md_path


def has_extra_methods(table: str, budget: str, out_dir: Path) -> bool:
    """Whether ``table`` has runs of methods other than the paper's (then it also gets
    ``<table>-extended``)."""
    spec = TABLES[table]
    return any(raw["method"] not in spec.methods for raw in raw_files(out_dir, table, budget))


def _grid_job(
    job: Job, out_dir: Path, work_dir: Path, progress: bool, version: str, check_version: bool
) -> dict:
    """``run_job`` as executors call it, recording the grid's code ``version``. With
    ``check_version`` (Ray), a node whose installed hsmlbench differs from the driver's
    fails the job at once instead of writing results of other code. Local workers run the
    code this process's fork server loaded when the grid was planned: nothing to check."""
    if check_version and (here := code_version()) != version:
        import platform

        raise RuntimeError(
            f"hsmlbench on {platform.node()} is {here}, the grid was planned with "
            f"{version}: install the same hsmlbench on every node of the cluster "
            "(or the source changed while the grid ran)"
        )
    return run_job(job, out_dir, work_dir, progress, version)


@dataclass
class GridReport:
    """What a grid run did: files written, jobs finished (reused ones included), failures."""

    total: int
    finished: int = 0
    reused: int = 0
    failed: list[tuple[Job, str, str]] = field(default_factory=list)  # job, error, traceback at
    written: list[Path] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.finished == self.total


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
            self.log(
                f"{self._status()} finished {job.name}: mean {raw['mean']:.4f} ± "
                f"{raw['ci95']:.4f} over {raw['n_tasks']} tasks, {outcome.seconds:.0f} s"
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
) -> GridReport:
    """Runs the grid's unfinished jobs, then writes each table's JSON, markdown and figures
    from whatever jobs are finished.

    ``executor="local"``: ``workers`` processes (default: one per core), never more
    than jobs left; with one, the jobs run one after another in this process, with per-job
    progress bars.
    ``executor="ray"``: one Ray task per job on the cluster at ``address``; raw results come
    back to this process and are written under ``out_dir``; ``work_dir`` (checkpoints) should
    be on a filesystem every node shares. A failed job does not stop the others: it is in
    ``GridReport.failed`` with its traceback in ``error_path(work_dir, job)``.
    """
    report = GridReport(total=len(jobs))
    version = code_version()
    done = [job for job in jobs if finished_result(job, out_dir, version) is not None]
    todo = [job for job in jobs if job not in done]
    if executor == "ray":
        executors.import_ray()  # before any line is logged
        tracker = GridProgress(report, work_dir, log, running_word="submitted")
        tracker.skipped(done)
        work = Path(work_dir).resolve()
        tracker.on_success = lambda o: write_json(raw_path(out_dir, o.job), o.raw)
        # Each node writes its copy of a raw result beside its checkpoints; the driver's
        # copy under out_dir is the one tables are made from.
        args = (work / "ray-results", work, False, version, True)
        if todo:  # no cluster connection just to find everything finished
            executors.run_ray(_grid_job, todo, args, address, tracker)
    elif executor == "local":
        # never more workers than jobs left; one left runs in this process
        workers = max(1, min(workers or executors.available_cores(), len(todo)))
        tracker = GridProgress(report, work_dir, log)
        tracker.skipped(done)
        if workers == 1:
            args = (out_dir, work_dir, progress, version, False)
            executors.run_serial(_grid_job, todo, args, tracker)
        else:
            args = (Path(out_dir).resolve(), Path(work_dir).resolve(), False, version, False)
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
        try:
            from hsmlbench.report.figures import write_figures

            report.written += write_figures(table, budget, out_dir)
        except ImportError:
            pass
    return report
