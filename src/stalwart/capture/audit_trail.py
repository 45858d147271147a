"""The audit trail as people read it: who changed which field, from what to what, when and why.

The audit chain (``capture.audit``) holds each written row's full content; this module turns a
record's chain into the trail a monitor or an inspector reads: per write, the form it belongs to
(``Week 4 (WK04)``, ``Adverse event: Fever``), each field that changed with its protocol label
and its value as entered, with its unit as people write it (``CD4 count: 610 -> 4,900
cells/mm³``), who, when and the reason for change. Internal ids, foreign keys and raw JSON are
never shown; a column the reader need not see (a slot's stratum, a hash) is left out.

A record is a participant (everything of theirs, screening to disposition, with queries,
signatures, source verifications, deviations and locks) or one visit's form (the visit, its
results, signatures, verifications and the queries on them). Reads are site-scoped as every
read is (``capture.records``); the arm shows only to roles that may see it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from stalwart.capture.access import Actor, ActorLike, Permission, require
from stalwart.capture.context import CaptureContext, find_participant
from stalwart.capture.query_targets import field_label
from stalwart.capture.tables import (
    AdverseEvent,
    AllocationSlot,
    AuditRecord,
    Base,
    ClinicalEvent,
    Consent,
    DataLock,
    DataQuery,
    Disposition,
    Dose,
    EndpointReview,
    LabResult,
    MissedVisit,
    ProtocolDeviation,
    Signature,
    SourceVerification,
    Visit,
)
from stalwart.capture.versions import lab_text
from stalwart.errors import NotFoundError
from stalwart.protocol.calendar import UNSCHEDULED_PREFIX
from stalwart.protocol.schema import Protocol

__all__ = [
    "AuditTrails",
    "FieldChange",
    "SavedStamp",
    "TrailEntry",
    "readable_trail",
    "unit_text",
    "value_text",
]

_UNITS = {"cells/mm3": "cells/mm³", "mm3": "mm³", "ul": "µL", "uL": "µL"}
"""Units as people write them, where the protocol's ASCII spelling differs."""

_FIELDS: dict[str, dict[str, str]] = {
    "participant": {
        "usubjid": "Participant ID",
        "consent_date": "Consent date",
        "randomization_date": "Randomization date",
    },
    "allocation_slot": {"arm": "Arm"},
    "screening": {
        "screening_number": "Screening number",
        "screening_date": "Screening date",
        "eligible": "Eligible",
        "reasons": "Criteria not met",
    },
    "consent": {"consent_date": "Consent date"},
    "visit": {"visit_date": "Visit date"},
    "missed_visit": {"reason": "Reason the visit was missed"},
    "dose": {"dose_date": "Dose date", "administrations": "Administrations taken"},
    "clinical_event": {"event_code": "Event", "onset_date": "Onset date"},
    "endpoint_review": {"decision": "Endpoint review", "reason": "Review reason"},
    "adverse_event": {
        "term": "Term",
        "verbatim": "Verbatim term",
        "grade": "Grade",
        "start_date": "Start date",
        "end_date": "End date",
        "related": "Related to study treatment",
        "serious": "Serious",
        "seriousness": "Seriousness criteria",
        "outcome": "Outcome",
        "action": "Action taken",
    },
    "disposition": {"status": "End of follow-up", "disposition_date": "Date"},
    "data_query": {
        "text": "Query",
        "status": "Query status",
        "answer": "Site's answer",
        "close_note": "Close note",
    },
    "signature": {"signer": "Signed by", "meaning": "Meaning", "valid": "Signature valid"},
    "source_verification": {
        "verified_by": "Source-verified by",
        "note": "Note",
        "valid": "Verification valid",
    },
    "protocol_deviation": {
        "category": "Deviation category",
        "description": "Deviation",
        "deviation_date": "Deviation date",
        "reason": "Reason",
        "review_note": "Review note",
    },
    "data_lock": {
        "cutoff": "Locked up to",
        "reason": "Lock reason",
        "active": "Lock in force",
        "unlock_reason": "Unlock reason",
    },
}
"""Per table, the columns people read and their labels; every other column is left out."""


@dataclass(frozen=True)
class FieldChange:
    """One field of one write: its label, the value before (None: it had none) and after."""

    field: str
    old: str | None
    new: str | None


