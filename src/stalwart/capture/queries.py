"""Data clarification queries: a monitor or data manager asks, the site answers, then it closes.

A query names a participant, optionally one of their records and the field in doubt: by visit
and field as users see them (``raise_on_field``, resolved by ``capture.query_targets``), or by
table and id (kept for compatibility). Its life is OPEN -> ANSWERED -> CLOSED (or OPEN -> CLOSED
when withdrawn), and an answered or closed query may be re-opened by those who raise queries;
every step is an audited update of the query row (who, when, and the note as its reason).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased

from stalwart.capture.access import Actor, ActorLike, Permission, require
from stalwart.capture.audit import append_audit
from stalwart.capture.context import CaptureContext, find_participant
from stalwart.capture.locks import check_unlocked
from stalwart.capture.query_targets import field_label, resolve_target
from stalwart.capture.tables import (
    AdverseEvent,
    AuditRecord,
    Base,
    ClinicalEvent,
    DataQuery,
    Disposition,
    Dose,
    LabResult,
    Participant,
    Site,
    Visit,
)
from stalwart.capture.transaction import transaction
from stalwart.capture.writes import add_rows
from stalwart.errors import ConflictError, NotFoundError, ValidationError

__all__ = ["QUERYABLE_TABLES", "DataQueries", "QueryStep", "QueryView"]

QUERYABLE_TABLES: dict[str, type[Base]] = {
    t.__tablename__: t
    for t in (Participant, Visit, LabResult, Dose, ClinicalEvent, AdverseEvent, Disposition)
}
"""Records a query may point at."""


@dataclass(frozen=True)
class QueryView:
    """A query as listed for the site and the monitor."""

    id: int
    usubjid: str
    site: str
    table_name: str
    record_id: int | None
    field: str
    text: str
    status: str
    raised_by: str
    answer: str | None
    answered_by: str | None
    close_note: str | None
    closed_by: str | None
    visit_code: str | None = None
    label: str = ""


@dataclass(frozen=True)
class QueryStep:
    """One step of a query's life from its audit trail: the state it left, who, when, why."""

    status: str
    actor: str
    at: str
    note: str | None


def _text(field: str, value: str) -> str:
    if not value.strip():
        raise ValidationError(field, "must not be empty")
    return value.strip()


