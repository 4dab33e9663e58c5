"""A table rendered from its JSON and its analysis (``hsmlbench.report.analysis.summarize``):
GitHub markdown and LaTeX (booktabs), one model of formatted rows for both, and the line that
names the code behind the rows. Nothing here computes a statistic.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from tabulate import tabulate

from hsmlbench.report import latex
from hsmlbench.report import seed_statistics as ss
from hsmlbench.report.analysis import CLAIM_RULE, EFFECT_RULE, summarize
from hsmlbench.report.paper_reference import METHOD_LABELS


def load_table(path: Path) -> dict:
    """A table's JSON, checked enough to render: named in every error (not JSON, nested too
    deep, not a table, a non-finite per-task error, a row given twice)."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no results file at {path}; run `hsmlbench reproduce` first"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); re-run the table") from None
    except RecursionError:
        raise ValueError(f"{path} is nested too deeply to be a table file") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds a JSON {type(data).__name__}: not a hsmlbench table file")
    for key in ("table", "rows", "budget"):
        if key not in data:
            raise ValueError(f"{path} has no {key!r} field: not a hsmlbench table file")
    seen = set()
    for row in data["rows"] if isinstance(data["rows"], list) else []:
        if not isinstance(row, dict) or not isinstance(row.get("per_task"), list):
            raise ValueError(
                f"{path} has a row without per-task errors: not a hsmlbench table file"
            )
        key = (row.get("method"), row.get("setting"), row.get("seed"))
        if key in seen:
            raise ValueError(
                f"{path}: {key[0]} {key[1]} seed {key[2]} has two rows; re-run the table"
            )
        seen.add(key)
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in row["per_task"]):
            raise ValueError(
                f"{path}: {key[0]} {key[1]} seed {key[2]} has per-task errors that are not "
                "finite numbers; re-run the table"
            )
    return data


def _fmt(value: float | None, ci: float | None = None, digits: int = 3) -> str:
    if value is None:
        return "—"
    text = f"{value:.{digits}f}"
    if ci is not None and np.isfinite(ci):
        text += f" ± {ci:.{digits}f}"
    return text


def _fmt_p(p: float) -> str:
    if p is None or not np.isfinite(p):
        return "—"
    if p == 0:
        return "< 1e-300"  # below double precision: scipy returns exactly 0
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


CELL_HEADERS = [
    "method",
    "setting",
    "published",
    "ours (tasks)",
    "ours (seeds × tasks)",
    "seeds",
    "seed means: mean (t 95%)",
    "median [IQR]",
    "ours − published",
    "p (vs published)",
    "agreement",
    "per seed",
    "train time",
    "meta-step",
]
CLAIM_HEADERS = [
    "claim",
    "mean difference",
    "seeds × tasks 95%",
    "P(better) over seed pairs",
    "n",
    "Wilcoxon p (Holm)",
    "paired t p (Holm)",
    "Welch p (seeds)",
    "verdict",
]


def _interval(bounds: list | None) -> str:
    return "—" if bounds is None else f"[{bounds[0]:.3f}, {bounds[1]:.3f}]"


def _per_seed(verdicts: list[str] | None) -> str:
    if not verdicts:
        return "—"
    short = {"consistent": "=", "ours higher": "↑", "ours lower": "↓"}
    return " ".join(short.get(v, v) for v in verdicts)


def _diverged_counts(data: dict) -> dict[tuple[str, str], int]:
    """(method, setting) → how many of its seeds diverged (they have no row)."""
    counts: dict[tuple[str, str], int] = {}
    for run in data.get("diverged", []):
        key = (run["method"], run["setting"])
        counts[key] = counts.get(key, 0) + 1
    return counts


def _seeds(n: int, diverged: int) -> str:
    return f"{n} (+{diverged} diverged)" if diverged else str(n)


