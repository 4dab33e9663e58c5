"""The image domain's own commands and options: ``data prepare``, ``data check``, and
``reproduce --dataset / --data-root``. ``hsmlbench.cli`` adds them to its parser; this module
never imports the CLI. A data problem: one line on stderr, exit 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hsmlbench.domains.images.datasets import (
    DATA_ROOT_ENV,
    DATASET_NAMES,
    LAYOUT_DIR,
    DataError,
    resolve_data_root,
)

EXIT_DATA = 1
DATASET_CHOICES = ("real", "synthetic")


def synthetic_table(table: str) -> str:
    """``--dataset synthetic`` turns T3/T4 into T3-synthetic/T4-synthetic, so synthetic results
    never land in the real tables."""
    return table if table.endswith("-synthetic") else f"{table}-synthetic"


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


def data_root_problem(data_root) -> str | None:
    """Why the data root itself cannot be used (none given, missing, a file), in one sentence
    with the fix; None when it is a folder. One problem for the whole root, not one per dataset."""
    try:
        root = resolve_data_root(data_root)
    except DataError as error:
        return str(error)
    if not root.exists():
        return (
            f"data root {root} does not exist; prepare the datasets there with `hsmlbench data "
            f"prepare`, or pass --data-root (or set {DATA_ROOT_ENV}) the folder that holds "
            f"{LAYOUT_DIR}/"
        )
    if not root.is_dir():
        return _not_a_folder(root)
    return None


def _not_a_folder(root: Path) -> str:
    return (
        f"data root {root} is a file, not a folder; pass --data-root (or set {DATA_ROOT_ENV}) "
        f"the folder that holds {LAYOUT_DIR}/"
    )


def run_data_command(args) -> int:
    from hsmlbench.domains.images.layout import check_data_root, format_reports
    from hsmlbench.domains.images.prepare import prepare_dataset

    try:
        root = resolve_data_root(args.data_root)
        if root.exists() and not root.is_dir():
            raise DataError(_not_a_folder(root))
        if args.data_command == "prepare":
            prepare_dataset(args.dataset, args.source, root, force=args.force)
            return 0
        reports = check_data_root(root, args.datasets, args.full)
        print(format_reports(root, reports), end="")
        return 0 if all(r.ok for r in reports) else EXIT_DATA
    except DataError as error:
        if getattr(args, "debug", False):
            raise
        message = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
        print(f"hsmlbench: {message}", file=sys.stderr)
        return EXIT_DATA
