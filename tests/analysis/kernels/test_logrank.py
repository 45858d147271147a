"""Log-rank test against lifelines, statsmodels.survdiff (stratified) and a naive loop."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lifelines.datasets import load_lung
from lifelines.statistics import logrank_test as lifelines_logrank
from lifelines.statistics import multivariate_logrank_test
from statsmodels.duration.survfunc import survdiff

from stalwart.analysis.kernels.logrank import logrank_test
from stalwart.errors import AnalysisError

RTOL = 1e-9


@pytest.fixture(autouse=True)
def _keep_numpy_error_state() -> Iterator[None]:
    """lifelines calls ``np.seterr(...)`` globally; undo it so later tests still see warnings."""
    with np.errstate():
        yield


def _data(
    seed: int, n: int, k: int, rounding: float | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    group = rng.integers(0, k, n)
    event_time = rng.exponential(10.0 / (1.0 + 0.3 * group))
    censor = rng.uniform(0, 25, n)
    time = np.minimum(event_time, censor)
    if rounding is not None:
        time = np.ceil(time / rounding) * rounding
    return time, (event_time <= censor).astype(int), group


def _naive(
    time: np.ndarray, event: np.ndarray, group: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Textbook loop over distinct event times (Kalbfleisch & Prentice / survdiff)."""
    obs, exp, var = np.zeros(k), np.zeros(k), np.zeros((k, k))
    for t in np.unique(time[event == 1]):
        at_risk = np.array([np.sum((time >= t) & (group == g)) for g in range(k)], dtype=float)
        deaths = np.array([np.sum((time == t) & (event == 1) & (group == g)) for g in range(k)])
        n, d = at_risk.sum(), deaths.sum()
        obs += deaths
        exp += d * at_risk / n
        if n > 1:
            share = at_risk / n
            var += d * (n - d) / (n - 1) * (np.diag(share) - np.outer(share, share))
    return obs, exp, var


@pytest.mark.parametrize(
    ("seed", "n", "k", "rounding"),
    [(1, 100, 2, None), (2, 400, 3, 1.0), (3, 60, 4, 2.0), (4, 30, 2, 5.0)],
)
def test_matches_lifelines_and_naive_loop(
    seed: int, n: int, k: int, rounding: float | None
) -> None:
    time, event, group = _data(seed, n, k, rounding)
    ours = logrank_test(time, event, group)
    ref = multivariate_logrank_test(time, group, event)
    np.testing.assert_allclose(ours.chi2, ref.test_statistic, rtol=RTOL)
    np.testing.assert_allclose(ours.p_value, ref.p_value, rtol=1e-8)
    assert ours.df == ref.degrees_of_freedom == k - 1
    obs, exp, var = _naive(time, event, group, k)
    np.testing.assert_allclose(ours.observed, obs, rtol=1e-14)
    np.testing.assert_allclose(ours.expected, exp, rtol=1e-12)
    np.testing.assert_allclose(ours.variance, var, rtol=1e-10, atol=1e-12)
    assert ours.n.tolist() == np.bincount(group, minlength=k).tolist()
    np.testing.assert_allclose(ours.observed.sum(), ours.expected.sum(), rtol=1e-12)
    if k == 2:
        a, b = group == 0, group == 1
        two = lifelines_logrank(time[a], time[b], event[a], event[b])
        np.testing.assert_allclose(ours.chi2, two.test_statistic, rtol=RTOL)


