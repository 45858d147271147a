"""The k-sample log-rank test, optionally stratified.

Matches R ``survival::survdiff(Surv(time, event) ~ group [+ strata(s)])`` with ``rho = 0``:
observed and expected events per group, the hypergeometric variance matrix summed over event
times (and over strata), and a chi-square statistic on ``k - 1`` degrees of freedom, where ``k``
counts the groups with a positive expected number of events.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import linalg

from stalwart.analysis.kernels._distributions import chi2_sf
from stalwart.errors import AnalysisError
from stalwart.jsonable import jsonable

__all__ = ["LogRankResult", "logrank_test"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class LogRankResult:
    """Result of :func:`logrank_test`.

    Attributes
    ----------
    groups : tuple
        Group labels, sorted; the order of the arrays below.
    n : numpy.ndarray
        Number of subjects per group (R: ``n``).
    observed : numpy.ndarray
        Observed events per group, summed over strata (R: ``obs``, row sums when stratified).
    expected : numpy.ndarray
        Expected events per group under the null (R: ``exp``).
    variance : numpy.ndarray
        ``k x k`` variance matrix of ``observed - expected`` (R: ``var``).
    chi2 : float
        Log-rank chi-square statistic (R: ``chisq``).
    df : int
        Degrees of freedom: groups with positive expected events, minus one.
    p_value : float
        Upper-tail chi-square p-value (R: ``pvalue``).
    n_strata : int
        Number of strata the test was summed over (1 when unstratified).
    """

    groups: tuple[Any, ...]
    n: npt.NDArray[np.int64]
    observed: FloatArray
    expected: FloatArray
    variance: FloatArray
    chi2: float
    df: int
    p_value: float
    n_strata: int

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as JSON-serialisable Python values (non-finite floats become None)."""
        return {f.name: jsonable(getattr(self, f.name)) for f in fields(self)}


def _validate(
    time: npt.ArrayLike, event: npt.ArrayLike
) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    try:
        t = np.asarray(time, dtype=np.float64)
        e = np.asarray(event, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise AnalysisError(f"time and event must be numeric: {exc}") from exc
    if t.ndim != 1 or e.shape != t.shape:
        raise AnalysisError(
            f"time and event must be one-dimensional of equal length, got {t.shape} and {e.shape}"
        )
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(e))):
        raise AnalysisError("time or event contains missing or non-finite values")
    if np.any(t < 0):
        raise AnalysisError("time contains negative values; times must be >= 0")
    if not np.all((e == 0.0) | (e == 1.0)):
        raise AnalysisError("event must contain only 0 (censored) and 1 (event)")
    return t, e == 1.0


def _codes(values: npt.ArrayLike, n: int, name: str) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.size != n:
        raise AnalysisError(f"{name} must be one-dimensional with {n} values, got {arr.shape}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise AnalysisError(f"{name} contains missing values; remove them first")
    if arr.dtype.kind == "O" and any(v is None or v != v for v in arr.tolist()):
        raise AnalysisError(f"{name} contains missing values; remove them first")
    levels, codes = np.unique(arr, return_inverse=True)
    return levels, codes.astype(np.intp)


def _stratum_sums(
    time: FloatArray, event: npt.NDArray[np.bool_], codes: npt.NDArray[np.intp], k: int
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Observed, expected and variance for one stratum, vectorised over distinct times."""
    order = np.argsort(time, kind="stable")
    t, e, g = time[order], event[order], codes[order]
    utime, inverse = np.unique(t, return_inverse=True)
    m = utime.size
    # per (time, group): subjects leaving and events; risk set = reverse cumulative sum
    leaving = np.bincount(inverse * k + g, minlength=m * k).reshape(m, k).astype(np.float64)
    deaths = np.bincount(inverse * k + g, weights=e, minlength=m * k).reshape(m, k)
    at_risk = np.cumsum(leaving[::-1], axis=0)[::-1]
    d_tot = deaths.sum(axis=1)
    keep = d_tot > 0
    at_risk, deaths, d_tot = at_risk[keep], deaths[keep], d_tot[keep]
    n_tot = at_risk.sum(axis=1)
    share = at_risk / n_tot[:, None]
    observed = deaths.sum(axis=0)
    expected = (d_tot[:, None] * share).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(n_tot > 1, d_tot * (n_tot - d_tot) / (n_tot - 1.0), 0.0)
    variance = np.diag((scale[:, None] * share).sum(axis=0)) - (share * scale[:, None]).T @ share
    return observed, expected, variance


def logrank_test(
    time: npt.ArrayLike,
    event: npt.ArrayLike,
    group: npt.ArrayLike,
    strata: npt.ArrayLike | None = None,
) -> LogRankResult:
    """Log-rank test of equal survival across ``k >= 2`` groups, optionally stratified.

    Matches R ``survival::survdiff(Surv(time, event) ~ group)`` and, with ``strata``,
    ``survdiff(Surv(time, event) ~ group + strata(strata))``: observed, expected and variance are
    summed over strata before the chi-square is formed. As in ``survdiff``, groups with zero
    expected events are left out of the statistic and its degrees of freedom.

    Parameters
    ----------
    time : array_like
        Follow-up time per subject, finite and non-negative.
    event : array_like
        1 for an event, 0 for censored.
    group : array_like
        Group label per subject; at least two distinct labels.
    strata : array_like, optional
        Stratum label per subject.

    Returns
    -------
    LogRankResult

    Raises
    ------
    AnalysisError
        Mismatched lengths, invalid values, fewer than two groups, or no events at all.
    """
    t, e = _validate(time, event)
    groups, codes = _codes(group, t.size, "group")
    k = groups.size
    if k < 2:
        raise AnalysisError(f"the log-rank test needs at least two groups, got {k}")
    if not np.any(e):
        raise AnalysisError("there are no events; the log-rank test is undefined")
    if strata is None:
        stratum_codes = np.zeros(t.size, dtype=np.intp)
        n_strata = 1
    else:
        stratum_levels, stratum_codes = _codes(strata, t.size, "strata")
        n_strata = int(stratum_levels.size)
    observed = np.zeros(k)
    expected = np.zeros(k)
    variance = np.zeros((k, k))
    order = np.argsort(stratum_codes, kind="stable")
    for rows in np.split(order, np.flatnonzero(np.diff(stratum_codes[order])) + 1):
        o, ex, v = _stratum_sums(t[rows], e[rows], codes[rows], k)
        observed += o
        expected += ex
        variance += v
    chi2, df = _chi_square(observed, expected, variance)
    return LogRankResult(
        groups=tuple(groups.tolist()),
        n=np.bincount(codes, minlength=k).astype(np.int64),
        observed=observed,
        expected=expected,
        variance=variance,
        chi2=chi2,
        df=df,
        p_value=float(chi2_sf(chi2, df)) if df > 0 else math.nan,
        n_strata=n_strata,
    )


def _chi_square(
    observed: FloatArray, expected: FloatArray, variance: FloatArray
) -> tuple[float, int]:
    """R ``survdiff``: drop groups with zero expected, then the first of the rest."""
    used = np.flatnonzero(expected > 0)
    df = int(used.size) - 1
    if df < 1:
        return 0.0, 0
    diff = (observed - expected)[used][1:]
    v = variance[np.ix_(used, used)][1:, 1:]
    try:
        solved = linalg.solve(v, diff, assume_a="pos")
    except linalg.LinAlgError as exc:
        raise AnalysisError(f"the log-rank variance matrix is singular: {exc}") from exc
    return float(diff @ solved), df
