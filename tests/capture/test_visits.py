"""Visits as protocols define them: late and early visits saved as deviations, unscheduled and
missed visits, the study-entry visit with randomization, late consent; on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from sqlalchemy.engine import Engine

from stalwart.capture.access import Actor, Role
from stalwart.capture.audit import verify_audit
from stalwart.capture.deviations import deviation_rows
from stalwart.capture.enrolment import Allocation
from stalwart.capture.service import CaptureService
from stalwart.errors import AccessDeniedError, ConflictError, NotFoundError, ValidationError

D = dt.date
DAY = dt.timedelta(days=1)
RAND = D(2008, 6, 2)  # trial.today is 2009-03-01: every week-32 window has closed
LABS = {"CD4": 450, "CD4PCT": 22.5, "HIVRNA": "<50"}
Enrol = Callable[..., Allocation]
Counts = Callable[[Engine], dict[str, int]]


@pytest.fixture()
def a(trial: CaptureService, enrol: Enrol) -> Allocation:
    return enrol(trial, "US01", screened=RAND - 5 * DAY, randomized=RAND)


def _statuses(trial: CaptureService, usubjid: str) -> dict[str, str]:
    return {v.code: v.status for v in trial.records.participant(usubjid, "dm").calendar}


def test_a_late_visit_is_saved_flagged_and_logged(trial: CaptureService, a: Allocation) -> None:
    late = RAND + (56 + 14) * DAY  # week 8, two weeks late (window +/- 7 days)
    trial.record_visit(
        a.usubjid, "WK08", late, LABS, "nurse", deviation_reason="participant was travelling"
    )
    entry = next(v for v in trial.records.participant(a.usubjid, "dm").calendar if v.code == "WK08")
    assert entry.status == "recorded" and entry.out_of_window and entry.visit_date == late
    (dev,) = trial.deviations.list("dm", usubjid=a.usubjid)
    assert dev.category == "VISIT OUT OF WINDOW" and dev.visit_code == "WK08"
    assert dev.reason == "participant was travelling" and dev.source == "DETECTED"
    assert "14 days after its target, 7 after the window closed" in dev.description
    assert dev.deviation_date == late and dev.site == "US01" and dev.reviewed_by is None
    (row,) = deviation_rows(trial.engine)
    assert row["USUBJID"] == a.usubjid and row["DVCAT"] == "VISIT OUT OF WINDOW"
    assert row["DVSTDTC"] == late.isoformat() and row["REVIEWED"] == "N"
    assert verify_audit(trial.engine).ok


def test_out_of_window_without_reason_changes_nothing(
    trial: CaptureService, a: Allocation, row_counts: Counts
) -> None:
    before = row_counts(trial.engine)
    with pytest.raises(ValidationError) as info:
        trial.record_visit(a.usubjid, "WK08", RAND + 70 * DAY, LABS, "nurse")
    assert info.value.field == "deviation_reason"
    assert "2008-07-21 to 2008-08-04" in info.value.message
    assert row_counts(trial.engine) == before


def test_a_correction_moving_a_visit_out_of_window_is_logged_once(
    trial: CaptureService, a: Allocation
) -> None:
    trial.record_visit(a.usubjid, "WK04", RAND + 28 * DAY, LABS, "nurse")
    version = trial.records.visit(a.usubjid, "WK04", "dm").version
    trial.correct_visit(
        a.usubjid, "WK04", RAND + 40 * DAY, LABS, "date typed wrong", "dm", version=version
    )
    version = trial.records.visit(a.usubjid, "WK04", "dm").version
    trial.correct_visit(
        a.usubjid, "WK04", RAND + 41 * DAY, LABS, "date typed wrong again", "dm", version=version
    )
    (dev,) = trial.deviations.list("dm", usubjid=a.usubjid)
    assert dev.reason == "date typed wrong" and dev.deviation_date == RAND + 40 * DAY


def test_unscheduled_visits_are_numbered_and_take_any_labs(
    trial: CaptureService, a: Allocation, row_counts: Counts
) -> None:
    first = trial.record_unscheduled_visit(
        a.usubjid, RAND + 10 * DAY, {"CD4": 300}, "fever: CD4 checked", "nurse"
    )
    second = trial.record_unscheduled_visit(
        a.usubjid, RAND + 11 * DAY, {"HIVRNA": 1200}, "repeat viral load", "nurse"
    )
    assert (first, second) == ("UNS01", "UNS02")
    detail = trial.records.participant(a.usubjid, "dm")
    assert [u["code"] for u in detail.unscheduled] == ["UNS01", "UNS02"]
    assert trial.records.visit(a.usubjid, "UNS02", "dm").labs == {"HIVRNA": "1200"}
    assert not trial.deviations.list("dm", usubjid=a.usubjid)  # not a deviation
    before = row_counts(trial.engine)
    for call, field in [
        (lambda: trial.record_unscheduled_visit(a.usubjid, RAND, {}, "why", "n"), "labs"),
        (
            lambda: trial.record_unscheduled_visit(a.usubjid, RAND, {"CD4": 1}, " ", "n"),
            "reason",
        ),
        (
            lambda: trial.record_unscheduled_visit(a.usubjid, RAND - DAY, {"CD4": 300}, "why", "n"),
            "visit_date",
        ),
        (
            lambda: trial.record_unscheduled_visit(a.usubjid, RAND, {"CD4": -5}, "why", "n"),
            "LAB.CD4",
        ),
    ]:
        with pytest.raises(ValidationError) as info:
            call()
        assert info.value.field == field
    assert row_counts(trial.engine) == before
    # an unscheduled visit is corrected like any other, without the required items
    version = trial.records.visit(a.usubjid, "UNS01", "dm").version
    trial.correct_visit(
        a.usubjid, "UNS01", RAND + 10 * DAY, {"CD4": 310}, "typo", "dm", version=version
    )
    assert trial.records.visit(a.usubjid, "UNS01", "dm").labs == {"CD4": "310"}


def test_visits_not_done_become_missed_and_the_form_records_why(
    trial: CaptureService, a: Allocation, row_counts: Counts
) -> None:
    assert _statuses(trial, a.usubjid)["WK12"] == "missed"  # window closed, nothing entered
    assert any(
        i.visit_code == "WK12" and i.status == "missed"
        for i in trial.records.worklist("dm")
        if i.usubjid == a.usubjid
    )
    trial.record_missed_visit(a.usubjid, "WK12", "participant in hospital", "nurse")
    entry = next(v for v in trial.records.participant(a.usubjid, "dm").calendar if v.code == "WK12")
    assert entry.status == "missed" and entry.missed_reason == "participant in hospital"
    assert not any(
        i.visit_code == "WK12" for i in trial.records.worklist("dm") if i.usubjid == a.usubjid
    )
    (dev,) = trial.deviations.list("dm", usubjid=a.usubjid)
    assert dev.category == "MISSED VISIT" and dev.deviation_date == RAND + (84 + 7) * DAY
    before = row_counts(trial.engine)
    with pytest.raises(ConflictError, match="recorded as missed"):
        trial.record_visit(a.usubjid, "WK12", RAND + 84 * DAY, LABS, "nurse")
    with pytest.raises(ConflictError, match="recorded as missed"):
        trial.record_missed_visit(a.usubjid, "WK12", "again", "nurse")
    with pytest.raises(ValidationError, match="give the reason"):
        trial.record_missed_visit(a.usubjid, "WK16", "  ", "nurse")
    assert row_counts(trial.engine) == before


def test_a_visit_whose_window_is_open_is_not_missed(trial: CaptureService, enrol: Enrol) -> None:
    b = enrol(trial, "US01", screened=D(2009, 1, 20), randomized=D(2009, 1, 30))
    assert _statuses(trial, b.usubjid)["WK04"] == "overdue"
    with pytest.raises(ValidationError, match="open until 2009-03-06"):
        trial.record_missed_visit(b.usubjid, "WK04", "no show", "nurse")


def test_entry_visit_is_captured_with_randomization(
    trial: CaptureService, eligible_answers: Callable[..., dict[str, object]], row_counts: Counts
) -> None:
    trial.screen("US01", "E1", RAND - DAY, eligible_answers(), "nurse")
    before = row_counts(trial.engine)
    with pytest.raises(ValidationError) as info:
        trial.randomize("E1", RAND - DAY, RAND, "nurse", entry_labs={"CD4": 450})
    assert info.value.field == "LAB.HIVRNA"
    assert row_counts(trial.engine) == before  # no participant without its entry visit
    allocation = trial.randomize("E1", RAND - DAY, RAND, "nurse", entry_labs=LABS)
    assert _statuses(trial, allocation.usubjid)["ENTRY"] == "recorded"
    assert trial.records.visit(allocation.usubjid, "ENTRY", "dm").visit_date == RAND
    assert verify_audit(trial.engine).ok


def test_consent_after_screening_is_saved_as_a_deviation(
    trial: CaptureService, eligible_answers: Callable[..., dict[str, object]]
) -> None:
    trial.screen("US01", "C1", D(2006, 1, 10), eligible_answers(), "nurse")
    trial.screen("US01", "C2", D(2006, 1, 10), eligible_answers(), "nurse")
    trial.record_consent("C1", D(2006, 1, 9), "nurse")  # consent first: no deviation
    trial.record_consent("C2", D(2006, 1, 12), "nurse")
    (dev,) = trial.deviations.list("dm")
    assert dev.category == "INFORMED CONSENT" and dev.screening_number == "C2"
    assert dev.usubjid is None and "after the screening procedures of 2006-01-10" in dev.description
    allocation = trial.randomize("C2", D(2006, 1, 12), D(2006, 1, 13), "nurse")
    (dev,) = trial.deviations.list("dm", usubjid=allocation.usubjid)
    assert dev.usubjid == allocation.usubjid  # found through the screening once randomized


def test_reported_deviations_and_review(trial: CaptureService, a: Allocation) -> None:
    coordinator = Actor("coord", Role.SITE_COORDINATOR, "US01")
    other_site = Actor("coord.gb", Role.SITE_COORDINATOR, "GB01")
    dm = Actor("dm", Role.DATA_MANAGER)
    dev_id = trial.deviations.report(
        a.usubjid, "STUDY TREATMENT", "IL-2 given on day 6 of the cycle", RAND, coordinator
    )
    with pytest.raises(ValidationError, match="not a deviation category"):
        trial.deviations.report(a.usubjid, "BAD", "x", RAND, coordinator)
    with pytest.raises(ValidationError, match="description"):
        trial.deviations.report(a.usubjid, "OTHER", "   ", RAND, coordinator)
    with pytest.raises(NotFoundError):
        trial.deviations.report(a.usubjid, "OTHER", "x", RAND, other_site)
    assert trial.deviations.list(other_site) == []
    with pytest.raises(AccessDeniedError):
        trial.deviations.review(dev_id, "seen", coordinator)
    with pytest.raises(ValidationError, match="review note"):
        trial.deviations.review(dev_id, " ", dm)
    trial.deviations.review(dev_id, "minor; site retrained", dm)
    with pytest.raises(ConflictError, match="already reviewed by dm"):
        trial.deviations.review(dev_id, "again", dm)
    with pytest.raises(NotFoundError):
        trial.deviations.review(dev_id + 99, "x", dm)
    (dev,) = trial.deviations.list(coordinator)
    assert dev.source == "REPORTED" and dev.reviewed_by == "dm"
    assert dev.review_note == "minor; site retrained"
    assert deviation_rows(trial.engine)[0]["REVIEWED"] == "Y"
