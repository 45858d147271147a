"""SDTM tabulations of the captured data: DM, EX, LB, AE, CE, DS, SV, CM, one ``derive_*`` each.

Each function takes the protocol and a ``StoreExtract`` (the same read of the store the analysis
datasets come from) and returns a ``Dataset`` sorted by the SDTMIG 3.2 keys, with ``--SEQ``
numbered within USUBJID after sorting.

Choices, with the reason:

* Opportunistic events go to **CE** (Clinical Events). SDTMIG 3.2 section 6.2 puts there
  "clinical events of interest that would not be classified as adverse events", such as the
  protocol-defined efficacy endpoints of a trial; AE is for untoward medical occurrences
  reported as safety data, and MH for events before the study. Deaths are not CE terms: SDTMIG
  records a death as DS ``DSDECOD = "DEATH"`` with DM ``DTHFL``/``DTHDTC``.
* LB: the protocol's units are the original units; CD4 counts in cells/mm3 are also given in the
  SI standard unit 10^6/L (numerically equal). An HIV RNA below the assay limit is the character
  result ``"<50"`` (LBORRES and LBSTRESC) with LBSTRESN empty and LBLLOQ = 50, never a number.
* EX holds the days a dose was given (``administrations > 0``), with the dose per administration
  and the frequency actually taken (QD, BID); a planned day recorded with no dose taken is left
  out, as SDTMIG 3.2 EX records exposure, not its absence.
* CM holds one record per peri-cycle ART course (first to last day of the cycle), classed as
  antiretroviral therapy, so the regimens are visible beside other medications.
* RFSTDTC is the randomization date (the no-therapy arm receives no treatment); study days count
  from it as day 1.
* MedDRA is not applied: AEDECOD is the protocol's term list, noted in the define file.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from stalwart.analysis.datasets.source import StoreExtract
from stalwart.cdisc.trial_design import visit_schedule
from stalwart.cdisc.xpt import Dataset, Variable
from stalwart.protocol.schema import Protocol

__all__ = [
    "LAB_TESTS",
    "derive_ae",
    "derive_ce",
    "derive_cm",
    "derive_dm",
    "derive_ds",
    "derive_ex",
    "derive_lb",
    "derive_sv",
    "sdtm_domains",
]

LAB_TESTS: dict[str, tuple[str, str, str]] = {
    "CD4": ("CD4", "CD4 Cells", "10^6/L"),
    "CD4PCT": ("CD4LY", "CD4 Cells/Lymphocytes", "%"),
    "HIVRNA": ("HIV1RNA", "HIV-1 RNA", "copies/mL"),
}
"""Store test code -> (LBTESTCD, LBTEST, standard unit) in CDISC controlled terminology."""

_ROUTES = {"SC": "SUBCUTANEOUS", "PO": "ORAL", "IV": "INTRAVENOUS", "IM": "INTRAMUSCULAR"}
_FREQ = {1: "QD", 2: "BID", 3: "TID", 4: "QID"}
_DS_TERMS = {
    "COMPLETED": "COMPLETED",
    "LOST TO FOLLOW-UP": "LOST TO FOLLOW-UP",
    "WITHDREW": "WITHDRAWAL BY SUBJECT",
    "DEATH": "DEATH",
}

_ID = (
    Variable("STUDYID", "Study Identifier"),
    Variable("DOMAIN", "Domain Abbreviation"),
    Variable("USUBJID", "Unique Subject Identifier"),
)
_VISIT = (
    Variable("VISITNUM", "Visit Number", "Num"),
    Variable("VISIT", "Visit Name"),
    Variable("VISITDY", "Planned Study Day of Visit", "Num"),
)


def _iso(values: pd.Series) -> pd.Series:
    """ISO 8601 dates as text (empty when missing)."""
    return pd.to_datetime(values).dt.strftime("%Y-%m-%d").fillna("")


def _study_day(dates: pd.Series, reference: pd.Series) -> pd.Series:
    """SDTM --DY: the reference date is day 1, the day before it day -1."""
    delta = (pd.to_datetime(dates) - pd.to_datetime(reference)).dt.days
    return delta.where(delta < 0, delta + 1).astype(float)


def _rfstdtc(extract: StoreExtract) -> pd.Series:
    return extract.participants.set_index("usubjid")["randomization_date"]


def _finish(
    name: str,
    label: str,
    variables: tuple[Variable, ...],
    frame: pd.DataFrame,
    keys: tuple[str, ...],
    structure: str,
    klass: str,
) -> Dataset:
    """Sort by the keys, number --SEQ within USUBJID, keep the variables in order."""
    frame = frame.sort_values(list(keys), kind="mergesort").reset_index(drop=True)
    seq = f"{name}SEQ"
    if seq in [v.name for v in variables]:
        frame[seq] = (frame.groupby("USUBJID").cumcount() + 1).astype(float)
    frame = frame[[v.name for v in variables]]
    return Dataset(name, label, variables, frame, keys, structure, klass)


def _visit_columns(protocol: Protocol, codes: pd.Series) -> pd.DataFrame:
    schedule = {v.code: v for v in visit_schedule(protocol)}
    return pd.DataFrame(
        {
            "VISITNUM": codes.map(lambda c: float(schedule[c].visitnum)),
            "VISIT": codes.map(lambda c: schedule[c].name),
            "VISITDY": codes.map(lambda c: float(schedule[c].visitdy)),
        },
        index=codes.index,
    )


def derive_dm(protocol: Protocol, extract: StoreExtract) -> Dataset:
    """DM: one record per randomized participant."""
    variables = (
        *_ID,
        Variable("SUBJID", "Subject Identifier for the Study"),
        Variable("RFSTDTC", "Subject Reference Start Date/Time"),
        Variable("RFENDTC", "Subject Reference End Date/Time"),
        Variable("RFXSTDTC", "Date/Time of First Study Treatment"),
        Variable("RFXENDTC", "Date/Time of Last Study Treatment"),
        Variable("RFICDTC", "Date/Time of Informed Consent"),
        Variable("RFPENDTC", "Date/Time of End of Participation"),
        Variable("DTHDTC", "Date/Time of Death"),
        Variable("DTHFL", "Subject Death Flag"),
        Variable("SITEID", "Study Site Identifier"),
        Variable("AGE", "Age", "Num"),
        Variable("AGEU", "Age Units"),
        Variable("SEX", "Sex"),
        Variable("ARMCD", "Planned Arm Code"),
        Variable("ARM", "Description of Planned Arm"),
        Variable("ACTARMCD", "Actual Arm Code"),
        Variable("ACTARM", "Description of Actual Arm"),
        Variable("COUNTRY", "Country"),
    )
    p = extract.participants
    names = {a.code: a.name for a in protocol.arms}
    disp = extract.dispositions.set_index("usubjid")["disposition_date"]
    doses = extract.doses[extract.doses["administrations"] > 0].groupby("usubjid")["dose_date"]
    ce = extract.clinical_events
    deaths = ce[ce["category"] == "DEATH"].set_index("usubjid")["onset_date"]
    last = pd.concat(
        [
            pd.to_datetime(s)
            for s in (
                p.set_index("usubjid")["randomization_date"],
                extract.labs.groupby("usubjid")["visit_date"].max(),
                doses.max(),
                ce.groupby("usubjid")["onset_date"].max(),
                extract.adverse_events.groupby("usubjid")["start_date"].max(),
                disp,
            )
            if len(s)
        ],
        axis=1,
    ).max(axis=1)
    end = p["usubjid"].map(disp).where(p["usubjid"].isin(disp.index), p["usubjid"].map(last))
    frame = pd.DataFrame(
        {
            "STUDYID": protocol.study.id,
            "DOMAIN": "DM",
            "USUBJID": p["usubjid"],
            "SUBJID": p["usubjid"].str.rsplit("-", n=1).str[-1],
            "RFSTDTC": _iso(p["randomization_date"]),
            "RFENDTC": _iso(end),
            "RFXSTDTC": _iso(p["usubjid"].map(doses.min())),
            "RFXENDTC": _iso(p["usubjid"].map(doses.max())),
            "RFICDTC": _iso(p["consent_date"]),
            "RFPENDTC": _iso(p["usubjid"].map(last)),
            "DTHDTC": _iso(p["usubjid"].map(deaths)),
            "DTHFL": np.where(p["usubjid"].isin(deaths.index), "Y", ""),
            "SITEID": p["site"],
            "AGE": p["answers"].map(lambda a: float(a.get("age", np.nan))),
            "AGEU": "YEARS",
            "SEX": p["answers"].map(lambda a: str(a.get("sex", "U"))),
            "ARMCD": p["arm"],
            "ARM": p["arm"].map(names),
            "ACTARMCD": p["arm"],
            "ACTARM": p["arm"].map(names),
            "COUNTRY": p["country"],
        }
    )
    return _finish(
        "DM",
        "Demographics",
        variables,
        frame,
        ("STUDYID", "USUBJID"),
        "One record per subject",
        "SPECIAL PURPOSE",
    )


def derive_sv(protocol: Protocol, extract: StoreExtract) -> Dataset:
    """SV: one record per visit that took place."""
    variables = (
        *_ID,
        *_VISIT,
        Variable("SVSTDTC", "Start Date/Time of Visit"),
        Variable("SVENDTC", "End Date/Time of Visit"),
        Variable("SVSTDY", "Study Day of Start of Visit", "Num"),
    )
    visits = extract.labs[["usubjid", "visit_code", "visit_date"]].drop_duplicates(
        ["usubjid", "visit_code"]
    )
    ref = visits["usubjid"].map(_rfstdtc(extract))
    frame = pd.DataFrame(
        {
            "STUDYID": protocol.study.id,
            "DOMAIN": "SV",
            "USUBJID": visits["usubjid"],
            **_visit_columns(protocol, visits["visit_code"]),
            "SVSTDTC": _iso(visits["visit_date"]),
            "SVENDTC": _iso(visits["visit_date"]),
            "SVSTDY": _study_day(visits["visit_date"], ref),
        }
    )
    return _finish(
        "SV",
        "Subject Visits",
        variables,
        frame,
        ("STUDYID", "USUBJID", "VISITNUM"),
        "One record per subject visit",
        "SPECIAL PURPOSE",
    )


def derive_lb(protocol: Protocol, extract: StoreExtract) -> Dataset:
    """LB: every laboratory result, below-limit HIV RNA as ``"<limit"`` text."""
    variables = (
        *_ID,
        Variable("LBSEQ", "Sequence Number", "Num"),
        Variable("LBTESTCD", "Lab Test or Examination Short Name"),
        Variable("LBTEST", "Lab Test or Examination Name"),
        Variable("LBCAT", "Category for Lab Test"),
        Variable("LBORRES", "Result or Finding in Original Units"),
        Variable("LBORRESU", "Original Units"),
        Variable("LBSTRESC", "Character Result/Finding in Std Format"),
        Variable("LBSTRESN", "Numeric Result/Finding in Standard Units", "Num"),
        Variable("LBSTRESU", "Standard Units"),
        Variable("LBLLOQ", "Lower Limit of Quantitation", "Num"),
        Variable("LBBLFL", "Baseline Flag"),
        *_VISIT,
        Variable("LBDTC", "Date/Time of Specimen Collection"),
        Variable("LBDY", "Study Day of Specimen Collection", "Num"),
    )
    labs = extract.labs[extract.labs["test_code"].isin(LAB_TESTS)]
    below = labs["below_limit"].astype(bool)
    value = labs["value"].astype(float)
    text = value.map(_number_text)
    limit = labs["limit_value"].astype(float)
    censored = "<" + limit.map(_number_text)
    result = text.where(~below, censored)
    ref = labs["usubjid"].map(_rfstdtc(extract))
    test = labs["test_code"]
    frame = pd.DataFrame(
        {
            "STUDYID": protocol.study.id,
            "DOMAIN": "LB",
            "USUBJID": labs["usubjid"],
            "LBSEQ": np.nan,
            "LBTESTCD": test.map(lambda t: LAB_TESTS[t][0]),
            "LBTEST": test.map(lambda t: LAB_TESTS[t][1]),
            "LBCAT": np.where(test == "HIVRNA", "VIROLOGY", "IMMUNOLOGY"),
            "LBORRES": result,
            "LBORRESU": labs["unit"],
            "LBSTRESC": result,
            "LBSTRESN": value.where(~below),
            "LBSTRESU": test.map(lambda t: LAB_TESTS[t][2]),
            "LBLLOQ": limit.where(below, test.map(_lloq(protocol))),
            "LBBLFL": np.where(labs["visit_code"] == protocol.visits[0].code, "Y", ""),
            **_visit_columns(protocol, labs["visit_code"]),
            "LBDTC": _iso(labs["visit_date"]),
            "LBDY": _study_day(labs["visit_date"], ref),
        }
    )
    return _finish(
        "LB",
        "Laboratory Test Results",
        variables,
        frame,
        ("STUDYID", "USUBJID", "LBTESTCD", "VISITNUM"),
        "One record per lab test per visit per subject",
        "FINDINGS",
    )


def _lloq(protocol: Protocol) -> Callable[[str], float]:
    limits = {i.name: i.lower_limit for i in protocol.forms.LAB.items}

    def lloq(test: str) -> float:
        limit = limits.get(test)
        return np.nan if limit is None else float(limit)

    return lloq


def _number_text(x: float) -> str:
    """A result as the site would write it: no trailing ``.0`` on whole numbers."""
    if pd.isna(x):
        return ""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def derive_ex(protocol: Protocol, extract: StoreExtract) -> Dataset:
    """EX: one record per treatment day on which a dose was given."""
    variables = (
        *_ID,
        Variable("EXSEQ", "Sequence Number", "Num"),
        Variable("EXTRT", "Name of Treatment"),
        Variable("EXCAT", "Category of Treatment"),
        Variable("EXDOSE", "Dose", "Num"),
        Variable("EXDOSU", "Dose Units"),
        Variable("EXDOSFRQ", "Dosing Frequency per Interval"),
        Variable("EXROUTE", "Route of Administration"),
        Variable("EXSTDTC", "Start Date/Time of Treatment"),
        Variable("EXENDTC", "End Date/Time of Treatment"),
        Variable("EXSTDY", "Study Day of Start of Treatment", "Num"),
        Variable("EXENDY", "Study Day of End of Treatment", "Num"),
    )
    d = extract.doses[extract.doses["administrations"] > 0]
    t = protocol.treatments
    ref = d["usubjid"].map(_rfstdtc(extract))
    day = _study_day(d["dose_date"], ref)
    frame = pd.DataFrame(
        {
            "STUDYID": protocol.study.id,
            "DOMAIN": "EX",
            "USUBJID": d["usubjid"],
            "EXSEQ": np.nan,
            "EXTRT": d["treatment"].map(lambda c: t[c].name),
            "EXCAT": d["cycle"].map(lambda k: f"CYCLE {int(k)}"),
            "EXDOSE": d["dose"].astype(float),
            "EXDOSU": d["dose_unit"],
            "EXDOSFRQ": d["administrations"].map(lambda n: _FREQ.get(int(n), f"{int(n)} TIMES")),
            "EXROUTE": d["treatment"].map(lambda c: _ROUTES.get(t[c].route, t[c].route)),
            "EXSTDTC": _iso(d["dose_date"]),
            "EXENDTC": _iso(d["dose_date"]),
            "EXSTDY": day,
            "EXENDY": day,
        }
    )
    return _finish(
        "EX",
        "Exposure",
        variables,
        frame,
        ("STUDYID", "USUBJID", "EXTRT", "EXSTDTC"),
        "One record per constant dosing interval per subject",
        "INTERVENTIONS",
    )


def derive_cm(protocol: Protocol, extract: StoreExtract) -> Dataset:
    """CM: one record per peri-cycle antiretroviral course (the ART regimen of a cycle)."""
    variables = (
        *_ID,
        Variable("CMSEQ", "Sequence Number", "Num"),
        Variable("CMTRT", "Reported Name of Drug, Med, or Therapy"),
        Variable("CMCAT", "Category for Medication"),
        Variable("CMCLAS", "Medication Class"),
        Variable("CMINDC", "Indication"),
        Variable("CMDOSE", "Dose per Administration", "Num"),
        Variable("CMDOSU", "Dose Units"),
        Variable("CMDOSFRQ", "Dosing Frequency per Interval"),
        Variable("CMROUTE", "Route of Administration"),
        Variable("CMSTDTC", "Start Date/Time of Medication"),
        Variable("CMENDTC", "End Date/Time of Medication"),
        Variable("CMSTDY", "Study Day of Start of Medication", "Num"),
        Variable("CMENDY", "Study Day of End of Medication", "Num"),
    )
    art = [c for c, t in protocol.treatments.items() if t.anchor is not None]
    d = extract.doses[extract.doses["treatment"].isin(art) & (extract.doses["administrations"] > 0)]
    courses = (
        d.groupby(["usubjid", "treatment", "cycle"], as_index=False).agg(
            start=("dose_date", "min"),
            end=("dose_date", "max"),
            dose=("dose", "first"),
            unit=("dose_unit", "first"),
        )
        if len(d)
        else pd.DataFrame(columns=["usubjid", "treatment", "cycle", "start", "end", "dose", "unit"])
    )
    ref = courses["usubjid"].map(_rfstdtc(extract))
    t = protocol.treatments
    frame = pd.DataFrame(
        {
            "STUDYID": protocol.study.id,
            "DOMAIN": "CM",
            "USUBJID": courses["usubjid"],
            "CMSEQ": np.nan,
            "CMTRT": courses["treatment"].map(lambda c: t[c].name),
            "CMCAT": "ANTIRETROVIRAL THERAPY",
            "CMCLAS": "ANTIVIRALS FOR SYSTEMIC USE",
            "CMINDC": "HIV INFECTION",
            "CMDOSE": courses["dose"].astype(float),
            "CMDOSU": courses["unit"],
            "CMDOSFRQ": courses["treatment"].map(
                lambda c: _FREQ.get(t[c].administrations_per_day, "")
            ),
            "CMROUTE": courses["treatment"].map(lambda c: _ROUTES.get(t[c].route, t[c].route)),
            "CMSTDTC": _iso(courses["start"]),
            "CMENDTC": _iso(courses["end"]),
            "CMSTDY": _study_day(courses["start"], ref),
            "CMENDY": _study_day(courses["end"], ref),
        }
    )
    return _finish(
        "CM",
        "Concomitant Medications",
        variables,
        frame,
        ("STUDYID", "USUBJID", "CMTRT", "CMSTDTC"),
        "One record per recorded medication occurrence per subject",
        "INTERVENTIONS",
    )


def derive_ae(protocol: Protocol, extract: StoreExtract) -> Dataset:
    """AE: adverse events with the DAIDS grade in AETOXGR."""
    variables = (
        *_ID,
        Variable("AESEQ", "Sequence Number", "Num"),
        Variable("AETERM", "Reported Term for the Adverse Event"),
        Variable("AEDECOD", "Dictionary-Derived Term"),
        Variable("AESER", "Serious Event"),
        Variable("AEREL", "Causality"),
        Variable("AETOXGR", "Standard Toxicity Grade"),
        Variable("AESTDTC", "Start Date/Time of Adverse Event"),
        Variable("AEENDTC", "End Date/Time of Adverse Event"),
        Variable("AESTDY", "Study Day of Start of Adverse Event", "Num"),
        Variable("AEENDY", "Study Day of End of Adverse Event", "Num"),
    )
    ae = extract.adverse_events
    ref = ae["usubjid"].map(_rfstdtc(extract))
    frame = pd.DataFrame(
        {
            "STUDYID": protocol.study.id,
            "DOMAIN": "AE",
            "USUBJID": ae["usubjid"],
            "AESEQ": np.nan,
            "AETERM": ae["term"],
            "AEDECOD": ae["term"].str.upper(),
            "AESER": np.where(ae["serious"].astype(bool), "Y", "N"),
            "AEREL": ae["related"],
            "AETOXGR": ae["grade"].astype(int).astype(str),
            "AESTDTC": _iso(ae["start_date"]),
            "AEENDTC": _iso(ae["end_date"]),
            "AESTDY": _study_day(ae["start_date"], ref),
            "AEENDY": _study_day(ae["end_date"], ref),
        }
    )
    return _finish(
        "AE",
        "Adverse Events",
        variables,
        frame,
        ("STUDYID", "USUBJID", "AEDECOD", "AESTDTC"),
        "One record per adverse event per subject",
        "EVENTS",
    )


def derive_ce(protocol: Protocol, extract: StoreExtract) -> Dataset:
    """CE: opportunistic events (the efficacy events of interest); deaths are in DS and DM."""
    variables = (
        *_ID,
        Variable("CESEQ", "Sequence Number", "Num"),
        Variable("CETERM", "Reported Term for the Clinical Event"),
        Variable("CEDECOD", "Dictionary-Derived Term"),
        Variable("CECAT", "Category for Clinical Event"),
        Variable("CESPID", "Sponsor-Defined Identifier"),
        Variable("CESTDTC", "Start Date/Time of Clinical Event"),
        Variable("CESTDY", "Study Day of Start of Event", "Num"),
    )
    terms = {e.code: e.term for e in protocol.forms.CE.events}
    ce = extract.clinical_events[extract.clinical_events["category"] != "DEATH"]
    ref = ce["usubjid"].map(_rfstdtc(extract))
    frame = pd.DataFrame(
        {
            "STUDYID": protocol.study.id,
            "DOMAIN": "CE",
            "USUBJID": ce["usubjid"],
            "CESEQ": np.nan,
            "CETERM": ce["event_code"].map(terms),
            "CEDECOD": ce["event_code"].map(terms).str.upper(),
            "CECAT": ce["category"].map(lambda c: f"{c} EVENT"),
            "CESPID": ce["event_code"],
            "CESTDTC": _iso(ce["onset_date"]),
            "CESTDY": _study_day(ce["onset_date"], ref),
        }
    )
    return _finish(
        "CE",
        "Clinical Events",
        variables,
        frame,
        ("STUDYID", "USUBJID", "CEDECOD", "CESTDTC"),
        "One record per event per subject",
        "EVENTS",
    )


def derive_ds(protocol: Protocol, extract: StoreExtract) -> Dataset:
    """DS: consent and randomization milestones, and how follow-up ended."""
    variables = (
        *_ID,
        Variable("DSSEQ", "Sequence Number", "Num"),
        Variable("DSTERM", "Reported Term for the Disposition Event"),
        Variable("DSDECOD", "Standardized Disposition Term"),
        Variable("DSCAT", "Category for Disposition Event"),
        Variable("DSSTDTC", "Start Date/Time of Disposition Event"),
        Variable("DSSTDY", "Study Day of Start of Disposition Event", "Num"),
    )
    p = extract.participants
    d = extract.dispositions
    parts = [
        pd.DataFrame(
            {
                "usubjid": p["usubjid"],
                "term": "INFORMED CONSENT OBTAINED",
                "decod": "INFORMED CONSENT OBTAINED",
                "cat": "PROTOCOL MILESTONE",
                "date": p["consent_date"],
            }
        ),
        pd.DataFrame(
            {
                "usubjid": p["usubjid"],
                "term": "RANDOMIZED",
                "decod": "RANDOMIZED",
                "cat": "PROTOCOL MILESTONE",
                "date": p["randomization_date"],
            }
        ),
        pd.DataFrame(
            {
                "usubjid": d["usubjid"],
                "term": d["status"],
                "decod": d["status"].map(_DS_TERMS),
                "cat": "DISPOSITION EVENT",
                "date": d["disposition_date"],
            }
        ),
    ]
    rows = pd.concat([x for x in parts if len(x)], ignore_index=True)
    ref = rows["usubjid"].map(_rfstdtc(extract))
    frame = pd.DataFrame(
        {
            "STUDYID": protocol.study.id,
            "DOMAIN": "DS",
            "USUBJID": rows["usubjid"],
            "DSSEQ": np.nan,
            "DSTERM": rows["term"],
            "DSDECOD": rows["decod"],
            "DSCAT": rows["cat"],
            "DSSTDTC": _iso(rows["date"]),
            "DSSTDY": _study_day(rows["date"], ref),
        }
    )
    return _finish(
        "DS",
        "Disposition",
        variables,
        frame,
        ("STUDYID", "USUBJID", "DSSTDTC", "DSDECOD"),
        "One record per disposition status or protocol milestone per subject",
        "EVENTS",
    )


def sdtm_domains(protocol: Protocol, extract: StoreExtract) -> list[Dataset]:
    """Every subject-level SDTM domain of the store (trial design apart)."""
    derive = (
        derive_dm,
        derive_sv,
        derive_ex,
        derive_cm,
        derive_lb,
        derive_ae,
        derive_ce,
        derive_ds,
    )
    return [f(protocol, extract) for f in derive]
