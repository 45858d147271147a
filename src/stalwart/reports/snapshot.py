"""A frozen data snapshot: everything a report needs, read from the store in one transaction.

The store is read once, inside one read transaction (``capture.db.snapshot_connection``:
REPEATABLE READ on PostgreSQL, a deferred WAL read on SQLite), so the data hash, the audit
chain head, the analysis extract and the event listing all describe the same state even while
sites keep entering data. The snapshot is named by its data hash: the SHA-256 that
:func:`stalwart.capture.audit.data_sha256` computes (and results.json's provenance carries), so a
report can be matched to the exact data it came from.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from stalwart.analysis.datasets.source import StoreExtract, read_store
from stalwart.capture.audit import GENESIS_HASH, data_sha256
from stalwart.capture.db import snapshot_connection
from stalwart.capture.locks import lock_label, trial_lock
from stalwart.capture.tables import (
    AuditHead,
    AuditRecord,
    ClinicalEvent,
    DataQuery,
    EndpointReview,
    Participant,
    Site,
    TrialInfo,
)
from stalwart.errors import AnalysisError, DatabaseError
from stalwart.protocol.load import LoadedProtocol, parse_protocol

__all__ = ["Snapshot", "take_snapshot"]


@dataclass(frozen=True)
class Snapshot:
    """The store at one instant: protocol, data hash, audit head, extract and event listing.

    ``events`` has one row per reported clinical event (opportunistic event or death):
    ``id, usubjid, event_code, category, onset_date, randomization_date, decision`` where
    ``decision`` is the endpoint review's verdict (``CONFIRMED``, ``REJECTED``) or None.
    ``queries`` has one row per data query: ``site, status, raised_at`` (the time its audit
    record was written, as ISO text; None where the chain holds none).
    """

    loaded: LoadedProtocol
    data_sha256: str
    audit_sequence: int
    audit_head: str
    extract: StoreExtract
    events: pd.DataFrame
    taken_at: dt.datetime
    queries: pd.DataFrame
    lock: str = ""
    """The trial lock the snapshot was taken under, in words (``capture.locks.lock_label``:
    its id, scope, cut-off, who and when), or ``no lock: live data``."""

    @property
    def name(self) -> str:
        """The snapshot's name: its data hash."""
        return self.data_sha256

    @functools.cached_property
    def cutoff(self) -> dt.date:
        """The data cut-off: the latest date recorded in the snapshot (randomization, visit,
        dose, event, adverse event or disposition), never after the day it was taken. Worked
        out once (a report asks for it in several sections)."""
        x = self.extract
        columns = (
            (x.participants, "randomization_date"),
            (x.labs, "visit_date"),
            (x.doses, "dose_date"),
            (x.clinical_events, "onset_date"),
            (x.adverse_events, "start_date"),
            (x.dispositions, "disposition_date"),
        )
        dates = [
            pd.to_datetime(frame[column]).max()
            for frame, column in columns
            if column in frame.columns and len(frame)
        ]
        latest = max((d for d in dates if not pd.isna(d)), default=None)
        taken = self.taken_at.date()
        return taken if latest is None else min(latest.date(), taken)

    @property
    def short_name(self) -> str:
        """The first 12 hex digits of the name, enough to tell snapshots apart by eye."""
        return self.data_sha256[:12]


def _trial_info(session: Session) -> TrialInfo:
    if not sa.inspect(session.connection()).has_table(TrialInfo.__tablename__):
        raise DatabaseError(
            "this database holds no trial (no trial tables): run `stalwart init` (or `stalwart "
            "demo`) first, or check the --database URL"
        )
    info = session.get(TrialInfo, 1)
    if info is None:
        raise DatabaseError(
            "this database holds no trial: run `stalwart init` (or `stalwart demo`) first"
        )
    return info


