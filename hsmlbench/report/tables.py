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

from hsmlbench.report import seed_statistics as ss
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
        threads = torch.get_num_threads()
        cpu = platform.processor() or platform.machine()
        name = f"CPU ({cpu}, {threads} thread{'s' if threads != 1 else ''})"
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


BOOTSTRAP_RESAMPLES = 10_000


def _cells(data: dict) -> list[dict]:
    """One cell per (method, setting): seeds × the same test tasks (a crossed design)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in data["rows"]:
        groups.setdefault((row["method"], row["setting"]), []).append(row)
    cells = []
    for (method, setting), rows in groups.items():
        rows = sorted(rows, key=lambda r: r["seed"])
        errors = np.asarray([r["per_task"] for r in rows], dtype=np.float64)  # [S, T]
        per_task = errors.mean(axis=0)  # seed-averaged, same tasks
        mean, ci95 = st.mean_ci95(per_task)
        seed_means = [r["mean"] for r in rows]
        seed_ci95 = [r.get("ci95", float("nan")) for r in rows]
        seed_mean, seed_half = st.seed_interval(seed_means)
        combined = ss.combined_standard_error(errors)
        interval = ss.crossed_bootstrap(errors, n_resamples=BOOTSTRAP_RESAMPLES, seed=0)
        cell = {
            "method": method,
            "setting": setting,
            "seeds": [r["seed"] for r in rows],
            "seed_means": seed_means,
            "seed_ci95": seed_ci95,
            "n_tasks": len(per_task),
            "mean": mean,
            "ci95": ci95,
            "seed_mean": seed_mean,
            "seed_t95": seed_half,
            "combined_ci95": combined.ci95 if combined.seed_part_known else None,
            "crossed_interval": [interval.low, interval.high] if len(rows) > 1 else None,
            "seed_sensitive": ss.seed_sensitive(seed_means, seed_ci95),
            "per_task": per_task,
            "errors": errors,
            "wall_time_s": [r.get("wall_time_s") for r in rows],
            "meta_step": meta_step_label([r.get("meta_step", "autograd") for r in rows]),
        }
        if len(rows) >= ss.MIN_SEEDS_FOR_MEDIAN:
            cell["seed_median_iqr"] = list(ss.median_iqr(seed_means))
        key = (data.get("base_table", data["table"]), method, setting)
        published = PUBLISHED.get(key)
        if published is None and key in PUBLISHED_SECONDARY:
            published = PUBLISHED_SECONDARY[key]
            cell["published_secondary"] = True
        if published is not None:
            agreement = ss.agreement_with_published(errors, published.mean, published.ci95)
            per_seed = ss.per_seed_agreement(errors, published.mean, published.ci95)
            cell.update(
                published=published.mean,
                published_ci95=published.ci95,
                difference=mean - published.mean,
                agreement_p=agreement.p,
                verdict=agreement.verdict,
                per_seed_verdicts=[a.verdict for a in per_seed],
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
            difference = ss.crossed_bootstrap_difference(
                better["errors"], worse["errors"], n_resamples=BOOTSTRAP_RESAMPLES, seed=0
            )
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
                    "crossed_interval": [difference.low, difference.high],
                    "n_seeds": [len(better["seeds"]), len(worse["seeds"])],
                    "probability_of_improvement": ss.probability_of_improvement(
                        better["seed_means"], worse["seed_means"], lower_is_better
                    ),
                }
            )
        for name in ("wilcoxon_p", "t_p"):
            adjusted = st.holm([c[name] for c in tested]) if tested else []
            for comparison, p in zip(tested, adjusted):
                comparison[name + "_holm"] = p
        comparisons += tested
    for c in comparisons:
        c["verdict"] = claim_verdict(c, lower_is_better)
    effects = _effects(data, by_key)
    for cell in cells:
        cell.pop("per_task")
        cell.pop("errors")
    summary = {"cells": cells, "comparisons": comparisons, "claims_not_testable": missing}
    if effects:
        summary["effects"] = effects
    return summary


EFFECT_RULE = (
    "Each change against the row it varies, on the same test tasks: two-sided paired tests "
    "on the seed-averaged per-task errors, Holm-corrected over the table's changes, and the "
    "crossed 95% interval of the difference (seeds and tasks resampled independently). "
    f"'lower' / 'higher': both adjusted p < {SIGNIFICANCE} and, with two or more seeds a side, "
    "the interval excludes 0; 'no clear effect' otherwise."
)


def _effects(data: dict, by_key: dict) -> list[dict]:
    """The ablations' effects (``data["effects"]``: changed row → the row it varies)."""
    tested = []
    for changed, reference in data.get("effects", {}).items():
        for (method, setting), cell in by_key.items():
            base = by_key.get((reference, setting))
            if method != changed or base is None:
                continue
            test = st.paired_test(cell["per_task"], base["per_task"], "two-sided")
            difference = ss.crossed_bootstrap_difference(
                cell["errors"], base["errors"], n_resamples=BOOTSTRAP_RESAMPLES, seed=0
            )
            tested.append(
                {
                    "change": changed,
                    "reference": reference,
                    "setting": setting,
                    "mean": cell["mean"],
                    "reference_mean": base["mean"],
                    "mean_difference": test.mean_difference,
                    "crossed_interval": [difference.low, difference.high],
                    "n_seeds": [len(cell["seeds"]), len(base["seeds"])],
                    "n": test.n,
                    "wilcoxon_p": test.wilcoxon_p,
                    "t_p": test.t_p,
                }
            )
    for name in ("wilcoxon_p", "t_p"):
        for effect, p in zip(tested, st.holm([e[name] for e in tested]) if tested else []):
            effect[name + "_holm"] = p
    for e in tested:
        low, high = e["crossed_interval"]
        significant = e["wilcoxon_p_holm"] < SIGNIFICANCE and e["t_p_holm"] < SIGNIFICANCE
        if min(e["n_seeds"]) > 1 and low <= 0 <= high:
            significant = False
        e["verdict"] = (
            ("lower" if e["mean_difference"] < 0 else "higher")
            if significant
            else "no clear effect"
        )
    return tested


