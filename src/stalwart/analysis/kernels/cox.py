"""Cox proportional hazards regression by Newton-Raphson, with Efron or Breslow ties.

Matches R ``survival::coxph(Surv(time, event) ~ X [+ strata(s)], ties = "efron" | "breslow")``:
the same partial likelihood, Newton-Raphson from ``beta = 0`` with step halving, R's
convergence rule (relative change in the log partial likelihood below ``tol``), Wald, likelihood
ratio and score tests, and R's test for an infinite coefficient (monotone likelihood).

The risk-set sums are computed in ``O(n log n)`` (one sort, then reverse cumulative sums);
nothing loops over rows or over event times. Efron's correction is vectorised over the events:
the ``l``-th of ``d`` tied events at a time uses the denominator ``R0 - (l/d) D0``, where ``R0``
is the risk-set sum and ``D0`` the sum over the tied events; Breslow is the special case
``l/d = 0``. The second-moment (information) terms are never formed per risk set: they are
accumulated as ``X' diag(w * c) X`` with ``c`` a cumulative sum of per-event-time weights, so the
memory is ``O(n p)``. Only strata are looped over.

Covariates are centred and scaled internally (the model is invariant to this); results are
reported on the original scale.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy import linalg, stats

from stalwart.errors import AnalysisError

__all__ = ["CoxResult", "Ties", "cox_ph"]

Ties = Literal["efron", "breslow"]
FloatArray = npt.NDArray[np.float64]
IntpArray = npt.NDArray[np.intp]

_MAX_HALVINGS = 40
_TOLER_INF = math.sqrt(1e-9)  # R: coxph.control(toler.inf = sqrt(eps)) with eps = 1e-9


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":
            boxed = value.astype(object)
            boxed[~np.isfinite(value)] = None
            return boxed.tolist()
        return value.tolist()
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


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
        Standard errors from the inverse information (R: ``sqrt(diag(vcov(fit)))``).
    hazard_ratio : numpy.ndarray
        ``exp(coef)``.
    ci_low, ci_high : numpy.ndarray
        Wald ``1 - alpha`` limits of the hazard ratio, ``exp(coef -/+ z se)`` (R:
        ``summary(fit)$conf.int``).
    z : numpy.ndarray
        Wald statistics ``coef / se``.
    p_value : numpy.ndarray
        Two-sided Wald p-values.
    variance : numpy.ndarray
        ``p x p`` covariance matrix of ``coef`` (R: ``vcov(fit)``).
    loglik_null, loglik : float
        Log partial likelihood at ``beta = 0`` and at the estimate (R: ``fit$loglik``).
    lr_statistic, lr_p_value : float
        Likelihood-ratio test, ``2 (loglik - loglik_null)`` on ``df`` degrees of freedom.
    score_statistic, score_p_value : float
        Score (log-rank) test at ``beta = 0`` (R: ``fit$score``).
    wald_statistic, wald_p_value : float
        Joint Wald test of all coefficients (R: ``fit$wald.test``).
    df : int
        Number of coefficients.
    iterations : int
        Newton-Raphson iterations used (R: ``fit$iter``).
    converged : bool
        Whether the log partial likelihood converged within ``max_iter`` iterations.
    monotone_likelihood : bool
        R's "coefficient may be infinite" warning: the likelihood keeps rising as a
        coefficient diverges (e.g. every event in one arm). The coefficient and its standard
        error are then meaningless; the score and likelihood-ratio tests remain valid.
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
    df: int
    iterations: int
    converged: bool
    monotone_likelihood: bool
    n: int
    n_events: int
    ties: str
    alpha: float

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as JSON-serialisable Python values (non-finite floats become None)."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class _Stratum:
    """Index structures for one stratum, rows sorted by time (computed once per fit)."""

    z: FloatArray  # standardized covariates, sorted by time
    event_rows: IntpArray  # rows that are events
    group_start_row: IntpArray  # per distinct event time: first row (any status) at that time
    event_group: IntpArray  # per event: index of its distinct event time
    event_group_first: IntpArray  # per distinct event time: first position within event_rows
    frac: FloatArray  # per event: l/d (Efron) or 0 (Breslow)
    z_event_sum: FloatArray  # sum of z over events


def _stratum(z: FloatArray, time: FloatArray, event: npt.NDArray[np.bool_], ties: Ties) -> _Stratum:
    order = np.argsort(time, kind="stable")
    z, time, event = z[order], time[order], event[order]
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
    return _Stratum(
        z=z,
        event_rows=event_rows,
        group_start_row=time_start[eg[first]],
        event_group=event_group,
        event_group_first=first,
        frac=frac,
        z_event_sum=z[event_rows].sum(axis=0),
    )


def _reverse_cumsum(a: FloatArray) -> FloatArray:
    return np.cumsum(a[::-1], axis=0)[::-1]


def _stratum_derivatives(s: _Stratum, beta: FloatArray) -> tuple[float, FloatArray, FloatArray]:
    """Log partial likelihood, score and information contributed by one stratum."""
    eta = s.z @ beta
    shift = float(eta.max())
    w = np.exp(eta - shift)  # the shift cancels in the likelihood
    wz = w[:, None] * s.z
    r0 = _reverse_cumsum(w)[s.group_start_row]
    r1 = _reverse_cumsum(wz)[s.group_start_row]
    w_ev = w[s.event_rows]
    d0 = np.add.reduceat(w_ev, s.event_group_first)
    d1 = np.add.reduceat(wz[s.event_rows], s.event_group_first, axis=0)
    g, f = s.event_group, s.frac
    phi = r0[g] - f * d0[g]
    with np.errstate(divide="ignore", invalid="ignore"):
        abar = (r1[g] - f[:, None] * d1[g]) / phi[:, None]
        loglik = float(eta[s.event_rows].sum() - shift * g.size - np.log(phi).sum())
        inv_phi = 1.0 / phi
    n_groups = s.event_group_first.size
    c1 = np.bincount(g, weights=inv_phi, minlength=n_groups)
    c2 = np.bincount(g, weights=f * inv_phi, minlength=n_groups)
    marks = np.zeros(w.size)
    marks[s.group_start_row] = c1
    weight = w * np.cumsum(marks)
    weight[s.event_rows] -= w_ev * c2[g]
    score = s.z_event_sum - abar.sum(axis=0)
    information = (s.z * weight[:, None]).T @ s.z - abar.T @ abar
    return loglik, score, information


class _Model:
    """The partial likelihood summed over strata, in standardized covariates."""

    def __init__(self, strata: list[_Stratum], p: int) -> None:
        self.strata = strata
        self.p = p

    def __call__(self, beta: FloatArray) -> tuple[float, FloatArray, FloatArray]:
        loglik = 0.0
        score = np.zeros(self.p)
        information = np.zeros((self.p, self.p))
        for s in self.strata:
            ll, u, i = _stratum_derivatives(s, beta)
            loglik += ll
            score += u
            information += i
        return loglik, score, information


def _solve(information: FloatArray, score: FloatArray) -> FloatArray | None:
    try:
        factor = linalg.cho_factor(information)
    except linalg.LinAlgError:
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


def _newton(model: _Model, tol: float, max_iter: int) -> _Fit:
    """Newton-Raphson from zero with step halving (R ``coxph.fit`` / ``coxfit6``)."""
    beta = np.zeros(model.p)
    loglik, score, info = model(beta)
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
) -> tuple[FloatArray, npt.NDArray[np.bool_], FloatArray]:
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


def _strata_codes(strata: npt.ArrayLike | None, n: int) -> IntpArray:
    if strata is None:
        return np.zeros(n, dtype=np.intp)
    arr = np.asarray(strata)
    if arr.ndim != 1 or arr.size != n:
        raise AnalysisError(f"strata must be one-dimensional with {n} values, got {arr.shape}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise AnalysisError("strata contains missing values; remove them first")
    if arr.dtype.kind == "O" and any(v is None or v != v for v in arr.tolist()):
        raise AnalysisError("strata contains missing values; remove them first")
    return np.unique(arr, return_inverse=True)[1].astype(np.intp)


def _standardize(xa: FloatArray, names: tuple[str, ...]) -> tuple[FloatArray, FloatArray]:
    center = xa.mean(axis=0)
    z = xa - center
    scale = np.sqrt(np.mean(z * z, axis=0))
    flat = [names[j] for j in range(xa.shape[1]) if not scale[j] > 0.0]
    if flat:
        raise AnalysisError(f"covariate(s) with no variation cannot be estimated: {flat}")
    z = z / scale
    if np.linalg.matrix_rank(z) < z.shape[1]:
        raise AnalysisError(f"the covariates {list(names)} are collinear; drop a redundant one")
    return z, scale


def _inverse(information: FloatArray) -> FloatArray:
    try:
        inv: FloatArray = linalg.inv(information)
    except (linalg.LinAlgError, ValueError):
        return np.full_like(information, math.nan)
    return inv


def _chi2_test(statistic: float, df: int) -> tuple[float, float]:
    return statistic, float(stats.chi2.sf(statistic, df)) if math.isfinite(statistic) else math.nan


def cox_ph(
    time: npt.ArrayLike,
    event: npt.ArrayLike,
    X: npt.ArrayLike,
    ties: Ties = "efron",
    strata: npt.ArrayLike | None = None,
    alpha: float = 0.05,
    *,
    names: Sequence[str] | None = None,
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
        One minus the confidence level of the Wald limits.
    names : sequence of str, optional
        Covariate names; default ``x1, x2, ...``.
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
    if ties not in ("efron", "breslow"):
        raise AnalysisError(f"ties must be 'efron' or 'breslow', got {ties!r}")
    if not 0.0 < alpha < 1.0:
        raise AnalysisError(f"alpha must lie strictly between 0 and 1, got {alpha}")
    t, e, xa = _validate(time, event, X)
    p = xa.shape[1]
    labels = tuple(names) if names is not None else tuple(f"x{j + 1}" for j in range(p))
    if len(labels) != p:
        raise AnalysisError(f"names has {len(labels)} entries but X has {p} columns")
    codes = _strata_codes(strata, t.size)
    z, scale = _standardize(xa, labels)
    order = np.argsort(codes, kind="stable")
    parts = [
        _stratum(z[rows], t[rows], e[rows], ties)
        for rows in np.split(order, np.flatnonzero(np.diff(codes[order])) + 1)
        if np.any(e[rows])
    ]
    model = _Model(parts, p)
    loglik_null, score0, info0 = model(np.zeros(p))
    score_step = _solve(info0, score0)
    if score_step is None:
        raise AnalysisError(
            "the information matrix is singular at beta = 0: a covariate does not vary within "
            "any risk set (for instance it is constant within strata)"
        )
    fit = _newton(model, tol, max_iter)
    var_z = _inverse(fit.information)
    remaining = np.abs(var_z @ fit.score)
    monotone = bool(np.any((remaining > _TOLER_INF) & (remaining > _TOLER_INF * np.abs(fit.beta))))
    return _result(
        fit, var_z, scale, labels, monotone, loglik_null, float(score0 @ score_step), e, ties, alpha
    )


def _result(
    fit: _Fit,
    var_z: FloatArray,
    scale: FloatArray,
    names: tuple[str, ...],
    monotone: bool,
    loglik_null: float,
    score_statistic: float,
    event: npt.NDArray[np.bool_],
    ties: str,
    alpha: float,
) -> CoxResult:
    p = scale.size
    coef = fit.beta / scale
    variance = var_z / np.outer(scale, scale)
    se = np.sqrt(np.diag(variance))
    zq = float(stats.norm.ppf(1.0 - alpha / 2.0))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        z = coef / se
        ci_low = np.exp(coef - zq * se)
        ci_high = np.exp(coef + zq * se)
        hazard_ratio = np.exp(coef)
    wald = float(fit.beta @ fit.information @ fit.beta)
    lr, lr_p = _chi2_test(2.0 * (fit.loglik - loglik_null), p)
    sc, sc_p = _chi2_test(float(score_statistic), p)
    wd, wd_p = _chi2_test(wald, p)
    return CoxResult(
        names=names,
        coef=coef,
        se=se,
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
        df=p,
        iterations=fit.iterations,
        converged=fit.converged,
        monotone_likelihood=monotone,
        n=int(event.size),
        n_events=int(np.count_nonzero(event)),
        ties=ties,
        alpha=float(alpha),
    )
