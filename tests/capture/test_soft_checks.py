"""Soft checks on saved visits: the value is saved and a query raised, once (SQLite, PostgreSQL)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from sqlalchemy.engine import Engine

from stalwart.capture.audit import verify_audit
from stalwart.capture.enrolment import Allocation
from stalwart.capture.queries import QueryView
from stalwart.capture.service import CaptureService
from stalwart.protocol.load import LoadedProtocol, parse_protocol

D = dt.date
RAND = D(2006, 1, 5)
WK04, WK08, WK12 = D(2006, 2, 2), D(2006, 3, 2), D(2006, 3, 30)
Enrol = Callable[..., Allocation]


def _labs(cd4: float, pct: float = 22.5) -> dict[str, object]:
    return {"CD4": cd4, "CD4PCT": pct, "HIVRNA": "<50"}


@pytest.fixture()
def a(trial: CaptureService, enrol: Enrol) -> Allocation:
    return enrol(trial, "US01", randomized=RAND)


def _system(trial: CaptureService, usubjid: str) -> list[QueryView]:
    return [q for q in trial.queries.list("dm", usubjid=usubjid) if q.raised_by.startswith("sys")]


def _correct(trial: CaptureService, a: Allocation, code: str, cd4: float, pct: float) -> None:
    version = trial.records.visit(a.usubjid, code, "dm").version
    trial.correct_visit(a.usubjid, code, WK08, _labs(cd4, pct), "typo", "dm", version=version)


def test_a_cd4_jump_is_saved_and_queried_once_even_after_corrections(
    trial: CaptureService, engine: Engine, a: Allocation
) -> None:
    trial.record_visit(a.usubjid, "WK04", WK04, _labs(821), "nurse")
    trial.record_visit(a.usubjid, "WK08", WK08, _labs(4900, 90), "nurse")
    assert trial.records.visit(a.usubjid, "WK08", "dm").labs["CD4"] == "4900"  # saved
    [q] = _system(trial, a.usubjid)
    assert (q.raised_by, q.visit_code, q.label, q.status) == (
        "system: soft check CD4_CHANGE",
        "WK08",
        "CD4+ count",
        "OPEN",
    )
    assert "821 at WK04, 4900 at WK08" in q.text
    _correct(trial, a, "WK08", 900, 22.5)  # the correction clears the condition...
    _correct(trial, a, "WK08", 4800, 90)  # ...and brings it back: still one query
    [still] = _system(trial, a.usubjid)
    assert (still.id, still.status) == (q.id, "OPEN")
    trial.queries.answer(q.id, "typed 4900 for 490; corrected", "site")
    assert _system(trial, a.usubjid)[0].status == "ANSWERED"
    assert verify_audit(engine).ok


def test_a_plausible_course_raises_nothing(trial: CaptureService, a: Allocation) -> None:
    trial.record_visit(a.usubjid, "WK04", WK04, _labs(500), "nurse")
    trial.record_visit(a.usubjid, "WK08", WK08, _labs(800), "nurse")  # +300: under 400 cells
    trial.record_visit(a.usubjid, "WK12", WK12, _labs(1150), "nurse")  # +350, 44%
    trial.record_unscheduled_visit(a.usubjid, WK12, {"CD4": 150}, "fever", "nurse")  # -87%, 1000
    # a fall of 1000 cells and 87% fires; nothing before it did
    [q] = _system(trial, a.usubjid)
    assert q.visit_code == "UNS01"


def test_a_visit_entered_late_is_compared_with_the_next_one_too(
    trial: CaptureService, a: Allocation
) -> None:
    trial.record_visit(a.usubjid, "WK04", WK04, _labs(500), "nurse")
    trial.record_visit(a.usubjid, "WK12", WK12, _labs(520), "nurse")
    trial.record_visit(a.usubjid, "WK08", WK08, _labs(2000, 60), "nurse")
    assert sorted(q.visit_code or "" for q in _system(trial, a.usubjid)) == ["WK08", "WK12"]


def test_cd4_percent_inconsistent_with_the_count_is_queried(
    trial: CaptureService, a: Allocation
) -> None:
    trial.record_visit(a.usubjid, "WK04", WK04, _labs(450, 2), "nurse")  # 22,500 lymphocytes
    [q] = _system(trial, a.usubjid)
    assert (q.raised_by, q.label) == ("system: soft check CD4_PERCENT", "CD4+ count")
    assert "CD4+ percent 2" in q.text


def test_dates_before_the_study_start_are_queried_once(
    trial: CaptureService, eligible_answers: Callable[..., dict[str, object]]
) -> None:
    assert trial.screen("GB01", "GB01-9", D(1999, 1, 2), eligible_answers(), "nurse").eligible
    entry = {"CD4": 400, "CD4PCT": 20, "HIVRNA": "<50"}
    early = trial.randomize("GB01-9", D(1999, 1, 2), D(1999, 1, 5), "nurse", entry_labs=entry)
    trial.record_unscheduled_visit(early.usubjid, D(1999, 1, 20), {"CD4": 400}, "x", "nurse")
    trial.record_unscheduled_visit(early.usubjid, D(1999, 1, 21), {"CD4": 410}, "y", "nurse")
    found = {(q.label, q.visit_code) for q in _system(trial, early.usubjid)}
    assert found == {
        ("Consent date", None),  # once, though every save runs the check
        ("Visit date", "ENTRY"),  # the entry visit saved with randomization is checked too
        ("Visit date", "UNS01"),
        ("Visit date", "UNS02"),
    }
    assert {q.raised_by for q in _system(trial, early.usubjid)} == {
        "system: soft check DATE_BEFORE_START"
    }


def test_a_protocol_without_soft_checks_raises_none(
    packaged_text: str, make_engine: Callable[..., Engine], enrol: Enrol, today: dt.date
) -> None:
    loaded: LoadedProtocol = parse_protocol(packaged_text[: packaged_text.index("# Soft checks:")])
    engine = make_engine("sqlite", loaded)
    service = CaptureService.open(engine, today=lambda: today)
    assert service.loaded.sha256 == loaded.sha256
    b = enrol(service, "US01", randomized=RAND)
    service.record_visit(b.usubjid, "WK04", WK04, _labs(821, 1), "nurse")
    service.record_visit(b.usubjid, "WK08", WK08, _labs(4900, 90), "nurse")
    assert service.queries.list("dm") == []
