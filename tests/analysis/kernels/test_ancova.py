"""ANCOVA against statsmodels OLS (formula ``y ~ C(arm) + baseline``) and its predictions."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from hypothesis import given, settings
from hypothesis import strategies as st

from stalwart.analysis.kernels.ancova import ancova
from stalwart.errors import AnalysisError

RTOL = 1e-8


def _trial(seed: int, n: int, arms: tuple[str, ...] = ("ctl", "low", "high")) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    arm = rng.choice(np.array(arms), size=n)
    baseline = rng.normal(50.0, 10.0, n)
    effect = {"ctl": 0.0, "low": -2.0, "high": -5.0, "b": 1.0}
    y = 5.0 + 0.8 * baseline + np.array([effect.get(a, 0.0) for a in arm]) + rng.normal(0, 6, n)
    return pd.DataFrame({"y": y, "arm": arm, "baseline": baseline, "age": rng.normal(60, 8, n)})


def _ls_means(fit: Any, data: pd.DataFrame, levels: list[str], extra: list[str]) -> pd.DataFrame:
    grid = pd.DataFrame({"arm": levels, "baseline": data["baseline"].mean()})
    for name in extra:
        grid[name] = data[name].mean()
    return fit.get_prediction(grid).summary_frame()


@pytest.mark.parametrize(("seed", "n"), [(1, 60), (2, 301), (3, 12)])
def test_matches_statsmodels_with_control_reference(seed: int, n: int) -> None:
    data = _trial(seed, n)
    ours = ancova(data.y, data.arm, data.baseline, "high", "ctl")
    fit = smf.ols("y ~ C(arm, Treatment(reference='ctl')) + baseline", data=data).fit()
    term = "C(arm, Treatment(reference='ctl'))[T.high]"
    np.testing.assert_allclose(ours.difference, fit.params[term], rtol=RTOL)
    np.testing.assert_allclose(ours.se, fit.bse[term], rtol=RTOL)
    np.testing.assert_allclose(ours.statistic, fit.tvalues[term], rtol=RTOL)
    np.testing.assert_allclose(ours.p_value, fit.pvalues[term], rtol=1e-7)
    np.testing.assert_allclose([ours.ci_low, ours.ci_high], fit.conf_int().loc[term], rtol=RTOL)
    assert ours.df == fit.df_resid
    np.testing.assert_allclose(ours.baseline_coef, fit.params["baseline"], rtol=RTOL)
    np.testing.assert_allclose(ours.baseline_se, fit.bse["baseline"], rtol=RTOL)
    np.testing.assert_allclose(ours.residual_sd, np.sqrt(fit.scale), rtol=RTOL)
    levels = list(ours.levels)
    assert levels == sorted(set(data.arm))
    frame = _ls_means(fit, data, levels, [])
    np.testing.assert_allclose(ours.adjusted_means, frame["mean"], rtol=RTOL)
    np.testing.assert_allclose(ours.adjusted_means_se, frame["mean_se"], rtol=RTOL)
    counts = data.arm.value_counts()
    assert ours.n_per_level.tolist() == [counts[lev] for lev in levels]
    assert ours.n == n


def test_contrast_between_non_reference_arms_and_covariates() -> None:
    data = _trial(4, 150)
    ours = ancova(data.y, data.arm, data.baseline, "low", "high", alpha=0.1, covariates=data.age)
    fit = smf.ols("y ~ C(arm) + baseline + age", data=data).fit()
    names = list(fit.params.index)
    contrast = np.zeros(len(names))
    contrast[names.index("C(arm)[T.low]")] = 1.0
    contrast[names.index("C(arm)[T.high]")] = -1.0
    ref = fit.t_test(contrast)
    np.testing.assert_allclose(ours.difference, ref.effect[0], rtol=RTOL)
    np.testing.assert_allclose(ours.se, ref.sd[0, 0], rtol=RTOL)
    np.testing.assert_allclose(ours.p_value, ref.pvalue, rtol=1e-7)
    np.testing.assert_allclose([ours.ci_low, ours.ci_high], ref.conf_int(alpha=0.1)[0], rtol=RTOL)
    frame = _ls_means(fit, data, list(ours.levels), ["age"])
    np.testing.assert_allclose(ours.adjusted_means, frame["mean"], rtol=RTOL)
    np.testing.assert_allclose(ours.adjusted_means_se, frame["mean_se"], rtol=RTOL)


def test_two_dimensional_covariates_and_integer_arms() -> None:
    rng = np.random.default_rng(9)
    n = 80
    arm = rng.integers(0, 2, n)
    baseline = rng.normal(size=n)
    cov = rng.normal(size=(n, 2))
    y = 1.0 + 0.5 * arm + baseline + cov @ np.array([0.3, -0.2]) + rng.normal(size=n)
    ours = ancova(y, arm, baseline, 1, 0, covariates=cov)
    data = pd.DataFrame({"y": y, "arm": arm, "b": baseline, "c1": cov[:, 0], "c2": cov[:, 1]})
    fit = smf.ols("y ~ C(arm) + b + c1 + c2", data=data).fit()
    np.testing.assert_allclose(ours.difference, fit.params["C(arm)[T.1]"], rtol=RTOL)
    np.testing.assert_allclose(ours.se, fit.bse["C(arm)[T.1]"], rtol=RTOL)
    assert ours.levels == (0, 1)
    assert ours.df == n - 5
    assert json.dumps(ours.to_dict(), allow_nan=False)


def test_larger_effect_reaches_significance() -> None:
    data = _trial(5, 400)
    result = ancova(data.y, data.arm, data.baseline, "high", "ctl")
    assert result.ci_low < -5.0 < result.ci_high
    assert result.p_value < 1e-4


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"treatment_level": "nope"}, "does not occur"),
        ({"treatment_level": "ctl"}, "must differ"),
        ({"baseline": np.full(30, 2.0)}, "rank-deficient"),
        ({"y": np.r_[np.nan, np.zeros(29)]}, "non-finite"),
        ({"baseline": np.zeros(29)}, "baseline has 29"),
        ({"group": np.array(["ctl", None] * 15, dtype=object)}, "missing"),
        ({"alpha": 0.0}, "alpha"),
        ({"covariates": np.zeros((10, 2))}, "covariates must have shape"),
    ],
)
def test_rejects_bad_input(kwargs: dict[str, object], match: str) -> None:
    data = _trial(6, 30, arms=("ctl", "b"))
    args: dict[str, object] = {
        "y": data.y.to_numpy(),
        "group": data.arm.to_numpy(),
        "baseline": data.baseline.to_numpy(),
        "treatment_level": "b",
        "control_level": "ctl",
    }
    args.update(kwargs)
    with pytest.raises(AnalysisError, match=match):
        ancova(**args)


def test_too_few_observations() -> None:
    with pytest.raises(AnalysisError, match="more observations than parameters"):
        ancova([1.0, 2.0, 3.0], ["a", "b", "b"], [0.5, 0.1, 0.9], "b", "a")


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.floats(-100, 100), st.floats(0.01, 100))
def test_invariant_to_affine_baseline_transform(seed: int, shift: float, factor: float) -> None:
    data = _trial(seed, 40, arms=("ctl", "b"))
    if data.arm.nunique() < 2:
        return
    a = ancova(data.y, data.arm, data.baseline, "b", "ctl")
    b = ancova(data.y, data.arm, data.baseline * factor + shift, "b", "ctl")
    assert b.difference == pytest.approx(a.difference, rel=1e-7, abs=1e-9)
    assert b.se == pytest.approx(a.se, rel=1e-7)
    np.testing.assert_allclose(b.adjusted_means, a.adjusted_means, rtol=1e-7)
