"""The analysis plan on synthetic datasets, checked against statsmodels, scipy and lifelines."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from lifelines import CoxPHFitter
from lifelines.statistics import logrank_test as lifelines_logrank
from scipy import stats

from stalwart.analysis.datasets.bundle import TrialDatasets
from stalwart.analysis.kernels.mmrm import mmrm
from stalwart.analysis.plan import analyze, run_plan
from stalwart.analysis.results import LongitudinalComparison, PlanResult, SafetyComparison
from stalwart.errors import AnalysisError
from stalwart.protocol.load import load_protocol

ARMS = ["NOTHER", "IL2", "IL2ART"]


@pytest.fixture(scope="module")
def protocol():
    return load_protocol().protocol


WEEKS = [4, 8, 12, 16, 20, 24, 28, 32]


def _lab(usubjid: str, arm: str, paramcd: str, week: int, value: float, base: float) -> dict:
    return {
        "USUBJID": usubjid,
        "ARMCD": arm,
        "PARAMCD": paramcd,
        "AVISIT": "ENTRY" if week == 0 else f"WK{week:02d}",
        "AVISITN": week,
        "AVAL": value,
        "BASE": base,
    }


def _datasets(seed: int = 7, n_per_arm: int = 40, events: bool = True) -> TrialDatasets:
    rng = np.random.default_rng(seed)
    rows, lb, tte, ae = [], [], [], []
    for arm in ARMS:
        for i in range(n_per_arm):
            usubjid = f"P-{arm}-{i:03d}"
            base = rng.normal(550, 120)
            effect = 0.0 if arm == "NOTHER" else 130.0
            person = rng.normal(0, 60)
            rows.append({"USUBJID": usubjid, "ARMCD": arm})
            lb.append(_lab(usubjid, arm, "CD4", 0, base, base))
            for week in WEEKS:
                value = base * 0.8 + 100 + effect * week / 32 + person + rng.normal(0, 70)
                # missing week-32 values are left out (complete case); other visits at random
                if (week == 32 and i % 10 != 3) or (week < 32 and rng.uniform() > 0.1):
                    lb.append(_lab(usubjid, arm, "CD4", week, value, base))
            rna = rng.normal(4.2, 0.6)
            lb.append(_lab(usubjid, arm, "LHIVRNA", 0, rna, rna))
            if i % 10 != 5:
                rna32 = 0.7 * rna + 1.2 - (0.4 if arm == "IL2ART" else 0.0) + rng.normal(0, 0.4)
                lb.append(_lab(usubjid, arm, "LHIVRNA", 32, rna32, rna))
            for term, risk in (("Fever", 0.6), ("Nausea", 0.3), ("Headache", 0.1)):
                if rng.uniform() < (risk if arm != "NOTHER" else 0.05):
                    grade = int(rng.integers(1, 5))
                    for _ in range(int(rng.integers(1, 3))):  # repeats count once
                        ae.append(
                            {
                                "USUBJID": usubjid,
                                "ARMCD": arm,
                                "AEDECOD": term,
                                "AETOXGR": grade,
                                "TRTEMFL": "Y",
                            }
                        )
            hazard = 0.0004 * (1 if arm == "NOTHER" else 4)
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
    ae.append(  # before randomization: not treatment-emergent, not counted
        {
            "USUBJID": "P-NOTHER-000",
            "ARMCD": "NOTHER",
            "AEDECOD": "Fever",
            "AETOXGR": 4,
            "TRTEMFL": "",
        }
    )
    adsl = pd.DataFrame(rows)
    return TrialDatasets(
        adsl=adsl,
        adlb=pd.DataFrame(lb),
        adtte=pd.DataFrame(tte),
        adae=pd.DataFrame(ae),
    )


def test_randomized_counts_by_arm(protocol):
    results = run_plan(protocol, _datasets())
    assert results["randomized"] == {"total": 120, "by_arm": {a: 40 for a in ARMS}}


def test_ancova_matches_statsmodels_with_all_arms_in_the_model(protocol):
    data = _datasets()
    results = run_plan(protocol, data)
    wk32 = data.adlb[(data.adlb["AVISIT"] == "WK32") & (data.adlb["PARAMCD"] == "CD4")]
    fit = smf.ols("AVAL ~ C(ARMCD, Treatment('NOTHER')) + BASE", data=wk32).fit()
    for arm in ("IL2", "IL2ART"):
        row = next(r for r in results["primary"] if r["arm"] == arm and r["method"] == "ancova")
        name = f"C(ARMCD, Treatment('NOTHER'))[T.{arm}]"
        lo, hi = fit.conf_int().loc[name]
        assert row["difference"] == pytest.approx(fit.params[name], rel=1e-9)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((lo, hi), rel=1e-9)
        assert row["p_value"] == pytest.approx(fit.pvalues[name], rel=1e-6)
        assert row["n"] == {arm: 36, "NOTHER": 36}  # 4 of 40 per arm lack week 32
        assert row["week"] == 32 and row["endpoint"] == "CD4" and row["control"] == "NOTHER"


def test_ttest_matches_scipy_welch(protocol):
    data = _datasets()
    results = run_plan(protocol, data)
    wk32 = data.adlb[(data.adlb["AVISIT"] == "WK32") & (data.adlb["PARAMCD"] == "CD4")]
    x = wk32[wk32["ARMCD"] == "IL2ART"]["AVAL"]
    y = wk32[wk32["ARMCD"] == "NOTHER"]["AVAL"]
    ref = stats.ttest_ind(x, y, equal_var=False)
    row = next(r for r in results["primary"] if r["arm"] == "IL2ART" and r["method"] == "ttest")
    assert row["endpoint"] == "CD4"
    assert row["difference"] == pytest.approx(x.mean() - y.mean(), rel=1e-12)
    assert row["p_value"] == pytest.approx(ref.pvalue, rel=1e-9)
    assert row["mean"] == pytest.approx({"IL2ART": x.mean(), "NOTHER": y.mean()})


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_pooled_cox_and_logrank_match_lifelines(protocol):
    data = _datasets()
    results = run_plan(protocol, data)
    tte = data.adtte.copy()
    tte["E"] = 1 - tte["CNSR"]
    tte["TRT"] = (tte["ARMCD"] != "NOTHER").astype(float)
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
    assert row["n"] == {"IL2+IL2ART": 80, "NOTHER": 40, "IL2": 40, "IL2ART": 40}
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
    adtte.loc[adtte["ARMCD"] == "NOTHER", "CNSR"] = 1
    results = run_plan(protocol, TrialDatasets(data.adsl, data.adlb, adtte, data.adae))
    pooled = [r for r in results["time_to_event"] if r["arm"] == "IL2+IL2ART"]
    cox = next(r for r in pooled if r["method"] == "cox_efron")
    logrank = next(r for r in pooled if r["method"] == "logrank")
    assert cox["hazard_ratio"] is None and "NOTHER" in cox["note"]
    assert cox["events"]["NOTHER"] == 0 and cox["events"]["IL2+IL2ART"] > 0
    treated = adtte[adtte["ARMCD"] != "NOTHER"]
    control = adtte[adtte["ARMCD"] == "NOTHER"]
    ref = lifelines_logrank(
        treated["AVAL"], control["AVAL"], 1 - treated["CNSR"], 1 - control["CNSR"]
    )
    assert logrank["p_value"] == pytest.approx(ref.p_value, rel=1e-6)


def test_an_arm_without_week_32_values_is_a_clear_error(protocol):
    data = _datasets()
    adlb = data.adlb[
        ~(
            (data.adlb["ARMCD"] == "IL2")
            & (data.adlb["AVISIT"] == "WK32")
            & (data.adlb["PARAMCD"] == "CD4")
        )
    ]
    with pytest.raises(AnalysisError, match="CD4: IL2 vs NOTHER"):
        run_plan(protocol, TrialDatasets(data.adsl, adlb, data.adtte, data.adae))


# -- secondary, longitudinal and safety sections, and the typed result -----------------------
def test_secondary_hiv_rna_ancova_matches_statsmodels(protocol):
    data = _datasets()
    results = run_plan(protocol, data)
    wk32 = data.adlb[(data.adlb["AVISIT"] == "WK32") & (data.adlb["PARAMCD"] == "LHIVRNA")]
    fit = smf.ols("AVAL ~ C(ARMCD, Treatment('NOTHER')) + BASE", data=wk32).fit()
    name = "C(ARMCD, Treatment('NOTHER'))[T.IL2ART]"
    row = next(r for r in results["secondary"] if r["arm"] == "IL2ART" and r["method"] == "ancova")
    assert row["endpoint"] == "HIVRNA" and row["week"] == 32
    assert row["difference"] == pytest.approx(fit.params[name], rel=1e-9)
    assert row["p_value"] == pytest.approx(fit.pvalues[name], rel=1e-6)
    assert row["n"] == {"IL2ART": 36, "NOTHER": 36}
    assert {r["method"] for r in results["secondary"]} == {"ancova", "ttest"}


def _cd4_long(data: TrialDatasets) -> pd.DataFrame:
    lb = data.adlb
    return lb[(lb["PARAMCD"] == "CD4") & (lb["AVISITN"] > 0)]


def test_longitudinal_records_are_the_mmrm_of_all_arms_at_every_visit(protocol):
    data = _datasets()
    results = run_plan(protocol, data)
    records = results["longitudinal"]
    assert [(r["arm"], r["week"]) for r in records] == [
        (arm, w) for arm in ("IL2", "IL2ART") for w in WEEKS
    ]
    rows = _cd4_long(data)
    ref = mmrm(
        rows["AVAL"],
        rows["USUBJID"],
        rows["AVISITN"],
        rows["ARMCD"],
        rows["BASE"],
        control_level="NOTHER",
    )
    contrast = ref.contrast("IL2ART", "NOTHER")
    mine = [r for r in records if r["arm"] == "IL2ART"]
    np.testing.assert_allclose([r["difference"] for r in mine], contrast.difference, rtol=1e-9)
    np.testing.assert_allclose([r["p_value"] for r in mine], contrast.p_value, rtol=1e-9)
    wk32 = mine[-1]
    assert wk32["visit"] == "WK32" and wk32["covariance"] == "unstructured"
    assert wk32["note"] is None and wk32["df"] == ref.df_residual
    assert wk32["n"] == {
        "IL2ART": int(((rows["ARMCD"] == "IL2ART") & (rows["AVISITN"] == 32)).sum()),
        "NOTHER": int(((rows["ARMCD"] == "NOTHER") & (rows["AVISITN"] == 32)).sum()),
    }
    # the simulated effect is 130 at week 32, 0 at baseline: the contrast grows over visits
    assert mine[-1]["difference"] > mine[0]["difference"]
    assert mine[-1]["ci_low"] < 130 < mine[-1]["ci_high"]


def test_a_pooled_comparison_gets_its_own_mmrm(protocol):
    spec = protocol.analysis.longitudinal[0].model_copy(
        update={"comparisons": [["IL2+IL2ART", "NOTHER"]]}
    )
    pooled = protocol.model_copy(
        update={"analysis": protocol.analysis.model_copy(update={"longitudinal": [spec]})}
    )
    data = _datasets()
    records = run_plan(pooled, data)["longitudinal"]
    rows = _cd4_long(data)
    group = np.where(rows["ARMCD"] == "NOTHER", "NOTHER", "IL2+IL2ART")
    ref = mmrm(rows["AVAL"], rows["USUBJID"], rows["AVISITN"], group, rows["BASE"])
    np.testing.assert_allclose(
        [r["difference"] for r in records],
        ref.contrast("IL2+IL2ART", "NOTHER").difference,
        rtol=1e-9,
    )
    assert records[0]["n"]["IL2+IL2ART"] > records[0]["n"]["NOTHER"]


def test_unstructured_failure_falls_back_to_compound_symmetry_and_says_so(protocol):
    data = _datasets()
    lb = data.adlb
    # week 4 kept for 3 participants per arm: too few for an unstructured covariance
    wk4 = lb[(lb["AVISIT"] == "WK04") & (lb["PARAMCD"] == "CD4")]
    drop = wk4.index.difference(wk4.groupby("ARMCD").head(3).index)
    thin = TrialDatasets(data.adsl, lb.drop(index=drop), data.adtte, data.adae)
    records = run_plan(protocol, thin)["longitudinal"]
    assert {r["covariance"] for r in records} == {"compound_symmetry"}
    assert {r["covariance_planned"] for r in records} == {"unstructured"}
    assert "unstructured covariance could not be fitted" in records[0]["note"]
    assert "(visit 4, 9 observations)" in records[0]["note"]


def test_safety_counts_participants_once_and_matches_scipy_fisher(protocol):
    data = _datasets()
    results = run_plan(protocol, data)
    fever = next(r for r in results["safety"] if r["term"] == "Fever" and r["arm"] == "IL2")
    ae = data.adae[data.adae["TRTEMFL"] == "Y"]
    with_fever = ae[ae["AEDECOD"] == "Fever"].groupby("ARMCD")["USUBJID"].nunique()
    a, c = int(with_fever.get("IL2", 0)), int(with_fever.get("NOTHER", 0))
    assert fever["events"] == {"IL2": a, "NOTHER": c}
    assert fever["n"] == {"IL2": 40, "NOTHER": 40}
    ref = stats.fisher_exact([[a, c], [40 - a, 40 - c]])
    assert fever["p_value"] == pytest.approx(ref.pvalue, rel=1e-9)
    assert fever["difference"] == pytest.approx((a - c) / 40)
    grade3 = next(r for r in results["safety"] if r["term"].startswith("Any AE of grade >= 3"))
    severe = ae[ae["AETOXGR"] >= 3].groupby("ARMCD")["USUBJID"].nunique()
    assert grade3["events"]["NOTHER"] == int(severe.get("NOTHER", 0))
    unlisted = [r for r in results["safety"] if r["term"] == "Injection site reaction"]
    assert all(r["events"] == {r["arm"]: 0, "NOTHER": 0} for r in unlisted)


def test_results_json_keys_types_and_typed_round_trip(protocol):
    result = analyze(protocol, _datasets())
    body = result.to_dict()
    assert list(body) == [
        "randomized",
        "primary",
        "secondary",
        "longitudinal",
        "time_to_event",
        "km",
        "safety",
    ]
    text = json.dumps(body, allow_nan=False)
    back = PlanResult.from_dict(json.loads(text))
    assert back == result
    assert isinstance(result.longitudinal[0], LongitudinalComparison)
    assert isinstance(result.safety[0], SafetyComparison)
    ancova = next(r for r in body["primary"] if r["method"] == "ancova")
    ttest = next(r for r in body["primary"] if r["method"] == "ttest")
    assert "adjusted_mean" in ancova and "adjusted_mean" not in ttest
    logrank = next(r for r in body["time_to_event"] if r["method"] == "logrank")
    assert "chi2" in logrank and "lr_p_value" not in logrank
    for record in body["longitudinal"]:
        assert isinstance(record["week"], int) and isinstance(record["difference"], float)
    with pytest.raises(AnalysisError, match="unknown keys"):
        PlanResult.from_dict({**body, "km": [{**body["km"][0], "extra": 1}]})


def test_a_protocol_without_the_new_sections_gives_the_first_results_shape(protocol):
    plain = protocol.model_copy(
        update={
            "analysis": protocol.analysis.model_copy(
                update={"secondary": [], "longitudinal": [], "safety": []}
            )
        }
    )
    body = run_plan(plain, _datasets())
    assert body["secondary"] == body["longitudinal"] == body["safety"] == []
    old = {k: body[k] for k in ("randomized", "primary", "time_to_event", "km")}
    assert PlanResult.from_dict(old).to_dict() == body
