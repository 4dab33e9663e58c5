"""Command line: ``hsmlbench reproduce | train | evaluate | report | verify | gpu-check | data``.

Exit codes (docs/RUNNING.md "Exit codes"): 0 all done; 1 a data problem (``data check``/``prepare``);
2 bad arguments, one line on stderr, before anything is written; 3 a job of the grid failed
(the tables of the finished jobs are written; re-running retries only the failed and missing
jobs); 4 cells skipped by the run-time projection; 5 jobs not run because their data is
missing; 6 ``gpu-check`` found no CUDA; 7 ``verify``: a verdict would change. When several apply, the lowest of 3, 5, 4 wins (a failure says the most).

Every error ends as one line on stderr naming the problem and its fix, never a traceback; an
unexpected one (a bug, a NaN stop, a disk that filled up) exits with 3, the code of a failed
run. ``hsmlbench --debug ...`` or ``HSMLBENCH_DEBUG=1`` re-raises instead, for the traceback.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import tempfile
from pathlib import Path


def known_budgets() -> list[str]:
    """Every budget name some table has (regression: smoke, quick, paper; images add cpu)."""
    from hsmlbench.domains import domains

    names = [b for d in domains().values() for t in d.tables for b in d.budgets(t)]
    return list(dict.fromkeys(names))


DEFAULT_MAX_CELL_MINUTES = 30.0

EXIT_DATA = 1
EXIT_USAGE = 2
EXIT_INCOMPLETE = 3
EXIT_SKIPPED = 4
EXIT_NOT_RUN = 5
EXIT_UNVERIFIED = 7  # verify: a verdict would change (with --strict: any unexpected difference)
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # SIGTERM, as a shell reports it (128 + 15)
DEBUG_ENV = "HSMLBENCH_DEBUG"
TRAINING_COMMANDS = ("reproduce", "train", "evaluate", "verify")


class UsageError(Exception):
    """A problem with the command line: reported as one line, exit code 2."""


def default_out_dir(budget: str) -> Path:
    """Paper-budget tables go to results/; shorter budgets to results/<budget>/."""
    return Path("results") if budget == "paper" else Path("results") / budget


def _folder_problem(folder: Path) -> str | None:
    """Why nothing can be written in ``folder`` (None: it can), creating nothing: the folder,
    or the nearest of its parents that exists, must be a writable folder."""
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        read_only = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
        return (
            f"{existing} is on a read-only file system"
            if read_only
            else (f"no permission to write in {existing}")
        )
    return None


def _check_folder(folder: Path, option: str) -> None:
    """Exit 2 before anything runs if ``folder`` (given by ``option``) cannot be written;
    creates nothing (a folder is created only by the job that writes in it)."""
    problem = _folder_problem(folder)
    if problem:
        raise UsageError(
            f"{option} {folder} is not writable ({problem}); give a folder you can write to"
        )


def _check_writable(folder: Path, option: str = "output folder") -> None:
    _check_folder(folder, option)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as error:
        raise UsageError(
            f"{option} {folder} is not writable ({error.strerror}); give a folder you can write to"
        ) from None


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (not the whole usage), exit code 2."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="hsmlbench", description="Reproduce the tables of HSML (ICML 2019)."
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help=f"show the full traceback of an error instead of one line (or set {DEBUG_ENV}=1)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    rep = sub.add_parser("reproduce", help="run a grid of table cells and write the tables")
    rep.add_argument(
        "--tables", nargs="+", default=["T1"], help="any of T1, T2, T3, T4, ablations (default: T1)"
    )
    rep.add_argument("--methods", nargs="+", help="default: every method of each table")
    rep.add_argument("--settings", nargs="+", help="e.g. 5-shot; default: every setting")
    rep.add_argument(
        "--budget",
        default="quick",
        help="smoke, quick, paper; cpu (image tables only: 32×32, a short run)",
    )
    rep.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 per cell")
    rep.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="METHOD.FIELD=VALUE",
        help="change a plug-in method's setting (e.g. metasgd.alpha_max=0.1; VALUE read as "
        "JSON, else text); its rows are named with it and never share a raw file with the "
        "defaults' (repeatable)",
    )
    rep.add_argument(
        "--out", type=Path, help="default: results/ for --budget paper, else results/<budget>/"
    )
    rep.add_argument(
        "--work-dir",
        type=Path,
        help="checkpoints (resumed on re-run); default: runs/ here, or OUT/checkpoints/ when "
        "--out is given",
    )
    rep.add_argument("--quiet", action="store_true", help="no progress bars")
    _plugin_argument(rep)
    from hsmlbench.domains.images.data_commands import add_data_commands, add_reproduce_arguments

    add_reproduce_arguments(rep)  # --dataset real|synthetic, --data-root (T3, T4)
    rep.add_argument(
        "--jobs",
        type=int,
        help="jobs run at once on this machine, each in its own process with cores/N torch "
        "threads (default: one per core; never more than jobs left; 1: one after another in "
        "this process, with progress bars)",
    )
    rep.add_argument(
        "--max-cell-minutes",
        type=float,
        default=None,
        help="on a CPU, skip any cell whose projected time (from a measured meta-iteration) is "
        "over this, saying how to run it (0: no bound; --budget paper is never skipped). "
        "Not given: regression cells always run (a long projection is only a warning) and "
        f"image cells projected over {DEFAULT_MAX_CELL_MINUTES:g} minutes on a CPU are skipped",
    )
    rep.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local (default) or ray: each job a Ray task on a cluster (pip install 'hsmlbench[ray]')",
    )
    rep.add_argument(
        "--address",
        help="with --executor ray: auto or ray://host:port (default: $RAY_ADDRESS, else a local "
        "Ray instance)",
    )

    tr = sub.add_parser("train", help="train one table cell, with checkpoints")
    _cell_arguments(tr)
    tr.add_argument("--data-root", type=Path, help="T3/T4: the folder holding meta-dataset/")
    tr.add_argument("--run-dir", type=Path, required=True)
    tr.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoint.pt")
    tr.add_argument("--quiet", action="store_true")
    _plugin_argument(tr)

    ev = sub.add_parser("evaluate", help="evaluate a trained cell on its fixed test tasks")
    _cell_arguments(ev)
    ev.add_argument("--data-root", type=Path, help="T3/T4: the folder holding meta-dataset/")
    ev.add_argument("--run-dir", type=Path, required=True)
    ev.add_argument("--out", type=Path, required=True, help="raw per-task result (JSON)")
    _plugin_argument(ev)

    rp = sub.add_parser(
        "report",
        help="re-render a table's markdown from its JSON, or every table of a results folder "
        "from its raw records (nothing is run)",
    )
    rp.add_argument(
        "json",
        type=Path,
        help="a table's JSON (e.g. results/T1.json), or a results folder (e.g. results/): every "
        "table, figure and FINDINGS.md rebuilt from the raw records under its runs/",
    )
    rp.add_argument(
        "--format",
        choices=("markdown", "latex"),
        default="markdown",
        help="markdown (FILE.md, default) or latex (FILE.tex: booktabs tables for a paper)",
    )
    rp.add_argument(
        "--paper",
        action="store_true",
        help="a table's JSON only: write its paper table (methods as rows, settings as columns; "
        "FILE.paper.md or, with --format latex, FILE.paper.tex) instead of the full table",
    )

    vf = sub.add_parser(
        "verify",
        help="re-run committed jobs from this code and compare their numbers with the committed "
        "raw files; writes VERIFY.md and VERIFY.json (docs/VERIFYING.md)",
    )
    vf.add_argument(
        "results", type=Path, nargs="?", default=Path("results"), help="default: results/"
    )
    vf.add_argument("--tables", nargs="+", help="only these tables' jobs (e.g. T1 ablations)")
    vf.add_argument(
        "--only", nargs="+", metavar="JOB", help="only these jobs (T1-maml-5-shot-seed0)"
    )
    vf.add_argument("--sample", type=int, metavar="N", help="a random sample of N of the jobs")
    vf.add_argument(
        "--sample-seed", type=int, default=0, help="the sample's seed (default 0: reproducible)"
    )
    vf.add_argument(
        "--work",
        type=Path,
        default=Path("runs/verify"),
        help="scratch folder for the re-runs and their checkpoints; finished re-runs there are "
        "reused, so an interrupted verification resumes (default: runs/verify)",
    )
    vf.add_argument(
        "--report-dir", type=Path, help="where VERIFY.md/.json go (default: the results folder)"
    )
    vf.add_argument("--rtol", type=float, default=1e-6, help="'equal within tolerance' (1e-6)")
    vf.add_argument("--atol", type=float, default=1e-9, help="(default 1e-9)")
    vf.add_argument(
        "--strict",
        action="store_true",
        help="also exit 7 when a row is not bit-identical where bit identity was expected",
    )
    vf.add_argument(
        "--replace",
        action="store_true",
        help="after VERIFY.md is written, replace the committed raw files by their re-runs and "
        "render the tables again",
    )
    vf.add_argument("--quiet", action="store_true", help="no progress bars")
    vf.add_argument("--jobs", type=int, help="jobs at once, as for reproduce")
    vf.add_argument("--executor", choices=("local", "ray"), default="local")
    vf.add_argument("--address", help="with --executor ray, as for reproduce")
    vf.add_argument("--data-root", type=Path, help="T3/T4: the folder holding meta-dataset/")
    _plugin_argument(vf)

    gc = sub.add_parser(
        "gpu-check",
        help="on a CUDA machine: versions, kernels, image steps, kill-and-resume, profile "
        "(at most 8 minutes; exit 6 without CUDA)",
    )
    gc.add_argument("--out", type=Path, default=Path("gpu-check"), help="default: gpu-check/")
    gc.add_argument(
        "--steps",
        nargs="+",
        help="default: all of environment, kernels, image-step, train-resume, profile",
    )
    gc.add_argument("--image-size", type=int, default=84, help="default 84 (the protocol's)")
    gc.add_argument(
        "--allow-cpu", action="store_true", help="run the steps on a CPU (tests this command)"
    )

    add_data_commands(sub)  # data prepare | data check (T3, T4)
    return parser


def _plugin_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first (a module on the path that registers methods with "
        "hsmlbench.methods.registry.register_method); repeatable. Installed plugins (entry-point group "
        "'hsmlbench.methods') need no flag",
    )


def _cell_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--table", default="T1", help="T1, T2, T3, T4, T3-synthetic, ...")
    parser.add_argument("--method", required=True)
    parser.add_argument("--setting", default="5-shot")
    parser.add_argument("--budget", default="quick")
    parser.add_argument("--seed", type=int, default=0)


def _config(args):
    from hsmlbench.domains import run_config

    try:
        return run_config(args.table, args.method, args.setting, args.budget)
    except KeyError as error:
        raise UsageError(error.args[0]) from None


def _tables(args) -> list[str]:
    """The requested tables, ``--dataset synthetic`` turning T3/T4 into their synthetic twins."""
    from hsmlbench.domains import domain_for
    from hsmlbench.domains.images.data_commands import DATASET_CHOICES, synthetic_table

    if args.dataset not in DATASET_CHOICES:
        raise UsageError(f"--dataset {args.dataset!r}: choose real or synthetic")
    if args.dataset == "real":
        return list(dict.fromkeys(args.tables))
    tables = []
    for table in args.tables:
        try:
            image = domain_for(table).name == "images"
        except KeyError as error:
            raise UsageError(error.args[0]) from None
        tables.append(synthetic_table(table) if image else table)
    if tables == list(args.tables):
        raise UsageError("--dataset synthetic applies to the image tables T3 and T4 only")
    return list(dict.fromkeys(tables))


def _reproduce(args) -> int:
    from functools import partial

    from hsmlbench.run.executors import (
        JOB_MODULES,
        ExecutorUnavailable,
        import_ray,
        start_pool_server,
    )
    from hsmlbench.run.grid import reproduce
    from hsmlbench.run.jobs import plan

    if args.seeds < 1:
        raise UsageError(f"--seeds {args.seeds}: need at least 1")
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs {args.jobs}: need at least 1")
    if args.executor == "ray" and args.jobs is not None:
        raise UsageError("--jobs is for --executor local; Ray places jobs by the cluster's CPUs")
    if args.executor != "ray" and args.address is not None:
        raise UsageError("--address needs --executor ray")
    tables = _tables(args)
    try:
        jobs = plan(
            tables, args.methods, args.seeds, args.budget, args.settings, _overrides(args.set)
        )
        if args.executor == "ray" and jobs:
            import_ray()
    except KeyError as error:
        raise UsageError(error.args[0]) from None
    except ValueError as error:  # e.g. HSMLBENCH_META_STEP=bogus
        raise UsageError(str(error)) from None
    except ExecutorUnavailable as error:
        raise UsageError(str(error)) from None
    if args.max_cell_minutes is not None and not args.max_cell_minutes >= 0:  # NaN too
        raise UsageError(f"--max-cell-minutes {args.max_cell_minutes:g}: need 0 (no bound) or more")
    out = args.out or default_out_dir(args.budget)
    _check_folder(out, "--out" if args.out else "output folder")
    if args.work_dir is None:  # a run into another folder keeps its checkpoints beside it
        args.work_dir = args.out / "checkpoints" if args.out else Path("runs")
    _check_folder(args.work_dir, "--work-dir")  # created by the first job that trains
    _check_writable(out, "--out" if args.out else "output folder")
    skipped = _plan(jobs, out, args)
    jobs = [job for job in jobs if job not in skipped]
    if args.executor == "local" and args.jobs != 1 and len(jobs) > 1:
        start_pool_server(JOB_MODULES)  # its imports run beside this process's, not after
    report = reproduce(
        jobs,
        out,
        args.work_dir,
        progress=not args.quiet,
        log=partial(print, flush=True),
        workers=args.jobs,
        executor=args.executor,
        address=args.address,
        data_root=args.data_root,
    )
    from hsmlbench.report.assemble import write_reports

    tables_run = [(job.table, job.budget) for job in [*jobs, *skipped]]
    report.written += write_reports(
        tables_run, out, log=partial(print, flush=True), skipped=skipped
    )
    for path in report.written:
        print(f"wrote {path}")
    code = _grid_exit_code(report, args.data_root)
    if code == 0 and skipped:
        print(
            f"hsmlbench: {len(skipped)} cells were skipped (projected over the bound for one "
            "cell); the plan above and their tables' notes say how to run each",
            file=sys.stderr,
        )
        return EXIT_SKIPPED
    return code


def _overrides(assignments: list[str]) -> dict[str, dict]:
    """``--set METHOD.FIELD=VALUE`` options → {method: {field: value}}."""
    import json

    overrides: dict[str, dict] = {}
    for text in assignments:
        target, equals, value = text.partition("=")
        method, dot, field = target.rpartition(".")
        if not (equals and dot and method and field):
            raise UsageError(f"--set {text}: write METHOD.FIELD=VALUE, e.g. metasgd.alpha_max=0.1")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        overrides.setdefault(method, {})[field] = parsed
    return overrides


def _plan(jobs: list, out: Path, args) -> dict:
    """Prints one plan line per table (cells to run, reused, skipped; projected time on this
    machine from a measured meta-iteration) and returns the jobs skipped for being projected
    past ``--max-cell-minutes`` on a CPU, each with the reason printed."""
    from hsmlbench.run import planning
    from hsmlbench.run.grid import local_workers

    if not jobs:
        return {}
    workers = 1 if args.executor == "ray" and not args.jobs else local_workers(jobs, args.jobs)
    given = args.max_cell_minutes is not None
    plan = planning.plan_suite(
        jobs,
        out,
        max_cell_minutes=args.max_cell_minutes if given else DEFAULT_MAX_CELL_MINUTES,
        explicit_paper=args.budget == "paper",
        data_root=args.data_root,
        measure=planning.measure,  # looked up now: tests replace it
        workers=min(workers, len(jobs)),
        # the user's bound applies to every cell; the default only to image cells, whose
        # budgets a CPU may not finish: a regression cell asked for always runs
        bounded=lambda job: given or job.domain.name != "regression",
    )
    for line in plan.lines:
        print(f"plan: {line}", flush=True)
    for line in _long_cell_warnings(plan, given):
        print(f"plan: {line}", flush=True)
    return plan.skipped


def _long_cell_warnings(plan, given: bool) -> list[str]:
    """Regression cells projected past the default bound run anyway: say so, with the load
    that may have slowed the measurement (a busy machine projects long)."""
    if given:
        return []
    from hsmlbench.run.executors import available_cores
    from hsmlbench.run.projection import format_duration

    bound = DEFAULT_MAX_CELL_MINUTES * 60
    long = [d for d in plan.decisions if d.to_train and d.cell.projected_s > bound]
    if not long:
        return []
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return [
        f"warning: {len(long)} cells projected over {format_duration(bound)} each (the longest "
        f"{format_duration(max(d.cell.projected_s for d in long))}); they run anyway (give "
        f"--max-cell-minutes to skip them). Load average {load:.1f} on {available_cores()} "
        "cores: a busy machine measures long."
    ]


def _grid_exit_code(report, data_root=None) -> int:
    """3 if a job failed, else 5 if a job could not run for missing data, else 0. A job whose
    meta-training diverged is a result (recorded, in the table's notes), said here, not an
    error."""
    for job, reason in report.diverged:
        print(f"hsmlbench: {job.name} diverged, recorded in its table: {reason}", file=sys.stderr)
    if report.failed:
        print(
            f"hsmlbench: {len(report.failed)} of {report.total} jobs failed; the tables show the "
            f"{report.finished} that finished. Re-run the same command to retry them.",
            file=sys.stderr,
        )
        for job, error, traceback_file in report.failed:
            print(f"  {job.name}: {error} (traceback: {traceback_file})", file=sys.stderr)
        return EXIT_INCOMPLETE
    if report.not_run:
        from hsmlbench.domains.images.data_commands import data_root_problem

        # a missing data root is one problem, not one per dataset and job
        problem = data_root_problem(data_root)
        why = (
            f": {problem}"
            if problem
            else " (the tables say which and how to get it; then `hsmlbench data check`)"
        )
        print(
            f"hsmlbench: {len(report.not_run)} of {report.total} jobs did not run: their data "
            f"is missing{why}",
            file=sys.stderr,
        )
        return EXIT_NOT_RUN
    return 0


def _check_data(config, args) -> None:
    """A cell whose data is missing stops before anything is written, naming what is missing."""
    from hsmlbench.domains import domain_for

    domain = domain_for(config.table)
    problems = domain.data_problems(config, args.data_root)
    if problems:
        from hsmlbench.domains.images.data_commands import data_root_problem

        # a missing data root is one problem, not one per dataset
        root_problem = data_root_problem(args.data_root) if domain.name == "images" else None
        raise DataMissing(
            root_problem or domain.not_run_fields(config, problems, args.data_root)["reason"]
        )


class DataMissing(Exception):
    """A table cell's data is not there: one line, exit code 5."""


def _train(args) -> int:
    from hsmlbench.run.training import CHECKPOINT, previous_checkpoint, train

    config = _config(args)
    _check_folder(args.run_dir, "--run-dir")
    checkpoint = args.run_dir / CHECKPOINT
    if args.resume and not (checkpoint.exists() or previous_checkpoint(checkpoint).exists()):
        raise UsageError(
            f"--resume: no checkpoint in {args.run_dir}; start the run without --resume"
        )
    _check_data(config, args)
    _check_writable(args.run_dir, "--run-dir")
    if not args.resume:  # a fresh run never overwrites the checkpoints already there
        from hsmlbench.atomic import set_aside

        for old in (checkpoint, previous_checkpoint(checkpoint)):
            if old.exists():
                set_aside(old, "a new run starts here (no --resume)", kind="superseded")
    _tag_run_dir(args, config)
    result = train(
        config,
        args.seed,
        args.run_dir,
        resume=args.resume,
        progress=not args.quiet,
        data_root=args.data_root,
    )
    print(
        f"trained {config.job_name} seed {args.seed}: {len(result.losses)} iterations, "
        f"{result.wall_time_s:.0f} s; checkpoint {checkpoint}"
    )
    return 0


def _job_version(args, config) -> str:
    """The code version a job of this cell records now (plug-in source included)."""
    from hsmlbench.domains import domain_for
    from hsmlbench.run.jobs import Job
    from hsmlbench.run.versioning import code_version, job_code_version

    job = Job(config.table, args.method, config.setting, args.seed, config.budget.name)
    return job_code_version(job, code_version(domain_for(config.table).name))


def _tag_run_dir(args, config) -> None:
    """``train`` tags its run folder with the code that trains it, as the grid does, so that
    ``evaluate`` can say which code the checkpoint comes from; resuming under other code is
    refused (the numbers would come from two codes)."""
    from hsmlbench.atomic import write_text
    from hsmlbench.run.versioning import CODE_VERSION_FILE

    tag, version = args.run_dir / CODE_VERSION_FILE, _job_version(args, config)
    started_by = tag.read_text().strip() if tag.exists() else None
    if args.resume and started_by not in (None, version):
        raise UsageError(
            f"{args.run_dir} was started by code {started_by}, this is {version}: resume it "
            "with that code, or train into a new --run-dir"
        )
    args.run_dir.mkdir(parents=True, exist_ok=True)
    write_text(tag, version + "\n")


def _check_finished(checkpoint: Path, config, args) -> None:
    """``evaluate`` never trains: a checkpoint of another run, or one that has not reached the
    budget's last iteration, stops it with one line naming the fix."""
    import torch

    try:
        state = torch.load(checkpoint, weights_only=False, map_location="cpu")
        iteration, stored, seed = state["iteration"], state["config"], state["seed"]
    except Exception as error:  # noqa: BLE001 - any unreadable file
        raise UsageError(
            f"{checkpoint} is not a readable checkpoint ({type(error).__name__}); train the "
            "run again with `hsmlbench train`"
        ) from None
    if not config.matches(stored) or seed != args.seed:
        raise UsageError(
            f"{checkpoint} belongs to another run ({_describe_run(stored, seed)}); evaluate it "
            "with the --table, --method, --setting, --budget and --seed it was trained with, "
            "or give the --run-dir of the run you mean"
        )
    total = config.budget.iterations
    if iteration < total:
        raise UsageError(
            f"{checkpoint} is at iteration {iteration:,} of {total:,} and evaluate never "
            f"trains; finish it first: hsmlbench train --table {config.table} --method "
            f"{config.method} --setting {config.setting} --budget {config.budget.name} --seed "
            f"{args.seed} --run-dir {args.run_dir} --resume"
        )


def _describe_run(stored, seed) -> str:
    """``T1 maml 5-shot, budget smoke, seed 0`` from a checkpoint's stored config."""
    try:
        budget = stored["budget"]
        budget = budget.get("name", "?") if isinstance(budget, dict) else budget
        return f"{stored['table']} {stored['method']} {stored['setting']}, budget {budget}, seed {seed}"
    except (KeyError, TypeError, AttributeError):
        return "a different config or seed"


def _evaluate(args) -> int:
    from hsmlbench.atomic import write_json
    from hsmlbench.domains import domain_for
    from hsmlbench.report.statistics import mean_ci95
    from hsmlbench.results.provenance import probe
    from hsmlbench.run.evaluation import evaluate
    from hsmlbench.run.jobs import Job
    from hsmlbench.run.single_job import finished_record
    from hsmlbench.run.training import train
    from hsmlbench.run.versioning import job_sources

    config = _config(args)
    if args.out.is_dir():
        raise UsageError(
            f"--out {args.out} is a folder; give a file name, e.g. {args.out}/raw.json"
        )
    from hsmlbench.run.training import CHECKPOINT, previous_checkpoint

    checkpoint = args.run_dir / CHECKPOINT
    if not checkpoint.exists():  # the latest lost (e.g. cut while written): the one before
        checkpoint = previous_checkpoint(checkpoint)
    if not checkpoint.exists():
        raise UsageError(f"no checkpoint in {args.run_dir}; run `hsmlbench train` first")
    _check_finished(checkpoint, config, args)
    version = _evaluated_version(args, config)
    _check_data(config, args)
    _check_writable(args.out.parent, f"--out {args.out}: the folder")
    domain = domain_for(config.table)
    device = domain.device()
    job = Job(config.table, args.method, config.setting, args.seed, config.budget.name)
    provenance = probe(str(device), job_sources(domain.name).values())
    # Loading a finished checkpoint through train(resume=True) runs no further iterations.
    trained = train(
        config, args.seed, args.run_dir, resume=True, progress=False, data_root=args.data_root
    )
    results = evaluate(trained.model, config, args.data_root, device)
    for name, result in results.items():
        mean, ci = mean_ci95(result.headline)
        label = f" {result_label(config, name)}" if name else ""
        print(f"{config.job_name} seed {args.seed}{label}: {mean:.4f} ± {ci:.4f}")
    record = finished_record(job, trained, results, version, provenance)
    write_json(args.out, record)
    print(f"wrote {args.out}")
    return 0


def _evaluated_version(args, config) -> str:
    """The code version an evaluation records: this code's, which must be the code that
    trained the checkpoint (its run folder's tag). An untagged checkpoint (trained before
    tags existed) is recorded as such, so that no grid ever reuses its record."""
    from hsmlbench.run.versioning import CODE_VERSION_FILE

    tag, version = args.run_dir / CODE_VERSION_FILE, _job_version(args, config)
    trained_by = tag.read_text().strip() if tag.exists() else None
    if trained_by is None:
        return f"{version} (checkpoint of unrecorded code)"
    if trained_by != version:
        raise UsageError(
            f"{args.run_dir} was trained by code {trained_by}, this is {version}: evaluate it "
            "with that code, or retrain with this one"
        )
    return version


def result_label(config, name: str) -> str:
    return config.dataset_label(name) if hasattr(config, "dataset_label") else name


def _gpu_check(args) -> int:
    from hsmlbench.run.gpu_check import STEPS, run_check

    names = [s.name for s in STEPS]
    unknown = sorted(set(args.steps or []) - set(names))
    if unknown:
        raise UsageError(f"--steps {' '.join(unknown)}: unknown; known: {', '.join(names)}")
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} is a file; give a folder")
    return run_check(args.out, args.steps or names, args.image_size, args.allow_cpu)


