"""Group-sequential efficacy boundaries from Lan-DeMets alpha-spending functions.

For interim looks at information fractions ``t_1 < ... < t_K <= 1`` the standardized statistics
``Z_k`` are multivariate normal with ``corr(Z_j, Z_k) = sqrt(t_j / t_k)`` (canonical joint
distribution). The boundary ``c_k`` is chosen so that the probability under H0 of first crossing at
look ``k`` equals the alpha spent between looks ``k - 1`` and ``k``. That probability comes from the
Armitage-McPherson-Rowe recursion: the sub-density of the score ``S_k = Z_k sqrt(t_k)`` on the
continuation region is propagated look by look by numerical integration (composite Simpson rule on
a grid with 32 points per standard deviation of the increment, Jennison & Turnbull ch. 19),
and each ``c_k`` is found by Brent's method. Probabilities are accurate to about 1e-10, the
boundaries to about 1e-9.

Spending functions are those of R ``rpact::getDesignGroupSequential``:

* ``"obrien-fleming"`` (rpact ``typeOfDesign = "asOF"``):
  ``alpha(t) = 2 * sided * (1 - Phi(z_{1 - alpha / (2 * sided)} / sqrt(t)))``;
* ``"pocock"`` (rpact ``"asP"``): ``alpha(t) = alpha * log(1 + (e - 1) t)``.

``sided = 2`` gives symmetric two-sided boundaries ``|Z_k| >= c_k`` that spend ``alpha`` in total
(``alpha / 2`` per side); ``sided = 1`` gives upper boundaries ``Z_k >= c_k``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy import optimize, special

from stalwart.analysis.kernels._distributions import norm_isf, norm_pdf, norm_sf
from stalwart.errors import AnalysisError
from stalwart.jsonable import jsonable

__all__ = ["GroupSequentialDesign", "SpendingFunction", "alpha_spending", "group_sequential_bounds"]

FloatArray = npt.NDArray[np.float64]
SpendingFunction = Literal["obrien-fleming", "pocock"]

_POINTS_PER_SD = 32  # grid density relative to the smallest increment standard deviation
_MIN_INTERVALS = 400
_MAX_INTERVALS = 8_000
_TAIL_SD = 10.0  # the continuation region is cut this many SDs from 0 (mass beyond: 1e-23)
_CHUNK = 1024  # rows of the transition kernel formed at once (memory bound)
_SQRT_2PI = math.sqrt(2.0 * math.pi)
_Z_MAX = 40.0  # boundaries are searched in (0, _Z_MAX)


@dataclass(frozen=True)
class GroupSequentialDesign:
    """Efficacy boundaries of a group-sequential design (:func:`group_sequential_bounds`).

    Attributes
    ----------
    information_rates : numpy.ndarray
        Information fractions of the looks (R: ``informationRates``).
    critical_values : numpy.ndarray
        z boundaries ``c_k``: reject at look ``k`` if ``Z_k >= c_k`` (one-sided) or
        ``|Z_k| >= c_k`` (two-sided) (R: ``criticalValues``).
    alpha_spent : numpy.ndarray
        Cumulative alpha spent by each look, ``alpha(t_k)`` (R: ``alphaSpent``).
    nominal_p : numpy.ndarray
        Nominal p-value that rejects at each look: ``1 - Phi(c_k)`` one-sided,
        ``2 * (1 - Phi(c_k))`` two-sided (R: ``stageLevels * sided``).
    alpha : float
        Total type I error (two-sided total when ``sided = 2``).
    sided : int
        1 or 2.
    spending : str
        ``"obrien-fleming"`` or ``"pocock"`` (Lan-DeMets spending function).
    """

    information_rates: FloatArray
    critical_values: FloatArray
    alpha_spent: FloatArray
    nominal_p: FloatArray
    alpha: float
    sided: int
    spending: str

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as JSON-serialisable Python values (non-finite floats become None)."""
        return {f.name: jsonable(getattr(self, f.name)) for f in fields(self)}


