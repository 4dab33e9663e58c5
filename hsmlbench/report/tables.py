"""Result data and its rendering: raw per-task errors in JSON, markdown rendered from it.

A table's JSON holds ``rows`` (one per method × setting × seed, with every per-task error of
the headline metric) plus metadata; the statistics and the markdown are derived from the rows,
so a table can always be re-rendered from its JSON (``hsmlbench report``).
"""

from __future__ import annotations

import json
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from tabulate import tabulate

from hsmlbench.report import statistics as st
from hsmlbench.report.paper_reference import (
    CLAIMS,
    METHOD_LABELS,
    PUBLISHED,
    PUBLISHED_SECONDARY,
    Claim,
)

SIGNIFICANCE = 0.05


def environment_info(device: str = "cpu") -> dict:
    """Where a run happened: commit, versions, device (named in every table header)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent,
            check=True,
        ).stdout.strip()
        commit += "+dirty" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    if device == "cpu":
        name = (
            f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
        )
    else:
        name = torch.cuda.get_device_name(torch.device(device))
    return {
        "commit": commit,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": name,
        "host": platform.node(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
    }


def load_table(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no results file at {path}; run `hsmlbench reproduce` first"
        ) from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); re-run the table") from None
    for key in ("table", "rows", "budget"):
        if key not in data:
            raise ValueError(f"{path} has no {key!r} field: not a hsmlbench table file")
    return data


def _cells(data: dict) -> list[dict]:
    """One cell per (method, setting): seeds pooled on the same tasks."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in data["rows"]:
        groups.setdefault((row["method"], row["setting"]), []).append(row)
    cells = []
    for (method, setting), rows in groups.items():
        rows = sorted(rows, key=lambda r: r["seed"])
        per_task = np.mean([r["per_task"] for r in rows], axis=0)  # seed-averaged, same tasks
        mean, ci95 = st.mean_ci95(per_task)
        seed_mean, seed_half = st.seed_interval([r["mean"] for r in rows])
        cell = {
            "method": method,
            "setting": setting,
            "seeds": [r["seed"] for r in rows],
            "seed_means": [r["mean"] for r in rows],
            "n_tasks": len(per_task),
            "mean": mean,
            "ci95": ci95,
            "seed_mean": seed_mean,
            "seed_ci95": seed_half,
            "per_task": per_task,
            "wall_time_s": [r.get("wall_time_s") for r in rows],
            "meta_step": meta_step_label([r.get("meta_step", "autograd") for r in rows]),
        }
        key = (data.get("base_table", data["table"]), method, setting)
        published = PUBLISHED.get(key)
        if published is None and key in PUBLISHED_SECONDARY:
            published = PUBLISHED_SECONDARY[key]
            cell["published_secondary"] = True
        if published is not None:
            agreement = st.agreement_with_published(mean, ci95, published.mean, published.ci95)
            cell.update(
                published=published.mean,
                published_ci95=published.ci95,
                difference=agreement.difference,
                agreement_p=agreement.p,
                verdict=agreement.verdict,
            )
        cells.append(cell)
    return cells


def meta_step_label(paths: list[str]) -> str:
    """Which meta-step produced a cell's seeds ("fast" / "autograd"); rows written before the
    field existed were autograd. A cell whose seeds differ says so instead of hiding it."""
    kinds = [path.split(",")[0] for path in paths]
    if len(set(kinds)) == 1:
        return kinds[0]
    return "mixed: " + ", ".join(f"{k} ×{kinds.count(k)}" for k in sorted(set(kinds)))


def claim_families(data: dict) -> list[tuple[str, tuple[Claim, ...]]]:
    """The table's families of claims, each Holm-corrected on its own: the paper's claims, then
    one family per added method (that method better than each paper method, every setting)."""
    base = data.get("base_table", data["table"])
    families = [("paper", CLAIMS.get(base, ()))]
    settings = list(dict.fromkeys(row["setting"] for row in data["rows"]))
    for method, info in data.get("extra_methods", {}).items():
        families.append(
            (
                method,
                tuple(
                    Claim(base, setting, method, baseline)
                    for setting in settings
                    for baseline in info["baselines"]
                ),
            )
        )
    return families


