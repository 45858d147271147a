"""Consent, corrections with a reason, e-signatures, queries, endpoint review (both backends)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from sqlalchemy.engine import Engine

from stalwart.capture.access import Actor, Role
from stalwart.capture.audit import verify_audit
from stalwart.capture.enrolment import Allocation
from stalwart.capture.service import CaptureService
from stalwart.capture.tables import AuditRecord, LabResult
from stalwart.capture.users import UserStore
from stalwart.errors import (
    AccessDeniedError,
    AuthenticationError,
    ConflictError,
    EligibilityError,
    NotFoundError,
    ValidationError,
)

D = dt.date
Counts = Callable[[Engine], dict[str, int]]
Enrol = Callable[..., Allocation]
PASSWORD = "investigator secret"
LABS = {"CD4": 510, "HIVRNA": 12000}
MONITOR = Actor("mon", Role.MONITOR, None, 50)
DM = Actor("dm", Role.DATA_MANAGER, None, 51)
REVIEWER = Actor("rev", Role.ENDPOINT_REVIEWER, None, 52)
BLINDED = Actor("stat.b", Role.STATISTICIAN_BLINDED, None, 53)
DSMB = Actor("dsmb", Role.DSMB, None, 54)


@pytest.fixture()
def users(trial: CaptureService) -> UserStore:
    return UserStore(trial.engine, PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture()
def investigator(users: UserStore) -> Actor:
    users.add_user("inv.us", PASSWORD, "investigator", "cli", site="US01")
    return users.authenticate("inv.us", PASSWORD)


def test_consent_then_randomize(
    trial: CaptureService, eligible_answers: Callable[..., dict[str, object]]
) -> None:
    trial.screen("US01", "S1", D(2006, 1, 2), eligible_answers(), "nurse")
    trial.screen("US01", "S2", D(2006, 1, 2), eligible_answers(cd4=250.0), "nurse")
    with pytest.raises(EligibilityError):
        trial.record_consent("S2", D(2006, 1, 3), "nurse")
    trial.record_consent("S1", D(2006, 1, 3), "nurse")
    with pytest.raises(ConflictError, match="already recorded"):
        trial.record_consent("S1", D(2006, 1, 3), "nurse")
    with pytest.raises(ValidationError, match="differs from the consent recorded on 2006-01-03"):
        trial.randomize("S1", D(2006, 1, 4), D(2006, 1, 5), "nurse")
    assert trial.randomize("S1", D(2006, 1, 3), D(2006, 1, 5), "nurse").arm


def test_correction_needs_a_reason_and_voids_the_signature(
    trial: CaptureService,
    engine: Engine,
    enrol: Enrol,
    users: UserStore,
    investigator: Actor,
    row_counts: Counts,
) -> None:
    a = enrol(trial, "US01")
    trial.record_visit(a.usubjid, "WK04", D(2006, 2, 2), LABS | {"CD4PCT": 30}, investigator)
    meaning = "I approve the data of this visit"
    with pytest.raises(AuthenticationError, match="signer's own password"):
        trial.signatures.sign_visit(a.usubjid, "WK04", "wrong", meaning, investigator, users)
    with pytest.raises(ValidationError, match="meaning"):
        trial.signatures.sign_visit(a.usubjid, "WK04", PASSWORD, " ", investigator, users)
    coordinator = Actor("c", Role.SITE_COORDINATOR, "US01", 77)
    with pytest.raises(AccessDeniedError):
        trial.signatures.sign_visit(a.usubjid, "WK04", PASSWORD, meaning, coordinator, users)
    trial.signatures.sign_visit(a.usubjid, "WK04", PASSWORD, meaning, investigator, users)
    with pytest.raises(ConflictError, match=r"already signed by inv\.us"):
        trial.signatures.sign_visit(a.usubjid, "WK04", PASSWORD, meaning, investigator, users)
    assert trial.records.visit(a.usubjid, "WK04", investigator).signed_by == "inv.us"

    before = row_counts(engine)
    v = trial.records.visit(a.usubjid, "WK04", DM).version
    with pytest.raises(ValidationError, match="reason for change is required"):
        trial.correct_visit(
            a.usubjid, "WK04", D(2006, 2, 2), {"CD4": 520, "HIVRNA": 12000}, " ", DM, version=v
        )
    with pytest.raises(ValidationError, match="nothing changed"):
        trial.correct_visit(
            a.usubjid, "WK04", D(2006, 2, 2), LABS | {"CD4PCT": 30}, "typo", DM, version=v
        )
    with pytest.raises(ValidationError, match="cannot be removed"):
        trial.correct_visit(a.usubjid, "WK04", D(2006, 2, 2), LABS, "typo", DM, version=v)
    with pytest.raises(ValidationError, match="outside the valid range"):
        trial.correct_visit(
            a.usubjid, "WK04", D(2006, 2, 2), {"CD4": 50000, "HIVRNA": 1}, "t", DM, version=v
        )
    with pytest.raises(AccessDeniedError):
        trial.correct_visit(a.usubjid, "WK04", D(2006, 2, 2), LABS, "typo", MONITOR, version=v)
    assert row_counts(engine) == before

    labs = {"CD4": 520, "HIVRNA": "<50", "CD4PCT": 31.5}
    trial.correct_visit(
        a.usubjid, "WK04", D(2006, 2, 3), labs, "transcription error", DM, version=v
    )
    visit = trial.records.visit(a.usubjid, "WK04", DM)
    assert visit.labs == {"CD4": "520", "HIVRNA": "<50", "CD4PCT": "31.5"}
    assert visit.visit_date == D(2006, 2, 3) and visit.signed_by is None
    [signature] = trial.signatures.of_participant(a.usubjid, DM)
    assert not signature.valid and signature.void_reason == "visit corrected: transcription error"
    trail = trial.records.visit_audit_trail(a.usubjid, "WK04", investigator)
    updates = [(e.table_name, e.action, e.actor, e.reason) for e in trail if e.action == "UPDATE"]
    assert ("visit", "UPDATE", "dm", "transcription error") in updates
    assert ("signature", "UPDATE", "dm", "transcription error") in updates
    assert sum(1 for t, *_ in updates if t == "lab_result") == 3
    assert [
        e.data["value"]
        for e in trail
        if e.table_name == "lab_result" and e.data["test_code"] == "CD4"
    ] == [510.0, 520.0]
    with engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count(LabResult.id))) == 3
    assert verify_audit(engine).ok


def test_query_lifecycle(trial: CaptureService, engine: Engine, enrol: Enrol) -> None:
    a = enrol(trial, "US01")
    visit_id = trial.record_visit(a.usubjid, "WK04", D(2006, 2, 2), LABS, "nurse")
    us = Actor("c.us", Role.SITE_COORDINATOR, "US01", 60)
    gb = Actor("c.gb", Role.SITE_COORDINATOR, "GB01", 61)
    with pytest.raises(AccessDeniedError):
        trial.queries.raise_query(a.usubjid, "CD4", "check", us, "visit", visit_id)
    with pytest.raises(NotFoundError, match="has no visit record 999"):
        trial.queries.raise_query(a.usubjid, "CD4", "check", MONITOR, "visit", 999)
    with pytest.raises(ValidationError, match="table_name"):
        trial.queries.raise_query(a.usubjid, "CD4", "check", MONITOR, "audit_record", 1)
    qid = trial.queries.raise_query(a.usubjid, "CD4", "CD4 looks high", MONITOR, "visit", visit_id)
    assert [q.id for q in trial.queries.list(us, status="OPEN")] == [qid]
    assert trial.queries.list(gb) == []
    with pytest.raises(NotFoundError):
        trial.queries.answer(qid, "confirmed", gb)
    with pytest.raises(ValidationError):
        trial.queries.answer(qid, "  ", us)
    trial.queries.answer(qid, "value confirmed with the lab report", us)
    with pytest.raises(ConflictError, match="only an open query"):
        trial.queries.answer(qid, "again", us)
    with pytest.raises(AccessDeniedError):
        trial.queries.close(qid, "ok", us)
    trial.queries.close(qid, "resolved", MONITOR)
    [q] = trial.queries.list(DM)
    assert (q.status, q.answered_by, q.closed_by) == ("CLOSED", "c.us", "mon")
    assert verify_audit(engine).ok


def test_endpoint_review(trial: CaptureService, engine: Engine, enrol: Enrol) -> None:
    a = enrol(trial, "US01")
    b = enrol(trial, "GB01")
    e1 = trial.report_clinical_event(a.usubjid, "PCP", D(2006, 3, 1), "nurse")
    e2 = trial.report_clinical_event(b.usubjid, "TB", D(2006, 3, 2), "nurse")
    pending = trial.reviews.events(REVIEWER, pending_only=True)
    assert [e.id for e in pending] == [e1, e2]
    assert not hasattr(pending[0], "arm")
    with pytest.raises(ValidationError, match="reason"):
        trial.reviews.review(e1, "CONFIRMED", "", REVIEWER)
    with pytest.raises(ValidationError, match="decision"):
        trial.reviews.review(e1, "MAYBE", "x", REVIEWER)
    with pytest.raises(AccessDeniedError):
        trial.reviews.review(e1, "CONFIRMED", "x", DM)
    trial.reviews.review(e1, "CONFIRMED", "BAL positive for Pneumocystis", REVIEWER)
    with pytest.raises(ConflictError, match="already reviewed"):
        trial.reviews.review(e1, "REJECTED", "x", REVIEWER)
    with pytest.raises(NotFoundError):
        trial.reviews.review(999, "REJECTED", "x", REVIEWER)
    status = trial.reviews.status(BLINDED)
    assert (status.confirmed, status.rejected, status.awaiting) == (1, 0, 1)
    assert [e.id for e in trial.reviews.events(REVIEWER, pending_only=True)] == [e2]
    assert verify_audit(engine).ok


def test_summaries_blinded_and_by_arm(trial: CaptureService, enrol: Enrol) -> None:
    arms = {}
    for arm in ("NOTHER", "IL2", "IL2ART"):
        a = enrol(trial, arm=arm)
        arms[arm] = a.usubjid
        trial.record_visit(
            a.usubjid, "WK04", D(2006, 2, 2), {"CD4": 500 + 10 * len(arms), "HIVRNA": 100}, "n"
        )
    pooled = trial.records.summary(BLINDED)
    assert set(pooled["groups"]) == {"ALL"}
    assert pooled["groups"]["ALL"]["randomized"] == 3
    assert pooled["groups"]["ALL"]["cd4_by_visit"]["WK04"] == {
        "n": 3,
        "mean": 520.0,
        "median": 520.0,
    }
    text = repr(pooled)
    assert not any(arm in text for arm in ("NOTHER", "IL2"))
    by_arm = trial.records.summary(DSMB, by_arm=True)
    assert set(by_arm["groups"]) == {"NOTHER", "IL2", "IL2ART"}
    assert by_arm["groups"]["IL2"]["cd4_by_visit"]["WK04"]["mean"] == 520.0


def test_worklist_statuses(trial: CaptureService, enrol: Enrol) -> None:
    # trial.today is 2009-03-01; randomized 2009-01-20: ENTRY (day 0) missed, WK04
    # (2009-02-17, window to 02-24) missed, WK08 (03-17, window opens 03-10) upcoming
    a = enrol(trial, "US01", screened=D(2009, 1, 10), randomized=D(2009, 1, 20))
    items = {
        i.visit_code: i.status for i in trial.records.worklist("system") if i.usubjid == a.usubjid
    }
    assert items["ENTRY"] == "missed" and items["WK04"] == "missed"
    assert "WK08" not in items  # window opens more than a week after today
    b = enrol(trial, "US01", screened=D(2009, 1, 20), randomized=D(2009, 1, 30))
    items = {
        i.visit_code: i.status for i in trial.records.worklist("system") if i.usubjid == b.usubjid
    }
    assert items["WK04"] == "overdue"  # target 02-27, window to 03-06
    c = enrol(trial, "US01", screened=D(2009, 1, 24), randomized=D(2009, 2, 2))
    items = {
        i.visit_code: i.status for i in trial.records.worklist("system") if i.usubjid == c.usubjid
    }
    assert items["WK04"] == "due"  # target 03-02, window 02-23 to 03-09
    trial.record_visit(c.usubjid, "WK04", D(2009, 3, 1), LABS, "nurse")
    items = {
        i.visit_code: i.status for i in trial.records.worklist("system") if i.usubjid == c.usubjid
    }
    assert "WK04" not in items
    gb = Actor("c.gb", Role.SITE_COORDINATOR, "GB01", 61)
    assert trial.records.worklist(gb) == []
    with pytest.raises(NotFoundError):
        trial.records.worklist(gb, site="US01")


def test_exports_stream_scoped_rows(trial: CaptureService, enrol: Enrol) -> None:
    a = enrol(trial, "US01")
    b = enrol(trial, "GB01")
    trial.record_visit(a.usubjid, "WK04", D(2006, 2, 2), LABS, "nurse")
    trial.record_visit(b.usubjid, "WK04", D(2006, 2, 2), {"CD4": 400, "HIVRNA": "<50"}, "nurse")
    header, rows = trial.records.export("labs", Actor("c", Role.SITE_COORDINATOR, "GB01", 1))
    assert not isinstance(rows, list)  # an iterator: rows are fetched as consumed
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    lines = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert {r["USUBJID"] for r in lines} == {b.usubjid}
    assert {(r["LBTESTCD"], r["LBSTRESN"], r["BELOW_LIMIT"]) for r in lines} == {
        ("CD4", "400.0", "False"),
        ("HIVRNA", "", "True"),
    }
    header, rows = trial.records.export("participants", DM)
    assert header[0] == "USUBJID" and len(list(rows)) == 2
    with pytest.raises(AccessDeniedError):
        trial.records.export("visits", MONITOR)
    with pytest.raises(ValidationError):
        trial.records.export("everything", DM)


def test_audit_trail_of_a_record_is_site_scoped(
    trial: CaptureService, engine: Engine, enrol: Enrol
) -> None:
    a = enrol(trial, "US01")
    with engine.connect() as conn:
        pid = conn.scalar(
            sa.select(AuditRecord.record_id).where(AuditRecord.table_name == "participant")
        )
    assert pid is not None
    trail = trial.records.audit_trail(
        "participant", pid, Actor("c", Role.SITE_COORDINATOR, "US01", 1)
    )
    assert [(e.action, e.data["usubjid"]) for e in trail] == [("INSERT", a.usubjid)]
    with pytest.raises(NotFoundError):
        trial.records.audit_trail("participant", pid, Actor("c", Role.SITE_COORDINATOR, "GB01", 2))
    with pytest.raises(NotFoundError):
        trial.records.audit_trail("site", 1, Actor("c", Role.SITE_COORDINATOR, "US01", 1))
    assert trial.records.audit_trail("site", 1, DM)[0].table_name == "site"