@dataclass(frozen=True)
class TrailEntry:
    """One write of a record: when, who, on which form, what it did, the fields, why."""

    when: str
    who: str
    form: str
    action: str
    changes: tuple[FieldChange, ...]
    reason: str | None


@dataclass(frozen=True)
class SavedStamp:
    """When a visit's form was first saved and by whom, and its last change (if any since)."""

    saved_at: str
    saved_by: str
    changed_at: str | None
    changed_by: str | None


def unit_text(unit: str | None) -> str:
    """A unit as people write it (``cells/mm3`` -> ``cells/mm³``)."""
    return _UNITS.get(unit or "", unit or "")


def value_text(value: Any) -> str:
    """A stored value as a form shows it: yes/no, a date, a number with thousands separators."""
    if value is None or value == "":
        return "(blank)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if value.is_integer() and abs(value) >= 1000 else f"{value:g}"
    if isinstance(value, list):
        return "; ".join(str(v) for v in value) or "(none)"
    return str(value)


def _when(stamp: str) -> str:
    """An audit time as people read it: ``2026-12-07 14:20:31 UTC``."""
    try:
        moment = dt.datetime.fromisoformat(stamp).astimezone(dt.UTC)
    except ValueError:
        return stamp
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


class _Reader:
    """Turns a record's audit records into trail entries, remembering each row's last state."""

    def __init__(self, protocol: Protocol, show_arm: bool, visits: dict[int, str]) -> None:
        self.protocol = protocol
        self.show_arm = show_arm
        self.visits = visits  # visit id -> visit code
        self.seen: dict[tuple[str, int], dict[str, Any]] = {}
        self.names = {v.code: v.name for v in protocol.visits}
        self.events = {e.code: e.term for e in protocol.forms.CE.events}

    def visit_name(self, visit_id: Any) -> str:
        code = self.visits.get(int(visit_id or 0), "")
        if code.startswith(UNSCHEDULED_PREFIX):
            return f"Unscheduled visit {code.removeprefix(UNSCHEDULED_PREFIX)} ({code})"
        return f"{self.names.get(code, code)} ({code})" if code else "Visit"

    def form(self, table: str, data: dict[str, Any]) -> str:
        if table in ("visit", "lab_result", "signature", "source_verification", "missed_visit"):
            if table == "visit":
                self.visits[int(data["id"])] = str(data.get("visit_code"))
            if table == "missed_visit":
                code = str(data.get("visit_code"))
                return f"{self.names.get(code, code)} ({code}): missed visit"
            suffix = {"signature": ": signature", "source_verification": ": source verification"}
            return self.visit_name(data.get("visit_id", data.get("id"))) + suffix.get(table, "")
        if table == "adverse_event":
            return f"Adverse event: {data.get('term')}"
        if table == "clinical_event":
            return f"Clinical event: {self.events.get(str(data.get('event_code')), '')}".rstrip(
                ": "
            )
        if table == "dose":
            return f"Doses: {data.get('treatment')} cycle {data.get('cycle')}"
        if table == "data_query":
            return f"Query on {field_label(self.protocol, str(data.get('field')))}"
        return {
            "participant": "Randomization",
            "allocation_slot": "Randomization",
            "screening": "Screening",
            "consent": "Informed consent",
            "disposition": "End of follow-up",
            "endpoint_review": "Endpoint review",
            "protocol_deviation": "Protocol deviation",
            "data_lock": "Data lock",
        }.get(table, table.replace("_", " ").capitalize())

    def values(self, table: str, data: dict[str, Any]) -> dict[str, str]:
        """The readable fields of a row's content, label -> value as shown."""
        if table == "lab_result":
            name = str(data.get("test_code"))
            try:
                item = self.protocol.lab_item(name)
                label, unit = item.label, unit_text(item.unit or data.get("unit"))
            except KeyError:
                label, unit = name, unit_text(data.get("unit"))
            text = lab_text(data)
            if text and not text.startswith("<"):
                text = value_text(float(text))
            return {label: f"{text} {unit}".strip() if text else "(blank)"}
        out: dict[str, str] = {}
        for column, label in _FIELDS.get(table, {}).items():
            if column not in data or (column == "arm" and not self.show_arm):
                continue
            value = data[column]
            if table == "clinical_event" and column == "event_code":
                value = self.events.get(str(value), value)
            out[label] = value_text(value)
        if table == "screening" and isinstance(data.get("answers"), dict):
            labels = {i.name: i for i in self.protocol.screening_items}
            for name, answer in data["answers"].items():
                screening_item = labels.get(name)
                unit = ""
                if screening_item is not None and screening_item.unit and answer is not None:
                    unit = f" {unit_text(screening_item.unit)}"
                label = screening_item.label if screening_item is not None else name
                out[label] = value_text(answer) + unit
        return out

    def action(self, record: AuditRecord, data: dict[str, Any], before: dict[str, Any]) -> str:
        table = record.table_name
        if table == "signature":
            return "signed" if data.get("valid") else "signature voided"
        if table == "source_verification":
            return "source-verified" if data.get("valid") else "verification voided"
        if table == "data_lock":
            return "locked" if data.get("active") else "unlocked"
        if table == "data_query":
            status = str(data.get("status", "")).lower()
            return "query raised" if record.action == "INSERT" else f"query {status}"
        if not before:  # a new row (or a list's slot first held by this participant)
            return "entered"
        return "changed"

    def entry(self, record: AuditRecord) -> TrailEntry | None:
        key = (record.table_name, record.record_id)
        data = json.loads(record.data)
        if record.table_name == "allocation_slot" and data.get("participant_id") is None:
            return None  # the list's slot before anyone held it: not this participant's data
        before = self.seen.get(key, {})
        self.seen[key] = data
        form = self.form(record.table_name, data)
        new = self.values(record.table_name, data)
        old = self.values(record.table_name, before) if before else {}
        if not before:
            # a new row: its empty fields, and a signature's or verification's own validity
            # (the action says it), are noise
            new = {
                k: v
                for k, v in new.items()
                if v not in ("(blank)", "(none)")
                and k not in ("Signature valid", "Verification valid")
            }
        changes = tuple(
            FieldChange(label, old.get(label) if before else None, value)
            for label, value in new.items()
            if not before or old.get(label) != value
        )
        if before and not changes:
            return None  # a write of columns nobody reads (a slot's reservation)
        return TrailEntry(
            _when(record.recorded_at),
            record.actor,
            form,
            self.action(record, data, before),
            changes,
            record.reason,
        )


