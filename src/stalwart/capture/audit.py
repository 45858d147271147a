"""The append-only, hash-chained audit trail, and its verification.

Every write of capture's workflows appends, in the same transaction, one record per row it
inserts or updates (the rule is written in ``capture.writes``): the row's full new content, who,
when and why. Each record's hash covers its content and the previous record's hash, so altering,
deleting or inserting a record breaks the chain from that point. ``verify`` checks the chain and
then checks every data row against the last audit record of that row, which catches a row
changed behind the service's back.

The database also refuses UPDATE and DELETE on ``audit_record`` (triggers in the migration).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from stalwart.capture.db import core_connection, snapshot_session
from stalwart.capture.tables import (
    ACCESS_TABLES,
    AUDITED_TABLES,
    AuditHead,
    AuditRecord,
    AuthToken,
    Base,
    UserCredential,
)
from stalwart.capture.text import check_values

__all__ = [
    "GENESIS_HASH",
    "PG_APPEND_SQL",
    "Anchor",
    "AuditEntry",
    "AuditFinding",
    "VerifyReport",
    "append_audit",
    "append_audit_entries",
    "data_sha256",
    "json_value",
    "record_hash",
    "row_data",
    "secret_digest",
    "take_pending_audit",
    "verify_audit",
]

GENESIS_HASH = "0" * 64
"""The ``prev_hash`` of the first record."""

_SECRET_COLUMNS: dict[str, dict[str, str]] = {
    UserCredential.__tablename__: {"password_hash": "digest"},
    AuthToken.__tablename__: {"token_sha256": "digest", "csrf_token": "drop"},
}
"""Columns of ``ACCESS_TABLES`` the audit record holds only a digest of, or nothing of."""


def secret_digest(secret: str) -> str:
    """A short digest of a stored secret (a salted password hash, a token's SHA-256): tells
    one credential from another in the audit trail, reveals nothing usable."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()[:16]


def json_value(value: Any) -> Any:
    """A column value as the audit record holds it: dates as ISO text, floats by their repr."""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, float):
        return float(repr(value))
    return value


def row_data(row: Base) -> dict[str, Any]:
    """A row's column values as JSON-able Python values, keyed by column name.

    A secret column (a password hash, a token's hash, a CSRF token) is held as
    ``secret_digest`` of its value, or as None: the audit trail never holds a secret."""
    mapper = sa.inspect(type(row))
    data = {c.key: json_value(getattr(row, c.key)) for c in mapper.column_attrs}
    for column, how in _SECRET_COLUMNS.get(type(row).__tablename__, {}).items():
        value = data.get(column)
        data[column] = None if how == "drop" or value is None else secret_digest(value)
    return data


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _record_hash(
    sequence: int,
    recorded_at: str,
    actor: str,
    action: str,
    table: str,
    record_id: int,
    data: str,
    reason: str | None,
    prev_hash: str,
) -> str:
    content = _canonical(
        [sequence, recorded_at, actor, action, table, record_id, data, reason, prev_hash]
    )
    return hashlib.sha256(content.encode("ascii")).hexdigest()


def record_hash(rec: AuditRecord) -> str:
    """The hash a stored record must have, computed from its content and ``prev_hash``."""
    return _record_hash(
        rec.sequence,
        rec.recorded_at,
        rec.actor,
        rec.action,
        rec.table_name,
        rec.record_id,
        rec.data,
        rec.reason,
        rec.prev_hash,
    )


AuditEntry = tuple[str, str, int, dict[str, Any]]
"""One audit record to append: ``(action, table name, primary key, the row's content)``; the
content is keyed by column, as ``row_data`` or ``writes.insert_rows`` gives it."""


def append_audit(
    session: Session,
    rows: list[tuple[str, Base]],
    actor: str,
    reason: str | None = None,
    now: Callable[[], dt.datetime] | None = None,
) -> None:
    """Append one audit record per ``(action, row)`` of ORM rows (flushed here for their ids)."""
    session.flush()
    entries = [
        (action, type(row).__tablename__, int(sa.inspect(row).identity[0]), row_data(row))  # type: ignore[index]
        for action, row in rows
    ]
    append_audit_entries(session, entries, actor, reason, now)


