"""ADaM-like derivations from a small hand-made store extract."""

from __future__ import annotations

import datetime as dt
import math

import pandas as pd
import pytest

from stalwart.analysis.datasets.bundle import derive_datasets
from stalwart.analysis.datasets.source import StoreExtract
from stalwart.protocol.load import load_protocol

D = dt.date


@pytest.fixture(scope="module")
def protocol():
    return load_protocol().protocol


def _answers(age: int, sex: str) -> dict[str, object]:
    return {"age": age, "sex": sex, "cd4": 500.0}


def _lab(usubjid, code, day, test, value, below=False, limit=None):
    return {
        "usubjid": usubjid,
        "visit_code": code,
        "visit_date": day,
        "test_code": test,
        "value": value,
        "unit": "",
        "below_limit": below,
        "limit_value": limit,
    }


@pytest.fixture(scope="module")
def extract() -> StoreExtract:
    participants = pd.DataFrame(
        [
            {
                "usubjid": "S-US01-0001",
                "site": "US01",
                "country": "USA",
                "screening_number": "A1",
                "answers": _answers(30, "M"),
                "consent_date": D(2006, 1, 1),
                "randomization_date": D(2006, 1, 10),
                "arm": "NOTHER",
            },
            {
                "usubjid": "S-US01-0002",
                "site": "US01",
                "country": "USA",
                "screening_number": "A2",
                "answers": _answers(41, "F"),
                "consent_date": D(2006, 2, 1),
                "randomization_date": D(2006, 2, 10),
                "arm": "IL2",
            },
        ]
    )
    labs = pd.DataFrame(
        [
            _lab("S-US01-0001", "ENTRY", D(2006, 1, 10), "CD4", 520.0),
            _lab("S-US01-0001", "ENTRY", D(2006, 1, 10), "HIVRNA", 10000.0),
            _lab("S-US01-0001", "WK32", D(2006, 8, 22), "CD4", 480.0),
            _lab("S-US01-0001", "WK32", D(2006, 8, 22), "HIVRNA", None, True, 50.0),
            _lab("S-US01-0001", "PRECYC1", D(2006, 1, 15), "CD4", 999.0),  # not an analysis visit
            _lab("S-US01-0002", "ENTRY", D(2006, 2, 10), "CD4", 400.0),
            _lab("S-US01-0002", "ENTRY", D(2006, 2, 10), "HIVRNA", None, True, 50.0),
        ]
    )
    screening = pd.DataFrame(
        [
            {
                "screening_number": "A1",
                "site": "US01",
                "screening_date": D(2006, 1, 1),
                "eligible": True,
                "reasons": [],
                "answers": {},
            },
            {
                "screening_number": "A0",
                "site": "US01",
                "screening_date": D(2005, 12, 20),
                "eligible": False,
                "reasons": ["IN2 not met: CD4"],
                "answers": {},
            },
            {
                "screening_number": "A2",
                "site": "US01",
                "screening_date": D(2006, 2, 1),
                "eligible": True,
                "reasons": [],
                "answers": {},
            },
        ]
    )
    doses = pd.DataFrame(
        [
            {
                "usubjid": "S-US01-0002",
                "treatment": "IL2",
                "cycle": 1,
                "dose_date": D(2006, 2, 17),
                "administrations": 2,
                "dose": 7.5,
                "dose_unit": "MIU",
            }
        ]
    )
    events = pd.DataFrame(
        [
            {
                "usubjid": "S-US01-0002",
                "event_code": "HZOSTER",
                "category": "OPPORTUNISTIC",
                "onset_date": D(2006, 5, 1),
            },
            {
                "usubjid": "S-US01-0002",
                "event_code": "DEATH",
                "category": "DEATH",
                "onset_date": D(2006, 6, 1),
            },
        ]
    )
    aes = pd.DataFrame(
        [
            {
                "usubjid": "S-US01-0002",
                "term": "Fever",
                "grade": 2,
                "start_date": D(2006, 2, 18),
                "end_date": D(2006, 2, 20),
                "related": "PROBABLE",
                "serious": False,
            }
        ]
    )
    disp = pd.DataFrame(
        [
            {"usubjid": "S-US01-0001", "status": "COMPLETED", "disposition_date": D(2009, 2, 20)},
            {"usubjid": "S-US01-0002", "status": "DEATH", "disposition_date": D(2006, 6, 1)},
        ]
    )
    return StoreExtract(screening, participants, labs, doses, events, aes, disp)


