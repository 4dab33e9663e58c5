"""hsmlbench.report.seed_statistics against independent references (scipy, loops, closed forms)."""

import inspect
import math

import numpy as np
import pytest
from scipy import stats

from hsmlbench.report import seed_statistics as ss


def _scipy_percentile_bootstrap(x, n_resamples, generator):
    """scipy's percentile bootstrap of the mean (``rng`` since scipy 1.15, else random_state)."""
    key = "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"
    return stats.bootstrap(
        (x,), np.mean, method="percentile", n_resamples=n_resamples, **{key: generator}
    )


def _quantile_mc_tolerance(n_resamples, confidence, bootstrap_sd):
    """4 Monte Carlo standard errors of the difference of two independent endpoint estimates.

    The q-quantile of n bootstrap draws has standard error √(q(1−q)/n) / f(x_q); for a near
    normal bootstrap distribution f(x_q) = φ(z_q)/sd. Two independent runs: × √2.
    """
    q = (1 - confidence) / 2
    z = stats.norm.ppf(q)
    one = math.sqrt(q * (1 - q) / n_resamples) / stats.norm.pdf(z) * bootstrap_sd
    return 4 * math.sqrt(2) * one


# --------------------------------------------------------------------------- crossed bootstrap


@pytest.mark.parametrize("shape", [(20, 1), (1, 300)], ids=["one task", "one seed"])
def test_single_factor_matches_scipy_bootstrap(shape):
    x = np.random.default_rng(11).gamma(2.0, 0.5, size=shape)  # skewed, like per-task MSEs
    n = 20_000
    ours = ss.crossed_bootstrap(x, n_resamples=n, seed=1)
    reference = _scipy_percentile_bootstrap(x.ravel(), n, np.random.default_rng(2))
    tolerance = _quantile_mc_tolerance(n, 0.95, reference.standard_error)
    assert ours.estimate == pytest.approx(x.mean())
    assert abs(ours.low - reference.confidence_interval.low) < tolerance
    assert abs(ours.high - reference.confidence_interval.high) < tolerance
    # the tolerance is a small fraction of the interval, so a wrong interval would fail
    assert tolerance < 0.1 * (ours.high - ours.low)
    # a single factor level draws nothing: with the same stream, scipy's exact draws
    same = _scipy_percentile_bootstrap(x.ravel(), n, np.random.default_rng(1))
    assert ours.low == pytest.approx(same.confidence_interval.low, rel=1e-12)
    assert ours.high == pytest.approx(same.confidence_interval.high, rel=1e-12)


def _naive_crossed_means(errors, n_resamples, seed, chunk, statistic=np.mean):
    """Explicit index draws in the documented order, the submatrix built and reduced."""
    rng = np.random.default_rng(seed)
    s_count, t_count = errors.shape
    values = []
    for start in range(0, n_resamples, chunk):
        count = min(chunk, n_resamples - start)
        s_idx = rng.integers(0, s_count, size=(count, s_count))
        t_idx = rng.integers(0, t_count, size=(count, t_count))
        for b in range(count):
            values.append(statistic(errors[s_idx[b]][:, t_idx[b]]))
    return np.array(values)


def test_vectorised_resampler_equals_naive_loop():
    errors = np.random.default_rng(5).normal(1.0, 0.3, size=(4, 9))
    # chunk_size=1: one resample at a time, seeds then tasks, as a textbook loop draws them
    rng = np.random.default_rng(7)
    loop = []
    for _ in range(200):
        s_idx, t_idx = rng.integers(0, 4, size=4), rng.integers(0, 9, size=9)
        loop.append(errors[s_idx][:, t_idx].mean())
    one_at_a_time = ss.crossed_bootstrap(errors, n_resamples=200, seed=7, chunk_size=1)
    np.testing.assert_allclose(one_at_a_time.distribution, loop, rtol=1e-12)
    # chunks of 7, the last one short
    chunked = ss.crossed_bootstrap(errors, n_resamples=30, seed=3, chunk_size=7)
    np.testing.assert_allclose(chunked.distribution, _naive_crossed_means(errors, 30, 3, 7))
    assert chunked.interval == tuple(np.quantile(chunked.distribution, [0.025, 0.975]))
    # a callable statistic goes through the same draws
    median = ss.crossed_bootstrap(errors, np.median, n_resamples=30, seed=3, chunk_size=7)
    naive = _naive_crossed_means(errors, 30, 3, 7, np.median)
    np.testing.assert_allclose(median.distribution, naive)
    assert median.estimate == pytest.approx(np.median(errors))


