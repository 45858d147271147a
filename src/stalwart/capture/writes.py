"""Audited writes: the two ways a workflow writes rows, and the rule that chooses between them.

**Every write appends to the audit chain in the same transaction.** A workflow opens one
``capture.transaction.transaction``, runs its checks, writes its rows and appends one audit
record per row written (inserted or updated) before that transaction commits; a failed check
or a refused write rolls back the rows and their audit records together. No row of an audited
table (``tables.AUDITED_TABLES``) is written any other way.

**ORM or Core.** A write goes through the ORM by default: ``add_rows`` for new rows, and for a
change the loaded row's attributes are set and the row is given to ``audit.append_audit`` as an
``UPDATE``. The unit of work orders the statements, fills in the ids and the audit record is
read back from the row (``audit.row_data``). A write goes through Core ``insert_rows`` when it
is one of the busiest forms (today: the visit and its laboratory results, written once per
visit of every participant, and the dose logs and adverse event reports that come nearly as
often) and consists of inserts only: one prepared statement per table,
``RETURNING`` the rows as stored, whose content ``audit.append_audit_entries`` records as
given, with no unit of work and no flush. A write that reads ORM rows it then changes (a
correction, a randomization) stays on the ORM, so a session never mixes the two paths for one
row.

Credentials and tokens are covered by the chain through digests (``tables.ACCESS_TABLES``).

**Text every format can carry.** Both paths refuse a text value holding a control character,
NUL, a lone surrogate or a non-character (``capture.text``) before anything is sent to the
database: the ORM's in a ``before_flush`` hook of every session (``capture.audit``), Core's
in ``insert_rows``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from stalwart.capture.audit import append_audit, append_audit_entries, json_value
from stalwart.capture.tables import Base
from stalwart.capture.text import check_values

__all__ = ["add_rows", "insert_audited", "insert_rows"]


def add_rows(session: Session, rows: Sequence[Base], actor: str, reason: str | None = None) -> None:
    """Add new ORM ``rows`` to the session and append one INSERT audit record per row.

    The rows are flushed by ``append_audit``, so their ids are known when this returns.
    """
    session.add_all(rows)
    append_audit(session, [("INSERT", row) for row in rows], actor, reason)


def insert_audited(
    session: Session,
    model: type[Base],
    rows: Sequence[dict[str, Any]],
    actor: str,
    reason: str | None = None,
) -> list[dict[str, Any]]:
    """``insert_rows`` and one INSERT audit record per row stored; the rows as stored."""
    stored = insert_rows(session, model, rows)
    table = model.__tablename__
    append_audit_entries(
        session, [("INSERT", table, row["id"], row) for row in stored], actor, reason
    )
    return stored


def _column_attrs(model: type[Base]) -> list[tuple[str, Any]]:
    return [(attr.key, attr.columns[0]) for attr in sa.inspect(model).column_attrs]


_INSERTS: dict[type[Base], tuple[Any, list[tuple[str, bool]]]] = {}


def insert_rows(
    session: Session, model: type[Base], rows: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Insert ``rows`` into ``model``'s table in one statement; each row as stored, ids included.

    The rows come back from the database (``RETURNING`` every column), JSON-able as
    ``row_data`` gives them, so they are what the audit trail must record. This is the write
    path of the busiest forms: a Core statement built once, run on the session's connection
    without the ORM's unit of work (so rows pending in the session are not flushed first).
    """
    if not rows:
        return []
    cached = _INSERTS.get(model)
    if cached is None:
        attrs = _column_attrs(model)
        stmt = sa.insert(model.__table__).returning(  # type: ignore[arg-type]
            *(column for _, column in attrs), sort_by_parameter_order=True
        )
        # SQLite hands back a REAL column's value as it was given (512, not 512.0)
        keys = [(key, isinstance(column.type, sa.Float)) for key, column in attrs]
        cached = _INSERTS[model] = (stmt, keys)
    stmt, keys = cached
    for row in rows:
        check_values(row.items())
    params: Any = rows[0] if len(rows) == 1 else list(rows)
    stored = session.connection().execute(stmt, params).all()
    return [
        {
            key: json_value(float(v) if real and v is not None else v)
            for (key, real), v in zip(keys, row, strict=True)
        }
        for row in stored
    ]
