"""Statistical tests for comparing models evaluated on the same cross-validation folds.

Why not a plain paired t-test over folds: the k training sets overlap, so the
k fold scores are positively correlated and the naive variance estimate is
too small; the test then finds "significant" differences far too often
(Dietterich 1998; Nadeau & Bengio 2003). The corrected resampled t-test
inflates the variance by ``n_test/n_train``; with r repetitions of k-fold it
becomes the corrected repeated k-fold t-test (Bouckaert & Frank 2004). The
Bayesian correlated t-test (Corani & Benavoli 2015) uses the same correlation
``rho = n_test / (n_test + n_train)`` and reports P(A better), P(practically
equivalent), P(B better) for a region of practical equivalence (ROPE).

All differences are oriented so that a positive value means "A is better"
(the caller flips the sign for lower-is-better metrics such as log loss).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats


@dataclass
class TestResult:
    """One two-sided test of A vs B. ``statistic`` is the test's own statistic."""

    test: str
    statistic: float
    p_value: float
    n: int
    mean_diff: float = float("nan")
    df: float = float("nan")
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _diffs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired scores must be two 1-d arrays of equal length, got {a.shape} and {b.shape}")
    if len(a) < 2:
        raise ValueError("a paired test over folds needs at least 2 paired scores")
    return a - b


def paired_ttest(a: np.ndarray, b: np.ndarray) -> TestResult:
    """Plain paired t-test over folds, kept only to show how over-confident it is next to the corrected one."""
    d = _diffs(a, b)
    if np.var(d) == 0:
        return TestResult("paired t-test (uncorrected)", 0.0 if d.mean() == 0 else math.copysign(math.inf, d.mean()),
                          1.0 if d.mean() == 0 else 0.0, len(d), float(d.mean()), len(d) - 1, "constant differences")
    res = stats.ttest_rel(a, b)
    return TestResult("paired t-test (uncorrected)", float(res.statistic), float(res.pvalue), len(d), float(d.mean()), len(d) - 1)


def corrected_resampled_ttest(a: np.ndarray, b: np.ndarray, n_train: float, n_test: float) -> TestResult:
    """Nadeau–Bengio corrected resampled t-test; with r×k paired scores it is Bouckaert–Frank's repeated k-fold test.

    ``t = mean(d) / sqrt((1/J + n_test/n_train) * var(d, ddof=1))`` with ``J = k*r`` paired
    scores and ``df = J - 1``; two-sided p from Student's t.
    """
    d = _diffs(a, b)
    j = len(d)
    var = float(np.var(d, ddof=1))
    name = "corrected resampled t-test (Nadeau-Bengio)"
    if var == 0:
        m = float(d.mean())
        return TestResult(name, 0.0 if m == 0 else math.copysign(math.inf, m), 1.0 if m == 0 else 0.0, j, m, j - 1,
                          "constant differences over folds: the t statistic is undefined")
    t = float(d.mean() / math.sqrt((1.0 / j + n_test / n_train) * var))
    p = float(2 * stats.t.sf(abs(t), df=j - 1))
    return TestResult(name, t, p, j, float(d.mean()), j - 1)


def wilcoxon_test(a: np.ndarray, b: np.ndarray) -> TestResult:
    """Wilcoxon signed-rank test over the paired fold scores (SciPy, exact distribution for small n)."""
    d = _diffs(a, b)
    if np.all(d == 0):
        return TestResult("Wilcoxon signed-rank", 0.0, 1.0, len(d), 0.0, note="all differences are zero")
    res = stats.wilcoxon(a, b, zero_method="wilcox")
    return TestResult("Wilcoxon signed-rank", float(res.statistic), float(res.pvalue), int(np.sum(d != 0)), float(d.mean()))


def wilcoxon_min_p(n: int) -> float:
    """Smallest two-sided p-value the exact Wilcoxon test can give with n non-zero differences."""
    return min(1.0, 2.0 / 2 ** n)


def mcnemar_test(correct_a: np.ndarray, correct_b: np.ndarray, exact: bool | None = None) -> TestResult:
    """McNemar's test on per-row correctness of two classifiers' OOF predictions.

    ``b`` = rows A gets right and B wrong, ``c`` = the reverse. Exact two-sided binomial
    test on ``b`` out of ``b + c`` when ``b + c < 25`` (or ``exact=True``), otherwise the
    chi-square statistic with continuity correction ``(|b - c| - 1)^2 / (b + c)``, df 1.
    """
    ca, cb = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if ca.shape != cb.shape:
        raise ValueError(f"McNemar needs the same rows for both models, got {ca.shape} and {cb.shape}")
    b, c = int(np.sum(ca & ~cb)), int(np.sum(~ca & cb))
    n = b + c
    note = f"b={b} (A right, B wrong), c={c} (A wrong, B right)"
    if n == 0:
        return TestResult("McNemar", 0.0, 1.0, 0, 0.0, note=note + "; the models never disagree")
    exact = n < 25 if exact is None else exact
    diff = (b - c) / len(ca)
    if exact:
        p = float(stats.binomtest(b, n, 0.5).pvalue)
        return TestResult("McNemar (exact binomial)", float(b), min(1.0, p), n, diff, note=note)
    chi2 = (abs(b - c) - 1) ** 2 / n
    return TestResult("McNemar (chi-square, continuity corrected)", float(chi2), float(stats.chi2.sf(chi2, 1)), n, diff, 1, note)


