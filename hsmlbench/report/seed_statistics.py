"""Intervals and comparisons for a table cell trained with several seeds (docs/PROTOCOL.md §6).

A cell is one method at one setting, trained with S seeds (S = 1..5) and each trained model
evaluated on the same fixed set of T test tasks (one evaluation seed shared by every training
seed and every method). Its data is therefore a matrix ``errors[S, T]`` of per-task errors (MSE,
or accuracy for the image tables) in a *crossed* design: seeds and test tasks are two
independent sources of variation, and neither is nested in the other.

The paper's interval (mean ± 1.96·std/√T over test tasks) covers only the second source. The
functions here also account for the first one:

- ``crossed_bootstrap``: percentile interval, seeds and tasks resampled independently.
- ``crossed_bootstrap_difference``: the same for mean(a) − mean(b), two cells that share the
  test tasks (one task resample for both) but were trained with independent seeds.
- ``probability_of_improvement``: P(A better than B) over seed pairs (Mann-Whitney form).
- ``combined_standard_error``: standard error of the grand mean from both variance sources.
- ``agreement_with_published`` / ``per_seed_agreement``: z-test against a published value.
- ``seed_sensitive``: the per-seed means differ by more than the test-task CI.
- ``median_iqr``: median and interquartile range of the per-seed means (≥ 5 seeds).

Only numpy, scipy and ``statistics`` are used.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from hsmlbench.report.statistics import Z95  # the published CIs are 1.96·std/√n half-widths

MIN_SEEDS_FOR_MEDIAN = 5  # below this a median and quartiles of seed means say little
_CHUNK_ELEMENTS = 1 << 22  # index entries drawn at once (≈ 32 MiB of int64)

SEED_SENSITIVE_RULE = (
    "A cell is marked seed-sensitive when its per-seed means differ (max − min) by more than "
    "the largest per-seed 95% test-task CI half-width."
)

INTERVAL_NOTES = {
    "test_task_ci": (
        "mean ± 1.96·std/√T over the test tasks (population std), as the paper reports it: "
        "covers only which test tasks were drawn, for one trained model, not retraining."
    ),
    "seed_interval": (
        "mean of the per-seed means ± Student-t half-width over seeds: covers retraining with "
        "another seed, on this fixed set of test tasks."
    ),
    "combined": (
        "mean ± 1.96·√(var(seed means)/S + var(task means)/T): covers both retraining and a "
        "new draw of test tasks (crossed design; slightly conservative)."
    ),
    "crossed_bootstrap": (
        "percentile interval from resampling seeds and test tasks independently: covers both "
        "retraining and a new draw of test tasks; too narrow with few seeds, since it cannot "
        "see more seed spread than the seeds at hand show."
    ),
}

AGREEMENT_RULE = (
    "Two-sided z-test of our mean against the published one, the two standard errors combined "
    "in quadrature (a 95% CI read as 1.96 standard errors; no published CI: ours alone): "
    "'consistent' when p ≥ 0.05, otherwise 'ours higher' or 'ours lower'."
)

PER_SEED_AGREEMENT_RULE = (
    "The same z-test for each seed on its own, with that seed's test-task standard error "
    "(population std/√T, as the paper computes its CI)."
)


# --------------------------------------------------------------------------- validation


def _as_errors(errors, name: str = "errors") -> np.ndarray:
    """The [S, T] matrix as float64, or a ValueError that says what is wrong with it."""
    x = np.asarray(errors, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D [seeds, test tasks], got shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"{name} is empty (shape {x.shape}): need at least 1 seed and 1 task")
    if np.isnan(x).any():
        raise ValueError(f"{name} contains NaN values ({int(np.isnan(x).sum())} of {x.size})")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains infinite values")
    return x


def _as_vector(values, name: str) -> np.ndarray:
    """A non-empty 1-D float64 vector without NaN, or a ValueError."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"{name} is empty")
    if np.isnan(x).any():
        raise ValueError(f"{name} contains NaN values")
    return x


def _check_resampling(n_resamples: int, confidence: float) -> None:
    if int(n_resamples) != n_resamples or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")


# --------------------------------------------------------------------------- bootstrap


def _draw_indices(rng: np.random.Generator, levels: int, count: int) -> np.ndarray:
    """``count`` resamples of ``levels`` indices with replacement, shape [count, levels].

    A factor with a single level is not resampled (its only resample is itself) and draws no
    random numbers, so that a one-task matrix uses the random stream exactly as a plain
    bootstrap over seeds does (and vice versa).
    """
    if levels == 1:
        return np.zeros((count, 1), dtype=np.int64)
    return rng.integers(0, levels, size=(count, levels))


