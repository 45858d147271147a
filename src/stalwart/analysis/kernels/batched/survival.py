"""Batched kernels of a time-to-event endpoint: risk sets, log-rank and Cox in every replicate.

* :func:`event_times`: each replicate reduced to its distinct event times;
* :func:`batched_logrank`: two-group :func:`~stalwart.analysis.kernels.logrank.logrank_test`
  (R ``survdiff``), with the signed z ``(O - E) / sqrt(V)`` of the treated group for one-sided
  monitoring;
* :func:`batched_cox`: :func:`~stalwart.analysis.kernels.cox.cox_ph` with one binary covariate
  (R ``coxph(Surv(time, event) ~ treated, ties = "efron")``): the same Newton-Raphson from 0,
  step halving and stopping rule, on every replicate at once;
* :func:`batched_firth_hazard_ratio`: the Firth-penalized hazard ratio
  (:func:`~stalwart.analysis.kernels.firth.firth_cox`), finite where the Cox one is infinite.

The survival functions reduce each replicate to its distinct event times (one sort per row):
per time the numbers at risk and the events, overall and treated. With a binary covariate the
Efron partial likelihood, score and information are sums over those few rows; the Newton
iterations run on all replicates together, each stopping by R's rule on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special

from stalwart.analysis.kernels._cox_maximize import MAX_HALVINGS, TOLER_INF
from stalwart.analysis.kernels._distributions import norm_ppf
from stalwart.analysis.kernels.batched._arrays import (
    BoolArray,
    FloatArray,
    IntArray,
    bool_matrix,
    check_alpha,
    check_same_shape,
    float_matrix,
)
from stalwart.errors import AnalysisError

__all__ = [
    "BatchedCox",
    "BatchedLogRank",
    "EventTimes",
    "batched_cox",
    "batched_firth_hazard_ratio",
    "batched_logrank",
    "event_times",
]


@dataclass(frozen=True)
class EventTimes:
    """Distinct event times of every replicate, flattened: one row per (replicate, time).

    ``replicate`` says whose time it is; ``at_risk`` and ``at_risk_treated`` count included
    participants with time at least that time; ``events`` and ``events_treated`` count events
    at it. ``n``, ``n_treated``, ``total_events`` and ``total_events_treated`` are per replicate.
    """

    n_replicates: int
    replicate: IntArray
    at_risk: FloatArray
    at_risk_treated: FloatArray
    events: FloatArray
    events_treated: FloatArray
    n: FloatArray
    n_treated: FloatArray
    total_events: FloatArray
    total_events_treated: FloatArray

    def per_replicate(self, values: FloatArray) -> FloatArray:
        """Sum a per-time quantity within each replicate."""
        out: FloatArray = np.bincount(
            self.replicate, weights=values, minlength=self.n_replicates
        ).astype(np.float64)
        return out


def event_times(
    time: npt.ArrayLike, event: npt.ArrayLike, treated: npt.ArrayLike, include: npt.ArrayLike
) -> EventTimes:
    """Reduce ``(replicate, participant)`` survival data to risk sets at distinct event times.

    Parameters
    ----------
    time : array_like, shape (R, n)
        Follow-up time, finite and non-negative for included participants.
    event, treated, include : array_like of bool, shape (R, n)
        Event (else censored), treated group (else control), and analysed.
    """
    t = float_matrix(time, "time")
    e = bool_matrix(event, "event")
    g = bool_matrix(treated, "treated")
    inc = bool_matrix(include, "include")
    check_same_shape(t.shape, event=e, treated=g, include=inc)
    with np.errstate(invalid="ignore"):
        valid = t >= 0.0  # false for NaN
    if np.any(inc & ~(valid & np.isfinite(t))):  # no copy of the included times
        raise AnalysisError("time must be finite and non-negative for included participants")
    r = t.shape[0]
    ev = e & inc
    ev1 = ev & g
    rep, col = np.nonzero(ev)  # events are few: work on them, not on every participant
    et = t[rep, col]
    order = np.lexsort((et, rep))
    rep, et, treated_event = rep[order], et[order], g[rep[order], col[order]]
    new = np.ones(rep.size, dtype=bool)
    new[1:] = (rep[1:] != rep[:-1]) | (et[1:] != et[:-1])
    starts = np.flatnonzero(new)
    d = np.diff(np.append(starts, rep.size))
    d1 = np.add.reduceat(treated_event.astype(np.int64), starts) if starts.size else d
    replicate = rep[starts].astype(np.int64)
    when = et[starts]
    # at risk at time u: included participants with time >= u. Event times are few (a handful
    # per replicate), so each is compared with its replicate's row: cheaper than sorting rows.
    at_risk, at_risk1 = _at_risk(np.where(inc, t, -np.inf), g, replicate, when)
    return EventTimes(
        n_replicates=r,
        replicate=replicate,
        at_risk=at_risk.astype(np.float64),
        at_risk_treated=at_risk1.astype(np.float64),
        events=d.astype(np.float64),
        events_treated=d1.astype(np.float64),
        n=inc.sum(axis=1).astype(np.float64),
        n_treated=(inc & g).sum(axis=1).astype(np.float64),
        total_events=ev.sum(axis=1).astype(np.float64),
        total_events_treated=ev1.sum(axis=1).astype(np.float64),
    )


_AT_RISK_CHUNK = 4096
"""Event rows compared at once (bounds the ``rows x participants`` temporary)."""


def _at_risk(
    times: FloatArray, treated: BoolArray, which: IntArray, value: FloatArray
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Per query, the entries of row ``which`` of ``times`` at or above ``value``: all of them,
    and those of the ``treated`` columns of that row."""
    total = np.empty(which.size, dtype=np.int64)
    treated_total = np.empty(which.size, dtype=np.int64)
    for start in range(0, which.size, _AT_RISK_CHUNK):
        rows = which[start : start + _AT_RISK_CHUNK]
        risk = times[rows] >= value[start : start + _AT_RISK_CHUNK, None]
        total[start : start + rows.size] = risk.sum(axis=1)
        treated_total[start : start + rows.size] = (risk & treated[rows]).sum(axis=1)
    return total, treated_total