def cell_table(data: dict, summary: dict) -> tuple[list[str], list[list]]:
    """The published-vs-ours table as (headers, rows) of formatted strings: one model that
    markdown and LaTeX both render."""
    labels = METHOD_LABELS | {m: i["label"] for m, i in data.get("extra_methods", {}).items()}
    diverged = _diverged_counts(data)
    rows = []
    for cell in summary["cells"]:
        published = _fmt(cell.get("published"), cell.get("published_ci95"))
        several = len(cell["seeds"]) > 1
        median = cell.get("seed_median_iqr")
        rows.append(
            [
                labels.get(cell["method"], cell["method"]),
                cell["setting"],
                published + (" (secondary)" if cell.get("published_secondary") else ""),
                _fmt(cell["mean"], cell["ci95"]) + (" †" if cell.get("seed_sensitive") else ""),
                _interval(cell.get("crossed_interval")),
                _seeds(len(cell["seeds"]), diverged.get((cell["method"], cell["setting"]), 0)),
                _fmt(cell["seed_mean"], cell["seed_t95"]) if several else "—",
                f"{median[0]:.3f} [{median[1]:.3f}, {median[2]:.3f}]" if median else "—",
                _fmt(cell.get("difference")) if "difference" in cell else "—",
                _fmt_p(cell.get("agreement_p")),
                cell.get("verdict", "—"),
                _per_seed(cell.get("per_seed_verdicts")),
                _wall(cell["wall_time_s"]),
                cell.get("meta_step", "autograd"),
            ]
        )
    return CELL_HEADERS, rows


def claims_table(summary: dict) -> tuple[list[str], list[list]]:
    """The claims table as (headers, rows) of formatted strings."""
    rows = [
        [
            c["claim"],
            _fmt(c["mean_difference"]),
            _interval(c.get("crossed_interval")) if min(c.get("n_seeds", [1])) > 1 else "—",
            _fmt(c.get("probability_of_improvement"), digits=2)
            if min(c.get("n_seeds", [1])) > 1
            else "—",
            c["n"],
            _fmt_p(c["wilcoxon_p_holm"]),
            _fmt_p(c["t_p_holm"]),
            _fmt_p(c["welch_p"]),
            c["verdict"],
        ]
        for c in summary["comparisons"]
    ]
    return CLAIM_HEADERS, rows


def effects_table(data: dict, summary: dict) -> tuple[list[str], list[list]]:
    """The ablations' effects as (headers, rows) of formatted strings."""
    labels = METHOD_LABELS
    diverged = _diverged_counts(data)
    rows = [
        [
            e["change"],
            labels.get(e["reference"], e["reference"]),
            e["setting"],
            _fmt(e["mean"]),
            _fmt(e["reference_mean"]),
            _fmt(e["mean_difference"]),
            _interval(e["crossed_interval"]) if min(e["n_seeds"]) > 1 else "—",
            _seeds(e["n_seeds"][0], diverged.get((e["change"], e["setting"]), 0))
            + f"×{e['n_seeds'][1]}",
            _fmt_p(e["wilcoxon_p_holm"]),
            _fmt_p(e["t_p_holm"]),
            e["verdict"],
        ]
        for e in summary["effects"]
    ]
    headers = [
        "change",
        "compared with",
        "setting",
        "MSE",
        "its reference",
        "difference",
        "seeds × tasks 95%",
        "seeds",
        "Wilcoxon p (Holm)",
        "paired t p (Holm)",
        "effect",
    ]
    return headers, rows


CELL_NOTES = (
    f"Intervals. 'ours (tasks)': {ss.INTERVAL_NOTES['test_task_ci']} It is computed on the "
    "seed-averaged per-task errors and is the interval comparable to the paper's. 'ours (seeds "
    f"× tasks)': {ss.INTERVAL_NOTES['crossed_bootstrap']} 'seed means': "
    f"{ss.INTERVAL_NOTES['seed_interval']} Median [IQR] of the seed means is shown with "
    f"{ss.MIN_SEEDS_FOR_MEDIAN} or more seeds.",
    f"Agreement: {ss.AGREEMENT_RULE} Our standard error combines both sources of variance: "
    f"{ss.INTERVAL_NOTES['combined']} With one seed only the test-task part is known. 'per "
    f"seed': {ss.PER_SEED_AGREEMENT_RULE} (= consistent, ↑ ours higher, ↓ ours lower, in seed "
    "order).",
    f"† seed-sensitive: {ss.SEED_SENSITIVE_RULE}",
    "Meta-step: 'fast' (explicit inner-loop gradients, compiled) or 'autograd' (double "
    "backward); both compute the same second-order meta-gradient and differ only by "
    "floating-point rounding.",
)


