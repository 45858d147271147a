"""Newton ascent and profile-likelihood limits, shared by the Cox and Firth kernels.

:func:`ascend` maximizes a concave objective (the partial likelihood, or Firth's penalized one)
over every coefficient or every one but a fixed one; :func:`profile_interval` finds where the
profile of each coefficient drops by the chi-square quantile (the Cox kernel's ``profile_ci``
limits, and coxphf's ``pl = TRUE`` ones). The Cox kernels, single-trial and batched, also share
from here the step-halving limit of their Newton iterations and the tolerance of R's test for an
infinite coefficient (``coxph.control(toler.inf)``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import linalg

from stalwart.analysis.kernels._cox_likelihood import FloatArray
from stalwart.analysis.kernels._distributions import chi2_ppf

__all__ = [
    "MAX_HALVINGS",
    "TOLER_CHOL",
    "TOLER_INF",
    "Ascent",
    "Objective",
    "ascend",
    "cholesky_solve",
    "inverse_or_nan",
    "profile_interval",
    "singular_columns",
]

# value, gradient and a positive definite curvature (information) at beta
Objective = Callable[[FloatArray], tuple[float, FloatArray, FloatArray]]

MAX_HALVINGS = 40  # step halvings before a Newton step is given up
TOLER_CHOL = float(np.finfo(float).eps) ** 0.75  # R: coxph.control(toler.chol)
TOLER_INF = math.sqrt(1e-9)  # R: coxph.control(toler.inf = sqrt(eps)) with eps = 1e-9
_PROFILE_XTOL = 1e-12  # profile limits, standardized scale
_PROFILE_REACH = 100.0  # standardized distance searched before a limit is declared infinite
_INNER_TOL = 1e-11  # constrained maxima: largest Newton step (standardized) at convergence
_INNER_MAX_ITER = 200


def cholesky_solve(information: FloatArray, score: FloatArray) -> FloatArray | None:
    """``information^-1 score`` by Cholesky; None when not positive definite or not finite."""
    try:
        factor = linalg.cho_factor(information)
    except (linalg.LinAlgError, ValueError):
        return None
    result: FloatArray = linalg.cho_solve(factor, score)
    return result if np.all(np.isfinite(result)) else None


def singular_columns(information: FloatArray, toler: float = TOLER_CHOL) -> list[int]:
    """Columns R's ``cholesky2`` deems singular: a pivot below ``toler`` times the largest diagonal.

    The symmetric ``LDL'`` factorisation of survival's C code, pivot by pivot: a pivot that is
    not finite or falls below the tolerance is zeroed and its column reported (``coxph`` then
    gives that coefficient NA). A plain Cholesky only fails on exact singularity, so a covariate
    constant within every stratum, whose information is rounding noise, would pass it and come
    out as a finite, meaningless coefficient.
    """
    work = np.array(information, dtype=float)
    largest = float(np.max(np.diag(work), initial=0.0))
    eps = toler * largest if largest > 0.0 else toler
    singular: list[int] = []
    for i in range(work.shape[0]):
        pivot = work[i, i]
        if not math.isfinite(pivot) or pivot < eps:
            singular.append(i)
            continue
        ratio = work[i + 1 :, i] / pivot
        work[i + 1 :, i + 1 :] -= np.outer(ratio, work[i, i + 1 :])
    return singular


def inverse_or_nan(information: FloatArray) -> FloatArray:
    """The inverse of ``information``, all NaN when it is singular."""
    try:
        inv: FloatArray = linalg.inv(information)
    except (linalg.LinAlgError, ValueError):
        return np.full_like(information, math.nan)
    return inv


@dataclass
class Ascent:
    """Where :func:`ascend` stopped: the objective, its derivatives there, and how."""

    value: float
    beta: FloatArray
    gradient: FloatArray
    information: FloatArray
    iterations: int
    converged: bool


def ascend(
    objective: Objective,
    beta: FloatArray,
    fixed: int | None = None,
    max_step: float = 2.0,
    tol: float = _INNER_TOL,
    max_iter: int = _INNER_MAX_ITER,
) -> Ascent:
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
        return Ascent(value, beta, gradient, information, 0, True)
    block = np.ix_(free, free)
    for iteration in range(1, max_iter + 1):
        partial = cholesky_solve(information[block], gradient[free])
        if partial is None:
            return Ascent(value, beta, gradient, information, iteration - 1, False)
        step = np.zeros_like(beta)
        step[free] = partial
        largest = float(np.max(np.abs(step)))
        if largest > max_step:
            step *= max_step / largest
        for _ in range(MAX_HALVINGS):
            candidate = beta + step
            new_value, new_gradient, new_information = objective(candidate)
            if math.isfinite(new_value) and new_value >= value - 1e-15 * abs(value):
                break
            step = step / 2.0
        else:
            return Ascent(value, beta, gradient, information, iteration, False)
        beta, value, gradient, information = candidate, new_value, new_gradient, new_information
        if float(np.max(np.abs(step))) <= tol:
            return Ascent(value, beta, gradient, information, iteration, True)
    return Ascent(value, beta, gradient, information, max_iter, False)


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
        ascent = ascend(objective, start, fixed=j)
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
    from scipy import optimize  # only for profile limits

    root: float = optimize.brentq(excess, low, high, xtol=_PROFILE_XTOL, rtol=1e-14)
    return root


def profile_interval(
    objective: Objective, beta_hat: FloatArray, value_hat: float, se: FloatArray, alpha: float
) -> tuple[FloatArray, FloatArray]:
    """Profile limits of every coefficient (standardized scale)."""
    critical = float(chi2_ppf(1.0 - alpha, 1))
    low = np.empty(beta_hat.size)
    high = np.empty(beta_hat.size)
    for j in range(beta_hat.size):
        width = math.sqrt(critical) * float(se[j])
        first = min(max(width, 1e-3), 2.0) if math.isfinite(width) else 1.0
        low[j] = _profile_limit(objective, beta_hat, value_hat, j, -1.0, critical, first)
        high[j] = _profile_limit(objective, beta_hat, value_hat, j, 1.0, critical, first)
    return low, high
