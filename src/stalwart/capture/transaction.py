"""One unit of work on the trial database: a session in one transaction, errors mapped.

Shared by ``capture.service`` and its companions (users, queries, signatures, reviews), so that
every write in the store runs the same way: checks, rows, audit records, one commit.

On PostgreSQL the audit append prepared by ``capture.audit.append_audit`` and the COMMIT go to
the server together (psycopg pipeline mode): the audit chain's head stays locked only while the
server appends and commits, never while it waits for this process to send the next statement.
That lock is what every concurrent writer queues on, so its length bounds the write rate.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from stalwart.capture.audit import PG_APPEND_SQL, take_pending_audit
from stalwart.errors import ConflictError, DatabaseError

__all__ = ["transaction"]


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """A session in one transaction; database failures become stalwart errors."""
    try:
        with Session(engine, expire_on_commit=False) as session, session.begin():
            yield session
            _commit_with_audit(session)
    except IntegrityError as exc:
        raise ConflictError(f"the write conflicts with stored data: {exc.orig}") from None
    except OperationalError as exc:
        raise DatabaseError(f"the database refused the write: {exc.orig}") from None


def _commit_with_audit(session: Session) -> None:
    """PostgreSQL: send the prepared audit appends and the COMMIT in one pipeline.

    Afterwards the session's own commit finds the connection idle and sends nothing. Without
    prepared appends (or on SQLite) the session commits as usual.
    """
    if not session.info.get("stalwart.pending_audit"):
        return
    session.flush()
    payloads = take_pending_audit(session)
    raw: Any = session.connection().connection.dbapi_connection
    import psycopg

    try:
        with raw.pipeline(), raw.cursor() as cursor:
            for payload in payloads:
                cursor.execute(PG_APPEND_SQL, payload)
            raw.commit()
    except psycopg.IntegrityError as exc:
        raise ConflictError(f"the write conflicts with stored data: {exc}") from None
    except psycopg.Error as exc:
        raise DatabaseError(f"the database refused the write: {exc}") from None
