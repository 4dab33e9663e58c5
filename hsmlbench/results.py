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

from hsmlbench import statistics as st
from hsmlbench.paper_reference import CLAIMS, METHOD_LABELS, PUBLISHED

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
        published = PUBLISHED.get((data["table"], method, setting))
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


def summarize(data: dict) -> dict:
    """Cells, paired comparisons (Holm-corrected over the table) and the paper's claims."""
    cells = _cells(data)
    by_key = {(c["method"], c["setting"]): c for c in cells}
    lower_is_better = data.get("lower_is_better", True)
    alternative = "less" if lower_is_better else "greater"
    comparisons, missing = [], []
    for claim in CLAIMS.get(data["table"], ()):
        better, worse = (
            by_key.get((claim.better, claim.setting)),
            by_key.get((claim.worse, claim.setting)),
        )
        if better is None or worse is None:
            missing.append(claim.text)
            continue
        test = st.paired_test(better["per_task"], worse["per_task"], alternative)
        comparisons.append(
            {
                "claim": claim.text,
                "setting": claim.setting,
                "better": claim.better,
                "worse": claim.worse,
                "n": test.n,
                "mean_difference": test.mean_difference,
                "wilcoxon_p": test.wilcoxon_p,
                "t_p": test.t_p,
                "welch_p": st.welch_test(better["seed_means"], worse["seed_means"], alternative),
            }
        )
    for name in ("wilcoxon_p", "t_p"):
        adjusted = st.holm([c[name] for c in comparisons]) if comparisons else []
        for comparison, p in zip(comparisons, adjusted):
            comparison[name + "_holm"] = p
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
    rows = []
    for cell in summary["cells"]:
        rows.append(
            [
                METHOD_LABELS.get(cell["method"], cell["method"]),
                cell["setting"],
                _fmt(cell.get("published"), cell.get("published_ci95")),
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
    lines.append(
        ""
        if not rows
        else tabulate(
            rows,
            headers=[
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
            ],
            tablefmt="github",
            disable_numparse=True,  # keep our formatting (p-values, ± CIs)
        )
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
        lines.append(
            tabulate(
                [
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
                ],
                headers=[
                    "claim",
                    "mean difference",
                    "n",
                    "Wilcoxon p",
                    "Wilcoxon p (Holm)",
                    "paired t p",
                    "paired t p (Holm)",
                    "Welch p (seeds)",
                    "verdict",
                ],
                tablefmt="github",
                disable_numparse=True,
            )
        )
        lines += [
            "",
            "One-sided paired tests on the same test tasks, Holm-corrected over this table's "
            f"comparisons; 'supported' needs both adjusted p < {SIGNIFICANCE}. Welch's test on "
            "per-seed means needs at least two seeds.",
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