class DataQueries:
    """Raising, answering, closing and listing queries, within the actor's sites."""

    def __init__(self, context: CaptureContext) -> None:
        self.context = context

    def raise_query(
        self,
        usubjid: str,
        field: str,
        text: str,
        actor: ActorLike,
        table_name: str = "participant",
        record_id: int | None = None,
    ) -> int:
        """Open a query on a participant's record."""
        who = require(actor, Permission.RAISE_QUERY, "raise queries")
        text = _text("text", text)
        field = _text("field", field)
        if table_name not in QUERYABLE_TABLES:
            raise ValidationError(
                "table_name", f"{table_name!r} is not one of {sorted(QUERYABLE_TABLES)}"
            )
        with transaction(self.context.engine) as session:
            participant, _ = find_participant(session, usubjid, who)
            check_unlocked(session, participant, f"the data of {usubjid}")
            if record_id is not None:
                table = QUERYABLE_TABLES[table_name]
                row = session.get(table, record_id)
                owner = (
                    row.id if isinstance(row, Participant) else getattr(row, "participant_id", 0)
                )
                if row is None or owner != participant.id:
                    raise NotFoundError(f"{usubjid} has no {table_name} record {record_id}")
            query = DataQuery(
                participant_id=participant.id,
                table_name=table_name,
                record_id=record_id,
                field=field,
                text=text,
                status="OPEN",
                raised_by=who.username,
            )
            add_rows(session, [query], who.label, "query raised")
            return query.id

    def raise_on_field(
        self, usubjid: str, visit_code: str | None, field: str, text: str, actor: ActorLike
    ) -> int:
        """Open a query on ``field`` (``LAB.CD4``, ``visit_date``...) of a recorded visit."""
        who = require(actor, Permission.RAISE_QUERY, "raise queries")
        text = _text("text", text)
        with transaction(self.context.engine) as session:
            participant, _ = find_participant(session, usubjid, who)
            check_unlocked(session, participant, f"the data of {usubjid}")
            target = resolve_target(session, self.context.protocol, participant, visit_code, field)
            query = DataQuery(
                participant_id=participant.id,
                table_name=target.table_name,
                record_id=target.record_id,
                field=target.field,
                text=text,
                status="OPEN",
                raised_by=who.username,
            )
            add_rows(session, [query], who.label, "query raised")
            return query.id

    def reopen(self, query_id: int, note: str, actor: ActorLike) -> None:
        """Re-open an answered or closed query (the raiser, a monitor or data manager)."""
        who = require(actor, Permission.RAISE_QUERY, "re-open queries")
        note = _text("note", note)
        with transaction(self.context.engine) as session:
            query = self._query(session, query_id, who)
            if query.status == "OPEN":
                raise ConflictError(f"query {query_id} is already open")
            query.status, query.close_note, query.closed_by = "OPEN", None, None
            append_audit(session, [("UPDATE", query)], who.label, f"query re-opened: {note}")

    def answer(self, query_id: int, answer: str, actor: ActorLike) -> None:
        """The site's answer to an open query."""
        who = require(actor, Permission.ANSWER_QUERY, "answer queries")
        answer = _text("answer", answer)
        with transaction(self.context.engine) as session:
            query = self._query(session, query_id, who)
            owner = session.get_one(Participant, query.participant_id)
            check_unlocked(session, owner, f"the data of {owner.usubjid}")
            if query.status != "OPEN":
                raise ConflictError(f"query {query_id} is {query.status}; only an open query")
            query.status, query.answer, query.answered_by = "ANSWERED", answer, who.username
            append_audit(session, [("UPDATE", query)], who.label, "query answered")

    def close(self, query_id: int, note: str, actor: ActorLike) -> None:
        """Close a query (answered, or withdrawn while open), with a note."""
        who = require(actor, Permission.CLOSE_QUERY, "close queries")
        note = _text("note", note)
        with transaction(self.context.engine) as session:
            query = self._query(session, query_id, who)
            if query.status == "CLOSED":
                raise ConflictError(f"query {query_id} is already closed")
            query.status, query.close_note, query.closed_by = "CLOSED", note, who.username
            append_audit(session, [("UPDATE", query)], who.label, "query closed")

    def list(
        self,
        actor: ActorLike,
        status: str | None = None,
        usubjid: str | None = None,
        visit_code: str | None = None,
        query_id: int | None = None,
    ) -> list[QueryView]:
        """Queries of the sites in the actor's scope, oldest first (of one visit, or one query,
        if asked)."""
        who = require(actor, Permission.READ_RECORDS, "read queries")
        if status is not None and status not in ("OPEN", "ANSWERED", "CLOSED"):
            raise ValidationError("status", f"{status!r} is not OPEN, ANSWERED or CLOSED")
        lab, visit = aliased(LabResult), aliased(Visit)
        stmt = (
            sa.select(DataQuery, Participant.usubjid, Site.code, visit.visit_code)
            .join(Participant, Participant.id == DataQuery.participant_id)
            .join(Site, Site.id == Participant.site_id)
            .outerjoin(
                lab, sa.and_(DataQuery.table_name == "lab_result", lab.id == DataQuery.record_id)
            )
            .outerjoin(
                visit,
                sa.or_(
                    visit.id == lab.visit_id,
                    sa.and_(DataQuery.table_name == "visit", visit.id == DataQuery.record_id),
                ),
            )
            .order_by(DataQuery.id)
        )
        if who.site is not None:
            stmt = stmt.where(Site.code == who.site)
        if status is not None:
            stmt = stmt.where(DataQuery.status == status)
        if usubjid is not None:
            stmt = stmt.where(Participant.usubjid == usubjid)
        if visit_code is not None:
            stmt = stmt.where(visit.visit_code == visit_code)
        if query_id is not None:
            stmt = stmt.where(DataQuery.id == query_id)
        with Session(self.context.engine) as session:
            rows = session.execute(stmt).all()
        return [
            QueryView(
                q.id,
                u,
                code,
                q.table_name,
                q.record_id,
                q.field,
                q.text,
                q.status,
                q.raised_by,
                q.answer,
                q.answered_by,
                q.close_note,
                q.closed_by,
                v,
                field_label(self.context.protocol, q.field),
            )
            for q, u, code, v in rows
        ]

    def history(self, query_id: int, actor: ActorLike) -> tuple[QueryStep, ...]:
        """Each step of the query (raised, answered, closed, re-opened), from the audit trail."""
        who = require(actor, Permission.READ_RECORDS, "read queries")
        with Session(self.context.engine) as session:
            self._query(session, query_id, who, lock=False)
            rows = session.execute(
                sa.select(AuditRecord.data, AuditRecord.actor, AuditRecord.recorded_at)
                .add_columns(AuditRecord.reason)
                .where(AuditRecord.table_name == "data_query", AuditRecord.record_id == query_id)
                .order_by(AuditRecord.sequence)
            ).all()
        return tuple(QueryStep(json.loads(d)["status"], a, at, r) for d, a, at, r in rows)

    @staticmethod
    def _query(session: Session, query_id: int, who: Actor, *, lock: bool = True) -> DataQuery:
        stmt = (
            sa.select(DataQuery, Site.code)
            .join(Participant, Participant.id == DataQuery.participant_id)
            .join(Site, Site.id == Participant.site_id)
            .where(DataQuery.id == query_id)
        )
        if lock:
            stmt = stmt.with_for_update(of=DataQuery)
        row = session.execute(stmt).one_or_none()
        if row is None or not who.sees_site(row[1]):
            raise NotFoundError(f"no query {query_id}")
        query: DataQuery = row[0]
        return query
