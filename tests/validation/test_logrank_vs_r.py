"""Log-rank test against R ``survival::survdiff`` (k groups, stratified, edge cases), one R call."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stalwart.analysis.kernels.logrank import logrank_test
from stalwart.errors import AnalysisError
from validation.rscript import require_r_package, run_r

RTOL = 1e-10


def _simulated(
    seed: int, n: int, k: int, rounding: float | None, n_strata: int
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    group = rng.integers(0, k, n)
    stratum = rng.integers(0, n_strata, n)
    event_time = rng.exponential(10.0 / (1.0 + 0.4 * group + 0.3 * stratum))
    censor = rng.uniform(0, 25, n)
    time = np.minimum(event_time, censor)
    if rounding is not None:
        time = np.ceil(time / rounding) * rounding
    return {
        "time": time,
        "event": (event_time <= censor).astype(int),
        "group": np.array(["NOTHER", "IL2", "IL2ART", "X"])[group],
        "stratum": stratum,
    }


def _cases() -> dict[str, dict[str, np.ndarray]]:
    cases = {
        "two_groups": _simulated(1, 150, 2, None, 1),
        "three_groups_ties": _simulated(2, 400, 3, 1.0, 1),
        "four_groups_heavy_ties": _simulated(3, 80, 4, 4.0, 1),
        "stratified_two": _simulated(4, 300, 2, 1.0, 3),
        "stratified_three": _simulated(5, 500, 3, 0.5, 4),
    }
    # no events in one arm (STALWART-like 12 vs 0), equal follow-up with early events
    n1, n0 = 176, 91
    time = np.r_[np.linspace(10, 200, 12), np.full(n1 - 12, 224.0), np.full(n0, 224.0)]
    event = np.r_[np.ones(12), np.zeros(n1 - 12), np.zeros(n0)].astype(int)
    group = np.r_[np.full(n1, "IL2"), np.full(n0, "NOTHER")]
    cases["no_events_in_one_arm"] = {
        "time": time,
        "event": event,
        "group": group,
        "stratum": np.zeros(time.size, int),
    }
    cases["stalwart_12_vs_1"] = {
        "time": np.r_[
            np.linspace(10, 200, 12), np.full(n1 - 12, 224.0), [100.0], np.full(90, 224.0)
        ],
        "event": np.r_[np.ones(12), np.zeros(n1 - 12), [1], np.zeros(90)].astype(int),
        "group": group,
        "stratum": np.zeros(n1 + n0, int),
    }
    # a group whose subjects are all censored before the first event: zero expected, dropped
    cases["zero_expected_group"] = {
        "time": np.array([5, 6, 7, 8, 9, 10, 11, 12, 1, 1.5, 2, 3.0]),
        "event": np.array([1, 0, 1, 1, 0, 1, 1, 0, 0, 0, 0, 0]),
        "group": np.array(["A"] * 4 + ["B"] * 4 + ["C"] * 4),
        "stratum": np.zeros(12, int),
    }
    # single event; and a stratum in which one group is absent
    cases["single_event"] = {
        "time": np.arange(1.0, 11.0),
        "event": np.r_[np.zeros(6), [1], np.zeros(3)].astype(int),
        "group": np.array(["A", "B"] * 5),
        "stratum": np.zeros(10, int),
    }
    uneven = _simulated(6, 120, 2, 1.0, 2)
    uneven["group"] = np.where(uneven["stratum"] == 1, "IL2", uneven["group"])
    cases["stratum_with_one_group"] = uneven
    return cases


CASES = _cases()
STRATIFIED = {"stratified_two", "stratified_three", "stratum_with_one_group"}

R_CODE = r"""
library(survival)
out <- list()
for (id in unique(lr$id)) {
  d <- lr[lr$id == id, ]
  fit <- if (d$stratified[1] == 1) {
    survdiff(Surv(time, event) ~ group + strata(stratum), data = d)
  } else {
    survdiff(Surv(time, event) ~ group, data = d)
  }
  o <- if (is.matrix(fit$obs)) rowSums(fit$obs) else fit$obs
  e <- if (is.matrix(fit$exp)) rowSums(fit$exp) else fit$exp
  out[[paste(id, "n")]] <- as.numeric(fit$n)
  out[[paste(id, "obs")]] <- o
  out[[paste(id, "exp")]] <- e
  out[[paste(id, "var")]] <- fit$var
  out[[paste(id, "chisq")]] <- fit$chisq
  out[[paste(id, "df")]] <- sum(e > 0) - 1  # as print.survdiff
  out[[paste(id, "pvalue")]] <- fit$pvalue
}
"""


@pytest.fixture(scope="module")
def r_results() -> dict[str, np.ndarray]:
    require_r_package("survival")
    frames = [
        pd.DataFrame({"id": name, "stratified": int(name in STRATIFIED), **data})
        for name, data in CASES.items()
    ]
    return run_r(R_CODE, lr=pd.concat(frames, ignore_index=True))


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_survdiff(r_results: dict[str, np.ndarray], case: str) -> None:
    data = CASES[case]
    strata = data["stratum"] if case in STRATIFIED else None
    ours = logrank_test(data["time"], data["event"], data["group"], strata=strata)
    np.testing.assert_array_equal(ours.n, r_results[f"{case} n"])
    np.testing.assert_array_equal(ours.observed, r_results[f"{case} obs"])
    np.testing.assert_allclose(ours.expected, r_results[f"{case} exp"], rtol=RTOL)
    k = ours.expected.size
    np.testing.assert_allclose(
        ours.variance.ravel(), r_results[f"{case} var"], rtol=RTOL, atol=1e-13
    )
    assert ours.df == int(r_results[f"{case} df"][0]) == k - 1 - int(np.sum(ours.expected == 0))
    np.testing.assert_allclose(ours.chi2, r_results[f"{case} chisq"][0], rtol=RTOL)
    np.testing.assert_allclose(ours.p_value, r_results[f"{case} pvalue"][0], rtol=1e-8)
    if strata is not None:
        assert ours.n_strata == np.unique(strata).size


def test_stalwart_counts_give_about_p_0_045(r_results: dict[str, np.ndarray]) -> None:
    # the paper's reference notes: log-rank with equal follow-up gives p ~ 0.045, not 0.009
    ours = logrank_test(**{k: v for k, v in CASES["stalwart_12_vs_1"].items() if k != "stratum"})
    assert ours.p_value == pytest.approx(r_results["stalwart_12_vs_1 pvalue"][0], rel=1e-8)
    assert 0.03 < ours.p_value < 0.06


def test_no_events_and_one_group_are_errors() -> None:
    with pytest.raises(AnalysisError, match="no events"):
        logrank_test([1, 2, 3, 4], [0, 0, 0, 0], [0, 1, 0, 1])
    with pytest.raises(AnalysisError, match="at least two groups"):
        logrank_test([1, 2, 3], [1, 1, 0], ["A", "A", "A"])