def summarize(data: dict) -> dict:
    """Cells, paired comparisons (Holm-corrected within each family of claims) and claims."""
    cells = _cells(data)
    by_key = {(c["method"], c["setting"]): c for c in cells}
    lower_is_better = data.get("lower_is_better", True)
    alternative = "less" if lower_is_better else "greater"
    comparisons, missing = [], []
    for family, claims in claim_families(data):
        tested = []
        for claim in claims:
            better, worse = (
                by_key.get((claim.better, claim.setting)),
                by_key.get((claim.worse, claim.setting)),
            )
            if better is None or worse is None:
                if family == "paper":
                    missing.append(claim.text)
                continue
            test = st.paired_test(better["per_task"], worse["per_task"], alternative)
            tested.append(
                {
                    "claim": claim.text,
                    "family": family,
                    "setting": claim.setting,
                    "better": claim.better,
                    "worse": claim.worse,
                    "n": test.n,
                    "mean_difference": test.mean_difference,
                    "wilcoxon_p": test.wilcoxon_p,
                    "t_p": test.t_p,
                    "welch_p": st.welch_test(
                        better["seed_means"], worse["seed_means"], alternative
                    ),
                }
            )
        for name in ("wilcoxon_p", "t_p"):
            adjusted = st.holm([c[name] for c in tested]) if tested else []
            for comparison, p in zip(tested, adjusted):
                comparison[name + "_holm"] = p
        comparisons += tested
    for c in comparisons:
        reversed_ = c["mean_difference"] > 0 if lower_is_better else c["mean_difference"] < 0
        if c["wilcoxon_p_holm"] < SIGNIFICANCE and c["t_p_holm"] < SIGNIFICANCE:
            c["verdict"] = "supported"
        elif min(c["wilcoxon_p"], c["t_p"]) > 1 - SIGNIFICANCE / 2:
            # each one-sided p of the claimed direction above 0.975: the opposite direction is
            # significant at 0.05 two-sided (unadjusted)
            c["verdict"] = "contradicted: significantly reversed in our run"
        elif reversed_:
            c["verdict"] = "not supported: reversed in our run, not significant"
        else:
            c["verdict"] = "not supported: difference not significant"
    for cell in cells:
        cell.pop("per_task")
    return {"cells": cells, "comparisons": comparisons, "claims_not_testable": missing}


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
    "ours",
    "ours − published",
    "n tasks",
    "seeds",
    "across seeds (t 95%)",
    "p (z-test vs published)",
    "agreement",
    "train time",
    "meta-step",
]
CLAIM_HEADERS = [
    "claim",
    "mean difference",
    "n",
    "Wilcoxon p",
    "Wilcoxon p (Holm)",
    "paired t p",
    "paired t p (Holm)",
    "Welch p (seeds)",
    "verdict",
]


def cell_table(data: dict, summary: dict) -> tuple[list[str], list[list]]:
    """The published-vs-ours table as (headers, rows) of formatted strings: one model that
    markdown and LaTeX both render."""
    labels = METHOD_LABELS | {m: i["label"] for m, i in data.get("extra_methods", {}).items()}
    rows = []
    for cell in summary["cells"]:
        published = _fmt(cell.get("published"), cell.get("published_ci95"))
        rows.append(
            [
                labels.get(cell["method"], cell["method"]),
                cell["setting"],
                published + (" (secondary)" if cell.get("published_secondary") else ""),
                _fmt(cell["mean"], cell["ci95"]),
                _fmt(cell.get("difference")) if "difference" in cell else "—",
                cell["n_tasks"],
                len(cell["seeds"]),
                _fmt(cell["seed_mean"], cell["seed_ci95"]) if len(cell["seeds"]) > 1 else "—",
                _fmt_p(cell.get("agreement_p")),
                cell.get("verdict", "—"),
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
            c["n"],
            _fmt_p(c["wilcoxon_p"]),
            _fmt_p(c["wilcoxon_p_holm"]),
            _fmt_p(c["t_p"]),
            _fmt_p(c["t_p_holm"]),
            _fmt_p(c["welch_p"]),
            c["verdict"],
        ]
        for c in summary["comparisons"]
    ]
    return CLAIM_HEADERS, rows


