"""Cox proportional hazards regression by Newton-Raphson, with Efron or Breslow ties.

Matches R ``survival::coxph(Surv(time, event) ~ X [+ strata(s)], ties = "efron" | "breslow")``:
the same partial likelihood, Newton-Raphson from ``beta = 0`` with step halving, R's
convergence rule (relative change in the log partial likelihood below ``tol``), Wald, likelihood
ratio and score tests, and R's test for an infinite coefficient (monotone likelihood). Optional:
the robust (sandwich) variance of ``coxph(..., robust = TRUE)`` or ``+ cluster(id)``, and
profile-likelihood confidence limits for each coefficient.

The partial likelihood, computed in ``O(n log n)`` over the risk sets of each stratum, is
:mod:`~stalwart.analysis.kernels._cox_likelihood`; the constrained maxima and profile limits are
:mod:`~stalwart.analysis.kernels._cox_maximize`. :mod:`~stalwart.analysis.kernels.firth` shares
both. Covariates are centred and scaled internally (the model is invariant to this); results are
reported on the original scale.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from stalwart.analysis.kernels._cox_likelihood import (
    CoxDesign,
    FloatArray,
    IntpArray,
    PartialLikelihood,
    cox_design,
    label_codes,
)
from stalwart.analysis.kernels._cox_maximize import (
    MAX_HALVINGS,
    TOLER_INF,
    cholesky_solve,
    inverse_or_nan,
    profile_interval,
    singular_columns,
)
from stalwart.analysis.kernels._distributions import chi2_sf, norm_ppf, norm_sf
from stalwart.errors import AnalysisError
from stalwart.jsonable import jsonable

__all__ = ["CoxResult", "Ties", "cox_ph"]

Ties = Literal["efron", "breslow"]


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


@dataclass
class _Fit:
    beta: FloatArray
    loglik: float
    score: FloatArray
    information: FloatArray
    iterations: int
    converged: bool


def _newton(
    model: PartialLikelihood, start: tuple[float, FloatArray, FloatArray], tol: float, max_iter: int
) -> _Fit:
    """Newton-Raphson from zero with step halving (R ``coxph.fit`` / ``coxfit6``)."""
    beta = np.zeros(model.p)
    loglik, score, info = start
    for iteration in range(1, max_iter + 1):
        step = cholesky_solve(info, score)
        if step is None:
            return _Fit(beta, loglik, score, info, iteration - 1, False)
        for _ in range(MAX_HALVINGS):
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


def _chi2_test(statistic: float, df: int) -> tuple[float, float]:
    return statistic, float(chi2_sf(statistic, df)) if math.isfinite(statistic) else math.nan


def _quadratic(matrix: FloatArray, vector: FloatArray) -> float:
    """``v' M^-1 v`` by Cholesky (R ``coxph.wtest``); NaN when ``M`` is not positive definite."""
    solved = cholesky_solve(matrix, vector)
    return float(vector @ solved) if solved is not None else math.nan


def _null_step(design: CoxDesign, info0: FloatArray, score0: FloatArray) -> FloatArray:
    """The score step at ``beta = 0``, after R's singularity check (``toler.chol``).

    R gives a coefficient NA when its column of the information is singular to
    ``coxph.control(toler.chol)``; here that is an error naming the covariate, since a
    coefficient of a model with a silently dropped column is not the one asked for.
    """
    singular = singular_columns(info0)
    step = None if singular else cholesky_solve(info0, score0)
    if step is None:
        which = [design.names[j] for j in singular] or list(design.names)
        raise AnalysisError(
            f"the information matrix is singular at beta = 0 (R: coefficient NA for {which}): "
            "the covariate does not vary within any risk set (for instance it is constant "
            "within every stratum), or is a combination of the others there; drop it"
        )
    return step


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
        that is singular at ``beta = 0`` to R's tolerance (``coxph.control(toler.chol)``,
        where R reports the coefficient NA): a covariate that does not vary within any risk
        set, e.g. one constant within every stratum.
    """
    design = cox_design(time, event, X, ties, strata, alpha, names)
    cluster_codes = label_codes(cluster, design.n, "cluster")
    robust = robust or cluster_codes is not None
    model = PartialLikelihood(design.strata, design.p, design.n)
    start = model(np.zeros(design.p))
    loglik_null, score0, info0 = start
    score_step = _null_step(design, info0, score0)
    fit = _newton(model, start, tol, max_iter)
    naive_z = inverse_or_nan(fit.information)
    remaining = np.abs(naive_z @ fit.score)
    monotone = bool(np.any((remaining > TOLER_INF) & (remaining > TOLER_INF * np.abs(fit.beta))))
    var_z, rscore, n_clusters = naive_z, math.nan, 0
    if robust:
        dfbeta = _collapse(model.score_residuals(fit.beta), cluster_codes) @ naive_z
        var_z = dfbeta.T @ dfbeta
        resid0 = _collapse(model.score_residuals(np.zeros(design.p)), cluster_codes)
        rscore = _quadratic(resid0.T @ resid0, resid0.sum(axis=0))
        n_clusters = resid0.shape[0]
    profile: tuple[FloatArray, FloatArray] | None = None
    if profile_ci:
        profile = profile_interval(model, fit.beta, fit.loglik, np.sqrt(np.diag(naive_z)), alpha)
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
    design: CoxDesign,
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
    zq = float(norm_ppf(1.0 - alpha / 2.0))
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
        p_value=2.0 * norm_sf(np.abs(z)),
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
