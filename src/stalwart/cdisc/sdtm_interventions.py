"""SDTM interventions: EX (study treatment given) and CM (the peri-cycle ART courses).

* EX holds the days a dose was given (``administrations > 0``), with the dose per administration,
  the dose form the protocol states (``[submission.dose_forms]``) and the frequency actually taken
  (QD, BID); a planned day recorded with no dose taken is left out, as EX records exposure, not
  its absence. The no-therapy arm has no EX records (the reviewer's guide says so).
* CM holds one record per peri-cycle ART course (first to last day of the cycle), classed as
  antiretroviral therapy, so the regimens are visible beside other medications.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stalwart.analysis.datasets.source import StoreExtract
from stalwart.cdisc.sdtm_common import EPOCH, ID, epochs, finish, iso, rfstdtc, study_day
from stalwart.cdisc.trial_design import ROUTES
from stalwart.cdisc.xpt import Dataset, Variable
from stalwart.protocol.schema import Protocol

__all__ = ["derive_cm", "derive_ex"]

_FREQ = {1: "QD", 2: "BID", 3: "TID", 4: "QID"}


def derive_ex(protocol: Protocol, extract: StoreExtract) -> Dataset:
    """EX: one record per treatment day on which a dose was given."""
    variables = (
        *ID,
        Variable("EXSEQ", "Sequence Number", "Num"),
        Variable("EXTRT", "Name of Treatment"),
        Variable("EXCAT", "Category of Treatment"),
        Variable("EXDOSE", "Dose", "Num"),
        Variable("EXDOSU", "Dose Units"),
        Variable("EXDOSFRM", "Dose Form"),
        Variable("EXDOSFRQ", "Dosing Frequency per Interval"),
        Variable("EXROUTE", "Route of Administration"),
        EPOCH,
        Variable("EXSTDTC", "Start Date/Time of Treatment"),
        Variable("EXENDTC", "End Date/Time of Treatment"),
        Variable("EXSTDY", "Study Day of Start of Treatment", "Num"),
        Variable("EXENDY", "Study Day of End of Treatment", "Num"),
    )
    d = extract.doses[extract.doses["administrations"] > 0]
    t = protocol.treatments
    forms = protocol.submission.dose_forms if protocol.submission else {}
    ref = d["usubjid"].map(rfstdtc(extract))
    day = study_day(d["dose_date"], ref)
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
            "EXDOSFRM": d["treatment"].map(lambda c: forms.get(c, "")),
            "EXDOSFRQ": d["administrations"].map(lambda n: _FREQ.get(int(n), f"{int(n)} TIMES")),
            "EXROUTE": d["treatment"].map(lambda c: ROUTES.get(t[c].route, t[c].route)),
            "EPOCH": epochs(protocol, extract, d["usubjid"], d["dose_date"]),
            "EXSTDTC": iso(d["dose_date"]),
            "EXENDTC": iso(d["dose_date"]),
            "EXSTDY": day,
            "EXENDY": day,
        }
    )
    return finish(
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
        *ID,
        Variable("CMSEQ", "Sequence Number", "Num"),
        Variable("CMTRT", "Reported Name of Drug, Med, or Therapy"),
        Variable("CMCAT", "Category for Medication"),
        Variable("CMCLAS", "Medication Class"),
        Variable("CMINDC", "Indication"),
        Variable("CMDOSE", "Dose per Administration", "Num"),
        Variable("CMDOSU", "Dose Units"),
        Variable("CMDOSFRQ", "Dosing Frequency per Interval"),
        Variable("CMROUTE", "Route of Administration"),
        EPOCH,
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
    ref = courses["usubjid"].map(rfstdtc(extract))
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
            "CMROUTE": courses["treatment"].map(lambda c: ROUTES.get(t[c].route, t[c].route)),
            "EPOCH": epochs(protocol, extract, courses["usubjid"], courses["start"]),
            "CMSTDTC": iso(courses["start"]),
            "CMENDTC": iso(courses["end"]),
            "CMSTDY": study_day(courses["start"], ref),
            "CMENDY": study_day(courses["end"], ref),
        }
    )
    return finish(
        "CM",
        "Concomitant Medications",
        variables,
        frame,
        ("STUDYID", "USUBJID", "CMTRT", "CMSTDTC"),
        "One record per recorded medication occurrence per subject",
        "INTERVENTIONS",
    )
