"""The audit append on both backends: the PostgreSQL server-side append (migration 0004, sent
with the COMMIT) gives the hashes ``verify_audit`` recomputes in Python, for any text, under
concurrent writers, and on any commit path."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session

from stalwart.capture.audit import append_audit, verify_audit
from stalwart.capture.enrolment import Allocation
from stalwart.capture.service import CaptureService
from stalwart.capture.tables import AuditRecord, Site
from stalwart.errors import ConflictError

Enrol = Callable[..., Allocation]
LABS = {"CD4": 512, "CD4PCT": 28.5, "HIVRNA": "<50"}


def test_any_text_hashes_alike(trial: CaptureService, engine: Engine, enrol: Enrol) -> None:
    who = enrol(trial).usubjid
    trial.record_visit(who, "WK04", dt.date(2006, 2, 2), LABS, 'coordinator "ü" \\ ☕')
    # any text a person can type (control characters are refused before this: capture.text)
    reason = 'Übertragungsfehler: "520" → 512 \\ café\n☕ \tend'
    version = trial.records.visit(who, "WK04", "dm").version
    trial.correct_visit(
        who, "WK04", dt.date(2006, 2, 2), LABS | {"CD4": 520}, reason, "dm", version=version
    )
    report = verify_audit(engine)
    assert report.ok, report.finding
    with Session(engine) as s:
        last = s.scalars(sa.select(AuditRecord).order_by(AuditRecord.sequence.desc())).first()
    assert last is not None and last.reason == reason


def test_concurrent_writers_keep_one_chain(
    trial: CaptureService, engine: Engine, enrol: Enrol
) -> None:
    people = {a.usubjid: a.randomization_date for a in (enrol(trial) for _ in range(6))}
    before = verify_audit(engine).records
    codes = ["WK04", "WK08", "WK12", "WK16"]

    def work(usubjid: str) -> None:
        start = people[usubjid]
        for i, code in enumerate(codes, start=1):
            trial.record_visit(usubjid, code, start + dt.timedelta(weeks=4 * i), LABS, "t")

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(work, people))
    report = verify_audit(engine)
    assert report.ok, report.finding
    # each visit: the visit row and its three results
    assert report.records == before + len(people) * len(codes) * 4


def test_a_refused_write_appends_nothing(
    trial: CaptureService, engine: Engine, enrol: Enrol
) -> None:
    who = enrol(trial).usubjid
    trial.record_visit(who, "WK04", dt.date(2006, 2, 2), LABS, "t")
    before = verify_audit(engine).records
    with pytest.raises(ConflictError):
        trial.record_visit(who, "WK04", dt.date(2006, 2, 2), LABS, "t")
    assert verify_audit(engine).records == before


def test_a_plain_session_commit_also_appends(trial: CaptureService, engine: Engine) -> None:
    before = verify_audit(engine).records
    with Session(engine) as session, session.begin():
        site = Site(code="ZZ01", name="Extra site", country="ZZ")
        session.add(site)
        session.flush()
        append_audit(session, [("INSERT", site)], "setup", "a site added by hand")
    report = verify_audit(engine)
    assert report.ok, report.finding
    assert report.records == before + 1


def test_insert_rows_gives_each_row_as_stored(
    trial: CaptureService, engine: Engine, enrol: Enrol
) -> None:
    """The Core write path returns what ``row_data`` reads back: the audit records match."""
    from stalwart.capture.audit import row_data
    from stalwart.capture.tables import LabResult, Visit
    from stalwart.capture.writes import insert_rows

    who = enrol(trial).usubjid
    visit_id = trial.record_visit(who, "WK04", dt.date(2006, 2, 2), LABS, "t")
    with Session(engine) as s:
        visit = s.get(Visit, visit_id)
        assert visit is not None
        rows = [
            {
                "visit_id": visit_id,
                "participant_id": visit.participant_id,
                "test_code": code,
                "value": value,
                "unit": "u",
                "below_limit": value is None,
                "limit_value": 50 if value is None else None,
            }
            for code, value in (("A", 512), ("B", None), ("C", 0.1))
        ]
        stored = insert_rows(s, LabResult, rows)
        s.flush()
        assert [r["test_code"] for r in stored] == ["A", "B", "C"]
        # an integer given for a REAL column comes back a float on both backends
        assert stored[0]["value"] == 512.0 and isinstance(stored[0]["value"], float)
        assert stored[1]["limit_value"] == 50.0 and isinstance(stored[1]["limit_value"], float)
        for row in stored:
            assert row == row_data(s.get_one(LabResult, row["id"]))
        s.rollback()
    assert insert_rows(Session(engine), LabResult, []) == []


def test_calendar_is_planned_once_per_arm_and_date(trial: CaptureService) -> None:
    from stalwart.protocol.calendar import participant_calendar

    day = dt.date(2006, 3, 1)
    first = trial.calendar("IL2", day)
    assert trial.calendar("IL2", day) is first
    assert first == participant_calendar(trial.protocol, "IL2", day)
    assert trial.calendar("IL2ART", day) != first


def test_a_write_returns_only_once_its_commit_is_flushed(
    trial: CaptureService, db_url: str, enrol: Enrol
) -> None:
    """PostgreSQL: the write commits without waiting for its flush (the chain's lock is freed
    early) and then waits for a later, flushed commit: when the service returns, the WAL is on
    disk up to the write's changes. Without the wait the WAL writer flushes only every 200 ms,
    so the check below would fail (it cannot pass by chance more than now and then).

    The test databases commit asynchronously (``synchronous_commit = off``, for speed); the
    wait honours the server's setting, so this test's connections turn it back on.
    """
    if make_url(db_url).get_backend_name() != "postgresql":
        return  # SQLite commits synchronously under its write lock: nothing released early
    engine = sa.create_engine(db_url, connect_args={"options": "-c synchronous_commit=on"})
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pageinspect")
            conn.commit()
        durable = CaptureService.open(engine, trial._today)
        who = enrol(durable)
        for i, code in enumerate(("WK04", "WK08", "WK12", "WK16", "WK20"), start=1):
            day = who.randomization_date + dt.timedelta(weeks=4 * i)
            durable.record_visit(who.usubjid, code, day, LABS, "t")
            with engine.connect() as conn:
                written, flushed = conn.exec_driver_sql(
                    "SELECT (SELECT lsn FROM page_header(get_raw_page('audit_head', 0))), "
                    "pg_current_wal_flush_lsn()"
                ).one()
            assert _lsn(flushed) >= _lsn(written), (code, written, flushed)
    finally:
        engine.dispose()


def _lsn(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) + int(low, 16)
