"""Firth-penalized Cox regression (Heinze & Schemper 2001), as R's ``coxphf`` computes it.

With few events, or none in one arm, the Cox partial likelihood can rise without bound as a
coefficient diverges (monotone likelihood: STALWART had 12 events on IL-2 against 1 on no
therapy). Firth's penalty keeps the estimate finite and removes its first-order bias: it
maximizes the penalized log partial likelihood

    l*(b) = l(b) + 1/2 log det I(b),

with ``I`` the (Efron or Breslow) information, by Newton-Raphson on the modified score
``U*_c = U_c + 1/2 tr(I^-1 dI/db_c)``. ``dI/db_c`` is the sum over event terms of the third
central moment of the covariates in the (Efron-weighted) risk set, so everything comes from
risk-set sums of ``w z``, ``w z z'`` and ``w z z' z_c``. Tests and confidence limits use the
penalized likelihood throughout: the penalized likelihood-ratio test of each coefficient
(``2 (l*(b) - max l* with b_j = 0)``) and penalized profile-likelihood limits, the defaults of
``coxphf(pl = TRUE)``. Standard errors come from ``I(b)^-1`` at the penalized estimate.

R's coxphf handles Breslow ties only and is not in Debian; this kernel also offers Efron ties,
and the validation suite checks both against R's own ``coxph`` likelihood and information
(``fit$loglik[2] + 0.5 log det(solve(fit$var))`` of ``coxph(..., init = b, iter.max = 0)``),
maximized and profiled in R.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from stalwart.analysis.kernels._cox_likelihood import (
    CoxDesign,
    FloatArray,
    Stratum,
    cox_design,
    reverse_cumsum,
    risk_sets,
)
from stalwart.analysis.kernels._cox_maximize import Ascent, ascend, inverse_or_nan, profile_interval
from stalwart.analysis.kernels._distributions import chi2_sf
from stalwart.analysis.kernels.cox import Ties
from stalwart.errors import AnalysisError
from stalwart.jsonable import jsonable

__all__ = ["FirthCoxResult", "firth_cox"]


@dataclass(frozen=True)
class FirthCoxResult:
    """Result of :func:`firth_cox`; per-covariate arrays follow the columns of ``X``.

    Attributes
    ----------
    names : tuple of str
        Covariate names.
    coef : numpy.ndarray
        Penalized log hazard ratios (coxphf: ``coef(fit)``).
    se : numpy.ndarray
        Standard errors from the inverse information at the penalized estimate (coxphf:
        ``sqrt(diag(fit$var))``).
    hazard_ratio : numpy.ndarray
        ``exp(coef)``.
    ci_low, ci_high : numpy.ndarray
        Penalized profile-likelihood ``1 - alpha`` limits of the hazard ratio (coxphf:
        ``fit$ci.lower``, ``fit$ci.upper`` with ``pl = TRUE``).
    chi2 : numpy.ndarray
        Penalized likelihood-ratio statistic of each coefficient,
        ``2 (loglik - max of l* with that coefficient at 0)``.
    p_value : numpy.ndarray
        Its chi-square(1) p-value (coxphf: ``fit$prob``).
    variance : numpy.ndarray
        ``p x p`` inverse information at the estimate (coxphf: ``fit$var``).
    loglik_null, loglik : float
        Penalized log partial likelihood at ``beta = 0`` and at the estimate, with the
        information of the covariates as given (coxphf's ``fit$loglik`` uses standardized
        covariates, which shifts both by the same constant).
    lr_statistic, lr_p_value : float
        Global penalized likelihood-ratio test, ``2 (loglik - loglik_null)`` on ``df``.
    df : int
        Number of coefficients.
    iterations : int
        Newton-Raphson iterations used.
    converged : bool
        Whether the largest Newton step fell below ``tol`` within ``max_iter`` iterations.
    n : int
        Observations used.
    n_events : int
        Number of events.
    ties : str
        ``"breslow"`` (coxphf's) or ``"efron"``.
    alpha : float
        One minus the confidence level.
    """

    names: tuple[str, ...]
    coef: FloatArray
    se: FloatArray
    hazard_ratio: FloatArray
    ci_low: FloatArray
    ci_high: FloatArray
    chi2: FloatArray
    p_value: FloatArray
    variance: FloatArray
    loglik_null: float
    loglik: float
    lr_statistic: float
    lr_p_value: float
    df: int
    iterations: int
    converged: bool
    n: int
    n_events: int
    ties: str
    alpha: float

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as JSON-serialisable Python values (non-finite floats become None)."""
        return {f.name: jsonable(getattr(self, f.name)) for f in fields(self)}


def _stratum_moments(
    s: Stratum, beta: FloatArray
) -> tuple[float, FloatArray, FloatArray, FloatArray]:
    """Log partial likelihood, score, information and ``dI[a, b, c] = dI_ab / db_c``.

    Each event term ``l`` is a log-sum-exp over its (Efron-weighted) risk set, so its second
    and third derivatives are the covariance and third central moment of ``z`` under the
    weights ``w_k c_kl / phi_l``. Per-term second moments come from risk-set sums of
    ``w z z'``; the sum over terms of the raw third moments uses the cumulative-weight trick
    of :func:`stalwart.analysis.kernels._cox_likelihood.stratum_derivatives`.
    """
    r = risk_sets(s, beta)
    z, g, f, ev, first = s.z, s.event_group, s.frac, s.event_rows, s.event_group_first
    p = z.shape[1]
    wzz = (r.w[:, None] * z)[:, :, None] * z[:, None, :]
    r2 = reverse_cumsum(np.add.reduceat(wzz, s.block_start, axis=0))
    d2 = np.add.reduceat(wzz[ev], first, axis=0)
    inv_phi = 1.0 / r.phi
    second = (r2[g] - f[:, None, None] * d2[g]) * inv_phi[:, None, None]
    abar = r.abar
    information = (second - abar[:, :, None] * abar[:, None, :]).sum(axis=0)
    marks = np.zeros(r.w.size)
    marks[s.block_start] = np.bincount(g, weights=inv_phi, minlength=first.size)
    weight = r.w * np.cumsum(marks)
    weight[ev] -= r.w[ev] * np.bincount(g, weights=f * inv_phi, minlength=first.size)[g]
    raw3 = np.einsum("k,ka,kb,kc->abc", weight, z, z, z)
    t = np.einsum("lab,lc->abc", second, abar)
    mean3 = np.einsum("la,lb,lc->abc", abar, abar, abar)
    dinfo = raw3 - t - t.transpose(0, 2, 1) - t.transpose(2, 0, 1) + 2.0 * mean3
    loglik = float(r.eta[ev].sum() - r.shift * ev.size - np.log(r.phi).sum())
    score = s.z_event_sum - abar.sum(axis=0)
    return loglik, score, information.reshape(p, p), dinfo


class _Penalized:
    """Penalized log partial likelihood, modified score and information (standardized)."""

    def __init__(self, strata: list[Stratum], p: int) -> None:
        self.strata = strata
        self.p = p

    def __call__(self, beta: FloatArray) -> tuple[float, FloatArray, FloatArray]:
        loglik = 0.0
        score = np.zeros(self.p)
        information = np.zeros((self.p, self.p))
        dinfo = np.zeros((self.p, self.p, self.p))
        for s in self.strata:
            ll, u, i, d = _stratum_moments(s, beta)
            loglik += ll
            score += u
            information += i
            dinfo += d
        sign, logdet = np.linalg.slogdet(information)
        if not (sign > 0 and math.isfinite(loglik)):
            return -math.inf, score, information
        modified = score + 0.5 * np.einsum("ab,abc->c", inverse_or_nan(information), dinfo)
        return loglik + 0.5 * float(logdet), modified, information


def firth_cox(
    time: npt.ArrayLike,
    event: npt.ArrayLike,
    X: npt.ArrayLike,
    ties: Ties = "breslow",
    strata: npt.ArrayLike | None = None,
    alpha: float = 0.05,
    *,
    names: Sequence[str] | None = None,
    tol: float = 1e-10,
    max_iter: int = 200,
) -> FirthCoxResult:
    """Fit a Cox model by Firth's penalized partial likelihood (Heinze & Schemper 2001).

    Matches R ``coxphf::coxphf(Surv(time, event) ~ X, pl = TRUE)`` (Breslow ties), computed
    to tight tolerances: the penalized estimate, its penalized likelihood-ratio p-values and
    penalized profile-likelihood confidence limits. Finite even when the ordinary Cox
    estimate diverges (no events in one arm).

    Parameters
    ----------
    time : array_like
        Follow-up time per subject, finite and non-negative.
    event : array_like
        1 for an event, 0 for censored.
    X : array_like
        Covariates, shape ``(n,)`` or ``(n, p)``.
    ties : {"breslow", "efron"}, default "breslow"
        Partial likelihood for tied event times (coxphf uses Breslow's).
    strata : array_like, optional
        Stratum label per subject (separate baseline hazards; the penalty uses the summed
        information).
    alpha : float, default 0.05
        One minus the confidence level.
    names : sequence of str, optional
        Covariate names; default ``x1, x2, ...``.
    tol : float, default 1e-10
        Convergence: the largest Newton step on the standardized scale (coxphf: ``epsilon``).
    max_iter : int, default 200
        Maximum Newton-Raphson iterations (coxphf: ``maxit``).

    Returns
    -------
    FirthCoxResult

    Raises
    ------
    AnalysisError
        The input errors of :func:`~stalwart.analysis.kernels.cox.cox_ph`, or an information
        matrix that is singular at ``beta = 0``.
    """
    design = cox_design(time, event, X, ties, strata, alpha, names)
    objective = _Penalized(design.strata, design.p)
    zero = np.zeros(design.p)
    value_null = objective(zero)[0]
    if not math.isfinite(value_null):
        raise AnalysisError(
            "the information matrix is singular at beta = 0: a covariate does not vary within "
            "any risk set (for instance it is constant within strata)"
        )
    fit = ascend(objective, zero, max_step=0.5, tol=tol, max_iter=max_iter)
    var_z = inverse_or_nan(fit.information)
    chi2 = np.empty(design.p)
    for j in range(design.p):
        start = fit.beta.copy()
        start[j] = 0.0
        restricted = ascend(objective, start, fixed=j, max_step=0.5)
        chi2[j] = max(2.0 * (fit.value - restricted.value), 0.0)
    low, high = profile_interval(objective, fit.beta, fit.value, np.sqrt(np.diag(var_z)), alpha)
    limits = (low, high)
    return _result(design, fit.beta, fit.value, value_null, var_z, chi2, limits, fit, ties, alpha)


def _result(
    design: CoxDesign,
    beta: FloatArray,
    value: float,
    value_null: float,
    var_z: FloatArray,
    chi2: FloatArray,
    limits: tuple[FloatArray, FloatArray],
    fit: Ascent,
    ties: str,
    alpha: float,
) -> FirthCoxResult:
    scale = design.scale
    offset = float(
        np.log(scale).sum()
    )  # 1/2 log det I(original) = 1/2 log det I(standardized) + this
    lr = 2.0 * (value - value_null)
    with np.errstate(over="ignore"):
        ci_low, ci_high = np.exp(limits[0] / scale), np.exp(limits[1] / scale)
    return FirthCoxResult(
        names=design.names,
        coef=beta / scale,
        se=np.sqrt(np.diag(var_z)) / scale,
        hazard_ratio=np.exp(beta / scale),
        ci_low=ci_low,
        ci_high=ci_high,
        chi2=chi2,
        p_value=chi2_sf(chi2, 1),
        variance=var_z / np.outer(scale, scale),
        loglik_null=value_null + offset,
        loglik=value + offset,
        lr_statistic=lr,
        lr_p_value=float(chi2_sf(lr, design.p)),
        df=design.p,
        iterations=int(fit.iterations),
        converged=bool(fit.converged),
        n=design.n,
        n_events=int(np.count_nonzero(design.event)),
        ties=ties,
        alpha=float(alpha),
    )
