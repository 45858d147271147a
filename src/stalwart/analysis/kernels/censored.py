"""Mean log10 HIV RNA by arm when some results are below the assay's limit of quantification.

Two analyses of the same data, on the log10 copies/mL scale:

* :func:`substitution_by_arm`, the simple stated rule: a result below the limit counts as half the
  limit (``rule="half"``) or as the limit itself (``rule="limit"``); then an ordinary linear model
  ``y ~ arm`` gives the arm means and the differences from the reference arm with t-based CIs
  (R ``lm``). It is biased when many results are censored, which is why the second one exists.
* :func:`tobit_by_arm`, a left-censored normal (Tobit) model fitted by maximum likelihood: a
  quantified result contributes its normal density, a result below the limit ``L`` contributes
  ``P(Y < log10 L)``. Parameters are the arm coefficients and ``log(sigma)``, fitted by Newton's
  method with analytic derivatives; standard errors come from the inverse observed information,
  tests and CIs are Wald z, as R ``survreg(Surv(y, !below, type = "left") ~ arm,
  dist = "gaussian")`` and its ``summary``.

Arms use treatment contrasts against ``reference`` (R: the first factor level unless releveled).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy import linalg, special

from stalwart.analysis.kernels._distributions import norm_isf, norm_sf, t_isf, t_sf
from stalwart.errors import AnalysisError
from stalwart.jsonable import jsonable

__all__ = [
    "ArmMeansResult",
    "CensoringRule",
    "log10_with_rule",
    "substitution_by_arm",
    "tobit_by_arm",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
CensoringRule = Literal["half", "limit"]

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_MAX_ITER = 100
_MAX_HALVINGS = 40


@dataclass(frozen=True)
class ArmMeansResult:
    """Mean log10 HIV RNA per arm and differences from the reference arm.

    Attributes
    ----------
    method : str
        ``"tobit"``, ``"substitution-half"`` or ``"substitution-limit"``.
    arms : tuple
        Arm labels, reference first, then the others sorted; the order of ``n``, ``mean``...
    n, n_below : numpy.ndarray
        Results per arm, and how many of them were below the limit.
    mean, mean_se : numpy.ndarray
        Estimated mean log10 RNA per arm and its standard error.
    reference : Any
        The reference arm.
    compared : tuple
        The non-reference arms, the order of the ``difference`` arrays.
    difference, difference_se : numpy.ndarray
        Mean of each compared arm minus the reference mean (R: the arm coefficients) and SE.
    statistic : numpy.ndarray
        ``difference / difference_se`` (z for Tobit, t for substitution).
    p_value : numpy.ndarray
        Two-sided p-value (normal for Tobit, t on ``df`` for substitution).
    ci_low, ci_high : numpy.ndarray
        ``1 - alpha`` confidence limits of the differences.
    sigma : float
        Residual standard deviation (Tobit: the ML scale, R ``fit$scale``; substitution: the
        residual standard error of ``lm``).
    log_sigma_se : float
        Standard error of ``log(sigma)`` (Tobit, R ``Log(scale)``); NaN for substitution.
    df : float
        Residual degrees of freedom of the t reference (substitution); ``inf`` for Tobit.
    loglik : float
        Maximised log-likelihood of the model.
    iterations : int
        Newton iterations (0 for substitution).
    alpha : float
        One minus the confidence level.
    """

    method: str
    arms: tuple[Any, ...]
    n: IntArray
    n_below: IntArray
    mean: FloatArray
    mean_se: FloatArray
    reference: Any
    compared: tuple[Any, ...]
    difference: FloatArray
    difference_se: FloatArray
    statistic: FloatArray
    p_value: FloatArray
    ci_low: FloatArray
    ci_high: FloatArray
    sigma: float
    log_sigma_se: float
    df: float
    loglik: float
    iterations: int
    alpha: float

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as JSON-serialisable Python values (non-finite floats become None)."""
        return {f.name: jsonable(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class _Data:
    y: FloatArray  # log10 result, or log10 limit where below
    below: BoolArray
    design: FloatArray  # intercept + one indicator per non-reference arm
    arms: tuple[Any, ...]
    counts: IntArray
    below_counts: IntArray


def _log10_values(
    rna: npt.ArrayLike, below: npt.ArrayLike, limit: npt.ArrayLike
) -> tuple[FloatArray, BoolArray]:
    """log10 of each result, or of its limit where below it; and the below flags."""
    try:
        values = np.asarray(rna, dtype=np.float64)
        limits = np.asarray(limit, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise AnalysisError(f"rna and limit must be numeric copies/mL: {exc}") from exc
    flags = np.asarray(below)
    if values.ndim != 1 or values.size == 0:
        raise AnalysisError("rna must be a non-empty one-dimensional array of copies/mL")
    n = values.size
    if flags.shape != (n,) or flags.dtype.kind not in "biuf":
        raise AnalysisError(f"below must be {n} booleans (True = below the assay limit)")
    if not np.all((flags == 0) | (flags == 1)):
        raise AnalysisError("below must hold only True/False (or 1/0)")
    is_below = flags.astype(np.bool_)
    try:
        limits = np.broadcast_to(limits, (n,))
    except ValueError as exc:
        raise AnalysisError(f"limit must be one value or one per result: {exc}") from exc
    if not np.all(np.isfinite(limits)) or np.any(limits <= 0):
        raise AnalysisError("limit (copies/mL) must be finite and positive")
    quantified = values[~is_below]
    if not np.all(np.isfinite(quantified)) or np.any(quantified <= 0):
        raise AnalysisError("rna above the limit must be finite and positive copies/mL")
    if np.any(quantified < limits[~is_below]):
        raise AnalysisError(
            "a quantified rna result lies below its assay limit; flag it as below the limit"
        )
    y = np.where(is_below, np.log10(limits), np.log10(np.where(is_below, 1.0, values)))
    return y, is_below


def _prepare(
    rna: npt.ArrayLike,
    below: npt.ArrayLike,
    limit: npt.ArrayLike,
    arm: npt.ArrayLike,
    reference: Any,
) -> _Data:
    y, is_below = _log10_values(rna, below, limit)
    n = y.size
    labels = np.asarray(arm)
    if labels.shape != (n,):
        raise AnalysisError(f"arm must have one label per result ({n}), got shape {labels.shape}")
    if labels.dtype.kind == "f" and not np.all(np.isfinite(labels)):
        raise AnalysisError("arm contains missing values; remove those results first")
    if labels.dtype.kind == "O" and any(v is None or v != v for v in labels.tolist()):
        raise AnalysisError("arm contains missing values; remove those results first")
    levels = np.unique(labels).tolist()
    if len(levels) < 2:
        raise AnalysisError(f"need results from at least two arms, got {levels}")
    if reference is None:
        reference = levels[0]
    if reference not in levels:
        raise AnalysisError(f"reference arm {reference!r} is not among the arms {levels}")
    ordered = (reference, *[v for v in levels if v != reference])
    codes = np.zeros(n, dtype=np.intp)
    for j, level in enumerate(ordered):
        codes[labels == level] = j
    k = len(ordered)
    design = np.zeros((n, k))
    design[:, 0] = 1.0
    design[np.arange(n), codes] = 1.0
    return _Data(
        y=y,
        below=is_below,
        design=design,
        arms=ordered,
        counts=np.bincount(codes, minlength=k).astype(np.int64),
        below_counts=np.bincount(codes, weights=is_below, minlength=k).astype(np.int64),
    )


def log10_with_rule(
    rna: npt.ArrayLike, below: npt.ArrayLike, limit: npt.ArrayLike, *, rule: CensoringRule = "half"
) -> FloatArray:
    """log10 RNA with results below the limit replaced by ``limit / 2`` or ``limit``.

    Raises
    ------
    AnalysisError
        Invalid values or flags, or a rule other than ``"half"`` / ``"limit"``.
    """
    if rule not in ("half", "limit"):
        raise AnalysisError(f"rule must be 'half' or 'limit', got {rule!r}")
    y, is_below = _log10_values(rna, below, limit)
    shift = math.log10(2.0) if rule == "half" else 0.0
    return np.where(is_below, y - shift, y)


def _arm_means(
    beta: FloatArray, cov: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Arm means (intercept + coefficient) with SEs, and the coefficients with SEs."""
    k = beta.size
    contrast = np.eye(k)
    contrast[:, 0] = 1.0
    means = contrast @ beta
    mean_se = np.sqrt(np.einsum("ij,jk,ik->i", contrast, cov, contrast))
    diff_se = np.sqrt(np.diag(cov)[1:])
    return means, mean_se, beta[1:], diff_se


def _result(
    method: str,
    data: _Data,
    beta: FloatArray,
    cov: FloatArray,
    sigma: float,
    log_sigma_se: float,
    df: float,
    loglik: float,
    iterations: int,
    alpha: float,
) -> ArmMeansResult:
    means, mean_se, diff, diff_se = _arm_means(beta, cov)
    statistic = diff / diff_se
    if math.isinf(df):
        p_value = 2.0 * norm_sf(np.abs(statistic))
        q = float(norm_isf(alpha / 2.0))
    else:
        p_value = 2.0 * t_sf(np.abs(statistic), df)
        q = float(t_isf(alpha / 2.0, df))
    return ArmMeansResult(
        method=method,
        arms=data.arms,
        n=data.counts,
        n_below=data.below_counts,
        mean=means,
        mean_se=mean_se,
        reference=data.arms[0],
        compared=data.arms[1:],
        difference=diff,
        difference_se=diff_se,
        statistic=statistic,
        p_value=np.asarray(p_value, dtype=np.float64),
        ci_low=diff - q * diff_se,
        ci_high=diff + q * diff_se,
        sigma=sigma,
        log_sigma_se=log_sigma_se,
        df=df,
        loglik=loglik,
        iterations=iterations,
        alpha=alpha,
    )


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise AnalysisError(f"alpha must lie strictly between 0 and 1, got {alpha}")


def substitution_by_arm(
    rna: npt.ArrayLike,
    below: npt.ArrayLike,
    limit: npt.ArrayLike,
    arm: npt.ArrayLike,
    *,
    rule: CensoringRule = "half",
    reference: Any = None,
    alpha: float = 0.05,
) -> ArmMeansResult:
    """Arm means of log10 RNA after substituting results below the limit (R ``lm(y ~ arm)``).

    Parameters
    ----------
    rna : array_like
        HIV RNA in copies/mL; ignored (may be NaN) where ``below`` is True.
    below : array_like of bool
        True where the result is below the assay's limit of quantification.
    limit : float or array_like
        Limit of quantification in copies/mL, one value or one per result.
    arm : array_like
        Arm label per result.
    rule : {"half", "limit"}
        Substitute ``limit / 2`` or ``limit`` for results below the limit.
    reference : optional
        Reference arm of the differences (default: the first label in sorted order, as R).
    alpha : float, default 0.05
        One minus the confidence level.

    Returns
    -------
    ArmMeansResult
        With t-based tests and CIs on ``n - k`` degrees of freedom (R ``summary.lm``,
        ``confint``); ``loglik`` is R's ``logLik(fit)``.

    Raises
    ------
    AnalysisError
        Invalid values, flags, limits or labels; fewer than two arms; no residual degrees of
        freedom.
    """
    _check_alpha(alpha)
    y = log10_with_rule(rna, below, limit, rule=rule)
    data = _prepare(rna, below, limit, arm, reference)
    n, k = data.design.shape
    df = n - k
    if df < 1:
        raise AnalysisError("substitution analysis needs more results than arms")
    beta, _, _, _ = linalg.lstsq(data.design, y)
    resid = y - data.design @ beta
    rss = float(resid @ resid)
    sigma2 = rss / df
    cov = sigma2 * linalg.inv(data.design.T @ data.design)
    loglik = -0.5 * n * (math.log(2.0 * math.pi * rss / n) + 1.0) if rss > 0 else math.inf
    return _result(
        f"substitution-{rule}", data, beta, cov, math.sqrt(sigma2), math.nan, df, loglik, 0, alpha
    )


def _tobit_terms(theta: FloatArray, data: _Data) -> tuple[float, FloatArray, FloatArray]:
    """Log-likelihood, gradient and Hessian in ``(beta, log sigma)`` (left-censored normal)."""
    x = data.design
    beta, log_sigma = theta[:-1], theta[-1]
    sigma = math.exp(log_sigma)
    z = (data.y - x @ beta) / sigma
    obs = ~data.below
    log_cdf = special.log_ndtr(z)
    ratio = np.exp(-0.5 * z * z - _LOG_SQRT_2PI - log_cdf)  # phi(z) / Phi(z)
    loglik = float(np.sum(np.where(obs, -0.5 * z * z - _LOG_SQRT_2PI - log_sigma, log_cdf)))
    # per-observation derivatives of the contribution wrt mu / sigma (score) and log sigma
    g_mu = np.where(obs, z, -ratio)  # times 1 / sigma
    g_eta = np.where(obs, z * z - 1.0, -ratio * z)
    h_mumu = np.where(obs, -1.0, -ratio * (z + ratio))  # times 1 / sigma^2
    h_mueta = np.where(obs, -2.0 * z, ratio * (1.0 - z * (z + ratio)))  # times 1 / sigma
    h_etaeta = np.where(obs, -2.0 * z * z, ratio * z * (1.0 - z * (z + ratio)))
    p = beta.size
    grad = np.empty(p + 1)
    grad[:p] = x.T @ g_mu / sigma
    grad[p] = g_eta.sum()
    hess = np.empty((p + 1, p + 1))
    hess[:p, :p] = (x * h_mumu[:, None]).T @ x / sigma**2
    hess[:p, p] = hess[p, :p] = x.T @ h_mueta / sigma
    hess[p, p] = h_etaeta.sum()
    return loglik, grad, hess


def tobit_by_arm(
    rna: npt.ArrayLike,
    below: npt.ArrayLike,
    limit: npt.ArrayLike,
    arm: npt.ArrayLike,
    *,
    reference: Any = None,
    alpha: float = 0.05,
    tol: float = 1e-10,
) -> ArmMeansResult:
    """Left-censored normal (Tobit) model of log10 RNA by arm, fitted by maximum likelihood.

    Matches R ``survreg(Surv(log10(value), !below, type = "left") ~ arm, dist = "gaussian")``
    where ``value`` is the result, or the limit when below it: coefficients, ``vcov`` (including
    ``Log(scale)``), ``scale``, ``loglik`` and the Wald z tests of ``summary``.

    Parameters
    ----------
    rna, below, limit, arm, reference, alpha
        As :func:`substitution_by_arm`.
    tol : float, default 1e-10
        Newton stops when the largest parameter step is below ``tol``.

    Returns
    -------
    ArmMeansResult

    Raises
    ------
    AnalysisError
        Invalid input; an arm whose results are all below the limit (its mean has no finite
        maximum-likelihood estimate); or a fit that does not converge.
    """
    _check_alpha(alpha)
    data = _prepare(rna, below, limit, arm, reference)
    empty = [a for a, n, b in zip(data.arms, data.counts, data.below_counts, strict=True) if n == b]
    if empty:
        raise AnalysisError(
            f"every result in arm(s) {empty} is below the limit: the Tobit mean is not "
            "estimable there (report the proportion below the limit instead)"
        )
    theta = _start(data)
    loglik, grad, hess = _tobit_terms(theta, data)
    iterations = 0
    while iterations < _MAX_ITER:
        iterations += 1
        step = _newton_step(grad, hess)
        for _ in range(_MAX_HALVINGS):
            trial = theta + step
            new = _tobit_terms(trial, data)
            if np.isfinite(new[0]) and new[0] >= loglik - 1e-12 * abs(loglik):
                break
            step = step / 2.0
        else:
            raise AnalysisError("the Tobit fit cannot increase the likelihood; check the data")
        theta = trial
        loglik, grad, hess = new
        if float(np.max(np.abs(step))) < tol:
            break
    else:
        raise AnalysisError(f"the Tobit fit did not converge in {_MAX_ITER} iterations")
    try:
        cov = linalg.inv(-hess)
    except linalg.LinAlgError as exc:
        raise AnalysisError(f"the Tobit information matrix is singular: {exc}") from exc
    if not np.all(np.diag(cov) > 0):
        raise AnalysisError("the Tobit fit did not reach a maximum (information not positive)")
    p = theta.size - 1
    return _result(
        "tobit",
        data,
        theta[:p],
        cov[:p, :p],
        math.exp(theta[p]),
        math.sqrt(cov[p, p]),
        math.inf,
        loglik,
        iterations,
        alpha,
    )


def _newton_step(grad: FloatArray, hess: FloatArray) -> FloatArray:
    """Newton step, damped (Levenberg) where the negative Hessian is not positive definite."""
    info = -hess
    scale = float(np.max(np.abs(np.diag(info)))) or 1.0
    for damping in (0.0, 1e-8, 1e-6, 1e-4, 1e-2, 1.0, 1e2):
        try:
            factor = linalg.cho_factor(info + damping * scale * np.eye(info.shape[0]))
        except linalg.LinAlgError:
            continue
        step: FloatArray = linalg.cho_solve(factor, grad)
        return step
    raise AnalysisError("the Tobit information matrix is not positive definite; check the data")


def _start(data: _Data) -> FloatArray:
    """Least squares on the values with the limit substituted; ``sigma`` from its residuals."""
    beta, _, _, _ = linalg.lstsq(data.design, data.y)
    resid = data.y - data.design @ beta
    sd = float(np.sqrt(np.mean(resid**2)))
    if not sd > 0:
        quantified = data.y[~data.below]
        sd = float(np.std(quantified)) if quantified.size > 1 else 0.0
    if not sd > 0:
        raise AnalysisError(
            "all quantified results are identical: the Tobit scale is not estimable"
        )
    return np.append(beta, math.log(sd))
