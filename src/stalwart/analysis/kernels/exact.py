"""Exact conditional test comparing two Poisson event rates (few events, person-time known).

With ``d1`` events in person-time ``t1`` and ``d0`` events in ``t0``, and rates in ratio ``r``
(the rate in group 1 over the rate in group 0), the count ``d1`` given the total ``d = d1 + d0``
is ``Binomial(d, pi)`` with ``pi = r * t1 / (r * t1 + t0)``. The test of ``H0: r = ratio`` is the
exact binomial test of ``pi``, and the Clopper-Pearson interval for ``pi`` maps to an exact interval
for the rate ratio through ``r = pi / (1 - pi) * t0 / t1``. This is R's
``poisson.test(c(d1, d0), c(t1, t0), r = ratio)`` (which calls ``binom.test``).

Two-sided p-values come in three conventions, all reported:

* ``p_value``: R's ``binom.test`` rule, the sum of the probabilities of all outcomes no more likely
  than the observed one (relative tolerance ``1e-7``); the default, as in R.
* ``p_value_central``: twice the smaller one-sided p-value, capped at 1 (the "doubling" rule; it
  matches the central Clopper-Pearson interval).
* ``mid_p``: twice the smaller one-sided mid-p-value ``P(X < x) + P(X = x) / 2`` (or the
  ``>`` analogue), capped at 1 (Lancaster's mid-p, doubled).

Every input broadcasts, so one call tests many replicate trials (the Monte Carlo engine's use).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from stalwart.analysis.kernels._distributions import beta_ppf, binom_cdf, binom_pmf, binom_sf
from stalwart.errors import AnalysisError
from stalwart.jsonable import jsonable

__all__ = ["Alternative", "RateRatioTestResult", "binomial_two_sided_p", "rate_ratio_exact_test"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Alternative = Literal["two-sided", "less", "greater"]

_REL_ERR = 1.0 + 1e-7  # R binom.test / fisher.test: outcomes "as likely" within this factor


@dataclass(frozen=True)
class RateRatioTestResult:
    """Result of :func:`rate_ratio_exact_test`; every array has the broadcast shape of the inputs.

    Attributes
    ----------
    events1, events0 : numpy.ndarray
        Event counts ``d1`` and ``d0``.
    person_time1, person_time0 : numpy.ndarray
        Person-time ``t1`` and ``t0``.
    rate_ratio : numpy.ndarray
        ``(d1 / t1) / (d0 / t0)`` (R: ``estimate``); ``inf`` when ``d0 = 0``, NaN when no events.
    ci_low, ci_high : numpy.ndarray
        Exact (Clopper-Pearson, transformed) confidence limits of the rate ratio (R: ``conf.int``).
    p_value : numpy.ndarray
        p-value for ``alternative``; two-sided by R's ``binom.test`` rule (R: ``p.value``).
    p_value_central : numpy.ndarray
        Two-sided: twice the smaller one-sided p-value, capped at 1; one-sided: as ``p_value``.
    mid_p : numpy.ndarray
        Mid-p-value: one-sided ``P(X more extreme) + P(X = x) / 2``; two-sided, twice the smaller
        of the two, capped at 1.
    null_probability : numpy.ndarray
        ``pi`` under the null, ``ratio * t1 / (ratio * t1 + t0)`` (the binomial ``p``).
    expected_events1 : numpy.ndarray
        ``(d1 + d0) * pi``, events expected in group 1 under the null.
    ratio : float
        Rate ratio under the null hypothesis.
    alternative : str
        ``"two-sided"``, ``"less"`` (``r < ratio``) or ``"greater"`` (``r > ratio``).
    conf_level : float
        Confidence level of the interval.
    """

    events1: IntArray
    events0: IntArray
    person_time1: FloatArray
    person_time0: FloatArray
    rate_ratio: FloatArray
    ci_low: FloatArray
    ci_high: FloatArray
    p_value: FloatArray
    p_value_central: FloatArray
    mid_p: FloatArray
    null_probability: FloatArray
    expected_events1: FloatArray
    ratio: float
    alternative: str
    conf_level: float

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as JSON-serialisable Python values (non-finite floats become None)."""
        return {f.name: jsonable(getattr(self, f.name)) for f in fields(self)}


