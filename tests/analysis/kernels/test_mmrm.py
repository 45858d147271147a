"""MMRM kernel: special cases with an independent answer (OLS, statsmodels MixedLM), invariances
and the errors of bad input. The comparison with R's nlme and lme4 is in
tests/validation/test_mmrm_vs_r.py."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from stalwart.analysis.kernels.mmrm import mmrm
from stalwart.analysis.kernels.mmrm_reml import (
    Reml,
    compound_symmetry_map,
    make_grid,
    maximize,
    unstructured_map,
)
from stalwart.errors import AnalysisError
from validation.mmrm_cases import simulate


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return simulate(11, 90, visits=4)


def _fit(d: pd.DataFrame, **kw):
    return mmrm(d["y"], d["id"], d["visit"], d["arm"], d["base"], control_level="A", **kw)


@pytest.mark.parametrize("covariance", ["unstructured", "compound_symmetry"])
def test_one_visit_is_ancova_by_ols(data: pd.DataFrame, covariance: str) -> None:
    one = data[data["visit"] == 2]
    res = _fit(one, covariance=covariance)
    ols = smf.ols("y ~ C(arm, Treatment('A')) + base", data=one).fit()
    term = "C(arm, Treatment('A'))[T.C]"
    (c,) = [x for x in res.contrasts if x.treatment_level == "C"]
    np.testing.assert_allclose(c.difference[0], ols.params[term], rtol=1e-9)
    np.testing.assert_allclose(c.se[0], ols.bse[term], rtol=1e-7)
    np.testing.assert_allclose(c.p_value[0], ols.pvalues[term], rtol=1e-6)
    assert c.df[0] == ols.df_resid
    np.testing.assert_allclose(res.covariance[0, 0], ols.scale, rtol=1e-7)


def test_compound_symmetry_fixed_effects_match_statsmodels_mixedlm(data: pd.DataFrame) -> None:
    d = data.assign(cb=data["base"] - data["base"].mean(), visitf=data["visit"].astype(str))
    res = _fit(d, covariance="compound_symmetry", baseline_term="common")
    ml = smf.mixedlm("y ~ 0 + C(arm):visitf + cb", d, groups=d["id"]).fit(reml=True)
    for i, arm in enumerate(res.levels):
        for j, visit in enumerate(res.visits):
            name = f"C(arm)[{arm}]:visitf[{visit}]"
            np.testing.assert_allclose(res.ls_means[i, j], ml.params[name], rtol=1e-5)
    np.testing.assert_allclose(res.coef[-1], ml.params["cb"], rtol=1e-4)


def test_rows_in_any_order_and_rescaled_outcome(data: pd.DataFrame) -> None:
    res = _fit(data)
    shuffled = data.sample(frac=1.0, random_state=3)
    again = _fit(shuffled)
    np.testing.assert_allclose(again.coef, res.coef, rtol=1e-7)
    np.testing.assert_allclose(again.log_likelihood, res.log_likelihood, rtol=1e-10)
    scaled = _fit(data.assign(y=data["y"] * 1000.0))
    np.testing.assert_allclose(scaled.coef, res.coef * 1000.0, rtol=1e-6)
    n, p = res.n_observations, res.coef.size
    np.testing.assert_allclose(
        scaled.log_likelihood, res.log_likelihood - (n - p) * math.log(1000.0), rtol=1e-9
    )


def test_result_shapes_contrasts_and_json(data: pd.DataFrame) -> None:
    res = _fit(data, df_method="satterthwaite")
    assert res.levels == ("A", "B", "C") and res.visits == (1, 2, 3, 4)
    assert res.ls_means.shape == (3, 4) and res.covariance.shape == (4, 4)
    assert [c.treatment_level for c in res.contrasts] == ["B", "C"]
    c = res.contrast("C", "B")
    np.testing.assert_allclose(c.difference, res.ls_means[2] - res.ls_means[1], rtol=1e-12)
    assert np.all(c.df > 0) and np.all(c.df < res.df_residual)
    assert np.all(c.ci_low < c.difference) and np.all(c.difference < c.ci_high)
    np.testing.assert_allclose(np.diag(res.correlation), 1.0)
    assert res.n_obs.sum() == res.n_observations == len(data)
    json.dumps(res.to_dict(), allow_nan=False)


def test_baseline_options(data: pd.DataFrame) -> None:
    by_visit = _fit(data)
    common = _fit(data, baseline_term="common")
    none = mmrm(data["y"], data["id"], data["visit"], data["arm"])
    assert by_visit.coef.size == 12 + 4 and common.coef.size == 12 + 1 and none.coef.size == 12
    assert none.baseline_term == "none" and math.isnan(none.baseline_mean)
    np.testing.assert_allclose(by_visit.baseline_mean, data["base"].mean())


def test_errors_say_what_is_wrong(data: pd.DataFrame) -> None:
    with pytest.raises(AnalysisError, match="two rows at visit"):
        _fit(pd.concat([data, data.iloc[:1]]))
    with pytest.raises(AnalysisError, match="has no observations at visit 4"):
        _fit(data[~((data["arm"] == "B") & (data["visit"] == 4))])
    with pytest.raises(AnalysisError, match="changes within subject"):
        _fit(data.assign(arm=np.where(data.index == 0, "C", data["arm"])))
    with pytest.raises(AnalysisError, match="non-finite"):
        _fit(data.assign(y=np.where(data.index == 0, np.nan, data["y"])))
    with pytest.raises(AnalysisError, match="covariance must be"):
        _fit(data, covariance="toeplitz")
    with pytest.raises(AnalysisError, match="control_level 'Z'"):
        mmrm(data["y"], data["id"], data["visit"], data["arm"], control_level="Z")
    at4 = data[data["visit"] == 4]
    keep = at4.groupby("arm").head(1).index  # one per arm: 3 values, 4 fixed effects at visit 4
    with pytest.raises(AnalysisError, match="visit 4 has 3 observations, too few"):
        _fit(data[(data["visit"] != 4) | data.index.isin(keep)])


def test_perfectly_correlated_visits_do_not_converge(data: pd.DataFrame) -> None:
    wide = data.pivot(index="id", columns="visit", values="y").dropna()
    d = data[data["id"].isin(wide.index)].copy()
    first = d[d["visit"] == 1].set_index("id")["y"]
    d.loc[d["visit"] == 2, "y"] = d.loc[d["visit"] == 2, "id"].map(first).to_numpy() + 5.0
    with pytest.raises(AnalysisError, match="did not converge"):
        _fit(d)


def test_a_hessian_that_is_not_finite_on_the_way_is_no_convergence_not_a_crash(
    data: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On some CPUs (BLAS rounding) the singular case above meets a NaN Hessian inside SciPy's
    # trust region, which raised ValueError from scipy.linalg.norm. Force that path everywhere.
    from stalwart.analysis.kernels import mmrm_reml

    wide = data.pivot(index="id", columns="visit", values="y").dropna()
    d = data[data["id"].isin(wide.index)].copy()
    first = d[d["visit"] == 1].set_index("id")["y"]
    d.loc[d["visit"] == 2, "y"] = d.loc[d["visit"] == 2, "id"].map(first).to_numpy() + 5.0

    def nan_hessian(self: object, theta: np.ndarray) -> np.ndarray:
        return np.full((theta.size, theta.size), math.nan)

    monkeypatch.setattr(mmrm_reml._Objective, "hessian", nan_hessian)
    with pytest.raises(AnalysisError, match="did not converge"):
        _fit(d)


def _reml(d: pd.DataFrame, t: int) -> Reml:
    subject = d["id"].to_numpy() - 1
    visit = d["visit"].to_numpy() - 1
    x = np.column_stack([np.eye(t)[visit], d["base"].to_numpy() / 500.0])
    grid = make_grid(subject, visit, d["y"].to_numpy() / 100.0, x, int(subject.max()) + 1, t)
    return Reml(grid, len(d), x.shape[1], t)


@pytest.mark.parametrize("structure", ["unstructured", "compound_symmetry"])
def test_newton_fit_has_the_hessian_and_coef_cov_gradient_of_finite_differences(
    structure: str,
) -> None:
    """The analytic gradient, Hessian and d(X'V^-1X)^-1/dtheta against central differences of
    the likelihood value and of (X'V^-1X)^-1, at the maximum Newton's method reaches."""
    d = simulate(5, 80, visits=4, p_missing=0.3)
    reml = _reml(d, 4)
    cmap = unstructured_map(4) if structure == "unstructured" else compound_symmetry_map(4)
    fit = maximize(reml, cmap, cmap.start(np.eye(4) + 0.3))
    assert fit.converged and fit.iterations <= 10
    assert np.max(np.abs(fit.gradient)) < 1e-7

    def value(theta: np.ndarray) -> float:
        return -reml.value(cmap.sigma(theta)[0])

    k, h = fit.theta.size, 1e-4
    eye = np.eye(k) * h
    fd = np.array(
        [
            [
                value(fit.theta + eye[i] + eye[j])
                - value(fit.theta + eye[i] - eye[j])
                - value(fit.theta - eye[i] + eye[j])
                + value(fit.theta - eye[i] - eye[j])
                for j in range(k)
            ]
            for i in range(k)
        ]
    ) / (4 * h * h)
    np.testing.assert_allclose(fit.hessian, fd, rtol=1e-5, atol=1e-5 * np.abs(fd).max())
    cov, d_cov = cmap.sigma(fit.theta)
    grad = reml.coef_cov_gradient(cov, d_cov)
    assert grad is not None
    step = 1e-6
    for j in range(k):
        up = reml.beta(cmap.sigma(fit.theta + np.eye(k)[j] * step)[0])[1]
        down = reml.beta(cmap.sigma(fit.theta - np.eye(k)[j] * step)[0])[1]
        np.testing.assert_allclose(
            grad[j], (up - down) / (2 * step), rtol=1e-5, atol=1e-6 * np.abs(grad).max()
        )


def test_visit_patterns_in_any_order_give_the_same_likelihood() -> None:
    """Subjects are regrouped by visit pattern; the likelihood is a sum over subjects."""
    d = simulate(8, 60, visits=5, p_missing=0.35)
    reml = _reml(d, 5)
    ids = d["id"].unique()
    relabel = dict(zip(ids, np.random.default_rng(1).permutation(ids), strict=True))
    again = _reml(d.assign(id=d["id"].map(relabel)).sort_values(["id", "visit"]), 5)
    cov = unstructured_map(5).sigma(np.random.default_rng(2).normal(size=15) * 0.2)[0]
    np.testing.assert_allclose(again.value(cov), reml.value(cov), rtol=1e-12)
    assert reml.value(-np.eye(5)) == -math.inf