@pytest.mark.parametrize(("seed", "k"), [(5, 2), (6, 3)])
def test_stratified_matches_statsmodels(seed: int, k: int) -> None:
    time, event, group = _data(seed, 500, k, 1.0)
    strata = np.random.default_rng(seed + 100).choice(np.array(["north", "south", "east"]), 500)
    ours = logrank_test(time, event, group, strata=strata)
    chi2, p_value = survdiff(time, event, group, strata=strata)
    np.testing.assert_allclose(ours.chi2, chi2, rtol=RTOL)
    np.testing.assert_allclose(ours.p_value, p_value, rtol=1e-8)
    assert ours.n_strata == 3
    o, e, v = np.zeros(k), np.zeros(k), np.zeros((k, k))
    for s in np.unique(strata):
        rows = strata == s
        so, se, sv = _naive(time[rows], event[rows], group[rows], k)
        o, e, v = o + so, e + se, v + sv
    np.testing.assert_allclose(ours.expected, e, rtol=1e-12)
    np.testing.assert_allclose(ours.variance, v, rtol=1e-10, atol=1e-12)
    unstratified = logrank_test(time, event, group)
    np.testing.assert_allclose(unstratified.chi2, survdiff(time, event, group)[0], rtol=RTOL)


def test_lung_sex_matches_r_printout() -> None:
    # R: survdiff(Surv(time, status) ~ sex, data = lung)
    #   sex=1 N=138 O=112 E=91.6; sex=2 N=90 O=53 E=73.4; Chisq= 10.3 on 1 df, p= 0.001
    lung = load_lung()
    ours = logrank_test(lung.time, lung.status, lung.sex)
    assert ours.groups == (1, 2)
    assert ours.n.tolist() == [138, 90]
    assert ours.observed.tolist() == [112, 53]
    np.testing.assert_allclose(ours.expected, [91.6, 73.4], atol=0.05)
    assert ours.chi2 == pytest.approx(10.3, abs=0.05)
    assert round(ours.p_value, 3) == 0.001


def test_no_events_in_one_arm_and_zero_expected_group() -> None:
    time = np.array([1.0, 2, 3, 4, 5, 6, 7, 8])
    event = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    group = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    ours = logrank_test(time, event, group)
    ref = multivariate_logrank_test(time, group, event)
    np.testing.assert_allclose(ours.chi2, ref.test_statistic, rtol=RTOL)
    assert ours.observed.tolist() == [4, 0]
    # group 2 is censored before the first event: expected 0, dropped from the df as in survdiff
    three = logrank_test(np.r_[time, 0.5, 0.5], np.r_[event, 0, 0], np.r_[group, 2, 2].astype(int))
    assert three.expected[2] == 0.0
    assert three.df == 1
    np.testing.assert_allclose(three.chi2, ours.chi2, rtol=1e-12)


@pytest.mark.parametrize(
    ("group", "event", "match"),
    [
        ([1, 1, 1, 1], [1, 0, 1, 0], "at least two groups"),
        ([1, 2, 1, 2], [0, 0, 0, 0], "no events"),
        ([1, 2, 1], [1, 0, 1, 0], "group must be"),
        ([1, 2, np.nan, 2], [1, 0, 1, 0], "missing"),
        ([1, 2, 1, 2], [1, 0, 2, 0], "only 0"),
    ],
)
def test_rejects_bad_input(group: list[float], event: list[int], match: str) -> None:
    with pytest.raises(AnalysisError, match=match):
        logrank_test([1.0, 2.0, 3.0, 4.0], event, group)


def test_rejects_negative_time() -> None:
    with pytest.raises(AnalysisError, match="negative"):
        logrank_test([1.0, -2.0], [1, 1], [0, 1])


def test_to_dict() -> None:
    time, event, group = _data(7, 50, 2, None)
    payload = logrank_test(time, event, group.astype(str)).to_dict()
    assert payload["groups"] == ["0", "1"]
    assert json.loads(json.dumps(payload, allow_nan=False)) == payload


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 100_000), st.permutations([0, 1, 2]))
def test_invariant_to_group_relabelling(seed: int, relabel: list[int]) -> None:
    time, event, group = _data(seed, 40, 3, 1.0)
    if event.sum() == 0 or np.unique(group).size < 3:
        return
    base = logrank_test(time, event, group)
    mapped = np.asarray(relabel)[group]
    other = logrank_test(time, event, mapped)
    assert other.chi2 == pytest.approx(base.chi2, rel=1e-8, abs=1e-10)
    assert other.df == base.df
    np.testing.assert_allclose(other.observed[np.asarray(relabel)], base.observed)
