"""The foreign-trial analysis on small ADaM tables written as CSV (checked against lifelines,
statsmodels and scipy), and ``stalwart analyze`` end to end on the CDISC pilot and on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from lifelines import CoxPHFitter
from lifelines.statistics import logrank_test as lifelines_logrank
from lifelines.statistics import multivariate_logrank_test
from scipy import stats
from typer.testing import CliRunner

from cdiscpilot import pilot_adam
from stalwart.cdisc import foreign
from stalwart.cdisc.foreign import analyze_adam, run_adam_analysis
from stalwart.cli import app
from stalwart.errors import ConfigurationError, DatasetError

ARMS = ("Control", "Low", "High")
runner = CliRunner()


def _trial(seed: int = 3, n_per_arm: int = 40) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """ADSL, ADTTE (CNSR: 1 censored) and ADLB (baseline and two visits) of a 3-arm trial."""
    rng = np.random.default_rng(seed)
    adsl, tte, lab = [], [], []
    for k, arm in enumerate(ARMS):
        for i in range(n_per_arm):
            usubjid = f"T-{k}{i:03d}"
            adsl.append({"USUBJID": usubjid, "TRT01P": arm, "ITTFL": "Y"})
            t_event = rng.exponential(100 / (1 + 0.5 * k))
            t_cens = rng.uniform(20, 150)
            tte.append(
                {
                    "USUBJID": usubjid,
                    "PARAMCD": "OS",
                    "AVAL": round(min(t_event, t_cens), 1),
                    "CNSR": int(t_event > t_cens),
                    "TRTP": ARMS[(k + 1) % 3],  # a wrong copy: the analysis must use ADSL's
                }
            )
            base = rng.normal(50, 10)
            lab.append(_lab(usubjid, "Baseline", 0, base, base, "Y", "Y"))
            for week in (4, 8):
                value = 0.7 * base + 15 + 3 * k * week / 4 + rng.normal(0, 6)
                if rng.uniform() < 0.1:
                    value = np.nan  # missed visit
                lab.append(_lab(usubjid, f"Week {week}", week, value, base, "Y", ""))
                # a second record at the visit, not the analysis one
                lab.append(_lab(usubjid, f"Week {week}", week, 999.0, base, "", ""))
    return pd.DataFrame(adsl), pd.DataFrame(tte), pd.DataFrame(lab)


def _lab(
    usubjid: str, visit: str, visitnum: int, aval: float, base: float, anl: str, abl: str
) -> dict[str, object]:
    return {
        "USUBJID": usubjid,
        "PARAMCD": "ALB",
        "AVISIT": visit,
        "AVISITN": visitnum,
        "AVAL": aval,
        "BASE": base,
        "ANL01FL": anl,
        "ABLFL": abl,
    }


def _folder(
    root: Path, adsl: pd.DataFrame, tte: pd.DataFrame | None, lab: pd.DataFrame | None
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    adsl.to_csv(root / "adsl.csv", index=False)
    if tte is not None:
        tte.to_csv(root / "adtte.csv", index=False)
    if lab is not None:
        lab.to_csv(root / "adlb.csv", index=False, float_format="%.17g")
    return root


@pytest.fixture(scope="module")
def trial() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    return _trial()


@pytest.fixture(scope="module")
def results(trial, tmp_path_factory) -> dict:
    folder = _folder(tmp_path_factory.mktemp("adam"), *trial)
    return analyze_adam(folder, control="Control").to_dict()


def _two_arms(tte: pd.DataFrame, adsl: pd.DataFrame, arm: str) -> pd.DataFrame:
    rows = tte.drop(columns="TRTP").merge(adsl[["USUBJID", "TRT01P"]], on="USUBJID")
    rows = rows[rows["TRT01P"].isin([arm, "Control"])].copy()
    rows["E"] = 1 - rows["CNSR"]
    rows["X"] = (rows["TRT01P"] == arm).astype(float)
    return rows


@pytest.mark.parametrize("arm", ["Low", "High"])
def test_cox_efron_and_logrank_match_lifelines(trial, results, arm) -> None:
    adsl, tte, _ = trial
    rows = _two_arms(tte, adsl, arm)
    cph = CoxPHFitter().fit(rows[["AVAL", "E", "X"]], "AVAL", "E")  # Efron ties
    cox = next(
        r for r in results["time_to_event"] if r["arm"] == arm and r["method"] == "cox_efron"
    )
    summary = cph.summary.loc["X"]
    assert cox["hazard_ratio"] == pytest.approx(summary["exp(coef)"], rel=1e-5)
    assert cox["ci_low"] == pytest.approx(summary["exp(coef) lower 95%"], rel=1e-5)
    assert cox["ci_high"] == pytest.approx(summary["exp(coef) upper 95%"], rel=1e-5)
    assert cox["p_value"] == pytest.approx(summary["p"], rel=1e-4)
    lrt = cph.log_likelihood_ratio_test()
    assert cox["lr_p_value"] == pytest.approx(lrt.p_value, rel=1e-4)
    # CNSR follows ADaM: 0 is the event
    assert cox["events"] == {
        arm: int(rows.loc[rows["X"] == 1, "E"].sum()),
        "Control": int(rows.loc[rows["X"] == 0, "E"].sum()),
    }
    assert cox["n"] == {arm: 40, "Control": 40}
    treated, control = rows[rows["X"] == 1], rows[rows["X"] == 0]
    ref = lifelines_logrank(treated["AVAL"], control["AVAL"], treated["E"], control["E"])
    lr = next(r for r in results["time_to_event"] if r["arm"] == arm and r["method"] == "logrank")
    assert lr["p_value"] == pytest.approx(ref.p_value, rel=1e-6)
    assert lr["chi2"] == pytest.approx(ref.test_statistic, rel=1e-6)


def test_k_group_logrank_and_km_per_arm(trial, results) -> None:
    adsl, tte, _ = trial
    rows = tte.drop(columns="TRTP").merge(adsl, on="USUBJID")
    ref = multivariate_logrank_test(rows["AVAL"], rows["TRT01P"], 1 - rows["CNSR"])
    (overall,) = results["logrank_overall"]
    assert overall["p_value"] == pytest.approx(ref.p_value, rel=1e-6)
    assert overall["df"] == 2 and overall["arms"] == ["Control", "High", "Low"]
    km = {k["arm"]: k for k in results["km"]}
    assert set(km) == set(ARMS)
    for arm, rec in km.items():
        mine = rows[rows["TRT01P"] == arm]
        assert rec["n"] == len(mine) and rec["events"] == int((mine["CNSR"] == 0).sum())
        assert rec["parameter"] == "OS"
        if rec["median"] is not None:
            assert rec["ci_low"] <= rec["median"] <= (rec["ci_high"] or np.inf)


def _analysis_rows(lab: pd.DataFrame, adsl: pd.DataFrame, visit: str) -> pd.DataFrame:
    rows = lab[(lab["ANL01FL"] == "Y") & (lab["AVISIT"] == visit) & lab["AVAL"].notna()]
    return rows.merge(adsl[["USUBJID", "TRT01P"]], on="USUBJID")


@pytest.mark.parametrize("visit", ["Week 4", "Week 8"])
def test_bds_ancova_and_welch_match_statsmodels_and_scipy(trial, results, visit) -> None:
    adsl, _, lab = trial
    rows = _analysis_rows(lab, adsl, visit)
    fit = smf.ols("AVAL ~ C(TRT01P, Treatment('Control')) + BASE", data=rows).fit()
    for arm in ("Low", "High"):
        term = f"C(TRT01P, Treatment('Control'))[T.{arm}]"
        got = {
            r["method"]: r for r in results["continuous"] if r["visit"] == visit and r["arm"] == arm
        }
        assert set(got) == {"ancova", "ttest"}
        anc = got["ancova"]
        assert anc["difference"] == pytest.approx(fit.params[term], rel=1e-9)
        assert anc["se"] == pytest.approx(fit.bse[term], rel=1e-9)
        assert anc["p_value"] == pytest.approx(fit.pvalues[term], rel=1e-9)
        low, high = fit.conf_int().loc[term]
        assert (anc["ci_low"], anc["ci_high"]) == pytest.approx((low, high), rel=1e-9)
        assert anc["df"] == fit.df_resid
        x = rows.loc[rows["TRT01P"] == arm, "AVAL"]
        y = rows.loc[rows["TRT01P"] == "Control", "AVAL"]
        welch = stats.ttest_ind(x, y, equal_var=False)
        assert got["ttest"]["p_value"] == pytest.approx(welch.pvalue, rel=1e-9)
        assert got["ttest"]["n"] == {arm: len(x), "Control": len(y)}
        assert got["ttest"]["mean"][arm] == pytest.approx(x.mean(), rel=1e-12)


def test_bds_skips_baseline_and_non_analysis_records(results) -> None:
    visits = [r["visit"] for r in results["continuous"]]
    assert "Baseline" not in visits
    assert sorted(set(visits)) == ["Week 4", "Week 8"]
    assert visits.index("Week 4") < visits.index("Week 8")  # AVISITN order
    assert all(max(r["mean"].values()) < 500 for r in results["continuous"])  # no 999 rows


def test_bds_without_base_runs_welch_only(trial, tmp_path) -> None:
    adsl, _, lab = trial
    folder = _folder(tmp_path, adsl, None, lab.drop(columns=["BASE"]))
    rows = analyze_adam(folder, control="Control").continuous
    assert {r.method for r in rows} == {"ttest"} and len(rows) == 4


def test_duplicate_analysis_records_are_refused(trial, tmp_path) -> None:
    adsl, _, lab = trial
    folder = _folder(tmp_path, adsl, None, lab.drop(columns=["ANL01FL"]))
    with pytest.raises(DatasetError, match=r"ADLB has two analysis records .*ANL01FL = 'Y'"):
        analyze_adam(folder)


def test_no_events_and_one_arm_without_events_give_notes(trial, tmp_path) -> None:
    adsl, tte, _ = trial
    none = tte.assign(CNSR=1)
    res = analyze_adam(_folder(tmp_path / "none", adsl, none, None), control="Control")
    assert all(r.hazard_ratio is None and r.p_value is None for r in res.time_to_event)
    assert all("no events" in (r.note or "") for r in res.time_to_event)
    assert res.logrank_overall[0].note == "no events: not estimable"
    control_ids = adsl.loc[adsl["TRT01P"] == "Control", "USUBJID"]
    some = tte.assign(CNSR=np.where(tte["USUBJID"].isin(control_ids), 1, tte["CNSR"]))
    res = analyze_adam(_folder(tmp_path / "some", adsl, some, None), control="Control")
    cox = [r for r in res.time_to_event if r.method == "cox_efron"]
    assert all(r.hazard_ratio is None and r.note and "no events in Control" in r.note for r in cox)
    assert all(r.lr_p_value is not None and r.score_p_value is not None for r in cox)
    assert all(r.p_value is not None for r in res.time_to_event if r.method == "logrank")


def test_three_arms_say_the_comparisons_are_pairwise_two_arm_fits(results) -> None:
    (note,) = [n for n in results["notes"] if n.startswith("3 arms")]
    assert "two-arm fit on that arm's and Control's records only" in note
    assert "logrank_overall is the test across all arms" in note


def test_one_arm_only_gives_km_and_a_note(trial, tmp_path) -> None:
    adsl, tte, _ = trial
    one = adsl[adsl["TRT01P"] == "High"]
    res = analyze_adam(_folder(tmp_path, one, tte[tte["USUBJID"].isin(one["USUBJID"])], None))
    assert res.time_to_event == () and res.control == "High"
    assert len(res.km) == 1 and res.km[0].n == 40
    assert res.logrank_overall[0].note is not None
    assert any("one arm only" in note for note in res.notes)


def test_results_json_is_written_and_nothing_on_error(trial, tmp_path) -> None:
    folder = _folder(tmp_path / "adam", *trial)
    res, path = run_adam_analysis(folder, tmp_path / "out", population="ITTFL")
    body = json.loads(path.read_text())
    assert body["randomized"] == {"total": 120, "by_arm": {"Control": 40, "High": 40, "Low": 40}}
    assert body["provenance"]["options"]["population"] == "ITTFL"
    assert {f["dataset"] for f in body["provenance"]["inputs"]} == {"ADSL", "ADTTE", "ADLB"}
    assert res.to_dict()["km"] == body["km"]
    with pytest.raises(DatasetError):
        run_adam_analysis(folder, tmp_path / "never", control="Nope")
    assert not (tmp_path / "never").exists()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConfigurationError, match="is a file"):
        run_adam_analysis(folder, tmp_path / "afile")


def test_results_json_is_the_same_bytes_whatever_the_hash_seed(trial, tmp_path) -> None:
    """Two processes with different string hashing write the same results.json (creation time
    aside): nothing in it may follow a set's order."""
    adsl = trial[0].assign(ARMCD=trial[0]["TRT01P"].str.upper().str[:3])
    folder = _folder(tmp_path / "adam", adsl, *trial[1:])
    bodies = []
    for seed in ("1", "2", "3"):
        out = tmp_path / f"out{seed}"
        command = [sys.executable, "-m", "stalwart", "analyze", "--adam", str(folder), "--out"]
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run([*command, str(out)], env=env, check=True, capture_output=True)
        text = (out / "results.json").read_text(encoding="utf-8")
        created = json.loads(text)["provenance"]["created"]
        bodies.append(text.replace(created, "").replace(str(out), ""))
    assert json.loads(bodies[0])["arm_codes"] == {"Control": "CON", "High": "HIG", "Low": "LOW"}
    assert bodies[0] == bodies[1] == bodies[2]


