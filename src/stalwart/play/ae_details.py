"""What a simulated site writes on the AE form beyond the simulated event: the verbatim term, the
outcome, the action taken with study treatment and, for a serious event, its criteria.

The simulator draws the term, grade, dates, relatedness and seriousness; a site fills the rest the
way an investigator would from those: an ongoing event is NOT RECOVERED/NOT RESOLVED, an ended
one RECOVERED/RESOLVED (FATAL for a serious grade-5 event, with the criterion AESDTH); a serious
event is a hospitalization, and life-threatening from DAIDS grade 4 on; a participant on study
treatment has it interrupted for a serious event and unchanged otherwise, and the action is NOT
APPLICABLE to a participant who receives none or has had the last dose. A term the protocol's
lists lack falls back to the list's last entry (UNKNOWN in the packaged protocol). A death is
also reported as a fatal serious adverse event (:func:`death_report`), as ICH E2A asks.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from stalwart.capture.ae_form import AeDetails
from stalwart.protocol.submission import AdverseEventForm
from stalwart.simulate.model import AdverseEventDraw

__all__ = ["FatalEvent", "death_report", "site_ae_details"]


def _pick(wanted: str, allowed: list[str]) -> str:
    return wanted if wanted in allowed else allowed[-1]


def site_ae_details(
    form: AdverseEventForm, ae: AdverseEventDraw, last_dose: dt.date | None
) -> AeDetails:
    """The AE form's details a site writes for the simulated event ``ae`` (``last_dose``: the
    participant's last dose, None when untreated: no action applies after it)."""
    fatal = ae.serious and ae.grade >= 5
    if fatal:
        outcome, criteria = "FATAL", ["AESDTH"]
    else:
        outcome = "NOT RECOVERED/NOT RESOLVED" if ae.end is None else "RECOVERED/RESOLVED"
        criteria = ["AESLIFE", "AESHOSP"] if ae.grade >= 4 else ["AESHOSP"]
    if last_dose is None or ae.start > last_dose:
        action = "NOT APPLICABLE"
    else:
        action = "DRUG INTERRUPTED" if ae.serious else "DOSE NOT CHANGED"
    chosen = tuple(c for c in criteria if c in form.seriousness) or (form.seriousness[0],)
    return AeDetails(
        verbatim=ae.term,
        outcome=_pick(outcome, form.outcomes),
        action=_pick(action, form.actions),
        seriousness=chosen if ae.serious else (),
    )


@dataclass(frozen=True)
class FatalEvent:
    """The serious adverse event a site reports for a death: the AE form's fields."""

    term: str
    grade: int
    related: str
    details: AeDetails


def death_report(form: AdverseEventForm, cause: str) -> FatalEvent:
    """The fatal SAE a site files for a death (every death is a serious adverse event: the
    criterion AESDTH, outcome FATAL, the form's highest grade), under the protocol's ``Other``
    term (its last term if it has none) with ``cause`` as the verbatim term."""
    term = "Other" if "Other" in form.terms else form.terms[-1]
    criteria = ("AESDTH",) if "AESDTH" in form.seriousness else (form.seriousness[0],)
    return FatalEvent(
        term=term,
        grade=form.max_grade,
        related=form.relatedness[0],
        details=AeDetails(cause, _pick("FATAL", form.outcomes), "NOT APPLICABLE", criteria),
    )
