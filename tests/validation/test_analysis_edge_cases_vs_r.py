"""The analysis edge cases of issue 20 against R on the same data.

* A covariate constant within every stratum: R ``coxph`` finds its information singular to
  ``toler.chol`` and reports the coefficient NA; ``cox_ph`` raises (its documented answer) where it
  once returned a finite, meaningless coefficient. A covariate that does vary a little within
  strata is estimated by both, to 1e-6.
* One arm without events in ``stalwart analyze``: no hazard ratio (R: "coefficient may be
  infinite"), but the likelihood-ratio and score p-values of R's ``summary(coxph)``, to 1e-6.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stalwart.analysis.kernels.cox import cox_ph
from stalwart.cdisc.foreign import run_adam_analysis
from stalwart.errors import AnalysisError
from validation.rscript import require_r_package, run_r

RTOL = 1e-6


def _stratified(seed: int, within: float) -> pd.DataFrame:
    """Treatment and a covariate z: a stratum constant plus ``within`` times noise, scaled."""
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(60, 400)), int(rng.integers(2, 6))
    s = rng.integers(0, k, n)
    trt = rng.integers(0, 2, n).astype(float)
    z = (rng.normal(size=k)[s] + within * rng.normal(size=n)) * rng.choice([0.1, 1.0, 1e3])
    time = np.round(rng.exponential(1.0 / np.exp(0.5 * trt)), 2) + 0.01
    event = (rng.random(n) < 0.7).astype(float)
    return pd.DataFrame({"time": time, "event": event, "trt": trt, "z": z, "s": s})


SEEDS = range(12)
R_STRATA = r"""
library(survival)
out <- list()
for (name in names(frames)) {
  d <- frames[[name]]
  fit <- coxph(Surv(time, event) ~ trt + z + strata(s), data = d, ties = "efron",
               control = coxph.control(eps = 1e-11, iter.max = 100))
  out[[name]] <- c(coef(fit), sqrt(diag(vcov(fit))))
}
"""


@pytest.fixture(scope="module")
def strata_cases() -> dict[str, tuple[pd.DataFrame, np.ndarray]]:
    require_r_package("survival")
    frames = {f"c{seed}_{w}": _stratified(seed, w) for seed in SEEDS for w in (0.0, 0.2)}
    code = "frames <- list(" + ", ".join(f"{k} = {k}" for k in frames) + ")\n" + R_STRATA
    r = run_r(code, **frames)
    return {k: (frames[k], r[k]) for k in frames}


@pytest.mark.parametrize("seed", SEEDS)
def test_covariate_constant_within_strata_is_singular_as_in_r(strata_cases, seed) -> None:
    frame, r = strata_cases[f"c{seed}_0.0"]
    assert np.isnan(r[1]), f"R estimated z: {r}"  # R: NA, X matrix deemed singular
    with pytest.raises(
        AnalysisError, match=r"singular at beta = 0 \(R: coefficient NA for \['z'\]"
    ):
        cox_ph(
            frame["time"],
            frame["event"],
            frame[["trt", "z"]],
            strata=frame["s"],
            names=["trt", "z"],
        )


@pytest.mark.parametrize("seed", SEEDS)
def test_covariate_varying_within_strata_matches_r(strata_cases, seed) -> None:
    frame, r = strata_cases[f"c{seed}_0.2"]
    fit = cox_ph(frame["time"], frame["event"], frame[["trt", "z"]], strata=frame["s"], tol=1e-11)
    np.testing.assert_allclose(np.r_[fit.coef, fit.se], r, rtol=RTOL)


R_NO_EVENTS = r"""
library(survival)
d <- merge(adtte, adsl, by = "USUBJID")
d$event <- 1 - d$CNSR
out <- list()
for (a in c("High", "Low")) {
  sub <- d[d$TRT01P %in% c(a, "Control"), ]
  sub$x <- as.numeric(sub$TRT01P == a)
  sm <- suppressWarnings(summary(coxph(Surv(AVAL, event) ~ x, data = sub, ties = "efron")))
  out[[a]] <- c(sm$logtest["pvalue"], sm$sctest["pvalue"])
}
"""


def _no_control_events(seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A 3-arm trial (40 a side) whose control arm has no event; High has many, Low a few."""
    rng = np.random.default_rng(seed)
    adsl = pd.DataFrame(
        {
            "USUBJID": [f"U{i:03d}" for i in range(120)],
            "TRT01P": np.repeat(["Control", "Low", "High"], 40),
        }
    )
    rate = adsl["TRT01P"].map({"Control": 0.0, "Low": 0.002, "High": 0.01}).to_numpy()
    with np.errstate(divide="ignore"):
        event_time = rng.exponential(np.where(rate > 0, 1.0 / np.maximum(rate, 1e-12), np.inf))
    censor = np.round(rng.uniform(100, 700, 120), 1)
    aval = np.round(np.minimum(event_time, censor), 1)
    tte = pd.DataFrame(
        {
            "USUBJID": adsl["USUBJID"],
            "PARAMCD": "OI",
            "AVAL": aval,
            "CNSR": (event_time > censor).astype(int),
        }
    )
    return adsl, tte


def test_one_arm_without_events_reports_lr_and_score_p_as_r(tmp_path: Path) -> None:
    require_r_package("survival")
    adsl, tte = _no_control_events(20)
    assert tte.merge(adsl)[lambda f: f["TRT01P"] == "Control"]["CNSR"].eq(1).all()
    adsl.to_csv(tmp_path / "adsl.csv", index=False)
    tte.to_csv(tmp_path / "adtte.csv", index=False)
    _, path = run_adam_analysis(tmp_path, tmp_path / "out", control="Control")
    body = json.loads(path.read_text())
    r = run_r(R_NO_EVENTS, adsl=adsl, adtte=tte)
    cox = {c["arm"]: c for c in body["time_to_event"] if c["method"] == "cox_efron"}
    for arm in ("High", "Low"):
        assert cox[arm]["events"]["Control"] == 0 and cox[arm]["events"][arm] > 0
        assert cox[arm]["hazard_ratio"] is None and cox[arm]["p_value"] is None
        assert "likelihood-ratio and score p-values are valid" in cox[arm]["note"]
        np.testing.assert_allclose(
            [cox[arm]["lr_p_value"], cox[arm]["score_p_value"]], r[arm], rtol=RTOL
        )
