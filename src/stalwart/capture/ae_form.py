"""The AE form's submission fields: verbatim term, outcome, action taken, seriousness criteria.

:class:`AeDetails` is what the site writes beside the protocol term, grade and relatedness;
:func:`check_ae_details` validates it against the protocol's AE form (its outcome, action and
criteria lists) and the event's seriousness: a serious event names at least one criterion, a
non-serious one none, so AESER and AESDTH... never disagree. :func:`sae_reported_late` says
whether a serious event was entered later than the protocol's reporting deadline.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from stalwart.errors import ValidationError
from stalwart.protocol.submission import SERIOUSNESS_CRITERIA, AdverseEventForm

__all__ = ["AeDetails", "check_ae_details", "sae_reported_late"]


@dataclass(frozen=True)
class AeDetails:
    """The site's verbatim term, the outcome, the action taken and the seriousness criteria."""

    verbatim: str
    outcome: str
    action: str
    seriousness: tuple[str, ...] = ()


def check_ae_details(form: AdverseEventForm, serious: bool, details: AeDetails) -> AeDetails:
    """``details`` cleaned (verbatim stripped, criteria in form order), or ``ValidationError``."""
    verbatim = details.verbatim.strip() if isinstance(details.verbatim, str) else ""
    if not verbatim or len(verbatim) > 200:
        raise ValidationError(
            "verbatim", "write the event in the site's own words (1 to 200 characters)"
        )
    if details.outcome not in form.outcomes:
        raise ValidationError("outcome", f"{details.outcome!r} is not one of {form.outcomes}")
    if details.action not in form.actions:
        raise ValidationError("action", f"{details.action!r} is not one of {form.actions}")
    unknown = [c for c in details.seriousness if c not in form.seriousness]
    if unknown:
        raise ValidationError(
            "seriousness",
            f"{unknown} are not seriousness criteria of this form; use "
            + ", ".join(f"{c} ({SERIOUSNESS_CRITERIA[c]})" for c in form.seriousness),
        )
    if serious and not details.seriousness:
        raise ValidationError(
            "seriousness", "a serious event needs at least one seriousness criterion"
        )
    if not serious and details.seriousness:
        raise ValidationError(
            "seriousness", "seriousness criteria apply only to a serious event: mark it serious"
        )
    if (details.outcome == "FATAL") != ("AESDTH" in details.seriousness):
        raise ValidationError(
            "outcome", "a FATAL outcome and the criterion AESDTH (results in death) go together"
        )
    ordered = tuple(c for c in form.seriousness if c in details.seriousness)
    return AeDetails(verbatim, details.outcome, details.action, ordered)


def sae_reported_late(
    form: AdverseEventForm, serious: bool, start: dt.date, reported_on: dt.date | None
) -> bool:
    """Whether a serious event was entered more than ``sae_report_days`` after its onset."""
    if not serious or reported_on is None:
        return False
    return (reported_on - start).days > form.sae_report_days