def append_audit_entries(
    session: Session,
    entries: Sequence[AuditEntry],
    actor: str,
    reason: str | None = None,
    now: Callable[[], dt.datetime] | None = None,
) -> None:
    """Append one audit record per entry to the chain, inside ``session``'s transaction.

    The chain head is locked (``FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` holds
    the database) so appends are serialized.

    On PostgreSQL the records are prepared here and appended at commit by one call of
    ``stalwart_audit_append`` (migration 0004), which locks the head, hashes and inserts in the
    server; ``capture.transaction`` sends that call and the COMMIT together, so the lock every
    writer queues on is held for the server's work only, not for round trips to a busy client.
    Any other commit of the session appends them first (a ``before_commit`` hook). The hashes
    are the ones the Python path computes, and the chain follows commit order.
    """
    if not entries:
        return
    check_values((("reason", reason), ("actor", actor)))
    stamp = (now or (lambda: dt.datetime.now(dt.UTC)))().isoformat()
    if session.get_bind().dialect.name == "postgresql":
        session.info.setdefault(_PENDING, []).append(_server_payload(entries, actor, reason, stamp))
        return
    conn = core_connection(session)
    head = conn.execute(_HEAD).one_or_none()
    sequence, prev = (head.sequence, head.hash) if head is not None else (0, GENESIS_HASH)
    records = []
    for action, table, record_id, row in entries:
        sequence += 1
        data = _canonical(row)
        digest = _record_hash(sequence, stamp, actor, action, table, record_id, data, reason, prev)
        records.append(
            {
                "sequence": sequence,
                "recorded_at": stamp,
                "actor": actor,
                "action": action,
                "table_name": table,
                "record_id": record_id,
                "data": data,
                "reason": reason,
                "prev_hash": prev,
                "hash": digest,
            }
        )
        prev = digest
    conn.execute(_INSERT_RECORDS, records)
    if head is None:
        conn.execute(_INSERT_HEAD, [{"id": 1, "sequence": sequence, "hash": prev}])
    else:
        conn.execute(_MOVE_HEAD, {"new_sequence": sequence, "new_hash": prev})


_HEAD = sa.select(AuditHead.sequence, AuditHead.hash).where(AuditHead.id == 1).with_for_update()
_RECORDS = cast(sa.Table, AuditRecord.__table__)
_HEAD_ROW = cast(sa.Table, AuditHead.__table__)
_INSERT_RECORDS = sa.insert(_RECORDS)
_INSERT_HEAD = sa.insert(_HEAD_ROW)
_MOVE_HEAD = (
    sa.update(_HEAD_ROW)
    .where(_HEAD_ROW.c.id == 1)
    .values(sequence=sa.bindparam("new_sequence"), hash=sa.bindparam("new_hash"))
)
"""The statements of every append (SQLite), built once and run as Core on the session's
connection: no ORM object stands for the head or a record during a write."""

_PENDING = "stalwart.pending_audit"
"""``session.info`` key of the audit appends prepared for the commit (PostgreSQL)."""

PG_APPEND_SQL = "SELECT stalwart_audit_append(%(stamp)s, %(actor)s, %(reason)s, %(items)s)"
"""The server-side append, in psycopg's parameter style."""

_PG_APPEND = sa.text("SELECT stalwart_audit_append(:stamp, :actor, :reason, :items)")


def _server_payload(
    entries: Sequence[AuditEntry], actor: str, reason: str | None, stamp: str
) -> dict[str, Any]:
    """The arguments of ``stalwart_audit_append``: everything of each record's hashed text but
    the sequence number and the previous hash, which only the server knows under the lock."""
    items = []
    for action, table, record_id, row in entries:
        data = _canonical(row)
        # _record_hash's text is [sequence,<middle>,prev_hash]
        middle = _canonical([stamp, actor, action, table, record_id, data, reason])[1:-1]
        items.append([action, table, record_id, data, middle])
    return {"stamp": stamp, "actor": actor, "reason": reason, "items": json.dumps(items)}


def take_pending_audit(session: Session) -> list[dict[str, Any]]:
    """The audit appends prepared in ``session`` and not yet sent (PostgreSQL), now taken."""
    pending: list[dict[str, Any]] = session.info.pop(_PENDING, [])
    return pending


@event.listens_for(Session, "before_commit")
def _append_pending(session: Session) -> None:
    """Any commit writes the session's prepared audit records first (the plain path)."""
    for payload in take_pending_audit(session):
        session.execute(_PG_APPEND, payload)


@event.listens_for(Session, "before_flush")
def _refuse_uncarriable_text(session: Session, _context: Any, _instances: Any) -> None:
    """Every new or changed text value of a row must be text every format can carry."""
    for obj in session.new:
        if isinstance(obj, Base):
            check_values(obj.__dict__.items())
    for obj in session.dirty:
        if isinstance(obj, Base):
            state = sa.inspect(obj)
            check_values(
                (attr.key, value) for attr in state.attrs for value in attr.history.added or ()
            )