def render_latex(data: dict, summary: dict | None = None) -> str:
    """The full analysis as LaTeX from the same table model as the markdown: each table in a
    ``table*`` of booktabs tabulars, its columns split into groups that each fit a two-column
    paper's text width (every group repeats the columns that name a row). Plain ASCII; needs
    ``\\usepackage{booktabs}`` only. ``summary``: the table's analysis if already computed (else
    computed here). The paper's own layout is ``hsmlbench.report.paper_tables``."""
    summary = summary if summary is not None else summarize(data)
    budget = data["budget"]
    seeds = sorted({r["seed"] for r in data["rows"]})
    where = (
        f"budget {budget['name']} ({budget['iterations']:,} iterations, "
        f"{budget['n_test_tasks']:,} test tasks"
        + ("" if budget["name"] == "paper" else "; NOT the paper budget")
        + f"), seeds {', '.join(map(str, seeds)) or 'none'}; {code_versions_line(data)}"
    )
    name = data["table"]
    parts = [f"% Generated by hsmlbench from {name}.json; do not edit by hand.", latex.HEADER]
    tables = [
        (
            f"{name}: {data.get('title', '')}; {where}. Columns are split into groups; each "
            "group repeats method and setting.",
            cell_table(data, summary),
            2,
            f"tab:{name}-analysis",
        ),
        (
            f"{name}: effect of each change (two-sided paired tests, Holm-corrected).",
            effects_table(data, summary) if summary.get("effects") else ([], []),
            3,
            f"tab:{name}-effects",
        ),
        (
            f"{name}: the claims (and added comparisons), one-sided paired tests on the same "
            "test tasks, Holm-corrected within each family.",
            claims_table(summary),
            1,
            f"tab:{name}-claims",
        ),
    ]
    for caption, (headers, rows), keep, label in tables:
        if not rows:
            continue
        wrapped = {j for j, header in enumerate(headers) if header in _WRAPPED}
        bodies = []
        for group in latex.split_columns(
            headers, rows, keep, fixed_pt={j: _WRAPPED_PT for j in wrapped}
        ):
            align = "l" * keep + "".join(
                f"p{{{_WRAPPED_PT}pt}}" if j in wrapped else "l" for j in group[keep:]
            )
            bodies.append(
                latex.tabular(
                    [latex.escape(headers[j]) for j in group],
                    [
                        [(latex.ragged if j in wrapped else latex.escape)(row[j]) for j in group]
                        for row in rows
                    ],
                    align,
                )
            )
        body = "\\setlength{\\tabcolsep}{4pt}\n" + "\n\\par\\medskip\n".join(bodies)
        parts.append(latex.table_float(latex.escape(caption), body, label, size="footnotesize"))
    return "\n".join(parts) + "\n"


# long text columns that wrap in LaTeX instead of widening the table, and their width
_WRAPPED = {"verdict"}
_WRAPPED_PT = 130


def code_versions_line(data: dict) -> str:
    """The code version(s) behind the rows, without their commits (the full table lists them)."""
    versions = list(dict.fromkeys(r.get("code_version") or "unrecorded" for r in data["rows"]))
    if not versions:
        return f"commit {data.get('environment', {}).get('commit', '?')}"
    return ("code version " if len(versions) == 1 else "code versions ") + ", ".join(versions)


