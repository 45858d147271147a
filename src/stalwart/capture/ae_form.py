"""The AE form's submission fields: verbatim term, outcome, action taken, seriousness criteria.

:class:`AeDetails` is what the site writes beside the protocol term, grade and relatedness;
:func:`check_ae_details` validates it against the protocol's AE form (its outcome, action and
criteria lists) and the event's seriousness: a serious event names at least one criterion, a
non-serious one none, so AESER and AESDTH... never disagree. :func:`sae_reported_late` says
whether a serious event was entered later than the protocol's reporting deadline.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stalwart.capture.edit_checks import check_date_not_future, check_dates_in_order
from stalwart.errors import FieldErrors, ValidationError
from stalwart.protocol.submission import SERIOUSNESS_CRITERIA, AdverseEventForm
from stalwart.protocol.wording import label_of

__all__ = [
    "AeDetails",
    "ae_summary",
    "check_adverse_event",
    "check_ae_details",
    "sae_report_note",
    "sae_reported_late",
]


@dataclass(frozen=True)
class AeDetails:
    """The site's verbatim term, the outcome, the action taken and the seriousness criteria."""

    verbatim: str
    outcome: str
    action: str
    seriousness: tuple[str, ...] = ()


def _one_of(field: str, value: str, allowed: tuple[str, ...] | list[str]) -> None:
    if value not in allowed:
        raise ValidationError(
            field,
            f"{label_of(field)}: {value!r} is not a choice; choose one of {', '.join(allowed)}",
        )


def check_ae_details(form: AdverseEventForm, serious: bool, details: AeDetails) -> AeDetails:
    """``details`` cleaned (verbatim stripped, criteria in form order), or ``ValidationError``
    (``FieldErrors`` naming every wrong field at once)."""
    problems: list[ValidationError] = []

    def check(test: Callable[[], object]) -> None:
        try:
            test()
        except ValidationError as exc:
            problems.append(exc)

    verbatim = details.verbatim.strip() if isinstance(details.verbatim, str) else ""
    if not verbatim or len(verbatim) > 200:
        problems.append(
            ValidationError(
                "verbatim", "write the event in the site's own words (1 to 200 characters)"
            )
        )
    check(lambda: _one_of("outcome", details.outcome, form.outcomes))
    check(lambda: _one_of("action", details.action, form.actions))
    unknown = [c for c in details.seriousness if c not in form.seriousness]
    if unknown:
        problems.append(
            ValidationError(
                "seriousness",
                f"{unknown} are not seriousness criteria of this form; use "
                + ", ".join(f"{c} ({SERIOUSNESS_CRITERIA[c]})" for c in form.seriousness),
            )
        )
    elif serious and not details.seriousness:
        problems.append(
            ValidationError(
                "seriousness", "a serious event needs at least one seriousness criterion"
            )
        )
    elif not serious and details.seriousness:
        problems.append(
            ValidationError(
                "seriousness",
                "seriousness criteria apply only to a serious event: mark it serious",
            )
        )
    if (details.outcome == "FATAL") != ("AESDTH" in details.seriousness):
        problems.append(
            ValidationError(
                "outcome", "a FATAL outcome and the criterion AESDTH (results in death) go together"
            )
        )
    if error := FieldErrors.collect(problems):
        raise error
    ordered = tuple(c for c in form.seriousness if c in details.seriousness)
    return AeDetails(verbatim, details.outcome, details.action, ordered)


def _check_grade(form: AdverseEventForm, grade: int) -> None:
    if (
        isinstance(grade, bool)
        or not isinstance(grade, int)
        or not (form.min_grade <= grade <= form.max_grade)
    ):
        raise ValidationError(
            "grade",
            f"DAIDS grade must be a whole number {form.min_grade} to {form.max_grade}, "
            f"got {grade!r}",
        )


def _check_term(form: AdverseEventForm, term: str) -> None:
    if term not in form.terms:
        raise ValidationError(
            "term", f"{term!r} is not an AE term of this protocol; use one of {form.terms}"
        )


def check_adverse_event(
    form: AdverseEventForm,
    today: dt.date,
    *,
    term: str | None,
    grade: int | None,
    start_date: dt.date | None,
    end_date: dt.date | None,
    related: str | None,
    serious: bool,
    details: AeDetails | None,
) -> AeDetails | None:
    """Every field of an AE form checked together, all errors at once (``FieldErrors``).

    A field given as None is not checked (a form whose field failed to parse before reports
    it itself); returns the cleaned ``details`` (None when not given).
    """
    cleaned: list[AeDetails] = []
    checks: list[Callable[[], object]] = []
    if details is not None:
        checks.append(lambda: cleaned.append(check_ae_details(form, serious, details)))
    if term is not None:
        checks.append(lambda: _check_term(form, term))
    if grade is not None:
        checks.append(lambda: _check_grade(form, grade))
    if related is not None:
        checks.append(lambda: _one_of("related", related, form.relatedness))
    if start_date is not None:
        checks.append(lambda: check_date_not_future("start_date", start_date, today))
    if end_date is not None:
        checks.append(lambda: check_date_not_future("end_date", end_date, today))
        if start_date is not None:
            checks.append(
                lambda: check_dates_in_order("start_date", start_date, "end_date", end_date)
            )
    problems: list[ValidationError] = []
    for check in checks:
        try:
            check()
        except ValidationError as exc:
            problems.append(exc)
    if error := FieldErrors.collect(problems):
        raise error
    return cleaned[0] if cleaned else None


def sae_reported_late(
    form: AdverseEventForm, serious: bool, start: dt.date, reported_on: dt.date | None
) -> bool:
    """Whether a serious event was entered more than ``sae_report_days`` after its onset."""
    if not serious or reported_on is None:
        return False
    return (reported_on - start).days > form.sae_report_days


def sae_report_note(
    form: AdverseEventForm, serious: bool, start: dt.date, reported_on: dt.date | None
) -> str | None:
    """What the site reads beside a serious event: when its report was due and whether it was
    entered late; None for a non-serious event."""
    if not serious:
        return None
    due = start + dt.timedelta(days=form.sae_report_days)
    if reported_on is not None and sae_reported_late(form, serious, start, reported_on):
        late = (reported_on - due).days
        return (
            f"SAE reported late: entered {reported_on.isoformat()}, {late} day(s) after the "
            f"{form.sae_report_days}-day deadline of {due.isoformat()}"
        )
    return (
        f"SAE: report to the sponsor by {due.isoformat()} "
        f"({form.sae_report_days} day(s) from onset)"
    )


def ae_summary(form: AdverseEventForm, row: Any) -> dict[str, Any]:
    """A stored adverse event as the participant page lists it: the site's words, outcome,
    action, the seriousness criteria by name, and the SAE reporting note."""
    criteria = [c for c in (row.seriousness or "").split(",") if c]
    return {
        "id": row.id,
        "term": row.term,
        "grade": row.grade,
        "start_date": row.start_date,
        "end_date": row.end_date,
        "related": row.related,
        "serious": row.serious,
        "verbatim": row.verbatim,
        "outcome": row.outcome,
        "action": row.action,
        "seriousness": row.seriousness,
        "seriousness_labels": ", ".join(SERIOUSNESS_CRITERIA.get(c, c) for c in criteria),
        "sae_note": sae_report_note(form, bool(row.serious), row.start_date, row.reported_on),
    }
