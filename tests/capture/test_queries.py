"""Queries by visit and field, their labels and lifecycle with re-opening (SQLite, PostgreSQL)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from stalwart.capture.access import Actor, Role
from stalwart.capture.audit import verify_audit
from stalwart.capture.enrolment import Allocation
from stalwart.capture.service import CaptureService
from stalwart.capture.tables import AuditRecord, DataQuery, LabResult
from stalwart.errors import AccessDeniedError, ConflictError, NotFoundError, ValidationError

D = dt.date
LABS = {"CD4": 450, "CD4PCT": 22.5, "HIVRNA": "<50"}
MONITOR = Actor("mon", Role.MONITOR, None, 50)
DM = Actor("dm", Role.DATA_MANAGER, None, 51)
US = Actor("c.us", Role.SITE_COORDINATOR, "US01", 60)
GB = Actor("c.gb", Role.SITE_COORDINATOR, "GB01", 61)
Enrol = Callable[..., Allocation]
Counts = Callable[[Engine], dict[str, int]]


@pytest.fixture()
def a(trial: CaptureService, enrol: Enrol) -> Allocation:
    a = enrol(trial, "US01")
    trial.record_visit(a.usubjid, "WK04", D(2006, 2, 2), LABS, "nurse")
    trial.record_unscheduled_visit(a.usubjid, D(2006, 2, 20), {"CD4": 300}, "rash", "nurse")
    return a


def test_a_query_by_visit_and_field_points_at_the_stored_result(
    trial: CaptureService, engine: Engine, a: Allocation
) -> None:
    qid = trial.queries.raise_on_field(a.usubjid, "wk04", "LAB.CD4", "CD4 looks low", MONITOR)
    with engine.connect() as conn:
        query = conn.execute(sa.select(DataQuery).where(DataQuery.id == qid)).one()
        lab_id = conn.scalar(sa.select(LabResult.id).where(LabResult.test_code == "CD4"))
    assert (query.table_name, query.record_id, query.field) == ("lab_result", lab_id, "LAB.CD4")
    [view] = trial.queries.list(US, usubjid=a.usubjid, visit_code="WK04")
    assert (view.visit_code, view.label, view.status) == ("WK04", "CD4+ count", "OPEN")
    assert trial.queries.list(US, visit_code="WK08") == []
    date_q = trial.queries.raise_on_field(a.usubjid, "WK04", "visit_date", "date?", DM)
    consent_q = trial.queries.raise_on_field(a.usubjid, None, "consent_date", "signed?", DM)
    labels = {q.id: (q.visit_code, q.label) for q in trial.queries.list(DM)}
    assert labels[date_q] == ("WK04", "Visit date")
    assert labels[consent_q] == (None, "Consent date")
    assert verify_audit(engine).ok


@pytest.mark.parametrize(
    ("visit", "field", "key", "message"),
    [
        ("WK04", "LAB.XYZ", "field", "not a field of a visit"),
        ("WK04", "CD4", "field", "not a field of a visit"),
        ("WK08", "LAB.CD4", "visit", "WK08 .* is not recorded"),
        ("UNS01", "LAB.HIVRNA", "field", "HIV RNA was not entered at UNS01"),
        (None, "LAB.CD4", "visit", "give the visit"),
        ("", "LAB.CD4", "visit", "give the visit"),
    ],
)
def test_a_query_on_no_stored_value_is_refused_and_changes_nothing(
    trial: CaptureService,
    engine: Engine,
    a: Allocation,
    row_counts: Counts,
    visit: str | None,
    field: str,
    key: str,
    message: str,
) -> None:
    before = row_counts(engine)
    with pytest.raises(ValidationError, match=message) as caught:
        trial.queries.raise_on_field(a.usubjid, visit, field, "why?", MONITOR)
    assert caught.value.field == key
    assert row_counts(engine) == before


def test_only_roles_that_raise_queries_raise_them_within_their_sites(
    trial: CaptureService, a: Allocation
) -> None:
    with pytest.raises(AccessDeniedError):
        trial.queries.raise_on_field(a.usubjid, "WK04", "LAB.CD4", "x", US)
    gb_monitor = Actor("mon.gb", Role.MONITOR, "GB01", 62)
    with pytest.raises(NotFoundError):
        trial.queries.raise_on_field(a.usubjid, "WK04", "LAB.CD4", "x", gb_monitor)
    with pytest.raises(ValidationError, match="text"):
        trial.queries.raise_on_field(a.usubjid, "WK04", "LAB.CD4", "   ", MONITOR)


def test_lifecycle_open_answered_closed_reopened_with_who_and_when(
    trial: CaptureService, engine: Engine, a: Allocation
) -> None:
    qid = trial.queries.raise_on_field(a.usubjid, "WK04", "LAB.CD4", "CD4 low?", MONITOR)
    with pytest.raises(ConflictError, match="already open"):
        trial.queries.reopen(qid, "again", MONITOR)
    trial.queries.answer(qid, "confirmed with the lab report", US)
    trial.queries.reopen(qid, "the report shows 540", MONITOR)  # answered, not convinced
    with pytest.raises(AccessDeniedError):
        trial.queries.reopen(qid, "x", US)
    with pytest.raises(NotFoundError):
        trial.queries.answer(qid, "x", GB)
    trial.queries.answer(qid, "corrected to 540", US)
    trial.queries.close(qid, "resolved", DM)
    with pytest.raises(ValidationError, match="note"):
        trial.queries.reopen(qid, " ", DM)
    trial.queries.reopen(qid, "540 not in the source either", DM)
    [q] = trial.queries.list(DM)
    assert (q.status, q.answer, q.answered_by, q.closed_by) == (
        "OPEN",
        "corrected to 540",
        "c.us",
        None,
    )
    with engine.connect() as conn:
        steps = conn.execute(
            sa.select(AuditRecord.actor, AuditRecord.reason, AuditRecord.recorded_at)
            .where(AuditRecord.table_name == "data_query", AuditRecord.record_id == qid)
            .order_by(AuditRecord.sequence)
        ).all()
    assert [(s.actor, s.reason) for s in steps] == [
        ("mon", "query raised"),
        ("c.us", "query answered"),
        ("mon", "query re-opened: the report shows 540"),
        ("c.us", "query answered"),
        ("dm", "query closed"),
        ("dm", "query re-opened: 540 not in the source either"),
    ]
    assert all(s.recorded_at for s in steps)
    history = trial.queries.history(qid, US)
    assert [(h.status, h.actor) for h in history] == [
        ("OPEN", "mon"),
        ("ANSWERED", "c.us"),
        ("OPEN", "mon"),
        ("ANSWERED", "c.us"),
        ("CLOSED", "dm"),
        ("OPEN", "dm"),
    ]
    assert [h.at for h in history] == [s.recorded_at for s in steps]
    with pytest.raises(NotFoundError):
        trial.queries.history(qid, GB)
    assert verify_audit(engine).ok