def render_latex(data: dict) -> str:
    """The table's two tables as LaTeX (booktabs), from the same model as the markdown: paste
    into a paper with ``\\usepackage{booktabs}``. tabulate escapes $ _ & % and the like."""
    summary = summarize(data)
    budget = data["budget"]
    seeds = sorted({r["seed"] for r in data["rows"]})
    where = (
        f"budget {budget['name']} ({budget['iterations']:,} iterations, "
        f"{budget['n_test_tasks']:,} test tasks), seeds {', '.join(map(str, seeds))}"
    )
    parts = [f"% Generated by hsmlbench from {data['table']}.json; do not edit by hand."]
    for caption, (headers, rows) in (
        (f"{data['table']}: {data.get('title', '')}; {where}.", cell_table(data, summary)),
        (
            f"{data['table']}: the claims, one-sided paired tests on the same test tasks, "
            "Holm-corrected within each family.",
            claims_table(summary),
        ),
    ):
        if not rows:
            continue
        body = tabulate(rows, headers, tablefmt="latex_booktabs", disable_numparse=True)
        for symbol, math in _LATEX_MATH.items():  # after tabulate's escaping of $
            body = body.replace(symbol, math)
        parts += [
            "\\begin{table}[t]",
            "\\centering",
            "\\small",
            f"\\caption{{{_latex_caption(caption)}}}",
            body,
            "\\end{table}",
        ]
    return "\n".join(parts) + "\n"


_LATEX_SPECIAL = {
    "\\": "\\textbackslash{}",
    "&": "\\&",
    "%": "\\%",
    "$": "\\$",
    "#": "\\#",
    "_": "\\_",
    "{": "\\{",
    "}": "\\}",
    "~": "\\textasciitilde{}",
    "^": "\\textasciicircum{}",
}


_LATEX_MATH = {"±": "$\\pm$", "−": "$-$", "×": "$\\times$", "<": "$<$", "√": "$\\surd$"}


def _latex_caption(text: str) -> str:
    return "".join(_LATEX_MATH.get(char) or _LATEX_SPECIAL.get(char, char) for char in text)


def render_markdown(data: dict) -> str:
    """The table as GitHub markdown: published vs ours, tests, claims, provenance."""
    summary = summarize(data)
    budget, env = data["budget"], data.get("environment", {})
    metric = data.get("metric", "MSE")
    seeds = sorted({r["seed"] for r in data["rows"]})
    lines = [
        f"# {data['table']}: {data.get('title', '')}",
        "",
        f"Generated by `hsmlbench` from `{data['table']}.json`; do not edit by hand.",
        "",
        f"- Budget: **{budget['name']}** ({budget['iterations']:,} meta-training iterations, "
        f"{budget['n_test_tasks']:,} test tasks){'' if budget['name'] == 'paper' else ' — NOT the paper budget'}",
        f"- Seeds: {', '.join(map(str, seeds)) or 'none (no cell has run)'}; every method is "
        "evaluated on the same test tasks",
        f"- Commit {env.get('commit', '?')}, torch {env.get('torch', '?')}, "
        f"device: {env.get('device', '?')}, {env.get('date', '')}",
        f"- Metric: {metric} ({'lower' if data.get('lower_is_better', True) else 'higher'} is "
        "better); ± is the paper's 95% CI over test tasks (1.96·std/√n)",
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
    lines += [
        "",
        "Agreement: a two-sided z-test of the difference, each CI read as 1.96 standard errors; "
        "'consistent' means p ≥ 0.05. The CIs cover test-task sampling only; seed-to-seed "
        "variance is larger (docs/PROTOCOL.md §5). Meta-step: 'fast' (explicit inner-loop "
        "gradients, compiled) or 'autograd' (double backward); both compute the same "
        "second-order meta-gradient and differ only by floating-point rounding.",
        "",
        "## The paper's claims in our run",
        "",
    ]
    if summary["comparisons"]:
        headers, rows = claims_table(summary)
        lines.append(tabulate(rows, headers, tablefmt="github", disable_numparse=True))
        lines += [
            "",
            "One-sided paired tests on the same test tasks, Holm-corrected over this table's "
            f"comparisons; 'supported' needs both adjusted p < {SIGNIFICANCE}. Welch's test on "
            "per-seed means needs at least two seeds.",
        ]
        if data.get("extra_methods"):
            lines += [
                "",
                "Rows of added methods: each is tested against every paper method in its own "
                "Holm family, so the paper's claims keep the p-values of the paper's table. "
                "'(secondary)': a value the paper reports for that method, recalled from its "
                "full table (not the poster) and not verified against the PDF.",
            ]
    if summary["claims_not_testable"]:
        lines += ["", "Not testable in this run (a method was not run):", ""]
        lines += [f"- {text}" for text in summary["claims_not_testable"]]
    for note in data.get("notes", []):
        lines += ["", note]
    return "\n".join(lines) + "\n"


def _wall(times: list) -> str:
    times = [t for t in times if t is not None]
    if not times:
        return "—"
    mean = sum(times) / len(times)
    return f"{mean / 60:.1f} min" if mean >= 60 else f"{mean:.0f} s"
