"""The analysis of a table (docs/PROTOCOL.md §6, §7): per cell, our statistics and the
agreement with the published value; per claim of the paper (and per added method), paired
tests with Holm's correction and the crossed seeds × tasks interval; the ablations' effects.

``summarize`` is computed once per table by ``hsmlbench.report.assemble`` and stored in the
table's JSON; the renderers (``hsmlbench.report.tables``) only format it.
"""

from __future__ import annotations

import numpy as np

from hsmlbench.report import seed_statistics as ss
from hsmlbench.report import statistics as st
from hsmlbench.report.paper_reference import (
    CLAIMS,
    PUBLISHED,
    PUBLISHED_SECONDARY,
    Claim,
    Published,
)

SIGNIFICANCE = 0.05
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
        seed_means, seed_ci95 = map(list, zip(*(st.mean_ci95(r["per_task"]) for r in rows)))
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
        declared = data.get("extra_methods", {}).get(method, {}).get("published", {})
        if published is None and setting in declared:  # a plug-in's own, its source in notes
            published = Published(declared[setting]["mean"], declared[setting]["ci95"])
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
