"""Welch and pooled t-tests against scipy.stats.ttest_ind and R's printed t.test output."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats

from stalwart.analysis.kernels.ttest import TwoSampleResult, pooled_ttest, welch_ttest
from stalwart.errors import AnalysisError

RTOL = 1e-10

# R's datasets::sleep, extra by group (the example in ?t.test)
SLEEP_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
SLEEP_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


def _samples(seed: int, nx: int, ny: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(10.0, 2.0, nx), rng.normal(11.0, 5.0, ny)


@pytest.mark.parametrize(("seed", "nx", "ny"), [(1, 30, 45), (2, 5, 200), (3, 2, 2), (4, 1000, 7)])
@pytest.mark.parametrize("alpha", [0.05, 0.1])
def test_welch_matches_scipy(seed: int, nx: int, ny: int, alpha: float) -> None:
    x, y = _samples(seed, nx, ny)
    ours = welch_ttest(x, y, alpha=alpha)
    ref = stats.ttest_ind(x, y, equal_var=False)
    ci = ref.confidence_interval(1 - alpha)
    np.testing.assert_allclose(ours.statistic, ref.statistic, rtol=RTOL)
    np.testing.assert_allclose(ours.p_value, ref.pvalue, rtol=1e-8)
    np.testing.assert_allclose(ours.df, ref.df, rtol=RTOL)
    np.testing.assert_allclose([ours.ci_low, ours.ci_high], [ci.low, ci.high], rtol=RTOL)
    np.testing.assert_allclose(ours.difference, x.mean() - y.mean(), rtol=RTOL)
    np.testing.assert_allclose(ours.se, ours.difference / ref.statistic, rtol=RTOL)
    assert (ours.n_x, ours.n_y) == (nx, ny)
    assert ours.method == "welch"


@pytest.mark.parametrize(("seed", "nx", "ny"), [(5, 30, 45), (6, 1, 10), (7, 3, 3)])
def test_pooled_matches_scipy(seed: int, nx: int, ny: int) -> None:
    x, y = _samples(seed, nx, ny)
    ours = pooled_ttest(x, y)
    ref = stats.ttest_ind(x, y, equal_var=True)
    ci = ref.confidence_interval(0.95)
    np.testing.assert_allclose(ours.statistic, ref.statistic, rtol=RTOL)
    np.testing.assert_allclose(ours.p_value, ref.pvalue, rtol=1e-8)
    assert ours.df == nx + ny - 2 == ref.df
    np.testing.assert_allclose([ours.ci_low, ours.ci_high], [ci.low, ci.high], rtol=RTOL)
    assert ours.method == "pooled"


def test_sleep_data_matches_r_printout() -> None:
    # R: t.test(extra ~ group, data = sleep) and with var.equal = TRUE
    welch = welch_ttest(SLEEP_1, SLEEP_2)
    assert welch.statistic == pytest.approx(-1.8608, abs=5e-5)
    assert welch.df == pytest.approx(17.776, abs=5e-4)
    assert welch.p_value == pytest.approx(0.07939, abs=5e-6)
    assert welch.ci_low == pytest.approx(-3.3654832, abs=5e-8)
    assert welch.ci_high == pytest.approx(0.2054832, abs=5e-8)
    pooled = pooled_ttest(SLEEP_1, SLEEP_2)
    assert pooled.df == 18
    assert pooled.p_value == pytest.approx(0.07919, abs=5e-6)
    assert pooled.ci_low == pytest.approx(-3.363874, abs=5e-7)
    assert pooled.ci_high == pytest.approx(0.203874, abs=5e-7)


@pytest.mark.filterwarnings("ignore:Precision loss occurred in moment calculation:RuntimeWarning")
def test_one_constant_sample_is_allowed() -> None:
    x = np.array([1.0, 1.0, 1.0])
    y = np.array([2.0, 3.5, 4.0, 5.0])
    ours = welch_ttest(x, y)
    ref = stats.ttest_ind(x, y, equal_var=False)
    np.testing.assert_allclose(ours.p_value, ref.pvalue, rtol=1e-8)
    np.testing.assert_allclose(ours.df, y.size - 1, rtol=1e-12)


@pytest.mark.parametrize(
    ("x", "y", "match"),
    [
        ([1.0], [1.0, 2.0, 3.0], "at least 2"),
        ([1.0, np.nan], [1.0, 2.0], "non-finite"),
        ([1.0, np.inf], [1.0, 2.0], "non-finite"),
        ([[1.0, 2.0]], [1.0, 2.0], "one-dimensional"),
        ([2.0, 2.0], [2.0, 2.0, 2.0], "constant"),
        (["a", "b"], [1.0, 2.0], "numeric"),
    ],
)
def test_welch_rejects_bad_input(x: list[float], y: list[float], match: str) -> None:
    with pytest.raises(AnalysisError, match=match):
        welch_ttest(x, y)


def test_pooled_rejects_bad_input() -> None:
    with pytest.raises(AnalysisError, match="at least 3"):
        pooled_ttest([1.0], [2.0])
    with pytest.raises(AnalysisError, match="non-empty"):
        pooled_ttest([], [1.0, 2.0, 3.0])
    with pytest.raises(AnalysisError, match="alpha"):
        pooled_ttest([1.0, 2.0], [1.0, 3.0], alpha=1.0)


def test_to_dict_is_json_serialisable() -> None:
    result = welch_ttest(SLEEP_1, SLEEP_2)
    payload = result.to_dict()
    assert set(payload) == {f for f in TwoSampleResult.__dataclass_fields__}
    assert json.loads(json.dumps(payload, allow_nan=False)) == payload
    assert payload["difference"] == result.difference


finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


@settings(max_examples=50, deadline=None)
@given(
    arrays(np.float64, st.integers(2, 30), elements=finite),
    arrays(np.float64, st.integers(2, 30), elements=finite),
    st.floats(-1e3, 1e3),
)
def test_swap_and_shift_invariance(x: np.ndarray, y: np.ndarray, shift: float) -> None:
    try:
        ab = welch_ttest(x, y)
    except AnalysisError:
        return  # both samples constant
    ba = welch_ttest(y, x)
    assert ba.difference == pytest.approx(-ab.difference, abs=1e-9)
    assert ba.p_value == pytest.approx(ab.p_value, rel=1e-9, abs=1e-12)
    assert ba.ci_low == pytest.approx(-ab.ci_high, abs=1e-9)
    shifted = welch_ttest(x + shift, y + shift)
    assert shifted.se == pytest.approx(ab.se, rel=1e-6, abs=1e-9)
    assert ab.ci_low <= ab.difference <= ab.ci_high
