"""Command line for the image tables: ``data prepare``, ``data check`` and ``reproduce``.

``python -m hsmlbench.domains.images.cli ...`` works on its own; ``hsmlbench.cli`` delegates its
``data`` command and the image tables of ``reproduce`` here (one implementation, two doors).
Bad arguments: one line on stderr, exit 2, nothing written. A data problem: one line, exit 1.

The image tables run one job after another in this process (a GPU job each), outside the
regression grid's executors and code-version bookkeeping: a finished image job is reused
when its raw file says "done" with the same config.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hsmlbench.cli import UsageError, _check_writable, default_out_dir
from hsmlbench.domains.images.configs import IMAGE_BUDGETS, IMAGE_TABLES, base_table
from hsmlbench.domains.images.datasets import (
    DATA_ROOT_ENV,
    DATASET_NAMES,
    DataError,
    resolve_data_root,
)

EXIT_DATA = 1
EXIT_USAGE = 2
DATASET_CHOICES = ("real", "synthetic")


def add_data_commands(sub) -> None:
    """Adds ``data prepare`` and ``data check`` to an argparse subparsers object."""
    data = sub.add_parser("data", help="prepare or check the four image datasets (T3, T4)")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    prepare = data_sub.add_parser(
        "prepare",
        help="official archive or extracted folder → <root>/meta-dataset/<Folder> at 84×84",
    )
    prepare.add_argument("--dataset", required=True, choices=DATASET_NAMES)
    prepare.add_argument(
        "--source", required=True, type=Path, help="archive (.tgz/.tar.gz/.zip) or folder"
    )
    prepare.add_argument("--data-root", type=Path, help=f"default: ${DATA_ROOT_ENV}")
    prepare.add_argument(
        "--force", action="store_true", help="replace an existing prepared dataset"
    )
    check = data_sub.add_parser("check", help="what is there, counted against docs/PROTOCOL.md §4")
    check.add_argument("--data-root", type=Path, help=f"default: ${DATA_ROOT_ENV}")
    check.add_argument("--datasets", nargs="+", choices=DATASET_NAMES, default=list(DATASET_NAMES))
    check.add_argument("--full", action="store_true", help="decode every image (slow)")


def add_reproduce_arguments(parser: argparse.ArgumentParser) -> None:
    """``--dataset`` and ``--data-root``, the image tables' own options of ``reproduce``."""
    parser.add_argument(
        "--dataset",
        default="real",
        help="T3/T4: real (default; the four datasets) or synthetic (the built-in four-domain "
        "set, written as tables T3-synthetic, T4-synthetic)",
    )
    parser.add_argument(
        "--data-root",
        type=Path,
        help=f"T3/T4: the folder holding meta-dataset/ (default: ${DATA_ROOT_ENV})",
    )


def run_data_command(args) -> int:
    from hsmlbench.domains.images.layout import check_data_root, format_reports
    from hsmlbench.domains.images.prepare import prepare_dataset

    try:
        root = resolve_data_root(args.data_root)
        if args.data_command == "prepare":
            prepare_dataset(args.dataset, args.source, root, force=args.force)
            return 0
        reports = check_data_root(root, args.datasets, args.full)
        print(format_reports(root, reports), end="")
        return 0 if all(r.ok for r in reports) else EXIT_DATA
    except DataError as error:
        print(f"hsmlbench: {error}", file=sys.stderr)
        return EXIT_DATA


def is_image_table(table: str) -> bool:
    return table in IMAGE_TABLES or table in ("T3", "T4")


def split_tables(tables: list[str], dataset: str) -> tuple[list[str], list[str]]:
    """(regression tables, image tables); ``--dataset synthetic`` turns T3/T4 into
    T3-synthetic/T4-synthetic, so synthetic results never land in the real tables."""
    if dataset not in DATASET_CHOICES:
        raise UsageError(f"--dataset {dataset!r}: choose real or synthetic")
    images = [t for t in tables if is_image_table(t)]
    if dataset == "synthetic":
        if not images:
            raise UsageError("--dataset synthetic applies to the image tables T3 and T4 only")
        images = [t if t.endswith("-synthetic") else f"{t}-synthetic" for t in images]
    return [t for t in tables if not is_image_table(t)], list(dict.fromkeys(images))


def plan_images(tables, methods, seeds: int, budget: str, settings=None) -> list:
    """The grid of image jobs; raises UsageError naming the first unknown table/method/budget."""
    from hsmlbench.run.grid import Job

    jobs = []
    for table in tables:
        if table not in IMAGE_TABLES:
            raise UsageError(f"unknown image table {table!r}; known: {', '.join(IMAGE_TABLES)}")
        if budget not in IMAGE_BUDGETS[base_table(table)]:
            raise UsageError(
                f"unknown budget {budget!r}; known: {', '.join(IMAGE_BUDGETS[base_table(table)])}"
            )
        spec = IMAGE_TABLES[table]
        for method in methods or spec.methods:
            if method not in spec.methods:
                raise UsageError(
                    f"table {table} has no method {method!r}; it has: {', '.join(spec.methods)}"
                )
            for setting in settings or spec.settings:
                if setting not in spec.settings:
                    raise UsageError(
                        f"table {table} has no setting {setting!r}; it has: {', '.join(spec.settings)}"
                    )
                jobs += [Job(table, method, setting, seed, budget) for seed in range(seeds)]
    return jobs


def run_image_jobs(jobs: list, args, out: Path) -> list[Path]:
    """Runs planned image jobs (serially, in this process) and writes their tables and figures."""
    from functools import partial

    from hsmlbench.run.image_grid import reproduce_images

    return reproduce_images(
        jobs, out, args.work_dir, not args.quiet, args.data_root, log=partial(print, flush=True)
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hsmlbench-images", description="T3/T4: few-shot image classification"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    add_data_commands(sub)
    rep = sub.add_parser("reproduce", help="run T3/T4 jobs and write their tables")
    rep.add_argument(
        "--tables", nargs="+", default=["T3"], help=f"any of {', '.join(IMAGE_TABLES)}"
    )
    add_reproduce_arguments(rep)
    rep.add_argument("--methods", nargs="+")
    rep.add_argument("--settings", nargs="+")
    rep.add_argument("--budget", default="quick")
    rep.add_argument("--seeds", type=int, default=1)
    rep.add_argument("--out", type=Path)
    rep.add_argument("--work-dir", type=Path, default=Path("runs"))
    rep.add_argument("--quiet", action="store_true")
    return parser


def _reproduce(args) -> int:
    if args.seeds < 1:
        raise UsageError(f"--seeds {args.seeds}: need at least 1")
    regression, tables = split_tables(args.tables, args.dataset)
    if regression:
        raise UsageError(f"not an image table: {', '.join(regression)} (use `hsmlbench reproduce`)")
    jobs = plan_images(tables, args.methods, args.seeds, args.budget, args.settings)
    out = args.out or default_out_dir(args.budget)
    _check_writable(out)
    for path in run_image_jobs(jobs, args, out):
        print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "data":
            return run_data_command(args)
        return _reproduce(args)
    except UsageError as error:
        print(f"hsmlbench: {error}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
