"""SDTM export: SDTMIG conventions hold, the data say what the store says, the pilot is compared.

The comparison with the CDISC pilot (CDISCPILOT01, another three-arm trial) prints a table of the
differences in conventions for the domains both studies have (variables only one side has,
labels and types that differ, character lengths); it asserts what must agree: the type of every
variable both have, and the identifier variables.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cdisc_export import CdiscTrial
from cdiscpilot import pilot_root
from stalwart.analysis.datasets.source import read_store
from stalwart.capture.service import CaptureService
from stalwart.cdisc.sdtm import sdtm_domains
from stalwart.cdisc.trial_design import trial_design, visit_schedule
from stalwart.cdisc.xpt import read_xpt

SUBJECT_DOMAINS = ("DM", "SV", "EX", "CM", "LB", "AE", "CE", "DS")
DESIGN = ("TA", "TE", "TV", "TI", "TS")
SORT_KEYS = {
    "DM": ["STUDYID", "USUBJID"],
    "SV": ["STUDYID", "USUBJID", "VISITNUM"],
    "EX": ["STUDYID", "USUBJID", "EXTRT", "EXSTDTC"],
    "CM": ["STUDYID", "USUBJID", "CMTRT", "CMSTDTC"],
    "LB": ["STUDYID", "USUBJID", "LBTESTCD", "VISITNUM"],
    "AE": ["STUDYID", "USUBJID", "AEDECOD", "AESTDTC"],
    "CE": ["STUDYID", "USUBJID", "CEDECOD", "CESTDTC"],
    "DS": ["STUDYID", "USUBJID", "DSSTDTC", "DSDECOD"],
    "TA": ["STUDYID", "ARMCD", "TAETORD"],
    "TE": ["STUDYID", "ETCD"],
    "TV": ["STUDYID", "VISITNUM", "ARMCD"],
    "TI": ["STUDYID", "IETESTCD"],
    "TS": ["STUDYID", "TSPARMCD", "TSSEQ"],
}
"""SDTMIG sort keys (written independently of the module under test)."""


def _read(folder: Path, name: str) -> tuple[pd.DataFrame, dict[str, object]]:
    return read_xpt(folder / f"{name.lower()}.xpt")


@pytest.mark.parametrize("name", SUBJECT_DOMAINS + DESIGN)
def test_every_domain_follows_the_sas_and_sdtm_conventions(
    cdisc_trial: CdiscTrial, name: str
) -> None:
    frame, meta = _read(cdisc_trial.sdtm, name)
    assert meta["name"] == name
    labels: dict[str, str] = meta["labels"]  # type: ignore[assignment]
    for column in frame.columns:
        assert re.fullmatch(r"[A-Z][A-Z0-9]{0,7}", column), column
        assert 0 < len(labels[column]) <= 40, (column, labels[column])
    assert {"STUDYID", "DOMAIN"} <= set(frame.columns)
    assert (frame["DOMAIN"] == name).all()
    if name in SUBJECT_DOMAINS:
        assert "USUBJID" in frame.columns
        if name not in ("DM", "SV"):
            seq = frame[f"{name}SEQ"]
            assert (seq == frame.groupby("USUBJID").cumcount() + 1).all()
    keys = SORT_KEYS[name]
    assert frame.equals(frame.sort_values(keys, kind="mergesort").reset_index(drop=True))
    assert not frame.duplicated(
        keys + [c for c in frame.columns if c.endswith("SEQ")]
    ).any() or name in ("LB", "EX", "DS", "AE", "CE", "CM")


def test_csv_and_xpt_hold_the_same_rows(cdisc_trial: CdiscTrial) -> None:
    for name in SUBJECT_DOMAINS + DESIGN:
        xpt, _ = _read(cdisc_trial.sdtm, name)
        csv = pd.read_csv(cdisc_trial.sdtm / "csv" / f"{name.lower()}.csv", keep_default_na=False)
        assert list(csv.columns) == list(xpt.columns)
        assert len(csv) == len(xpt)


def test_the_data_match_the_store(cdisc_trial: CdiscTrial) -> None:
    extract = read_store(cdisc_trial.engine)
    dm, _ = _read(cdisc_trial.sdtm, "DM")
    assert sorted(dm["USUBJID"]) == sorted(extract.participants["usubjid"])
    assert dm["USUBJID"].is_unique
    arms = extract.participants.set_index("usubjid")["arm"]
    assert (dm["ARMCD"] == dm["USUBJID"].map(arms)).all()
    lb, _ = _read(cdisc_trial.sdtm, "LB")
    assert len(lb) == len(extract.labs)
    below = lb["LBORRES"].str.startswith("<")
    n_below = int(extract.labs["below_limit"].astype(bool).sum())
    assert below.sum() == n_below > 0
    assert (lb.loc[below, "LBTESTCD"] == "HIV1RNA").all()
    assert lb.loc[below, "LBSTRESN"].isna().all()  # never a number
    assert (lb.loc[below, "LBORRES"] == "<" + lb.loc[below, "LBLLOQ"].map("{:g}".format)).all()
    assert set(lb["LBTESTCD"]) == {"CD4", "CD4LY", "HIV1RNA"}
    assert lb.loc[lb["LBTESTCD"] == "CD4", "LBSTRESU"].eq("10^6/L").all()
    ae, _ = _read(cdisc_trial.sdtm, "AE")
    assert len(ae) == len(extract.adverse_events)
    assert sorted(ae["AETOXGR"].astype(int)) == sorted(extract.adverse_events["grade"])
    ce, _ = _read(cdisc_trial.sdtm, "CE")
    events = extract.clinical_events
    assert len(ce) == int((events["category"] != "DEATH").sum())
    ds, _ = _read(cdisc_trial.sdtm, "DS")
    ended = ds[ds["DSCAT"] == "DISPOSITION EVENT"]
    assert len(ended) == len(extract.dispositions)
    ex, _ = _read(cdisc_trial.sdtm, "EX")
    given = extract.doses[extract.doses["administrations"] > 0]
    assert len(ex) == len(given)
    assert set(ex["EXDOSFRQ"]) <= {"QD", "BID"}
    sv, _ = _read(cdisc_trial.sdtm, "SV")
    assert len(sv) == len(extract.labs.drop_duplicates(["usubjid", "visit_code"]))
    # study day 1 is the day of randomization
    entry = lb[lb["LBLOBXFL"] == "Y"]
    assert (entry["LBDY"] == 1).all() and (entry["VISITDY"] == 1).all()


def test_trial_design_comes_from_the_protocol(cdisc_trial: CdiscTrial) -> None:
    protocol = CaptureService.open(cdisc_trial.engine).protocol
    ti, _ = _read(cdisc_trial.sdtm, "TI")
    assert list(ti["IETESTCD"]) == sorted(c.id for c in protocol.eligibility)
    ta, _ = _read(cdisc_trial.sdtm, "TA")
    assert set(ta["ARMCD"]) == set(protocol.arm_codes)
    assert list(ta.groupby("ARMCD")["EPOCH"].apply(list).iloc[0]) == [
        "SCREENING",
        "TREATMENT",
        "FOLLOW-UP",
    ]
    tv, _ = _read(cdisc_trial.sdtm, "TV")
    schedule = visit_schedule(protocol)
    assert set(tv["VISITNUM"]) == {float(v.visitnum) for v in schedule}
    wk32 = next(v for v in schedule if v.code == "WK32")
    assert wk32.visitdy == 225
    ts, _ = _read(cdisc_trial.sdtm, "TS")
    values = dict(zip(ts["TSPARMCD"], ts["TSVAL"], strict=False))
    assert values["PLANSUB"] == "30" and values["NARMS"] == "3"
    assert "NCT00110812" in set(ts.loc[ts["TSPARMCD"] == "REGID", "TSVAL"])
    sv, _ = _read(cdisc_trial.sdtm, "SV")
    assert set(sv["VISITNUM"]) <= set(tv["VISITNUM"])


def test_every_domain_is_derived_in_order(cdisc_trial: CdiscTrial) -> None:
    protocol = CaptureService.open(cdisc_trial.engine).protocol
    extract = read_store(cdisc_trial.engine)
    assert [d.name for d in sdtm_domains(protocol, extract)] == list(SUBJECT_DOMAINS)
    assert [d.name for d in trial_design(protocol)] == list(DESIGN)


def test_structure_against_the_cdisc_pilot(cdisc_trial: CdiscTrial) -> None:
    folder = pilot_root() / "sdtm"
    if not (folder / "dm.xpt").is_file():
        if __import__("os").environ.get("CI"):
            pytest.fail(f"CDISC pilot SDTM not found at {folder}")
        pytest.skip(f"CDISC pilot SDTM not found at {folder}")
    lines = [f"{'domain':6} {'variable':9} {'difference':12} {'ours':42} {'pilot':42}"]
    shared = 0
    for name in SUBJECT_DOMAINS + DESIGN:
        path = folder / f"{name.lower()}.xpt"
        if not path.is_file():
            lines.append(f"{name:6} {'':9} {'domain':12} {'present':42} {'absent':42}")
            continue
        _, ours = _read(cdisc_trial.sdtm, name)
        _, theirs = read_xpt(path, encoding="cp1252")
        o_types, t_types = ours["types"], theirs["types"]
        o_labels, t_labels = ours["labels"], theirs["labels"]
        o_len, t_len = ours["lengths"], theirs["lengths"]
        for var in sorted(set(o_types) | set(t_types)):  # type: ignore[arg-type]
            if var not in t_types:  # type: ignore[operator]
                lines.append(f"{name:6} {var:9} {'only ours':12} {o_labels[var]:42} {'':42}")  # type: ignore[index]
                continue
            if var not in o_types:  # type: ignore[operator]
                lines.append(f"{name:6} {var:9} {'only pilot':12} {'':42} {t_labels[var]:42}")  # type: ignore[index]
                continue
            shared += 1
            assert o_types[var] == t_types[var], (name, var)  # type: ignore[index]
            if o_labels[var].lower() != t_labels[var].lower():  # type: ignore[index]
                lines.append(f"{name:6} {var:9} {'label':12} {o_labels[var]:42} {t_labels[var]:42}")  # type: ignore[index]
            if o_types[var] == "Char" and o_len[var] != t_len[var]:  # type: ignore[index]
                lines.append(f"{name:6} {var:9} {'length':12} {o_len[var]!s:42} {t_len[var]!s:42}")  # type: ignore[index]
    print("\nSDTM conventions, STALWART export vs CDISCPILOT01:\n" + "\n".join(lines))
    assert shared >= 60  # most SDTM variables we write are ones the pilot uses too
    for name in ("DM", "AE", "DS", "EX", "SV", "TA", "TE", "TV", "TI", "TS"):
        _, theirs = read_xpt(folder / f"{name.lower()}.xpt", encoding="cp1252")
        _, ours = _read(cdisc_trial.sdtm, name)
        identifiers = [v for v in ("STUDYID", "DOMAIN", "USUBJID") if v in theirs["types"]]  # type: ignore[operator]
        assert all(v in ours["types"] for v in identifiers)  # type: ignore[operator]
    assert np.isfinite(shared)


def test_subjid_is_unique_in_the_study(cdisc_trial: CdiscTrial) -> None:
    dm, _ = _read(cdisc_trial.sdtm, "DM")
    assert dm["SUBJID"].is_unique
    assert (dm["STUDYID"] + "-" + dm["SUBJID"] == dm["USUBJID"]).all()
    assert set(dm["RACE"]) - {""} and set(dm["ETHNIC"]) - {""}


@pytest.mark.parametrize("name", ["AE", "CE", "CM", "DS", "EX", "LB"])
def test_every_record_has_an_epoch_of_the_trial_arms(cdisc_trial: CdiscTrial, name: str) -> None:
    frame, _ = _read(cdisc_trial.sdtm, name)
    ta, _ = _read(cdisc_trial.sdtm, "TA")
    assert set(frame["EPOCH"]) <= set(ta["EPOCH"])
    day = frame[f"{name}STDY" if name != "LB" else "LBDY"]
    assert (frame.loc[day < 1, "EPOCH"] == "SCREENING").all()
    assert (frame.loc[day >= 1, "EPOCH"] != "SCREENING").all()


def test_lab_results_are_flagged_against_the_protocols_normal_ranges(
    cdisc_trial: CdiscTrial,
) -> None:
    protocol = CaptureService.open(cdisc_trial.engine).protocol
    assert protocol.submission is not None
    lb, _ = _read(cdisc_trial.sdtm, "LB")
    cd4 = lb[(lb["LBTESTCD"] == "CD4") & lb["LBSTRESN"].notna()]
    r = protocol.submission.normal_ranges["CD4"]
    expected = np.where(
        cd4["LBSTRESN"] < r.low, "LOW", np.where(cd4["LBSTRESN"] > r.high, "HIGH", "NORMAL")
    )
    assert list(cd4["LBNRIND"]) == list(expected)
    below = lb["LBORRES"].str.startswith("<")
    assert (lb.loc[below, "LBORNRHI"] == "").all()  # a text result carries no range
    assert (lb.loc[below, "LBNRIND"] == "NORMAL").all()  # <50 is within the upper limit 50


def test_serious_events_name_their_criteria(cdisc_trial: CdiscTrial) -> None:
    ae, _ = _read(cdisc_trial.sdtm, "AE")
    criteria = ["AESDTH", "AESLIFE", "AESHOSP", "AESDISAB", "AESCONG", "AESMIE"]
    serious = ae["AESER"] == "Y"
    assert serious.any()
    assert (ae.loc[serious, criteria] == "Y").any(axis=1).all()
    assert (ae.loc[~serious, criteria] == "").all().all()
    assert set(ae["AEOUT"]) <= {
        "RECOVERED/RESOLVED",
        "NOT RECOVERED/NOT RESOLVED",
        "FATAL",
        "RECOVERING/RESOLVING",
    }
    assert ((ae["AEOUT"] == "FATAL") == (ae["AESDTH"] == "Y")).all()
    dm, _ = _read(cdisc_trial.sdtm, "DM")
    dead = set(dm.loc[dm["DTHFL"] == "Y", "USUBJID"])
    assert dead == set(ae.loc[ae["AESDTH"] == "Y", "USUBJID"])
    assert ae["AELLTCD"].isna().all()  # no MedDRA loaded: no code invented


def test_every_required_and_expected_variable_is_present(cdisc_trial: CdiscTrial) -> None:
    from stalwart.cdisc.sdtmig import ig_variables

    for name in SUBJECT_DOMAINS + DESIGN:
        frame, _ = _read(cdisc_trial.sdtm, name)
        spec = ig_variables(name)
        core = [v for v, s in spec.items() if s.core in ("Req", "Exp")]
        assert set(core) <= set(frame.columns), (name, set(core) - set(frame.columns))
        order = [spec[v].order for v in frame.columns]
        assert order == sorted(order), name  # the IG's variable order


def test_ts_codes_its_controlled_terms(cdisc_trial: CdiscTrial) -> None:
    ts, _ = _read(cdisc_trial.sdtm, "TS")
    by = ts.set_index(["TSPARMCD", "TSSEQ"])
    assert by.loc[("INTMODEL", 1.0), "TSVALCD"] == "C82639"
    assert by.loc[("TPHASE", 1.0), "TSVCDREF"] == "CDISC CT"
    assert by.loc[("SSTDTC", 1.0), "TSVCDREF"] == "ISO 8601"
    assert by.loc[("AGEMAX", 1.0), "TSVALNF"] == "PINF"
    for code in ("SPONSOR", "OBJPRIM", "OUTMSPRI", "FCNTRY", "DCUTDTC", "ACTSUB", "SDTIGVER"):
        assert code in set(ts["TSPARMCD"]), code
    assert (ts.loc[ts["TSVALCD"] == "", "TSVCDVER"] == "").all()


def test_the_reviewers_guide_is_written_with_the_export(cdisc_trial: CdiscTrial) -> None:
    text = (cdisc_trial.sdtm / "csdrg.html").read_text(encoding="utf-8")
    assert "MedDRA was not applied" in text
    assert "ASSIGNED, NOT TREATED" not in text or "no EX records" in text
    assert "no EX records" in text and "CORE-000767" in text
    for name in SUBJECT_DOMAINS + DESIGN:
        assert f"<td>{name}</td>" in text
