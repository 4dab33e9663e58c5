"""Statistics for comparing runs with each other and with the paper (docs/PROTOCOL.md §5, §6;
the ablations' effects use the same paired tests, §7).

- ``mean_ci95``: the paper's interval, mean ± 1.96·std/√n (population std) over test tasks.
  It covers test-task sampling only (docs/PROTOCOL.md §5).
- ``seed_interval``: across-seed mean ± Student-t interval (seed-to-seed variance).
- ``paired_test``: two methods on the same test tasks: Wilcoxon signed-rank and paired t.
- ``holm``: Holm-Bonferroni adjustment over a table's comparisons.
- ``welch_test``: two methods' per-seed means.
- ``agreement_with_published``: is our mean within what both CIs allow (two-sided z-test).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

Z95 = 1.96  # the paper's 95% interval: mean ± 1.96·std/√n (population std)


def mean_ci95(values) -> tuple[float, float]:
    """Mean and 1.96·std/√n with the population std (ddof=0), as the paper computes it."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("mean_ci95 of an empty array")
    return float(x.mean()), float(Z95 * x.std(ddof=0) / math.sqrt(x.size))


def seed_interval(seed_means, confidence: float = 0.95) -> tuple[float, float]:
    """Across-seed mean ± t-interval half-width (nan for a single seed)."""
    x = np.asarray(seed_means, dtype=np.float64)
    mean = float(x.mean())
    if x.size < 2:
        return mean, float("nan")
    t = stats.t.ppf(0.5 + confidence / 2, df=x.size - 1)
    return mean, float(t * x.std(ddof=1) / math.sqrt(x.size))


@dataclass(frozen=True)
class PairedTest:
    n: int
    mean_difference: float  # mean(a − b)
    wilcoxon_p: float
    t_p: float
    alternative: str  # "less": the claim is a < b; "greater": a > b; "two-sided"


def paired_test(a, b, alternative: str = "less") -> PairedTest:
    """Wilcoxon signed-rank and paired t-test of a against b on the same tasks."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired test needs the same tasks: shapes {a.shape} and {b.shape}")
    diff = a - b
    if np.all(diff == 0):
        return PairedTest(a.size, 0.0, 1.0, 1.0, alternative)
    wilcoxon_p = float(stats.wilcoxon(a, b, alternative=alternative).pvalue)
    t_p = float(stats.ttest_rel(a, b, alternative=alternative).pvalue)
    return PairedTest(a.size, float(diff.mean()), wilcoxon_p, t_p, alternative)


def holm(p_values) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order."""
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, (m - rank) * p[index])
        adjusted[index] = min(1.0, running)
    return adjusted.tolist()


def welch_test(a_seed_means, b_seed_means, alternative: str = "less") -> float:
    """Welch's t-test p-value on per-seed means (nan with fewer than 2 seeds a side)."""
    a, b = np.asarray(a_seed_means, float), np.asarray(b_seed_means, float)
    if a.size < 2 or b.size < 2:
        return float("nan")
    return float(stats.ttest_ind(a, b, equal_var=False, alternative=alternative).pvalue)


@dataclass(frozen=True)
class Agreement:
    difference: float  # ours − published
    z: float
    p: float

    @property
    def verdict(self) -> str:
        if self.p >= 0.05:
            return "consistent"
        return "ours higher" if self.difference > 0 else "ours lower"


def agreement_with_published(
    ours_mean: float, ours_ci95: float, published_mean: float, published_ci95: float | None
) -> Agreement:
    """Two-sided z-test of ours − published, each CI read as 1.96 standard errors.

    Without a published CI only our standard error enters (the test is then optimistic).
    """
    se = math.hypot(ours_ci95 / Z95, (published_ci95 or 0.0) / Z95)
    diff = ours_mean - published_mean
    if se == 0:
        return Agreement(diff, math.inf if diff else 0.0, 0.0 if diff else 1.0)
    z = diff / se
    return Agreement(diff, z, float(2 * stats.norm.sf(abs(z))))


def cluster_structure(level1: np.ndarray, family: np.ndarray, families: tuple[str, ...]) -> dict:
    """How well HSML's level-1 clusters separate the task families, over the test tasks.

    ``level1`` [T, K]: each task's soft assignment; ``family`` [T]: its family index.
    - ``nmi``: normalized mutual information between the family and the task's most weighted
      cluster, I(F; C) / ((H(F) + H(C)) / 2): 1 when each family has clusters of its own, 0
      when the cluster says nothing about the family (sklearn's default normalization).
    - ``top_weight``: per family, the largest entry of its mean assignment (1/K: no preference).
    - ``top_cluster``: per family, that cluster (1-based, as the figures number them).
    """
    level1, family = np.asarray(level1, dtype=float), np.asarray(family)
    cluster = level1.argmax(axis=1)
    joint = np.zeros((int(family.max()) + 1, level1.shape[1]))
    np.add.at(joint, (family, cluster), 1.0)
    joint /= joint.sum()
    p_family, p_cluster = joint.sum(1), joint.sum(0)

    def entropy(p: np.ndarray) -> float:
        p = p[p > 0]
        return float(-(p * np.log(p)).sum())

    nz = joint > 0
    mutual = float((joint[nz] * np.log(joint[nz] / np.outer(p_family, p_cluster)[nz])).sum())
    denominator = (entropy(p_family) + entropy(p_cluster)) / 2
    nmi = mutual / denominator if denominator > 0 else 1.0
    top_weight, top_cluster = {}, {}
    for index, name in enumerate(families):
        rows = level1[family == index]
        if len(rows):
            mean = rows.mean(axis=0)
            top_weight[name], top_cluster[name] = float(mean.max()), int(mean.argmax()) + 1
    return {"nmi": max(0.0, min(1.0, nmi)), "top_weight": top_weight, "top_cluster": top_cluster}
