"""The audit append on both backends: the PostgreSQL server-side append (migration 0004, sent
with the COMMIT) gives the hashes ``verify_audit`` recomputes in Python, for any text, under
concurrent writers, and on any commit path."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from stalwart.capture.audit import append_audit, verify_audit
from stalwart.capture.service import Allocation, CaptureService
from stalwart.capture.tables import AuditRecord, Site
from stalwart.errors import ConflictError

Enrol = Callable[..., Allocation]
LABS = {"CD4": 512, "CD4PCT": 28.5, "HIVRNA": "<50"}


def test_any_text_hashes_alike(trial: CaptureService, engine: Engine, enrol: Enrol) -> None:
    who = enrol(trial).usubjid
    trial.record_visit(who, "WK04", dt.date(2006, 2, 2), LABS, 'coordinator "ü" \\ ☕')
    reason = 'Übertragungsfehler: "520" → 512 \\ café\n☕ \u0001'
    trial.correct_visit(who, "WK04", dt.date(2006, 2, 2), LABS | {"CD4": 520}, reason, "dm")
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