@dataclass
class BayesResult:
    """Posterior probabilities that A is better / practically equivalent / worse (by more than the ROPE)."""

    p_a_better: float
    p_equivalent: float
    p_b_better: float
    rope: float
    rho: float
    mean_diff: float
    scale: float
    df: int

    def to_dict(self) -> dict:
        return asdict(self)


def bayesian_correlated_ttest(a: np.ndarray, b: np.ndarray, rho: float, rope: float = 0.01) -> BayesResult:
    """Corani & Benavoli (2015): posterior of the mean difference is Student t with ``df = n - 1``,
    location ``mean(d)`` and scale ``sqrt((1/n + rho/(1-rho)) * var(d, ddof=1))``."""
    if not 0 <= rho < 1:
        raise ValueError(f"rho must be in [0, 1), got {rho}")
    d = _diffs(a, b)
    n, m = len(d), float(d.mean())
    var = float(np.var(d, ddof=1))
    scale = math.sqrt((1.0 / n + rho / (1 - rho)) * var)
    if scale == 0:  # all differences equal: the posterior is a point mass
        better, worse = float(m > rope), float(m < -rope)
        return BayesResult(better, 1.0 - better - worse, worse, rope, rho, m, 0.0, n - 1)
    post = stats.t(df=n - 1, loc=m, scale=scale)
    p_worse = float(post.cdf(-rope))
    p_better = float(post.sf(rope))
    return BayesResult(p_better, max(0.0, 1.0 - p_better - p_worse), p_worse, rope, rho, m, scale, n - 1)


def holm(p_values: list[float] | np.ndarray) -> np.ndarray:
    """Holm–Bonferroni step-down adjusted p-values (same order as given)."""
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adj_sorted = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(adj_sorted, 1.0)
    return out


@dataclass
class FriedmanResult:
    statistic: float
    p_value: float
    avg_ranks: list[float]  # rank 1 = best
    n_blocks: int
    critical_difference: float  # Nemenyi CD at alpha

    def to_dict(self) -> dict:
        return asdict(self)


def friedman_test(scores: np.ndarray, alpha: float = 0.05, greater_is_better: bool = True) -> FriedmanResult:
    """Friedman test over blocks (rows: folds, columns: models) with average ranks and the Nemenyi critical difference.

    ``CD = q_alpha * sqrt(k (k + 1) / (6 N))`` with ``q_alpha`` the studentized range quantile / sqrt(2) (Demšar 2006).
    """
    s = np.asarray(scores, dtype=np.float64)
    n, k = s.shape
    if k < 3:
        raise ValueError("the Friedman test needs three or more models")
    res = stats.friedmanchisquare(*s.T)
    ranks = stats.rankdata(-s if greater_is_better else s, axis=1)
    q = float(stats.studentized_range.ppf(1 - alpha, k, np.inf)) / math.sqrt(2)
    cd = q * math.sqrt(k * (k + 1) / (6.0 * n))
    stat, p = float(res.statistic), float(res.pvalue)
    if not np.isfinite(stat):  # every block ranks the models identically (no ties): the statistic is at its maximum
        stat, p = float(n * (k - 1)), float(stats.chi2.sf(n * (k - 1), k - 1))
    return FriedmanResult(stat, p, ranks.mean(0).tolist(), n, cd)


def too_few_folds_warning(n_pairs: int, alpha: float = 0.05) -> str:
    """A warning when the number of paired fold scores cannot support a conclusion, else ''."""
    msgs = []
    if wilcoxon_min_p(n_pairs) > alpha:
        msgs.append(f"with {n_pairs} paired fold scores the Wilcoxon test can never reach p<{alpha} "
                    f"(smallest possible p = {wilcoxon_min_p(n_pairs):.3f})")
    if n_pairs < 10:
        msgs.append(f"{n_pairs} paired scores give the t-tests very little power (df={n_pairs - 1}); "
                    "repeat the k-fold (python -m src.folds --n-repeats 3, train with --repeat 1, 2) for >=10")
    return "; ".join(msgs)