def _report_folder(folder: Path, format: str) -> int:
    """Every table of ``folder`` rebuilt from its raw records, through the same code as after a
    grid (``write_reports``): the way to re-render committed results after a change of
    report code."""
    from hsmlbench.report.assemble import write_reports

    if format != "markdown":
        raise UsageError(
            "--format latex takes a table's JSON file, e.g. results/T1.json (a folder's report "
            "writes every table's LaTeX anyway: <table>.tex and <table>.paper.tex)"
        )
    from hsmlbench.domains import domain_for

    tables = set()
    for path in (folder / "runs").glob("*/*.json"):
        table, _, budget = path.stem.rpartition("-")
        try:
            domain = domain_for(path.parent.name)
        except KeyError:
            raise UsageError(f"{path.parent} is not a table's folder of raw records") from None
        if budget in domain.budgets(path.parent.name) and table:
            tables.add((path.parent.name, budget))
    if not tables:
        raise UsageError(f"{folder} holds no raw records under runs/; run `hsmlbench reproduce`")
    for path in write_reports(sorted(tables), folder):
        print(f"wrote {path}")
    return 0


def _report(args) -> int:
    from hsmlbench.atomic import write_text
    from hsmlbench.report.tables import load_table, render_latex, render_markdown

    source = args.json
    if source.is_dir():
        return _report_folder(source, args.format)
    not_a_table = (
        f"{source} is not a hsmlbench table file (a JSON object with 'table', 'rows' and "
        "'budget', as `hsmlbench reproduce` writes it); re-run the table"
    )
    try:
        data = load_table(source)
    except (FileNotFoundError, ValueError) as error:
        raise UsageError(str(error)) from None
    except TypeError:  # valid JSON, but not an object
        raise UsageError(not_a_table) from None
    except OSError as error:
        raise UsageError(f"cannot read {source} ({error.strerror})") from None
    if not isinstance(data, dict) or not isinstance(data["rows"], list):
        raise UsageError(not_a_table)
    render, suffix = (render_latex, ".tex") if args.format == "latex" else (render_markdown, ".md")
    if args.paper:
        from hsmlbench.report.paper_tables import render_paper_latex, render_paper_markdown

        render = render_paper_latex if args.format == "latex" else render_paper_markdown
        suffix = ".paper" + suffix
    try:
        text = render(data)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
        raise UsageError(f"{not_a_table} ({type(error).__name__}: {error})") from None
    path = source.with_suffix(suffix)
    try:
        write_text(path, text)
    except OSError as error:
        raise UsageError(
            f"cannot write {path} ({error.strerror}); the table is written next to its JSON: "
            "copy the JSON into a folder you can write to"
        ) from None
    print(f"wrote {path}")
    return 0