def test_adsl_has_one_row_per_participant_with_baseline_and_disposition(protocol, extract):
    adsl = derive_datasets(protocol, extract).adsl.set_index("USUBJID")
    assert list(adsl.index) == ["S-US01-0001", "S-US01-0002"]
    assert adsl.loc["S-US01-0001", "ARM"] == "No therapy"
    assert adsl.loc["S-US01-0002", "AGE"] == 41 and adsl.loc["S-US01-0002", "SEX"] == "F"
    assert adsl.loc["S-US01-0001", "BASECD4"] == 520.0
    assert adsl.loc["S-US01-0001", "BASEVL"] == pytest.approx(4.0)
    # censored at the assay limit: log10(50 / 2) by the SAP's half-limit rule
    assert adsl.loc["S-US01-0002", "BASEVL"] == pytest.approx(math.log10(25))
    assert adsl.loc["S-US01-0001", "EOSSTT"] == "COMPLETED"
    assert adsl.loc["S-US01-0002", "EOSSTT"] == "DISCONTINUED"
    assert adsl.loc["S-US01-0002", "DCSREAS"] == "DEATH"
    assert adsl.loc["S-US01-0002", "DTHFL"] == "Y" and adsl.loc["S-US01-0001", "DTHFL"] == ""
    assert adsl.loc["S-US01-0001", "LSTCNDT"] == pd.Timestamp(2009, 2, 20)


def test_adlb_keeps_analysis_visits_with_change_from_baseline(protocol, extract):
    adlb = derive_datasets(protocol, extract).adlb
    assert set(adlb["AVISIT"]) == {"ENTRY", "WK32"}  # the pre-cycle lab is not analysed
    cd4 = adlb[(adlb["USUBJID"] == "S-US01-0001") & (adlb["PARAMCD"] == "CD4")]
    wk32 = cd4[cd4["AVISIT"] == "WK32"].iloc[0]
    assert wk32["AVISITN"] == 32 and wk32["BASE"] == 520.0 and wk32["CHG"] == -40.0
    assert wk32["ADY"] == (D(2006, 8, 22) - D(2006, 1, 10)).days
    base = cd4[cd4["AVISIT"] == "ENTRY"].iloc[0]
    assert base["ABLFL"] == "Y" and math.isnan(base["CHG"])
    vl = adlb[
        (adlb["USUBJID"] == "S-US01-0001")
        & (adlb["PARAMCD"] == "LHIVRNA")
        & (adlb["AVISIT"] == "WK32")
    ].iloc[0]
    assert vl["BLQFL"] == "Y" and vl["AVAL"] == pytest.approx(math.log10(25))
    assert vl["CHG"] == pytest.approx(math.log10(25) - 4.0)


def test_adtte_first_qualifying_event_or_censored_at_last_contact(protocol, extract):
    adtte = derive_datasets(protocol, extract).adtte.set_index("USUBJID")
    event = adtte.loc["S-US01-0002"]
    assert event["CNSR"] == 0 and event["AVAL"] == (D(2006, 5, 1) - D(2006, 2, 10)).days
    assert event["EVNTDESC"] == "Herpes zoster, multidermatomal"
    censored = adtte.loc["S-US01-0001"]
    assert censored["CNSR"] == 1 and censored["EVNTDESC"] == "LAST CONTACT"
    assert censored["AVAL"] == (D(2009, 2, 20) - D(2006, 1, 10)).days


def test_adae_carries_arm_grade_and_treatment_emergent_flag(protocol, extract):
    adae = derive_datasets(protocol, extract).adae
    assert len(adae) == 1
    row = adae.iloc[0]
    assert (row["ARMCD"], row["AEDECOD"], row["AETOXGR"], row["AESER"], row["TRTEMFL"]) == (
        "IL2",
        "Fever",
        2,
        "N",
        "Y",
    )


@pytest.mark.parametrize("rule", ["exclude", "include"])
def test_adlb_analysis_windows_follow_the_plan(protocol, extract, rule) -> None:
    """A week-8 value two weeks late is in ADLB with its window; analysed as the plan says."""
    import dataclasses

    late = D(2006, 1, 10) + dt.timedelta(days=56 + 14)
    on_time = D(2006, 2, 10) + dt.timedelta(days=56 + 7)  # the window's last day
    labs = pd.concat(
        [
            extract.labs,
            pd.DataFrame(
                [
                    _lab("S-US01-0001", "WK08", late, "CD4", 610.0),
                    _lab("S-US01-0002", "WK08", on_time, "CD4", 450.0),
                ]
            ),
        ],
        ignore_index=True,
    )
    plan = protocol.analysis.model_copy(update={"out_of_window": rule})
    variant = protocol.model_copy(update={"analysis": plan})
    adlb = derive_datasets(variant, dataclasses.replace(extract, labs=labs)).adlb
    wk08 = adlb[(adlb["AVISIT"] == "WK08") & (adlb["PARAMCD"] == "CD4")].set_index("USUBJID")
    assert wk08.loc["S-US01-0001", ["AWTARGET", "AWLO", "AWHI", "ADY"]].tolist() == [
        56,
        49,
        63,
        70,
    ]
    assert wk08.loc["S-US01-0002", "ADY"] == 63 and wk08.loc["S-US01-0002", "ANL01FL"] == "Y"
    assert wk08.loc["S-US01-0001", "ANL01FL"] == ("Y" if rule == "include" else "")
    entry = adlb[adlb["AVISIT"] == "ENTRY"]
    assert (entry["ANL01FL"] == "Y").all() and (entry["AWLO"] == 0).all()
