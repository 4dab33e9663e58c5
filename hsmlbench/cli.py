"""Command line: ``hsmlbench reproduce | train | evaluate | report | data``.

Bad arguments end with one line on stderr and exit code 2, before anything is written.
``reproduce`` exits 3 when some job of the grid failed (after writing the tables of the jobs
that finished; re-running the same command retries only the failed and missing jobs).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from hsmlbench.domains.regression.configs import BUDGETS, TABLES

EXIT_USAGE = 2
EXIT_INCOMPLETE = 3


class UsageError(Exception):
    """A problem with the command line: reported as one line, exit code 2."""


def default_out_dir(budget: str) -> Path:
    """Paper-budget tables go to results/; shorter budgets to results/<budget>/."""
    return Path("results") if budget == "paper" else Path("results") / budget


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as error:
        raise UsageError(f"output folder {folder} is not writable ({error.strerror})") from None


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (not the whole usage), exit code 2."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="hsmlbench", description="Reproduce the tables of HSML (ICML 2019)."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    rep = sub.add_parser("reproduce", help="run a grid of table cells and write the tables")
    rep.add_argument(
        "--tables", nargs="+", default=["T1"], help=f"any of {', '.join(TABLES)}, T3, T4"
    )
    rep.add_argument("--methods", nargs="+", help="default: every method of each table")
    rep.add_argument("--settings", nargs="+", help="e.g. 5-shot; default: every setting")
    rep.add_argument("--budget", default="quick", help=f"one of {', '.join(BUDGETS)}")
    rep.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 per cell")
    rep.add_argument(
        "--out", type=Path, help="default: results/ for --budget paper, else results/<budget>/"
    )
    rep.add_argument(
        "--work-dir", type=Path, default=Path("runs"), help="checkpoints (resumed on re-run)"
    )
    rep.add_argument("--quiet", action="store_true", help="no progress bars")
    _plugin_argument(rep)
    from hsmlbench.domains.images.cli import add_data_commands, add_reproduce_arguments

    add_reproduce_arguments(rep)  # --dataset real|synthetic, --data-root (T3, T4)
    rep.add_argument(
        "--jobs",
        type=int,
        help="jobs run at once on this machine, each in its own process with cores/N torch "
        "threads (default: one per core; never more than jobs left; 1: one after another in "
        "this process, with progress bars)",
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
    tr.add_argument("--run-dir", type=Path, required=True)
    tr.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoint.pt")
    tr.add_argument("--quiet", action="store_true")
    _plugin_argument(tr)

    ev = sub.add_parser("evaluate", help="evaluate a trained cell on its fixed test tasks")
    _cell_arguments(ev)
    ev.add_argument("--run-dir", type=Path, required=True)
    ev.add_argument("--out", type=Path, required=True, help="raw per-task result (JSON)")
    _plugin_argument(ev)

    rp = sub.add_parser("report", help="re-render a table's markdown from its JSON")
    rp.add_argument("json", type=Path, help="e.g. results/T1.json")
    rp.add_argument(
        "--format",
        choices=("markdown", "latex"),
        default="markdown",
        help="markdown (FILE.md, default) or latex (FILE.tex: booktabs tables for a paper)",
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
    parser.add_argument("--table", default="T1")
    parser.add_argument("--method", required=True)
    parser.add_argument("--setting", default="5-shot")
    parser.add_argument("--budget", default="quick")
    parser.add_argument("--seed", type=int, default=0)


def _config(args):
    from hsmlbench.domains.regression.configs import run_config

    try:
        return run_config(args.table, args.method, args.setting, args.budget)
    except KeyError as error:
        raise UsageError(error.args[0]) from None


def _reproduce(args) -> int:
    from functools import partial

    from hsmlbench.run.executors import (
        JOB_MODULES,
        ExecutorUnavailable,
        import_ray,
        start_pool_server,
    )

    if args.seeds < 1:
        raise UsageError(f"--seeds {args.seeds}: need at least 1")
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs {args.jobs}: need at least 1")
    if args.executor == "ray" and args.jobs is not None:
        raise UsageError("--jobs is for --executor local; Ray places jobs by the cluster's CPUs")
    if args.executor != "ray" and args.address is not None:
        raise UsageError("--address needs --executor ray")
    if args.executor == "local" and args.jobs != 1 and any(t in TABLES for t in args.tables):
        start_pool_server(JOB_MODULES)  # its imports run beside this process's, not after

    from hsmlbench.domains.images.cli import plan_images, run_image_jobs, split_tables
    from hsmlbench.run.grid import plan, reproduce

    tables, image_tables = split_tables(args.tables, args.dataset)  # T3/T4 run elsewhere
    try:
        jobs = plan(tables, args.methods, args.seeds, args.budget, args.settings)
        image_jobs = plan_images(image_tables, args.methods, args.seeds, args.budget, args.settings)
        if args.executor == "ray" and jobs:
            import_ray()
    except KeyError as error:
        raise UsageError(error.args[0]) from None
    except ExecutorUnavailable as error:
        raise UsageError(str(error)) from None
    out = args.out or default_out_dir(args.budget)
    _check_writable(out)
    if image_jobs:  # serially in this process (one GPU job at a time), before the grid
        for path in run_image_jobs(image_jobs, args, out):
            print(f"wrote {path}")
    if not jobs:
        return 0
    report = reproduce(
        jobs,
        out,
        args.work_dir,
        progress=not args.quiet,
        log=partial(print, flush=True),
        workers=args.jobs,
        executor=args.executor,
        address=args.address,
    )
    for path in report.written:
        print(f"wrote {path}")
    if report.complete:
        return 0
    print(
        f"hsmlbench: {len(report.failed)} of {report.total} jobs failed; the tables show the "
        f"{report.finished} that finished. Re-run the same command to retry them.",
        file=sys.stderr,
    )
    for job, error, traceback_file in report.failed:
        print(f"  {job.name}: {error} (traceback: {traceback_file})", file=sys.stderr)
    return EXIT_INCOMPLETE


def _train(args) -> int:
    from hsmlbench.run.training import CHECKPOINT, train

    config = _config(args)
    _check_writable(args.run_dir)
    result = train(config, args.seed, args.run_dir, resume=args.resume, progress=not args.quiet)
    print(
        f"trained {config.job_name} seed {args.seed}: {len(result.losses)} iterations, "
        f"{result.wall_time_s:.0f} s; checkpoint {args.run_dir / CHECKPOINT}"
    )
    return 0


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
            f"{checkpoint} belongs to another run (different config or seed); give the "
            "--table, --method, --setting, --budget and --seed it was trained with"
        )
    total = config.budget.iterations
    if iteration < total:
        raise UsageError(
            f"{checkpoint} is at iteration {iteration:,} of {total:,} and evaluate never "
            f"trains; finish it first: hsmlbench train --table {config.table} --method "
            f"{config.method} --setting {config.setting} --budget {config.budget.name} --seed "
            f"{args.seed} --run-dir {args.run_dir} --resume"
        )


def _evaluate(args) -> int:
    from hsmlbench.atomic import write_json
    from hsmlbench.report.statistics import mean_ci95
    from hsmlbench.run.evaluation import evaluate
    from hsmlbench.run.training import train

    config = _config(args)
    checkpoint = args.run_dir / "checkpoint.pt"
    if not checkpoint.exists():
        raise UsageError(f"no checkpoint in {args.run_dir}; run `hsmlbench train` first")
    _check_finished(checkpoint, config, args)
    _check_writable(args.out.parent)
    # Loading a finished checkpoint through train(resume=True) runs no further iterations.
    trained = train(config, args.seed, args.run_dir, resume=True, progress=False)
    result = evaluate(trained.model, config)
    mean, ci = mean_ci95(result.headline)
    write_json(
        args.out,
        {
            "method": config.method,
            "setting": config.setting,
            "seed": args.seed,
            "budget": config.budget.name,
            "n_tasks": int(result.headline.size),
            "mean": mean,
            "ci95": ci,
            "per_task": result.headline.tolist(),
            "per_step_mean": result.curve.mean(axis=0).tolist(),
        },
    )
    print(f"{config.job_name} seed {args.seed}: {mean:.4f} ± {ci:.4f} → {args.out}")
    return 0


def _report(args) -> int:
    from hsmlbench.atomic import write_text
    from hsmlbench.report.tables import load_table, render_latex, render_markdown

    try:
        data = load_table(args.json)
    except (FileNotFoundError, ValueError) as error:
        raise UsageError(str(error)) from None
    render, suffix = (render_latex, ".tex") if args.format == "latex" else (render_markdown, ".md")
    path = args.json.with_suffix(suffix)
    write_text(path, render(data))
    print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if getattr(args, "budget", None) is not None and args.budget not in BUDGETS:
        print(
            f"hsmlbench: unknown budget {args.budget!r}; known: {', '.join(BUDGETS)}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    from hsmlbench.domains.images.cli import run_data_command

    handler = {
        "reproduce": _reproduce,
        "train": _train,
        "evaluate": _evaluate,
        "report": _report,
        "data": run_data_command,
    }
    from hsmlbench.methods.registry import PluginError, load_plugin

    try:
        for module in getattr(args, "plugin", []):
            load_plugin(module)
        return handler[args.command](args)
    except PluginError as error:
        print(f"hsmlbench: {error}", file=sys.stderr)
        return EXIT_USAGE
    except UsageError as error:
        print(f"hsmlbench: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(
            "\nhsmlbench: interrupted; re-run the same command to resume from the last checkpoint",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
