"""The few distribution functions the kernels need, straight from ``scipy.special``.

``scipy.stats`` costs a command about half a second of CPU to import (hundreds of distributions
built at import); the kernels use nine functions of three of them. Each function here is the
``scipy.special`` call that ``scipy.stats`` itself makes for a standard distribution (``loc`` 0,
``scale`` 1), so it returns the same bits: ``tests/analysis/kernels/test_distributions.py``
checks that against ``scipy.stats`` over a grid that includes 0, 1, infinity and NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import special
from scipy.special import _ufuncs as boost  # the Boost kernels scipy.stats calls (binom, beta)

FloatArray = npt.NDArray[np.float64]

__all__ = [
    "beta_ppf",
    "binom_cdf",
    "binom_pmf",
    "binom_sf",
    "chi2_ppf",
    "chi2_sf",
    "norm_isf",
    "norm_pdf",
    "norm_ppf",
    "norm_sf",
    "t_isf",
    "t_ppf",
    "t_sf",
]

_NORM_PDF_C = np.sqrt(2 * np.pi)


def _sf(x: Any, low: float, inner: Callable[[FloatArray], FloatArray]) -> Any:
    """As ``rv_continuous.sf``: 1 at or below the support, 0 at infinity, NaN for NaN."""
    x = np.asarray(x, dtype=float)
    with np.errstate(all="ignore"):
        value = inner(x)
    out = np.where(x <= low, 1.0, np.where(x == np.inf, 0.0, value))
    return np.where(np.isnan(x), np.nan, out)[()]


def _ppf(q: Any, low: float, inner: Callable[[FloatArray], FloatArray]) -> Any:
    """As ``rv_continuous.ppf``: the support's ends at 0 and 1, NaN outside [0, 1]."""
    q = np.asarray(q, dtype=float)
    with np.errstate(all="ignore"):
        value = inner(q)
    out = np.where(q == 0.0, low, np.where(q == 1.0, np.inf, value))
    return np.where((q >= 0.0) & (q <= 1.0), out, np.nan)[()]


def norm_ppf(q: Any) -> Any:
    """``scipy.stats.norm.ppf(q)``."""
    return _ppf(q, -np.inf, special.ndtri)


def norm_isf(q: Any) -> Any:
    """``scipy.stats.norm.isf(q)``: infinity at 0, minus infinity at 1, NaN outside [0, 1]."""
    q = np.asarray(q, dtype=float)
    with np.errstate(all="ignore"):
        value = -special.ndtri(q) + 0.0  # as scipy (isf * scale + loc): +0.0 at q = 0.5
    out = np.where(q == 0.0, np.inf, np.where(q == 1.0, -np.inf, value))
    return np.where((q >= 0.0) & (q <= 1.0), out, np.nan)[()]


def norm_pdf(x: Any) -> Any:
    """``scipy.stats.norm.pdf(x)``."""
    x = np.asarray(x, dtype=float)
    with np.errstate(all="ignore"):
        value = np.exp(-(x**2) / 2.0) / _NORM_PDF_C
    return np.where(np.isnan(x), np.nan, value)[()]


def norm_sf(x: Any) -> Any:
    """``scipy.stats.norm.sf(x)``."""
    return _sf(x, -np.inf, lambda v: special.ndtr(-v))


def chi2_sf(x: Any, df: Any) -> Any:
    """``scipy.stats.chi2.sf(x, df)``."""
    return _sf(x, 0.0, lambda v: special.chdtrc(df, v))


def chi2_ppf(q: Any, df: Any) -> Any:
    """``scipy.stats.chi2.ppf(q, df)``."""
    return _ppf(q, 0.0, lambda v: 2 * special.gammaincinv(np.asarray(df, dtype=float) / 2, v))


def _t_df(value: Any, df: Any) -> Any:
    """NaN where ``df`` is not positive (or NaN), as ``scipy.stats.t``'s argument check."""
    with np.errstate(invalid="ignore"):
        return np.where(np.asarray(df, dtype=float) > 0.0, value, np.nan)[()]