def _counts(values: npt.ArrayLike, name: str) -> IntArray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise AnalysisError(f"{name} must be numeric event counts: {exc}") from exc
    if not np.all(np.isfinite(arr)) or np.any(arr < 0) or np.any(arr != np.round(arr)):
        raise AnalysisError(f"{name} must hold finite, non-negative whole numbers of events")
    return arr.astype(np.int64)


def _person_time(values: npt.ArrayLike, name: str) -> FloatArray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise AnalysisError(f"{name} must be numeric person-time: {exc}") from exc
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise AnalysisError(f"{name} must be finite and positive (person-time at risk)")
    return arr


def binomial_two_sided_p(x: IntArray, n: IntArray, p: FloatArray) -> FloatArray:
    """R ``binom.test(x, n, p)$p.value`` (two-sided), vectorised over broadcast arrays.

    Sums the probabilities of the outcomes no more likely than ``x`` (within a relative ``1e-7``),
    using R's split of the support at the mean ``n * p``.
    """
    x, n, p = np.broadcast_arrays(x, n, p)
    flat_x, flat_n, flat_p = x.ravel(), n.ravel(), p.ravel()
    support = np.arange(int(flat_n.max(initial=0)) + 1)
    pmf = binom_pmf(support[None, :], flat_n[:, None], flat_p[:, None])  # 0 beyond n
    inside = support[None, :] <= flat_n[:, None]
    observed = binom_pmf(flat_x, flat_n, flat_p)
    mean = flat_n * flat_p
    as_likely = inside & (pmf <= observed[:, None] * _REL_ERR)
    above = np.count_nonzero(as_likely & (support[None, :] >= np.ceil(mean)[:, None]), axis=1)
    below = np.count_nonzero(as_likely & (support[None, :] <= np.floor(mean)[:, None]), axis=1)
    low_side = binom_cdf(flat_x, flat_n, flat_p) + binom_sf(flat_n - above, flat_n, flat_p)
    high_side = binom_cdf(below - 1, flat_n, flat_p) + binom_sf(flat_x - 1, flat_n, flat_p)
    two_sided = np.where(flat_x < mean, low_side, high_side)
    two_sided = np.where(flat_x == mean, 1.0, two_sided)
    # R: p == 0 or p == 1 gives (x == 0) or (x == n); not reachable with positive person-time
    result: FloatArray = np.minimum(two_sided, 1.0).reshape(x.shape)
    return result


def _clopper_pearson(
    x: IntArray, n: IntArray, alternative: Alternative, conf_level: float
) -> tuple[FloatArray, FloatArray]:
    """R ``binom.test``'s ``conf.int`` (Clopper-Pearson), vectorised."""
    tail = (1.0 - conf_level) / 2.0 if alternative == "two-sided" else 1.0 - conf_level
    with np.errstate(invalid="ignore", divide="ignore"):
        low = np.where(x > 0, beta_ppf(tail, np.maximum(x, 1), n - x + 1), 0.0)
        high = np.where(x < n, beta_ppf(1.0 - tail, x + 1, np.maximum(n - x, 1)), 1.0)
    if alternative == "less":
        low = np.zeros_like(low)
    elif alternative == "greater":
        high = np.ones_like(high)
    return low.astype(np.float64), high.astype(np.float64)