def render_markdown(data: dict, summary: dict | None = None, links: str = "") -> str:
    """The table as GitHub markdown: published vs ours, tests, claims, provenance.
    ``summary``: the table's analysis if already computed (else computed here); ``links``: a
    line linking the files written beside it (paper table, LaTeX, figures), under the title."""
    summary = summary if summary is not None else summarize(data)
    budget, env = data["budget"], data.get("environment", {})
    metric = data.get("metric", "MSE")
    seeds = sorted({r["seed"] for r in data["rows"]})
    lines = [
        f"# {data['table']}: {data.get('title', '')}",
        "",
        f"Generated by `hsmlbench` from `{data['table']}.json`; do not edit by hand.",
        *(["", links] if links else []),
        "",
        f"- Budget: **{budget['name']}** ({budget['iterations']:,} meta-training iterations, "
        f"{budget['n_test_tasks']:,} test tasks"
        + (f"; {budget['description']}" if budget.get("description") else "")
        + f"){'' if budget['name'] == 'paper' else ' — NOT the paper budget'}",
        f"- Seeds: {', '.join(map(str, seeds)) or 'none (no cell has run)'}; every method is "
        "evaluated on the same test tasks",
        f"- Code: {provenance_line(data)}; torch {env.get('torch', '?')}, "
        f"device: {env.get('device', '?')}, {env.get('date', '')}",
        f"- Metric: {metric} ({'lower' if data.get('lower_is_better', True) else 'higher'} is "
        "better); ± is the paper's 95% CI over test tasks (1.96·std/√n), other intervals below",
        "",
        "## Published vs ours",
        "",
    ]
    if not summary["cells"]:
        lines.append("No cell of this table has run at this budget: see the notes below.")
    headers, rows = cell_table(data, summary)
    lines.append(
        "" if not rows else tabulate(rows, headers, tablefmt="github", disable_numparse=True)
    )
    for note in CELL_NOTES:
        lines += ["", note]
    if summary.get("effects"):
        lines += ["", "## Effect of each change", ""]
        headers, rows = effects_table(data, summary)
        lines.append(tabulate(rows, headers, tablefmt="github", disable_numparse=True))
        lines += ["", EFFECT_RULE]
    if not summary["comparisons"] and not summary["claims_not_testable"]:
        for note in data.get("notes", []):
            lines += ["", note]
        return "\n".join(lines) + "\n"
    paper = [c for c in summary["comparisons"] if c.get("family", "paper") == "paper"]
    added = [c for c in summary["comparisons"] if c.get("family", "paper") != "paper"]
    tests_rule = (
        "One-sided paired tests on the same test tasks (seed-averaged per-task errors), "
        "Holm-corrected within each family; Welch's test on per-seed means needs two seeds a "
        "side. 'P(better)': the fraction of (seed of the first, seed of the second) pairs in "
        "which the first has the better mean (ties ½). " + CLAIM_RULE
    )
    if paper or summary["claims_not_testable"]:
        lines += ["", "## The paper's claims in our run", ""]
    if paper:
        headers, rows = claims_table({"comparisons": paper})
        lines.append(tabulate(rows, headers, tablefmt="github", disable_numparse=True))
        lines += ["", tests_rule]
    if added:
        lines += ["", "## Added comparisons (not claims of the paper)", ""]
        headers, rows = claims_table({"comparisons": added})
        lines.append(tabulate(rows, headers, tablefmt="github", disable_numparse=True))
        lines += [
            "",
            "Each added method against every paper method, as 'added better than paper "
            "method': nobody claimed these, so a verdict here says how the two compare in our "
            "run, not whether a claim holds. Each added method is its own Holm family, so the "
            "paper's claims keep the p-values of the paper's table. The verdicts use the same "
            "rule as the claims. '(secondary)': a published value not from the poster "
            "(its source is in the notes).",
        ]
        if not paper:
            lines += ["", tests_rule]
    if summary["claims_not_testable"]:
        lines += [
            "",
            "Not testable in this run (a method has no finished run; the notes say why):",
            "",
        ]
        lines += [f"- {text}" for text in summary["claims_not_testable"]]
    for note in data.get("notes", []):
        lines += ["", note]
    return "\n".join(lines) + "\n"


def provenance_line(data: dict) -> str:
    """Which code produced the rows: each distinct code version with its commit(s) and row
    count, and whether any row ran with job-defining files modified from its commit."""
    versions: dict[str, set] = {}
    counts: dict[str, int] = {}
    modified = 0
    for row in data["rows"]:
        version = row.get("code_version") or "unrecorded"
        versions.setdefault(version, set()).add(row.get("commit") or "?")
        counts[version] = counts.get(version, 0) + 1
        modified += bool(row.get("job_code_modified"))
    if not versions:  # no row ran: the code that recorded why
        env = data.get("environment", {})
        if env.get("code_version"):
            return f"no row; recorded by code version {env['code_version']} (commit {env.get('commit', '?')})"
        return f"commit {env.get('commit', '?')}"
    parts = [
        f"code version {v} (commit {', '.join(sorted(c))}; {counts[v]} rows)"
        for v, c in versions.items()
    ]
    text = "; ".join(parts)
    if modified:
        text += f"; {modified} rows ran with job-defining files modified from their commit"
    return text


def _wall(times: list) -> str:
    times = [t for t in times if t is not None]
    if not times:
        return "—"
    mean = sum(times) / len(times)
    return f"{mean / 60:.1f} min" if mean >= 60 else f"{mean:.0f} s"
