"""Firth-penalized Cox regression: derivatives, optimum, tests and limits, checked in Python.

The penalized objective is rebuilt independently from statsmodels PHReg (``loglike`` plus half
the log determinant of ``-hessian``); the comparison with R is in
tests/validation/test_firth_vs_r.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize, stats
from statsmodels.duration.hazard_regression import PHReg

from stalwart.analysis.kernels._cox_likelihood import cox_design, stratum_derivatives
from stalwart.analysis.kernels.cox import cox_ph
from stalwart.analysis.kernels.firth import _Penalized, _stratum_moments, firth_cox
from stalwart.errors import AnalysisError


def _data(
    seed: int, n: int, beta: list[float], rounding: float | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = len(beta)
    x = np.column_stack([rng.integers(0, 2, n)] + [rng.normal(size=n) for _ in range(p - 1)])
    event_time = rng.exponential(3.0 / np.exp(x @ np.asarray(beta)))
    censor = rng.uniform(0.0, 3.0, n)
    time = np.minimum(event_time, censor)
    if rounding is not None:
        time = np.ceil(time / rounding) * rounding
    return time, (event_time <= censor).astype(int), x.astype(float)


def _penalized_statsmodels(
    time: np.ndarray, event: np.ndarray, x: np.ndarray, ties: str
) -> Callable[[np.ndarray], float]:
    """l(b) + 1/2 log det(-H(b)) from statsmodels' own partial likelihood and Hessian."""
    model = PHReg(time, x, status=event, ties=ties)

    def value(beta: np.ndarray) -> float:
        return float(model.loglike(beta) + 0.5 * np.linalg.slogdet(-model.hessian(beta))[1])

    return value


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_third_derivatives_and_modified_score_by_finite_differences(ties: str) -> None:
    time, event, x = _data(1, 150, [0.5, -0.3, 0.4], rounding=0.2)
    strata = np.random.default_rng(2).integers(0, 2, time.size)
    design = cox_design(time, event, x, ties, strata, 0.05, None)
    beta = np.array([0.3, -0.2, 0.5])
    h = 1e-5
    for s in design.strata:
        work = np.empty(s.zt.shape)
        loglik, score, info, dinfo = _stratum_moments(s, beta)
        ref_ll, ref_score, ref_info = stratum_derivatives(s, beta, work)
        assert loglik == pytest.approx(ref_ll, rel=1e-12)
        np.testing.assert_allclose(score, ref_score, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(info, ref_info, rtol=1e-10, atol=1e-10)
        for c in range(3):
            step = np.zeros(3)
            step[c] = h
            up = stratum_derivatives(s, beta + step, work)[2]
            down = stratum_derivatives(s, beta - step, work)[2]
            np.testing.assert_allclose(dinfo[:, :, c], (up - down) / (2 * h), atol=1e-6)
    objective = _Penalized(design.strata, 3)
    gradient = objective(beta)[1]
    for c in range(3):
        step = np.zeros(3)
        step[c] = h
        slope = (objective(beta + step)[0] - objective(beta - step)[0]) / (2 * h)
        assert gradient[c] == pytest.approx(slope, abs=1e-6)


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_estimate_maximizes_the_statsmodels_penalized_likelihood(ties: str) -> None:
    time, event, x = _data(3, 90, [0.8, -0.5], rounding=0.25)
    ours = firth_cox(time, event, x, ties=ties)  # type: ignore[arg-type]
    value = _penalized_statsmodels(time, event, x, ties)
    assert ours.converged
    assert ours.loglik == pytest.approx(value(ours.coef), rel=1e-11)
    assert ours.loglik_null == pytest.approx(value(np.zeros(2)), rel=1e-11)
    h = 1e-5
    for c in range(2):
        step = np.zeros(2)
        step[c] = h
        assert (value(ours.coef + step) - value(ours.coef - step)) / (2 * h) == pytest.approx(
            0.0, abs=1e-7
        )
    ordinary = cox_ph(time, event, x, ties=ties)  # type: ignore[arg-type]
    np.testing.assert_allclose(ours.variance, ordinary.variance, rtol=0.2)  # I^-1, nearby beta
    assert np.all(np.abs(ours.coef) < np.abs(ordinary.coef))  # shrunk towards 0


def _profile(value: Callable[[np.ndarray], float], beta_hat: np.ndarray, j: int, b: float) -> float:
    other = 1 - j

    def negative(v: float) -> float:
        beta = np.empty(2)
        beta[j], beta[other] = b, v
        return -value(beta)

    centre = beta_hat[other]
    found = optimize.minimize_scalar(
        negative, bounds=(centre - 5, centre + 5), method="bounded", options={"xatol": 1e-10}
    )
    return -float(found.fun)


def test_penalized_tests_and_profile_limits_by_independent_profiles() -> None:
    time, event, x = _data(4, 100, [0.9, 0.3], rounding=0.2)
    ours = firth_cox(time, event, x)
    value = _penalized_statsmodels(time, event, x, "breslow")
    critical = stats.chi2.ppf(0.95, 1)
    for j in range(2):
        chi2 = 2.0 * (ours.loglik - _profile(value, ours.coef, j, 0.0))
        assert ours.chi2[j] == pytest.approx(chi2, rel=1e-6)
        assert ours.p_value[j] == pytest.approx(stats.chi2.sf(chi2, 1), rel=1e-6)
        for limit in (ours.ci_low[j], ours.ci_high[j]):
            drop = 2.0 * (ours.loglik - _profile(value, ours.coef, j, np.log(limit)))
            assert drop == pytest.approx(critical, rel=1e-7)
    assert ours.lr_statistic == pytest.approx(2 * (ours.loglik - ours.loglik_null), rel=1e-12)
    assert ours.lr_p_value == pytest.approx(stats.chi2.sf(ours.lr_statistic, 2), rel=1e-12)


def test_finite_when_one_arm_has_no_events() -> None:
    rng = np.random.default_rng(5)
    arm = np.repeat([1.0, 0.0], [60, 30])
    time = np.ceil(rng.uniform(1, 700, 90))
    event = np.zeros(90, dtype=int)
    event[:8] = 1  # all events on arm 1
    ordinary = cox_ph(time, event, arm)
    assert ordinary.monotone_likelihood
    ours = firth_cox(time, event, arm)
    assert ours.converged and np.isfinite(ours.coef[0]) and 0.5 < ours.coef[0] < 6.0
    assert 1.0 < ours.ci_low[0] < ours.hazard_ratio[0] < ours.ci_high[0] < np.inf
    value = _penalized_statsmodels(time, event, arm[:, None], "breslow")
    drop = 2.0 * (ours.loglik - value(np.log([ours.ci_high[0]])))
    assert drop == pytest.approx(stats.chi2.ppf(0.95, 1), rel=1e-7)
    assert ours.p_value[0] < 0.05


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 10_000), st.floats(-100, 100), st.sampled_from(["efron", "breslow"]))
def test_invariant_to_shift_scale_and_row_order(seed: int, shift: float, ties: str) -> None:
    time, event, x = _data(seed, 50, [0.6, 0.3], rounding=0.3)
    if event.sum() < 2 or np.ptp(x[:, 0]) == 0:
        return
    base = firth_cox(time, event, x, ties=ties)  # type: ignore[arg-type]
    order = np.random.default_rng(seed).permutation(time.size)
    moved = firth_cox(time[order], event[order], x[order] * [1.0, 10.0] + shift, ties=ties)  # type: ignore[arg-type]
    np.testing.assert_allclose(moved.coef * [1.0, 10.0], base.coef, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(moved.chi2, base.chi2, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(np.log(moved.ci_low) * [1.0, 10.0], np.log(base.ci_low), atol=1e-7)
    # x2 * 10 multiplies its information by 100: half the log det rises by log(10)
    assert moved.loglik == pytest.approx(base.loglik + np.log(10.0), rel=1e-9)


def test_to_dict_is_strict_json() -> None:
    time, event, x = _data(6, 60, [0.5], rounding=0.5)
    payload = firth_cox(time, event, x, names=["arm"]).to_dict()
    assert payload["names"] == ["arm"] and payload["ties"] == "breslow"
    assert json.loads(json.dumps(payload, allow_nan=False)) == payload


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"event": [0, 0, 0, 0]}, "no events"),
        ({"X": [1.0, 1.0, 1.0, 1.0]}, "no variation"),
        ({"ties": "exact"}, "ties"),
        ({"alpha": 1.5}, "alpha"),
        ({"strata": [0, 0, 1, 1], "X": [0.0, 0.0, 1.0, 1.0]}, "singular"),
        ({"time": [1.0, -1.0, 2.0, 3.0]}, "negative"),
    ],
)
def test_rejects_bad_input(kwargs: dict[str, object], match: str) -> None:
    arguments: dict[str, object] = {
        "time": [1.0, 2.0, 3.0, 4.0],
        "event": [1, 1, 1, 1],
        "X": [0.0, 1.0, 0.0, 1.0],
    }
    arguments.update(kwargs)
    with pytest.raises(AnalysisError, match=match):
        firth_cox(**arguments)  # type: ignore[arg-type]