def _check_options(alpha: float, sided: int, spending: str) -> None:
    if sided not in (1, 2):
        raise AnalysisError(f"sided must be 1 or 2, got {sided}")
    if not 0.0 < alpha < 0.5:
        raise AnalysisError(f"alpha must lie strictly between 0 and 0.5, got {alpha}")
    if spending not in ("obrien-fleming", "pocock"):
        raise AnalysisError(f"spending must be 'obrien-fleming' or 'pocock', got {spending!r}")


def alpha_spending(
    information_rates: npt.ArrayLike,
    alpha: float = 0.025,
    *,
    sided: int = 1,
    spending: SpendingFunction = "obrien-fleming",
) -> FloatArray:
    """Cumulative alpha ``alpha(t)`` spent by information fraction ``t`` (rpact's definitions).

    Raises
    ------
    AnalysisError
        Fractions outside ``[0, 1]``, or bad ``alpha``, ``sided`` or ``spending``.
    """
    _check_options(alpha, sided, spending)
    t = np.asarray(information_rates, dtype=np.float64)
    if not np.all(np.isfinite(t)) or np.any(t < 0.0) or np.any(t > 1.0):
        raise AnalysisError("information rates must lie in [0, 1]")
    if spending == "pocock":
        return np.asarray(alpha * np.log1p((math.e - 1.0) * t), dtype=np.float64)
    z = norm_isf(alpha / (2.0 * sided))
    with np.errstate(divide="ignore"):
        spent = 2.0 * sided * norm_sf(z / np.sqrt(t))
    return np.asarray(spent, dtype=np.float64)


def _simpson_grid(low: float, high: float, intervals: int) -> tuple[FloatArray, FloatArray]:
    """Nodes and composite Simpson weights on ``[low, high]`` (``intervals`` even)."""
    nodes = np.linspace(low, high, intervals + 1)
    weights = np.ones(intervals + 1)
    weights[1:-1:2] = 4.0
    weights[2:-1:2] = 2.0
    return nodes, weights * (high - low) / (3.0 * intervals)


def _interval_count(width: float, sd: float) -> int:
    count = math.ceil(width / sd * _POINTS_PER_SD)
    count = min(max(count, _MIN_INTERVALS), _MAX_INTERVALS)
    return count + count % 2


def _crossing_probability(
    nodes: FloatArray, mass: FloatArray, c: float, sqrt_t: float, sd: float, sided: int
) -> float:
    """P(no earlier crossing, cross at this look) for boundary ``c`` on the z scale.

    ``mass`` is the sub-density at ``nodes`` times the quadrature weights; ``sd`` is the
    standard deviation of the score increment since the previous look.
    """
    upper = special.ndtr((nodes - c * sqrt_t) / sd)
    if sided == 2:
        upper = upper + special.ndtr((-c * sqrt_t - nodes) / sd)
    return float(mass @ upper)