@event.listens_for(Session, "after_rollback")
def _discard_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)


@dataclass(frozen=True)
class AuditFinding:
    """The first place where the chain or the data does not verify."""

    sequence: int | None
    table: str | None
    record_id: int | None
    message: str


@dataclass(frozen=True)
class VerifyReport:
    """Outcome of ``verify_audit``: ``finding`` is None when everything verifies."""

    records: int
    rows: int
    head_hash: str
    finding: AuditFinding | None

    @property
    def ok(self) -> bool:
        """True when the chain and the data verify."""
        return self.finding is None


def _records(session: Session) -> Iterator[AuditRecord]:
    stmt = sa.select(AuditRecord).order_by(AuditRecord.sequence).execution_options(yield_per=2000)
    result = session.execute(stmt).scalars()
    try:
        yield from result
    finally:
        # the chain walk stops at the first finding: close the (server-side, on PostgreSQL)
        # cursor explicitly, or psycopg finds it still open when it is garbage-collected
        result.close()


def _check_chain(
    session: Session, seen: dict[int, str]
) -> tuple[int, str, dict[tuple[str, int], tuple[int, str]], AuditFinding | None]:
    """Walk the chain; returns count, last hash, last (sequence, data) per row, first finding.

    Fills ``seen`` (sequence -> hash) for the sequences it holds as keys (the anchors')."""
    latest: dict[tuple[str, int], tuple[int, str]] = {}
    prev = GENESIS_HASH
    count = 0
    for rec in _records(session):
        count += 1
        where = f"audit record {rec.sequence} ({rec.table_name} id {rec.record_id})"
        if rec.sequence != count:
            return (
                count,
                prev,
                latest,
                AuditFinding(
                    rec.sequence,
                    rec.table_name,
                    rec.record_id,
                    f"{where}: sequence gap, expected record {count} (a record was deleted or "
                    "inserted)",
                ),
            )
        if rec.prev_hash != prev:
            return (
                count,
                prev,
                latest,
                AuditFinding(
                    rec.sequence,
                    rec.table_name,
                    rec.record_id,
                    f"{where}: prev_hash does not match the hash of record {count - 1}",
                ),
            )
        if record_hash(rec) != rec.hash:
            return (
                count,
                prev,
                latest,
                AuditFinding(
                    rec.sequence,
                    rec.table_name,
                    rec.record_id,
                    f"{where}: content does not match its hash (the record was altered)",
                ),
            )
        prev = rec.hash
        if rec.sequence in seen:
            seen[rec.sequence] = rec.hash
        latest[(rec.table_name, rec.record_id)] = (rec.sequence, rec.data)
    return count, prev, latest, None


def _check_rows(
    session: Session, latest: dict[tuple[str, int], tuple[int, str]]
) -> tuple[int, AuditFinding | None]:
    """Compare every data row with its last audit record; rows without one are findings.

    Rows of ``ACCESS_TABLES`` are compared too (a planted token or a replaced password hash is
    a finding), but one missing is not: a backup restores only their digests' placeholders,
    and a removed credential or token only takes access away."""
    rows = 0
    seen: set[tuple[str, int]] = set()
    for table in AUDITED_TABLES + ACCESS_TABLES:
        name = table.__tablename__
        pk = sa.inspect(table).primary_key[0]
        for row in session.execute(sa.select(table).order_by(pk)).scalars():
            rows += table in AUDITED_TABLES  # the count of data rows, as before
            key = (name, int(sa.inspect(row).identity[0]))  # type: ignore[index]
            seen.add(key)
            if key not in latest:
                return rows, AuditFinding(
                    None,
                    name,
                    key[1],
                    f"{name} id {key[1]} has no audit record (written behind the service's back)",
                )
            seq, data = latest[key]
            stored = json.loads(data)
            # a column a later migration added, still empty, is no change to an older row
            current = {k: v for k, v in row_data(row).items() if k in stored or v is not None}
            if _canonical(current) != _canonical(stored):
                fields = sorted(
                    k for k in current.keys() | stored.keys() if current.get(k) != stored.get(k)
                )
                detail = ", ".join(
                    f"{f}: audit {stored.get(f)!r} vs data {current.get(f)!r}" for f in fields[:3]
                )
                return rows, AuditFinding(
                    seq,
                    name,
                    key[1],
                    f"audit record {seq} ({name} id {key[1]}) does not "
                    f"match the stored row: {detail}",
                )
    access = {t.__tablename__ for t in ACCESS_TABLES}
    missing = sorted(
        (k for k in set(latest) - seen if k[0] not in access), key=lambda k: latest[k][0]
    )
    if missing:
        name, rid = missing[0]
        seq = latest[missing[0]][0]
        return rows, AuditFinding(
            seq, name, rid, f"audit record {seq} ({name} id {rid}): the row was deleted"
        )
    return rows, None


