"""Analysis of covariance: a treatment contrast adjusted for baseline by ordinary least squares.

The model is R's ``lm(y ~ arm + baseline [+ covariates])`` fitted with every arm present in
``group`` (so the residual variance is pooled across all arms), and the adjusted (least-squares)
means are ``emmeans(fit, ~ arm)``: each arm's fitted mean at the overall mean of the baseline and
of each further covariate. The fit uses a Householder QR decomposition of the design matrix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import linalg

from stalwart.analysis.kernels._distributions import t_ppf, t_sf
from stalwart.errors import AnalysisError
from stalwart.jsonable import jsonable

__all__ = ["AncovaResult", "ancova"]

_ALIAS_TOL = 1e-9


@dataclass(frozen=True)
class AncovaResult:
    """Result of :func:`ancova`.

    Attributes
    ----------
    difference : float
        Adjusted difference, treatment minus control (R: the ``emmeans`` pairwise contrast, or the
        ``lm`` coefficient of the treatment arm when control is the reference level).
    se : float
        Standard error of the difference.
    df : float
        Residual degrees of freedom, ``n - (number of arms) - 1 - (number of covariates)``.
    statistic : float
        t statistic ``difference / se``.
    ci_low, ci_high : float
        Two-sided ``1 - alpha`` confidence limits of the difference.
    p_value : float
        Two-sided p-value of ``difference == 0``.
    levels : tuple
        The arms present in ``group``, sorted.
    adjusted_means : numpy.ndarray
        LS mean of each arm (order of ``levels``) at the mean baseline and mean covariates.
    adjusted_means_se : numpy.ndarray
        Standard error of each LS mean.
    n_per_level : numpy.ndarray
        Number of observations in each arm (order of ``levels``).
    treatment_level, control_level : object
        The two arms compared.
    baseline_coef, baseline_se : float
        Estimated slope on baseline and its standard error.
    residual_sd : float
        Residual standard error (R: ``sigma(fit)``).
    n : int
        Observations used.
    alpha : float
        One minus the confidence level used for the interval.
    """

    difference: float
    se: float
    df: float
    statistic: float
    ci_low: float
    ci_high: float
    p_value: float
    levels: tuple[Any, ...]
    adjusted_means: npt.NDArray[np.float64]
    adjusted_means_se: npt.NDArray[np.float64]
    n_per_level: npt.NDArray[np.int64]
    treatment_level: Any
    control_level: Any
    baseline_coef: float
    baseline_se: float
    residual_sd: float
    n: int
    alpha: float

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as JSON-serialisable Python values (non-finite floats become None)."""
        return {f.name: jsonable(getattr(self, f.name)) for f in fields(self)}


def _numeric(values: npt.ArrayLike, name: str, ndim: int) -> npt.NDArray[np.float64]:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise AnalysisError(f"{name} must be numeric: {exc}") from exc
    if arr.ndim != ndim:
        raise AnalysisError(f"{name} must be {ndim}-dimensional, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise AnalysisError(f"{name} contains missing or non-finite values; remove them first")
    return arr


def _covariates(values: npt.ArrayLike, n: int) -> npt.NDArray[np.float64]:
    arr = _numeric(values, "covariates", np.ndim(values))
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] != n:
        raise AnalysisError(f"covariates must have shape ({n},) or ({n}, m), got {arr.shape}")
    return arr


def _labels(group: npt.ArrayLike, n: int) -> npt.NDArray[Any]:
    arr = np.asarray(group)
    if arr.ndim != 1 or arr.size != n:
        raise AnalysisError(f"group must be one-dimensional with {n} values, got shape {arr.shape}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise AnalysisError("group contains missing values; remove them first")
    if arr.dtype.kind == "O" and any(v is None or v != v for v in arr.tolist()):
        raise AnalysisError("group contains missing values; remove them first")
    return arr


def _design(
    group: npt.NDArray[Any],
    baseline: npt.NDArray[np.float64],
    covariates: npt.NDArray[np.float64] | None,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[Any], npt.NDArray[np.int64], list[str]]:
    """Cell-means design: one indicator per arm, then centred baseline and covariates."""
    levels, codes = np.unique(group, return_inverse=True)
    k = levels.size
    n = group.size
    extra = covariates if covariates is not None else np.empty((n, 0))
    cols = np.column_stack([baseline, extra])
    cols = cols - cols.mean(axis=0)
    design = np.zeros((n, k + cols.shape[1]))
    design[np.arange(n), codes] = 1.0
    design[:, k:] = cols
    names = [f"arm {lev!r}" for lev in levels.tolist()] + ["baseline"]
    names += [f"covariate {j}" for j in range(extra.shape[1])]
    return design, levels, np.bincount(codes, minlength=k).astype(np.int64), names


def _qr_fit(
    design: npt.NDArray[np.float64], y: npt.NDArray[np.float64], names: list[str]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], float, float]:
    """Least squares by QR; returns coefficients, unscaled covariance, sigma^2 and df."""
    n, p = design.shape
    df = n - p
    if df < 1:
        raise AnalysisError(
            f"ANCOVA needs more observations than parameters: {n} observations, {p} parameters"
        )
    q, r = linalg.qr(design, mode="economic")
    diag = np.abs(np.diag(r))
    scale = np.linalg.norm(design, axis=0)
    aliased = [names[j] for j in range(p) if not diag[j] > _ALIAS_TOL * max(scale[j], 1e-300)]
    if aliased:
        raise AnalysisError(
            "the ANCOVA design is rank-deficient (a term has no variation or is collinear with "
            f"others): {', '.join(aliased)}"
        )
    coef = linalg.solve_triangular(r, q.T @ y)
    resid = y - design @ coef
    sigma2 = float(resid @ resid) / df
    r_inv = linalg.solve_triangular(r, np.eye(p))
    return coef, r_inv @ r_inv.T, sigma2, float(df)