def readable_trail(
    protocol: Protocol,
    records: Sequence[AuditRecord],
    *,
    show_arm: bool,
    visits: dict[int, str] | None = None,
) -> list[TrailEntry]:
    """The readable trail of ``records`` (oldest first): each write with the fields it changed."""
    reader = _Reader(protocol, show_arm, dict(visits or {}))
    merged: list[TrailEntry] = []
    for entry in (reader.entry(r) for r in records):
        if entry is None:
            continue
        last = merged[-1] if merged else None
        if last is not None and (last.when, last.who, last.form, last.action, last.reason) == (
            entry.when,
            entry.who,
            entry.form,
            entry.action,
            entry.reason,
        ):
            # one write of a form (a visit and its results) reads as one entry
            merged[-1] = TrailEntry(
                last.when,
                last.who,
                last.form,
                last.action,
                last.changes + entry.changes,
                last.reason,
            )
        else:
            merged.append(entry)
    return merged


def _where(keys: dict[str, list[int]]) -> Any:
    return sa.or_(
        *(
            sa.and_(AuditRecord.table_name == table, AuditRecord.record_id.in_(ids))
            for table, ids in keys.items()
            if ids
        )
    )


_OWNED: tuple[type[Base], ...] = (
    Visit,
    LabResult,
    MissedVisit,
    Dose,
    ClinicalEvent,
    AdverseEvent,
    Disposition,
    DataQuery,
    Signature,
    SourceVerification,
    ProtocolDeviation,
    DataLock,
    AllocationSlot,
)
"""Tables whose rows belong to one participant (by ``participant_id``)."""


def _ids(session: Session, stmt: Any) -> list[int]:
    return [int(i) for i in session.scalars(stmt)]


