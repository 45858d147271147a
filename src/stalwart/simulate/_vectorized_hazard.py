"""The first-event day of a cohort in closed form, with IL-2's excess hazard in windows.

The daily hazard ``exp(-k * C_nat(j))`` is geometric in ``j`` while the natural CD4 path is above
its floor and constant below it, so its cumulative sum and the inverse are exact expressions
instead of model.py's cumulative sum over every day. :func:`next_event_in_windows` adds IL-2's
excess: the hazard is multiplied by the IL-2 hazard ratio on the days of each participant's
exposure windows (:func:`~stalwart.simulate.equations.il2_excess_window`), and the first day
reaching an exponential draw is found piece by piece, one closed-form inversion per piece.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from stalwart.simulate._vectorized_plan import BoolArray, IntArray
from stalwart.simulate.equations import DAYS_PER_YEAR, FloatArray, event_hazard_slope
from stalwart.simulate.parameters import ModelParameters

__all__ = [
    "FAR",
    "Hazard",
    "hazard_shape",
    "may_reach",
    "merged_windows",
    "next_event",
    "next_event_in_windows",
]


@dataclass(frozen=True)
class Hazard:
    """``exp(-k * C_nat(j))`` on days j >= 1: geometric ``a * exp(beta * j)`` while the natural
    CD4 is above the floor, ``flat`` below it; ``geo_first`` says which comes first and
    ``boundary`` is the last day of the first piece."""

    a: FloatArray
    beta: FloatArray
    flat: FloatArray
    boundary: FloatArray
    geo_first: BoolArray
    first_total: FloatArray  # S(boundary): the whole first piece

    def take(self, index: IntArray) -> Hazard:
        return Hazard(*(getattr(self, f.name)[index] for f in dataclasses.fields(self)))


FAR = 1.0e9  # a day beyond any follow-up


def hazard_shape(params: ModelParameters, cd4: FloatArray, decline: FloatArray) -> Hazard:
    kappa = event_hazard_slope(params)
    floor = params.cd4_floor.value
    delta = decline / DAYS_PER_YEAR
    with np.errstate(divide="ignore", invalid="ignore"):
        reach = (cd4 - floor) / delta  # the day the linear path meets the floor
    falling = delta > 0
    rising = delta < 0
    boundary = np.where(
        falling,
        np.clip(np.floor(reach), 0, FAR),
        np.where(rising, np.clip(np.ceil(reach) - 1, 0, FAR), FAR),
    )
    geo_first = falling | (~rising & (cd4 >= floor))
    a = np.exp(-kappa * cd4)
    beta = kappa * delta
    flat = np.full_like(cd4, math.exp(-kappa * floor))
    whole = np.where(geo_first, _geo_sum(a, beta, np.ones_like(cd4), boundary), flat * boundary)
    return Hazard(a, beta, flat, boundary, geo_first, whole)


def _geo_sum(a: FloatArray, beta: FloatArray, first: FloatArray, count: FloatArray) -> FloatArray:
    """``sum_{j=first}^{first+count-1} a * exp(beta * j)``."""
    small = np.abs(beta) < 1e-12
    safe = np.where(small, 1.0, beta)
    with np.errstate(over="ignore", invalid="ignore"):
        ratio = np.where(
            small, count, np.expm1(safe * np.where(small, 0.0, count)) / np.expm1(safe)
        )
        out: FloatArray = a * np.exp(beta * first) * ratio
    return out


def _geo_count(
    a: FloatArray, beta: FloatArray, first: FloatArray, target: FloatArray
) -> FloatArray:
    """Fewest terms of the geometric sum from ``first`` reaching ``target`` (inf: never)."""
    small = np.abs(beta) < 1e-12
    safe = np.where(small, 1.0, beta)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        start = a * np.exp(beta * first)
        q = target * np.expm1(safe) / start
        geometric = np.where(q > -1.0, np.ceil(np.log1p(np.maximum(q, -1.0)) / safe), np.inf)
        out: FloatArray = np.where(small, np.ceil(target / start), geometric)
    return np.maximum(out, 0.0)


def _cumulative(h: Hazard, day: FloatArray) -> FloatArray:
    """``S(day) = sum_{j=1}^{day} exp(-k * C_nat(j))``."""
    one = np.ones_like(day)
    first = np.minimum(day, h.boundary)
    rest = np.maximum(day - h.boundary, 0.0)
    piece1 = np.where(h.geo_first, _geo_sum(h.a, h.beta, one, first), h.flat * first)
    piece2 = np.where(h.geo_first, h.flat * rest, _geo_sum(h.a, h.beta, h.boundary + 1, rest))
    out: FloatArray = piece1 + piece2
    return out


def _reaching(h: Hazard, target: FloatArray) -> FloatArray:
    """Smallest day d >= 0 with ``S(d) >= target`` (inf: never)."""
    one = np.ones_like(target)
    whole1 = h.first_total
    rest = target - whole1
    with np.errstate(divide="ignore", invalid="ignore"):
        in_first = np.where(
            h.geo_first, _geo_count(h.a, h.beta, one, target), np.ceil(target / h.flat)
        )
        in_second = np.where(
            h.geo_first, np.ceil(rest / h.flat), _geo_count(h.a, h.beta, h.boundary + 1, rest)
        )
    out: FloatArray = np.where(
        target <= whole1, np.minimum(np.maximum(in_first, 0.0), h.boundary), h.boundary + in_second
    )
    return out


def next_event(
    h: Hazard,
    scale: FloatArray,
    start: FloatArray,
    exponential: FloatArray,
    switch: FloatArray,
    after: float,
) -> FloatArray:
    """First day d >= start with ``scale * sum_{j=start}^{d} m_j exp(-k C_nat(j)) >= E``, where
    ``m_j`` is 1 before ``switch`` and ``after`` from it (model.py's searchsorted of the
    cumulative daily hazard, in closed form). inf: never."""
    with np.errstate(divide="ignore"):
        y = exponential / scale
    base = _cumulative(h, start - 1.0)
    switched = np.isfinite(switch)
    split = switched & (switch > start)
    at_switch = _cumulative(h, np.where(split, switch - 1.0, start - 1.0))
    before = at_switch - base
    in_first = split & (y <= before)
    target = np.where(
        in_first | ~switched,
        base + y,
        np.where(split, at_switch + (y - before) / after, base + y / after),
    )
    day = _reaching(h, target)
    day = np.where(in_first, np.minimum(day, switch - 1.0), day)
    day = np.where(split & ~in_first, np.maximum(day, switch), day)
    out: FloatArray = np.maximum(day, start)
    return out


def may_reach(
    params: ModelParameters,
    cd4: FloatArray,
    decline: FloatArray,
    scale: FloatArray,
    start: FloatArray,
    exponential: FloatArray,
    horizon: FloatArray,
    factor: FloatArray,
) -> BoolArray:
    """Rows whose next event (:func:`next_event_in_windows`) may fall on or before ``horizon``.

    A bound, not the answer, from the latent CD4 and decline alone: the daily hazard
    ``exp(-k * C_nat(j))`` is monotone in ``j`` (the natural path is linear, then flat at the
    floor), so the mass from ``start`` to ``horizon`` is at most the number of days times the
    larger end value, times ``factor`` (the largest multiplier on any of those days: the IL-2
    hazard ratio where the row has an exposure window, else 1), with a margin far above
    rounding. A row left out cannot have its event by ``horizon``; a row kept is then solved
    exactly, so solving only the rows kept gives the same days (most participants have no event
    in follow-up, and the exact solution costs one inversion per window).
    """
    kappa = event_hazard_slope(params)
    floor = params.cd4_floor.value
    delta = decline / DAYS_PER_YEAR
    lowest = np.maximum(np.minimum(cd4 - delta * start, cd4 - delta * horizon), floor)
    days = np.maximum(horizon - start + 1.0, 0.0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        bound = factor * days * np.exp(-kappa * lowest) * 1.001
        out: BoolArray = ~(exponential / scale > bound)  # NaN keeps the row
    return out


def merged_windows(lo: FloatArray, hi: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Per row, the union of the windows ``[lo[:, k], hi[:, k]]`` (days, inclusive) as disjoint
    windows in ascending order; an empty window has ``lo = inf``. Windows must be given in
    ascending order of ``lo`` (the cycles' order); touching or overlapping ones are joined.
    Bounds are whole days (:func:`~stalwart.simulate.equations.il2_excess_window` gives them so):
    :func:`next_event_in_windows` integrates between them and a fractional bound would count a
    fraction of a day at the ratio and date events on it."""
    n, k_max = lo.shape
    out_lo: list[FloatArray] = []
    out_hi: list[FloatArray] = []
    cur_lo = np.full(n, np.inf)
    cur_hi = np.full(n, -np.inf)
    for k in range(k_max):
        valid = lo[:, k] <= hi[:, k]
        joins = valid & (lo[:, k] <= cur_hi + 1.0)
        new = valid & ~joins
        out_lo.append(np.where(new, cur_lo, np.inf))
        out_hi.append(np.where(new, cur_hi, -np.inf))
        cur_lo = np.where(new, lo[:, k], cur_lo)
        cur_hi = np.where(new, hi[:, k], np.where(joins, np.maximum(cur_hi, hi[:, k]), cur_hi))
    out_lo.append(cur_lo)
    out_hi.append(cur_hi)
    return np.column_stack(out_lo), np.column_stack(out_hi)


