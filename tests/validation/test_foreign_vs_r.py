"""``stalwart analyze --adam`` on the real CDISC pilot, against R reading the same XPT files.

R reads ``adsl.xpt``, ``adtte.xpt`` and ``adqscibc.xpt`` itself (``foreign::read.xport``), joins
TRT01P from ADSL by USUBJID, and fits, per arm against Placebo: ``survival::coxph(Surv(AVAL,
1 - CNSR) ~ arm, ties = "efron")`` (hazard ratio, Wald CI and p, LR and score p),
``survdiff`` (pairwise and across the three arms), ``survfit(..., conf.type = "log-log")`` with
``quantile(fit, 0.5)`` per arm, and ``t.test`` per analysis visit of ADQSCIBC (ANL01FL = "Y").
The pilot has no BDS with a baseline, so the ANCOVA is checked on a CSV built from the pilot's
own CIBIC+ records (BASE = the subject's Week 8 value, flagged ABLFL = "Y"), which also takes the
CSV path of the reader: R ``lm(AVAL ~ relevel(arm, "Placebo") + BASE)`` per visit. All to 1e-6
relative. Results are read back from results.json, as a user would.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyreadstat
import pytest

from cdiscpilot import pilot_adam
from stalwart.cdisc.foreign import run_adam_analysis
from validation.rscript import require_r_package, run_r

RTOL = 1e-6
CONTROL = "Placebo"

R_CODE = r"""
library(survival)
dir <- "__DIR__"
adsl <- foreign::read.xport(file.path(dir, "adsl.xpt"))
adtte <- foreign::read.xport(file.path(dir, "adtte.xpt"))
out <- list()
for (pop in c("ALL", "EFFFL")) {
  s <- if (pop == "ALL") adsl else adsl[adsl[[pop]] == "Y", ]
  d <- merge(adtte[, c("USUBJID", "PARAMCD", "AVAL", "CNSR")], s[, c("USUBJID", "TRT01P")],
             by = "USUBJID")
  d$event <- 1 - d$CNSR
  arms <- sort(unique(d$TRT01P))
  for (a in setdiff(arms, "Placebo")) {
    sub <- d[d$TRT01P %in% c(a, "Placebo"), ]
    sub$x <- as.numeric(sub$TRT01P == a)
    sm <- summary(coxph(Surv(AVAL, event) ~ x, data = sub, ties = "efron"))
    key <- paste(pop, a, sep = "|")
    out[[paste0(key, "|cox")]] <- c(sm$conf.int[1, "exp(coef)"], sm$conf.int[1, "lower .95"],
      sm$conf.int[1, "upper .95"], sm$coefficients[1, "Pr(>|z|)"], sm$logtest["pvalue"],
      sm$sctest["pvalue"])
    sd <- survdiff(Surv(AVAL, event) ~ x, data = sub)
    out[[paste0(key, "|logrank")]] <- c(sd$chisq, pchisq(sd$chisq, 1, lower.tail = FALSE))
  }
  sd <- survdiff(Surv(AVAL, event) ~ TRT01P, data = d)
  out[[paste0(pop, "|overall")]] <- c(sd$chisq, pchisq(sd$chisq, length(arms) - 1,
                                                       lower.tail = FALSE))
  for (a in arms) {
    fit <- survfit(Surv(AVAL, event) ~ 1, data = d[d$TRT01P == a, ], conf.type = "log-log")
    q <- quantile(fit, 0.5)
    out[[paste(pop, a, "km", sep = "|")]] <- c(q$quantile, q$lower, q$upper, fit$n,
                                               sum(fit$n.event))
  }
}
q <- foreign::read.xport(file.path(dir, "adqscibc.xpt"))
q <- merge(q[q$ANL01FL == "Y", c("USUBJID", "PARAMCD", "AVISIT", "AVAL")],
           adsl[, c("USUBJID", "TRT01P")], by = "USUBJID")