class AuditTrails:
    """Readable audit trails of a participant and of a visit's form, in the reader's scope."""

    def __init__(self, context: CaptureContext) -> None:
        self.context = context

    def participant(self, usubjid: str, actor: ActorLike) -> list[TrailEntry]:
        """Every write of the participant's data, screening to disposition, oldest first."""
        who = require(actor, Permission.READ_RECORDS, "read the audit trail")
        with Session(self.context.engine) as session:
            participant, _ = find_participant(session, usubjid, who)
            pid = participant.id
            keys: dict[str, list[int]] = {
                "participant": [pid],
                "screening": [participant.screening_id],
                "consent": _ids(
                    session,
                    sa.select(Consent.id).where(Consent.screening_id == participant.screening_id),
                ),
                "endpoint_review": _ids(
                    session,
                    sa.select(EndpointReview.id)
                    .join(ClinicalEvent, ClinicalEvent.id == EndpointReview.clinical_event_id)
                    .where(ClinicalEvent.participant_id == pid),
                ),
            }
            for table in _OWNED:
                keys[table.__tablename__] = _ids(
                    session,
                    sa.select(table.id).where(table.participant_id == pid),  # type: ignore[attr-defined]
                )
            return self._read(session, who, keys, pid)

    def visit(self, usubjid: str, visit_code: str, actor: ActorLike) -> list[TrailEntry]:
        """Every write of a visit's form: date, results, signatures, verifications, queries."""
        who = require(actor, Permission.READ_RECORDS, "read the audit trail")
        with Session(self.context.engine) as session:
            participant, _ = find_participant(session, usubjid, who)
            visit_id = self._visit_id(session, participant.id, usubjid, visit_code)
            labs = _ids(session, sa.select(LabResult.id).where(LabResult.visit_id == visit_id))
            queries = _ids(
                session,
                sa.select(DataQuery.id).where(
                    DataQuery.participant_id == participant.id,
                    sa.or_(
                        sa.and_(DataQuery.table_name == "visit", DataQuery.record_id == visit_id),
                        sa.and_(
                            DataQuery.table_name == "lab_result", DataQuery.record_id.in_(labs)
                        ),
                    ),
                ),
            )
            keys = {
                "visit": [visit_id],
                "lab_result": labs,
                "signature": _ids(
                    session, sa.select(Signature.id).where(Signature.visit_id == visit_id)
                ),
                "source_verification": _ids(
                    session,
                    sa.select(SourceVerification.id).where(SourceVerification.visit_id == visit_id),
                ),
                "data_query": queries,
            }
            return self._read(session, who, keys, participant.id)

    def saved(self, usubjid: str, visit_code: str, actor: ActorLike) -> SavedStamp:
        """When the visit's form was first saved and by whom, and its latest change of a value
        (the visit date or a result; signatures and verifications are not changes)."""
        who = require(actor, Permission.READ_RECORDS, "read visits")
        with Session(self.context.engine) as session:
            participant, _ = find_participant(session, usubjid, who)
            visit_id = self._visit_id(session, participant.id, usubjid, visit_code)
            labs = _ids(session, sa.select(LabResult.id).where(LabResult.visit_id == visit_id))
            rows = session.execute(
                sa.select(AuditRecord.recorded_at, AuditRecord.actor, AuditRecord.sequence)
                .where(_where({"visit": [visit_id], "lab_result": labs}))
                .order_by(AuditRecord.sequence)
            ).all()
        first, last = rows[0], rows[-1]
        same = all(r.recorded_at == first.recorded_at for r in rows)
        return SavedStamp(
            _when(first.recorded_at),
            first.actor,
            None if same else _when(last.recorded_at),
            None if same else last.actor,
        )

    # -- helpers -------------------------------------------------------------------------------
    @staticmethod
    def _visit_id(session: Session, pid: int, usubjid: str, visit_code: str) -> int:
        visit_id = session.scalar(
            sa.select(Visit.id).where(Visit.participant_id == pid, Visit.visit_code == visit_code)
        )
        if visit_id is None:
            raise NotFoundError(f"visit {visit_code} of {usubjid} is not recorded")
        return int(visit_id)

    def _read(
        self, session: Session, who: Actor, keys: dict[str, list[int]], pid: int
    ) -> list[TrailEntry]:
        records = session.scalars(
            sa.select(AuditRecord).where(_where(keys)).order_by(AuditRecord.sequence)
        ).all()
        visits = {
            int(i): str(c)
            for i, c in session.execute(
                sa.select(Visit.id, Visit.visit_code).where(Visit.participant_id == pid)
            )
        }
        return readable_trail(
            self.context.protocol, records, show_arm=who.can(Permission.SEE_ARM), visits=visits
        )
