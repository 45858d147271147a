"""Pocock-Simon minimization: the arm that least unbalances the new participant's factor levels.

Pocock & Simon (1975, Biometrics 31:103-115), with their notation. For a new participant with
level ``l_i`` of each factor ``i``, let ``x_ik`` be the number of earlier participants at level
``l_i`` allocated to arm ``k``, divided by the arm's ratio ``r_k`` (so a 2:1 design is balanced
when one arm has twice the other's count). For each candidate arm ``k``:

* ``x_ij(k) = x_ij + [j == k] / r_k``: the counts if the participant went to ``k``;
* ``D_i(k)``: the imbalance of ``x_i.(k)`` over arms: ``range`` (max minus min) or ``variance``
  (population variance, divisor the number of arms);
* ``G_k = sum_i w_i D_i(k)``: the total imbalance, ``w_i`` the factor's weight.

The arms with the smallest ``G_k`` (ties within 1e-9) are preferred: together they receive
probability ``p``, shared in proportion to their ratios; the other arms share ``1 - p`` in
proportion to theirs. When every arm is tied (the first participant, or all weights zero) each
arm gets its share of the ratio sum, as in complete randomization. With one preferred arm and
equal ratios this is Pocock & Simon's ``p_1 = p, p_k = (1 - p) / (K - 1)``. With unequal ratios
the counts divided by the ratios follow Han, Enas & McEntegart (2009, Stat Med 28:3329-3346);
such designs can drift slightly from the target ratio, which ``stalwart randomization check``
shows before go-live.

The random part is one uniform draw per participant from a stream generated at trial set-up from
the seed (``minimization_draws``) and stored concealed with the allocation slots, so replaying the
same enrolment order with the same answers gives the same arms. The draw picks the arm by
inverting the cumulative probabilities in protocol arm order (``choose_arm``).

Every function takes leading axes, so the design check runs thousands of replicates at once.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral

import numpy as np
import numpy.typing as npt

from stalwart.errors import ConfigurationError, ValidationError
from stalwart.protocol.schema import Protocol

__all__ = [
    "MINIMIZATION_STREAM",
    "MinimizationDesign",
    "MinimizationFactorLevels",
    "Minimizer",
    "arm_probabilities",
    "choose_arm",
    "minimization_draws",
]

MINIMIZATION_STREAM = "minimization"
"""The stratum name of a minimization trial's slots: one stream for the whole trial."""

_STREAM_TAG = 0x4D494E
"""Second seed word of the draw stream (``MIN``), apart from permuted blocks' stratum indices."""

_TIE = 1e-9
"""Totals within this (relative) distance of the smallest are tied."""

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class MinimizationFactorLevels:
    """A factor with its levels, in protocol order; ``cuts`` categorise a numeric item."""

    name: str
    levels: tuple[str, ...]
    weight: float
    cuts: tuple[float, ...] | None = None

    def level_of(self, value: object) -> int:
        """The index of the level ``value`` (a site code or a screening answer) falls in."""
        if self.cuts is not None:
            if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
                raise ValidationError(self.name, f"needs a number to categorise, got {value!r}")
            return int(np.searchsorted(np.asarray(self.cuts), float(value), side="right"))
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if text not in self.levels:
            raise ValidationError(
                self.name, f"minimization value {value!r} is not one of {list(self.levels)}"
            )
        return self.levels.index(text)


def _cut_labels(cuts: Sequence[float]) -> tuple[str, ...]:
    """``<a``, ``a-<b``, ..., ``>=z``: the categories that ``cuts`` make."""
    bounds = [f"{c:g}" for c in cuts]
    middle = [f"{a}-<{b}" for a, b in itertools.pairwise(bounds)]
    return (f"<{bounds[0]}", *middle, f">={bounds[-1]}")