def test_default_chunking_draws_like_a_loop_statistically():
    # the default (one big chunk) and the one-at-a-time stream differ, but not in distribution
    errors = np.random.default_rng(8).normal(0.0, 1.0, size=(5, 40))
    a = ss.crossed_bootstrap(errors, n_resamples=4000, seed=0).distribution
    b = ss.crossed_bootstrap(errors, n_resamples=4000, seed=1, chunk_size=1).distribution
    assert stats.ks_2samp(a, b).pvalue > 0.001
    # and the test notices a wrong resampler: tasks only has a clearly narrower distribution
    tasks_only = ss.crossed_bootstrap(errors.mean(0, keepdims=True), n_resamples=4000).distribution
    assert stats.ks_2samp(a, tasks_only).pvalue < 1e-6


def test_crossed_bootstrap_covers_and_tasks_only_does_not():
    """y[s, t] = mu + seed effect + task effect + noise, σ_seed = 2, σ_task = σ_noise = 1.

    S = T = 20. With 3000 replications the crossed interval covered mu 93.6% of the time (the
    percentile bootstrap's small-sample deficit: (S−1)/S variance, normal quantiles); with 600
    here the binomial standard error is ≈ 0.010, so the window is 0.936 ± 3.5 SE. The
    tasks-only bootstrap (what the paper's CI measures) covered ≈ 60%.
    """
    mu, n_seeds, n_tasks, replications = 3.0, 20, 20, 600
    rng = np.random.default_rng(1)
    crossed_hits = tasks_hits = 0
    for r in range(replications):
        y = (
            mu
            + rng.normal(0, 2.0, (n_seeds, 1))
            + rng.normal(0, 1.0, (1, n_tasks))
            + rng.normal(0, 1.0, (n_seeds, n_tasks))
        )
        crossed = ss.crossed_bootstrap(y, n_resamples=1000, seed=r)
        tasks = ss.crossed_bootstrap(y.mean(axis=0, keepdims=True), n_resamples=1000, seed=r)
        crossed_hits += crossed.low <= mu <= crossed.high
        tasks_hits += tasks.low <= mu <= tasks.high
    crossed_rate, tasks_rate = crossed_hits / replications, tasks_hits / replications
    assert 0.90 <= crossed_rate <= 0.972
    assert tasks_rate < 0.80
    assert crossed_rate - tasks_rate > 0.2


# --------------------------------------------------------------------------- differences


def test_difference_shares_the_task_resample():
    errors_b = np.random.default_rng(3).gamma(2.0, 0.5, size=(1, 200))
    # one seed each: only tasks are resampled, and a shared resample keeps a − b constant
    result = ss.crossed_bootstrap_difference(errors_b + 0.1, errors_b, n_resamples=500)
    assert result.estimate == pytest.approx(0.1)
    assert result.interval == pytest.approx((0.1, 0.1))
    assert result.fraction_below_zero == 0.0
    assert result.one_sided_p_a_below_b == 1.0
    # identical cells: every resample gives exactly 0, ties count one half
    tie = ss.crossed_bootstrap_difference(errors_b, errors_b, n_resamples=100)
    assert tie.fraction_below_zero == 0.5


