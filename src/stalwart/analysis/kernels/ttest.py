"""Two-sample t-tests: Welch (unequal variances) and pooled (equal variances).

Both match R's ``t.test(x, y, var.equal = FALSE)`` and ``t.test(x, y, var.equal = TRUE)``: the
difference is ``mean(x) - mean(y)``, the confidence interval is two-sided at level ``1 - alpha``
and the p-value is two-sided.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from stalwart.analysis.kernels._distributions import t_ppf, t_sf
from stalwart.errors import AnalysisError

__all__ = ["TwoSampleResult", "pooled_ttest", "welch_df", "welch_ttest"]

ArrayOrFloat = npt.NDArray[np.float64] | np.float64 | float | int


@dataclass(frozen=True)
class TwoSampleResult:
    """Result of a two-sample t-test.

    Attributes
    ----------
    difference : float
        ``mean_x - mean_y`` (R: ``estimate[1] - estimate[2]``).
    se : float
        Standard error of the difference (R: ``stderr``).
    df : float
        Degrees of freedom (Welch-Satterthwaite, or ``n_x + n_y - 2`` when pooled).
    ci_low, ci_high : float
        Two-sided ``1 - alpha`` confidence limits of the difference (R: ``conf.int``).
    p_value : float
        Two-sided p-value of ``difference == 0`` (R: ``p.value``).
    n_x, n_y : int
        Sample sizes.
    mean_x, mean_y : float
        Sample means.
    statistic : float
        The t statistic ``difference / se`` (R: ``statistic``).
    method : str
        ``"welch"`` or ``"pooled"``.
    alpha : float
        One minus the confidence level used for the interval.
    """

    difference: float
    se: float
    df: float
    ci_low: float
    ci_high: float
    p_value: float
    n_x: int
    n_y: int
    mean_x: float
    mean_y: float
    statistic: float
    method: str
    alpha: float

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as JSON-serialisable Python values (non-finite floats become None)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float):
                out[f.name] = value if math.isfinite(value) else None
            else:
                out[f.name] = value
        return out


def _sample(values: npt.ArrayLike, name: str) -> npt.NDArray[np.float64]:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise AnalysisError(f"{name} must be numeric: {exc}") from exc
    if arr.ndim != 1:
        raise AnalysisError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise AnalysisError(f"{name} contains missing or non-finite values; remove them first")
    return arr


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise AnalysisError(f"alpha must lie strictly between 0 and 1, got {alpha}")


def _finish(
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64],
    se: float,
    df: float,
    alpha: float,
    method: str,
) -> TwoSampleResult:
    mean_x = float(np.mean(x))
    mean_y = float(np.mean(y))
    difference = mean_x - mean_y
    if not se > 10.0 * np.finfo(np.float64).eps * max(abs(mean_x), abs(mean_y)):
        raise AnalysisError("data are essentially constant; the t statistic is undefined")
    statistic = difference / se
    quantile = float(t_ppf(1.0 - alpha / 2.0, df))
    p_value = float(2.0 * t_sf(abs(statistic), df))
    return TwoSampleResult(
        difference=difference,
        se=se,
        df=df,
        ci_low=difference - quantile * se,
        ci_high=difference + quantile * se,
        p_value=p_value,
        n_x=int(x.size),
        n_y=int(y.size),
        mean_x=mean_x,
        mean_y=mean_y,
        statistic=statistic,
        method=method,
        alpha=float(alpha),
    )


def welch_ttest(x: npt.ArrayLike, y: npt.ArrayLike, alpha: float = 0.05) -> TwoSampleResult:
    """Welch two-sample t-test of ``mean(x) - mean(y)``, variances not assumed equal.

    Matches R ``t.test(x, y, var.equal = FALSE, conf.level = 1 - alpha)``.

    Parameters
    ----------
    x, y : array_like
        One-dimensional finite samples, each with at least two values.
    alpha : float, default 0.05
        One minus the confidence level of the interval.

    Returns
    -------
    TwoSampleResult
        Difference, standard error, Welch-Satterthwaite degrees of freedom, interval and p-value.

    Raises
    ------
    AnalysisError
        A sample has fewer than two values, non-finite values, or both samples are constant.
    """
    _check_alpha(alpha)
    xa = _sample(x, "x")
    ya = _sample(y, "y")
    if xa.size < 2 or ya.size < 2:
        raise AnalysisError(
            f"the Welch t-test needs at least 2 values in each sample, got {xa.size} and {ya.size}"
        )
    vx = float(np.var(xa, ddof=1)) / xa.size
    vy = float(np.var(ya, ddof=1)) / ya.size
    se = math.sqrt(vx + vy)
    df = float(welch_df(np.float64(vx), np.float64(vy), xa.size, ya.size))
    return _finish(xa, ya, se, df, alpha, "welch")


def welch_df(vx: ArrayOrFloat, vy: ArrayOrFloat, n_x: ArrayOrFloat, n_y: ArrayOrFloat) -> Any:
    """Welch-Satterthwaite degrees of freedom from the squared standard errors ``var / n``.

    Written in variance shares so tiny variances do not underflow; NaN when both are 0. Works
    elementwise on arrays (the replicate axis of :mod:`~stalwart.analysis.kernels.batched`).
    """
    vx_a, vy_a = np.asarray(vx, dtype=np.float64), np.asarray(vy, dtype=np.float64)
    total = vx_a + vy_a
    positive = total > 0.0
    safe = np.where(positive, total, 1.0)
    share_x, share_y = vx_a / safe, vy_a / safe
    with np.errstate(divide="ignore", invalid="ignore"):
        df = 1.0 / (share_x**2 / (np.asarray(n_x) - 1.0) + share_y**2 / (np.asarray(n_y) - 1.0))
    return np.where(positive, df, np.nan)


def pooled_ttest(x: npt.ArrayLike, y: npt.ArrayLike, alpha: float = 0.05) -> TwoSampleResult:
    """Two-sample t-test of ``mean(x) - mean(y)`` with a pooled (equal) variance.

    Matches R ``t.test(x, y, var.equal = TRUE, conf.level = 1 - alpha)``.

    Parameters
    ----------
    x, y : array_like
        One-dimensional finite samples, each non-empty, with at least three values in total.
    alpha : float, default 0.05
        One minus the confidence level of the interval.

    Returns
    -------
    TwoSampleResult
        Difference, standard error, ``n_x + n_y - 2`` degrees of freedom, interval and p-value.

    Raises
    ------
    AnalysisError
        A sample is empty, there are fewer than three values in all, values are non-finite, or
        the data are constant.
    """
    _check_alpha(alpha)
    xa = _sample(x, "x")
    ya = _sample(y, "y")
    if xa.size < 1 or ya.size < 1 or xa.size + ya.size < 3:
        raise AnalysisError(
            "the pooled t-test needs a non-empty sample on each side and at least 3 values in "
            f"all, got {xa.size} and {ya.size}"
        )
    df = float(xa.size + ya.size - 2)
    ssx = float(np.sum((xa - np.mean(xa)) ** 2))
    ssy = float(np.sum((ya - np.mean(ya)) ** 2))
    pooled_var = (ssx + ssy) / df
    se = math.sqrt(pooled_var * (1.0 / xa.size + 1.0 / ya.size))
    return _finish(xa, ya, se, df, alpha, "pooled")
