"""Exact conditional rate-ratio test against scipy's binomtest, plus invariants and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from stalwart.analysis.kernels.exact import binomial_two_sided_p, rate_ratio_exact_test
from stalwart.errors import AnalysisError


@pytest.mark.parametrize(
    ("d1", "t1", "d0", "t0"),
    [
        (12, 5632.0, 1, 2912.0),
        (3, 10.0, 9, 12.0),
        (0, 4.0, 6, 5.0),
        (7, 1.0, 0, 3.0),
        (20, 9, 20, 9),
    ],
)
def test_matches_scipy_binomtest(d1: int, t1: float, d0: int, t0: float) -> None:
    ours = rate_ratio_exact_test(d1, t1, d0, t0)
    pi = t1 / (t1 + t0)
    ref = stats.binomtest(d1, d1 + d0, pi)
    assert float(ours.p_value) == pytest.approx(ref.pvalue, rel=1e-12)
    ci = ref.proportion_ci(confidence_level=0.95, method="exact")
    with np.errstate(divide="ignore"):
        expected = np.array([ci.low, ci.high]) / (1 - np.array([ci.low, ci.high])) * t0 / t1
    np.testing.assert_allclose([float(ours.ci_low), float(ours.ci_high)], expected, rtol=1e-10)
    for alternative in ("less", "greater"):
        one = rate_ratio_exact_test(d1, t1, d0, t0, alternative=alternative)  # type: ignore[arg-type]
        ref_one = stats.binomtest(d1, d1 + d0, pi, alternative=alternative)
        assert float(one.p_value) == pytest.approx(ref_one.pvalue, rel=1e-12)


def test_broadcasts_like_a_replicate_axis() -> None:
    rng = np.random.default_rng(3)
    d1 = rng.poisson(6, size=(50, 4))
    d0 = rng.poisson(3, size=(50, 4))
    many = rate_ratio_exact_test(d1, 100.0, d0, 80.0)
    assert many.p_value.shape == (50, 4)
    for i, j in [(0, 0), (17, 3), (49, 2)]:
        one = rate_ratio_exact_test(d1[i, j], 100.0, d0[i, j], 80.0)
        assert many.p_value[i, j] == pytest.approx(float(one.p_value), rel=1e-13)
        assert many.mid_p[i, j] == float(one.mid_p)
    direct = binomial_two_sided_p(d1, d1 + d0, np.full(d1.shape, 100 / 180))
    np.testing.assert_allclose(direct, many.p_value, rtol=0, atol=0)


def test_no_events_gives_r_conventions_and_json() -> None:
    none = rate_ratio_exact_test(0, 10.0, 0, 10.0)
    assert float(none.p_value) == 1.0 and float(none.mid_p) == 1.0
    assert float(none.ci_low) == 0.0 and np.isinf(none.ci_high)
    assert np.isnan(none.rate_ratio)
    payload = json.loads(json.dumps(none.to_dict(), allow_nan=False))
    assert payload["rate_ratio"] is None and payload["ci_high"] is None


@settings(max_examples=80, deadline=None)
@given(
    st.integers(0, 40),
    st.integers(0, 40),
    st.floats(0.1, 1e4),
    st.floats(0.1, 1e4),
)
def test_p_values_and_interval_are_coherent(d1: int, d0: int, t1: float, t0: float) -> None:
    res = rate_ratio_exact_test(d1, t1, d0, t0)
    p, central, mid = float(res.p_value), float(res.p_value_central), float(res.mid_p)
    assert 0.0 <= mid <= central <= 1.0
    assert 0.0 < p <= 1.0 + 1e-12
    if d1 + d0 > 0:
        assert float(res.ci_low) <= float(res.rate_ratio) <= float(res.ci_high)
        # the central interval excludes 1 exactly when the doubled p-value is below 0.05
        excludes = float(res.ci_low) > 1.0 or float(res.ci_high) < 1.0
        if abs(central - 0.05) > 1e-9:
            assert excludes == (central < 0.05)


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((-1, 1.0, 2, 1.0), {}, "non-negative whole"),
        ((1.5, 1.0, 2, 1.0), {}, "whole numbers"),
        ((1, 0.0, 2, 1.0), {}, "positive"),
        ((1, 1.0, 2, np.nan), {}, "finite and positive"),
        (([1, 2], 1.0, [1, 2, 3], 1.0), {}, "broadcast"),
        ((1, 1.0, 2, 1.0), {"alternative": "two.sided"}, "alternative"),
        ((1, 1.0, 2, 1.0), {"conf_level": 95}, "conf_level"),
        ((1, 1.0, 2, 1.0), {"ratio": 0.0}, "ratio"),
    ],
)
def test_rejects_bad_input(args: tuple[object, ...], kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(AnalysisError, match=match):
        rate_ratio_exact_test(*args, **kwargs)  # type: ignore[arg-type]
