import math

import numpy as np
import pytest
from scipy import stats

from hsmlbench import statistics as st


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
