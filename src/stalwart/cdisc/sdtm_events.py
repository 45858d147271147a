"""SDTM events: AE (adverse events), CE (opportunistic events) and DS (disposition).

Choices, with the reason:

* AE: AETERM is the verbatim term the site wrote. MedDRA is licensed and is not shipped: AEDECOD
  and the hierarchy (AELLT to AESOC and their codes) come from the MedDRA release the sponsor
  loads (:mod:`~.meddra`). Without one, AEDECOD is the protocol's AE term the site picked (the
  sponsor's own term list, which the define.xml and the reviewer's guide name as such) and the
  hierarchy variables are present but empty: no code is invented. The seriousness criteria
  (AESDTH...) are Y/N on serious events and empty on the others.
* Opportunistic events go to **CE** (Clinical Events). SDTMIG puts there "clinical events of
  interest that would not be classified as adverse events", such as the protocol-defined efficacy
  endpoints of a trial; AE is for untoward medical occurrences reported as safety data. Deaths are
  not CE terms: a death is DS ``DSDECOD = "DEATH"`` with DM ``DTHFL``/``DTHDTC``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stalwart.analysis.datasets.source import StoreExtract
from stalwart.cdisc.meddra import MEDDRA_CODES, MEDDRA_VARIABLES, MedDRA, code_terms
from stalwart.cdisc.sdtm_common import EPOCH, ID, epochs, finish, iso, rfstdtc, study_day
from stalwart.cdisc.xpt import Dataset, Variable
from stalwart.protocol.schema import Protocol
from stalwart.protocol.submission import SERIOUSNESS_CRITERIA

__all__ = ["DS_TERMS", "derive_ae", "derive_ce", "derive_ds"]

DS_TERMS = {
    "COMPLETED": "COMPLETED",
    "LOST TO FOLLOW-UP": "LOST TO FOLLOW-UP",
    "WITHDREW": "WITHDRAWAL BY SUBJECT",
    "DEATH": "DEATH",
}
"""Store disposition statuses -> CDISC NCOMPLT terms (DSDECOD)."""


def derive_ae(protocol: Protocol, extract: StoreExtract, meddra: MedDRA | None = None) -> Dataset:
    """AE: adverse events with the DAIDS grade in AETOXGR, outcome, action and SAE criteria;
    coded with ``meddra`` when the sponsor loaded one."""
    ae = extract.adverse_events
    coded = code_terms(ae["verbatim"], ae["term"], meddra)
    variables = (
        *ID,
        Variable("AESEQ", "Sequence Number", "Num"),
        Variable("AETERM", "Reported Term for the Adverse Event"),
        *(
            Variable(n, label, "Num" if n in MEDDRA_CODES else "Char")
            for n, label in MEDDRA_VARIABLES.items()
        ),
        Variable("AESER", "Serious Event"),
        Variable("AEACN", "Action Taken with Study Treatment"),
        Variable("AEREL", "Causality"),
        Variable("AEOUT", "Outcome of Adverse Event"),
        *(Variable(n, label) for n, label in SERIOUSNESS_CRITERIA.items()),
        Variable("AETOXGR", "Standard Toxicity Grade"),
        EPOCH,
        Variable("AESTDTC", "Start Date/Time of Adverse Event"),
        Variable("AEENDTC", "End Date/Time of Adverse Event"),
        Variable("AESTDY", "Study Day of Start of Adverse Event", "Num"),
        Variable("AEENDY", "Study Day of End of Adverse Event", "Num"),
    )
    ref = ae["usubjid"].map(rfstdtc(extract))
    serious = ae["serious"].astype(bool)
    criteria = ae["seriousness"].fillna("").map(lambda s: set(s.split(",")) - {""})
    frame = pd.DataFrame(
        {
            "STUDYID": protocol.study.id,
            "DOMAIN": "AE",
            "USUBJID": ae["usubjid"],
            "AESEQ": np.nan,
            "AETERM": ae["verbatim"],
            **coded,
            "AESER": np.where(serious, "Y", "N"),
            "AEACN": ae["action"],
            "AEREL": ae["related"],
            "AEOUT": ae["outcome"],
            **{
                name: [
                    ("Y" if name in c else "N") if s else ""
                    for c, s in zip(criteria, serious, strict=True)
                ]
                for name in SERIOUSNESS_CRITERIA
            },
            "AETOXGR": ae["grade"].astype(int).astype(str),
            "EPOCH": epochs(protocol, extract, ae["usubjid"], ae["start_date"]),
            "AESTDTC": iso(ae["start_date"]),
            "AEENDTC": iso(ae["end_date"]),
            "AESTDY": study_day(ae["start_date"], ref),
            "AEENDY": study_day(ae["end_date"], ref),
        },
        index=ae.index,
    )
    return finish(
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
        *ID,
        Variable("CESEQ", "Sequence Number", "Num"),
        Variable("CETERM", "Reported Term for the Clinical Event"),
        Variable("CEDECOD", "Dictionary-Derived Term"),
        Variable("CECAT", "Category for Clinical Event"),
        Variable("CESPID", "Sponsor-Defined Identifier"),
        EPOCH,
        Variable("CESTDTC", "Start Date/Time of Clinical Event"),
        Variable("CESTDY", "Study Day of Start of Event", "Num"),
    )
    terms = {e.code: e.term for e in protocol.forms.CE.events}
    ce = extract.clinical_events[extract.clinical_events["category"] != "DEATH"]
    ref = ce["usubjid"].map(rfstdtc(extract))
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
            "EPOCH": epochs(protocol, extract, ce["usubjid"], ce["onset_date"]),
            "CESTDTC": iso(ce["onset_date"]),
            "CESTDY": study_day(ce["onset_date"], ref),
        }
    )
    return finish(
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
        *ID,
        Variable("DSSEQ", "Sequence Number", "Num"),
        Variable("DSTERM", "Reported Term for the Disposition Event"),
        Variable("DSDECOD", "Standardized Disposition Term"),
        Variable("DSCAT", "Category for Disposition Event"),
        EPOCH,
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
                "decod": d["status"].map(DS_TERMS),
                "cat": "DISPOSITION EVENT",
                "date": d["disposition_date"],
            }
        ),
    ]
    rows = pd.concat([x for x in parts if len(x)], ignore_index=True)
    ref = rows["usubjid"].map(rfstdtc(extract))
    frame = pd.DataFrame(
        {
            "STUDYID": protocol.study.id,
            "DOMAIN": "DS",
            "USUBJID": rows["usubjid"],
            "DSSEQ": np.nan,
            "DSTERM": rows["term"],
            "DSDECOD": rows["decod"],
            "DSCAT": rows["cat"],
            "EPOCH": epochs(protocol, extract, rows["usubjid"], rows["date"]),
            "DSSTDTC": iso(rows["date"]),
            "DSSTDY": study_day(rows["date"], ref),
        }
    )
    return finish(
        "DS",
        "Disposition",
        variables,
        frame,
        ("STUDYID", "USUBJID", "DSSTDTC", "DSDECOD"),
        "One record per disposition status or protocol milestone per subject",
        "EVENTS",
    )