def _check_kernels() -> None:
    """A bad ``HSMLBENCH_KERNELS`` stops every command that trains before anything runs, even
    one whose methods never reach the kernels (they would fail only once an HSML job does)."""
    from hsmlbench.kernels.dispatch import ENV_VAR

    value = os.environ.get(ENV_VAR, "")
    if value.strip().lower() not in ("", "triton", "torch"):
        raise UsageError(f"{ENV_VAR}={value!r}: use triton, torch, or leave it unset")


def _debug(args) -> bool:
    """``--debug`` or ``HSMLBENCH_DEBUG`` set to anything but empty, 0, false or no."""
    value = os.environ.get(DEBUG_ENV, "").strip().lower()
    return args.debug or value not in ("", "0", "false", "no")


def _run(args) -> int:
    budgets = known_budgets()
    if getattr(args, "budget", None) is not None and args.budget not in budgets:
        raise UsageError(f"unknown budget {args.budget!r}; known: {', '.join(budgets)}")
    if args.command in TRAINING_COMMANDS:
        _check_kernels()
    from hsmlbench.domains.images.data_commands import run_data_command
    from hsmlbench.methods.registry import load_plugin

    handler = {
        "reproduce": _reproduce,
        "train": _train,
        "evaluate": _evaluate,
        "gpu-check": _gpu_check,
        "report": _report,
        "verify": _verify,
        "data": run_data_command,
    }
    for module in getattr(args, "plugin", []):
        load_plugin(module)
    return handler[args.command](args)