def test_difference_equals_naive_loop():
    rng = np.random.default_rng(4)
    a, b = rng.normal(1.0, 0.2, (3, 12)), rng.normal(1.1, 0.2, (2, 12))
    result = ss.crossed_bootstrap_difference(a, b, n_resamples=300, seed=9, chunk_size=50)
    draws = np.random.default_rng(9)
    naive = []
    for _chunk in range(300 // 50):
        ia, ib = draws.integers(0, 3, (50, 3)), draws.integers(0, 2, (50, 2))
        it = draws.integers(0, 12, (50, 12))
        for k in range(50):
            naive.append(a[ia[k]][:, it[k]].mean() - b[ib[k]][:, it[k]].mean())
    naive = np.array(naive)
    np.testing.assert_allclose(result.distribution, naive)
    assert result.fraction_below_zero == pytest.approx(np.mean(naive < 0))
    assert result.estimate == pytest.approx(a.mean() - b.mean())
    assert result.fraction_below_zero > 0.9  # a is lower by 0.1 with se ≈ 0.06


# --------------------------------------------------------------------------- seed comparisons


def test_probability_of_improvement_by_hand():
    assert ss.probability_of_improvement([1.0, 2.0], [3.0, 4.0]) == 1.0
    assert ss.probability_of_improvement([1.0, 2.0], [3.0, 4.0], lower_is_better=False) == 0.0
    assert ss.probability_of_improvement([2.0, 2.0], [2.0]) == 0.5
    # pairs (1,2) win, (3,2) lose, (1,1) tie, (3,1) lose → (1 + 0.5) / 4
    assert ss.probability_of_improvement([1.0, 3.0], [2.0, 1.0]) == 0.375
    assert ss.probability_of_improvement([1.0, 3.0], [2.0, 1.0], lower_is_better=False) == 0.625


def test_probability_of_improvement_is_mann_whitney_u():
    rng = np.random.default_rng(6)
    a, b = np.round(rng.normal(0, 1, 5), 1), np.round(rng.normal(0.3, 1, 4), 1)  # some ties
    n = a.size * b.size
    # scipy's U is for its first sample: #pairs first > second, ties one half
    u_b_over_a = stats.mannwhitneyu(b, a).statistic
    u_a_over_b = stats.mannwhitneyu(a, b).statistic
    assert ss.probability_of_improvement(a, b) == pytest.approx(u_b_over_a / n)
    assert ss.probability_of_improvement(a, b, lower_is_better=False) == pytest.approx(
        u_a_over_b / n
    )


def test_combined_standard_error_closed_form():
    errors = [[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]]
    # seed means 2, 4: sample variance 2, / S = 1. Task means 2, 3, 4: population variance
    # 2/3, / T = 2/9.
    result = ss.combined_standard_error(errors)
    assert result.seed_part == pytest.approx(1.0)
    assert result.task_part == pytest.approx(math.sqrt(2 / 9))
    assert result.se == pytest.approx(math.sqrt(11 / 9))
    assert result.ci95 == pytest.approx(1.96 * math.sqrt(11 / 9))
    assert (result.n_seeds, result.n_tasks, result.seed_part_known) == (2, 3, True)


def test_combined_standard_error_one_seed_is_the_papers_ci():
    row = [1.0, 2.0, 3.0, 4.0]
    result = ss.combined_standard_error([row])
    # the paper's half-width: 1.96 · population std / √T, population std of 1..4 is √1.25
    assert result.ci95 == pytest.approx(1.96 * math.sqrt(1.25) / 2)
    assert result.se == result.task_part
    assert math.isnan(result.seed_part)
    assert result.seed_part_known is False


# --------------------------------------------------------------------------- agreement


def _seeds_around(means, n_tasks=500, spread=0.1):
    """Seeds with exactly the given means over the same tasks, population std ``spread``."""
    base = np.random.default_rng(0).normal(size=n_tasks)
    base = (base - base.mean()) / base.std() * spread
    return np.array([m + base for m in means])


def _erfc_p(z):
    return math.erfc(abs(z) / math.sqrt(2))


def test_agreement_consistent_overall_but_not_per_seed():
    errors = _seeds_around([0.9, 1.0, 1.1])
    overall = ss.agreement_with_published(errors, 1.0, 0.02)
    # seed part: sample variance of (0.9, 1.0, 1.1) is 0.01, / 3; task part: the seeds share
    # the task pattern, so the seed-averaged per-task errors have population std 0.1, / √500
    se = math.sqrt(0.01 / 3 + 0.01 / 500)
    assert overall.mean == pytest.approx(1.0)
    assert overall.ci95 == pytest.approx(1.96 * se)
    assert overall.z == pytest.approx(0.0, abs=1e-9)
    assert overall.verdict == "consistent"
    assert overall.seed_part_known is True
    per_seed = ss.per_seed_agreement(errors, 1.0, 0.02)
    assert [a.verdict for a in per_seed] == ["ours lower", "consistent", "ours higher"]
    seed_se = 0.1 / math.sqrt(500)
    z = (0.9 - 1.0) / math.hypot(seed_se, 0.02 / 1.96)
    assert per_seed[0].z == pytest.approx(z)
    assert per_seed[0].p == pytest.approx(_erfc_p(z))
    assert per_seed[0].ci95 == pytest.approx(1.96 * seed_se)


def test_agreement_without_published_ci():
    errors = _seeds_around([1.01], n_tasks=400, spread=0.2)  # se = 0.01
    result = ss.agreement_with_published(errors, 1.0, None)
    assert result.z == pytest.approx(1.0)
    assert result.p == pytest.approx(_erfc_p(1.0))
    assert result.verdict == "consistent"
    assert result.seed_part_known is False
    higher = ss.agreement_with_published(errors, 0.97, None)  # z = 4
    assert higher.verdict == "ours higher"
    assert higher.p == pytest.approx(_erfc_p(4.0))
    assert ss.agreement_with_published(errors, 1.05, None).verdict == "ours lower"
    # with the published CI the same gap is consistent again: √(0.01² + 0.02²) ≈ 0.0224
    assert ss.agreement_with_published(errors, 0.97, 0.0392).verdict == "consistent"


def test_agreement_without_any_spread():
    errors = np.full((1, 5), 2.0)
    assert ss.agreement_with_published(errors, 2.0, None).verdict == "consistent"
    result = ss.agreement_with_published(errors, 1.0, None)
    assert (result.z, result.p, result.verdict) == (math.inf, 0.0, "ours higher")


# --------------------------------------------------------------------------- seed summaries


def test_seed_sensitive_by_hand():
    assert ss.seed_sensitive([1.0, 1.05], [0.02, 0.03]) is True
    assert ss.seed_sensitive([1.0, 1.02, 1.01], [0.03, 0.01, 0.01]) is False
    assert ss.seed_sensitive([1.0, 1.5], [0.5, 0.25]) is False  # equal is not more
    assert ss.seed_sensitive([1.0], [0.0]) is False
    assert "largest per-seed" in ss.SEED_SENSITIVE_RULE
    with pytest.raises(ValueError, match="2 per-seed means but 1"):
        ss.seed_sensitive([1.0, 2.0], [0.1])


def test_median_iqr_by_hand():
    assert ss.median_iqr([5.0, 1.0, 4.0, 2.0, 3.0]) == (3.0, 2.0, 4.0)
    # linear interpolation: positions 0.75 and 2.25 of (1, 2, 3, 4)
    assert ss.median_iqr([1.0, 2.0, 3.0, 4.0]) == pytest.approx((2.5, 1.75, 3.25))
    assert ss.MIN_SEEDS_FOR_MEDIAN == 5


def test_footnote_texts():
    assert set(ss.INTERVAL_NOTES) == {
        "test_task_ci",
        "seed_interval",
        "combined",
        "crossed_bootstrap",
    }
    for text in [*ss.INTERVAL_NOTES.values(), ss.SEED_SENSITIVE_RULE, ss.AGREEMENT_RULE]:
        assert text.count(". ") == 0 and text.endswith(".")  # one sentence each
    assert "p ≥ 0.05" in ss.AGREEMENT_RULE


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("errors", "message"),
    [
        (np.zeros((0, 4)), "empty"),
        (np.zeros((3, 0)), "empty"),
        (np.zeros(4), "2-D"),
        (np.zeros((2, 2, 2)), "2-D"),
        (np.array([[1.0, np.nan]]), "NaN"),
        (np.array([[1.0, np.inf]]), "infinite"),
    ],
)
def test_bad_errors_are_refused(errors, message):
    for call in (
        lambda: ss.crossed_bootstrap(errors, n_resamples=10),
        lambda: ss.combined_standard_error(errors),
        lambda: ss.agreement_with_published(errors, 1.0, None),
        lambda: ss.per_seed_agreement(errors, 1.0, None),
    ):
        with pytest.raises(ValueError, match=message):
            call()


def test_other_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="share the test tasks: 3 and 4"):
        ss.crossed_bootstrap_difference(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="errors_b contains NaN"):
        ss.crossed_bootstrap_difference(np.zeros((2, 3)), np.full((2, 3), np.nan))
    with pytest.raises(ValueError, match="confidence"):
        ss.crossed_bootstrap(np.zeros((2, 3)), confidence=95)
    with pytest.raises(ValueError, match="n_resamples"):
        ss.crossed_bootstrap(np.zeros((2, 3)), n_resamples=0)
    with pytest.raises(ValueError, match="empty"):
        ss.probability_of_improvement([], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        ss.probability_of_improvement([1.0], [np.nan])
    with pytest.raises(ValueError, match="empty"):
        ss.median_iqr([])
    with pytest.raises(ValueError, match="published_ci95"):
        ss.agreement_with_published(np.ones((1, 3)), 1.0, -0.1)