@dataclass(frozen=True)
class Anchor:
    """A head the chain is known to have had, from outside the database (a signed checkpoint):
    record ``sequence`` had hash ``head_hash``; ``label`` names the checkpoint in findings."""

    sequence: int
    head_hash: str
    label: str


def _check_anchors(
    anchors: Sequence[Anchor], seen: dict[int, str], count: int
) -> AuditFinding | None:
    """The first anchor (by sequence) the chain contradicts: shorter than it, or another hash."""
    previous = 0
    for anchor in sorted(anchors, key=lambda a: a.sequence):
        if anchor.sequence > count:
            return AuditFinding(
                count,
                None,
                None,
                f"{anchor.label} is contradicted: the chain ends at record {count}, so records "
                f"{count + 1} to {anchor.sequence} (at least) were removed since it was signed, "
                "with the chain head re-pointed",
            )
        found = seen.get(anchor.sequence)
        if found is not None and found != anchor.head_hash:
            return AuditFinding(
                anchor.sequence,
                None,
                None,
                f"{anchor.label} is contradicted: record {anchor.sequence} now hashes to "
                f"{found[:16]}... but was {anchor.head_hash[:16]}... when signed, so a record "
                f"from {previous + 1} to {anchor.sequence} was altered, inserted or removed and "
                "the chain rehashed",
            )
        previous = anchor.sequence
    return None


def verify_audit(engine: Engine | sa.Connection, anchors: Sequence[Anchor] = ()) -> VerifyReport:
    """Check the hash chain, the chain head, every data row against the chain, and the chain
    against ``anchors`` (signed checkpoints), all in one snapshot of the database.

    A finding of an anchor comes first when the chain itself verifies (a rewritten, rehashed
    history verifies on its own); a break in the chain is reported where it is."""
    with snapshot_session(engine) as session:
        seen: dict[int, str] = {a.sequence: "" for a in anchors}
        count, last_hash, latest, finding = _check_chain(session, seen)
        seen = {k: v for k, v in seen.items() if v}
        if finding is None:
            finding = _check_anchors(anchors, seen, count)
        if finding is None:
            head = session.get(AuditHead, 1)
            head_seq, head_hash = (head.sequence, head.hash) if head else (0, GENESIS_HASH)
            if head_seq != count or head_hash != last_hash:
                finding = AuditFinding(
                    count,
                    None,
                    None,
                    f"the chain head says record {head_seq} but the chain ends at record "
                    f"{count}: records were removed from the end or the head was altered",
                )
        rows = 0
        if finding is None:
            rows, finding = _check_rows(session, latest)
        return VerifyReport(records=count, rows=rows, head_hash=last_hash, finding=finding)


def data_sha256(engine: Engine | sa.Connection) -> str:
    """SHA-256 of every data row of every audited table, in key order: the data snapshot's name.

    Audit timestamps are not part of it, so two databases holding the same data hash alike.
    """
    digest = hashlib.sha256()
    with snapshot_session(engine) as session:
        for table in AUDITED_TABLES:
            digest.update(table.__tablename__.encode())
            for data in _table_data(session, table):
                digest.update(_canonical(data).encode("ascii"))
                digest.update(b"\n")
    return digest.hexdigest()


def _table_data(session: Session, model: type[Base]) -> Iterator[dict[str, Any]]:
    """Every row of ``model``'s table in key order, as ``row_data`` gives it, read as columns
    (no ORM object per row: the whole store is read)."""
    attrs = [(attr.key, attr.columns[0]) for attr in sa.inspect(model).column_attrs]
    stmt = sa.select(*(column.label(key) for key, column in attrs)).order_by(
        sa.inspect(model).primary_key[0]
    )
    secrets = _SECRET_COLUMNS.get(model.__tablename__, {})
    for row in session.execute(stmt).mappings():
        data = {key: json_value(value) for key, value in row.items()}
        for column, how in secrets.items():
            value = data.get(column)
            data[column] = None if how == "drop" or value is None else secret_digest(value)
        yield data
