"""Censored log10 HIV RNA: Tobit against a direct scipy optimisation, substitution rules, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import optimize, stats

from stalwart.analysis.kernels.censored import log10_with_rule, substitution_by_arm, tobit_by_arm
from stalwart.errors import AnalysisError


def _data(seed: int, n: int = 200) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    rng = np.random.default_rng(seed)
    arm = rng.choice(np.array(["NOTHER", "IL2", "IL2ART"]), n)
    mean = np.select([arm == "NOTHER", arm == "IL2"], [4.1, 4.3], 2.0)
    rna = 10.0 ** (mean + 0.8 * rng.standard_normal(n))
    below = rna < 50.0
    return np.where(below, np.nan, rna), below, 50.0, arm


def test_tobit_maximises_the_censored_likelihood() -> None:
    rna, below, limit, arm = _data(1)
    ours = tobit_by_arm(rna, below, limit, arm, reference="NOTHER")
    y = np.where(below, np.log10(limit), np.log10(np.where(below, 1.0, rna)))
    design = np.column_stack([np.ones(y.size), arm == "IL2", arm == "IL2ART"]).astype(float)

    def negloglik(theta: np.ndarray) -> float:
        mu, sigma = design @ theta[:3], np.exp(theta[3])
        return -float(
            np.sum(
                np.where(
                    below,
                    stats.norm.logcdf(y, mu, sigma),
                    stats.norm.logpdf(y, mu, sigma),
                )
            )
        )

    ref = optimize.minimize(
        negloglik, np.array([3.0, 0.0, 0.0, 0.0]), method="BFGS", options={"gtol": 1e-9}
    )
    np.testing.assert_allclose(ours.difference, ref.x[1:3], atol=1e-5)
    np.testing.assert_allclose(ours.mean[0], ref.x[0], atol=1e-5)
    np.testing.assert_allclose(np.log(ours.sigma), ref.x[3], atol=1e-5)
    assert ours.loglik == pytest.approx(-ref.fun, abs=1e-8)
    assert ours.arms == ("NOTHER", "IL2", "IL2ART") and ours.compared == ("IL2", "IL2ART")
    assert ours.n_below.tolist() == [int(below[arm == a].sum()) for a in ours.arms]


def test_without_censoring_tobit_is_least_squares() -> None:
    rng = np.random.default_rng(2)
    arm = np.repeat(["A", "B"], 30)
    rna = 10.0 ** (4.0 + 0.5 * (arm == "B") + 0.6 * rng.standard_normal(60))
    below = np.zeros(60, bool)
    tobit = tobit_by_arm(rna, below, 1.0, arm)
    ols = substitution_by_arm(rna, below, 1.0, arm)
    np.testing.assert_allclose(tobit.mean, ols.mean, rtol=1e-10)
    # ML scale divides by n, lm's by n - k
    assert tobit.sigma == pytest.approx(ols.sigma * np.sqrt(58 / 60), rel=1e-9)
    assert tobit.df == np.inf and ols.df == 58


def test_substitution_rules() -> None:
    values = log10_with_rule([1000.0, np.nan, np.nan], [False, True, True], [50.0, 50.0, 400.0])
    np.testing.assert_allclose(values, [3.0, np.log10(25.0), np.log10(200.0)], rtol=1e-14)
    limit = log10_with_rule([1000.0, np.nan], [False, True], 50.0, rule="limit")
    np.testing.assert_allclose(limit, [3.0, np.log10(50.0)], rtol=1e-14)
    rna, below, lim, arm = _data(3)
    half = substitution_by_arm(rna, below, lim, arm, reference="NOTHER")
    at_limit = substitution_by_arm(rna, below, lim, arm, reference="NOTHER", rule="limit")
    # the ART-like arm has most results below the limit: its mean moves by log10(2) x share
    share = half.n_below / half.n
    np.testing.assert_allclose(at_limit.mean - half.mean, np.log10(2) * share, atol=1e-12)
    assert json.loads(json.dumps(half.to_dict(), allow_nan=False))["log_sigma_se"] is None


@pytest.mark.parametrize(
    ("rna", "below", "limit", "arm", "match"),
    [
        ([100.0, np.nan, 200.0], [False, True, False], 50.0, ["A", "A", "A"], "two arms"),
        ([100.0, np.nan, np.nan], [False, True, True], 50.0, ["A", "B", "B"], "every result"),
        ([10.0, 80.0, 90.0], [False, False, False], 50.0, ["A", "B", "B"], "below its assay"),
        ([100.0, 80.0], [False, 2], 50.0, ["A", "B"], "True/False"),
        ([100.0, 80.0], [False, False], -5.0, ["A", "B"], "positive"),
        ([100.0, np.nan], [False, False], 50.0, ["A", "B"], "finite and positive"),
        ([100.0, 80.0], [False, False], 50.0, ["A"], "one label per result"),
        ([100.0, 80.0], [False, False], 50.0, ["A", None], "missing"),
    ],
)
def test_rejects_bad_input(
    rna: list[float], below: list[bool], limit: float, arm: list[object], match: str
) -> None:
    with pytest.raises(AnalysisError, match=match):
        tobit_by_arm(rna, below, limit, arm)


def test_rejects_bad_options() -> None:
    rna, below, limit, arm = _data(4, 40)
    with pytest.raises(AnalysisError, match="reference arm"):
        tobit_by_arm(rna, below, limit, arm, reference="PLACEBO")
    with pytest.raises(AnalysisError, match="rule"):
        substitution_by_arm(rna, below, limit, arm, rule="third")  # type: ignore[arg-type]
    with pytest.raises(AnalysisError, match="alpha"):
        substitution_by_arm(rna, below, limit, arm, alpha=1.5)