def _validate_rates(information_rates: npt.ArrayLike) -> FloatArray:
    try:
        t = np.asarray(information_rates, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise AnalysisError(f"information rates must be numeric: {exc}") from exc
    if t.ndim != 1 or t.size == 0:
        raise AnalysisError("information rates must be a non-empty one-dimensional sequence")
    if not np.all(np.isfinite(t)) or np.any(t <= 0.0) or np.any(t > 1.0):
        raise AnalysisError("information rates must lie in (0, 1]; the final analysis is 1")
    if np.any(np.diff(t) <= 0.0):
        raise AnalysisError("information rates must be strictly increasing, one per look")
    return t


def group_sequential_bounds(
    information_rates: npt.ArrayLike,
    alpha: float = 0.025,
    *,
    sided: int = 1,
    spending: SpendingFunction = "obrien-fleming",
) -> GroupSequentialDesign:
    """Lan-DeMets alpha-spending boundaries at the given information fractions.

    Matches R ``rpact::getDesignGroupSequential(typeOfDesign = "asOF"`` or ``"asP",
    informationRates = information_rates, alpha = alpha, sided = sided)``: ``criticalValues``,
    ``alphaSpent`` and ``stageLevels``. The looks need not be equally spaced; at a final look
    before full information (``t_K < 1``) only ``alpha(t_K)`` is spent.

    Parameters
    ----------
    information_rates : array_like
        Strictly increasing information fractions in ``(0, 1]``, one per look.
    alpha : float, default 0.025
        Type I error to spend (the two-sided total when ``sided = 2``).
    sided : {1, 2}
        One-sided upper boundaries or symmetric two-sided boundaries.
    spending : {"obrien-fleming", "pocock"}
        Lan-DeMets spending function (rpact ``"asOF"`` / ``"asP"``).

    Returns
    -------
    GroupSequentialDesign

    Raises
    ------
    AnalysisError
        Rates not strictly increasing in ``(0, 1]``, or bad ``alpha``, ``sided`` or ``spending``.
    """
    _check_options(alpha, sided, spending)
    t = _validate_rates(information_rates)
    spent = alpha_spending(t, alpha, sided=sided, spending=spending)
    increments = np.diff(spent, prepend=0.0)
    sqrt_t = np.sqrt(t)
    step_sd = np.sqrt(np.diff(t, prepend=0.0))
    critical = np.empty(t.size)
    critical[0] = norm_isf(spent[0] / sided)
    nodes = np.empty(0)
    mass = np.empty(0)
    for k in range(t.size):
        if k > 0:
            critical[k] = _solve_boundary(nodes, mass, increments[k], sqrt_t[k], step_sd[k], sided)
        if k + 1 == t.size:
            break
        nodes, mass = _propagate(nodes, mass, critical[k], k, sqrt_t, step_sd, sided)
    nominal = sided * norm_sf(critical)
    return GroupSequentialDesign(
        information_rates=t,
        critical_values=critical,
        alpha_spent=spent,
        nominal_p=np.asarray(nominal, dtype=np.float64),
        alpha=float(alpha),
        sided=sided,
        spending=spending,
    )


def _solve_boundary(
    nodes: FloatArray, mass: FloatArray, increment: float, sqrt_t: float, sd: float, sided: int
) -> float:
    """The ``c`` whose crossing probability at this look equals ``increment``."""
    if increment <= 0.0:
        return math.inf

    def excess(c: float) -> float:
        return _crossing_probability(nodes, mass, c, sqrt_t, sd, sided) - increment

    if excess(0.0) <= 0.0:
        raise AnalysisError(
            "the alpha to spend at a look exceeds the probability of reaching it; "
            "check the information rates and alpha"
        )
    if excess(_Z_MAX) >= 0.0:
        return _Z_MAX
    root: float = optimize.brentq(excess, 0.0, _Z_MAX, xtol=1e-14, rtol=4 * np.finfo(float).eps)
    return root


def _propagate(
    nodes: FloatArray,
    mass: FloatArray,
    c: float,
    k: int,
    sqrt_t: FloatArray,
    step_sd: FloatArray,
    sided: int,
) -> tuple[FloatArray, FloatArray]:
    """Sub-density of the score at look ``k`` on its continuation region, times Simpson weights.

    Look 0 is the normal density itself; later looks convolve the previous sub-density with the
    normal increment (the Armitage-McPherson-Rowe recursion).
    """
    high = min(c, _TAIL_SD) * sqrt_t[k]
    low = -high if sided == 2 else -_TAIL_SD * sqrt_t[k]
    next_sd = step_sd[k + 1]
    sd = min(step_sd[k], next_sd) if k > 0 else min(sqrt_t[0], next_sd)
    new_nodes, weights = _simpson_grid(low, high, _interval_count(high - low, sd))
    if k == 0:
        density = norm_pdf(new_nodes / sqrt_t[0]) / sqrt_t[0]
    else:
        density = np.empty(new_nodes.size)
        for start in range(0, new_nodes.size, _CHUNK):
            rows = new_nodes[start : start + _CHUNK, None]
            kernel = np.exp(-0.5 * ((rows - nodes[None, :]) / step_sd[k]) ** 2)
            density[start : start + _CHUNK] = kernel @ mass / (step_sd[k] * _SQRT_2PI)
    return new_nodes, density * weights
