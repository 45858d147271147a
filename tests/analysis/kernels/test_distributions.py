"""The kernels' distribution functions return exactly what scipy.stats returns (same bits), so
that leaving scipy.stats out of the kernels' imports changes no result."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from stalwart.analysis.kernels import _distributions as dist

X = np.array(
    [0.0, -0.0, 1e-300, 1e-12, 0.3, 1.0, 1.959963984540054, 3.7, 8.0, 37.5, 1e3, np.inf, np.nan]
)
Q = np.array([0.0, 1e-300, 1e-12, 0.025, 0.5, 0.95, 0.975, 0.995, 1 - 1e-12, 1.0, np.nan])
DF = [1, 2, 3.5, 7, 29.37, 250, 1e6]


def _same(ours: object, theirs: object) -> None:
    a, b = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)
    assert a.shape == b.shape
    assert np.array_equal(a.view(np.int64), b.view(np.int64)) or np.array_equal(
        a, b, equal_nan=True
    ), (a, b)
    assert np.array_equal(np.signbit(a), np.signbit(b))


def test_normal() -> None:
    _same(dist.norm_ppf(Q), stats.norm.ppf(Q))
    _same(dist.norm_sf(X), stats.norm.sf(X))
    _same(dist.norm_sf(-X), stats.norm.sf(-X))
    _same(dist.norm_isf(Q), stats.norm.isf(Q))
    _same(dist.norm_pdf(X), stats.norm.pdf(X))
    _same(dist.norm_pdf(-X), stats.norm.pdf(-X))
    for q in Q[np.isfinite(Q)]:
        assert float(dist.norm_ppf(float(q))) == float(stats.norm.ppf(float(q)))


@pytest.mark.parametrize("df", DF)
def test_chi_square(df: float) -> None:
    _same(dist.chi2_sf(X, df), stats.chi2.sf(X, df))
    _same(dist.chi2_ppf(Q, df), stats.chi2.ppf(Q, df))
    assert float(dist.chi2_sf(3.84, int(df))) == float(stats.chi2.sf(3.84, int(df)))


@pytest.mark.parametrize("df", DF)
def test_student_t(df: float) -> None:
    _same(dist.t_sf(X, df), stats.t.sf(X, df))
    _same(dist.t_sf(-X, df), stats.t.sf(-X, df))
    _same(dist.t_ppf(Q, df), stats.t.ppf(Q, df))
    _same(dist.t_isf(Q, df), stats.t.isf(Q, df))


def test_random_arguments() -> None:
    rng = np.random.default_rng(23)
    x = rng.exponential(3.0, 2000)
    q = rng.random(2000)
    df = rng.uniform(0.5, 400.0, 2000)
    _same(dist.chi2_sf(x, df), stats.chi2.sf(x, df))
    _same(dist.chi2_ppf(q, df), stats.chi2.ppf(q, df))
    _same(dist.t_sf(x, df), stats.t.sf(x, df))
    _same(dist.t_ppf(q, df), stats.t.ppf(q, df))
    _same(dist.t_isf(q, df), stats.t.isf(q, df))
    _same(dist.norm_sf(x), stats.norm.sf(x))
    _same(dist.norm_ppf(q), stats.norm.ppf(q))
    _same(dist.norm_isf(q), stats.norm.isf(q))
    _same(dist.norm_pdf(x * np.sign(q - 0.5)), stats.norm.pdf(x * np.sign(q - 0.5)))


@pytest.mark.parametrize("df", [0.0, -1.0, np.inf, np.nan])
def test_student_t_at_odd_degrees_of_freedom(df: float) -> None:
    """The report's Kenward-Roger and Satterthwaite degrees of freedom can be anything."""
    _same(dist.t_sf(X, df), stats.t.sf(X, df))
    _same(dist.t_ppf(Q, df), stats.t.ppf(Q, df))
    _same(dist.t_isf(Q, df), stats.t.isf(Q, df))


K = np.array([-np.inf, -1.0, -0.5, -0.0, 0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 9.0, 10.0, 10.5, 11.0, 40.0])
K = np.append(K, [np.inf, np.nan])
N = [0, 1, 5, 10, 10.5, -1, 30, 200, np.nan]
P = [0.0, 1e-12, 0.1, 0.5, 0.9, 1.0 - 1e-12, 1.0, -0.1, 1.1, np.nan]


@pytest.mark.parametrize("n", N)
@pytest.mark.parametrize("p", P)
def test_binomial(n: float, p: float) -> None:
    _same(dist.binom_pmf(K, n, p), stats.binom.pmf(K, n, p))
    _same(dist.binom_cdf(K, n, p), stats.binom.cdf(K, n, p))
    _same(dist.binom_sf(K, n, p), stats.binom.sf(K, n, p))


def test_binomial_on_integer_arrays_and_broadcast() -> None:
    """As the exact rate-ratio test calls it: integer counts, a support row against columns."""
    rng = np.random.default_rng(7)
    n = rng.integers(0, 120, 300)
    x = rng.integers(-2, 130, 300)
    p = rng.random(300)
    support = np.arange(int(n.max()) + 1)
    _same(
        dist.binom_pmf(support[None, :], n[:, None], p[:, None]),
        stats.binom.pmf(support[None, :], n[:, None], p[:, None]),
    )
    for f, g in ((dist.binom_pmf, stats.binom.pmf), (dist.binom_cdf, stats.binom.cdf)):
        _same(f(x, n, p), g(x, n, p))
        _same(f(x - 1, n, p), g(x - 1, n, p))
    _same(dist.binom_sf(x - 1, n, p), stats.binom.sf(x - 1, n, p))
    _same(dist.binom_sf(n - x, n, p), stats.binom.sf(n - x, n, p))
    _same(dist.binom_cdf(3, 10, 0.25), stats.binom.cdf(3, 10, 0.25))
    assert isinstance(dist.binom_pmf(3, 10, 0.25), type(stats.binom.pmf(3, 10, 0.25)))


@pytest.mark.filterwarnings("ignore:Error in function boost")  # scipy.stats warns too
@pytest.mark.parametrize("a", [0.0, -1.0, 0.5, 1, 2, 7, 30, 1e3, np.inf, np.nan])
@pytest.mark.parametrize("b", [0.0, 1, 3.5, 12, 400, np.nan])
def test_beta_quantile(a: float, b: float) -> None:
    _same(dist.beta_ppf(Q, a, b), stats.beta.ppf(Q, a, b))
    _same(dist.beta_ppf(np.array([-0.1, 1.1]), a, b), stats.beta.ppf(np.array([-0.1, 1.1]), a, b))


def test_beta_quantile_on_integer_arrays() -> None:
    """As the Clopper-Pearson interval calls it: integer shapes, one tail probability."""
    rng = np.random.default_rng(8)
    x = rng.integers(1, 200, 500)
    n = x + rng.integers(1, 200, 500)
    for tail in (0.025, 0.975, 0.05, 0.95):
        _same(dist.beta_ppf(tail, x, n - x + 1), stats.beta.ppf(tail, x, n - x + 1))
