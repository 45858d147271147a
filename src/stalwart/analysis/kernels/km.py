"""Kaplan-Meier estimate of a survival curve with Greenwood standard errors.

Matches R ``survival::survfit(Surv(time, event) ~ 1, conf.type = "log-log")``: one row per
distinct observed time (event or censoring), Greenwood's variance, log-log ("exponential
Greenwood") pointwise confidence limits (or R's "log" and "plain" ones), and the median and other
quantiles with confidence intervals computed from the pointwise limits exactly as
``quantile.survfit`` (and so ``print.survfit``) does, including the midpoint rule when the curve
is flat at the requested level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from stalwart.analysis.kernels._distributions import norm_ppf
from stalwart.errors import AnalysisError
from stalwart.jsonable import jsonable

__all__ = ["ConfType", "KaplanMeierResult", "kaplan_meier", "number_at_risk"]

ConfType = Literal["log-log", "log", "plain"]

_QUANTILE_TOL = math.sqrt(np.finfo(np.float64).eps)  # R: quantile.survfit(tolerance=)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class KaplanMeierResult:
    """Kaplan-Meier table, median and pointwise confidence limits.

    Array fields have one entry per row of the table: the distinct observed times (R:
    ``fit$time``), or the requested ``at`` times when those were given (R:
    ``summary(fit, times = at, extend = TRUE)``).

    Attributes
    ----------
    time : numpy.ndarray
        Times of the rows.
    n_at_risk : numpy.ndarray
        Number still under observation just before each time (R: ``n.risk``).
    n_events, n_censored : numpy.ndarray
        Events and censorings at each time (R: ``n.event``, ``n.censor``); with ``at``, the
        counts in the interval since the previous requested time.
    survival : numpy.ndarray
        Kaplan-Meier estimate ``S(t)`` (R: ``surv``).
    std_err : numpy.ndarray
        Greenwood standard error of ``S(t)`` itself, i.e. ``S(t)`` times R's ``fit$std.err``
        (which is on the log scale); this is the ``std.err`` column of R's ``summary(fit)``.
        NaN where ``S(t) == 0``, as in R.
    ci_low, ci_high : numpy.ndarray
        Pointwise ``1 - alpha`` limits (R: ``lower``, ``upper``) of type ``conf_type``; for
        log-log NaN where ``S(t)`` is 0 or 1, for "log" NaN where ``S(t)`` is 0, as in R.
    median : float
        Smallest time with ``S(t) <= 0.5`` (midpoint of the flat part when ``S`` equals 0.5 over
        an interval); NaN if the curve never reaches 0.5.
    median_ci_low, median_ci_high : float
        Confidence limits of the median: where the lower and the upper pointwise limit curves
        reach 0.5 (R: ``quantile(fit, 0.5)$lower`` / ``$upper``); NaN if not reached.
    n : int
        Number of observations.
    events : int
        Total number of events.
    alpha : float
        One minus the confidence level.
    conf_type : str
        Type of the pointwise limits: ``"log-log"`` (default), ``"log"`` (R's default) or
        ``"plain"`` (R ``conf.type``).
    quantile_probs : numpy.ndarray
        Probabilities ``p`` of the reported quantiles (R ``quantile(fit, probs)``).
    quantiles : numpy.ndarray
        Smallest time with ``S(t) <= 1 - p`` (R's midpoint rule on flat parts); NaN if the
        curve never gets there.
    quantile_ci_low, quantile_ci_high : numpy.ndarray
        Confidence limits of the quantiles, from the lower and upper pointwise limit curves
        (R: ``quantile(fit, probs)$lower`` / ``$upper``).
    print_median, print_median_ci_low, print_median_ci_high : float
        The median and limits as ``print(fit)`` (``summary(fit)$table``) shows them. R uses a
        different rule there: it equals ``median`` except when a curve ends flat at exactly
        0.5, where ``print`` gives the time it reached 0.5 and ``quantile`` the midpoint of that
        time and the last one.
    """

    time: FloatArray
    n_at_risk: IntArray
    n_events: IntArray
    n_censored: IntArray
    survival: FloatArray
    std_err: FloatArray
    ci_low: FloatArray
    ci_high: FloatArray
    median: float
    median_ci_low: float
    median_ci_high: float
    n: int
    events: int
    alpha: float
    conf_type: str = "log-log"
    quantile_probs: FloatArray = field(default_factory=lambda: np.empty(0))
    quantiles: FloatArray = field(default_factory=lambda: np.empty(0))
    quantile_ci_low: FloatArray = field(default_factory=lambda: np.empty(0))
    quantile_ci_high: FloatArray = field(default_factory=lambda: np.empty(0))
    print_median: float = math.nan
    print_median_ci_low: float = math.nan
    print_median_ci_high: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as JSON-serialisable Python values (non-finite floats become None)."""
        return {f.name: jsonable(getattr(self, f.name)) for f in fields(self)}


def _times(values: npt.ArrayLike, name: str) -> FloatArray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise AnalysisError(f"{name} must be numeric: {exc}") from exc
    if arr.ndim != 1:
        raise AnalysisError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise AnalysisError(f"{name} contains missing or non-finite values; remove them first")
    if np.any(arr < 0):
        raise AnalysisError(f"{name} contains negative values; times must be >= 0")
    return arr


def _events(values: npt.ArrayLike, n: int) -> npt.NDArray[np.bool_]:
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.size != n:
        raise AnalysisError(f"event must be one-dimensional with {n} values, got shape {arr.shape}")
    if arr.dtype == np.bool_:
        return arr.astype(np.bool_)
    try:
        num = arr.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise AnalysisError(f"event must be 0/1 or boolean: {exc}") from exc
    if not np.all((num == 0.0) | (num == 1.0)):
        raise AnalysisError("event must contain only 0 (censored) and 1 (event)")
    flags: npt.NDArray[np.bool_] = num == 1.0
    return flags


def number_at_risk(time: npt.ArrayLike, at_times: npt.ArrayLike) -> IntArray:
    """Number of subjects still at risk (observed time ``>= t``) at each of ``at_times``.

    This is the "number at risk" row printed under Kaplan-Meier plots (R:
    ``summary(survfit(...), times = at_times)$n.risk``).

    Parameters
    ----------
    time : array_like
        Observed (event or censoring) times, non-negative and finite.
    at_times : array_like
        Times at which to count, any order.

    Returns
    -------
    numpy.ndarray
        Integer counts, same shape as ``at_times``.
    """
    sorted_time = np.sort(_times(time, "time"))
    at = np.asarray(at_times, dtype=np.float64)
    if np.any(np.isnan(at)):
        raise AnalysisError("at_times contains missing values")
    left = np.searchsorted(sorted_time, at, side="left")
    return (sorted_time.size - left).astype(np.int64)


def _loglog_limits(
    surv: FloatArray, se_log: FloatArray, alpha: float
) -> tuple[FloatArray, FloatArray]:
    """R ``survfit_confint(conf.type = "log-log")``; NaN where ``S`` is 0 or 1."""
    z = float(norm_ppf(1.0 - alpha / 2.0))
    ok = (surv > 0.0) & (surv < 1.0)
    xx = np.where(ok, surv, 0.5)
    log_s = np.log(xx)
    se2 = z * np.where(ok, se_log, 0.0) / log_s
    with np.errstate(over="ignore"):
        lower = np.exp(-np.exp(np.log(-log_s) - se2))
        upper = np.exp(-np.exp(np.log(-log_s) + se2))
    return np.where(ok, lower, np.nan), np.where(ok, upper, np.nan)


def _confidence_limits(
    surv: FloatArray, se_log: FloatArray, alpha: float, conf_type: str
) -> tuple[FloatArray, FloatArray]:
    """R ``survfit_confint(surv, std.err, logse = TRUE, conf.type)`` with the upper cap at 1."""
    if conf_type == "log-log":
        return _loglog_limits(surv, se_log, alpha)
    z = float(norm_ppf(1.0 - alpha / 2.0))
    with np.errstate(invalid="ignore", over="ignore"):
        if conf_type == "log":
            positive = surv > 0.0
            log_s = np.log(np.where(positive, surv, 1.0))
            lower = np.where(positive, np.exp(log_s - z * se_log), np.nan)
            upper = np.where(positive, np.minimum(np.exp(log_s + z * se_log), 1.0), np.nan)
            return lower, upper
        half_width = z * se_log * surv  # NaN where S == 0 (0 * inf), as R
        return np.maximum(surv - half_width, 0.0), np.minimum(surv + half_width, 1.0)


def _first_at_or_above(levels: FloatArray, target: float) -> int | None:
    """R ``approx(levels, 1:n, target, method = "constant", f = 1)`` on sorted ``levels``."""
    if target < levels[0] or target > levels[-1]:
        return None
    return int(np.searchsorted(levels, target, side="left"))


def _quantile_times(times: FloatArray, curve: FloatArray, probs: FloatArray) -> FloatArray:
    """Times where ``1 - curve`` reaches each of ``probs``: a port of R's ``survival:::findq``."""
    result = np.full(probs.size, math.nan)
    x = np.concatenate(([0.0], times))
    y = np.concatenate(([0.0], 1.0 - curve))
    finite = ~np.isnan(y)
    if probs.size == 0 or not np.any(finite) or np.max(y[finite]) < np.min(probs):
        return result
    xmax = float(x[-1])
    _, first = np.unique(y, return_index=True)  # R: y[!duplicated(y)]; one NaN kept
    keep = np.sort(first)
    x, y = x[keep], y[keep]
    valid = np.flatnonzero(~np.isnan(y))  # approx() drops NA pairs
    order = valid[np.argsort(y[valid], kind="stable")]
    levels = y[order]
    for j, p in enumerate(probs.tolist()):
        i1 = _first_at_or_above(levels + _QUANTILE_TOL, p)
        i2 = _first_at_or_above(levels - _QUANTILE_TOL, p)
        if p == 0.0:
            result[j] = x[0]
        elif not np.isnan(y[-1]) and abs(p - y[-1]) < _QUANTILE_TOL:
            result[j] = (float(x[order[i1]]) + xmax) / 2.0 if i1 is not None else math.nan
        elif i1 is not None and i2 is not None:
            result[j] = (float(x[order[i1]]) + float(x[order[i2]])) / 2.0
    return result


def _print_median(times: FloatArray, curve: FloatArray) -> float:
    """Median as ``print.survfit`` shows it: a port of ``minmin`` in R's ``survival:::survmean``."""
    keep = ~np.isnan(curve) & (curve < 0.5 + _QUANTILE_TOL)
    if not np.any(keep):
        return math.nan
    x, y = times[keep], curve[keep]
    lower = np.flatnonzero(y < y[0])
    if abs(y[0] - 0.5) < _QUANTILE_TOL and lower.size:
        return (float(x[0]) + float(x[lower[0]])) / 2.0
    return float(x[0])


def _table(
    time: FloatArray, event: npt.NDArray[np.bool_]
) -> tuple[FloatArray, IntArray, IntArray, IntArray]:
    order = np.argsort(time, kind="stable")
    sorted_time = time[order]
    utime, first, counts = np.unique(sorted_time, return_index=True, return_counts=True)
    n_events = np.add.reduceat(event[order].astype(np.int64), first)
    n_censored = counts - n_events
    n_risk = time.size - (np.cumsum(counts) - counts)
    return utime, n_risk.astype(np.int64), n_events.astype(np.int64), n_censored.astype(np.int64)


def _at_rows(
    at: npt.ArrayLike,
    time: FloatArray,
    utime: FloatArray,
    columns: tuple[IntArray, IntArray, FloatArray, FloatArray, FloatArray, FloatArray],
) -> tuple[
    FloatArray, IntArray, IntArray, IntArray, FloatArray, FloatArray, FloatArray, FloatArray
]:
    """Evaluate the table at requested times (R ``summary(fit, times = at, extend = TRUE)``)."""
    at_arr = np.asarray(at, dtype=np.float64).ravel()
    if at_arr.size == 0 or not np.all(np.isfinite(at_arr)):
        raise AnalysisError("at must be a non-empty array of finite times")
    at_arr = np.unique(at_arr)
    d, c, surv, se, low, high = columns
    idx = np.searchsorted(utime, at_arr, side="right") - 1
    cum_d = np.concatenate(([0], np.cumsum(d)))[idx + 1]
    cum_c = np.concatenate(([0], np.cumsum(c)))[idx + 1]
    before = idx < 0
    safe = np.maximum(idx, 0)

    def pick(values: FloatArray, initial: float) -> FloatArray:
        return np.where(before, initial, values[safe])

    return (
        at_arr,
        number_at_risk(time, at_arr),
        np.diff(cum_d, prepend=0).astype(np.int64),
        np.diff(cum_c, prepend=0).astype(np.int64),
        pick(surv, 1.0),
        pick(se, 0.0),
        pick(low, 1.0),  # R: limits are 1 before the first observed time
        pick(high, 1.0),
    )


def kaplan_meier(
    time: npt.ArrayLike,
    event: npt.ArrayLike,
    alpha: float = 0.05,
    at: npt.ArrayLike | None = None,
    *,
    conf_type: ConfType = "log-log",
    probs: npt.ArrayLike = (0.25, 0.5, 0.75),
) -> KaplanMeierResult:
    """Kaplan-Meier survival estimate with Greenwood variance and log-log confidence limits.

    Matches R ``survfit(Surv(time, event) ~ 1, conf.type = conf_type, conf.int = 1 - alpha)``;
    the median and its limits match ``quantile(fit, 0.5)``, the other quantiles
    ``quantile(fit, probs)``, and ``print_median*`` what ``print(fit)`` shows.

    Parameters
    ----------
    time : array_like
        Follow-up time per subject, finite and non-negative.
    event : array_like
        1 (or True) for an event, 0 (or False) for a censored time.
    alpha : float, default 0.05
        One minus the confidence level of the pointwise limits.
    at : array_like, optional
        If given, report the table at these times instead of at every observed time (sorted,
        duplicates removed), like R ``summary(fit, times = at, extend = TRUE)``: the step
        function's value at each time, the number at risk there, and the events and
        censorings since the previous requested time. The median uses the full curve.
    conf_type : {"log-log", "log", "plain"}, default "log-log"
        Type of the pointwise confidence limits (R ``conf.type``); the quantiles' limits follow.
    probs : array_like, default (0.25, 0.5, 0.75)
        Probabilities of the quantiles to report, in ``[0, 1]``.

    Returns
    -------
    KaplanMeierResult

    Raises
    ------
    AnalysisError
        Empty input, mismatched lengths, non-finite or negative times, event values other
        than 0/1, an unknown ``conf_type`` or probabilities outside ``[0, 1]``.
    """
    if not 0.0 < alpha < 1.0:
        raise AnalysisError(f"alpha must lie strictly between 0 and 1, got {alpha}")
    if conf_type not in ("log-log", "log", "plain"):
        raise AnalysisError(f"conf_type must be 'log-log', 'log' or 'plain', got {conf_type!r}")
    try:
        quantile_probs = np.asarray(probs, dtype=np.float64).ravel()
    except (TypeError, ValueError) as exc:
        raise AnalysisError(f"probs must be numeric probabilities: {exc}") from exc
    if np.any(np.isnan(quantile_probs)) or np.any((quantile_probs < 0) | (quantile_probs > 1)):
        raise AnalysisError("probs must lie in [0, 1]")
    t = _times(time, "time")
    if t.size == 0:
        raise AnalysisError("Kaplan-Meier needs at least one observation")
    e = _events(event, t.size)
    utime, n_risk, n_events, n_censored = _table(t, e)
    with np.errstate(divide="ignore", invalid="ignore"):
        surv: FloatArray = np.cumprod((n_risk - n_events) / n_risk, dtype=np.float64)
        terms = np.where(n_events > 0, n_events / (n_risk * (n_risk - n_events)), 0.0)
        se_log: FloatArray = np.sqrt(np.cumsum(terms, dtype=np.float64))
        std_err: FloatArray = np.where(surv > 0.0, surv * se_log, math.nan)
    ci_low, ci_high = _confidence_limits(surv, se_log, alpha, conf_type)
    median, median_low, median_high = (
        float(_quantile_times(utime, curve, np.array([0.5]))[0])
        for curve in (surv, ci_low, ci_high)
    )
    printed = [_print_median(utime, curve) for curve in (surv, ci_low, ci_high)]
    quantiles = _quantile_times(utime, surv, quantile_probs)
    quantile_low = _quantile_times(utime, ci_low, quantile_probs)
    quantile_high = _quantile_times(utime, ci_high, quantile_probs)
    if at is not None:
        columns = (n_events, n_censored, surv, std_err, ci_low, ci_high)
        utime, n_risk, n_events, n_censored, surv, std_err, ci_low, ci_high = _at_rows(
            at, t, utime, columns
        )
    return KaplanMeierResult(
        time=utime,
        n_at_risk=n_risk,
        n_events=n_events,
        n_censored=n_censored,
        survival=surv,
        std_err=std_err,
        ci_low=ci_low,
        ci_high=ci_high,
        median=median,
        median_ci_low=median_low,
        median_ci_high=median_high,
        n=int(t.size),
        events=int(np.count_nonzero(e)),
        alpha=float(alpha),
        conf_type=conf_type,
        quantile_probs=quantile_probs,
        quantiles=quantiles,
        quantile_ci_low=quantile_low,
        quantile_ci_high=quantile_high,
        print_median=printed[0],
        print_median_ci_low=printed[1],
        print_median_ci_high=printed[2],
    )