def _verify(args) -> int:
    """``hsmlbench verify``: exit 0 when no verdict would change, 7 when one would (or, with
    --strict, a row is not bit-identical where that was expected, or a committed job could not
    be re-run), 3 when re-runs failed."""
    from functools import partial

    from hsmlbench.report import verification
    from hsmlbench.run.executors import JOB_MODULES, start_pool_server

    if not (args.results / "runs").is_dir():
        raise UsageError(
            f"{args.results}: no runs/ folder of raw job files (is it a results folder?)"
        )
    if args.sample is not None and args.sample < 1:
        raise UsageError(f"--sample {args.sample}: need at least 1")
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs {args.jobs}: need at least 1")
    if args.work.resolve() == args.results.resolve():
        raise UsageError("--work must not be the results folder: verify never writes into it")
    _check_folder(args.work, "--work")
    log = partial(print, flush=True)
    if args.executor == "local" and args.jobs != 1:
        start_pool_server(JOB_MODULES)
    try:
        result = verification.verify(
            args.results,
            args.work,
            tables=args.tables,
            names=args.only,
            sample_n=args.sample,
            sample_seed=args.sample_seed,
            workers=args.jobs,
            executor=args.executor,
            address=args.address,
            data_root=args.data_root,
            rtol=args.rtol,
            atol=args.atol,
            progress=not args.quiet,
            log=log,
        )
    except KeyError as error:
        raise UsageError(error.args[0]) from None
    for path in verification.write_verify_files(result, args.report_dir or args.results):
        print(f"wrote {path}")
    counts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(result.counts.items()))
    print(f"verify: {len(result.rows)} jobs: {counts}; {result.wall_time_s / 60:.1f} min")
    for change in result.verdict_changes:
        print(f"hsmlbench: verdict would change: {change}", file=sys.stderr)
    unproven = [r for r in result.rows if r.outcome == "cannot be re-run"]
    for row in unproven:
        print(f"hsmlbench: {row.job} cannot be re-run: {row.why}", file=sys.stderr)
    for row in result.unexpected():
        print(
            f"hsmlbench: {row.job}: {row.outcome} where bit identity was expected", file=sys.stderr
        )
    if args.replace and not result.verdict_changes:
        for path in verification.replace_committed(result, args.results, args.work, log):
            print(f"wrote {path}")
    elif args.replace:
        print(
            "hsmlbench: --replace refused: a verdict would change (VERIFY.md says which)",
            file=sys.stderr,
        )
    if result.verdict_changes or (args.strict and (unproven or result.unexpected())):
        return EXIT_UNVERIFIED
    return EXIT_INCOMPLETE if result.failed_jobs else 0