def test_public_names() -> None:
    assert "run_adam_analysis" in foreign.__all__ and "ForeignResults" in foreign.__all__


# ---------------------------------------------------------------- the command


def test_cli_analyze_runs_on_the_cdisc_pilot(tmp_path) -> None:
    adam = pilot_adam()
    out = tmp_path / "pilot"
    result = runner.invoke(app, ["analyze", "--adam", str(adam), "--out", str(out)])
    assert result.exit_code == 0, result.output
    body = json.loads((out / "results.json").read_text())
    assert body["control"] == "Placebo" and body["arm_variable"] == "TRT01P"
    assert body["randomized"]["total"] == 254
    assert [k["arm"] for k in body["km"]] == [
        "Placebo",
        "Xanomeline High Dose",
        "Xanomeline Low Dose",
    ]
    assert set(body["km"][0]) == {"parameter", "arm", "median", "ci_low", "ci_high", "n", "events"}
    assert {r["parameter"] for r in body["time_to_event"]} == {"TTDE"}
    assert {r["dataset"] for r in body["continuous"]} == {"ADQSCIBC"}
    assert "TTDE" in result.output and "results:" in result.output


def _bad_folders(tmp_path: Path, trial) -> dict[str, tuple[list[str], str]]:
    adsl, tte, lab = trial
    no_adsl = tmp_path / "no_adsl"
    no_adsl.mkdir()
    tte.to_csv(no_adsl / "adtte.csv", index=False)
    no_cnsr = _folder(tmp_path / "no_cnsr", adsl, tte.drop(columns="CNSR"), None)
    good = _folder(tmp_path / "good", adsl, tte, lab)
    junk = _folder(tmp_path / "junk", adsl, None, None)
    (junk / "adtte.xpt").write_bytes(b"\x00\x01 not an xpt file at all")
    inf = _folder(tmp_path / "inf", adsl, tte.astype({"AVAL": object}), None)
    text = (inf / "adtte.csv").read_text().splitlines()
    text[5] = text[5].replace(f",{tte['AVAL'].iloc[4]},", ",inf,")
    (inf / "adtte.csv").write_text("\n".join(text) + "\n")
    no_aval = _folder(
        tmp_path / "no_aval", adsl, tte.assign(AVAL=tte["AVAL"].mask(tte.index == 7)), None
    )
    no_cnsr_value = _folder(
        tmp_path / "no_cnsr_value",
        adsl,
        tte.astype({"CNSR": object}).assign(CNSR=lambda f: f["CNSR"].mask(f.index == 3, "")),
        None,
    )
    header = _folder(tmp_path / "header", adsl, tte.iloc[:0], lab)
    return {
        "missing dir": (["--adam", str(tmp_path / "absent")], "does not exist"),
        "no ADSL": (["--adam", str(no_adsl)], "no ADSL"),
        "ADTTE without CNSR": (["--adam", str(no_cnsr)], "ADTTE has no CNSR"),
        "unknown control": (["--adam", str(good), "--control", "Nope"], "is not an arm"),
        "unknown population": (["--adam", str(good), "--population", "SAFFL"], "ITTFL"),
        "junk XPT": (["--adam", str(junk)], "not a readable SAS transport"),
        "AVAL inf": (["--adam", str(inf)], "ADTTE.AVAL is inf for USUBJID T-0004"),
        "AVAL missing": (
            ["--adam", str(no_aval)],
            "ADTTE.AVAL is missing for 1 record(s) of analysed subjects (first USUBJID T-0007",
        ),
        "CNSR missing": (["--adam", str(no_cnsr_value)], "ADTTE.CNSR is missing for 1 record(s)"),
        "ADTTE header only": (
            ["--adam", str(header)],
            "ADTTE (adtte.csv) has variables but no records",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing dir",
        "no ADSL",
        "ADTTE without CNSR",
        "unknown control",
        "unknown population",
        "junk XPT",
        "AVAL inf",
        "AVAL missing",
        "CNSR missing",
        "ADTTE header only",
    ],
)
def test_cli_bad_input_exits_2_with_a_message_and_writes_nothing(trial, tmp_path, case) -> None:
    args, message = _bad_folders(tmp_path, trial)[case]
    out = tmp_path / "out"
    result = runner.invoke(app, ["analyze", *args, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and message in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert not out.exists()
