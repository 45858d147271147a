"""The protocol's safety form and submission facts: what a CDISC package needs beyond the design.

* :class:`AdverseEventForm`: the AE log. The site writes the verbatim term (AETERM) and picks the
  protocol's term (the category the analysis tabulates), the DAIDS grade, relatedness, outcome
  (AEOUT), action taken with study treatment (AEACN) and, for a serious event, the seriousness
  criteria (AESDTH, AESHOSP...): a serious event needs at least one. ``sae_report_days`` is the
  protocol's deadline for reporting a serious event (days after its onset); later reports are
  flagged.
* :class:`Submission`: the sponsor's facts the trial summary (TS) needs that the design does not
  give (sponsor, objectives, outcome measures, intervention model...), the normal range of each
  laboratory test (LBORNRLO/LBORNRHI, so LBNRIND is derived), each treatment's dose form
  (EXDOSFRM), and the NCI codes of the controlled terms the TS values use (TSVALCD). Nothing here
  invents a code: a term without a code in ``ct_codes`` is written without one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from pydantic import Field, model_validator

from stalwart.protocol.fields import Code, ProtocolModel

__all__ = [
    "AE_ACTIONS",
    "AE_OUTCOMES",
    "SERIOUSNESS_CRITERIA",
    "TS_PARAMETERS",
    "AdverseEventForm",
    "NormalRange",
    "Submission",
    "TrialSummaryValue",
    "submission_problems",
]

SERIOUSNESS_CRITERIA: dict[str, str] = {
    "AESDTH": "Results in Death",
    "AESLIFE": "Is Life Threatening",
    "AESHOSP": "Requires or Prolongs Hospitalization",
    "AESDISAB": "Persist or Signif Disability/Incapacity",
    "AESCONG": "Congenital Anomaly or Birth Defect",
    "AESMIE": "Other Medically Important Serious Event",
}
"""The ICH E2A seriousness criteria as SDTM AE variables (name -> label)."""

AE_OUTCOMES = (
    "RECOVERED/RESOLVED",
    "RECOVERING/RESOLVING",
    "NOT RECOVERED/NOT RESOLVED",
    "RECOVERED/RESOLVED WITH SEQUELAE",
    "FATAL",
    "UNKNOWN",
)
"""CDISC CT Outcome of Event (AEOUT): the form's outcomes when a protocol does not list its own."""
AE_ACTIONS = (
    "DOSE NOT CHANGED",
    "DOSE REDUCED",
    "DRUG INTERRUPTED",
    "DRUG WITHDRAWN",
    "NOT APPLICABLE",
    "UNKNOWN",
)
"""CDISC CT Action Taken with Study Treatment (AEACN): the default action list."""

TS_PARAMETERS: dict[str, str] = {
    "ACTSUB": "Actual Number of Subjects",
    "ADAPT": "Adaptive Design",
    "AGEMAX": "Planned Maximum Age of Subjects",
    "DCUTDESC": "Data Cutoff Description",
    "DCUTDTC": "Data Cutoff Date",
    "FCNTRY": "Planned Country of Investigational Sites",
    "HLTSUBJI": "Healthy Subject Indicator",
    "INTMODEL": "Intervention Model",
    "OBJPRIM": "Trial Primary Objective",
    "OBJSEC": "Trial Secondary Objective",
    "OUTMSPRI": "Primary Outcome Measure",
    "OUTMSSEC": "Secondary Outcome Measure",
    "PCLAS": "Pharmacologic Class",
    "SPONSOR": "Clinical Study Sponsor",
    "STOPRULE": "Study Stop Rules",
    "TDIGRP": "Diagnosis Group",
    "TINDTP": "Trial Intent Type",
    "TTYPE": "Trial Type",
}
"""TS parameters the protocol states in ``[submission]`` (CDISC TSPARMCD -> TSPARM)."""


class AdverseEventForm(ProtocolModel):
    """Adverse event log: verbatim and protocol term, grade, relatedness, outcome, action, SAE."""

    name: str
    grading: str
    terms: list[str] = Field(min_length=1)
    relatedness: list[str] = Field(min_length=1)
    min_grade: int = 1
    max_grade: int = 5
    outcomes: list[str] = Field(default_factory=lambda: list(AE_OUTCOMES), min_length=1)
    actions: list[str] = Field(default_factory=lambda: list(AE_ACTIONS), min_length=1)
    seriousness: list[str] = Field(default_factory=lambda: list(SERIOUSNESS_CRITERIA), min_length=1)
    sae_report_days: int = Field(default=1, ge=0)

    @model_validator(mode="after")
    def _known_criteria(self) -> AdverseEventForm:
        unknown = sorted(set(self.seriousness) - set(SERIOUSNESS_CRITERIA))
        if unknown:
            raise ValueError(
                f"forms.AE.seriousness: {unknown} are not seriousness criteria; use SDTM's "
                f"{', '.join(SERIOUSNESS_CRITERIA)}"
            )
        return self


class NormalRange(ProtocolModel):
    """A laboratory test's reference range, in the unit of its LAB form item."""

    low: float | None = None
    high: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> NormalRange:
        if self.low is None and self.high is None:
            raise ValueError("a normal range needs low, high or both")
        if self.low is not None and self.high is not None and self.low >= self.high:
            raise ValueError(f"normal range low {self.low} is not below high {self.high}")
        return self


class TrialSummaryValue(ProtocolModel):
    """One TS value the protocol states: its parameter code and text."""

    parameter: str
    value: str = Field(min_length=1, max_length=200)

    @model_validator(mode="after")
    def _known(self) -> TrialSummaryValue:
        if self.parameter not in TS_PARAMETERS:
            raise ValueError(
                f"submission.trial_summary: {self.parameter!r} is not a TS parameter stated "
                f"here; use one of {', '.join(TS_PARAMETERS)}"
            )
        return self


class Submission(ProtocolModel):
    """Facts of the CDISC submission package that the trial design does not give."""

    sponsor: str
    data_cutoff: dt.date
    data_cutoff_description: str
    intervention_model: str
    trial_summary: list[TrialSummaryValue] = Field(default_factory=list)
    normal_ranges: dict[Code, NormalRange] = Field(default_factory=dict)
    dose_forms: dict[Code, str] = Field(default_factory=dict)
    ct_version: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    ct_codes: dict[str, str] = Field(default_factory=dict)

    def values(self, parameter: str) -> list[str]:
        """The values the protocol states for TS ``parameter``, in file order."""
        return [v.value for v in self.trial_summary if v.parameter == parameter]


def submission_problems(
    submission: Submission | None, lab_items: Sequence[str], treatments: Mapping[str, object]
) -> list[str]:
    """Where ``[submission]`` names a LAB item or treatment the protocol lacks."""
    if submission is None:
        return []
    labs = set(lab_items)
    problems = [
        f"submission.normal_ranges.{name}: no LAB item {name!r} (items: {', '.join(sorted(labs))})"
        for name in submission.normal_ranges
        if name not in labs
    ]
    problems += [
        f"submission.dose_forms.{code}: no treatment {code!r}"
        for code in submission.dose_forms
        if code not in treatments
    ]
    return problems