def _one_line(error: Exception) -> tuple[int, str]:
    """The exit code and the one line that report ``error``."""
    from hsmlbench.methods.registry import PluginError

    try:
        from hsmlbench.run.training import NonFiniteLossError
    except Exception:  # noqa: BLE001 - the error being reported may be this very import
        NonFiniteLossError = ()  # matches nothing

    if isinstance(error, (UsageError, PluginError)):
        return EXIT_USAGE, str(error)
    if isinstance(error, DataMissing):
        return EXIT_NOT_RUN, f"data missing: {error}"
    if isinstance(error, NonFiniteLossError):
        # the run stopped on a NaN: exit 3 as a failed job of the grid; the message names the
        # iteration and the last good checkpoint
        return EXIT_INCOMPLETE, str(error)
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            EXIT_INCOMPLETE,
            f"{error.strerror or error}; free some space and run the same command again",
        )
    # anything else is unexpected (a bug): 3, the code of a run that failed
    what = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return EXIT_INCOMPLETE, f"{what} (run with --debug for the traceback)"


def one_line(message: str) -> str:
    """``message`` on one line: its lines joined by spaces."""
    return " ".join(line.strip() for line in str(message).splitlines() if line.strip())


class Terminated(KeyboardInterrupt):
    """SIGTERM (a supervisor, ``timeout``): stopped as Ctrl-C stops a run, with exit 143."""