for (v in unique(q$AVISIT)) for (a in setdiff(sort(unique(q$TRT01P)), "Placebo")) {
  at <- q[q$AVISIT == v, ]
  tt <- t.test(at$AVAL[at$TRT01P == a], at$AVAL[at$TRT01P == "Placebo"])
  out[[paste("ttest", v, a, sep = "|")]] <- c(tt$estimate[1] - tt$estimate[2], tt$conf.int,
    tt$p.value, tt$stderr, tt$parameter)
}
b <- read.csv("__CSV__", stringsAsFactors = FALSE)
b <- merge(b[b$ABLFL != "Y", ], adsl[, c("USUBJID", "TRT01P")], by = "USUBJID")
for (v in unique(b$AVISIT)) {
  at <- b[b$AVISIT == v, ]
  at$arm <- relevel(factor(at$TRT01P), ref = "Placebo")
  fit <- lm(AVAL ~ arm + BASE, data = at)
  co <- summary(fit)$coefficients
  ci <- confint(fit)
  for (a in setdiff(levels(at$arm), "Placebo")) {
    term <- paste0("arm", a)
    out[[paste("ancova", v, a, sep = "|")]] <- c(co[term, "Estimate"], ci[term, ],
      co[term, "Pr(>|t|)"], co[term, "Std. Error"], fit$df.residual)
  }
}
"""


def _close(ours: list[Any], theirs: np.ndarray) -> None:
    mine = np.array([np.nan if v is None else v for v in ours], dtype=float)
    np.testing.assert_allclose(mine, theirs, rtol=RTOL, equal_nan=True)


def _baseline_csv(adam: Path, folder: Path) -> Path:
    """The pilot's CIBIC+ analysis records with BASE = the Week 8 value, as a CSV BDS."""
    frame, _ = pyreadstat.read_xport(str(adam / "adqscibc.xpt"))
    frame = frame[frame["ANL01FL"] == "Y"]
    week8 = frame[frame["AVISIT"] == "Week 8"].set_index("USUBJID")["AVAL"]
    bds = frame[["USUBJID", "PARAMCD", "AVISIT", "AVISITN", "AVAL", "TRTP"]].copy()
    bds["BASE"] = bds["USUBJID"].map(week8)
    bds["ABLFL"] = np.where(bds["AVISIT"] == "Week 8", "Y", "N")
    bds["ANL01FL"] = "Y"
    path = folder / "adqsbase.csv"
    bds.to_csv(path, index=False, float_format="%.17g")
    (folder / "adsl.xpt").symlink_to(adam / "adsl.xpt")
    return path


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    require_r_package("survival")
    require_r_package("foreign")
    adam = pilot_adam()
    tmp = tmp_path_factory.mktemp("foreign")
    ours = {}
    for population in (None, "EFFFL"):
        _, path = run_adam_analysis(adam, tmp / f"out-{population}", population=population)
        ours[population or "ALL"] = json.loads(path.read_text())
    based = tmp / "based"
    based.mkdir()
    csv = _baseline_csv(adam, based)
    _, path = run_adam_analysis(based, tmp / "out-based")
    ours["based"] = json.loads(path.read_text())
    code = R_CODE.replace("__DIR__", adam.as_posix()).replace("__CSV__", csv.as_posix())
    return {"ours": ours, "r": run_r(code)}


@pytest.mark.parametrize("population", ["ALL", "EFFFL"])
def test_cox_and_logrank_match_r(compared: dict[str, Any], population: str) -> None:
    ours, r = compared["ours"][population], compared["r"]
    checked = 0
    for rec in ours["time_to_event"]:
        key = f"{population}|{rec['arm']}|"
        if rec["method"] == "cox_efron":
            values = [rec[k] for k in ("hazard_ratio", "ci_low", "ci_high", "p_value")]
            _close([*values, rec["lr_p_value"], rec["score_p_value"]], r[key + "cox"])
        else:
            _close([rec["chi2"], rec["p_value"]], r[key + "logrank"])
        checked += 1
    assert checked == 4
    (overall,) = ours["logrank_overall"]
    _close([overall["chi2"], overall["p_value"]], r[f"{population}|overall"])


@pytest.mark.parametrize("population", ["ALL", "EFFFL"])
def test_km_medians_match_r(compared: dict[str, Any], population: str) -> None:
    ours, r = compared["ours"][population], compared["r"]
    assert len(ours["km"]) == 3
    for rec in ours["km"]:
        expected = r[f"{population}|{rec['arm']}|km"]
        _close([rec["median"], rec["ci_low"], rec["ci_high"], rec["n"], rec["events"]], expected)
    placebo = next(rec for rec in ours["km"] if rec["arm"] == CONTROL)
    assert placebo["median"] is None  # fewer than half had the event: R says NA too


def test_bds_welch_by_visit_matches_r(compared: dict[str, Any]) -> None:
    ours, r = compared["ours"]["ALL"], compared["r"]
    rows = [rec for rec in ours["continuous"] if rec["dataset"] == "ADQSCIBC"]
    assert {rec["method"] for rec in rows} == {"ttest"}  # no BASE in ADQSCIBC
    assert [rec["visit"] for rec in rows] == ["Week 8"] * 2 + ["Week 16"] * 2 + ["Week 24"] * 2
    for rec in rows:
        fields = ("difference", "ci_low", "ci_high", "p_value", "se", "df")
        _close([rec[k] for k in fields], r[f"ttest|{rec['visit']}|{rec['arm']}"])


def test_bds_ancova_on_csv_matches_r_lm(compared: dict[str, Any]) -> None:
    ours, r = compared["ours"]["based"], compared["r"]
    rows = [rec for rec in ours["continuous"] if rec["method"] == "ancova"]
    # Week 8 is the baseline record (ABLFL = "Y"): only Weeks 16 and 24 are outcomes
    assert sorted({rec["visit"] for rec in rows}) == ["Week 16", "Week 24"]
    assert len(rows) == 4
    for rec in rows:
        fields = ("difference", "ci_low", "ci_high", "p_value", "se", "df")
        _close([rec[k] for k in fields], r[f"ancova|{rec['visit']}|{rec['arm']}"])


def test_results_carry_provenance_of_the_pilot_files(compared: dict[str, Any]) -> None:
    ours = compared["ours"]["EFFFL"]
    prov = ours["provenance"]
    files = {f["dataset"]: f for f in prov["inputs"]}
    assert set(files) == {"ADSL", "ADTTE", "ADQSCIBC"}  # ADAE is not a BDS: not read
    assert files["ADSL"]["records"] == 254 and len(files["ADSL"]["sha256"]) == 64
    assert prov["options"]["population"] == "EFFFL"
    assert ours["randomized"]["total"] == 234  # EFFFL = "Y"
    assert ours["study"] == "CDISCPILOT01" and ours["control"] == CONTROL