CLAIM_RULE = (
    "Verdicts: 'supported' when both Holm-adjusted one-sided paired p-values (Wilcoxon and t, "
    f"on the seed-averaged per-task errors) are below {SIGNIFICANCE} and, with two or more "
    "seeds a side, the crossed 95% interval of the difference (seeds and test tasks resampled "
    "independently) lies entirely on the claimed side; 'not supported: not across seeds' when "
    "the paired tests pass but that interval reaches the other side; 'contradicted' when both "
    "unadjusted one-sided p-values exceed 0.975 (the reverse is significant at 0.05 two-sided) "
    "and, with two or more seeds a side, the interval lies entirely on the reverse side; "
    "otherwise 'not supported' (reversed or not, not significant). With one seed a side, "
    "seed-to-seed variance is unknown and the verdict rests on the test tasks alone."
)


def claim_verdict(c: dict, lower_is_better: bool) -> str:
    """The rule in ``CLAIM_RULE``, for one comparison (better − worse, claimed < 0 when lower
    is better)."""
    low, high = c["crossed_interval"]
    if not lower_is_better:  # the claimed side is > 0: flip to the "claimed below 0" frame
        low, high = -high, -low
    seeds_known = min(c["n_seeds"]) > 1
    reversed_ = c["mean_difference"] > 0 if lower_is_better else c["mean_difference"] < 0
    if c["wilcoxon_p_holm"] < SIGNIFICANCE and c["t_p_holm"] < SIGNIFICANCE:
        if seeds_known and high >= 0:
            return "not supported: significant on the tasks, not across seeds"
        return "supported" if seeds_known else "supported (one seed: tasks only)"
    if min(c["wilcoxon_p"], c["t_p"]) > 1 - SIGNIFICANCE / 2:
        if seeds_known and low <= 0:
            return "not supported: reversed on the tasks, not across seeds"
        return "contradicted: significantly reversed in our run" + (
            "" if seeds_known else " (one seed: tasks only)"
        )
    if reversed_:
        return "not supported: reversed in our run, not significant"
    return "not supported: difference not significant"


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
    lines += ["", "## The paper's claims in our run", ""]
    if summary["comparisons"]:
        headers, rows = claims_table(summary)
        lines.append(tabulate(rows, headers, tablefmt="github", disable_numparse=True))
        lines += [
            "",
            "One-sided paired tests on the same test tasks (seed-averaged per-task errors), "
            "Holm-corrected within each family of claims; Welch's test on per-seed means needs "
            "two seeds a side. 'P(better)': the fraction of (seed of the first, seed of the "
            "second) pairs in which the first has the better mean (ties ½). " + CLAIM_RULE,
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
    if not versions:
        env = data.get("environment", {})
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