def _check_protocol(stored: LoadedProtocol, expected: LoadedProtocol | None) -> None:
    if expected is None or expected.sha256 == stored.sha256:
        return
    s, e = stored.protocol.study, expected.protocol.study
    if (s.id, s.version) != (e.id, e.version):
        what = f"protocol {s.id} version {s.version}, but the report was asked for {e.id} "
        what += f"version {e.version} ({expected.source})"
    else:
        what = (
            f"protocol {s.id} version {s.version}, but the protocol text given "
            f"({expected.source}) differs from it"
        )
    raise DatabaseError(
        f"the database was initialized from {what} (sha256 {stored.sha256[:12]}... vs "
        f"{expected.sha256[:12]}...): pass --protocol with the file the database was "
        "initialized from, or report from a database of this protocol version"
    )


def _events(session: Session) -> pd.DataFrame:
    stmt = (
        sa.select(
            ClinicalEvent.id,
            Participant.usubjid,
            ClinicalEvent.event_code,
            ClinicalEvent.category,
            ClinicalEvent.onset_date,
            Participant.randomization_date,
            EndpointReview.decision,
        )
        .join(Participant, Participant.id == ClinicalEvent.participant_id)
        .outerjoin(EndpointReview, EndpointReview.clinical_event_id == ClinicalEvent.id)
        .order_by(Participant.usubjid, ClinicalEvent.onset_date, ClinicalEvent.id)
    )
    result = session.execute(stmt)
    return pd.DataFrame.from_records(list(result), columns=list(result.keys()))


def _queries(session: Session) -> pd.DataFrame:
    raised = (
        sa.select(AuditRecord.record_id, sa.func.min(AuditRecord.recorded_at).label("raised_at"))
        .where(AuditRecord.table_name == DataQuery.__tablename__, AuditRecord.action == "INSERT")
        .group_by(AuditRecord.record_id)
        .subquery()
    )
    stmt = (
        sa.select(Site.code.label("site"), DataQuery.status, raised.c.raised_at)
        .join(Participant, Participant.id == DataQuery.participant_id)
        .join(Site, Site.id == Participant.site_id)
        .outerjoin(raised, raised.c.record_id == DataQuery.id)
        .order_by(DataQuery.id)
    )
    result = session.execute(stmt)
    return pd.DataFrame.from_records(list(result), columns=["site", "status", "raised_at"])


def _read(conn: Connection, expected: LoadedProtocol | None) -> Snapshot:
    with Session(bind=conn) as session:
        info = _trial_info(session)
        stored = parse_protocol(info.protocol_text, source="protocol stored in the database")
        if stored.sha256 != info.protocol_sha256:
            raise DatabaseError("the stored protocol does not match its recorded hash")
        _check_protocol(stored, expected)
        randomized = session.scalar(sa.select(sa.func.count()).select_from(Participant)) or 0
        if randomized == 0:
            raise AnalysisError(
                "the database holds no randomized participants, so there is nothing to report: "
                "enroll and randomize participants first (or run `stalwart demo`)"
            )
        head = session.get(AuditHead, 1)
        sequence, head_hash = (head.sequence, head.hash) if head else (0, GENESIS_HASH)
        events = _events(session)
        queries = _queries(session)
        lock = lock_label(trial_lock(session))
    # given the connection, data_sha256 and read_store read in its transaction: this snapshot
    digest = data_sha256(conn)
    extract = read_store(conn)
    return Snapshot(
        loaded=stored,
        data_sha256=digest,
        audit_sequence=sequence,
        audit_head=head_hash,
        extract=extract,
        events=events,
        taken_at=dt.datetime.now(dt.UTC),
        queries=queries,
        lock=lock,
    )


def take_snapshot(engine: Engine, expected: LoadedProtocol | None = None) -> Snapshot:
    """Read the store once, in one read transaction, and name what was read by its data hash.

    Parameters
    ----------
    engine
        An engine of an initialized trial database.
    expected
        The protocol the caller means to report under; None accepts the database's own.

    Raises
    ------
    DatabaseError
        The database holds no trial, or was initialized from another protocol (version).
    AnalysisError
        No participant has been randomized: there is nothing to report.
    """
    try:
        with snapshot_connection(engine) as conn:
            return _read(conn, expected)
    except SQLAlchemyError as exc:
        raise DatabaseError(
            f"cannot read the trial database: {type(exc).__name__}: {exc}; check that it is a "
            "stalwart database at the latest schema (`stalwart init` creates one)"
        ) from None