def _stop_on(signum, frame) -> None:
    """The first Ctrl-C or SIGTERM stops the run; any further one is ignored while it stops
    its workers and exits (a second signal never hangs or prints a traceback)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def main(argv: list[str] | None = None) -> int:
    import threading

    args = _parser().parse_args(argv)
    args.debug = _debug(args)
    main_thread = threading.current_thread() is threading.main_thread()
    if main_thread:
        previous = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
        if previous[0] is not signal.SIG_IGN:  # a background job keeps ignoring Ctrl-C
            signal.signal(signal.SIGINT, _stop_on)
        signal.signal(signal.SIGTERM, _stop_on)
    stopped = False
    try:
        return _run(args)
    except KeyboardInterrupt as stop:
        stopped = True
        print(
            f"\nhsmlbench: {'terminated' if isinstance(stop, Terminated) else 'interrupted'}; "
            "re-run the same command to resume from the last checkpoint",
            file=sys.stderr,
        )
        return EXIT_TERMINATED if isinstance(stop, Terminated) else EXIT_INTERRUPTED
    except Exception as error:
        if args.debug:
            raise
        code, message = _one_line(error)
        print(f"hsmlbench: {one_line(message)}", file=sys.stderr)
        return code
    finally:
        if main_thread and not stopped:  # as they were (a caller, e.g. pytest, has its own)
            for signum, handler in zip((signal.SIGINT, signal.SIGTERM), previous):
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


if __name__ == "__main__":
    sys.exit(main())
