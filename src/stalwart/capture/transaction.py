"""One unit of work on the trial database: a session in one transaction, errors mapped.

Shared by every capture workflow (enrolment, follow-up, queries, signatures, reviews, users), so
that every write in the store runs the same way: checks, rows, audit records, one commit (the
rule is written in ``capture.writes``).

On PostgreSQL the audit append prepared by ``capture.audit.append_audit`` and the COMMIT go to
the server together (psycopg pipeline mode): the audit chain's head stays locked only while the
server appends and commits, never while it waits for this process to send the next statement.
That lock is what every concurrent writer queues on, so its length bounds the write rate.

The lock is also released before the commit's WAL is flushed to disk (early lock release): the
write commits with ``synchronous_commit`` off, which frees the lock as soon as the commit record
is written, and the same pipeline then commits a one-statement transaction that writes WAL, at
the server's own ``synchronous_commit`` level (on: flushed; remote_apply: replicated too), which
returns only once the WAL up to and past the write's commit is that safe. Only then does the
service return, so an acknowledged write is as durable as before. WAL is flushed in order, so a
crash can only lose a suffix of the chain, never a record that a later durable record follows,
and a lost suffix was never acknowledged. The flush, the slowest step of a commit, so leaves the
serialized part; PostgreSQL groups the concurrent writers' flushes as usual.
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


_RELEASE_EARLY = "SET LOCAL synchronous_commit TO off"
"""Sent before the append: this transaction's COMMIT frees the chain's lock before its flush."""

_WAIT_FOR_FLUSH = "SELECT pg_logical_emit_message(true, 'stalwart.flush', '')"
"""A transaction that writes WAL (a logical-decoding message, open to any user, read by no one),
committed synchronously: its COMMIT returns once the WAL up to it, the write's commit included,
is flushed. It must write WAL: PostgreSQL commits a transaction that wrote none without a flush,
even one that took a transaction id."""


def _commit_with_audit(session: Session) -> None:
    """PostgreSQL: send the prepared audit appends, the COMMIT, and the wait for its flush in
    one pipeline (one round trip).

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
            cursor.execute(_RELEASE_EARLY)
            for payload in payloads:
                cursor.execute(PG_APPEND_SQL, payload)
            raw.commit()  # written, the chain's lock released; not yet flushed
            cursor.execute(_WAIT_FOR_FLUSH)
            raw.commit()  # flushed: the WAL up to here, the write's commit included
    except psycopg.IntegrityError as exc:
        raise ConflictError(f"the write conflicts with stored data: {exc}") from None
    except psycopg.Error as exc:
        raise DatabaseError(f"the database refused the write: {exc}") from None
