"""The closed-form first-event day with IL-2 exposure windows equals model.py's day-by-day sum."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stalwart.simulate._vectorized_hazard import (
    hazard_shape,
    may_reach,
    merged_windows,
    next_event,
    next_event_in_windows,
)
from stalwart.simulate.equations import il2_excess_window
from stalwart.simulate.parameters import load_parameters

HORIZON = 6000  # the brute force's last day


def _brute_force_day(params, cd4, decline, scale, start, e, windows, ratio) -> float:
    """model.py's way: the daily hazard times the ratio inside any window, cumsum, searchsorted."""
    days = np.arange(0, HORIZON, dtype=np.float64)
    natural = np.maximum(cd4 - decline * days / 365.25, params.cd4_floor.value)
    kappa = params.event_log_hazard_per_100_cd4.value / 100
    hazard = scale * np.exp(-kappa * natural)
    inside = np.zeros(days.shape, dtype=bool)
    for lo, hi in windows:
        inside |= (days >= lo) & (days <= hi)
    hazard = np.where(inside, hazard * ratio, hazard)
    cumulative = np.cumsum(hazard[int(start) :])
    index = int(np.searchsorted(cumulative, e))
    return math.inf if index >= len(cumulative) else start + index


@pytest.mark.parametrize("ratio", [6.9, 1.0, 0.3])
def test_next_event_in_windows_equals_the_cumulative_daily_hazard(ratio: float) -> None:
    params = load_parameters()
    rng = np.random.default_rng(11)
    n = 300
    cd4 = rng.lognormal(np.log(560), 0.5, n)
    decline = np.concatenate([rng.normal(60, 200, n - 20), rng.uniform(300, 2000, 20)])
    scale = rng.lognormal(np.log(0.003), 1.5, n)
    start = rng.integers(1, 300, n).astype(np.float64)
    e = rng.standard_exponential(n)
    # three cycles 56 days apart, 5 IL-2 days each, windows of 0 to 80 days (some overlap),
    # each cycle declined with probability 0.3; a few persistent (window beyond follow-up)
    first = np.array([7.0, 63.0, 119.0])
    window = rng.choice([0.0, 28.0, 51.0, 80.0, 36525.0], n)
    intended = rng.random((n, 3)) >= 0.3
    lo = np.where(intended, first, np.inf)
    hi = np.where(intended, first + 4.0 + window[:, None], -np.inf)
    h = hazard_shape(params, cd4, decline)
    merged_lo, merged_hi = merged_windows(lo, hi)
    fast = next_event_in_windows(h, scale, start, e, merged_lo, merged_hi, ratio)
    slow = np.array(
        [
            _brute_force_day(
                params,
                cd4[i],
                decline[i],
                scale[i],
                start[i],
                e[i],
                [(lo[i, k], hi[i, k]) for k in range(3) if intended[i, k]],
                ratio,
            )
            for i in range(n)
        ]
    )
    fast = np.where(fast >= HORIZON, np.inf, fast)
    np.testing.assert_array_equal(fast, slow)
    assert np.isfinite(slow).sum() > n // 3


@pytest.mark.parametrize("ratio", [6.9, 1.0, 0.3])
def test_rows_left_out_by_may_reach_have_no_event_by_the_horizon(ratio: float) -> None:
    """The filter that spares most participants the exact solution never drops an event: every
    row it leaves out has its exact day after the horizon, and it leaves most of those out
    (CD4 falling, rising, starting below the floor; late starts; empty follow-up)."""
    params = load_parameters()
    rng = np.random.default_rng(5)
    n = 20000
    cd4 = rng.lognormal(np.log(560), 0.6, n)
    decline = rng.normal(60, 200, n)
    h = hazard_shape(params, cd4, decline)
    scale = rng.lognormal(np.log(0.0005), 1.0, n)
    e = rng.standard_exponential(n)
    start = np.where(rng.random(n) < 0.5, 1.0, rng.integers(1, 600, n).astype(np.float64))
    horizon = start - 1.0 + rng.integers(-5, 1500, n)
    intended = rng.random((n, 3)) >= 0.3
    first = np.array([7.0, 63.0, 119.0])
    lo = np.where(intended, first, np.inf)
    hi = np.where(intended, first + 4.0 + rng.choice([0.0, 28.0, 36525.0], n)[:, None], -np.inf)
    factor = np.where(intended.any(axis=1), max(ratio, 1.0), 1.0)
    exact = next_event_in_windows(h, scale, start, e, *merged_windows(lo, hi), ratio)
    kept = may_reach(params, cd4, decline, scale, start, e, horizon, factor)
    assert np.all(exact[~kept] > horizon[~kept])
    within = exact <= horizon
    assert within.sum() > 100
    assert kept.sum() < 2.0 * within.sum()  # a tight bound: few rows solved for nothing