@dataclass(frozen=True)
class BatchedLogRank:
    """Two-group log-rank test per replicate (R ``survdiff``).

    ``observed``/``expected`` are the treated group's; ``z = (O - E) / sqrt(V)`` is positive when
    the treated group has more events than expected (harm, for a safety endpoint).
    """

    observed: FloatArray
    expected: FloatArray
    variance: FloatArray
    chi2: FloatArray
    z: FloatArray
    p_value: FloatArray
    events_treated: FloatArray
    events_control: FloatArray
    estimable: BoolArray


def batched_logrank(
    time: npt.ArrayLike | EventTimes,
    event: npt.ArrayLike | None = None,
    treated: npt.ArrayLike | None = None,
    include: npt.ArrayLike | None = None,
) -> BatchedLogRank:
    """Log-rank test of treated vs control in every replicate.

    Takes the arrays of :func:`event_times` or its result. As ``survdiff``, a group with no
    expected events leaves the test with 0 degrees of freedom (chi-square 0, p NaN); a replicate
    without events is not estimable.
    """
    times = _times(time, event, treated, include)
    n_risk, n1 = times.at_risk, times.at_risk_treated
    d, d1 = times.events, times.events_treated
    share = n1 / n_risk
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(n_risk > 1, d * (n_risk - d) / (n_risk - 1.0), 0.0)
    observed = times.per_replicate(d1)
    expected = times.per_replicate(d * share)
    expected0 = times.per_replicate(d * (1.0 - share))
    variance = times.per_replicate(scale * share * (1.0 - share))
    has_events = times.total_events > 0
    both = (expected > 0) & (expected0 > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (observed - expected) / np.sqrt(variance)
    z = np.where(has_events & both, z, np.nan)
    chi2 = np.where(has_events, np.where(both, z * z, 0.0), np.nan)
    p_value = np.where(has_events & both, special.chdtrc(1.0, np.nan_to_num(chi2)), np.nan)
    return BatchedLogRank(
        observed=observed,
        expected=expected,
        variance=variance,
        chi2=chi2,
        z=z,
        p_value=p_value,
        events_treated=times.total_events_treated,
        events_control=times.total_events - times.total_events_treated,
        estimable=has_events,
    )


def _times(
    time: npt.ArrayLike | EventTimes,
    event: npt.ArrayLike | None,
    treated: npt.ArrayLike | None,
    include: npt.ArrayLike | None,
) -> EventTimes:
    if isinstance(time, EventTimes):
        return time
    if event is None or treated is None or include is None:
        raise AnalysisError("give time, event, treated and include, or the EventTimes of them")
    return event_times(time, event, treated, include)


@dataclass(frozen=True)
class BatchedCox:
    """Cox model with one binary covariate per replicate.

    Fields as :class:`~stalwart.analysis.kernels.cox.CoxResult`, as arrays.

    ``estimable`` is false where a group has no events (the likelihood is monotone: R's
    "coefficient may be infinite") or no group comparison exists; those entries are NaN.
    """

    coef: FloatArray
    se: FloatArray
    hazard_ratio: FloatArray
    ci_low: FloatArray
    ci_high: FloatArray
    z: FloatArray
    p_value: FloatArray
    loglik: FloatArray
    iterations: IntArray
    converged: BoolArray
    monotone_likelihood: BoolArray
    events_treated: FloatArray
    events_control: FloatArray
    estimable: BoolArray


def batched_cox(
    time: npt.ArrayLike | EventTimes,
    event: npt.ArrayLike | None = None,
    treated: npt.ArrayLike | None = None,
    include: npt.ArrayLike | None = None,
    *,
    ties: str = "efron",
    alpha: float = 0.05,
    tol: float = 1e-9,
    max_iter: int = 30,
) -> BatchedCox:
    """Hazard ratio of treated vs control by Cox regression in every replicate.

    The algorithm of :func:`~stalwart.analysis.kernels.cox.cox_ph` (R ``coxph``): Newton-Raphson
    from ``beta = 0``, a step halved while the log partial likelihood falls, stopped when it
    changes by less than ``tol`` relative; Wald standard error from the information at the
    estimate. Takes the arrays of :func:`event_times` or its result.
    """
    check_alpha(alpha)
    if ties not in ("efron", "breslow"):
        raise AnalysisError(f"ties must be 'efron' or 'breslow', got {ties!r}")
    times = _times(time, event, treated, include)
    r = times.n_replicates
    events1 = times.total_events_treated
    events0 = times.total_events - events1
    fit = (events1 > 0) & (events0 > 0)
    terms = _EfronTerms(times, fit[times.replicate], ties == "efron")
    beta = np.zeros(r)
    loglik, score, info = terms(beta)
    iterations = np.zeros(r, dtype=np.int64)
    converged = np.zeros(r, dtype=bool)
    active = fit.copy()
    for iteration in range(1, max_iter + 1):
        if not active.any():
            break
        solvable = active & (info > 0)
        active &= solvable
        step = np.where(active, score / np.where(info > 0, info, 1.0), 0.0)
        accepted = np.zeros(r, dtype=bool)
        trial = active.copy()
        new_beta, new_ll, new_score, new_info = beta.copy(), loglik.copy(), score, info
        for _ in range(MAX_HALVINGS):
            if not trial.any():
                break
            candidate = np.where(trial, beta + step, beta)
            ll, u, i = terms(candidate, trial)  # only the trial replicates' values are read
            close = np.abs(ll - loglik) <= tol * np.abs(loglik)
            good = trial & np.isfinite(ll) & ((ll >= loglik) | close)
            new_beta = np.where(good, candidate, new_beta)
            new_ll = np.where(good, ll, new_ll)
            new_score = np.where(good, u, new_score)
            new_info = np.where(good, i, new_info)
            accepted |= good
            trial &= ~good
            step = np.where(trial, step / 2.0, step)
        active &= accepted  # never accepted: stop where it is, not converged
        done = active & (np.abs(new_ll - loglik) <= tol * np.abs(loglik))
        iterations = np.where(active, iteration, iterations)
        beta = np.where(active, new_beta, beta)
        loglik = np.where(active, new_ll, loglik)
        score = np.where(active, new_score, score)
        info = np.where(active, new_info, info)
        converged |= done
        active &= ~done
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        variance = np.where(info > 0, 1.0 / info, np.nan)
        remaining = np.abs(variance * score)
        monotone = ~fit | ((remaining > TOLER_INF) & (remaining > TOLER_INF * np.abs(beta)))
        se = np.sqrt(variance)
        coef = np.where(fit, beta, np.nan)
        se = np.where(fit, se, np.nan)
        zq = float(norm_ppf(1.0 - alpha / 2.0))
        z = coef / se
        p_value = 2.0 * special.ndtr(-np.abs(z))
        hazard_ratio = np.exp(coef)
        ci_low = np.exp(coef - zq * se)
        ci_high = np.exp(coef + zq * se)
    return BatchedCox(
        coef=coef,
        se=se,
        hazard_ratio=hazard_ratio,
        ci_low=ci_low,
        ci_high=ci_high,
        z=z,
        p_value=p_value,
        loglik=np.where(fit, loglik, np.nan),
        iterations=iterations,
        converged=converged,
        monotone_likelihood=monotone,
        events_treated=events1,
        events_control=events0,
        estimable=fit,
    )


class _EfronTerms:
    """Log partial likelihood, score and information of a binary covariate, per replicate.

    At a time with ``N0``/``N1`` at risk and ``d0``/``d1`` events (control/treated) and
    ``w = exp(beta)``, the ``l``-th of the ``d`` tied events (Efron) has denominator
    ``S_l = N0 + N1 w - (l/d)(d0 + d1 w)`` and treated weight ``A_l = w (N1 - (l/d) d1)``:
    loglik adds ``d1 beta - sum_l log S_l``, the score ``d1 - sum_l A_l / S_l`` and the
    information ``sum_l A_l/S_l (1 - A_l/S_l)`` (``x^2 = x``). Breslow: ``l/d = 0``.
    """

    def __init__(self, times: EventTimes, rows: BoolArray, efron: bool) -> None:
        self.r = times.n_replicates
        self.replicate = times.replicate[rows]
        self.n1 = times.at_risk_treated[rows]
        self.n0 = times.at_risk[rows] - self.n1
        self.d = times.events[rows]
        self.d1 = times.events_treated[rows]
        self.d0 = self.d - self.d1
        # per tie position l: the rows with more than l tied events, l/d there, and how many
        # events share the term (Breslow: all d tied events, at l/d = 0)
        self.levels: list[tuple[npt.NDArray[np.intp], FloatArray, FloatArray]] = []
        if efron:
            for level in range(int(self.d.max(initial=1))):
                where = np.flatnonzero(self.d > level)
                self.levels.append((where, level / self.d[where], np.ones(where.size)))
        else:
            every = np.arange(self.d.size)
            self.levels.append((every, np.zeros(every.size), self.d))
        self.d1_total = np.bincount(self.replicate, weights=self.d1, minlength=self.r)
        self._restricted: list[
            tuple[BoolArray, int, list[tuple[npt.NDArray[np.intp], FloatArray, FloatArray]]]
        ] = []

    def _levels(
        self, only: BoolArray | None
    ) -> list[tuple[npt.NDArray[np.intp], FloatArray, FloatArray]]:
        """The tie levels restricted to the rows of the replicates ``only`` (all: None).

        The Newton loops ask for shrinking sets of replicates, so the last few restrictions are
        kept and a new one is cut from the smallest kept set that holds it, not from all rows.
        """
        if only is None or only.all():
            return self.levels
        source, size = self.levels, self.r + 1
        for mask, kept, levels in self._restricted:  # the smallest kept set holding ``only``
            if kept < size and not np.any(only & ~mask):
                source, size = levels, kept
        out = []
        for where, frac, count in source:
            keep = only[self.replicate[where]]
            out.append((where[keep], frac[keep], count[keep]))
        self._restricted = [*self._restricted[-7:], (only.copy(), int(only.sum()), out)]
        return out

    def _sum(self, rows: FloatArray, every: npt.NDArray[np.intp] | None) -> FloatArray:
        """Per replicate sum of per-row values, over the rows ``every`` (ascending: all the rows
        of the replicates computed; None: all rows). Each replicate's rows are added in the same
        order either way, so its sum is the same float."""
        if every is None:
            sums = np.bincount(self.replicate, weights=rows, minlength=self.r)
        else:
            sums = np.bincount(self.replicate[every], weights=rows[every], minlength=self.r)
        out: FloatArray = sums.astype(np.float64)
        return out

    def __call__(
        self, beta: FloatArray, only: BoolArray | None = None
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Log partial likelihood, score and information at ``beta``; with ``only`` (a mask of
        replicates) the others' entries are not computed (zeros: meaningless). A replicate's
        values do not depend on the others: the same sums, in the same order, either way."""
        ll, u, i, _ = self._evaluate(beta, only, slope=False)
        return ll, u, i

    def with_slope(
        self, beta: FloatArray, only: BoolArray | None = None
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """The call's three values and :meth:`information_slope`, in one pass over the rows
        (the same numbers as the two calls: each row's share is computed the same way)."""
        return self._evaluate(beta, only, slope=True)

    def _evaluate(
        self, beta: FloatArray, only: BoolArray | None, *, slope: bool
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        w = np.exp(beta)
        ll_rows = np.zeros(self.d.size)
        u_rows = np.zeros(self.d.size)
        i_rows = np.zeros(self.d.size)
        slope_rows = np.zeros(self.d.size if slope else 0)
        levels = self._levels(only)
        for where, frac, count in levels:
            wl = w[self.replicate[where]]
            s = self.n0[where] + self.n1[where] * wl - frac * (self.d0[where] + self.d1[where] * wl)
            a = wl * (self.n1[where] - frac * self.d1[where])
            with np.errstate(divide="ignore", invalid="ignore"):
                share = a / s
                ll_rows[where] -= count * np.log(s)
            u_rows[where] -= count * share
            i_rows[where] += count * share * (1.0 - share)
            if slope:
                slope_rows[where] += count * share * (1.0 - share) * (1.0 - 2.0 * share)
        every = None if levels is self.levels else levels[0][0]  # level 0: every row
        sums = [self._sum(rows, every) for rows in (ll_rows, u_rows, i_rows)]
        slopes = self._sum(slope_rows, every) if slope else sums[2]
        return self.d1_total * beta + sums[0], self.d1_total + sums[1], sums[2], slopes

    def information_slope(self, beta: FloatArray, only: BoolArray | None = None) -> FloatArray:
        """``dI/dbeta`` per replicate: ``sum_l p_l (1 - p_l) (1 - 2 p_l)``, ``p_l = A_l / S_l``
        (``only``: as for the call)."""
        w = np.exp(beta)
        rows = np.zeros(self.d.size)
        levels = self._levels(only)
        for where, frac, count in levels:
            wl = w[self.replicate[where]]
            s = self.n0[where] + self.n1[where] * wl - frac * (self.d0[where] + self.d1[where] * wl)
            with np.errstate(divide="ignore", invalid="ignore"):
                share = wl * (self.n1[where] - frac * self.d1[where]) / s
            rows[where] += count * share * (1.0 - share) * (1.0 - 2.0 * share)
        return self._sum(rows, None if levels is self.levels else levels[0][0])


def batched_firth_hazard_ratio(
    time: npt.ArrayLike | EventTimes,
    event: npt.ArrayLike | None = None,
    treated: npt.ArrayLike | None = None,
    include: npt.ArrayLike | None = None,
    *,
    ties: str = "efron",
    tol: float = 1e-9,
    max_iter: int = 100,
) -> FloatArray:
    """Firth-penalized Cox hazard ratio of treated vs control in every replicate.

    :func:`~stalwart.analysis.kernels.firth.firth_cox` with one binary covariate (R
    ``coxphf``; Heinze & Schemper 2001): the maximum of ``l(b) + 1/2 log I(b)``, by Newton
    steps on the modified score ``U + I'/(2 I)`` (at most 1 on the log scale, halved while the
    penalized likelihood falls), stopped when the step is below ``tol``. It exists wherever
    both groups are at risk at some event, also when one group has no events (where the Cox
    estimate is infinite), so a summary over replicates need leave none out. NaN where a
    replicate has no event or a group is never at risk at one.
    """
    if ties not in ("efron", "breslow"):
        raise AnalysisError(f"ties must be 'efron' or 'breslow', got {ties!r}")
    times = _times(time, event, treated, include)
    terms = _EfronTerms(times, np.ones(times.replicate.size, dtype=bool), ties == "efron")
    beta = np.zeros(times.n_replicates)
    loglik, score, info, slope = terms.with_slope(beta)
    active = info > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        value = loglik + 0.5 * np.log(info)
        for _ in range(max_iter):
            if not active.any():
                break
            modified = score + 0.5 * slope / info
            step = np.clip(np.where(active, modified / np.where(info > 0, info, 1.0), 0.0), -1, 1)
            trial = active.copy()
            for _ in range(MAX_HALVINGS):
                candidate = np.where(trial, beta + step, beta)
                ll, u, i, sl = terms.with_slope(candidate, trial)  # the trial ones are read
                new_value = ll + 0.5 * np.log(i)
                good = trial & np.isfinite(new_value) & (new_value >= value - 1e-12 * np.abs(value))
                beta = np.where(good, candidate, beta)
                value = np.where(good, new_value, value)
                score, info = np.where(good, u, score), np.where(good, i, info)
                slope = np.where(good, sl, slope)
                trial &= ~good
                if not trial.any():
                    break
                step = np.where(trial, step / 2.0, step)
            active &= ~trial & (np.abs(step) > tol)
        estimable = np.isfinite(value) & (times.total_events > 0)
    return np.where(estimable, np.exp(beta), np.nan)
