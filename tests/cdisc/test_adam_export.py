"""ADaM export: the analysed tables unchanged in XPT, and the round trip through ``analyze --adam``.

``stalwart analyze --adam`` (``analysis.foreign``) on our own ADaM export must give the numbers
of the analysis from the store (``demo.analyze_database``, the plan) to floating-point equality:
hazard ratios, CIs and p of Cox and log-rank, Kaplan-Meier medians, and the week-32 CD4
comparisons (ANCOVA and Welch).
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pandas as pd
import pytest

from cdisc_export import CdiscTrial
from stalwart.analysis.datasets.bundle import load_datasets
from stalwart.capture.service import CaptureService
from stalwart.cdisc.adam_export import LABELS
from stalwart.cdisc.foreign import analyze_adam
from stalwart.cdisc.xpt import read_xpt
from stalwart.play.demo import analyze_database

NAMES = ("adsl", "adlb", "adtte", "adae")


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b


@pytest.mark.parametrize("name", NAMES)
def test_the_analysed_columns_read_back_exactly(cdisc_trial: CdiscTrial, name: str) -> None:
    protocol = CaptureService.open(cdisc_trial.engine).protocol
    datasets, _ = load_datasets(protocol, cdisc_trial.engine)
    derived: pd.DataFrame = getattr(datasets, name)
    frame, meta = read_xpt(cdisc_trial.adam / f"{name}.xpt")
    assert meta["name"] == name.upper()
    for column in frame.columns:
        assert re.fullmatch(r"[A-Z][A-Z0-9]{0,7}", column)
        assert len(meta["labels"][column]) <= 40  # type: ignore[index]
        assert meta["labels"][column] == LABELS[column][0]  # type: ignore[index]
    assert {"STUDYID", "USUBJID"} <= set(frame.columns)
    assert len(frame) == len(derived)
    for column in derived.columns:
        ours, source = frame[column], derived[column].reset_index(drop=True)
        if pd.api.types.is_datetime64_any_dtype(source):
            assert pd.to_datetime(ours).equals(source), column
        elif pd.api.types.is_numeric_dtype(source):
            assert np.array_equal(ours.to_numpy(float), source.to_numpy(float), equal_nan=True)
        else:
            assert list(ours) == list(source.fillna("").astype(str)), column
    if name == "adsl":
        arms = {a.code: i for i, a in enumerate(protocol.arms, start=1)}
        assert (frame["TRT01PN"] == frame["ARMCD"].map(arms)).all()
        assert frame["USUBJID"].is_unique


def test_analyze_adam_on_our_export_equals_the_analysis_from_the_store(
    cdisc_trial: CdiscTrial,
) -> None:
    store = analyze_database(cdisc_trial.engine).results
    # no flags: arms keyed by TRT01P (labels), the plan's control found by ARMCD, codes reported
    foreign = analyze_adam(cdisc_trial.adam).to_dict()
    codes = foreign["arm_codes"]
    assert foreign["arm_variable"] == "TRT01P" and codes[foreign["control"]] == "NOTHER"
    assert analyze_adam(cdisc_trial.adam, control="NOTHER").control == foreign["control"]
    assert analyze_adam(cdisc_trial.adam, control="1").control == foreign["control"]  # TRT01PN
    fields = ("hazard_ratio", "ci_low", "ci_high", "p_value")
    compared = 0
    hazard_ratios = 0
    for group in ("time_to_event", "km", "continuous"):
        for r in foreign[group]:
            r["arm"] = codes[r["arm"]]
            if isinstance(r.get("n"), dict):
                r["n"] = {codes[arm]: n for arm, n in r["n"].items()}
    theirs = {(r["parameter"], r["arm"], r["method"]): r for r in foreign["time_to_event"]}
    for row in store["time_to_event"]:
        key = (row["parameter"], row["arm"], row["method"])
        if "+" in row["arm"]:  # pooled arms are a plan comparison only
            continue
        for f in fields:
            assert _same(row.get(f), theirs[key].get(f)), (key, f, row.get(f), theirs[key][f])
            compared += row.get(f) is not None
        hazard_ratios += row.get("hazard_ratio") is not None
    km = {(r["parameter"], r["arm"]): r for r in foreign["km"]}
    for row in store["km"]:
        other = km[(row["parameter"], row["arm"])]
        assert (row["n"], row["events"]) == (other["n"], other["events"])
        for f in ("median", "ci_low", "ci_high"):
            assert _same(row[f], other[f]), (row, other)
    cont = {
        (r["parameter"], r["visit"], r["arm"], r["method"]): r
        for r in foreign["continuous"]
        if r["dataset"].upper() == "ADLB"
    }
    for row in store["primary"]:
        other = cont[(row["endpoint"], "WK32", row["arm"], row["method"])]
        assert row["n"] == other["n"]
        for f in ("difference", "ci_low", "ci_high", "p_value", "se", "df"):
            assert _same(row[f], other[f]), (row["method"], f, row[f], other[f])
            compared += 1
    assert compared >= 20
    assert hazard_ratios >= 1  # the fixture's seed gives events in NOTHER and IL2ART


def test_the_adam_follows_the_pharmaverse_conventions(cdisc_trial: CdiscTrial) -> None:
    """What {admiral} builds and reviewers expect: one ADSL row per subject with Y/N population
    flags, each PARAMCD (at most 8 characters) with one PARAM naming its unit, AVISITN numbering
    the visits in time order, and one baseline record (ABLFL) per subject and parameter."""
    adsl, _ = read_xpt(cdisc_trial.adam / "adsl.xpt")
    assert adsl["USUBJID"].is_unique
    for flag in ("ITTFL", "RANDFL"):
        assert set(adsl[flag]) <= {"Y", "N"}, flag
    assert set(adsl["DTHFL"]) <= {"Y", ""}
    assert (adsl["TRT01P"] != "").all() and adsl["TRT01PN"].notna().all()
    adlb, _ = read_xpt(cdisc_trial.adam / "adlb.xpt")
    params = adlb.groupby("PARAMCD")["PARAM"].unique()
    for code, names in params.items():
        assert re.fullmatch(r"[A-Z][A-Z0-9_]{0,7}", str(code))
        assert len(names) == 1 and re.search(r"\(.+\)$", names[0]), (code, names)
    order = adlb.groupby("AVISITN")["ADY"].median().sort_index()
    assert order.is_monotonic_increasing  # AVISITN orders the visits in time
    assert adlb.groupby("AVISIT")["AVISITN"].nunique().eq(1).all()
    base = adlb[adlb["ABLFL"] == "Y"]
    assert not base.duplicated(["USUBJID", "PARAMCD"]).any()
    adtte, _ = read_xpt(cdisc_trial.adam / "adtte.xpt")
    assert set(adtte["CNSR"]) <= {0.0, 1.0}
