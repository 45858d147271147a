"""SDTM tabulations of the captured data: DM, SV and LB here, the other domains beside them.

Each function takes the protocol and a ``StoreExtract`` (the same read of the store the analysis
datasets come from) and returns a ``Dataset`` sorted by the SDTMIG keys, with ``--SEQ`` numbered
within USUBJID and the variables in SDTMIG 3.4 order (:func:`~.sdtm_common.finish`). EX and CM
are in :mod:`~.sdtm_interventions`, AE, CE and DS in :mod:`~.sdtm_events`, DV (protocol
deviations, from capture's deviations log) in :mod:`~.sdtm_deviations`.

Choices, with the reason:

* SUBJID is the site and the site's number (``AR01-0001``): unique in the study, as SDTMIG asks;
  the number alone repeats across sites.
* RACE and ETHNIC are the screening form's answers (CDISC terms); a participant screened before
  the form asked them has them empty.
* LB: the protocol's units are the original units; CD4 counts in cells/mm3 are also given in the
  SI standard unit 10^6/L (numerically equal). An HIV RNA below the assay limit is the character
  result ``"<50"`` (LBORRES and LBSTRESC) with LBSTRESN empty and LBLLOQ = 50, never a number.
  Normal ranges are the protocol's (``[submission.normal_ranges]``); LBNRIND compares each result
  with them (a censored ``"<50"`` is NORMAL when 50 is at most the upper limit; its range columns
  stay empty, as a non-numeric result carries none). LBLOBXFL flags the entry visit, the last
  observation before any exposure (treatment starts after randomization).
* A subject of an arm with study treatment who never had a dose has ARMNRS ``ASSIGNED, NOT
  TREATED`` and ACTARMCD/ACTARM empty, as SDTMIG 3.4 asks. The no-therapy arm's subjects received
  what their arm plans (nothing): ACTARMCD is their arm, ARMNRS empty, and they have no EX records
  (CORE's rules 885/886 expect EX or ARMNRS for every subject; the reviewer's guide explains).
* RFSTDTC is the randomization date (the no-therapy arm receives no treatment); study days count
  from it as day 1.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from stalwart.analysis.datasets.source import StoreExtract
from stalwart.cdisc.meddra import MedDRA
from stalwart.cdisc.sdtm_common import (
    EPOCH,
    ID,
    VISIT,
    epochs,
    finish,
    iso,
    rfstdtc,
    study_day,
    visit_columns,
)
from stalwart.cdisc.sdtm_deviations import derive_dv
from stalwart.cdisc.sdtm_events import derive_ae, derive_ce, derive_ds
from stalwart.cdisc.sdtm_interventions import derive_cm, derive_ex
from stalwart.cdisc.xpt import Dataset, Variable
from stalwart.protocol.schema import Protocol

__all__ = [
    "LAB_TESTS",
    "derive_ae",
    "derive_ce",
    "derive_cm",
    "derive_dm",
    "derive_ds",
    "derive_dv",
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


def derive_dm(protocol: Protocol, extract: StoreExtract) -> Dataset:
    """DM: one record per randomized participant."""
    variables = (
        *ID,
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
        Variable("RACE", "Race"),
        Variable("ETHNIC", "Ethnicity"),
        Variable("ARMCD", "Planned Arm Code"),
        Variable("ARM", "Description of Planned Arm"),
        Variable("ACTARMCD", "Actual Arm Code"),
        Variable("ACTARM", "Description of Actual Arm"),
        Variable("ARMNRS", "Reason Arm and/or Actual Arm is Null"),
        Variable("ACTARMUD", "Description of Unplanned Actual Arm"),
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
    # not treated: in an arm with study treatment but never dosed (the untreated arm is its plan)
    armed = p["arm"].isin([a.code for a in protocol.arms if a.treatments])
    treated = p["usubjid"].isin(doses.min().index) | ~armed
    end = p["usubjid"].map(disp).where(p["usubjid"].isin(disp.index), p["usubjid"].map(last))
    frame = pd.DataFrame(
        {
            "STUDYID": protocol.study.id,
            "DOMAIN": "DM",
            "USUBJID": p["usubjid"],
            "SUBJID": p["usubjid"].str.removeprefix(f"{protocol.study.id}-"),
            "RFSTDTC": iso(p["randomization_date"]),
            "RFENDTC": iso(end),
            "RFXSTDTC": iso(p["usubjid"].map(doses.min())),
            "RFXENDTC": iso(p["usubjid"].map(doses.max())),
            "RFICDTC": iso(p["consent_date"]),
            "RFPENDTC": iso(p["usubjid"].map(last)),
            "DTHDTC": iso(p["usubjid"].map(deaths)),
            "DTHFL": np.where(p["usubjid"].isin(deaths.index), "Y", ""),
            "SITEID": p["site"],
            "AGE": p["answers"].map(lambda a: float(a.get("age", np.nan))),
            "AGEU": "YEARS",
            "SEX": p["answers"].map(lambda a: str(a.get("sex", "U"))),
            "RACE": p["answers"].map(lambda a: str(a.get("race", ""))),
            "ETHNIC": p["answers"].map(lambda a: str(a.get("ethnicity", ""))),
            "ARMCD": p["arm"],
            "ARM": p["arm"].map(names),
            "ACTARMCD": p["arm"].where(treated, ""),
            "ACTARM": p["arm"].map(names).where(treated, ""),
            "ARMNRS": np.where(treated, "", "ASSIGNED, NOT TREATED"),
            "ACTARMUD": "",
            "COUNTRY": p["country"],
        }
    )
    return finish(
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
        *ID,
        *VISIT,
        Variable("SVPRESP", "Pre-specified"),
        Variable("SVOCCUR", "Occurrence"),
        Variable("SVSTDTC", "Start Date/Time of Visit"),
        Variable("SVENDTC", "End Date/Time of Visit"),
        Variable("SVSTDY", "Study Day of Start of Visit", "Num"),
        Variable("SVENDY", "Study Day of End of Visit", "Num"),
    )
    visits = extract.labs[["usubjid", "visit_code", "visit_date"]].drop_duplicates(
        ["usubjid", "visit_code"]
    )
    ref = visits["usubjid"].map(rfstdtc(extract))
    frame = pd.DataFrame(
        {
            "STUDYID": protocol.study.id,
            "DOMAIN": "SV",
            "USUBJID": visits["usubjid"],
            **visit_columns(protocol, visits["visit_code"]),
            "SVPRESP": "Y",
            "SVOCCUR": "Y",
            "SVSTDTC": iso(visits["visit_date"]),
            "SVENDTC": iso(visits["visit_date"]),
            "SVSTDY": study_day(visits["visit_date"], ref),
            "SVENDY": study_day(visits["visit_date"], ref),
        }
    )
    return finish(
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
        *ID,
        Variable("LBSEQ", "Sequence Number", "Num"),
        Variable("LBTESTCD", "Lab Test or Examination Short Name"),
        Variable("LBTEST", "Lab Test or Examination Name"),
        Variable("LBCAT", "Category for Lab Test"),
        Variable("LBORRES", "Result or Finding in Original Units"),
        Variable("LBORRESU", "Original Units"),
        Variable("LBSTRESC", "Character Result/Finding in Std Format"),
        Variable("LBSTRESN", "Numeric Result/Finding in Standard Units", "Num"),
        Variable("LBSTRESU", "Standard Units"),
        Variable("LBORNRLO", "Normal Range Lower Limit-Original Units"),
        Variable("LBORNRHI", "Normal Range Upper Limit-Original Units"),
        Variable("LBSTNRLO", "Normal Range Lower Limit-Std Units", "Num"),
        Variable("LBSTNRHI", "Normal Range Upper Limit-Std Units", "Num"),
        Variable("LBNRIND", "Reference Range Indicator"),
        Variable("LBLLOQ", "Lower Limit of Quantitation", "Num"),
        Variable("LBLOBXFL", "Last Observation Before Exposure Flag"),
        *VISIT,
        EPOCH,
        Variable("LBDTC", "Date/Time of Specimen Collection"),
        Variable("LBDY", "Study Day of Specimen Collection", "Num"),
    )
    labs = extract.labs[extract.labs["test_code"].isin(LAB_TESTS)]
    below = labs["below_limit"].astype(bool)
    value = labs["value"].astype(float)
    text = value.map(_number_text)
    limit = labs["limit_value"].astype(float)
    censored = limit.map(lambda v: "<" + _number_text(v))  # text even with no rows
    result = text.where(~below, censored)
    ref = labs["usubjid"].map(rfstdtc(extract))
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
            **_ranges(protocol, test, value, limit.where(below)),
            "LBLLOQ": limit.where(below, test.map(_lloq(protocol))),
            "LBLOBXFL": np.where(labs["visit_code"] == protocol.visits[0].code, "Y", ""),
            **visit_columns(protocol, labs["visit_code"]),
            "EPOCH": epochs(protocol, extract, labs["usubjid"], labs["visit_date"]),
            "LBDTC": iso(labs["visit_date"]),
            "LBDY": study_day(labs["visit_date"], ref),
        }
    )
    return finish(
        "LB",
        "Laboratory Test Results",
        variables,
        frame,
        ("STUDYID", "USUBJID", "LBTESTCD", "VISITNUM"),
        "One record per lab test per visit per subject",
        "FINDINGS",
    )


def _ranges(
    protocol: Protocol, test: pd.Series, value: pd.Series, censored: pd.Series
) -> dict[str, pd.Series]:
    """Normal range columns and LBNRIND (a censored ``<L`` result is compared as ``L``)."""
    ranges = protocol.submission.normal_ranges if protocol.submission else {}
    low = test.map(lambda t: ranges[t].low if t in ranges else None).astype(float)
    high = test.map(lambda t: ranges[t].high if t in ranges else None).astype(float)
    x = value.where(censored.isna(), censored)
    below_limit = censored.notna()
    shown_low, shown_high = low.where(~below_limit), high.where(~below_limit)
    ind = np.select(
        [
            x.isna() | (low.isna() & high.isna()),
            ~below_limit & low.notna() & (x < low),
            ~below_limit & high.notna() & (x > high),
            below_limit & low.notna() & (x > low),
            below_limit & high.notna() & (x > high),
            below_limit & low.notna() & (x <= low),
        ],
        ["", "LOW", "HIGH", "", "", "LOW"],
        "NORMAL",
    )
    return {
        "LBORNRLO": shown_low.map(_number_text),
        "LBORNRHI": shown_high.map(_number_text),
        "LBSTNRLO": shown_low,
        "LBSTNRHI": shown_high,
        "LBNRIND": pd.Series(ind, index=test.index),
    }


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


def sdtm_domains(
    protocol: Protocol, extract: StoreExtract, meddra: MedDRA | None = None
) -> list[Dataset]:
    """Every subject-level SDTM domain of the store (trial design apart); AE coded with
    ``meddra`` when the sponsor loaded a release. DV only when a randomized participant has a
    logged deviation (an empty dataset is not submitted)."""
    derive: tuple[Callable[[Protocol, StoreExtract], Dataset], ...] = (
        derive_dm,
        derive_sv,
        derive_ex,
        derive_cm,
        derive_lb,
    )
    dv = derive_dv(protocol, extract)
    return [
        *(f(protocol, extract) for f in derive),
        derive_ae(protocol, extract, meddra),
        derive_ce(protocol, extract),
        derive_ds(protocol, extract),
        *([dv] if len(dv.frame) else []),
    ]
