"""Kaplan-Meier against R ``survival::survfit`` (table, Greenwood SE, CIs, quantiles, ``at`` rows).

All data sets go to R in one ``Rscript`` call. Each case is fitted with ``conf.type`` "log-log",
"log" and "plain"; R's results are compared at 1e-10 relative (the arithmetic is the same) and
the quantile times exactly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stalwart.analysis.kernels.km import kaplan_meier
from validation.rscript import require_r_package, run_r

RTOL = 1e-10
CONF_TYPES = ("log-log", "log", "plain")
PROBS = np.array([0.1, 0.25, 0.5, 0.75, 0.9])
AT = np.array([0.0, 0.5, 2.0, 5.0, 7.5, 12.0, 50.0])


def _simulated(seed: int, n: int, rounding: float | None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    event_time = rng.weibull(1.2, n) * 8.0
    censor_time = rng.uniform(0.0, 20.0, n)
    time = np.minimum(event_time, censor_time)
    if rounding is not None:
        time = np.ceil(time / rounding) * rounding
    return time, (event_time <= censor_time).astype(int)


def _cases() -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    cases: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}
    for i, (seed, n, rounding) in enumerate([(1, 60, None), (2, 300, 1.0), (3, 25, 2.0)]):
        time, event = _simulated(seed, n, rounding)
        cases[f"sim{i}"] = (time, event, 0.05)
    time, event = _simulated(4, 120, 0.5)
    cases["alpha10"] = (time, event, 0.10)  # conf.int = 0.90
    fixed = {
        "single_event": ([2.0, 3.0, 5.0, 5.0, 8.0], [0, 1, 0, 0, 0]),
        "all_censored": ([1.0, 2.0, 2.0, 4.0], [0, 0, 0, 0]),
        "all_events_to_zero": ([1.0, 2.0, 2.0, 3.0, 6.0], [1, 1, 1, 1, 1]),
        "flat_at_half": ([1.0, 2.0, 3.0, 4.0], [1, 1, 1, 1]),
        "flat_half_to_end": ([1.0, 2.0, 3.0, 4.0], [1, 1, 0, 0]),
        "event_at_zero": ([0.0, 0.0, 1.0, 2.0, 3.0, 3.0], [1, 0, 1, 0, 1, 1]),
        "one_subject": ([4.0], [1]),
        "stalwart_like": (
            np.r_[np.linspace(1, 224, 12), np.full(164, 224.0)],
            np.r_[np.ones(12), np.zeros(164)],
        ),
    }
    for name, (t, e) in fixed.items():
        cases[name] = (np.asarray(t, float), np.asarray(e, int), 0.05)
    return cases


R_CODE = r"""
library(survival)
out <- list()
for (id in unique(km$id)) {
  d <- km[km$id == id, ]
  conf <- 1 - d$alpha[1]
  for (ct in c("log-log", "log", "plain")) {
    f <- survfit(Surv(time, event) ~ 1, data = d, conf.type = ct, conf.int = conf)
    key <- paste(id, ct, sep = "|")
    out[[paste(key, "time")]] <- f$time
    out[[paste(key, "n.risk")]] <- f$n.risk
    out[[paste(key, "n.event")]] <- f$n.event
    out[[paste(key, "n.censor")]] <- f$n.censor
    out[[paste(key, "surv")]] <- f$surv
    out[[paste(key, "std.err")]] <- f$std.err * f$surv
    out[[paste(key, "lower")]] <- f$lower
    out[[paste(key, "upper")]] <- f$upper
    q <- quantile(f, probs = probs$p)
    out[[paste(key, "q")]] <- q$quantile
    out[[paste(key, "q.lower")]] <- q$lower
    out[[paste(key, "q.upper")]] <- q$upper
    tab <- summary(f)$table  # what print(fit) shows
    out[[paste(key, "print")]] <- tab[c("median", paste0(conf, "LCL"), paste0(conf, "UCL"))]
    s <- summary(f, times = at$t, extend = TRUE)
    out[[paste(key, "at.n.risk")]] <- s$n.risk
    out[[paste(key, "at.n.event")]] <- s$n.event
    out[[paste(key, "at.n.censor")]] <- s$n.censor
    out[[paste(key, "at.surv")]] <- s$surv
    out[[paste(key, "at.std.err")]] <- s$std.err
    out[[paste(key, "at.lower")]] <- s$lower
    out[[paste(key, "at.upper")]] <- s$upper
  }
}
"""

CASES = _cases()


@pytest.fixture(scope="module")
def r_results() -> dict[str, np.ndarray]:
    require_r_package("survival")
    rows = [
        pd.DataFrame({"id": name, "time": t, "event": e, "alpha": alpha})
        for name, (t, e, alpha) in CASES.items()
    ]
    return run_r(
        R_CODE,
        km=pd.concat(rows, ignore_index=True),
        probs=pd.DataFrame({"p": PROBS}),
        at=pd.DataFrame({"t": AT}),
    )


def _close(ours: np.ndarray, ref: np.ndarray, what: str) -> None:
    ours = np.asarray(ours, dtype=float)
    assert ours.shape == ref.shape, what
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref), err_msg=what)
    both = ~np.isnan(ref)
    np.testing.assert_allclose(ours[both], ref[both], rtol=RTOL, atol=1e-14, err_msg=what)


@pytest.mark.parametrize("conf_type", CONF_TYPES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_table_and_limits_match_survfit(
    r_results: dict[str, np.ndarray], case: str, conf_type: str
) -> None:
    time, event, alpha = CASES[case]
    ours = kaplan_meier(time, event, alpha=alpha, conf_type=conf_type, probs=PROBS)  # type: ignore[arg-type]
    key = f"{case}|{conf_type}"
    np.testing.assert_array_equal(ours.time, r_results[f"{key} time"])
    np.testing.assert_array_equal(ours.n_at_risk, r_results[f"{key} n.risk"])
    np.testing.assert_array_equal(ours.n_events, r_results[f"{key} n.event"])
    np.testing.assert_array_equal(ours.n_censored, r_results[f"{key} n.censor"])
    _close(ours.survival, r_results[f"{key} surv"], "surv")
    _close(ours.std_err, r_results[f"{key} std.err"], "std.err")
    _close(ours.ci_low, r_results[f"{key} lower"], "lower")
    _close(ours.ci_high, r_results[f"{key} upper"], "upper")


@pytest.mark.parametrize("conf_type", CONF_TYPES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_quantiles_match_quantile_survfit_and_print(
    r_results: dict[str, np.ndarray], case: str, conf_type: str
) -> None:
    time, event, alpha = CASES[case]
    ours = kaplan_meier(time, event, alpha=alpha, conf_type=conf_type, probs=PROBS)  # type: ignore[arg-type]
    key = f"{case}|{conf_type}"
    _close(ours.quantiles, r_results[f"{key} q"], "quantile")
    _close(ours.quantile_ci_low, r_results[f"{key} q.lower"], "quantile lower")
    _close(ours.quantile_ci_high, r_results[f"{key} q.upper"], "quantile upper")
    median = np.array([ours.median, ours.median_ci_low, ours.median_ci_high])
    half = PROBS == 0.5
    quantile_median = [r_results[f"{key} {q}"][half][0] for q in ("q", "q.lower", "q.upper")]
    _close(median, np.array(quantile_median), "median as quantile(fit, 0.5)")
    printed = np.array([ours.print_median, ours.print_median_ci_low, ours.print_median_ci_high])
    _close(printed, r_results[f"{key} print"], "print(fit) median and limits")
    if case != "flat_half_to_end":  # the one case where R's two rules differ
        _close(median, r_results[f"{key} print"], "median agrees with print(fit)")


@pytest.mark.parametrize("conf_type", CONF_TYPES)
@pytest.mark.parametrize("case", ["sim0", "sim1", "sim2", "single_event", "event_at_zero"])
def test_at_times_match_summary_extend(
    r_results: dict[str, np.ndarray], case: str, conf_type: str
) -> None:
    time, event, alpha = CASES[case]
    ours = kaplan_meier(time, event, alpha=alpha, at=AT, conf_type=conf_type)  # type: ignore[arg-type]
    key = f"{case}|{conf_type}"
    np.testing.assert_array_equal(ours.n_at_risk, r_results[f"{key} at.n.risk"])
    np.testing.assert_array_equal(ours.n_events, r_results[f"{key} at.n.event"])
    np.testing.assert_array_equal(ours.n_censored, r_results[f"{key} at.n.censor"])
    _close(ours.survival, r_results[f"{key} at.surv"], "surv at")
    _close(ours.std_err, r_results[f"{key} at.std.err"], "std.err at")
    _close(ours.ci_low, r_results[f"{key} at.lower"], "lower at")
    _close(ours.ci_high, r_results[f"{key} at.upper"], "upper at")
