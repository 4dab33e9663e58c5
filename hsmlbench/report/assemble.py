"""A table's JSON from the raw records of its jobs (docs/PROTOCOL.md §6, §7), and the files a
finished grid writes: each table's JSON and markdown, its paper table (markdown and LaTeX), the
full table as LaTeX, its figures and verdict figures, and FINDINGS.md.

Everything here is report code: it reads raw records through ``hsmlbench.results.store`` and
never changes them, so it can change without invalidating a finished job.
"""

from __future__ import annotations

from pathlib import Path

from hsmlbench.atomic import write_json, write_text
from hsmlbench.domains import domain_for
from hsmlbench.report.analysis import summarize
from hsmlbench.report.paper_tables import links_line, write_paper_files
from hsmlbench.report.statistics import mean_ci95
from hsmlbench.report.tables import render_markdown
from hsmlbench.results.schema import DIVERGED, DONE, NOT_RUN
from hsmlbench.results.store import raw_files

EXTENDED = "-extended"  # T1-extended: the paper's table plus registered methods' rows


def assemble_table(
    table: str, budget: str, out_dir: Path, skipped: list[str] | None = None
) -> dict:
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
    if not raws and not skipped:
        raise FileNotFoundError(f"no finished runs of {table} at budget {budget} under {out_dir}")
    done = [r for r in raws if r["status"] == DONE]
    rows = [_row(row, r) for r in done for row in domain.table_rows(r)]
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
        **({"data": raws[0]["data"]} if raws and "data" in raws[0] else {}),
        "budget": {
            "name": b.name,
            "iterations": b.iterations,
            "n_test_tasks": b.n_test_tasks,
            "description": b.description,
        },
        "environment": _environment(raws[-1]) if raws else {},
        "rows": rows,
        "notes": list(spec.notes)
        + _skipped_notes(skipped)
        + _diverged_notes(raws)
        + _not_run_notes(raws, domain, budget)
        + ablation_notes,
        "diverged": [
            {
                k: r.get(k)
                for k in ("method", "setting", "seed", "diverged_at_iteration", "iterations")
            }
            for r in raws
            if r["status"] == DIVERGED
        ],
    }
    if effects:
        data["effects"] = effects
    if table != base:
        data["base_table"] = base
        data["extra_methods"] = {
            m: {"label": _label(m), "baselines": list(spec.methods)}
            | _declared_published(m, base, spec.settings)
            for m in extra_methods
        }
        data["notes"] += _published_notes(data["extra_methods"])
        data["notes"] += _uninstalled_notes(extra_methods)
    data["notes"] += _table_notes(domain.name, done, base)
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
        rows += [_row(row, raw) for row in domain.table_rows(raw)]
        if raw["method"] == "mumomaml" and "per_task_by_step" in raw:
            step1 = raw["per_task_by_step"]["1"]
            rows.append(
                _row(rows[-1] | {"method": "mumomaml-step1", "per_task": step1}, raw)
                | {"wall_time_s": None}
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


def _row(row: dict, raw: dict) -> dict:
    """A table row: the measurements its domain took from ``raw``, the paper's statistics of
    its per-task errors (docs/PROTOCOL.md §5, computed here, never read from the raw file),
    and the code behind it: code version, the commit when the job started, whether
    job-defining files were modified."""
    mean, ci95 = mean_ci95(row["per_task"])
    started = raw.get("provenance", {})
    return row | {
        "n_tasks": len(row["per_task"]),
        "mean": mean,
        "ci95": ci95,
        "code_version": raw.get("code_version"),
        "commit": started.get("commit"),
        "job_code_modified": started.get("job_code_modified"),
    }


def _environment(raw: dict) -> dict:
    """Where the table's last row ran, as its header names it."""
    started = raw.get("provenance", {})
    keys = ("commit", "torch", "python", "device", "host")
    return (
        {k: started.get(k) for k in keys}
        | {"date": (started.get("started") or "")[:10]}
        | ({"code_version": raw["code_version"]} if raw.get("code_version") else {})
    )


def _where_diverged(raw: dict) -> str:
    if raw.get("diverged_at_iteration") is None:
        return "trained, but its test-time adaptation diverged (non-finite test error): " + raw.get(
            "reason", ""
        )
    return (
        f"meta-training diverged (meta-loss not finite at iteration "
        f"{raw['diverged_at_iteration']:,} of {raw.get('iterations') or 0:,}); no test-task errors"
    )


def _skipped_notes(skipped: list[str] | None) -> list[str]:
    """The cells asked for but not run this time, each with why and the command that runs it."""
    if not skipped:
        return []
    return ["Cells skipped in this run (not trained):\n\n" + "\n".join(f"- {s}" for s in skipped)]


def _diverged_notes(raws: list[dict]) -> list[str]:
    """One line per diverged job: which cell and seed, and at which iteration. Its row's
    statistics use the seeds that finished, and the note says so."""
    lines = [
        f"- {r['method']} {r['setting']} seed {r['seed']}: " + _where_diverged(r)
        for r in raws
        if r["status"] == DIVERGED
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
        if r["status"] != NOT_RUN:
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


def write_table(
    table: str,
    budget: str,
    out_dir: Path,
    summaries: dict[str, dict] | None = None,
    skipped: list[str] | None = None,
    companions: bool = False,
) -> tuple[Path, Path]:
    """``<table>.json`` and ``.md``; ``summaries`` (if given) receives the table's analysis;
    ``skipped``: one line per cell of this table that was asked for but not run, and why;
    ``companions``: the markdown links the paper table, LaTeX and verdict figures that
    ``write_paper_files`` writes from the JSON next (``write_reports`` does both)."""
    data = assemble_table(table, budget, out_dir, skipped)
    if summaries is not None:
        summaries[table] = data["summary"]
    json_path, md_path = Path(out_dir) / f"{table}.json", Path(out_dir) / f"{table}.md"
    write_json(json_path, data)
    links = links_line(data, data["summary"]) if companions else ""
    write_text(md_path, render_markdown(data, data["summary"], links))
    return json_path, md_path


def has_extra_methods(table: str, budget: str, out_dir: Path) -> bool:
    """Whether ``table`` has runs of methods other than the paper's (then it also gets
    ``<table>-extended``)."""
    spec = domain_for(table).tables[table]
    return any(raw["method"] not in spec.methods for raw in raw_files(out_dir, table, budget))


def write_reports(
    tables: list[tuple[str, str]], out_dir: Path, log=print, skipped: dict | None = None
) -> list[Path]:
    """After a grid: each (table, budget)'s JSON and markdown (and ``<table>-extended`` when
    other methods ran), its figures, and FINDINGS.md when T1, T2 or the ablations are among
    them, from whatever raw records exist. ``skipped``: job → why it was not run this time
    (named in its table's notes). Returns the files written."""
    from hsmlbench.report.findings import write_findings

    written: list[Path] = []
    summaries: dict[str, dict] = {}  # each table analysed once, FINDINGS.md included
    for table, budget in dict.fromkeys(tables):
        names = [table] + ([table + EXTENDED] if has_extra_methods(table, budget, out_dir) else [])
        files = []
        for name in names:
            try:
                json_path, md_path = write_table(
                    name, budget, out_dir, summaries, _skipped(skipped, table), companions=True
                )
            except FileNotFoundError:  # e.g. only a plugin's runs: no paper-only table
                continue
            # the paper table, both tables as LaTeX and the verdict figures, from the JSON
            files += [json_path, md_path] + write_paper_files(json_path)
        if not files:
            log(f"{table} ({budget}): no finished job, no table written")
            continue
        written += files + _write_figures(table, budget, out_dir)
    if {table for table, _ in tables} & {"T1", "T2", ABLATIONS_TABLE}:
        findings = write_findings(out_dir, summaries)
        written += [findings] if findings else []
    return written


def _table_notes(domain: str, raws: list[dict], table: str) -> list[str]:
    """The notes a table's finished runs support, from its domain's figures module."""
    if domain == "images":
        from hsmlbench.report.image_figures import cluster_note

        first_seed = [r for r in raws if r["seed"] == raws[0]["seed"]] if raws else []
        return [note for note in [cluster_note(first_seed, table)] if note]
    from hsmlbench.report.figures import table_notes

    return table_notes(raws, table)


def _write_figures(table: str, budget: str, out_dir: Path) -> list[Path]:
    if domain_for(table).name == "images":
        from hsmlbench.report.image_figures import write_image_figures

        return write_image_figures(table, budget, out_dir)
    from hsmlbench.report.figures import write_figures

    return write_figures(table, budget, out_dir)


def _skipped(skipped: dict | None, table: str) -> list[str]:
    return [reason for job, reason in (skipped or {}).items() if job.table == table]


def _label(method: str) -> str:
    """How a table names an added method: its registered label, with its ``--set`` settings
    (``Meta-SGD [alpha_max=0.1]``); its own name when its plug-in is not installed here (the
    rows are data; they render without the plug-in's code)."""
    from hsmlbench.methods.registry import get_method

    base, bracket, changed = method.partition("[")
    try:
        label = get_method(base).label or base
    except KeyError:
        label = base
    return f"{label} [{changed}" if bracket else label


def _declared_published(method: str, table: str, settings) -> dict:
    """The published values a plug-in declares for its rows (never with ``--set`` settings,
    which are not what was published), with their source."""
    from hsmlbench.methods.registry import get_method

    if "[" in method:
        return {}
    try:
        declared = get_method(method).published or {}
    except KeyError:
        return {}
    found = {
        s: {
            "mean": declared[(table, s)][0],
            "ci95": declared[(table, s)][1],
            "source": declared[(table, s)][2],
        }
        for s in settings
        if (table, s) in declared
    }
    return {"published": found} if found else {}


def _published_notes(extra: dict) -> list[str]:
    lines = [
        f"- {info['label']} {setting}: {p['mean']} ± {p['ci95']}, from {p['source']}"
        for info in extra.values()
        for setting, p in info.get("published", {}).items()
    ]
    if not lines:
        return []
    return [
        "Published values of added methods, as their plug-ins declare them (compared with our "
        "rows like the paper's values; never part of the paper's claims):\n\n" + "\n".join(lines)
    ]


def _uninstalled_notes(methods: list[str]) -> list[str]:
    """Rows of methods whose plug-in is not installed here: kept as recorded, said so."""
    from hsmlbench.methods.registry import get_method

    missing = []
    for method in methods:
        try:
            get_method(method.partition("[")[0])
        except KeyError:
            missing.append(method)
    if not missing:
        return []
    return [
        f"Rows of {', '.join(missing)} are kept as their raw records hold them; the plug-in "
        "is not installed here, so they are named by their method's name (install it to "
        "re-render them with its label)."
    ]
