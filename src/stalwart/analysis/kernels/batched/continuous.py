"""Batched kernels of a continuous endpoint: Welch t-test and ANCOVA in every replicate.

* :func:`batched_welch_ttest`: :func:`~stalwart.analysis.kernels.ttest.welch_ttest`
  (R ``t.test``), sharing its Welch-Satterthwaite degrees of freedom;
* :func:`batched_ancova`: :func:`~stalwart.analysis.kernels.ancova.ancova` with one covariate
  (R ``lm(y ~ arm + baseline)``), every arm present in the replicate in the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special

from stalwart.analysis.kernels.batched._arrays import (
    BoolArray,
    FloatArray,
    IntArray,
    as_matrix,
    bool_matrix,
    check_alpha,
    check_same_shape,
    float_matrix,
)
from stalwart.analysis.kernels.ttest import welch_df
from stalwart.errors import AnalysisError

__all__ = ["BatchedAncova", "BatchedTwoSample", "batched_ancova", "batched_welch_ttest"]


@dataclass(frozen=True)
class BatchedTwoSample:
    """Welch t-test per replicate.

    Fields as :class:`~stalwart.analysis.kernels.ttest.TwoSampleResult`, as arrays.
    """

    difference: FloatArray
    se: FloatArray
    df: FloatArray
    statistic: FloatArray
    p_value: FloatArray
    ci_low: FloatArray
    ci_high: FloatArray
    mean_x: FloatArray
    mean_y: FloatArray
    n_x: IntArray
    n_y: IntArray
    estimable: BoolArray


def batched_welch_ttest(
    values: npt.ArrayLike, x: npt.ArrayLike, y: npt.ArrayLike, alpha: float = 0.05
) -> BatchedTwoSample:
    """Welch t-test of ``mean(values[x]) - mean(values[y])`` in every replicate.

    Parameters
    ----------
    values : array_like, shape (R, n)
        Outcome; entries outside ``x`` and ``y`` are ignored (may be NaN).
    x, y : array_like of bool, shape (R, n)
        The two samples of each replicate (disjoint).
    alpha : float
        One minus the confidence level.

    Returns
    -------
    BatchedTwoSample
        Not estimable where a sample has fewer than 2 values or both are constant.
    """
    check_alpha(alpha)
    v = float_matrix(values, "values")
    xm = bool_matrix(x, "x")
    ym = bool_matrix(y, "y")
    check_same_shape(v.shape, x=xm, y=ym)
    if np.any(xm & ym):
        raise AnalysisError("x and y overlap: a participant is in both samples")
    nx, mean_x, var_x = _moments(v, xm)
    ny, mean_y, var_y = _moments(v, ym)
    ok = (nx >= 2) & (ny >= 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        vx, vy = var_x / nx, var_y / ny
        se = np.sqrt(vx + vy)
        df = welch_df(vx, vy, nx, ny)
    ok &= se > 10.0 * np.finfo(np.float64).eps * np.maximum(np.abs(mean_x), np.abs(mean_y))
    difference = mean_x - mean_y
    return BatchedTwoSample(
        *_t_inference(difference, se, df, ok, alpha),
        mean_x=np.where(nx > 0, mean_x, np.nan),
        mean_y=np.where(ny > 0, mean_y, np.nan),
        n_x=nx.astype(np.int64),
        n_y=ny.astype(np.int64),
        estimable=ok,
    )


def _moments(values: FloatArray, mask: BoolArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Count, mean and sample variance (two-pass) of ``values[mask]`` per replicate."""
    n = mask.sum(axis=1).astype(np.float64)
    filled = np.where(mask, values, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = filled.sum(axis=1) / n
        dev = np.where(mask, values - mean[:, None], 0.0)
        var = np.einsum("ij,ij->i", dev, dev) / (n - 1.0)
    return n, mean, var


def _t_inference(
    difference: FloatArray, se: FloatArray, df: FloatArray, ok: BoolArray, alpha: float
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    nan = np.nan
    difference = np.where(ok, difference, nan)
    se = np.where(ok, se, nan)
    df = np.where(ok, df, nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        statistic = difference / se
        p_value = 2.0 * special.stdtr(df, -np.abs(statistic))
        quantile = special.stdtrit(df, 1.0 - alpha / 2.0)
    return (
        difference,
        se,
        df,
        statistic,
        p_value,
        difference - quantile * se,
        difference + quantile * se,
    )


@dataclass(frozen=True)
class BatchedAncova:
    """ANCOVA treatment contrast per replicate.

    Fields as :class:`~stalwart.analysis.kernels.ancova.AncovaResult`, as arrays.
    """

    difference: FloatArray
    se: FloatArray
    df: FloatArray
    statistic: FloatArray
    p_value: FloatArray
    ci_low: FloatArray
    ci_high: FloatArray
    baseline_coef: FloatArray
    residual_sd: FloatArray
    n: IntArray
    estimable: BoolArray


def batched_ancova(
    y: npt.ArrayLike,
    group: npt.ArrayLike,
    baseline: npt.ArrayLike,
    include: npt.ArrayLike,
    treatment: int,
    control: int,
    alpha: float = 0.05,
) -> BatchedAncova:
    """Baseline-adjusted ``treatment - control`` difference by ANCOVA in every replicate.

    The model of :func:`~stalwart.analysis.kernels.ancova.ancova`, ``y ~ arm + baseline``
    with every arm that has an included participant in the replicate (so the residual variance
    is pooled over all of them), solved in closed form: the slope is the pooled within-arm
    regression of ``y`` on ``baseline``, the contrast is the difference of means adjusted by the
    slope, and its variance is ``sigma^2 (1/n_t + 1/n_c + (xbar_t - xbar_c)^2 / Sxx)``.

    Parameters
    ----------
    y, baseline : array_like, shape (R, n)
        Outcome and its baseline; entries outside ``include`` are ignored (may be NaN).
    group : array_like of int, shape (R, n)
        Arm code per participant, ``0 .. k-1``.
    include : array_like of bool, shape (R, n)
        Participants analysed (complete cases).
    treatment, control : int
        Codes of the arms compared.

    Returns
    -------
    BatchedAncova
        Not estimable where either arm is empty, the residual df is below 1, or baseline does
        not vary within arms.
    """
    check_alpha(alpha)
    ya = float_matrix(y, "y")
    xa = float_matrix(baseline, "baseline")
    ga: IntArray = as_matrix(group, "group", np.int64)
    inc = bool_matrix(include, "include")
    check_same_shape(ya.shape, baseline=xa, group=ga, include=inc)
    if treatment == control:
        raise AnalysisError("treatment and control must differ")
    k = int(max(ga.max(initial=0), treatment, control)) + 1
    if ga.min(initial=0) < 0:
        raise AnalysisError("group codes must be non-negative integers")
    r = ya.shape[0]
    n = inc.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        # centre each replicate at its overall means first (no cancellation in the sums)
        centre_y = np.where(inc, ya, 0.0).sum(axis=1) / n
        centre_x = np.where(inc, xa, 0.0).sum(axis=1) / n
    yc = np.where(inc, ya - centre_y[:, None], 0.0)
    xc = np.where(inc, xa - centre_x[:, None], 0.0)
    # per (replicate, arm) sums in one pass each; excluded participants go to a spare slot
    slot = (np.where(inc, ga, k) + (k + 1) * np.arange(r)[:, None]).ravel()
    size = r * (k + 1)

    def by_arm(weights: FloatArray | None) -> FloatArray:
        sums = np.bincount(
            slot, weights=None if weights is None else weights.ravel(), minlength=size
        )
        out: FloatArray = sums.reshape(r, k + 1)[:, :k].astype(np.float64)
        return out

    counts, sum_y, sum_x = by_arm(None), by_arm(yc), by_arm(xc)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_y, mean_x = sum_y / counts, sum_x / counts
        share = np.where(counts > 0, 1.0 / counts, 0.0)
    sxx = np.einsum("ij,ij->i", xc, xc) - np.einsum("ij,ij,ij->i", sum_x, sum_x, share)
    sxy = np.einsum("ij,ij->i", xc, yc) - np.einsum("ij,ij,ij->i", sum_x, sum_y, share)
    syy = np.einsum("ij,ij->i", yc, yc) - np.einsum("ij,ij,ij->i", sum_y, sum_y, share)
    n = inc.sum(axis=1)
    present = (counts > 0).sum(axis=1)
    df = (n - present - 1).astype(np.float64)
    nt, nc = counts[:, treatment], counts[:, control]
    ok = (nt > 0) & (nc > 0) & (df >= 1)
    scale = np.sqrt(np.einsum("ij,ij->i", xc, xc))
    ok &= np.sqrt(np.maximum(sxx, 0.0)) > 1e-9 * np.maximum(scale, 1e-300)
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = sxy / sxx
        sigma2 = np.maximum(syy - slope * sxy, 0.0) / df
        gap = mean_x[:, treatment] - mean_x[:, control]
        difference = mean_y[:, treatment] - mean_y[:, control] - slope * gap
        se = np.sqrt(sigma2 * (1.0 / nt + 1.0 / nc + gap * gap / sxx))
    inference = _t_inference(difference, se, df, ok, alpha)
    return BatchedAncova(
        *inference,
        baseline_coef=np.where(ok, slope, np.nan),
        residual_sd=np.where(ok, np.sqrt(sigma2), np.nan),
        n=n.astype(np.int64),
        estimable=ok,
    )