def _counts(indices: np.ndarray, levels: int) -> np.ndarray:
    """How often each level was drawn, per resample: [count, levels] float64."""
    count = indices.shape[0]
    offsets = np.arange(count, dtype=np.int64)[:, None] * levels
    flat = np.bincount((indices + offsets).ravel(), minlength=count * levels)
    return flat.reshape(count, levels).astype(np.float64)


def _chunk_size(chunk_size: int | None, width: int) -> int:
    if chunk_size is None:
        return max(1, _CHUNK_ELEMENTS // width)
    if int(chunk_size) != chunk_size or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    return int(chunk_size)


def _weighted_means(errors: np.ndarray, seed_counts: np.ndarray, task_counts: np.ndarray):
    """Grand mean of each resampled submatrix, without building it.

    The mean of errors[s_idx][:, t_idx] is Σ_s Σ_t c_s[s]·c_t[t]·errors[s, t] / (S·T), with c_s
    and c_t the number of times each seed and each task was drawn.
    """
    s, t = errors.shape
    # einsum rather than ``@``: these products are small and a multi-threaded BLAS call can
    # be a hundred times slower than numpy's own loop on a busy machine.
    weighted_rows = np.einsum("bs,st->bt", seed_counts, errors)
    return np.einsum("bt,bt->b", weighted_rows, task_counts) / (s * t)


def _percentile_interval(distribution: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(distribution, [alpha, 1.0 - alpha])  # linear, as scipy's
    return float(low), float(high)


@dataclass(frozen=True)
class BootstrapInterval:
    """A point estimate with its percentile bootstrap interval (not symmetric in general)."""

    estimate: float
    low: float
    high: float
    confidence: float
    n_resamples: int
    distribution: np.ndarray = field(repr=False, compare=False)

    @property
    def interval(self) -> tuple[float, float]:
        return self.low, self.high


def crossed_bootstrap(
    errors,
    statistic: Callable[[np.ndarray], float] | None = None,
    n_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
    chunk_size: int | None = None,
) -> BootstrapInterval:
    """Percentile interval from resampling seeds and test tasks independently (crossed).

    Why: the paper's CI resamples test tasks only, as if retraining gave the same model; the
    seeds are a second, independent source of variation that the same test tasks are crossed
    with. Each resample draws S seed indices and T task indices with replacement and evaluates
    the statistic on errors[s_idx][:, t_idx].

    ``statistic`` None is the grand mean, computed from the draw counts in chunks of matrix
    products (10,000 resamples of a 5 × 4000 matrix take a fraction of a second); any other
    callable receives each resampled [S, T] matrix in a Python loop (slow for large T).

    Random stream, on ``np.random.default_rng(seed)``: for each chunk of up to ``chunk_size``
    resamples, seed indices ``integers(0, S, (c, S))`` then task indices ``integers(0, T, (c,
    T))``; a factor with one level is not drawn. With one task (or one seed) and a single
    chunk, this is exactly what ``scipy.stats.bootstrap`` draws over the seeds (or tasks).

    With few seeds the interval is too narrow: a bootstrap over S values sees a spread
    (S − 1)/S of theirs and uses normal rather than Student-t quantiles, so the seed part of the
    interval is short by about a third at S = 5 (coverage of roughly 85% rather than 95% when
    seed variance dominates).
    """
    x = _as_errors(errors)
    _check_resampling(n_resamples, confidence)
    n_seeds, n_tasks = x.shape
    rng = np.random.default_rng(seed)
    chunk = _chunk_size(chunk_size, n_seeds + n_tasks)
    distribution = np.empty(int(n_resamples))
    for start in range(0, int(n_resamples), chunk):
        count = min(chunk, int(n_resamples) - start)
        s_idx = _draw_indices(rng, n_seeds, count)
        t_idx = _draw_indices(rng, n_tasks, count)
        if statistic is None:
            values = _weighted_means(x, _counts(s_idx, n_seeds), _counts(t_idx, n_tasks))
        else:
            values = [float(statistic(x[np.ix_(s, t)])) for s, t in zip(s_idx, t_idx)]
        distribution[start : start + count] = values
    estimate = float(x.mean()) if statistic is None else float(statistic(x))
    low, high = _percentile_interval(distribution, confidence)
    return BootstrapInterval(estimate, low, high, confidence, int(n_resamples), distribution)


@dataclass(frozen=True)
class DifferenceInterval:
    """mean(a) − mean(b) with its crossed bootstrap percentile interval.

    ``fraction_below_zero``: the share of bootstrap resamples in which mean(a) − mean(b) < 0
    (exact zeros count one half). It is a bootstrap probability, not a p-value; for the claim
    "a is lower than b" the one-sided bootstrap p-value is ``1 − fraction_below_zero``.
    """

    estimate: float
    low: float
    high: float
    fraction_below_zero: float
    confidence: float
    n_resamples: int
    distribution: np.ndarray = field(repr=False, compare=False)

    @property
    def interval(self) -> tuple[float, float]:
        return self.low, self.high

    @property
    def one_sided_p_a_below_b(self) -> float:
        """Bootstrap p-value of the claim mean(a) < mean(b): the share of resamples ≥ 0."""
        return 1.0 - self.fraction_below_zero


def crossed_bootstrap_difference(
    errors_a,
    errors_b,
    n_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
    chunk_size: int | None = None,
) -> DifferenceInterval:
    """Crossed bootstrap of mean(a) − mean(b) for two cells on the same test tasks.

    Why: the two cells share their test tasks (the task-to-task variation largely cancels in
    the difference, so one task resample serves both), while their seeds are independent
    training runs (each cell's seeds are resampled on their own). ``errors_a`` [S_a, T] and
    ``errors_b`` [S_b, T] must have the same T, with the tasks in the same order.

    Random stream, per chunk: seed indices of a, seed indices of b, then task indices.
    """
    a, b = _as_errors(errors_a, "errors_a"), _as_errors(errors_b, "errors_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"errors_a and errors_b must share the test tasks: {a.shape[1]} and {b.shape[1]} tasks"
        )
    _check_resampling(n_resamples, confidence)
    (s_a, n_tasks), s_b = a.shape, b.shape[0]
    rng = np.random.default_rng(seed)
    chunk = _chunk_size(chunk_size, s_a + s_b + n_tasks)
    distribution = np.empty(int(n_resamples))
    for start in range(0, int(n_resamples), chunk):
        count = min(chunk, int(n_resamples) - start)
        counts_a = _counts(_draw_indices(rng, s_a, count), s_a)
        counts_b = _counts(_draw_indices(rng, s_b, count), s_b)
        counts_t = _counts(_draw_indices(rng, n_tasks, count), n_tasks)
        distribution[start : start + count] = _weighted_means(
            a, counts_a, counts_t
        ) - _weighted_means(b, counts_b, counts_t)
    low, high = _percentile_interval(distribution, confidence)
    below = float(np.mean(distribution < 0) + 0.5 * np.mean(distribution == 0))
    estimate = float(a.mean() - b.mean())
    return DifferenceInterval(
        estimate, low, high, below, confidence, int(n_resamples), distribution
    )


# --------------------------------------------------------------------------- seed comparisons


def probability_of_improvement(a_seed_means, b_seed_means, lower_is_better: bool = True) -> float:
    """P(A better than B): the share of seed pairs (i, j) in which a_i beats b_j, ties ½.

    Why: with a handful of seeds a test's p-value says little, while this is a plain,
    bounded effect size (the Mann-Whitney U / (n_a·n_b), as in Agarwal et al. 2021, "Deep
    reinforcement learning at the edge of the statistical precipice"). 0.5: no preference.
    """
    a = _as_vector(a_seed_means, "a_seed_means")
    b = _as_vector(b_seed_means, "b_seed_means")
    diff = a[:, None] - b[None, :]
    better = diff < 0 if lower_is_better else diff > 0
    return float(np.mean(better + 0.5 * (diff == 0)))


@dataclass(frozen=True)
class CombinedStandardError:
    """Standard error of a cell's grand mean, split into its two sources.

    se² = seed_part² + task_part², each part on the scale of the mean. With one seed the seed
    part is unknown: ``seed_part`` is nan, ``seed_part_known`` False, and ``se`` is the task
    part alone (a lower bound).
    """

    se: float
    seed_part: float
    task_part: float
    n_seeds: int
    n_tasks: int
    seed_part_known: bool

    @property
    def ci95(self) -> float:
        """Half-width 1.96·se, the project's "mean ± half-width" form."""
        return Z95 * self.se


def combined_standard_error(errors) -> CombinedStandardError:
    """Standard error of the grand mean from both sources of variance in the crossed design.

    Why: a cell's mean would move if the seeds were retrained (seed part) and if another set
    of test tasks were drawn (task part); the paper's CI has only the second.

    - seed part² = var(per-seed means, ddof=1) / S: the sample variance, since S is small and
      the population variance would understate it by (S − 1)/S.
    - task part² = var(seed-averaged per-task errors, ddof=0) / T: the population variance, as
      the paper computes its CI, so that with one seed 1.96·se is the paper's half-width
      exactly (ddof=1 would differ by √(T/(T − 1)), under 0.5% for T ≥ 100).

    With a seed × task interaction (noise) of variance σ², each part also holds σ²/(S·T), so
    the sum counts it twice: slightly conservative, negligible unless S·T is small.
    """
    x = _as_errors(errors)
    n_seeds, n_tasks = x.shape
    task_part = float(np.sqrt(x.mean(axis=0).var(ddof=0) / n_tasks))
    if n_seeds < 2:
        return CombinedStandardError(task_part, math.nan, task_part, n_seeds, n_tasks, False)
    seed_part = float(np.sqrt(x.mean(axis=1).var(ddof=1) / n_seeds))
    se = math.hypot(seed_part, task_part)
    return CombinedStandardError(se, seed_part, task_part, n_seeds, n_tasks, True)


# --------------------------------------------------------------------------- agreement


@dataclass(frozen=True)
class PublishedAgreement:
    """Our mean against a published value (see ``AGREEMENT_RULE``).

    ``ci95`` is our own half-width (1.96·our se); ``z`` and ``p`` use our se and the published
    one together; ``seed_part_known`` False: our se has no seed part (one seed, or per seed).
    """

    mean: float
    ci95: float
    published_mean: float
    published_ci95: float | None
    z: float
    p: float
    verdict: str
    seed_part_known: bool


def _z_test(
    mean: float, se: float, published_mean: float, published_ci95: float | None, known: bool
) -> PublishedAgreement:
    if published_ci95 is not None and (math.isnan(published_ci95) or published_ci95 < 0):
        raise ValueError(f"published_ci95 must be a non-negative number or None: {published_ci95}")
    if math.isnan(published_mean):
        raise ValueError("published_mean is NaN")
    published_se = (published_ci95 or 0.0) / Z95
    total = math.hypot(se, published_se)
    diff = mean - published_mean
    if total == 0:
        z = math.copysign(math.inf, diff) if diff else 0.0
        p = 0.0 if diff else 1.0
    else:
        z = diff / total
        p = float(2 * stats.norm.sf(abs(z)))
    if p >= 0.05:
        verdict = "consistent"
    else:
        verdict = "ours higher" if diff > 0 else "ours lower"
    return PublishedAgreement(mean, Z95 * se, published_mean, published_ci95, z, p, verdict, known)


def agreement_with_published(
    errors, published_mean: float, published_ci95: float | None
) -> PublishedAgreement:
    """Two-sided z-test of our grand mean against a published (mean, 95% CI half-width).

    Why: the question "do we reproduce the paper" needs both our uncertainty, seeds included
    (``combined_standard_error``), and the paper's; the test uses
    √(se² + (published_ci95/1.96)²), the published part being zero when its CI is None (the
    test is then optimistic). Verdicts as in ``AGREEMENT_RULE``.
    """
    x = _as_errors(errors)
    combined = combined_standard_error(x)
    return _z_test(
        float(x.mean()), combined.se, published_mean, published_ci95, combined.seed_part_known
    )


def per_seed_agreement(
    errors, published_mean: float, published_ci95: float | None
) -> list[PublishedAgreement]:
    """The agreement verdict for each seed on its own, with its own test-task standard error.

    Why: it shows whether a verdict hangs on the seed: one seed can look consistent with the
    paper and another not, as the paper's single-run CI would have seen it. Each seed's se is
    its population std over the T tasks / √T, as the paper computes its CI.
    """
    x = _as_errors(errors)
    n_tasks = x.shape[1]
    return [
        _z_test(
            float(row.mean()),
            float(row.std(ddof=0) / math.sqrt(n_tasks)),
            published_mean,
            published_ci95,
            False,
        )
        for row in x
    ]


# --------------------------------------------------------------------------- seed summaries


def seed_sensitive(per_seed_means: Sequence[float], per_seed_ci95: Sequence[float]) -> bool:
    """Whether the per-seed means differ by more than the largest per-seed test-task CI.

    Why: a difference between seeds that the test-task CI cannot explain means that the
    paper's single-run interval understates the uncertainty of this cell (``SEED_SENSITIVE_RULE``).
    False with fewer than 2 seeds (nothing to compare).
    """
    means = _as_vector(per_seed_means, "per_seed_means")
    ci95 = _as_vector(per_seed_ci95, "per_seed_ci95")
    if means.shape != ci95.shape:
        raise ValueError(f"{means.size} per-seed means but {ci95.size} per-seed CIs")
    if means.size < 2:
        return False
    return bool(means.max() - means.min() > ci95.max())


def median_iqr(per_seed_means: Sequence[float]) -> tuple[float, float, float]:
    """(median, 25th percentile, 75th percentile) of the per-seed means, linear interpolation.

    Why: robust to one bad seed, unlike the mean; only meaningful with at least
    ``MIN_SEEDS_FOR_MEDIAN`` seeds, which the caller checks (it is computed for any number).
    """
    x = _as_vector(per_seed_means, "per_seed_means")
    median, q25, q75 = np.percentile(x, [50.0, 25.0, 75.0])
    return float(median), float(q25), float(q75)
