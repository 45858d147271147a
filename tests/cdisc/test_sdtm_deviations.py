"""SDTM DV from capture's deviations log: a small trial with a late visit, a missed visit, a
reported deviation (long, accented text) and two late consents (one never randomized), exported
and checked against the store read with SQL; its define.xml and reviewer's guide. The shared
export trial logs no deviation: no DV, and the guide says so. SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from lxml import etree

from cdisc_export import CdiscTrial
from stalwart.capture.enrolment import Allocation
from stalwart.capture.service import CaptureService
from stalwart.cdisc.define_xml import ODM_NS
from stalwart.cdisc.export import export_cdisc
from stalwart.cdisc.sdtm_deviations import xpt_text
from stalwart.cdisc.sdtmig import ig_variables
from stalwart.cdisc.xpt import read_xpt

D = dt.date
DAY = dt.timedelta(days=1)
RAND = D(2008, 6, 2)
LABS = {"CD4": 450, "CD4PCT": 22.5, "HIVRNA": "<50"}
LONG = "Dose donnée au jour 6 du cycle au lieu du jour 5,\nla pharmacie était fermée. " * 5
DEF = "{http://www.cdisc.org/ns/def/v2.1}"


def _trial(
    trial: CaptureService, enrol: Callable[..., Allocation], answers: Callable[..., Any]
) -> None:
    a = enrol(trial, arm="IL2", screened=RAND - 5 * DAY, randomized=RAND)
    b = enrol(trial, arm="NOTHER", screened=RAND - 5 * DAY, randomized=RAND)
    trial.record_visit(a.usubjid, "WK08", RAND + 70 * DAY, LABS, "nurse", deviation_reason="away")
    trial.record_missed_visit(a.usubjid, "WK12", "participant in hospital", "nurse")
    trial.deviations.report(b.usubjid, "STUDY TREATMENT", LONG, RAND + 10 * DAY, "coord")
    trial.screen("US01", "C1", RAND - 3 * DAY, answers(), "nurse")
    trial.record_consent("C1", RAND - DAY, "nurse")
    trial.randomize("C1", RAND - DAY, RAND, "nurse")
    trial.screen("US01", "C2", RAND, answers(), "nurse")
    trial.record_consent("C2", RAND + DAY, "nurse")  # never randomized: not in DV


def test_dv_holds_every_logged_deviation_of_a_randomized_subject(
    trial: CaptureService,
    enrol: Callable[..., Allocation],
    eligible_answers: Callable[..., Any],
    tmp_path: Path,
) -> None:
    _trial(trial, enrol, eligible_answers)
    summary = export_cdisc("sdtm", trial.engine, tmp_path / "sdtm")
    with trial.engine.connect() as conn:
        logged = conn.execute(
            sa.text(
                "select p.usubjid, p.randomization_date, d.category, d.source, "
                "d.deviation_date, d.description from protocol_deviation d left join "
                "participant p on p.id = d.participant_id or p.screening_id = d.screening_id"
            )
        ).all()
    assert len(logged) == 5
    randomized = [r for r in logged if r.usubjid is not None]
    assert summary.rows["DV"] == len(randomized) == 4

    dv, meta = read_xpt(tmp_path / "sdtm" / "dv.xpt")
    spec = ig_variables("DV")
    assert list(dv.columns) == sorted(dv.columns, key=lambda n: spec[n].order)
    assert list(dv.columns) == [
        "STUDYID", "DOMAIN", "USUBJID", "DVSEQ", "DVTERM", "DVCAT", "DVSCAT", "EPOCH",
        "DVSTDTC", "DVSTDY",
    ]  # fmt: skip
    assert meta["label"] == "Protocol Deviations"
    assert (dv["DOMAIN"] == "DV").all()
    expected = sorted(
        (r.usubjid, r.category, r.source, str(r.deviation_date)[:10]) for r in randomized
    )
    got = sorted(zip(dv["USUBJID"], dv["DVCAT"], dv["DVSCAT"], dv["DVSTDTC"], strict=True))
    assert got == expected
    for r in randomized:
        start = D.fromisoformat(str(r.randomization_date)[:10])
        day = (D.fromisoformat(str(r.deviation_date)[:10]) - start).days
        row = dv[(dv["USUBJID"] == r.usubjid) & (dv["DVCAT"] == r.category)].iloc[0]
        assert row["DVSTDY"] == (day + 1 if day >= 0 else day)
        assert row["EPOCH"] == ("SCREENING" if day < 0 else "TREATMENT")
    seq = dv.groupby("USUBJID")["DVSEQ"].apply(list)
    assert all(s == list(range(1, len(s) + 1)) for s in seq)
    # the long accented report: ASCII, one line, cut to 200 characters
    (term,) = dv.loc[dv["DVCAT"] == "STUDY TREATMENT", "DVTERM"]
    assert term.isascii() and "\n" not in term and len(term) == 200 and term.endswith("...")
    assert term.startswith("Dose donnee au jour 6 du cycle au lieu du jour 5, la pharmacie")
    assert pd.isna(dv["DVSTDY"]).sum() == 0

    define = etree.parse(str(tmp_path / "sdtm" / "define.xml"))
    group = define.find(f".//{{{ODM_NS}}}ItemGroupDef[@OID='IG.DV']")
    assert group is not None
    refs = group.findall(f"{{{ODM_NS}}}ItemRef")
    assert [r.get("ItemOID") for r in refs] == [f"IT.DV.{c}" for c in dv.columns]
    assert {r.get("ItemOID"): r.get("Role") for r in refs}["IT.DV.DVTERM"] == "Topic"
    assert all(r.get("Role") for r in refs)
    assert group.find(f"{DEF}Class").get("Name") == "EVENTS"

    guide = (tmp_path / "sdtm" / "csdrg.html").read_text(encoding="utf-8")
    assert "DV holds the 4 protocol deviations of randomized subjects" in guide
    assert "1 deviation(s) logged before randomization" in guide
    assert "No DV" not in guide and "<td>DV</td>" in guide


def test_a_trial_without_deviations_has_no_dv_and_says_so(cdisc_trial: CdiscTrial) -> None:
    with cdisc_trial.engine.connect() as conn:
        assert conn.scalar(sa.text("select count(*) from protocol_deviation")) == 0
    assert not (cdisc_trial.sdtm / "dv.xpt").exists()
    guide = (cdisc_trial.sdtm / "csdrg.html").read_text(encoding="utf-8")
    assert "No DV dataset is submitted: no randomized subject has a logged protocol" in guide


def test_xpt_text_folds_to_one_ascii_line_of_at_most_200_characters() -> None:
    assert xpt_text("Visite tardive (café)\n\tà domicile") == "Visite tardive (cafe) a domicile"
    assert xpt_text("CD4 → 350") == "CD4 ? 350"
    assert xpt_text("x" * 200) == "x" * 200
    cut = xpt_text("y" * 201)
    assert len(cut) == 200 and cut.endswith("...")
