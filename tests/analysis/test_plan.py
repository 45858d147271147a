"""The analysis plan on synthetic datasets, checked against statsmodels, scipy and lifelines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from lifelines import CoxPHFitter
from lifelines.statistics import logrank_test as lifelines_logrank
from scipy import stats

from stalwart.analysis.datasets.bundle import TrialDatasets
from stalwart.analysis.plan import run_plan
from stalwart.errors import AnalysisError
from stalwart.protocol.load import load_protocol

ARMS = ["NOTRT", "IL2", "IL2ART"]


@pytest.fixture(scope="module")
def protocol():
    return load_protocol().protocol


def _datasets(seed: int = 7, n_per_arm: int = 40, events: bool = True) -> TrialDatasets:
    rng = np.random.default_rng(seed)
    rows, lb, tte = [], [], []
    for arm in ARMS:
        for i in range(n_per_arm):
            usubjid = f"P-{arm}-{i:03d}"
            base = rng.normal(550, 120)
            effect = 0.0 if arm == "NOTRT" else 130.0
            wk32 = base * 0.8 + 100 + effect + rng.normal(0, 90)
            rows.append({"USUBJID": usubjid, "ARMCD": arm})
            lb.append(
                {
                    "USUBJID": usubjid,
                    "ARMCD": arm,
                    "PARAMCD": "CD4",
                    "AVISIT": "ENTRY",
                    "AVISITN": 0,
                    "AVAL": base,
                    "BASE": base,
                }
            )
            if i % 10 != 3:  # missing week-32 values are left out (complete case)
                lb.append(
                    {
                        "USUBJID": usubjid,
                        "ARMCD": arm,
                        "PARAMCD": "CD4",
                        "AVISIT": "WK32",
                        "AVISITN": 32,
                        "AVAL": wk32,
                        "BASE": base,
                    }
                )
            hazard = 0.0004 * (1 if arm == "NOTRT" else 4)
            t = rng.exponential(1 / hazard)
            c = rng.uniform(200, 1100)
            tte.append(
                {
                    "USUBJID": usubjid,
                    "ARMCD": arm,
                    "PARAMCD": "ODDEATH",
                    "AVAL": float(np.ceil(min(t, c))),
                    "CNSR": 0 if (t <= c and events) else 1,
                }
            )
    adsl = pd.DataFrame(rows)
    return TrialDatasets(
        adsl=adsl,
        adlb=pd.DataFrame(lb),
        adtte=pd.DataFrame(tte),
        adae=pd.DataFrame(columns=["USUBJID", "ARMCD", "AEDECOD", "AETOXGR"]),
    )


def test_randomized_counts_by_arm(protocol):
    results = run_plan(protocol, _datasets())
    assert results["randomized"] == {"total": 120, "by_arm": {a: 40 for a in ARMS}}


def test_ancova_matches_statsmodels_with_all_arms_in_the_model(protocol):
    data = _datasets()
    results = run_plan(protocol, data)
    wk32 = data.adlb[data.adlb["AVISIT"] == "WK32"]
    fit = smf.ols("AVAL ~ C(ARMCD, Treatment('NOTRT')) + BASE", data=wk32).fit()
    for arm in ("IL2", "IL2ART"):
        row = next(r for r in results["primary"] if r["arm"] == arm and r["method"] == "ancova")
        name = f"C(ARMCD, Treatment('NOTRT'))[T.{arm}]"
        lo, hi = fit.conf_int().loc[name]
        assert row["difference"] == pytest.approx(fit.params[name], rel=1e-9)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((lo, hi), rel=1e-9)
        assert row["p_value"] == pytest.approx(fit.pvalues[name], rel=1e-6)
        assert row["n"] == {arm: 36, "NOTRT": 36}  # 4 of 40 per arm lack week 32
        assert row["week"] == 32 and row["endpoint"] == "CD4" and row["control"] == "NOTRT"


def test_ttest_matches_scipy_welch(protocol):
    data = _datasets()
    results = run_plan(protocol, data)
    wk32 = data.adlb[data.adlb["AVISIT"] == "WK32"]
    x = wk32[wk32["ARMCD"] == "IL2ART"]["AVAL"]
    y = wk32[wk32["ARMCD"] == "NOTRT"]["AVAL"]
    ref = stats.ttest_ind(x, y, equal_var=False)
    row = next(r for r in results["primary"] if r["arm"] == "IL2ART" and r["method"] == "ttest")
    assert row["difference"] == pytest.approx(x.mean() - y.mean(), rel=1e-12)
    assert row["p_value"] == pytest.approx(ref.pvalue, rel=1e-9)
    assert row["mean"] == pytest.approx({"IL2ART": x.mean(), "NOTRT": y.mean()})


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_pooled_cox_and_logrank_match_lifelines(protocol):
    data = _datasets()
    results = run_plan(protocol, data)
    tte = data.adtte.copy()
    tte["E"] = 1 - tte["CNSR"]
    tte["TRT"] = (tte["ARMCD"] != "NOTRT").astype(float)
    cph = CoxPHFitter().fit(tte[["AVAL", "E", "TRT"]], "AVAL", "E")
    row = next(
        r
        for r in results["time_to_event"]
        if r["arm"] == "IL2+IL2ART" and r["method"] == "cox_efron"
    )
    assert row["hazard_ratio"] == pytest.approx(float(np.exp(cph.params_["TRT"])), rel=1e-5)
    assert row["p_value"] == pytest.approx(float(cph.summary.loc["TRT", "p"]), rel=1e-4)
    assert row["events"]["IL2+IL2ART"] == int(tte.loc[tte["TRT"] == 1, "E"].sum())
    assert row["events"]["IL2"] + row["events"]["IL2ART"] == row["events"]["IL2+IL2ART"]
    assert row["n"] == {"IL2+IL2ART": 80, "NOTRT": 40, "IL2": 40, "IL2ART": 40}
    treated, control = tte[tte["TRT"] == 1], tte[tte["TRT"] == 0]
    ref = lifelines_logrank(treated["AVAL"], control["AVAL"], treated["E"], control["E"])
    lr = next(
        r for r in results["time_to_event"] if r["arm"] == "IL2+IL2ART" and r["method"] == "logrank"
    )
    assert lr["p_value"] == pytest.approx(ref.p_value, rel=1e-6)
    assert lr["hazard_ratio"] is None


def test_km_summary_per_arm(protocol):
    results = run_plan(protocol, _datasets())
    assert [k["arm"] for k in results["km"]] == ARMS
    assert all(k["n"] == 40 for k in results["km"])


def test_no_events_reports_counts_and_no_estimate(protocol):
    results = run_plan(protocol, _datasets(events=False))
    for row in results["time_to_event"]:
        assert row["hazard_ratio"] is None and row["p_value"] is None
        assert "not estimable" in row["note"]
        assert set(row["events"].values()) == {0}
    assert all(k["events"] == 0 and k["median"] is None for k in results["km"])


def test_no_control_events_leaves_cox_empty_but_runs_logrank(protocol):
    data = _datasets()
    adtte = data.adtte.copy()
    adtte.loc[adtte["ARMCD"] == "NOTRT", "CNSR"] = 1
    results = run_plan(protocol, TrialDatasets(data.adsl, data.adlb, adtte, data.adae))
    pooled = [r for r in results["time_to_event"] if r["arm"] == "IL2+IL2ART"]
    cox = next(r for r in pooled if r["method"] == "cox_efron")
    logrank = next(r for r in pooled if r["method"] == "logrank")
    assert cox["hazard_ratio"] is None and "NOTRT" in cox["note"]
    assert cox["events"]["NOTRT"] == 0 and cox["events"]["IL2+IL2ART"] > 0
    treated = adtte[adtte["ARMCD"] != "NOTRT"]
    control = adtte[adtte["ARMCD"] == "NOTRT"]
    ref = lifelines_logrank(
        treated["AVAL"], control["AVAL"], 1 - treated["CNSR"], 1 - control["CNSR"]
    )
    assert logrank["p_value"] == pytest.approx(ref.p_value, rel=1e-6)


def test_an_arm_without_week_32_values_is_a_clear_error(protocol):
    data = _datasets()
    adlb = data.adlb[~((data.adlb["ARMCD"] == "IL2") & (data.adlb["AVISIT"] == "WK32"))]
    with pytest.raises(AnalysisError, match="IL2 vs NOTRT"):
        run_plan(protocol, TrialDatasets(data.adsl, adlb, data.adtte, data.adae))