def next_event_in_windows(
    h: Hazard,
    scale: FloatArray,
    start: FloatArray,
    exponential: FloatArray,
    lo: FloatArray,
    hi: FloatArray,
    ratio: float,
) -> FloatArray:
    """First day d >= start with ``scale * sum_{j=start}^{d} m_j exp(-k C_nat(j)) >= E``, where
    ``m_j`` is ``ratio`` on the days of the windows ``[lo, hi]`` (rows of :func:`merged_windows`)
    and 1 elsewhere: model.py's searchsorted of the cumulative daily hazard. inf: never."""
    with np.errstate(divide="ignore"):
        remaining = exponential / scale
    day = np.full(start.shape, np.inf)
    found = np.zeros(start.shape, dtype=bool)
    pos = start.astype(np.float64).copy()

    def piece(first: FloatArray, last: FloatArray, factor: float) -> None:
        nonlocal remaining, day, found, pos
        active = ~found & (first <= last)
        if not active.any():
            return
        bounded = np.isfinite(last)
        below = _cumulative(h, np.where(active, first - 1.0, 0.0))
        with np.errstate(invalid="ignore"):
            top = _cumulative(h, np.where(active & bounded, last, 0.0))
            mass = np.where(bounded, factor * (top - below), np.inf)
        hit = active & (remaining <= mass)
        reached = _reaching(h, below + remaining / factor)
        reached = np.minimum(np.maximum(reached, first), last)
        day = np.where(hit, reached, day)
        found |= hit
        remaining = np.where(active & ~hit, remaining - mass, remaining)
        pos = np.where(active & ~hit, last + 1.0, pos)

    for k in range(lo.shape[1]):
        nonempty = lo[:, k] <= hi[:, k]
        piece(pos, np.where(nonempty, lo[:, k] - 1.0, -np.inf), 1.0)
        piece(np.maximum(pos, lo[:, k]), np.where(nonempty, hi[:, k], -np.inf), ratio)
    piece(pos, np.full(start.shape, np.inf), 1.0)
    return day
