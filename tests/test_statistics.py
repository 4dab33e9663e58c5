import math

import numpy as np
import pytest
from scipy import stats

from hsmlbench.report import statistics as st


def test_mean_ci95_uses_population_std():
    mean, ci = st.mean_ci95([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5
    # population std of 1..4 is sqrt(1.25); 1.96 * sqrt(1.25) / 2
    assert ci == pytest.approx(1.96 * math.sqrt(1.25) / 2)


def test_seed_interval_is_a_student_t_interval():
    mean, half = st.seed_interval([1.0, 2.0, 3.0])
    # sample std 1, t(0.975, df=2) = 4.302652729911275
    assert mean == 2.0
    assert half == pytest.approx(4.302652729911275 / math.sqrt(3))
    assert math.isnan(st.seed_interval([5.0])[1])


def test_holm_by_hand():
    # sorted 0.01, 0.02, 0.03, 0.04 → ×4, ×3, ×2, ×1 → 0.04, 0.06, 0.06 (monotone), 0.06
    assert st.holm([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert st.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_paired_test_matches_scipy_and_direction():
    rng = np.random.default_rng(0)
    b = rng.normal(1.0, 0.3, 200)
    a = b - 0.05 + rng.normal(0, 0.05, 200)
    result = st.paired_test(a, b, "less")
    assert result.n == 200
    assert result.mean_difference == pytest.approx(np.mean(a - b))
    assert result.wilcoxon_p == pytest.approx(stats.wilcoxon(a, b, alternative="less").pvalue)
    assert result.t_p == pytest.approx(stats.ttest_rel(a, b, alternative="less").pvalue)
    assert result.t_p < 1e-6
    assert st.paired_test(b, a, "less").t_p > 0.99


def test_paired_t_by_hand():
    a, b = np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.5, 4.5])
    # a − b = −1, −0.5, −1.5: mean −1, sample std 0.5
    t = -1.0 / (0.5 / math.sqrt(3))
    assert st.paired_test(a, b, "less").t_p == pytest.approx(stats.t.cdf(t, df=2))


def test_paired_test_rejects_unpaired_data():
    with pytest.raises(ValueError, match="same tasks"):
        st.paired_test([1, 2, 3], [1, 2])


def test_agreement_is_a_z_test_on_both_standard_errors():
    agreement = st.agreement_with_published(1.0, 0.196, 0.5, 0.196)
    # se = hypot(0.1, 0.1); z = 0.5 / 0.1414
    assert agreement.z == pytest.approx(0.5 / math.hypot(0.1, 0.1))
    assert agreement.p == pytest.approx(2 * stats.norm.sf(agreement.z))
    assert agreement.verdict == "ours higher"
    assert st.agreement_with_published(0.52, 0.1, 0.5, 0.1).verdict == "consistent"


def test_welch_matches_scipy_and_needs_two_seeds():
    a, b = [1.0, 1.2, 0.9], [2.0, 2.4, 1.7, 2.2]
    assert st.welch_test(a, b) == pytest.approx(
        stats.ttest_ind(a, b, equal_var=False, alternative="less").pvalue
    )
    assert math.isnan(st.welch_test([1.0], b))


def test_cluster_structure_on_hand_made_assignments():
    from hsmlbench.report.statistics import cluster_structure

    families = ("a", "b", "c", "d")
    family = np.repeat(np.arange(4), 50)
    separated = np.eye(4)[family] * 0.9 + 0.025  # each family its own cluster
    result = cluster_structure(separated, family, families)
    assert result["nmi"] == pytest.approx(1.0)
    assert result["top_weight"]["c"] == pytest.approx(0.925)
    assert result["top_cluster"] == {"a": 1, "b": 2, "c": 3, "d": 4}
    merged = np.tile([0.7, 0.1, 0.1, 0.1], (200, 1))  # one cluster for everything
    assert cluster_structure(merged, family, families)["nmi"] == pytest.approx(0.0)
    rng = np.random.default_rng(0)  # assignments independent of the family
    noise = rng.dirichlet(np.ones(4), size=20_000)
    unrelated = cluster_structure(noise, rng.integers(0, 4, 20_000), families)
    assert unrelated["nmi"] < 0.001
    assert all(abs(w - 0.25) < 0.02 for w in unrelated["top_weight"].values())
    two = np.eye(4)[family // 2 * 2]  # families paired into two clusters: log 2 of log 4
    assert cluster_structure(two, family, families)["nmi"] == pytest.approx(2 / 3)