@dataclass(frozen=True)
class MinimizationDesign:
    """A protocol's minimization settings, resolved: factors with levels, arms with ratios."""

    factors: tuple[MinimizationFactorLevels, ...]
    arms: tuple[str, ...]
    ratios: tuple[int, ...]
    probability: float
    imbalance: str
    list_length: int

    @classmethod
    def from_protocol(cls, protocol: Protocol) -> MinimizationDesign:
        """The design of a protocol whose randomization method is ``minimization``."""
        m = protocol.randomization.minimization
        if m is None:
            raise ConfigurationError(
                f"randomization.method is {protocol.randomization.method!r}, not 'minimization'"
            )
        items = {i.name: i for i in protocol.screening_items}
        factors = []
        for f in m.factors:
            if f.name == "site":
                levels: tuple[str, ...] = tuple(s.code for s in protocol.sites)
            elif f.cuts is not None:
                levels = _cut_labels(f.cuts)
            elif items[f.name].type == "boolean":
                levels = ("true", "false")
            else:
                levels = tuple(items[f.name].choices or ())
            cuts = None if f.cuts is None else tuple(f.cuts)
            factors.append(MinimizationFactorLevels(f.name, levels, f.weight, cuts))
        return cls(
            factors=tuple(factors),
            arms=tuple(protocol.arm_codes),
            ratios=tuple(a.ratio for a in protocol.arms),
            probability=m.probability,
            imbalance=m.imbalance,
            list_length=m.list_length,
        )

    @property
    def weights(self) -> FloatArray:
        """The factors' weights."""
        return np.array([f.weight for f in self.factors], dtype=float)

    @property
    def max_levels(self) -> int:
        """The largest number of levels of any factor (the width of the count array)."""
        return max(len(f.levels) for f in self.factors)

    def levels_of(self, site: str, answers: Mapping[str, object]) -> tuple[int, ...]:
        """The level index of each factor for a participant at ``site`` with these answers."""
        return tuple(
            f.level_of(site if f.name == "site" else answers.get(f.name)) for f in self.factors
        )

    def profile(self, levels: Sequence[int]) -> str:
        """A participant's levels as text, e.g. ``site=US01|cd4=<500``."""
        return "|".join(
            f"{f.name}={f.levels[i]}" for f, i in zip(self.factors, levels, strict=True)
        )

    def minimizer(self, shape: tuple[int, ...] = ()) -> Minimizer:
        """An empty running count for this design (``shape``: leading replicate axes)."""
        return Minimizer(self, shape)


def arm_probabilities(
    counts: npt.ArrayLike,
    ratios: Sequence[int],
    weights: npt.ArrayLike,
    probability: float,
    imbalance: str = "range",
) -> FloatArray:
    """Each arm's probability for a new participant, from the counts at their levels.

    Parameters
    ----------
    counts
        ``(..., F, K)``: per factor, the earlier participants at the new one's level by arm.
    ratios
        ``K`` allocation ratios.
    weights
        ``F`` non-negative factor weights.
    probability
        The preferred arms' share, in ``(1/K, 1]``.
    imbalance
        ``"range"`` or ``"variance"``.

    Returns
    -------
    ``(..., K)`` probabilities summing to one.
    """
    r = np.asarray(ratios, dtype=float)
    k = r.size
    scaled = np.asarray(counts, dtype=float) / r  # (..., F, K)
    trial = scaled[..., None, :, :] + (np.eye(k) / r)[:, None, :]  # (..., K cand, F, K)
    if imbalance == "range":
        d = trial.max(axis=-1) - trial.min(axis=-1)
    elif imbalance == "variance":
        d = trial.var(axis=-1)
    else:
        raise ConfigurationError(f"imbalance must be 'range' or 'variance', got {imbalance!r}")
    g = d @ np.asarray(weights, dtype=float)  # (..., K)
    best = g.min(axis=-1, keepdims=True)
    preferred = g <= best + _TIE * (1.0 + np.abs(best))
    share_pref = np.where(preferred, r, 0.0)
    share_rest = np.where(preferred, 0.0, r)
    rest_total = share_rest.sum(axis=-1, keepdims=True)
    all_tied = rest_total == 0
    p_pref = np.where(all_tied, 1.0, probability)
    out = p_pref * share_pref / share_pref.sum(axis=-1, keepdims=True)
    out += (1.0 - p_pref) * share_rest / np.where(all_tied, 1.0, rest_total)
    return np.asarray(out, dtype=float)