def rate_ratio_exact_test(
    events1: npt.ArrayLike,
    person_time1: npt.ArrayLike,
    events0: npt.ArrayLike,
    person_time0: npt.ArrayLike,
    *,
    ratio: float = 1.0,
    alternative: Alternative = "two-sided",
    conf_level: float = 0.95,
) -> RateRatioTestResult:
    """Exact conditional (binomial) test and exact CI of the ratio of two Poisson rates.

    Matches R ``poisson.test(c(events1, events0), c(person_time1, person_time0), r = ratio,
    alternative = alternative, conf.level = conf_level)``: estimate, ``conf.int`` and ``p.value``.
    Adds the doubled one-sided p-value and the mid-p-value (see the module docstring).

    Parameters
    ----------
    events1, person_time1 : array_like
        Events and person-time in group 1 (the numerator of the rate ratio, e.g. IL-2).
    events0, person_time0 : array_like
        Events and person-time in group 0 (the reference, e.g. no therapy).
    ratio : float, default 1
        Rate ratio under the null hypothesis.
    alternative : {"two-sided", "less", "greater"}
        Direction of the alternative, as R's ``alternative``.
    conf_level : float, default 0.95
        Confidence level of the interval.

    Returns
    -------
    RateRatioTestResult
        Arrays of the broadcast shape of the four inputs (0-d for scalars: ``float()`` them).
        With no events at all (``d1 + d0 = 0``) the p-values are 1, the interval ``(0, inf)`` and
        the estimate NaN, as in R.

    Raises
    ------
    AnalysisError
        Counts that are negative or fractional, person-time that is not positive, a bad ``ratio``,
        ``alternative`` or ``conf_level``.
    """
    if alternative not in ("two-sided", "less", "greater"):
        raise AnalysisError(
            f"alternative must be 'two-sided', 'less' or 'greater', got {alternative!r}"
        )
    if not 0.0 < conf_level < 1.0:
        raise AnalysisError(f"conf_level must lie strictly between 0 and 1, got {conf_level}")
    if not (math.isfinite(ratio) and ratio > 0.0):
        raise AnalysisError(f"ratio (the null rate ratio) must be finite and positive, got {ratio}")
    try:
        d1, t1, d0, t0 = np.broadcast_arrays(
            _counts(events1, "events1"),
            _person_time(person_time1, "person_time1"),
            _counts(events0, "events0"),
            _person_time(person_time0, "person_time0"),
        )
    except ValueError as exc:
        raise AnalysisError(f"events and person-time arrays do not broadcast: {exc}") from exc
    n = d1 + d0
    pi = ratio * t1 / (ratio * t1 + t0)
    lower_tail = binom_cdf(d1, n, pi)  # P(X <= x)
    upper_tail = binom_sf(d1 - 1, n, pi)  # P(X >= x)
    point = binom_pmf(d1, n, pi)
    mid_lower = lower_tail - point / 2.0
    mid_upper = upper_tail - point / 2.0
    if alternative == "two-sided":
        p_value = binomial_two_sided_p(d1, n, pi)
        central = np.minimum(1.0, 2.0 * np.minimum(lower_tail, upper_tail))
        mid_p = np.minimum(1.0, 2.0 * np.minimum(mid_lower, mid_upper))
    elif alternative == "less":
        p_value = central = lower_tail
        mid_p = mid_lower
    else:
        p_value = central = upper_tail
        mid_p = mid_upper
    p_low, p_high = _clopper_pearson(d1, n, alternative, conf_level)
    with np.errstate(divide="ignore", invalid="ignore"):
        estimate = (d1 / t1) / (d0 / t0)
        ci_low = p_low / (1.0 - p_low) * t0 / t1
        ci_high = p_high / (1.0 - p_high) * t0 / t1
    return RateRatioTestResult(
        events1=d1.astype(np.int64),
        events0=d0.astype(np.int64),
        person_time1=t1.astype(np.float64),
        person_time0=t0.astype(np.float64),
        rate_ratio=np.asarray(estimate, dtype=np.float64),
        ci_low=np.asarray(ci_low, dtype=np.float64),
        ci_high=np.asarray(ci_high, dtype=np.float64),
        p_value=np.asarray(p_value, dtype=np.float64),
        p_value_central=np.asarray(central, dtype=np.float64),
        mid_p=np.asarray(mid_p, dtype=np.float64),
        null_probability=np.asarray(pi, dtype=np.float64),
        expected_events1=np.asarray(n * pi, dtype=np.float64),
        ratio=float(ratio),
        alternative=alternative,
        conf_level=float(conf_level),
    )
