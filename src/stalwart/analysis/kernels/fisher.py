"""Fisher's exact test on 2x2 tables, vectorised over many tables (one per adverse-event term).

Matches R ``fisher.test(table)`` for a 2x2 table: the two-sided p-value sums the probabilities of
all tables (same margins) no more likely than the observed one (relative tolerance ``1e-7``); the
odds ratio is the conditional maximum-likelihood estimate under the noncentral hypergeometric
distribution, and its confidence interval inverts the two one-sided exact tests. R finds the last
two with ``uniroot`` at its default tolerance (about ``1e-4``); here the roots are solved to
machine precision, so R's printed estimate and limits agree to about 4 significant digits and the
exact roots of R's equations to ``1e-9``.

Layout as in R: ``table[0, 0]`` is ``a``; the odds ratio is ``(a * d) / (b * c)``. For adverse
events, :func:`fisher_exact_proportions` builds the tables from counts per arm.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy import special

from stalwart.analysis.kernels._distributions import norm_isf
from stalwart.errors import AnalysisError
from stalwart.jsonable import jsonable

__all__ = ["FisherExactResult", "fisher_exact", "fisher_exact_proportions"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
Alternative = Literal["two-sided", "less", "greater"]

_REL_ERR = 1.0 + 1e-7  # R fisher.test: tables "as likely" within this factor
_MAX_ITER = 200


@dataclass(frozen=True)
class FisherExactResult:
    """Result of :func:`fisher_exact`; arrays have the tables' leading shape (0-d for one table).

    Attributes
    ----------
    tables : numpy.ndarray
        The tables tested, shape ``(..., 2, 2)``.
    p_value : numpy.ndarray
        Exact p-value for ``alternative`` (R: ``p.value``).
    odds_ratio : numpy.ndarray
        Conditional maximum-likelihood odds ratio (R: ``estimate``): 0 when ``a`` is at its
        smallest possible value given the margins (also when the margins allow one table only,
        as R), ``inf`` at its largest.
    ci_low, ci_high : numpy.ndarray
        Exact conditional confidence limits of the odds ratio (R: ``conf.int``).
    sample_odds_ratio : numpy.ndarray
        Unconditional ``(a * d) / (b * c)``, for reference (not what R reports).
    alternative : str
        ``"two-sided"``, ``"less"`` or ``"greater"``.
    conf_level : float
        Confidence level of the interval.
    """

    tables: IntArray
    p_value: FloatArray
    odds_ratio: FloatArray
    ci_low: FloatArray
    ci_high: FloatArray
    sample_odds_ratio: FloatArray
    alternative: str
    conf_level: float

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as JSON-serialisable Python values (non-finite floats become None)."""
        return {f.name: jsonable(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class _Support:
    """Padded supports of the conditional distributions of ``a``, one row per table."""

    values: FloatArray  # (m, L) possible values of a, padded with the last one
    log_weight: FloatArray  # (m, L) log dhyper + constant; -inf in the padding
    observed: FloatArray  # (m,) a
    low: FloatArray  # (m,) smallest possible a
    high: FloatArray  # (m,) largest possible a
    log_or: FloatArray  # (m,) log sample odds ratio with 0.5 added to each cell: Newton's start
    log_or_se: FloatArray  # (m,) its Woolf standard error

    def probabilities(self, log_ncp: FloatArray) -> FloatArray:
        """Noncentral hypergeometric probabilities (R ``dnhyper``) for each row's ``log_ncp``."""
        logits = self.log_weight + log_ncp[:, None] * self.values
        logits -= np.max(logits, axis=1, keepdims=True)
        weights = np.exp(logits)
        result: FloatArray = weights / weights.sum(axis=1, keepdims=True)
        return result


def _support(a: IntArray, m: IntArray, n: IntArray, k: IntArray) -> _Support:
    """Support of ``a`` given the margins: ``m`` first column, ``n`` second column, ``k`` row 1."""
    low = np.maximum(0, k - n)
    high = np.minimum(k, m)
    width = int(np.max(high - low, initial=0)) + 1
    offsets = np.arange(width)
    values = low[:, None] + offsets[None, :]
    padding = values > high[:, None]
    values = np.minimum(values, high[:, None])
    # log dhyper(values, m, n, k) up to a per-table constant (the rows are normalised later)
    col1, col2, row1 = m[:, None], n[:, None], k[:, None]
    log_weight = -(
        special.gammaln(values + 1.0)
        + special.gammaln(col1 - values + 1.0)
        + special.gammaln(row1 - values + 1.0)
        + special.gammaln(col2 - row1 + values + 1.0)
    )
    log_weight = np.where(padding, -np.inf, log_weight)
    cells = np.stack([a, k - a, m - a, n - k + a]).astype(np.float64) + 0.5
    return _Support(
        values=values.astype(np.float64),
        log_weight=log_weight.astype(np.float64),
        observed=a.astype(np.float64),
        low=low.astype(np.float64),
        high=high.astype(np.float64),
        log_or=np.log(cells[0] * cells[3] / (cells[1] * cells[2])),
        log_or_se=np.sqrt(np.sum(1.0 / cells, axis=0)),
    )


def _solve_increasing(
    func: Callable[[FloatArray], tuple[FloatArray, FloatArray]],
    target: FloatArray,
    active: BoolArray,
    start: FloatArray,
) -> FloatArray:
    """Solve ``func(theta) = target`` for increasing ``func`` row by row (safeguarded Newton).

    ``func`` returns values and derivatives; Newton starts at ``start`` and falls back to
    bisection outside the bracket; rows not ``active`` are left at NaN.
    """
    lower = np.full(target.shape, -50.0)
    upper = np.full(target.shape, 50.0)
    for _ in range(12):  # widen brackets that do not contain the root (extreme tables)
        below = func(lower)[0] > target
        above = func(upper)[0] < target
        if not np.any(active & (below | above)):
            break
        lower = np.where(below, 2.0 * lower, lower)
        upper = np.where(above, 2.0 * upper, upper)
    theta = np.clip(start, lower, upper)
    todo = active.copy()
    for _ in range(_MAX_ITER):
        value, slope = func(theta)
        gap = value - target
        upper = np.where(gap > 0, theta, upper)
        lower = np.where(gap <= 0, theta, lower)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            newton = -gap / slope
        done = np.isfinite(newton) & (np.abs(newton) <= 1e-12 * (1.0 + np.abs(theta)))
        inside = np.isfinite(newton) & (theta + newton > lower) & (theta + newton < upper)
        step = np.where(inside | done, newton, 0.5 * (lower + upper) - theta)
        theta = theta + np.where(todo, step, 0.0)
        todo &= ~done & (upper - lower > 1e-14)
        if not np.any(todo):
            break
    return np.where(active, theta, np.nan)


def _mle(sup: _Support) -> FloatArray:
    """R ``fisher.test``'s conditional MLE of the odds ratio."""

    def mean(theta: FloatArray) -> tuple[FloatArray, FloatArray]:
        prob = sup.probabilities(theta)
        mu = np.sum(prob * sup.values, axis=1)
        var = np.sum(prob * (sup.values - mu[:, None]) ** 2, axis=1)
        return mu, var

    interior = (sup.observed > sup.low) & (sup.observed < sup.high)
    theta = _solve_increasing(mean, sup.observed, interior, sup.log_or)
    estimate = np.where(sup.observed == sup.high, np.inf, np.exp(theta))
    result: FloatArray = np.where(sup.observed == sup.low, 0.0, estimate)  # R tests lo first
    return result


def _upper_tail_root(sup: _Support, tail: float, upper: bool) -> FloatArray:
    """Odds ratio where ``P(X >= a)`` (``upper``) or ``-P(X <= a)`` equals ``tail`` (or ``-tail``).

    ``P(X >= a)`` increases with the log odds ratio; ``P(X <= a)`` decreases.
    """
    sign = 1.0 if upper else -1.0
    mask = sup.values >= sup.observed[:, None] if upper else sup.values <= sup.observed[:, None]

    def tail_prob(theta: FloatArray) -> tuple[FloatArray, FloatArray]:
        prob = sup.probabilities(theta)
        mu = np.sum(prob * sup.values, axis=1)
        in_tail = np.where(mask, prob, 0.0)
        p_tail = in_tail.sum(axis=1)
        slope = np.sum(in_tail * sup.values, axis=1) - p_tail * mu  # Cov(1{tail}, X)
        return sign * p_tail, sign * slope

    edge = sup.low if upper else sup.high
    active = sup.observed != edge
    z = float(norm_isf(tail))
    start = sup.log_or - sign * z * sup.log_or_se  # Woolf's limit
    theta = _solve_increasing(tail_prob, np.full(sup.observed.shape, sign * tail), active, start)
    return np.where(active, np.exp(theta), 0.0 if upper else np.inf)


def _two_sided_p(sup: _Support) -> FloatArray:
    prob = sup.probabilities(np.zeros(sup.observed.shape))
    at_observed = np.sum(np.where(sup.values == sup.observed[:, None], prob, 0.0), axis=1)
    # padding repeats the last support value with weight 0, so it never adds to the sum
    as_likely = prob <= at_observed[:, None] * _REL_ERR
    result: FloatArray = np.minimum(1.0, np.sum(np.where(as_likely, prob, 0.0), axis=1))
    return result


def _tables(table: npt.ArrayLike) -> IntArray:
    try:
        arr = np.asarray(table, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise AnalysisError(f"table must hold numeric counts: {exc}") from exc
    if arr.ndim < 2 or arr.shape[-2:] != (2, 2):
        raise AnalysisError(f"table must have shape (2, 2) or (..., 2, 2), got {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0) or np.any(arr != np.round(arr)):
        raise AnalysisError("table must hold finite, non-negative whole-number counts")
    return arr.astype(np.int64)


def fisher_exact(
    table: npt.ArrayLike,
    *,
    alternative: Alternative = "two-sided",
    conf_level: float = 0.95,
) -> FisherExactResult:
    """Fisher's exact test, conditional MLE odds ratio and its exact CI for 2x2 table(s).

    Matches R ``fisher.test(table, alternative = alternative, conf.level = conf_level)``
    (``p.value``, ``estimate``, ``conf.int``), computed for every table at once.

    Parameters
    ----------
    table : array_like
        Counts of shape ``(2, 2)`` or ``(..., 2, 2)`` (e.g. one table per adverse-event term).
    alternative : {"two-sided", "less", "greater"}
        Alternative for the odds ratio against 1, as R's ``alternative``.
    conf_level : float, default 0.95
        Confidence level of the interval.

    Returns
    -------
    FisherExactResult

    Raises
    ------
    AnalysisError
        Counts that are negative, fractional or non-finite; a wrong shape; bad options.
    """
    if alternative not in ("two-sided", "less", "greater"):
        raise AnalysisError(
            f"alternative must be 'two-sided', 'less' or 'greater', got {alternative!r}"
        )
    if not 0.0 < conf_level < 1.0:
        raise AnalysisError(f"conf_level must lie strictly between 0 and 1, got {conf_level}")
    tables = _tables(table)
    shape = tables.shape[:-2]
    flat = tables.reshape(-1, 2, 2)
    a, b, c, d = flat[:, 0, 0], flat[:, 0, 1], flat[:, 1, 0], flat[:, 1, 1]
    sup = _support(a, a + c, b + d, a + b)
    if alternative == "two-sided":
        p_value = _two_sided_p(sup)
        tail = (1.0 - conf_level) / 2.0
        ci_low = _upper_tail_root(sup, tail, upper=True)
        ci_high = _upper_tail_root(sup, tail, upper=False)
    else:
        prob = sup.probabilities(np.zeros(a.shape))
        observed = sup.observed[:, None]
        if alternative == "less":
            p_value = np.sum(np.where(sup.values <= observed, prob, 0.0), axis=1)
            ci_low = np.zeros(a.shape)
            ci_high = _upper_tail_root(sup, 1.0 - conf_level, upper=False)
        else:
            p_value = np.sum(np.where(sup.values >= observed, prob, 0.0), axis=1)
            ci_low = _upper_tail_root(sup, 1.0 - conf_level, upper=True)
            ci_high = np.full(a.shape, np.inf)
        p_value = np.minimum(p_value, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        sample = (a * d) / (b * c).astype(np.float64)
    return FisherExactResult(
        tables=tables,
        p_value=p_value.reshape(shape),
        odds_ratio=_mle(sup).reshape(shape),
        ci_low=np.asarray(ci_low, dtype=np.float64).reshape(shape),
        ci_high=np.asarray(ci_high, dtype=np.float64).reshape(shape),
        sample_odds_ratio=np.asarray(sample, dtype=np.float64).reshape(shape),
        alternative=alternative,
        conf_level=float(conf_level),
    )


def fisher_exact_proportions(
    events1: npt.ArrayLike,
    n1: npt.ArrayLike,
    events2: npt.ArrayLike,
    n2: npt.ArrayLike,
    *,
    alternative: Alternative = "two-sided",
    conf_level: float = 0.95,
) -> FisherExactResult:
    """Compare two proportions (e.g. participants with an adverse event, per term) exactly.

    Builds, for each term, the table ``[[events1, events2], [n1 - events1, n2 - events2]]`` (arms
    in columns, as R ``fisher.test(matrix(c(x1, n1 - x1, x2, n2 - x2), 2))``), so the odds ratio
    is the odds of an event in arm 1 over the odds in arm 2. Inputs broadcast.

    Raises
    ------
    AnalysisError
        Event counts above their denominators, or any count invalid for :func:`fisher_exact`.
    """
    try:
        x1, m1, x2, m2 = np.broadcast_arrays(
            np.asarray(events1, dtype=np.float64),
            np.asarray(n1, dtype=np.float64),
            np.asarray(events2, dtype=np.float64),
            np.asarray(n2, dtype=np.float64),
        )
    except (TypeError, ValueError) as exc:
        raise AnalysisError(
            f"events and denominators must be numeric and broadcast: {exc}"
        ) from exc
    if np.any(x1 > m1) or np.any(x2 > m2):
        raise AnalysisError("an event count exceeds its arm's number of participants")
    table = np.stack([np.stack([x1, x2], axis=-1), np.stack([m1 - x1, m2 - x2], axis=-1)], axis=-2)
    return fisher_exact(table, alternative=alternative, conf_level=conf_level)