def choose_arm(probabilities: npt.ArrayLike, draw: npt.ArrayLike) -> IntArray:
    """The arm index a uniform ``draw`` in [0, 1) picks: the inverse of the cumulative sum.

    ``probabilities`` is ``(..., K)`` and ``draw`` broadcasts to ``(...)``. An arm of
    probability zero is never chosen, whatever rounding the cumulative sum carries.
    """
    p = np.asarray(probabilities, dtype=float)
    u = np.asarray(draw, dtype=float)
    if np.any((u < 0) | (u >= 1)):
        raise ConfigurationError("minimization draws must lie in [0, 1)")
    index = (np.cumsum(p, axis=-1) <= u[..., None]).sum(axis=-1)
    last = p.shape[-1] - 1 - np.argmax(p[..., ::-1] > 0, axis=-1)
    return np.asarray(np.minimum(index, last), dtype=np.int64)


def minimization_draws(seed: int, length: int) -> FloatArray:
    """The concealed stream of ``length`` uniform draws, reproducible from ``seed``."""
    if isinstance(seed, bool) or not isinstance(seed, Integral) or seed < 0:
        raise ConfigurationError(
            f"the randomization seed must be a non-negative integer, got {seed!r}"
        )
    return np.random.default_rng([int(seed), _STREAM_TAG]).random(length)


class Minimizer:
    """The running counts ``(factor, level, arm)`` of a minimization design.

    The capture service rebuilds one from the stored allocations inside the randomization
    transaction; the design check keeps one per replicate (a leading axis of ``shape``).
    """

    def __init__(self, design: MinimizationDesign, shape: tuple[int, ...] = ()) -> None:
        self.design = design
        self.counts: IntArray = np.zeros(
            (*shape, len(design.factors), design.max_levels, len(design.arms)), dtype=np.int64
        )
        self._weights = design.weights

    def _at(self, levels: npt.ArrayLike) -> IntArray:
        """Counts at the given levels: ``(..., F)`` level indices to ``(..., F, K)``."""
        lv = np.asarray(levels, dtype=np.int64)
        picked = np.take_along_axis(self.counts, lv[..., :, None, None], axis=-2)
        return np.asarray(picked[..., 0, :])

    def probabilities(self, levels: npt.ArrayLike) -> FloatArray:
        """Each arm's probability for a participant at ``levels``."""
        d = self.design
        return arm_probabilities(
            self._at(levels), d.ratios, self._weights, d.probability, d.imbalance
        )

    def add(self, levels: npt.ArrayLike, arm: npt.ArrayLike) -> None:
        """Count a participant at ``levels`` allocated to arm index ``arm``."""
        lv = np.asarray(levels, dtype=np.int64)
        a = np.asarray(arm, dtype=np.int64)
        onehot = np.zeros((*lv.shape, self.counts.shape[-1]), dtype=np.int64)
        np.put_along_axis(onehot, np.broadcast_to(a[..., None, None], (*lv.shape, 1)), 1, axis=-1)
        mask = np.arange(self.counts.shape[-2]) == lv[..., None]  # (..., F, L)
        self.counts += mask[..., None] * onehot[..., None, :]

    def add_many(self, levels: npt.ArrayLike, arms: npt.ArrayLike) -> None:
        """Count many participants at once: ``(n, F)`` level indices, ``n`` arm indices."""
        if self.counts.ndim != 3:
            raise ConfigurationError("add_many counts one trial; use add with replicate axes")
        lv = np.asarray(levels, dtype=np.int64).reshape(-1, len(self.design.factors))
        a = np.asarray(arms, dtype=np.int64).reshape(-1)
        for f in range(lv.shape[1]):
            np.add.at(self.counts[f], (lv[:, f], a), 1)

    def assign(self, levels: npt.ArrayLike, draw: npt.ArrayLike) -> IntArray:
        """Choose the arm of a participant at ``levels`` with ``draw`` and count them."""
        arm = choose_arm(self.probabilities(levels), draw)
        self.add(levels, arm)
        return arm
