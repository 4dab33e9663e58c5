"""Reading raw files: the one validating reader, used by the grid (reuse), table assembly,
figures and the tests alike, and the finding of a table's raw files."""

from __future__ import annotations

import json
from pathlib import Path

from hsmlbench.atomic import set_aside
from hsmlbench.results.migrations import upgrade
from hsmlbench.results.schema import RawFileError, record_problem


def read_raw(path: Path, *, named: bool = False) -> dict:
    """The raw record in ``path``, validated and upgraded to the current schema; raises
    RawFileError saying why it is not one. ``named``: the file must also be named after its
    job (``<job>-<budget>.json``), as a grid's files are."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValueError) as error:
        raise RawFileError(f"not a readable raw job file ({type(error).__name__})") from None
    problem = record_problem(raw, Path(path) if named else None)
    if problem:
        raise RawFileError(problem)
    return upgrade(raw)


def load_raw(path: Path, log=None) -> dict | None:
    """``read_raw`` for a grid's own files: a file that is not a valid raw record named after
    its job is set aside (renamed, with a line naming both paths) and None returned, so its
    job runs again and a stray copy never counts as another seed."""
    try:
        return read_raw(path, named=True)
    except RawFileError as error:
        set_aside(Path(path), str(error), log)
        return None


def raw_files(out_dir: Path, table: str, budget: str, log=None) -> list[dict]:
    """Every valid raw record of ``table`` at ``budget`` (invalid files, and records of
    another table in this table's folder, are set aside)."""
    paths = sorted((Path(out_dir) / "runs" / table).glob(f"*-{budget}.json"))
    raws = []
    for path in paths:
        raw = load_raw(path, log)
        if raw is not None and raw["table"] != table:
            set_aside(path, f"holds a job of table {raw['table']}, not {table}", log)
            continue
        if raw is not None:
            raws.append(raw)
    return raws
