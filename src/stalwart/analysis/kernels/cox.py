"""Cox proportional hazards regression by Newton-Raphson, with Efron or Breslow ties.

Matches R ``survival::coxph(Surv(time, event) ~ X [+ strata(s)], ties = "efron" | "breslow")``:
the same partial likelihood, Newton-Raphson from ``beta = 0`` with step halving, R's
convergence rule (relative change in the log partial likelihood below ``tol``), Wald, likelihood
ratio and score tests, and R's test for an infinite coefficient (monotone likelihood). Optional:
the robust (sandwich) variance of ``coxph(..., robust = TRUE)`` or ``+ cluster(id)``, and
profile-likelihood confidence limits for each coefficient.

The risk-set sums are computed in ``O(n log n)``: one sort, block sums per distinct event time
(``np.add.reduceat``), then reverse cumulative sums over those times; nothing loops over rows or
event times. Efron's correction is vectorised over the events: the ``l``-th of ``d`` tied events
at a time uses the denominator ``R0 - (l/d) D0``, where ``R0`` is the risk-set sum and ``D0`` the
sum over the tied events; Breslow is the special case ``l/d = 0``. The information is never
formed per risk set: it is accumulated as ``X' diag(w * c) X`` with ``c`` a cumulative sum of
per-event-time weights, so the memory is ``O(n p)``. Only strata are looped over.

Covariates are centred and scaled internally (the model is invariant to this); results are
reported on the original scale. :mod:`~stalwart.analysis.kernels.firth` reuses the risk-set
machinery and the profile-likelihood search defined here.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy import linalg, optimize, stats

from stalwart.errors import AnalysisError
from stalwart.jsonable import jsonable

__all__ = ["CoxResult", "Ties", "cox_ph"]

Ties = Literal["efron", "breslow"]
FloatArray = npt.NDArray[np.float64]
IntpArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]
# value, gradient and a positive definite curvature (information) at beta
Objective = Callable[[FloatArray], tuple[float, FloatArray, FloatArray]]

_MAX_HALVINGS = 40
_TOLER_INF = math.sqrt(1e-9)  # R: coxph.control(toler.inf = sqrt(eps)) with eps = 1e-9
_PROFILE_XTOL = 1e-12  # profile limits, standardized scale
_PROFILE_REACH = 100.0  # standardized distance searched before a limit is declared infinite
_INNER_TOL = 1e-11  # constrained maxima: largest Newton step (standardized) at convergence
_INNER_MAX_ITER = 200


@dataclass(frozen=True)
class CoxResult:
    """Result of :func:`cox_ph`; per-covariate arrays follow the columns of ``X``.

    Attributes
    ----------
    names : tuple of str
        Covariate names.
    coef : numpy.ndarray
        Log hazard ratios (R: ``coef(fit)``).
    se : numpy.ndarray
        Standard errors (R: ``sqrt(diag(vcov(fit)))``): from the inverse information, or the
        robust (sandwich) ones when ``robust`` is true, as R reports them.
    naive_se : numpy.ndarray
        Model-based standard errors from the inverse information (R: ``sqrt(diag(fit$var))``
        or, when robust, ``sqrt(diag(fit$naive.var))``).
    hazard_ratio : numpy.ndarray
        ``exp(coef)``.
    ci_low, ci_high : numpy.ndarray
        Wald ``1 - alpha`` limits of the hazard ratio, ``exp(coef -/+ z se)`` (R:
        ``summary(fit)$conf.int``), with the robust ``se`` when robust.
    z : numpy.ndarray
        Wald statistics ``coef / se``.
    p_value : numpy.ndarray
        Two-sided Wald p-values.
    variance : numpy.ndarray
        ``p x p`` covariance matrix of ``coef`` (R: ``vcov(fit)``; robust when robust).
    loglik_null, loglik : float
        Log partial likelihood at ``beta = 0`` and at the estimate (R: ``fit$loglik``).
    lr_statistic, lr_p_value : float
        Likelihood-ratio test, ``2 (loglik - loglik_null)`` on ``df`` degrees of freedom.
    score_statistic, score_p_value : float
        Score (log-rank) test at ``beta = 0`` (R: ``fit$score``).
    wald_statistic, wald_p_value : float
        Joint Wald test of all coefficients with ``variance`` (R: ``fit$wald.test``).
    robust_score_statistic, robust_score_p_value : float
        Robust score test at ``beta = 0`` (R: ``fit$rscore``); NaN unless robust.
    profile_ci_low, profile_ci_high : numpy.ndarray or None
        Profile-likelihood ``1 - alpha`` limits of the hazard ratio: where
        ``2 (loglik - max over the other coefficients of loglik(b_j = b))`` equals the
        chi-square(1) quantile. ``inf`` (or 0) where the profile never reaches it (monotone
        likelihood). None unless requested with ``profile_ci=True``.
    df : int
        Number of coefficients.
    iterations : int
        Newton-Raphson iterations used (R: ``fit$iter``).
    converged : bool
        Whether the log partial likelihood converged within ``max_iter`` iterations.
    monotone_likelihood : bool
        R's "coefficient may be infinite" warning: the likelihood keeps rising as a
        coefficient diverges (e.g. every event in one arm). The coefficient and its standard
        error are then meaningless; the score and likelihood-ratio tests remain valid, and so
        does the finite profile limit.
    robust : bool
        Whether ``se``/``variance`` are the robust (sandwich) ones.
    n_clusters : int
        Clusters the robust variance summed over (``n`` without ``cluster``; 0 unless robust).
    n : int
        Observations used.
    n_events : int
        Number of events.
    ties : str
        ``"efron"`` or ``"breslow"``.
    alpha : float
        One minus the confidence level.
    """

    names: tuple[str, ...]
    coef: FloatArray
    se: FloatArray
    naive_se: FloatArray
    hazard_ratio: FloatArray
    ci_low: FloatArray
    ci_high: FloatArray
    z: FloatArray
    p_value: FloatArray
    variance: FloatArray
    loglik_null: float
    loglik: float
    lr_statistic: float
    lr_p_value: float
    score_statistic: float
    score_p_value: float
    wald_statistic: float
    wald_p_value: float
    robust_score_statistic: float
    robust_score_p_value: float
    profile_ci_low: FloatArray | None
    profile_ci_high: FloatArray | None
    df: int
    iterations: int
    converged: bool
    monotone_likelihood: bool
    robust: bool
    n_clusters: int
    n: int
    n_events: int
    ties: str
    alpha: float

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as JSON-serialisable Python values (non-finite floats become None)."""
        return {f.name: jsonable(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class _Stratum:
    """Index structures for one stratum, rows sorted by time (computed once per fit).

    Rows before the first event time are dropped: they are in no risk set. Covariates are held
    transposed (``p x n``) so that per-covariate passes run over contiguous memory.
    """

    rows: IntpArray  # original row of each sorted row
    zt: FloatArray  # standardized covariates, p x n, columns sorted by time
    event_rows: IntpArray  # rows that are events
    block_start: IntpArray  # per distinct event time: first row (any status) at that time
    event_group: IntpArray  # per event: index of its distinct event time
    event_group_first: IntpArray  # per distinct event time: first position within event_rows
    tied: FloatArray  # per distinct event time: number of events d
    frac: FloatArray  # per event: l/d (Efron) or 0 (Breslow)
    zt_event: FloatArray  # covariates of the events, p x n_events
    z_event_sum: FloatArray  # sum of z over events
    efron: bool  # whether any event has l/d > 0

    @property
    def z(self) -> FloatArray:
        """Covariates as ``n x p`` (a transposed view)."""
        return self.zt.T


def _stratum(
    rows: IntpArray, zt: FloatArray, time: FloatArray, event: BoolArray, ties: str
) -> _Stratum:
    """Index one stratum whose rows (``zt`` columns, ``time``, ``event``) are sorted by time."""
    start = int(np.searchsorted(time, time[int(np.argmax(event))], side="left"))
    rows, zt, time, event = rows[start:], zt[:, start:], time[start:], event[start:]
    new_time = np.empty(time.size, dtype=bool)
    new_time[0] = True
    np.not_equal(time[1:], time[:-1], out=new_time[1:])
    time_group = np.cumsum(new_time) - 1
    time_start = np.flatnonzero(new_time)
    event_rows = np.flatnonzero(event)
    eg = time_group[event_rows]
    first = np.flatnonzero(np.concatenate(([True], eg[1:] != eg[:-1])))
    d = np.diff(np.append(first, eg.size))
    event_group = np.repeat(np.arange(first.size), d)
    if ties == "efron":
        position = np.arange(eg.size) - np.repeat(first, d)
        frac = position / np.repeat(d, d).astype(np.float64)
    else:
        frac = np.zeros(eg.size)
    zt_event = np.ascontiguousarray(zt[:, event_rows])
    return _Stratum(
        rows=rows,
        zt=zt,
        event_rows=event_rows,
        block_start=time_start[eg[first]],
        event_group=event_group,
        event_group_first=first,
        tied=d.astype(np.float64),
        frac=frac,
        zt_event=zt_event,
        z_event_sum=zt_event.sum(axis=1),
        efron=bool(np.any(frac > 0.0)),
    )


def _reverse_cumsum(a: FloatArray, axis: int = 0) -> FloatArray:
    flipped = np.flip(a, axis=axis)
    return np.flip(np.cumsum(flipped, axis=axis), axis=axis)


def _stratum_derivatives(
    s: _Stratum, beta: FloatArray, work: FloatArray
) -> tuple[float, FloatArray, FloatArray]:
    """Log partial likelihood, score and information contributed by one stratum.

    Only ``p x (distinct event times)`` arrays are formed besides one ``p x n`` scratch
    buffer ``work`` (reused across iterations): with per-event scalars ``1/phi_l`` the sums
    over events of the risk-set means and their outer products reduce to sums over times.
    """
    eta = beta @ s.zt
    shift = float(eta.max())
    w = np.exp(eta - shift)  # the shift cancels in every ratio
    wz = np.multiply(s.zt, w, out=work)
    r0 = _reverse_cumsum(np.add.reduceat(w, s.block_start))
    r1 = _reverse_cumsum(np.add.reduceat(wz, s.block_start, axis=1), axis=1)
    g, f, ev, first = s.event_group, s.frac, s.event_rows, s.event_group_first
    n_groups = first.size
    w_ev = w[ev]
    phi = r0[g]
    if s.efron:
        d0 = np.add.reduceat(w_ev, first)
        d1 = np.add.reduceat(s.zt_event * w_ev, first, axis=1)
        phi = phi - f * d0[g]
    with np.errstate(divide="ignore", invalid="ignore"):
        loglik = float(eta[ev].sum() - shift * ev.size - np.log(phi).sum())
        inv_phi = 1.0 / phi
        c1 = np.bincount(g, weights=inv_phi, minlength=n_groups)
        score = s.z_event_sum - r1 @ c1
        mean_outer = (r1 * np.bincount(g, weights=inv_phi * inv_phi, minlength=n_groups)) @ r1.T
    marks = np.zeros(w.size)
    marks[s.block_start] = c1
    weight = w * np.cumsum(marks)
    if s.efron:
        f_inv = f * inv_phi
        c2 = np.bincount(g, weights=f_inv, minlength=n_groups)
        score += d1 @ c2
        cross = (r1 * np.bincount(g, weights=f_inv * inv_phi, minlength=n_groups)) @ d1.T
        tied = (d1 * np.bincount(g, weights=f_inv * f_inv, minlength=n_groups)) @ d1.T
        mean_outer += tied - cross - cross.T
        weight[ev] -= w_ev * c2[g]
    information = np.multiply(s.zt, weight, out=work) @ s.zt.T - mean_outer
    return loglik, score, information


@dataclass(frozen=True)
class _RiskSets:
    """Per-event quantities at one ``beta``: weights, Efron denominators and risk-set means."""

    eta: FloatArray
    shift: float
    w: FloatArray  # exp(eta - shift) per row
    phi: FloatArray  # per event: R0 - f D0
    abar: FloatArray  # per event: (R1 - f D1) / phi, n_events x p


def _risk_sets(s: _Stratum, beta: FloatArray) -> _RiskSets:
    """Per-event risk-set means (``n_events x p``), for residuals and the Firth penalty."""
    eta = beta @ s.zt
    shift = float(eta.max())
    w = np.exp(eta - shift)
    wz = s.zt * w
    r0 = _reverse_cumsum(np.add.reduceat(w, s.block_start))
    r1 = _reverse_cumsum(np.add.reduceat(wz, s.block_start, axis=1), axis=1).T
    w_ev = w[s.event_rows]
    d0 = np.add.reduceat(w_ev, s.event_group_first)
    d1 = np.add.reduceat(s.zt_event * w_ev, s.event_group_first, axis=1).T
    g, f = s.event_group, s.frac
    phi = r0[g] - f * d0[g]
    with np.errstate(divide="ignore", invalid="ignore"):
        abar = (r1[g] - f[:, None] * d1[g]) / phi[:, None]
    return _RiskSets(eta=eta, shift=shift, w=w, phi=phi, abar=abar)


def _stratum_score_residuals(s: _Stratum, beta: FloatArray) -> FloatArray:
    """Score residuals of the stratum's rows, in sorted order (R ``residuals(fit, "score")``).

    Row ``i`` gets ``delta_i (z_i - mean of the abar of its tied events)`` minus
    ``w_i sum_l c_il (z_i - abar_l) / phi_l`` over the event terms ``l`` whose risk set holds
    ``i``, with ``c_il = 1 - l/d`` when ``i`` is one of the tied events (Efron) and 1 otherwise.
    They sum to the score.
    """
    r = _risk_sets(s, beta)
    g, ev, first, z = s.event_group, s.event_rows, s.event_group_first, s.z
    inv_phi = 1.0 / r.phi
    f_inv_phi = s.frac * inv_phi
    n_groups = first.size
    h1 = np.bincount(g, weights=inv_phi, minlength=n_groups)
    h2 = np.add.reduceat(r.abar * inv_phi[:, None], first, axis=0)
    c2 = np.bincount(g, weights=f_inv_phi, minlength=n_groups)
    c2v = np.add.reduceat(r.abar * f_inv_phi[:, None], first, axis=0)
    tied_mean = np.add.reduceat(r.abar, first, axis=0) / s.tied[:, None]
    marks = np.zeros(r.w.size)
    marks[s.block_start] = h1
    marks2 = np.zeros(z.shape)
    marks2[s.block_start] = h2
    resid = -r.w[:, None] * (z * np.cumsum(marks)[:, None] - np.cumsum(marks2, axis=0))
    resid[ev] += z[ev] - tied_mean[g] + r.w[ev, None] * (z[ev] * c2[g, None] - c2v[g])
    return resid


class _Model:
    """The partial likelihood summed over strata, in standardized covariates."""

    def __init__(self, strata: list[_Stratum], p: int, n: int) -> None:
        self.strata = strata
        self.p = p
        self.n = n
        self._work = [np.empty(s.zt.shape) for s in strata]  # scratch, reused every call

    def __call__(self, beta: FloatArray) -> tuple[float, FloatArray, FloatArray]:
        loglik = 0.0
        score = np.zeros(self.p)
        information = np.zeros((self.p, self.p))
        for s, work in zip(self.strata, self._work, strict=True):
            ll, u, i = _stratum_derivatives(s, beta, work)
            loglik += ll
            score += u
            information += i
        return loglik, score, information

    def score_residuals(self, beta: FloatArray) -> FloatArray:
        """Score residuals per original row (zero for rows in no risk set)."""
        resid = np.zeros((self.n, self.p))
        for s in self.strata:
            resid[s.rows] = _stratum_score_residuals(s, beta)
        return resid


def _solve(information: FloatArray, score: FloatArray) -> FloatArray | None:
    try:
        factor = linalg.cho_factor(information)
    except (linalg.LinAlgError, ValueError):
        return None
    result: FloatArray = linalg.cho_solve(factor, score)
    return result if np.all(np.isfinite(result)) else None


@dataclass
class _Fit:
    beta: FloatArray
    loglik: float
    score: FloatArray
    information: FloatArray
    iterations: int
    converged: bool


def _newton(
    model: _Model, start: tuple[float, FloatArray, FloatArray], tol: float, max_iter: int
) -> _Fit:
    """Newton-Raphson from zero with step halving (R ``coxph.fit`` / ``coxfit6``)."""
    beta = np.zeros(model.p)
    loglik, score, info = start
    for iteration in range(1, max_iter + 1):
        step = _solve(info, score)
        if step is None:
            return _Fit(beta, loglik, score, info, iteration - 1, False)
        for _ in range(_MAX_HALVINGS):
            new_beta = beta + step
            new_ll, new_score, new_info = model(new_beta)
            close = abs(new_ll - loglik) <= tol * abs(loglik)
            if math.isfinite(new_ll) and (new_ll >= loglik or close):
                break
            step = step / 2.0
        else:
            return _Fit(beta, loglik, score, info, iteration, False)
        converged = abs(new_ll - loglik) <= tol * abs(loglik)
        beta, loglik, score, info = new_beta, new_ll, new_score, new_info
        if converged:
            return _Fit(beta, loglik, score, info, iteration, True)
    return _Fit(beta, loglik, score, info, max_iter, False)


@dataclass
class _Ascent:
    value: float
    beta: FloatArray
    gradient: FloatArray
    information: FloatArray
    iterations: int
    converged: bool


def _ascend(
    objective: Objective,
    beta: FloatArray,
    fixed: int | None = None,
    max_step: float = 2.0,
    tol: float = _INNER_TOL,
    max_iter: int = _INNER_MAX_ITER,
) -> _Ascent:
    """Maximize ``objective`` over every coefficient but ``fixed`` (held at its value in ``beta``).

    Newton-Raphson with the objective's information as curvature (exact for the partial
    likelihood, an approximation for the Firth penalty), steps capped at ``max_step`` in
    standardized units (coxphf's ``maxstep``) and halved while the objective falls; converged
    when the largest step is below ``tol``.
    """
    free = np.ones(beta.size, dtype=bool)
    if fixed is not None:
        free[fixed] = False
    value, gradient, information = objective(beta)
    if not free.any():
        return _Ascent(value, beta, gradient, information, 0, True)
    block = np.ix_(free, free)
    for iteration in range(1, max_iter + 1):
        partial = _solve(information[block], gradient[free])
        if partial is None:
            return _Ascent(value, beta, gradient, information, iteration - 1, False)
        step = np.zeros_like(beta)
        step[free] = partial
        largest = float(np.max(np.abs(step)))
        if largest > max_step:
            step *= max_step / largest
        for _ in range(_MAX_HALVINGS):
            candidate = beta + step
            new_value, new_gradient, new_information = objective(candidate)
            if math.isfinite(new_value) and new_value >= value - 1e-15 * abs(value):
                break
            step = step / 2.0
        else:
            return _Ascent(value, beta, gradient, information, iteration, False)
        beta, value, gradient, information = candidate, new_value, new_gradient, new_information
        if float(np.max(np.abs(step))) <= tol:
            return _Ascent(value, beta, gradient, information, iteration, True)
    return _Ascent(value, beta, gradient, information, max_iter, False)


def _profile_limit(
    objective: Objective,
    beta_hat: FloatArray,
    value_hat: float,
    j: int,
    direction: float,
    critical: float,
    first_step: float,
) -> float:
    """The ``direction`` (+1 upper, -1 lower) profile limit of coefficient ``j``.

    The root of ``2 (value_hat - profile(b)) = critical``, bracketed by stepping out from the
    estimate with doubling steps, then found by Brent's method. When the profile stays below
    the threshold over ``_PROFILE_REACH`` (a monotone likelihood), the limit is infinite.
    """
    state = {"beta": beta_hat.copy()}

    def excess(b: float) -> float:
        start = state["beta"].copy()
        start[j] = b
        ascent = _ascend(objective, start, fixed=j)
        value = ascent.value
        state["beta"] = ascent.beta
        return 2.0 * (value_hat - value) - critical if math.isfinite(value) else math.inf

    centre = float(beta_hat[j])
    inner, step = centre, first_step
    while True:
        outer = centre + direction * step
        if excess(outer) > 0.0:
            break
        if step > _PROFILE_REACH:
            return direction * math.inf
        inner, step = outer, 2.0 * step
    low, high = min(inner, outer), max(inner, outer)
    root: float = optimize.brentq(excess, low, high, xtol=_PROFILE_XTOL, rtol=1e-14)
    return root


def _profile_interval(
    objective: Objective, beta_hat: FloatArray, value_hat: float, se: FloatArray, alpha: float
) -> tuple[FloatArray, FloatArray]:
    """Profile limits of every coefficient (standardized scale)."""
    critical = float(stats.chi2.ppf(1.0 - alpha, 1))
    low = np.empty(beta_hat.size)
    high = np.empty(beta_hat.size)
    for j in range(beta_hat.size):
        width = math.sqrt(critical) * float(se[j])
        first = min(max(width, 1e-3), 2.0) if math.isfinite(width) else 1.0
        low[j] = _profile_limit(objective, beta_hat, value_hat, j, -1.0, critical, first)
        high[j] = _profile_limit(objective, beta_hat, value_hat, j, 1.0, critical, first)
    return low, high


def _as_float(values: npt.ArrayLike, name: str) -> FloatArray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise AnalysisError(f"{name} must be numeric: {exc}") from exc
    if not np.all(np.isfinite(arr)):
        raise AnalysisError(f"{name} contains missing or non-finite values; remove them first")
    return arr


def _validate(
    time: npt.ArrayLike, event: npt.ArrayLike, x: npt.ArrayLike
) -> tuple[FloatArray, BoolArray, FloatArray]:
    t = _as_float(time, "time")
    e = _as_float(event, "event")
    xa = _as_float(x, "X")
    if xa.ndim == 1:
        xa = xa[:, None]
    if t.ndim != 1 or e.ndim != 1 or xa.ndim != 2:
        raise AnalysisError("time and event must be one-dimensional and X at most two-dimensional")
    if not t.size == e.size == xa.shape[0]:
        raise AnalysisError(
            f"mismatched lengths: time {t.size}, event {e.size}, X has {xa.shape[0]} rows"
        )
    if xa.shape[1] == 0:
        raise AnalysisError("X has no columns; a Cox model needs at least one covariate")
    if np.any(t < 0):
        raise AnalysisError("time contains negative values; times must be >= 0")
    if not np.all((e == 0.0) | (e == 1.0)):
        raise AnalysisError("event must contain only 0 (censored) and 1 (event)")
    if not np.any(e == 1.0):
        raise AnalysisError("there are no events; the Cox model cannot be fitted")
    return t, e == 1.0, xa


def _codes(values: npt.ArrayLike | None, n: int, name: str) -> IntpArray | None:
    """Integer codes ``0..k-1`` of a label per row, or None when not given."""
    if values is None:
        return None
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.size != n:
        raise AnalysisError(f"{name} must be one-dimensional with {n} values, got {arr.shape}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise AnalysisError(f"{name} contains missing values; remove them first")
    if arr.dtype.kind == "O" and any(v is None or v != v for v in arr.tolist()):
        raise AnalysisError(f"{name} contains missing values; remove them first")
    return np.unique(arr, return_inverse=True)[1].astype(np.intp).reshape(-1)


def _standardize(zt: FloatArray, names: tuple[str, ...]) -> FloatArray:
    """Centre and scale the rows of ``zt`` (``p x n``) in place; return the scales."""
    zt -= zt.mean(axis=1)[:, None]
    scale: FloatArray = np.sqrt(np.einsum("ij,ij->i", zt, zt) / zt.shape[1])
    flat = [names[j] for j in range(zt.shape[0]) if not scale[j] > 0.0]
    if flat:
        raise AnalysisError(f"covariate(s) with no variation cannot be estimated: {flat}")
    zt /= scale[:, None]
    correlation = (zt @ zt.T) / zt.shape[1]
    if np.linalg.eigvalsh(correlation)[0] < 1e-10:
        raise AnalysisError(f"the covariates {list(names)} are collinear; drop a redundant one")
    return scale


@dataclass(frozen=True)
class _Design:
    """Validated data in standardized covariates, split into indexed strata."""

    names: tuple[str, ...]
    scale: FloatArray
    event: BoolArray
    strata: list[_Stratum]
    n: int
    p: int


def _design(
    time: npt.ArrayLike,
    event: npt.ArrayLike,
    x: npt.ArrayLike,
    ties: str,
    strata: npt.ArrayLike | None,
    alpha: float,
    names: Sequence[str] | None,
) -> _Design:
    """Validate the inputs and build the per-stratum index structures (one sort)."""
    if ties not in ("efron", "breslow"):
        raise AnalysisError(f"ties must be 'efron' or 'breslow', got {ties!r}")
    if not 0.0 < alpha < 1.0:
        raise AnalysisError(f"alpha must lie strictly between 0 and 1, got {alpha}")
    t, e, xa = _validate(time, event, x)
    n, p = xa.shape
    labels = tuple(names) if names is not None else tuple(f"x{j + 1}" for j in range(p))
    if len(labels) != p:
        raise AnalysisError(f"names has {len(labels)} entries but X has {p} columns")
    codes = _codes(strata, n, "strata")
    order = np.argsort(t, kind="stable") if codes is None else np.lexsort((t, codes))
    zt = np.empty((p, n))  # p x n, sorted: one gather per covariate, then views
    for j in range(p):
        np.take(xa[:, j], order, out=zt[j])
    scale = _standardize(zt, labels)
    ts, es = t[order], e[order]
    bounds = [0, n] if codes is None else [0, *(np.flatnonzero(np.diff(codes[order])) + 1), n]
    parts = [
        _stratum(order[lo:hi], zt[:, lo:hi], ts[lo:hi], es[lo:hi], ties)
        for lo, hi in itertools.pairwise(bounds)
        if np.any(es[lo:hi])
    ]
    return _Design(names=labels, scale=scale, event=e, strata=parts, n=n, p=p)


def _inverse(information: FloatArray) -> FloatArray:
    try:
        inv: FloatArray = linalg.inv(information)
    except (linalg.LinAlgError, ValueError):
        return np.full_like(information, math.nan)
    return inv


def _chi2_test(statistic: float, df: int) -> tuple[float, float]:
    return statistic, float(stats.chi2.sf(statistic, df)) if math.isfinite(statistic) else math.nan


def _quadratic(matrix: FloatArray, vector: FloatArray) -> float:
    """``v' M^-1 v`` by Cholesky (R ``coxph.wtest``); NaN when ``M`` is not positive definite."""
    solved = _solve(matrix, vector)
    return float(vector @ solved) if solved is not None else math.nan


def _collapse(resid: FloatArray, cluster: IntpArray | None) -> FloatArray:
    """Sum residual rows within clusters (R ``residuals(..., collapse = cluster)``)."""
    if cluster is None:
        return resid
    k = int(cluster.max()) + 1
    return np.column_stack(
        [np.bincount(cluster, weights=resid[:, j], minlength=k) for j in range(resid.shape[1])]
    )


def cox_ph(
    time: npt.ArrayLike,
    event: npt.ArrayLike,
    X: npt.ArrayLike,
    ties: Ties = "efron",
    strata: npt.ArrayLike | None = None,
    alpha: float = 0.05,
    *,
    names: Sequence[str] | None = None,
    robust: bool = False,
    cluster: npt.ArrayLike | None = None,
    profile_ci: bool = False,
    tol: float = 1e-9,
    max_iter: int = 30,
) -> CoxResult:
    """Fit a Cox proportional hazards model by Newton-Raphson.

    Matches R ``survival::coxph(Surv(time, event) ~ X, ties = ties)``, with
    ``+ strata(strata)`` when ``strata`` is given (separate baseline hazards, common
    coefficients). The stopping rule is R's (``coxph.control(eps = tol)``): stop when the log
    partial likelihood changes by less than ``tol`` relative. When the maximum does not exist
    (monotone likelihood, e.g. all events in one arm) R stops with a large coefficient and the
    warning "coefficient may be infinite"; here ``monotone_likelihood`` is set by R's same check
    (``toler.inf``), and the score and likelihood-ratio tests remain usable.

    Parameters
    ----------
    time : array_like
        Follow-up time per subject, finite and non-negative.
    event : array_like
        1 for an event, 0 for censored.
    X : array_like
        Covariates, shape ``(n,)`` or ``(n, p)``.
    ties : {"efron", "breslow"}, default "efron"
        Approximation of the partial likelihood for tied event times.
    strata : array_like, optional
        Stratum label per subject.
    alpha : float, default 0.05
        One minus the confidence level of the Wald and profile limits.
    names : sequence of str, optional
        Covariate names; default ``x1, x2, ...``.
    robust : bool, default False
        Report the robust (sandwich) variance ``D'D`` of the dfbeta residuals ``D`` (R:
        ``coxph(..., robust = TRUE)``), with the robust score test (R: ``fit$rscore``).
    cluster : array_like, optional
        Cluster label per subject: dfbeta residuals are summed within clusters before the
        sandwich (R: ``+ cluster(id)``); implies ``robust``.
    profile_ci : bool, default False
        Also compute profile-likelihood limits of each hazard ratio (a few dozen likelihood
        evaluations per coefficient).
    tol : float, default 1e-9
        Relative convergence tolerance on the log partial likelihood (R: ``eps``).
    max_iter : int, default 30
        Maximum Newton-Raphson iterations (R: ``iter.max``; R's default is 20).

    Returns
    -------
    CoxResult

    Raises
    ------
    AnalysisError
        Mismatched lengths, non-finite values, negative times, event values other than 0/1, no
        events, a covariate with no variation, collinear covariates, or an information matrix
        that is singular at ``beta = 0`` (no covariate varies within any risk set).
    """
    design = _design(time, event, X, ties, strata, alpha, names)
    cluster_codes = _codes(cluster, design.n, "cluster")
    robust = robust or cluster_codes is not None
    model = _Model(design.strata, design.p, design.n)
    start = model(np.zeros(design.p))
    loglik_null, score0, info0 = start
    score_step = _solve(info0, score0)
    if score_step is None:
        raise AnalysisError(
            "the information matrix is singular at beta = 0: a covariate does not vary within "
            "any risk set (for instance it is constant within strata)"
        )
    fit = _newton(model, start, tol, max_iter)
    naive_z = _inverse(fit.information)
    remaining = np.abs(naive_z @ fit.score)
    monotone = bool(np.any((remaining > _TOLER_INF) & (remaining > _TOLER_INF * np.abs(fit.beta))))
    var_z, rscore, n_clusters = naive_z, math.nan, 0
    if robust:
        dfbeta = _collapse(model.score_residuals(fit.beta), cluster_codes) @ naive_z
        var_z = dfbeta.T @ dfbeta
        resid0 = _collapse(model.score_residuals(np.zeros(design.p)), cluster_codes)
        rscore = _quadratic(resid0.T @ resid0, resid0.sum(axis=0))
        n_clusters = resid0.shape[0]
    profile: tuple[FloatArray, FloatArray] | None = None
    if profile_ci:
        profile = _profile_interval(model, fit.beta, fit.loglik, np.sqrt(np.diag(naive_z)), alpha)
    return _result(
        design,
        fit,
        var_z,
        naive_z,
        monotone,
        (loglik_null, float(score0 @ score_step), rscore),
        profile,
        n_clusters,
        ties,
        alpha,
    )


def _result(
    design: _Design,
    fit: _Fit,
    var_z: FloatArray,
    naive_z: FloatArray,
    monotone: bool,
    nulls: tuple[float, float, float],
    profile: tuple[FloatArray, FloatArray] | None,
    n_clusters: int,
    ties: str,
    alpha: float,
) -> CoxResult:
    loglik_null, score_statistic, rscore = nulls
    scale, p = design.scale, design.p
    coef = fit.beta / scale
    variance = var_z / np.outer(scale, scale)
    se = np.sqrt(np.diag(variance))
    naive_se = np.sqrt(np.diag(naive_z)) / scale
    zq = float(stats.norm.ppf(1.0 - alpha / 2.0))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        z = coef / se
        ci_low = np.exp(coef - zq * se)
        ci_high = np.exp(coef + zq * se)
        hazard_ratio = np.exp(coef)
        profile_low = None if profile is None else np.exp(profile[0] / scale)
        profile_high = None if profile is None else np.exp(profile[1] / scale)
    robust = n_clusters > 0
    wald = _quadratic(var_z, fit.beta) if robust else float(fit.beta @ fit.information @ fit.beta)
    lr, lr_p = _chi2_test(2.0 * (fit.loglik - loglik_null), p)
    sc, sc_p = _chi2_test(float(score_statistic), p)
    wd, wd_p = _chi2_test(wald, p)
    rs, rs_p = _chi2_test(rscore, p)
    return CoxResult(
        names=design.names,
        coef=coef,
        se=se,
        naive_se=naive_se,
        hazard_ratio=hazard_ratio,
        ci_low=ci_low,
        ci_high=ci_high,
        z=z,
        p_value=2.0 * stats.norm.sf(np.abs(z)),
        variance=variance,
        loglik_null=loglik_null,
        loglik=fit.loglik,
        lr_statistic=lr,
        lr_p_value=lr_p,
        score_statistic=sc,
        score_p_value=sc_p,
        wald_statistic=wd,
        wald_p_value=wd_p,
        robust_score_statistic=rs,
        robust_score_p_value=rs_p,
        profile_ci_low=profile_low,
        profile_ci_high=profile_high,
        df=p,
        iterations=fit.iterations,
        converged=fit.converged,
        monotone_likelihood=monotone,
        robust=robust,
        n_clusters=n_clusters,
        n=design.n,
        n_events=int(np.count_nonzero(design.event)),
        ties=ties,
        alpha=float(alpha),
    )
