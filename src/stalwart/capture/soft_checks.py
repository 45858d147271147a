"""The protocol's soft checks run on a saved visit: the value stays, a query asks the site.

``apply_soft_checks`` runs in the transaction that saved (or corrected) the visit, after the
rows are written. A check that fires raises a query on the result's row, its raiser (and audit
actor) ``system: soft check <name>``. A check raises at most one query per field of a record:
if it already queried that field (whatever the query's state), it stays quiet, so a re-save
or a correction does not pile up queries, and a correction that clears the condition leaves
the query for the site to answer and the monitor to close.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from stalwart.capture.context import ParticipantRecord
from stalwart.capture.db import core_connection
from stalwart.capture.query_targets import LAB_PREFIX, field_label
from stalwart.capture.tables import DataQuery, LabResult, Visit
from stalwart.capture.writes import add_rows
from stalwart.protocol.schema import Protocol
from stalwart.protocol.soft_checks import SoftCheck

__all__ = ["SYSTEM_RAISER", "apply_soft_checks", "raiser_of"]

SYSTEM_RAISER = "system: soft check "
"""The prefix of the raiser of every query a soft check raises."""

_Finding = tuple[str, int, str, str]  # table, record id, field, text


_VISITS = (
    sa.select(Visit.id, Visit.visit_code, Visit.visit_date)
    .where(Visit.participant_id == sa.bindparam("participant_id"))
    .order_by(Visit.visit_date, Visit.id)
)
_RESULTS = sa.select(
    LabResult.visit_id, LabResult.test_code, LabResult.id, LabResult.value, LabResult.below_limit
).where(LabResult.participant_id == sa.bindparam("participant_id"))
_RAISED = sa.select(DataQuery.id).where(
    DataQuery.table_name == sa.bindparam("table_name"),
    DataQuery.record_id == sa.bindparam("record_id"),
    DataQuery.field == sa.bindparam("field"),
    DataQuery.raised_by == sa.bindparam("raised_by"),
)
"""The reads of every visit's soft checks, built once; the results as columns, not ORM rows
(a participant's whole series is read at each visit)."""


def raiser_of(check: SoftCheck) -> str:
    """The raiser (and audit actor) of the queries ``check`` raises."""
    return f"{SYSTEM_RAISER}{check.name}"


def apply_soft_checks(
    session: Session, protocol: Protocol, participant: ParticipantRecord, visit_id: int
) -> list[int]:
    """Run every soft check on the visit just saved; the ids of the queries raised."""
    if not protocol.soft_checks:
        return []
    keys = {"participant_id": participant.id}
    conn = core_connection(session)
    visits = conn.execute(_VISITS, keys).all()
    results: dict[tuple[int, str], tuple[int, float]] = {
        (lab.visit_id, lab.test_code): (lab.id, lab.value)
        for lab in conn.execute(_RESULTS, keys)
        if lab.value is not None and not lab.below_limit
    }
    raised: list[int] = []
    for check in protocol.soft_checks:
        if check.kind == "lab_change":
            found = _lab_change(protocol, check, visits, results, visit_id)
        elif check.kind == "lab_ratio":
            found = _lab_ratio(protocol, check, results, visit_id)
        else:
            found = _date_after_start(protocol, check, participant, visits, visit_id)
        for table, record_id, field, text in found:
            raised += _raise_once(
                session, participant, raiser_of(check), table, record_id, field, text
            )
    return raised


def _lab_change(
    protocol: Protocol,
    check: SoftCheck,
    visits: Sequence[Any],
    results: dict[tuple[int, str], tuple[int, float]],
    visit_id: int,
) -> list[_Finding]:
    """The jumps into and out of this visit (a late entry may sit between two visits)."""
    item = check.item or ""  # the protocol's validator makes a lab_change check name its keys
    most, percent = check.max_change or 0.0, check.max_change_percent or 0.0
    series = [(v.id, v.visit_code) for v in visits if (v.id, item) in results]
    found: list[_Finding] = []
    for (before_id, before_code), (after_id, after_code) in itertools.pairwise(series):
        if visit_id not in (before_id, after_id):
            continue
        before = results[(before_id, item)][1]
        lab_id, after = results[(after_id, item)]
        change = abs(after - before)
        if change > most and change > percent * before / 100:
            label = field_label(protocol, f"{LAB_PREFIX}{item}")
            text = (
                f"{check.message} ({label} {before:g} at {before_code}, {after:g} at {after_code})"
            )
            found.append(("lab_result", lab_id, f"{LAB_PREFIX}{item}", text))
    return found


def _lab_ratio(
    protocol: Protocol,
    check: SoftCheck,
    results: dict[tuple[int, str], tuple[int, float]],
    visit_id: int,
) -> list[_Finding]:
    count, percent = (
        results.get((visit_id, check.item or "")),
        results.get((visit_id, check.percent_item or "")),
    )
    if count is None or percent is None or percent[1] <= 0:
        return []
    ratio = count[1] / (percent[1] / 100)
    if (check.min_ratio or 0.0) <= ratio <= (check.max_ratio or float("inf")):
        return []
    label = field_label(protocol, f"{LAB_PREFIX}{check.item}")
    pct_label = field_label(protocol, f"{LAB_PREFIX}{check.percent_item}")
    text = f"{check.message} ({label} {count[1]:g}, {pct_label} {percent[1]:g}: {ratio:.0f})"
    return [("lab_result", count[0], f"{LAB_PREFIX}{check.item}", text)]


def _date_after_start(
    protocol: Protocol,
    check: SoftCheck,
    participant: ParticipantRecord,
    visits: Sequence[Any],
    visit_id: int,
) -> list[_Finding]:
    """The visit's date, and the participant's consent date, before the accrual start."""
    start = protocol.study.accrual_start
    consent: list[_Finding] = []
    if participant.consent_date < start:
        text = f"{check.message} (consent {participant.consent_date} is before {start})"
        consent.append(("participant", participant.id, "consent_date", text))
    return consent + [
        ("visit", v.id, "visit_date", f"{check.message} ({v.visit_date} is before {start})")
        for v in visits
        if v.id == visit_id and v.visit_date < start
    ]


def _raise_once(
    session: Session,
    participant: ParticipantRecord,
    raiser: str,
    table: str,
    record_id: int,
    field: str,
    text: str,
) -> list[int]:
    """A query from ``raiser`` on the field, unless it already raised one there."""
    keys = {"table_name": table, "record_id": record_id, "field": field, "raised_by": raiser}
    if core_connection(session).execute(_RAISED, keys).scalar():
        return []
    query = DataQuery(
        participant_id=participant.id,
        table_name=table,
        record_id=record_id,
        field=field,
        text=text,
        status="OPEN",
        raised_by=raiser,
    )
    add_rows(session, [query], raiser, "query raised by a soft check")
    return [query.id]