def ancova(
    y: npt.ArrayLike,
    group: npt.ArrayLike,
    baseline: npt.ArrayLike,
    treatment_level: Any,
    control_level: Any,
    alpha: float = 0.05,
    covariates: npt.ArrayLike | None = None,
) -> AncovaResult:
    """Baseline-adjusted difference between two arms by ANCOVA.

    Fits ``y ~ arm + baseline [+ covariates]`` by ordinary least squares with every arm present
    in ``group`` and returns the adjusted difference ``treatment - control`` with its t-based
    confidence interval and p-value, plus each arm's least-squares mean. Matches R
    ``lm(y ~ arm + baseline)`` followed by ``emmeans::emmeans(fit, ~ arm)`` and
    ``pairs()``/``contrast()`` (no multiplicity adjustment).

    Parameters
    ----------
    y : array_like
        Outcome, one finite value per participant.
    group : array_like
        Arm label per participant (any sortable labels).
    baseline : array_like
        Baseline value of the outcome per participant.
    treatment_level, control_level : object
        The arms to compare; both must occur in ``group``.
    alpha : float, default 0.05
        One minus the confidence level of the interval.
    covariates : array_like, optional
        Further covariates, shape ``(n,)`` or ``(n, m)``; LS means are taken at their means.

    Returns
    -------
    AncovaResult
        The adjusted difference, its inference and the LS means.

    Raises
    ------
    AnalysisError
        Mismatched lengths, non-finite values, an arm that is absent, too few observations, or a
        rank-deficient design (e.g. a constant baseline).
    """
    if not 0.0 < alpha < 1.0:
        raise AnalysisError(f"alpha must lie strictly between 0 and 1, got {alpha}")
    ya = _numeric(y, "y", 1)
    n = ya.size
    ba = _numeric(baseline, "baseline", 1)
    if ba.size != n:
        raise AnalysisError(f"baseline has {ba.size} values but y has {n}")
    ga = _labels(group, n)
    cov = None if covariates is None else _covariates(covariates, n)
    design, levels, counts, names = _design(ga, ba, cov)
    level_list = levels.tolist()
    if treatment_level == control_level:
        raise AnalysisError("treatment_level and control_level must differ")
    for label, value in (("treatment_level", treatment_level), ("control_level", control_level)):
        if value not in level_list:
            raise AnalysisError(f"{label} {value!r} does not occur in group (levels: {level_list})")
    coef, unscaled, sigma2, df = _qr_fit(design, ya, names)
    k = levels.size
    covariance = sigma2 * unscaled
    it = level_list.index(treatment_level)
    ic = level_list.index(control_level)
    contrast = np.zeros(coef.size)
    contrast[it], contrast[ic] = 1.0, -1.0
    difference = float(contrast @ coef)
    se = math.sqrt(float(contrast @ covariance @ contrast))
    statistic = difference / se if se > 0.0 else math.nan
    quantile = float(t_ppf(1.0 - alpha / 2.0, df))
    return AncovaResult(
        difference=difference,
        se=se,
        df=df,
        statistic=statistic,
        ci_low=difference - quantile * se,
        ci_high=difference + quantile * se,
        p_value=float(2.0 * t_sf(abs(statistic), df)),
        levels=tuple(level_list),
        adjusted_means=np.array(coef[:k], dtype=np.float64),
        adjusted_means_se=np.sqrt(np.diag(covariance)[:k]),
        n_per_level=counts,
        treatment_level=treatment_level,
        control_level=control_level,
        baseline_coef=float(coef[k]),
        baseline_se=math.sqrt(float(covariance[k, k])),
        residual_sd=math.sqrt(sigma2),
        n=int(n),
        alpha=float(alpha),
    )
