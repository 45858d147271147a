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


def test_random_arguments() -> None:
    rng = np.random.default_rng(23)
    x = rng.exponential(3.0, 2000)
    q = rng.random(2000)
    df = rng.uniform(0.5, 400.0, 2000)
    _same(dist.chi2_sf(x, df), stats.chi2.sf(x, df))
    _same(dist.chi2_ppf(q, df), stats.chi2.ppf(q, df))
    _same(dist.t_sf(x, df), stats.t.sf(x, df))
    _same(dist.t_ppf(q, df), stats.t.ppf(q, df))
    _same(dist.norm_sf(x), stats.norm.sf(x))
    _same(dist.norm_ppf(q), stats.norm.ppf(q))
    _same(dist.norm_isf(q), stats.norm.isf(q))
    _same(dist.norm_pdf(x * np.sign(q - 0.5)), stats.norm.pdf(x * np.sign(q - 0.5)))
