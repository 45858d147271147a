"""Kaplan-Meier against lifelines (estimate, log-log limits, median) and statsmodels (Greenwood)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from lifelines import KaplanMeierFitter
from lifelines.utils import median_survival_times
from statsmodels.duration.survfunc import SurvfuncRight

from stalwart.analysis.kernels.km import kaplan_meier, number_at_risk
from stalwart.errors import AnalysisError

RTOL = 1e-10


@pytest.fixture(autouse=True)
def _keep_numpy_error_state() -> Iterator[None]:
    """lifelines calls ``np.seterr(...)`` globally; undo it so later tests still see warnings."""
    with np.errstate():
        yield


def _data(seed: int, n: int, rounding: float | None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    event_time = rng.weibull(1.3, n) * 12.0
    censor_time = rng.uniform(0.0, 20.0, n)
    time = np.minimum(event_time, censor_time)
    if rounding is not None:
        time = np.ceil(time / rounding) * rounding  # heavy ties
    return time, (event_time <= censor_time).astype(int)


CASES = [(1, 40, None), (2, 300, 1.0), (3, 1000, 0.5), (4, 15, 3.0)]


@pytest.mark.parametrize(("seed", "n", "rounding"), CASES)
def test_matches_lifelines_and_statsmodels(seed: int, n: int, rounding: float | None) -> None:
    time, event = _data(seed, n, rounding)
    ours = kaplan_meier(time, event)
    kmf = KaplanMeierFitter().fit(time, event)
    table = kmf.event_table.loc[ours.time]
    np.testing.assert_array_equal(ours.time, np.unique(time))
    np.testing.assert_array_equal(ours.n_at_risk, table["at_risk"])
    np.testing.assert_array_equal(ours.n_events, table["observed"])
    np.testing.assert_array_equal(ours.n_censored, table["censored"])
    surv = kmf.survival_function_.loc[ours.time].to_numpy()[:, 0]
    np.testing.assert_allclose(ours.survival, surv, rtol=RTOL)
    # lifelines: exponential Greenwood = R's log-log; lifelines fills S == 1 with 1, R with NA
    inside = (ours.survival > 0) & (ours.survival < 1)
    ci = kmf.confidence_interval_.loc[ours.time].to_numpy()
    np.testing.assert_allclose(ours.ci_low[inside], ci[inside, 0], rtol=RTOL)
    np.testing.assert_allclose(ours.ci_high[inside], ci[inside, 1], rtol=RTOL)
    assert np.all(np.isnan(ours.ci_low[~inside])) and np.all(np.isnan(ours.ci_high[~inside]))
    # Greenwood standard error of S at event times: statsmodels SurvfuncRight
    sf = SurvfuncRight(time, event)
    at_events = np.isin(ours.time, sf.surv_times)
    np.testing.assert_allclose(ours.survival[at_events], sf.surv_prob, rtol=RTOL)
    np.testing.assert_allclose(ours.std_err[at_events], sf.surv_prob_se, rtol=RTOL)
    assert ours.n == n and ours.events == int(event.sum())


@pytest.mark.parametrize(("seed", "n", "rounding"), CASES)
def test_median_matches_lifelines(seed: int, n: int, rounding: float | None) -> None:
    time, event = _data(seed, n, rounding)
    ours = kaplan_meier(time, event)
    kmf = KaplanMeierFitter().fit(time, event)
    flat_at_half = np.any(np.abs(ours.survival - 0.5) < 1e-12)
    assert not flat_at_half  # otherwise R's midpoint rule applies, lifelines does not use it
    ref = kmf.median_survival_time_
    assert ours.median == ref if np.isfinite(ref) else np.isnan(ours.median)
    limits = median_survival_times(kmf.confidence_interval_).to_numpy()[0]
    expected = [v if np.isfinite(v) else np.nan for v in limits]
    np.testing.assert_array_equal([ours.median_ci_low, ours.median_ci_high], expected)


def test_hand_computed_table() -> None:
    time = [1, 2, 2, 3, 4, 5]
    event = [1, 1, 0, 1, 0, 1]
    ours = kaplan_meier(time, event)
    np.testing.assert_allclose(ours.survival, [5 / 6, 2 / 3, 4 / 9, 4 / 9, 0.0], rtol=1e-14)
    greenwood = np.cumsum([1 / 30, 1 / 20, 1 / 6, 0.0])
    expected_se = np.array([5 / 6, 2 / 3, 4 / 9, 4 / 9]) * np.sqrt(greenwood)
    np.testing.assert_allclose(ours.std_err[:4], expected_se, rtol=1e-14)
    assert np.isnan(ours.std_err[4])  # R: 0 * Inf
    assert ours.n_at_risk.tolist() == [6, 5, 3, 2, 1]
    assert ours.median == 3.0


def test_r_midpoint_rule_for_flat_half() -> None:
    # R: print(survfit(Surv(1:4, rep(1, 4)) ~ 1)) reports median 2.5
    assert kaplan_meier([1, 2, 3, 4], [1, 1, 1, 1]).median == 2.5
    # curve flat at 0.5 to the end: (time reaching 0.5 + last time) / 2, as quantile.survfit
    assert kaplan_meier([1, 2, 3, 4], [1, 1, 0, 0]).median == 3.0


def test_median_not_reached_and_no_events() -> None:
    ours = kaplan_meier([1, 2, 3, 4, 5], [1, 0, 0, 0, 0])
    assert np.isnan(ours.median) and np.isnan(ours.median_ci_high)
    assert ours.median_ci_low == 1.0  # the lower limit curve (0.8 on 5 at risk) is below 0.5
    none = kaplan_meier([1, 2, 3], [0, 0, 0])
    assert np.all(none.survival == 1.0)
    assert np.all(none.std_err == 0.0)
    assert none.events == 0
    assert np.isnan(none.median)


def test_at_times_and_number_at_risk() -> None:
    time, event = _data(7, 200, 0.25)
    full = kaplan_meier(time, event)
    at = np.array([0.0, 0.1, 2.0, 5.5, 7.25, 30.0])
    ours = kaplan_meier(time, event, at=at[::-1])
    np.testing.assert_array_equal(ours.time, at)
    kmf = KaplanMeierFitter().fit(time, event)
    np.testing.assert_allclose(ours.survival, kmf.survival_function_at_times(at), rtol=RTOL)
    brute = np.array([(time >= t).sum() for t in at])
    np.testing.assert_array_equal(ours.n_at_risk, brute)
    np.testing.assert_array_equal(number_at_risk(time, at), brute)
    edges = np.concatenate(([-np.inf], at))
    for i in range(at.size):
        window = (time > edges[i]) & (time <= edges[i + 1])
        assert ours.n_events[i] == event[window].sum()
        assert ours.n_censored[i] == (1 - event[window]).sum()
    assert ours.median == full.median
    last = full.survival[-1]
    assert ours.survival[-1] == last  # extend = TRUE beyond the last time


def test_alpha_changes_width() -> None:
    time, event = _data(8, 100, None)
    narrow = kaplan_meier(time, event, alpha=0.2)
    wide = kaplan_meier(time, event, alpha=0.01)
    inside = np.isfinite(narrow.ci_low)
    assert np.all(wide.ci_low[inside] < narrow.ci_low[inside])
    assert np.all(wide.ci_high[inside] > narrow.ci_high[inside])


@pytest.mark.parametrize(
    ("time", "event", "match"),
    [
        ([1.0, -1.0], [1, 1], "negative"),
        ([1.0, np.nan], [1, 1], "non-finite"),
        ([1.0, 2.0], [1, 2], "only 0"),
        ([1.0, 2.0], [1], "event must be"),
        ([], [], "at least one"),
        ([[1.0]], [1], "one-dimensional"),
    ],
)
def test_rejects_bad_input(time: list[float], event: list[int], match: str) -> None:
    with pytest.raises(AnalysisError, match=match):
        kaplan_meier(time, event)


def test_to_dict_is_strict_json() -> None:
    result = kaplan_meier([1, 2, 2, 3], [1, 0, 1, 1])
    payload = result.to_dict()
    text = json.dumps(payload, allow_nan=False)
    assert json.loads(text)["survival"] == result.survival.tolist()
    assert payload["ci_low"][-1] is None  # S == 0 -> NaN -> None


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.float64, st.integers(1, 60), elements=st.floats(0, 100).map(round)),
    st.data(),
)
def test_survival_monotone_and_bounded(time: np.ndarray, data: st.DataObject) -> None:
    event = data.draw(arrays(np.int64, time.size, elements=st.integers(0, 1)))
    result = kaplan_meier(time, event)
    assert np.all(np.diff(result.survival) <= 0)
    assert np.all((result.survival >= 0) & (result.survival <= 1))
    inside = np.isfinite(result.ci_low)
    assert np.all(result.ci_low[inside] <= result.survival[inside] + 1e-12)
    assert np.all(result.survival[inside] <= result.ci_high[inside] + 1e-12)
    assert result.n_at_risk[0] == time.size
    assert result.n_events.sum() + result.n_censored.sum() == time.size


def test_quantiles_and_conf_types() -> None:
    time, event = _data(9, 150, None)
    ours = kaplan_meier(time, event, probs=[0.25, 0.5, 0.75])
    assert ours.quantiles[1] == ours.median
    assert ours.quantile_ci_low[1] == ours.median_ci_low
    sf = SurvfuncRight(time, event)
    for p, q in zip([0.25, 0.5, 0.75], ours.quantiles, strict=True):
        assert q == sf.quantile(p)  # smallest time with 1 - S(t) >= p
    log = kaplan_meier(time, event, conf_type="log")
    plain = kaplan_meier(time, event, conf_type="plain")
    z = 1.959963984540054
    inside = log.survival > 0
    se_log = log.std_err[inside] / log.survival[inside]
    expected_high = np.minimum(log.survival[inside] * np.exp(z * se_log), 1.0)
    np.testing.assert_allclose(log.ci_high[inside], expected_high, rtol=1e-12)
    np.testing.assert_allclose(
        plain.ci_low[inside], np.maximum(plain.survival - z * plain.std_err, 0)[inside], rtol=1e-12
    )
    assert log.conf_type == "log" and plain.conf_type == "plain"


def test_print_median_differs_only_when_flat_at_half_to_the_end() -> None:
    flat = kaplan_meier([1, 2, 3, 4], [1, 1, 0, 0])
    assert (flat.median, flat.print_median) == (3.0, 2.0)  # quantile.survfit vs print.survfit
    mid = kaplan_meier([1, 2, 3, 4], [1, 1, 1, 1])
    assert mid.median == mid.print_median == 2.5


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"conf_type": "arcsin"}, "conf_type"),
        ({"probs": [0.5, 1.5]}, "probs"),
        ({"alpha": 0}, "alpha"),
    ],
)
def test_rejects_bad_options(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(AnalysisError, match=match):
        kaplan_meier([1, 2, 3], [1, 0, 1], **kwargs)  # type: ignore[arg-type]
