"""Where a query points: a field of a visit (``LAB.CD4`` at ``WK04``) resolved to its stored row.

Users name the data as they see it, by visit and field; the query is stored against the row
that holds the value (table and id), so that it follows the record through corrections. Field
labels come from the protocol so that pages never show internal names.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from stalwart.capture.tables import LabResult, Participant, Visit
from stalwart.errors import ValidationError
from stalwart.protocol.schema import Protocol

__all__ = [
    "LAB_PREFIX",
    "PARTICIPANT_FIELDS",
    "QueryTarget",
    "field_label",
    "lab_fields",
    "resolve_target",
]

LAB_PREFIX = "LAB."

PARTICIPANT_FIELDS = {"consent_date": "Consent date", "randomization_date": "Randomization date"}
"""Fields of the participant record (no visit) a query may name, with their labels."""

VISIT_FIELDS = {"visit_date": "Visit date"}
"""Fields of a visit other than its LAB results."""


@dataclass(frozen=True)
class QueryTarget:
    """The stored row a query points at."""

    table_name: str
    record_id: int
    field: str


def field_label(protocol: Protocol, field: str) -> str:
    """The label users know a field by (the protocol's LAB item label, or a plain name)."""
    if field.startswith(LAB_PREFIX):
        try:
            return protocol.lab_item(field[len(LAB_PREFIX) :]).label
        except KeyError:
            return field
    known = PARTICIPANT_FIELDS | VISIT_FIELDS
    return known.get(field, field.replace("_", " ").capitalize())


def lab_fields(protocol: Protocol) -> list[str]:
    """Every LAB item as a query field name (``LAB.<item>``)."""
    return [f"{LAB_PREFIX}{item.name}" for item in protocol.forms.LAB.items]


def resolve_target(
    session: Session,
    protocol: Protocol,
    participant: Participant,
    visit_code: str | None,
    field: str,
) -> QueryTarget:
    """The row holding ``field`` of the participant's ``visit_code`` (or their own record).

    Refuses (naming ``field`` or ``visit``) a field the protocol does not define, a visit not
    recorded, and a LAB item not entered at that visit: a query asks about a stored value.
    """
    field = field.strip()
    code = (visit_code or "").strip().upper()
    if not code:
        if field in PARTICIPANT_FIELDS:
            return QueryTarget("participant", participant.id, field)
        raise ValidationError(
            "visit",
            f"give the visit of {field!r}; without a visit a query names one of "
            f"{sorted(PARTICIPANT_FIELDS)}",
        )
    known = lab_fields(protocol) + sorted(VISIT_FIELDS)
    if field not in known:
        raise ValidationError("field", f"{field!r} is not a field of a visit; known: {known}")
    visit = session.scalar(
        sa.select(Visit).where(Visit.participant_id == participant.id, Visit.visit_code == code)
    )
    if visit is None:
        raise ValidationError(
            "visit", f"visit {code} of {participant.usubjid} is not recorded; nothing to query"
        )
    if field in VISIT_FIELDS:
        return QueryTarget("visit", visit.id, field)
    lab_id = session.scalar(
        sa.select(LabResult.id).where(
            LabResult.visit_id == visit.id, LabResult.test_code == field[len(LAB_PREFIX) :]
        )
    )
    if lab_id is None:
        raise ValidationError(
            "field", f"{field_label(protocol, field)} was not entered at {code}; nothing to query"
        )
    return QueryTarget("lab_result", lab_id, field)