def test_a_persistent_window_is_the_old_switch() -> None:
    """One window from the first IL-2 day beyond follow-up: the single switch of before."""
    params = load_parameters()
    rng = np.random.default_rng(3)
    n = 200
    h = hazard_shape(params, rng.lognormal(np.log(500), 0.4, n), rng.normal(60, 50, n))
    scale = rng.lognormal(np.log(0.002), 1.0, n)
    e = rng.standard_exponential(n)
    switch = np.where(rng.random(n) < 0.7, 7.0, np.inf)
    lo = switch[:, None]
    hi = np.where(np.isfinite(switch), 7.0 + 36525.0, -np.inf)[:, None]
    ones = np.ones(n)
    windowed = next_event_in_windows(h, scale, ones, e, *merged_windows(lo, hi), 6.9)
    old = next_event(h, scale, ones, e, switch, 6.9)
    limit = 30000
    np.testing.assert_array_equal(np.minimum(windowed, limit), np.minimum(old, limit))


def test_merged_windows_joins_touching_and_overlapping_ones() -> None:
    lo = np.array([[1.0, 5.0, 20.0], [1.0, np.inf, 9.0], [np.inf, np.inf, np.inf]])
    hi = np.array([[4.0, 10.0, 30.0], [3.0, -np.inf, 12.0], [-np.inf, -np.inf, -np.inf]])
    mlo, mhi = merged_windows(lo, hi)
    spans = [[(a, b) for a, b in zip(mlo[r], mhi[r], strict=True) if a <= b] for r in range(3)]
    assert spans == [[(1.0, 10.0), (20.0, 30.0)], [(1.0, 3.0), (9.0, 12.0)], []]


@pytest.mark.parametrize("window", [100.654, 28.6, 0.4, 36524.5])
def test_a_fractional_window_covers_the_whole_days_model_py_covers(window: float) -> None:
    """A posterior draw's window (100.654 days at the medians) is not a whole number of days:
    model.py gives the ratio to the days ``d <= last IL-2 day + window``; the closed form, fed
    :func:`il2_excess_window`'s windows, finds the same event days, all whole days (before,
    it integrated up to the fractional end and dated some events on fractional days)."""
    params = load_parameters(
        overrides={"il2_excess_hazard_window_days": window, "il2_event_hazard_ratio": 6.0}
    )
    rng = np.random.default_rng(17)
    n = 400
    cd4 = rng.lognormal(np.log(560), 0.5, n)
    decline = rng.normal(60, 200, n)
    scale = rng.lognormal(np.log(0.004), 1.5, n)
    start = rng.integers(1, 250, n).astype(np.float64)
    e = rng.standard_exponential(n)
    cycles = [tuple(range(d, d + 5)) for d in (7, 63, 119)]
    intended = rng.random((n, 3)) >= 0.3
    windows = [il2_excess_window(params, days) for days in cycles]
    lo = np.where(intended, [w[0] for w in windows], np.inf)
    hi = np.where(intended, [w[1] for w in windows], -np.inf)
    h = hazard_shape(params, cd4, decline)
    fast = next_event_in_windows(h, scale, start, e, *merged_windows(lo, hi), 6.0)
    exact = [(float(days[0]), days[-1] + window) for days in cycles]  # model.py's ``d <= hi``
    slow = np.array(
        [
            _brute_force_day(
                params,
                cd4[i],
                decline[i],
                scale[i],
                start[i],
                e[i],
                [w for w, on in zip(exact, intended[i], strict=True) if on],
                6.0,
            )
            for i in range(n)
        ]
    )
    fast = np.where(fast >= HORIZON, np.inf, fast)
    np.testing.assert_array_equal(fast, slow)
    assert np.isfinite(slow).sum() > n // 3
