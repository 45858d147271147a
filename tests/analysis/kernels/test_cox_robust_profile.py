"""Robust (sandwich) variance and profile-likelihood limits of the Cox kernel.

References here are Python ones (statsmodels PHReg's likelihood, score residuals sum to the
score, invariances); the comparison with R's coxph(robust = TRUE, cluster) and profiles
computed in R is in tests/validation/test_cox_vs_r.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats
from statsmodels.duration.hazard_regression import PHReg

from stalwart.analysis.kernels._cox_likelihood import PartialLikelihood, cox_design
from stalwart.analysis.kernels.cox import cox_ph
from stalwart.errors import AnalysisError


def _data(
    seed: int, n: int, beta: list[float], rounding: float | None = None
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


@pytest.mark.parametrize("ties", ["efron", "breslow"])
@pytest.mark.parametrize("stratified", [False, True])
def test_score_residuals_sum_to_the_score(ties: str, stratified: bool) -> None:
    time, event, x = _data(1, 300, [0.5, -0.3, 0.2], rounding=0.2)
    strata = np.random.default_rng(2).integers(0, 3, time.size) if stratified else None
    design = cox_design(time, event, x, ties, strata, 0.05, None)
    model = PartialLikelihood(design.strata, design.p, design.n)
    for beta in (np.zeros(3), np.array([0.4, -0.2, 0.7])):
        resid = model.score_residuals(beta)
        np.testing.assert_allclose(resid.sum(axis=0), model(beta)[1], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_singleton_clusters_equal_plain_robust(ties: str) -> None:
    time, event, x = _data(3, 250, [0.6, -0.4], rounding=0.1)
    robust = cox_ph(time, event, x, ties=ties, robust=True)
    clustered = cox_ph(time, event, x, ties=ties, cluster=np.arange(time.size)[::-1])
    np.testing.assert_allclose(clustered.se, robust.se, rtol=1e-12)
    np.testing.assert_allclose(
        clustered.robust_score_statistic, robust.robust_score_statistic, rtol=1e-12
    )
    assert robust.robust and robust.n_clusters == time.size
    plain = cox_ph(time, event, x, ties=ties)
    np.testing.assert_allclose(robust.naive_se, plain.se, rtol=1e-12)
    np.testing.assert_allclose(robust.coef, plain.coef, rtol=1e-12)
    assert not plain.robust and np.isnan(plain.robust_score_statistic)
    assert not np.allclose(robust.se, plain.se, rtol=1e-3)


def test_robust_variance_is_invariant_to_row_order_and_scale() -> None:
    time, event, x = _data(4, 300, [0.5, 0.3], rounding=0.25)
    cluster = np.random.default_rng(5).integers(0, 60, time.size)
    base = cox_ph(time, event, x, cluster=cluster)
    order = np.random.default_rng(6).permutation(time.size)
    moved = cox_ph(time[order], event[order], x[order] * [1.0, 1e4] + 7.0, cluster=cluster[order])
    np.testing.assert_allclose(moved.se * [1.0, 1e4], base.se, rtol=1e-9)
    np.testing.assert_allclose(moved.wald_statistic, base.wald_statistic, rtol=1e-9)
    assert base.n_clusters == 60


def test_clustered_breslow_matches_statsmodels_robust_covariance() -> None:
    # statsmodels PHReg.fit(groups=...) is the Lin-Wei sandwich with Breslow score residuals
    time, event, x = _data(7, 400, [0.4, -0.5], rounding=0.1)
    cluster = np.random.default_rng(8).integers(0, 80, time.size)
    ours = cox_ph(time, event, x, ties="breslow", cluster=cluster)
    ref = PHReg(time, x, status=event, ties="breslow").fit(groups=cluster, tol=1e-12)
    np.testing.assert_allclose(ours.se, ref.bse, rtol=1e-6)


def _profile_loglik(
    time: np.ndarray, event: np.ndarray, x: np.ndarray, j: int, b: float, ties: str
) -> float:
    """Profile log partial likelihood by statsmodels: the others fitted with x_j b as offset."""
    offset = x[:, j] * b
    others = np.delete(x, j, axis=1)
    if others.shape[1] == 0:
        return float(PHReg(time, x[:, [j]], status=event, ties=ties).loglike(np.array([b])))
    model = PHReg(time, others, status=event, ties=ties, offset=offset)
    return float(model.loglike(model.fit(tol=1e-13).params))


@pytest.mark.parametrize("ties", ["efron", "breslow"])
@pytest.mark.parametrize("beta", [[0.7], [0.6, -0.4]])
def test_profile_limits_sit_on_the_chi_square_threshold(ties: str, beta: list[float]) -> None:
    time, event, x = _data(9, 200, beta, rounding=0.1)
    ours = cox_ph(time, event, x, ties=ties, profile_ci=True)  # type: ignore[arg-type]
    assert ours.profile_ci_low is not None and ours.profile_ci_high is not None
    critical = stats.chi2.ppf(0.95, 1)
    for j in range(x.shape[1]):
        for limit in (ours.profile_ci_low[j], ours.profile_ci_high[j]):
            drop = 2.0 * (ours.loglik - _profile_loglik(time, event, x, j, np.log(limit), ties))
            assert drop == pytest.approx(critical, rel=1e-7)
    # asymmetric around the estimate, close to Wald in a moderate sample
    np.testing.assert_allclose(ours.profile_ci_low, ours.ci_low, rtol=0.05)
    np.testing.assert_allclose(ours.profile_ci_high, ours.ci_high, rtol=0.05)


def test_monotone_likelihood_has_no_upper_profile_limit() -> None:
    rng = np.random.default_rng(10)
    arm = np.repeat([0.0, 1.0], 40)
    time = np.ceil(rng.exponential(5.0, 80))
    event = np.where(arm == 1.0, rng.integers(0, 2, 80), 0)
    ours = cox_ph(time, event, arm, profile_ci=True)
    assert ours.monotone_likelihood
    assert ours.profile_ci_low is not None and ours.profile_ci_high is not None
    assert np.isinf(ours.profile_ci_high[0]) and 1.0 < ours.profile_ci_low[0] < 1e3
    drop = 2.0 * (
        ours.loglik
        - _profile_loglik(time, event, arm[:, None], 0, np.log(ours.profile_ci_low[0]), "efron")
    )
    assert drop == pytest.approx(stats.chi2.ppf(0.95, 1), rel=1e-6)
    payload = ours.to_dict()
    assert payload["profile_ci_high"] == [None]
    assert json.loads(json.dumps(payload, allow_nan=False)) == payload


def test_no_profile_unless_asked() -> None:
    time, event, x = _data(11, 100, [0.5])
    ours = cox_ph(time, event, x)
    assert ours.profile_ci_low is None and ours.profile_ci_high is None
    assert ours.to_dict()["profile_ci_low"] is None


@pytest.mark.parametrize(
    ("cluster", "match"),
    [
        (np.arange(5), "cluster must be one-dimensional with 6 values"),
        (np.array([0.0, 1.0, np.nan, 1.0, 2.0, 2.0]), "cluster contains missing"),
        (np.array(["a", None, "b", "b", "c", "c"], dtype=object), "cluster contains missing"),
    ],
)
def test_rejects_bad_cluster(cluster: np.ndarray, match: str) -> None:
    with pytest.raises(AnalysisError, match=match):
        cox_ph([1, 2, 3, 4, 5, 6], [1, 0, 1, 1, 0, 1], [0, 1, 0, 1, 0, 1], cluster=cluster)