def t_sf(x: Any, df: Any) -> Any:
    """``scipy.stats.t.sf(x, df)``."""
    return _t_df(_sf(x, -np.inf, lambda v: special.stdtr(df, -v)), df)


def t_ppf(q: Any, df: Any) -> Any:
    """``scipy.stats.t.ppf(q, df)``."""
    return _t_df(_ppf(q, -np.inf, lambda v: special.stdtrit(df, v)), df)


def t_isf(q: Any, df: Any) -> Any:
    """``scipy.stats.t.isf(q, df)``: infinity at 0, minus infinity at 1, NaN outside [0, 1]."""
    q = np.asarray(q, dtype=float)
    with np.errstate(all="ignore"):
        value = -special.stdtrit(df, q) + 0.0  # as scipy (isf * scale + loc): +0.0 at q = 0.5
    out = np.where(q == 0.0, np.inf, np.where(q == 1.0, -np.inf, value))
    return _t_df(np.where((q >= 0.0) & (q <= 1.0), out, np.nan), df)


def _binom_valid(n: Any, p: Any) -> Any:
    """``scipy.stats.binom``'s argument check: ``n`` a whole number >= 0, ``p`` in [0, 1]."""
    return (n >= 0) & (n == np.round(n)) & (p >= 0) & (p <= 1)


def binom_pmf(k: Any, n: Any, p: Any) -> Any:
    """``scipy.stats.binom.pmf(k, n, p)``: 0 off the support, NaN for bad ``n``, ``p`` or ``k``."""
    k, n, p = np.asarray(k), np.asarray(n), np.asarray(p)
    valid = _binom_valid(n, p)
    with np.errstate(all="ignore"):
        value = np.clip(boost._binom_pmf(k, n, p), 0, 1)
        inside = (k >= 0) & (k <= n) & (np.floor(k) == k)
    out = np.where(valid & inside, value, 0.0)
    return np.where(~valid | np.isnan(k), np.nan, out)[()]


def binom_cdf(k: Any, n: Any, p: Any) -> Any:
    """``scipy.stats.binom.cdf(k, n, p)``: P(X <= k)."""
    k, n, p = np.asarray(k), np.asarray(n), np.asarray(p)
    valid = _binom_valid(n, p)
    with np.errstate(all="ignore"):
        value = np.clip(boost._binom_cdf(np.floor(k), n, p), 0, 1)
        inside = valid & (k >= 0) & (k < n) & np.isfinite(k)
        out = np.where(k >= n, 1.0, 0.0)
    out = np.where(~valid | np.isnan(k), np.nan, out)
    return np.where(inside, value, out)[()]


def binom_sf(k: Any, n: Any, p: Any) -> Any:
    """``scipy.stats.binom.sf(k, n, p)``: P(X > k)."""
    k, n, p = np.asarray(k), np.asarray(n), np.asarray(p)
    valid = _binom_valid(n, p)
    with np.errstate(all="ignore"):
        value = np.clip(boost._binom_sf(np.floor(k), n, p), 0, 1)
        inside = valid & (k >= 0) & (k < n) & np.isfinite(k)
        below = valid & (k < 0)
    out = np.where(~valid | np.isnan(k), np.nan, 0.0)
    out = np.where(below, 1.0, out)
    return np.where(inside, value, out)[()]


def beta_ppf(q: Any, a: Any, b: Any) -> Any:
    """``scipy.stats.beta.ppf(q, a, b)``: 0 at 0, 1 at 1, NaN outside [0, 1] or for ``a``, ``b``
    not positive."""
    q, a, b = np.asarray(q), np.asarray(a), np.asarray(b)
    with np.errstate(all="ignore"):
        valid = (a > 0) & (b > 0)
        inside = valid & (q > 0) & (q < 1)
        value = boost._beta_ppf(q, a, b) * 1.0 + 0.0  # as scipy (ppf * scale + loc)
        out = np.where(valid & (q == 0), 0.0, np.where(valid & (q == 1), 1.0, np.nan))
        return np.where(inside, value, out)[()]
