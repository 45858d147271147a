"""Cox regression against lifelines CoxPHFitter, statsmodels PHReg and R's printed coxph output."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lifelines import CoxPHFitter
from lifelines.datasets import load_lung, load_rossi
from scipy import stats
from statsmodels.duration.hazard_regression import PHReg

from stalwart.analysis.kernels.cox import cox_ph
from stalwart.analysis.kernels.logrank import logrank_test
from stalwart.errors import AnalysisError

RTOL = 1e-6


@pytest.fixture(autouse=True)
def _keep_numpy_error_state() -> Iterator[None]:
    """lifelines calls ``np.seterr(...)`` globally; undo it so later tests still see warnings."""
    with np.errstate():
        yield


def _data(
    seed: int, n: int, beta: list[float], rounding: float | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = len(beta)
    x = np.column_stack([rng.integers(0, 2, n)] + [rng.normal(size=n) for _ in range(p - 1)])
    event_time = rng.exponential(1.0 / np.exp(x @ np.asarray(beta)))
    censor = rng.uniform(0.0, 3.0, n)
    time = np.minimum(event_time, censor)
    if rounding is not None:
        time = np.ceil(time / rounding) * rounding
    return time, (event_time <= censor).astype(int), x.astype(float)


def _lifelines(
    time: np.ndarray, event: np.ndarray, x: np.ndarray, strata: np.ndarray | None = None
) -> CoxPHFitter:
    frame = pd.DataFrame(x, columns=[f"x{j + 1}" for j in range(x.shape[1])])
    frame["T"], frame["E"] = time, event
    kwargs = {}
    if strata is not None:
        frame["s"] = strata
        kwargs["strata"] = ["s"]
    return CoxPHFitter(penalizer=0.0).fit(
        frame, "T", "E", fit_options={"precision": 1e-12, "r_precision": 1e-14}, **kwargs
    )


def _score_test(model: PHReg) -> float:
    zero = np.zeros(model.exog.shape[1])
    u = model.score(zero)
    return float(u @ np.linalg.solve(-model.hessian(zero), u))


EFRON_CASES = [
    (1, 200, [0.5], None),
    (2, 500, [0.7, -0.3], 0.1),  # heavy ties
    (3, 120, [-0.4, 0.2, 0.8], 0.25),
    (4, 1000, [0.3, 0.1], 0.02),
]


@pytest.mark.parametrize(("seed", "n", "beta", "rounding"), EFRON_CASES)
def test_efron_matches_lifelines(
    seed: int, n: int, beta: list[float], rounding: float | None
) -> None:
    time, event, x = _data(seed, n, beta, rounding)
    ours = cox_ph(time, event, x)
    ref = _lifelines(time, event, x)
    np.testing.assert_allclose(ours.coef, ref.params_.to_numpy(), rtol=RTOL)
    np.testing.assert_allclose(ours.se, ref.standard_errors_.to_numpy(), rtol=RTOL)
    np.testing.assert_allclose(ours.loglik, ref.log_likelihood_, rtol=1e-10)
    np.testing.assert_allclose(ours.loglik_null, ref._ll_null_, rtol=1e-10)
    lr = ref.log_likelihood_ratio_test()
    np.testing.assert_allclose(ours.lr_statistic, lr.test_statistic, rtol=RTOL)
    np.testing.assert_allclose(ours.lr_p_value, lr.p_value, rtol=1e-5)
    limits = np.exp(ref.confidence_intervals_.to_numpy())
    np.testing.assert_allclose(ours.ci_low, limits[:, 0], rtol=RTOL)
    np.testing.assert_allclose(ours.ci_high, limits[:, 1], rtol=RTOL)
    np.testing.assert_allclose(ours.p_value, ref.summary["p"].to_numpy(), rtol=1e-5)
    assert ours.converged and not ours.monotone_likelihood
    assert ours.n == n and ours.n_events == event.sum()


@pytest.mark.parametrize("ties", ["efron", "breslow"])
@pytest.mark.parametrize(("seed", "n", "beta", "rounding"), EFRON_CASES)
def test_matches_statsmodels(
    ties: str, seed: int, n: int, beta: list[float], rounding: float | None
) -> None:
    time, event, x = _data(seed, n, beta, rounding)
    ours = cox_ph(time, event, x, ties=ties)
    model = PHReg(time, x, status=event, ties=ties)
    ref = model.fit(tol=1e-12)
    np.testing.assert_allclose(ours.coef, ref.params, rtol=RTOL)
    np.testing.assert_allclose(ours.se, ref.bse, rtol=RTOL)
    np.testing.assert_allclose(ours.loglik, ref.llf, rtol=1e-10)
    np.testing.assert_allclose(ours.loglik_null, model.loglike(np.zeros(x.shape[1])), rtol=1e-10)
    np.testing.assert_allclose(ours.score_statistic, _score_test(model), rtol=1e-9)
    np.testing.assert_allclose(ours.variance, ref.cov_params(), rtol=RTOL)
    wald = float(ref.params @ np.linalg.solve(ref.cov_params(), ref.params))
    np.testing.assert_allclose(ours.wald_statistic, wald, rtol=RTOL)
    assert ours.ties == ties


def test_stratified_matches_lifelines_and_statsmodels() -> None:
    time, event, x = _data(11, 600, [0.6, -0.2], 0.05)
    strata = np.random.default_rng(12).integers(0, 4, time.size)
    ours = cox_ph(time, event, x, strata=strata)
    ref = _lifelines(time, event, x, strata)
    np.testing.assert_allclose(ours.coef, ref.params_.to_numpy(), rtol=RTOL)
    np.testing.assert_allclose(ours.se, ref.standard_errors_.to_numpy(), rtol=RTOL)
    np.testing.assert_allclose(ours.loglik, ref.log_likelihood_, rtol=1e-10)
    for ties in ("efron", "breslow"):
        mine = cox_ph(time, event, x, ties=ties, strata=strata)
        model = PHReg(time, x, status=event, ties=ties, strata=strata)
        fit = model.fit(tol=1e-12)
        np.testing.assert_allclose(mine.coef, fit.params, rtol=RTOL)
        np.testing.assert_allclose(mine.se, fit.bse, rtol=RTOL)
        np.testing.assert_allclose(mine.loglik, fit.llf, rtol=1e-10)
        np.testing.assert_allclose(mine.score_statistic, _score_test(model), rtol=1e-9)
    unstratified = cox_ph(time, event, x)
    assert not np.allclose(unstratified.coef, ours.coef, rtol=1e-6)


def test_rossi_matches_r_printout() -> None:
    # R: coxph(Surv(week, arrest) ~ fin + age + race + wexp + mar + paro + prio, data = Rossi)
    rossi = load_rossi()
    names = ["fin", "age", "race", "wexp", "mar", "paro", "prio"]
    ours = cox_ph(rossi.week, rossi.arrest, rossi[names].to_numpy(), names=names)
    r_coef = [-0.37942, -0.05744, 0.31390, -0.14980, -0.43370, -0.08487, 0.09150]
    np.testing.assert_allclose(ours.coef, r_coef, atol=5e-6)
    np.testing.assert_allclose(
        ours.se, [0.1914, 0.0220, 0.3080, 0.2122, 0.3819, 0.1958, 0.0286], atol=5e-5
    )
    assert ours.lr_statistic == pytest.approx(33.27, abs=5e-3)
    assert ours.wald_statistic == pytest.approx(32.11, abs=5e-3)
    assert ours.score_statistic == pytest.approx(33.53, abs=5e-3)
    assert ours.names == tuple(names)


def test_lung_sex_matches_r_printout_and_logrank() -> None:
    # R: coxph(Surv(time, status) ~ sex, data = lung): coef -0.5310, se 0.1672, p 0.00149,
    #    LR 10.63, Wald 10.09, score (log-rank) 10.33
    lung = load_lung()
    ours = cox_ph(lung.time, lung.status, lung.sex)
    assert ours.coef[0] == pytest.approx(-0.5310, abs=5e-5)
    assert ours.se[0] == pytest.approx(0.1672, abs=5e-5)
    assert ours.p_value[0] == pytest.approx(0.00149, abs=5e-6)
    assert ours.lr_statistic == pytest.approx(10.63, abs=5e-3)
    assert ours.wald_statistic == pytest.approx(10.09, abs=5e-3)
    assert ours.score_statistic == pytest.approx(10.33, abs=5e-3)


def test_score_test_equals_logrank_without_ties() -> None:
    time, event, x = _data(13, 300, [0.4], None)
    ours = cox_ph(time, event, x)
    logrank = logrank_test(time, event, x[:, 0])
    np.testing.assert_allclose(ours.score_statistic, logrank.chi2, rtol=1e-10)
    np.testing.assert_allclose(ours.score_p_value, logrank.p_value, rtol=1e-8)


def test_single_event() -> None:
    time, _, x = _data(14, 50, [0.2, 0.1], None)
    event = np.zeros(50, dtype=int)
    event[np.argsort(time)[10]] = 1
    ours = cox_ph(time, event, x, ties="breslow")
    model = PHReg(time, x, status=event, ties="breslow")
    np.testing.assert_allclose(ours.loglik_null, model.loglike(np.zeros(2)), rtol=1e-12)
    np.testing.assert_allclose(ours.score_statistic, _score_test(model), rtol=1e-9)
    assert ours.n_events == 1


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_monotone_likelihood_when_one_arm_has_no_events(ties: str) -> None:
    rng = np.random.default_rng(15)
    arm = np.repeat([0.0, 1.0], 40)
    time = np.ceil(rng.exponential(5.0, 80))
    event = np.where(arm == 1.0, rng.integers(0, 2, 80), 0)
    ours = cox_ph(time, event, arm, ties=ties)
    assert ours.monotone_likelihood
    assert ours.coef[0] > 8 and ours.se[0] > 100 * ours.coef[0]
    model = PHReg(time, arm[:, None], status=event, ties=ties)
    np.testing.assert_allclose(ours.score_statistic, _score_test(model), rtol=1e-9)
    supremum = model.loglike(np.array([60.0]))
    assert ours.loglik <= supremum + 1e-9
    assert supremum - ours.loglik < 1e-6 * abs(supremum)
    assert np.isfinite(ours.lr_statistic) and ours.lr_p_value < 0.05


@pytest.mark.filterwarnings("ignore:Column\\(s\\) .* have very low variance")
@pytest.mark.parametrize("scale", [1e-6, 1e6, 1e9])
def test_huge_and_tiny_covariate_scales(scale: float) -> None:
    time, event, x = _data(16, 300, [0.5, 0.4], 0.1)
    base = cox_ph(time, event, x)
    scaled = x * np.array([1.0, scale])
    ours = cox_ph(time, event, scaled)
    np.testing.assert_allclose(ours.coef * [1.0, scale], base.coef, rtol=1e-9)
    np.testing.assert_allclose(ours.se * [1.0, scale], base.se, rtol=1e-9)
    np.testing.assert_allclose(ours.loglik, base.loglik, rtol=1e-12)
    ref = _lifelines(time, event, scaled)
    np.testing.assert_allclose(ours.coef, ref.params_.to_numpy(), rtol=RTOL)
    np.testing.assert_allclose(ours.se, ref.standard_errors_.to_numpy(), rtol=RTOL)


def test_large_sample_recovers_truth_quickly() -> None:
    time, event, x = _data(17, 200_000, [0.5, -0.25], 0.001)
    ours = cox_ph(time, event, x)
    np.testing.assert_allclose(ours.coef, [0.5, -0.25], atol=0.03)
    assert ours.converged and ours.iterations <= 10
    z = (ours.coef - np.array([0.5, -0.25])) / ours.se
    assert np.all(np.abs(z) < stats.norm.ppf(0.9995))


@pytest.mark.parametrize(
    ("time", "event", "x", "match"),
    [
        ([1.0, 2.0, 3.0], [0, 0, 0], [0.0, 1.0, 0.0], "no events"),
        ([1.0, 2.0, 3.0], [1, 0, 1], [1.0, 1.0, 1.0], "no variation"),
        ([1.0, 2.0], [1, 0, 1], [0.0, 1.0, 0.0], "mismatched"),
        ([1.0, -2.0, 3.0], [1, 0, 1], [0.0, 1.0, 0.0], "negative"),
        ([1.0, np.nan, 3.0], [1, 0, 1], [0.0, 1.0, 0.0], "non-finite"),
        ([1.0, 2.0, 3.0], [1, 0, 1], [0.0, np.inf, 0.0], "non-finite"),
        ([1.0, 2.0, 3.0], [1, 0, 3], [0.0, 1.0, 0.0], "only 0"),
        ([1.0, 2.0, 3.0], [1, 0, 1], [[0.0, 0.0], [1.0, 2.0], [0.0, 0.0]], "collinear"),
    ],
)
def test_rejects_bad_input(time: list[float], event: list[int], x: object, match: str) -> None:
    with pytest.raises(AnalysisError, match=match):
        cox_ph(time, event, x)


def test_rejects_covariate_constant_within_strata_and_bad_options() -> None:
    time = [1.0, 2.0, 3.0, 4.0]
    with pytest.raises(AnalysisError, match="singular"):
        cox_ph(time, [1, 1, 1, 1], [0.0, 0.0, 1.0, 1.0], strata=[0, 0, 1, 1])
    with pytest.raises(AnalysisError, match="ties"):
        cox_ph(time, [1, 1, 1, 1], [0.0, 1.0, 0.0, 1.0], ties="exact")
    with pytest.raises(AnalysisError, match="names"):
        cox_ph(time, [1, 1, 1, 1], [0.0, 1.0, 0.0, 1.0], names=["a", "b"])


def test_to_dict_is_strict_json() -> None:
    time, event, x = _data(18, 80, [0.5], 0.5)
    payload = cox_ph(time, event, x, names=["arm"]).to_dict()
    assert payload["names"] == ["arm"]
    assert isinstance(payload["coef"][0], float)
    assert json.loads(json.dumps(payload, allow_nan=False)) == payload


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 100_000), st.floats(-1e4, 1e4), st.sampled_from(["efron", "breslow"]))
def test_invariant_to_covariate_shift_and_row_order(seed: int, shift: float, ties: str) -> None:
    time, event, x = _data(seed, 60, [0.5, 0.3], 0.2)
    if event.sum() == 0 or np.ptp(x[:, 0]) == 0:
        return
    base = cox_ph(time, event, x, ties=ties)
    order = np.random.default_rng(seed).permutation(time.size)
    moved = cox_ph(time[order], event[order], x[order] + shift, ties=ties)
    np.testing.assert_allclose(moved.coef, base.coef, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(moved.se, base.se, rtol=1e-6)
    np.testing.assert_allclose(moved.loglik, base.loglik, rtol=1e-9)
