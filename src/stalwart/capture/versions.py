"""Record versions for optimistic concurrency: a correction names the version it was made from.

A record a site can correct (today: a visit with its laboratory results, the one correction
path of the capture layer) is read with a **version**, and a correction must send it back; a
correction made from an older version is refused with what changed since, so a stale read never
silently overwrites a newer change (a lost update).

The version is derived, not stored: the highest audit sequence among the record's rows (the
visit and its results). Every write of those rows appends to the audit chain in its own
transaction (``capture.writes``), so the sequence grows with each change, is the same in every
worker and on every backend, needs no column or migration, and the chain already holds what the
refusal has to say: each changed field, the value the stale reader saw, the value now, who
changed it and when. A signature is not part of the version: signing changes no entered value
(a correction voids it all the same).

The check runs inside the correction's transaction, after the visit row is locked (``FOR
UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` serializes writers), so no other
correction can commit between the check and the write.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from stalwart.capture.tables import AuditRecord, LabResult
from stalwart.errors import ConflictError, StaleVersionError

__all__ = ["check_version", "lab_text", "record_version", "visit_keys"]


def visit_keys(session: Session, visit_id: int) -> list[tuple[str, int]]:
    """The audited rows of a visit's record: the visit and each of its laboratory results."""
    labs = session.scalars(sa.select(LabResult.id).where(LabResult.visit_id == visit_id))
    return [("visit", visit_id), *(("lab_result", i) for i in labs)]


def _rows(keys: Sequence[tuple[str, int]]) -> Any:
    by_table: dict[str, list[int]] = {}
    for table, record_id in keys:
        by_table.setdefault(table, []).append(record_id)
    return sa.or_(
        *(
            sa.and_(AuditRecord.table_name == t, AuditRecord.record_id.in_(ids))
            for t, ids in by_table.items()
        )
    )


def record_version(session: Session, keys: Sequence[tuple[str, int]]) -> int:
    """The version of a record made of the audited rows ``keys``: its last audit sequence."""
    return int(session.scalar(sa.select(sa.func.max(AuditRecord.sequence)).where(_rows(keys))) or 0)


def lab_text(data: dict[str, Any]) -> str:
    """A laboratory result as entered (``<50`` below the limit), from its row's values."""
    if data.get("below_limit"):
        return f"<{float(data['limit_value']):g}"
    value = data.get("value")
    return "" if value is None else f"{float(value):g}"


def _field_and_value(table: str, data: dict[str, Any]) -> tuple[str, str]:
    if table == "lab_result":
        return f"LAB.{data.get('test_code')}", lab_text(data)
    return "visit_date", str(data.get("visit_date") or "")


def check_version(
    session: Session, keys: Sequence[tuple[str, int]], version: int | None, what: str
) -> int:
    """Refuse a correction of the record ``keys`` unless ``version`` is its current version.

    Returns the current version. A missing version is refused (a correction must say which
    state it corrects); a stale one raises ``StaleVersionError`` listing, per changed field, the
    value at ``version``, the value now, and who changed it and when.
    """
    current = record_version(session, keys)
    if version is None:
        raise ConflictError(
            f"a correction of {what} must name the version it was made from: read the record "
            f"and send its version (now {current}) as 'version' or in an If-Match header"
        )
    if version == current:
        return current
    records = session.scalars(
        sa.select(AuditRecord).where(_rows(keys)).order_by(AuditRecord.sequence)
    ).all()
    seen: dict[tuple[str, int], dict[str, Any]] = {}
    latest: dict[tuple[str, int], AuditRecord] = {}
    for record in records:
        key = (record.table_name, record.record_id)
        if record.sequence <= version:
            seen[key] = json.loads(record.data)
        else:
            latest[key] = record
    changes: list[dict[str, Any]] = []
    for key, record in latest.items():
        field, now = _field_and_value(key[0], json.loads(record.data))
        before = _field_and_value(key[0], seen[key])[1] if key in seen else None
        if before == now:
            continue
        changes.append(
            {
                "field": field,
                "seen": before,
                "now": now,
                "changed_by": record.actor,
                "changed_at": record.recorded_at,
            }
        )
    changes.sort(key=lambda c: str(c["field"]))
    listing = "; ".join(
        f"{c['field']} {c['seen'] or '(empty)'} -> {c['now']} by {c['changed_by']} "
        f"at {c['changed_at']}"
        for c in changes
    )
    raise StaleVersionError(
        f"{what} changed since version {version} (now {current})"
        + (f": {listing}" if listing else "")
        + "; read it again and redo the correction from the current values",
        version,
        current,
        changes,
    )
