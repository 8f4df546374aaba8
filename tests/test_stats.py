"""The statistical tests against hand-computed values on small fixed examples, and against SciPy where SciPy has the test."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from src import stats

A = np.array([0.80, 0.82, 0.78, 0.85, 0.81])
B = np.array([0.78, 0.80, 0.79, 0.80, 0.78])
# d = [0.02, 0.02, -0.01, 0.05, 0.03]: mean 0.022, var(ddof=1) = 0.00188 / 4 = 4.7e-4


def test_corrected_ttest_hand_computed():
    # t = 0.022 / sqrt((1/5 + 200/800) * 4.7e-4) = 0.022 / sqrt(2.115e-4) = 1.51275...
    r = stats.corrected_resampled_ttest(A, B, n_train=800, n_test=200)
    assert r.statistic == pytest.approx(0.022 / math.sqrt(0.45 * 4.7e-4), rel=1e-9)
    assert r.statistic == pytest.approx(1.5127511611795637, rel=1e-9)
    assert r.df == 4 and r.n == 5 and r.mean_diff == pytest.approx(0.022)
    assert r.p_value == pytest.approx(0.2048901466379053, rel=1e-7)


def test_corrected_ttest_reduces_to_scipy_without_correction_and_is_less_confident():
    plain = stats.paired_ttest(A, B)
    ref = sps.ttest_rel(A, B)
    assert plain.statistic == pytest.approx(2.269126741769344) == pytest.approx(ref.statistic)
    assert plain.p_value == pytest.approx(ref.pvalue)
    # with n_test/n_train -> 0 the corrected test is the plain paired t-test
    tiny = stats.corrected_resampled_ttest(A, B, n_train=1e12, n_test=1)
    assert tiny.statistic == pytest.approx(ref.statistic, rel=1e-6) and tiny.p_value == pytest.approx(ref.pvalue, rel=1e-5)
    assert stats.corrected_resampled_ttest(A, B, 800, 200).p_value > plain.p_value


def test_corrected_repeated_kfold_ttest_hand_computed():
    """r=2 repeats of k=5: J = 10 differences, 1/J + n_test/n_train, df = 9 (Bouckaert & Frank 2004)."""
    d = np.array([0.02, 0.02, -0.01, 0.05, 0.03, 0.01, 0.03, 0.00, 0.04, 0.02])
    r = stats.corrected_resampled_ttest(0.8 + d, np.full(10, 0.8), 800, 200)
    assert r.df == 9
    assert r.statistic == pytest.approx(0.021 / math.sqrt((0.1 + 0.25) * 0.00032111111111111115), rel=1e-6)
    assert r.statistic == pytest.approx(1.9808774400567928, rel=1e-6)
    assert r.p_value == pytest.approx(0.0789480065169443, rel=1e-5)


def test_corrected_ttest_sign_and_degenerate():
    assert stats.corrected_resampled_ttest(B, A, 800, 200).statistic == pytest.approx(-1.5127511611795637)
    same = stats.corrected_resampled_ttest(A, A, 800, 200)
    assert same.p_value == 1.0 and same.statistic == 0.0
    const = stats.corrected_resampled_ttest(A + 0.01, A, 800, 200)
    assert const.p_value == 0.0 and "constant" in const.note
    with pytest.raises(ValueError, match="equal length"):
        stats.corrected_resampled_ttest(A, B[:4], 800, 200)


def test_mcnemar_exact_hand_computed():
    # b = 10 (A right, B wrong), c = 3: p = 2 * P(X <= 3 | n=13, 1/2) = 2 * (1 + 13 + 78 + 286) / 2**13
    ca = np.array([1] * 10 + [0] * 3 + [1] * 50 + [0] * 7, bool)
    cb = np.array([0] * 10 + [1] * 3 + [1] * 50 + [0] * 7, bool)
    r = stats.mcnemar_test(ca, cb)
    assert r.test.startswith("McNemar (exact")
    assert r.p_value == pytest.approx(2 * 378 / 8192, rel=1e-12) == pytest.approx(sps.binomtest(10, 13).pvalue)
    assert "b=10" in r.note and "c=3" in r.note
    assert stats.mcnemar_test(cb, ca).p_value == pytest.approx(r.p_value)


def test_mcnemar_chi2_hand_computed():
    # b = 30, c = 12: chi2 = (|30 - 12| - 1)^2 / 42 = 289 / 42 = 6.88095..., p = 0.0087119...
    ca = np.array([1] * 30 + [0] * 12 + [1] * 100, bool)
    cb = np.array([0] * 30 + [1] * 12 + [1] * 100, bool)
    r = stats.mcnemar_test(ca, cb)
    assert r.statistic == pytest.approx(289 / 42)
    assert r.p_value == pytest.approx(0.008711912962379598, rel=1e-9) == pytest.approx(sps.chi2.sf(289 / 42, 1))
    r13 = stats.mcnemar_test(ca[:13].copy() | True, ca[:13].copy() | True)
    assert r13.p_value == 1.0 and r13.n == 0
    forced = stats.mcnemar_test(np.array([1] * 10 + [0] * 3, bool), np.array([0] * 10 + [1] * 3, bool), exact=False)
    assert forced.statistic == pytest.approx(36 / 13) and forced.p_value == pytest.approx(0.0960923294556734, rel=1e-9)


def test_wilcoxon_matches_scipy():
    r = stats.wilcoxon_test(A, B)
    ref = sps.wilcoxon(A, B)
    assert r.statistic == ref.statistic == 1.0
    assert r.p_value == pytest.approx(ref.pvalue) == pytest.approx(0.125)
    assert stats.wilcoxon_test(A, A).p_value == 1.0
    assert stats.wilcoxon_min_p(5) == pytest.approx(0.0625)


def test_bayesian_correlated_ttest_hand_computed():
    # rho = 0.2 -> rho/(1-rho) = 0.25 = n_test/n_train: the posterior scale equals the corrected t-test's standard error
    r = stats.bayesian_correlated_ttest(A, B, rho=0.2, rope=0.01)
    scale = math.sqrt(0.45 * 4.7e-4)
    assert r.scale == pytest.approx(scale) and r.df == 4 and r.mean_diff == pytest.approx(0.022)
    assert r.p_a_better == pytest.approx(0.7721702300210147, rel=1e-7)
    assert r.p_b_better == pytest.approx(0.04630747118109753, rel=1e-7)
    assert r.p_a_better + r.p_equivalent + r.p_b_better == pytest.approx(1.0)
    # with no ROPE, P(A better) is one minus the corrected test's one-sided p-value
    r0 = stats.bayesian_correlated_ttest(A, B, rho=0.2, rope=0.0)
    assert r0.p_a_better == pytest.approx(1 - stats.corrected_resampled_ttest(A, B, 800, 200).p_value / 2)
    wide = stats.bayesian_correlated_ttest(A, B, rho=0.2, rope=1.0)
    assert wide.p_equivalent == pytest.approx(1.0)


def test_holm_hand_computed():
    # sorted 0.01, 0.03, 0.04 -> 3*0.01, max(0.03, 2*0.03), max(0.06, 1*0.04)
    np.testing.assert_allclose(stats.holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    np.testing.assert_allclose(stats.holm([0.5, 0.9]), [1.0, 1.0])
    np.testing.assert_allclose(stats.holm([0.02]), [0.02])


def test_friedman_hand_computed_and_nemenyi_cd():
    S = np.array([[0.9, 0.8, 0.7], [0.85, 0.8, 0.6], [0.95, 0.9, 0.8], [0.8, 0.7, 0.65]])
    r = stats.friedman_test(S)
    # ranks always 1,2,3: chi2 = 12N/(k(k+1)) * sum(R^2) - 3N(k+1) = 4*14 - 48 = 8; p = exp(-4)
    assert r.statistic == pytest.approx(8.0) and r.p_value == pytest.approx(math.exp(-4))
    assert r.statistic == pytest.approx(sps.friedmanchisquare(*S.T).statistic)
    assert r.avg_ranks == [1.0, 2.0, 3.0]
    # q_0.05 for k=3 is 2.343 (Demšar 2006, table 5): CD = 2.343 * sqrt(3*4 / (6*4))
    assert r.critical_difference == pytest.approx(2.3437 * math.sqrt(0.5), rel=1e-3)
    assert stats.friedman_test(-S, greater_is_better=False).avg_ranks == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="three or more"):
        stats.friedman_test(S[:, :2])


def test_too_few_folds_warning():
    assert "never reach p<0.05" in stats.too_few_folds_warning(5)
    assert "little power" in stats.too_few_folds_warning(8) and "never" not in stats.too_few_folds_warning(8)
    assert stats.too_few_folds_warning(10) == ""


def test_holm_caps_adjusted_p_values_at_one():
    """m * p exceeds 1 quickly: [0.6, 0.7] gives 1.2 and 0.7 -> both 1 (0.7 is lifted to 1 by monotonicity)."""
    np.testing.assert_allclose(stats.holm([0.6, 0.7]), [1.0, 1.0])
    np.testing.assert_allclose(stats.holm([0.001, 0.4, 0.3]), [0.003, 0.6, 0.6])
    rng = np.random.default_rng(0)
    for _ in range(200):
        p = rng.random(rng.integers(1, 12))
        adj = stats.holm(p)
        assert (adj <= 1.0).all() and (adj >= p).all()


def test_holm_is_monotone_in_the_raw_p_values():
    """Step-down: a larger raw p never gets a smaller adjusted p. Without the running maximum,
    [0.01, 0.02, 0.025] would give 0.03, 0.04, 0.025: the largest raw p the smallest adjusted one."""
    np.testing.assert_allclose(stats.holm([0.025, 0.01, 0.02]), [0.04, 0.03, 0.04])
    rng = np.random.default_rng(1)
    for _ in range(200):
        m = int(rng.integers(2, 12))
        p = np.round(rng.random(m) * 0.2, 3)  # small values and ties
        adj = stats.holm(p)
        order = np.argsort(p, kind="stable")
        assert (np.diff(adj[order]) >= -1e-15).all(), (p, adj)
        # the definition: adjusted p_(i) = max over j <= i of min(1, (m - j + 1) p_(j))
        want = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
        np.testing.assert_allclose(adj[order], want)
        assert (adj[p == p.min()] == adj.min()).all()
