"""The few distribution functions the kernels need, straight from ``scipy.special``.

``scipy.stats`` costs a command about half a second of CPU to import (hundreds of distributions
built at import); the kernels use eight functions of three of them. Each function here is the
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

FloatArray = npt.NDArray[np.float64]

__all__ = ["chi2_ppf", "chi2_sf", "norm_isf", "norm_pdf", "norm_ppf", "norm_sf", "t_ppf", "t_sf"]

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


def t_sf(x: Any, df: Any) -> Any:
    """``scipy.stats.t.sf(x, df)``."""
    return _sf(x, -np.inf, lambda v: special.stdtr(df, -v))


def t_ppf(q: Any, df: Any) -> Any:
    """``scipy.stats.t.ppf(q, df)``."""
    return _ppf(q, -np.inf, lambda v: special.stdtrit(df, v))
