"""The capture service on both backends: the happy path, and a catalogue of refused input.

Every refused write must raise the documented error naming the field, and leave every table
(audit included) exactly as it was.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from stalwart.capture.ae_form import AeDetails
from stalwart.capture.audit import data_sha256, verify_audit
from stalwart.capture.db import open_engine
from stalwart.capture.enrolment import Allocation, ScreeningOutcome
from stalwart.capture.service import CaptureService, initialize_trial
from stalwart.capture.tables import (
    AllocationSlot,
    AuditHead,
    AuditRecord,
    Dose,
    LabResult,
    Participant,
    Screening,
)
from stalwart.errors import (
    AllocationExhaustedError,
    AlreadyRandomizedError,
    ConfigurationError,
    ConflictError,
    DatabaseError,
    DuplicateError,
    EligibilityError,
    NotFoundError,
    ValidationError,
    VisitWindowError,
)
from stalwart.protocol.calendar import participant_calendar
from stalwart.protocol.load import LoadedProtocol, parse_protocol
from stalwart.randomization.allocation import allocation_lists, seed_matches

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]
D = dt.date
DAY = dt.timedelta(days=1)
RAND = D(2006, 1, 5)
Counts = Callable[[Engine], dict[str, int]]
Enrol = Callable[..., Allocation]


def _snapshot(engine: Engine, row_counts: Counts) -> tuple[dict[str, int], str, tuple[Any, ...]]:
    with engine.connect() as conn:
        head = tuple(conn.execute(sa.select(AuditHead.sequence, AuditHead.hash)).one())
    return row_counts(engine), data_sha256(engine), head


# -- happy path ------------------------------------------------------------------------------------
def test_happy_path(
    trial: CaptureService,
    engine: Engine,
    row_counts: Counts,
    eligible_answers: Callable[..., dict[str, object]],
    packaged: LoadedProtocol,
    seed: int,
) -> None:
    before = row_counts(engine)
    records_before = verify_audit(engine).records

    outcome = trial.screen("US01", "S-001", D(2006, 1, 2), eligible_answers(), "nurse")
    assert outcome == ScreeningOutcome("S-001", True, ())

    first_slot = allocation_lists(packaged.protocol, seed)["site=US01"][0]
    alloc = trial.randomize("S-001", D(2006, 1, 2), RAND, "doctor")
    assert (alloc.usubjid, alloc.arm, alloc.stratum, alloc.sequence) == (
        "STALWART-US01-0001",
        first_slot.arm,
        "site=US01",
        1,
    )
    assert alloc.arm == "IL2ART"  # this seed's first US01 slot; the dosing below relies on it
    assert alloc.randomization_date == RAND
    assert alloc.calendar == participant_calendar(packaged.protocol, "IL2ART", RAND)

    entry = trial.record_visit(
        alloc.usubjid, "ENTRY", RAND, {"CD4": 510, "CD4PCT": 28, "HIVRNA": "<50"}, "nurse"
    )
    wk04 = trial.record_visit(
        alloc.usubjid, "WK04", RAND + 31 * DAY, {"CD4": "612", "HIVRNA": 1200}, "nurse"
    )
    assert entry != wk04
    il2_days = [d.date for d in alloc.calendar.doses if d.treatment == "IL2" and d.cycle == 1]
    art_days = [d.date for d in alloc.calendar.doses if d.treatment == "ART" and d.cycle == 1]
    trial.record_doses(
        alloc.usubjid, "IL2", 1, [(d, 1 if i == 4 else 2) for i, d in enumerate(il2_days)], "nurse"
    )
    trial.record_doses(alloc.usubjid, "ART", 1, [(d, 1) for d in art_days], "nurse")
    ae = trial.report_adverse_event(
        alloc.usubjid,
        "Fever",
        2,
        il2_days[1],
        il2_days[3],
        "PROBABLE",
        False,
        "doctor",
        AeDetails("fever", "RECOVERED/RESOLVED", "DOSE NOT CHANGED"),
    )
    ce = trial.report_clinical_event(alloc.usubjid, "HZOSTER", D(2006, 3, 1), "doctor")
    assert ae >= 1 and ce >= 1
    trial.record_disposition(alloc.usubjid, "COMPLETED", D(2006, 9, 1), "doctor")

    after = row_counts(engine)
    grown = {k: after[k] - before[k] for k in after if after[k] != before[k]}
    assert grown == {
        "screening": 1,
        "participant": 1,
        "visit": 2,
        "lab_result": 5,
        "dose": 15,
        "adverse_event": 1,
        "clinical_event": 1,
        "disposition": 1,
        # screen 1, randomize 2 (participant + slot update), visits 4 + 3, doses 5 + 10,
        # AE 1, CE 1, disposition 1
        "audit_record": 28,
    }
    report = verify_audit(engine)
    assert report.ok, report.finding
    assert report.records == records_before + 28

    with engine.connect() as conn:
        labs = conn.execute(
            sa.select(
                LabResult.test_code,
                LabResult.value,
                LabResult.unit,
                LabResult.below_limit,
                LabResult.limit_value,
            )
            .where(LabResult.visit_id == entry)
            .order_by(LabResult.test_code)
        ).all()
        assert [tuple(r) for r in labs] == [
            ("CD4", 510.0, "cells/mm3", False, None),
            ("CD4PCT", 28.0, "%", False, None),
            ("HIVRNA", None, "copies/mL", True, 50.0),
        ]
        wk04_cd4 = conn.scalar(
            sa.select(LabResult.value).where(
                LabResult.visit_id == wk04, LabResult.test_code == "CD4"
            )
        )
        assert wk04_cd4 == 612.0
        doses = conn.execute(
            sa.select(Dose.dose_date, Dose.administrations, Dose.dose, Dose.dose_unit, Dose.cycle)
            .where(Dose.treatment == "IL2")
            .order_by(Dose.dose_date)
        ).all()
        assert [tuple(r) for r in doses] == [
            (d, 1 if i == 4 else 2, 7.5, "MIU", 1) for i, d in enumerate(il2_days)
        ]
        slot = conn.execute(
            sa.select(AllocationSlot.participant_id, AllocationSlot.arm).where(
                AllocationSlot.stratum == "site=US01", AllocationSlot.sequence == 1
            )
        ).one()
        pid = conn.scalar(sa.select(Participant.id).where(Participant.usubjid == alloc.usubjid))
        assert tuple(slot) == (pid, "IL2ART")
        actors = conn.execute(
            sa.select(AuditRecord.actor, AuditRecord.action, AuditRecord.table_name)
            .where(AuditRecord.sequence > records_before)
            .order_by(AuditRecord.sequence)
            .limit(3)
        ).all()
        assert [tuple(r) for r in actors] == [
            ("nurse", "INSERT", "screening"),
            ("doctor", "INSERT", "participant"),
            ("doctor", "UPDATE", "allocation_slot"),
        ]


def test_ineligible_screening_is_logged_with_reasons(
    trial: CaptureService,
    engine: Engine,
    eligible_answers: Callable[..., dict[str, object]],
) -> None:
    outcome = trial.screen(
        "GB01", "S-002", D(2006, 1, 2), eligible_answers(cd4=299, prior_il2=True), "nurse"
    )
    assert outcome.eligible is False
    assert outcome.reasons == (
        "IN2 not met: CD4+ count >= 300 cells/mm3",
        "EX3 excluded: Prior aldesleukin (IL-2)",
    )
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(Screening.eligible, Screening.reasons, Screening.answers)
        ).one()
    assert row.eligible is False and row.reasons == list(outcome.reasons)
    assert row.answers["cd4"] == 299.0 and row.answers["prior_il2"] is True


def test_usubjids_number_per_site_and_slots_follow_the_list(
    trial: CaptureService, enrol: Enrol, packaged: LoadedProtocol, seed: int
) -> None:
    lists = allocation_lists(packaged.protocol, seed)
    got = [enrol(trial, "AU01") for _ in range(4)] + [enrol(trial, "TH01")]
    assert [a.usubjid for a in got] == [
        "STALWART-AU01-0001",
        "STALWART-AU01-0002",
        "STALWART-AU01-0003",
        "STALWART-AU01-0004",
        "STALWART-TH01-0001",
    ]
    assert [a.arm for a in got[:4]] == [s.arm for s in lists["site=AU01"][:4]]
    assert [a.sequence for a in got] == [1, 2, 3, 4, 1]
    assert got[4].arm == lists["site=TH01"][0].arm


def test_death_then_death_disposition(trial: CaptureService, enrol: Enrol) -> None:
    a = enrol(trial)
    trial.report_clinical_event(a.usubjid, "DEATH", D(2006, 5, 1), "doctor")
    trial.record_disposition(a.usubjid, "DEATH", D(2006, 5, 1), "doctor")
    assert verify_audit(trial.engine).ok


def test_censored_and_optional_labs(trial: CaptureService, enrol: Enrol, engine: Engine) -> None:
    a = enrol(trial)
    visit = trial.record_visit(a.usubjid, "ENTRY", RAND, {"CD4": 300.5, "HIVRNA": 49999}, "n")
    with engine.connect() as conn:
        codes = conn.scalars(
            sa.select(LabResult.test_code).where(LabResult.visit_id == visit).order_by("test_code")
        ).all()
    assert codes == ["CD4", "HIVRNA"]  # CD4PCT is optional and was not given


def test_data_on_the_disposition_date_is_allowed(trial: CaptureService, enrol: Enrol) -> None:
    a = enrol(trial)
    trial.record_disposition(a.usubjid, "WITHDREW", RAND + 28 * DAY, "doctor")
    trial.record_visit(a.usubjid, "WK04", RAND + 28 * DAY, {"CD4": 500, "HIVRNA": 60}, "n")


# -- the refused-input catalogue -------------------------------------------------------------------
@dataclass
class World:
    svc: CaptureService
    engine: Engine
    a: Allocation  # IL2ART; ENTRY, WK04 and IL-2 cycle 1 doses recorded
    notrt: Allocation
    ended: Allocation  # IL2; withdrew on ENDED
    dead: Allocation  # died on DIED, no disposition yet
    late: Allocation  # IL2, randomized a few days before "today"


ENDED = D(2006, 1, 20)
DIED = D(2006, 4, 1)


@pytest.fixture(scope="module", params=BACKENDS)
def world(
    request: pytest.FixtureRequest,
    databases: Any,
    packaged: LoadedProtocol,
    enrol: Enrol,
    eligible_answers: Callable[..., dict[str, object]],
    today: dt.date,
) -> Iterator[World]:
    # short lists keep the per-case snapshot (row counts, data hash) fast
    url = databases.new(request.param, _variant(packaged.text, 12, one_site=False))
    engine = open_engine(url)
    svc = CaptureService.open(engine, today=lambda: today)
    a = enrol(svc, arm="IL2ART")
    svc.record_visit(a.usubjid, "ENTRY", RAND, {"CD4": 510, "HIVRNA": 20000}, "n")
    svc.record_visit(a.usubjid, "WK04", RAND + 28 * DAY, {"CD4": 600, "HIVRNA": "<50"}, "n")
    il2 = [d.date for d in a.calendar.doses if d.treatment == "IL2" and d.cycle == 1]
    svc.record_doses(a.usubjid, "IL2", 1, [(d, 2) for d in il2], "n")
    notrt = enrol(svc, arm="NOTHER")
    ended = enrol(svc, arm="IL2")
    svc.record_visit(ended.usubjid, "ENTRY", RAND, {"CD4": 400, "HIVRNA": 100}, "n")
    svc.record_disposition(ended.usubjid, "WITHDREW", ENDED, "n")
    dead = enrol(svc)
    svc.report_clinical_event(dead.usubjid, "DEATH", DIED, "n")
    late = enrol(svc, arm="IL2", screened=D(2009, 2, 20), randomized=D(2009, 2, 25))
    svc.screen("US01", "INELIG", D(2006, 1, 2), eligible_answers(cd4=299), "n")
    svc.screen("US01", "ELIG", D(2006, 1, 10), eligible_answers(), "n")
    assert verify_audit(engine).ok
    yield World(svc, engine, a, notrt, ended, dead, late)
    engine.dispose()
    databases.drop(url)


def _labs(**kw: object) -> dict[str, object]:
    return {"CD4": 500, "HIVRNA": 1000} | kw


def _ae(w: World, usubjid: str | None = None, **kw: Any) -> None:
    args: dict[str, Any] = {
        "usubjid": usubjid or w.a.usubjid,
        "term": "Fever",
        "grade": 2,
        "start_date": D(2006, 1, 13),
        "end_date": D(2006, 1, 14),
        "related": "POSSIBLE",
        "serious": False,
        "actor": "n",
        "details": AeDetails("fever", "RECOVERED/RESOLVED", "DOSE NOT CHANGED"),
    }
    w.svc.report_adverse_event(**(args | kw))


def _il2(w: World, day_index: int = 0, cycle: int = 1) -> dt.date:
    return [d.date for d in w.a.calendar.doses if d.treatment == "IL2" and d.cycle == cycle][
        day_index
    ]


FUTURE = D(2009, 3, 2)

# (id, the write, the error, the field (ValidationError) or None, fragments of the message)
CASES: list[tuple[str, Callable[[World], object], type[Exception], str | None, list[str]]] = [
    # labs
    (
        "cd4 -5",
        lambda w: w.svc.record_visit(w.a.usubjid, "WK08", RAND + 56 * DAY, _labs(CD4=-5), "n"),
        ValidationError,
        "LAB.CD4",
        ["-5 cells/mm3 is outside the valid range 0 to 5,000"],
    ),
    (
        "cd4 50000",
        lambda w: w.svc.record_visit(w.a.usubjid, "WK08", RAND + 56 * DAY, _labs(CD4=50_000), "n"),
        ValidationError,
        "LAB.CD4",
        ["50,000 cells/mm3 is outside the valid range"],
    ),
    (
        "cd4 text",
        lambda w: w.svc.record_visit(
            w.a.usubjid, "WK08", RAND + 56 * DAY, _labs(CD4="five hundred"), "n"
        ),
        ValidationError,
        "LAB.CD4",
        ["is not a number"],
    ),
    (
        "censored cd4",
        lambda w: w.svc.record_visit(w.a.usubjid, "WK08", RAND + 56 * DAY, _labs(CD4="<50"), "n"),
        ValidationError,
        "LAB.CD4",
        ["no assay limit"],
    ),
    (
        "hivrna below limit as number",
        lambda w: w.svc.record_visit(w.a.usubjid, "WK08", RAND + 56 * DAY, _labs(HIVRNA=20), "n"),
        ValidationError,
        "LAB.HIVRNA",
        ["record it as '<50'"],
    ),
    (
        "hivrna missing",
        lambda w: w.svc.record_visit(w.a.usubjid, "WK08", RAND + 56 * DAY, {"CD4": 500}, "n"),
        ValidationError,
        "LAB.HIVRNA",
        ["HIV RNA is required"],
    ),
    (
        "unknown lab item",
        lambda w: w.svc.record_visit(w.a.usubjid, "WK08", RAND + 56 * DAY, _labs(ALT=30), "n"),
        ValidationError,
        "LAB.ALT",
        ["not a LAB item"],
    ),
    # visits
    (
        "visit a day before its window, no reason",
        lambda w: w.svc.record_visit(w.a.usubjid, "WK08", RAND + 48 * DAY, _labs(), "n"),
        VisitWindowError,
        "deviation_reason",
        ["Week 8", "2006-02-23 to 2006-03-09", "Give the reason"],
    ),
    (
        "visit a day after its window, blank reason",
        lambda w: w.svc.record_visit(
            w.a.usubjid, "WK08", RAND + 64 * DAY, _labs(), "n", deviation_reason="  "
        ),
        VisitWindowError,
        "deviation_reason",
        ["Week 8 on 2006-03-10, 8 days after its target, 1 after the window closed"],
    ),
    (
        "visit before randomization",
        lambda w: w.svc.record_visit(
            w.a.usubjid, "WK08", RAND - DAY, _labs(), "n", deviation_reason="late"
        ),
        ValidationError,
        "visit_date",
        ["before the randomization date"],
    ),
    (
        "duplicate visit",
        lambda w: w.svc.record_visit(w.a.usubjid, "WK04", RAND + 29 * DAY, _labs(), "n"),
        ConflictError,
        None,
        ["visit WK04 of STALWART-", "already recorded"],
    ),
    (
        "unknown visit code",
        lambda w: w.svc.record_visit(w.a.usubjid, "WK05", RAND + 35 * DAY, _labs(), "n"),
        ValidationError,
        "visit_code",
        ["'WK05' is not in the schedule"],
    ),
    (
        "cycle visit of a NOTHER participant",
        lambda w: w.svc.record_visit(w.notrt.usubjid, "PRECYC1", RAND + 5 * DAY, _labs(), "n"),
        ValidationError,
        "visit_code",
        ["'PRECYC1' is not in the schedule"],
    ),
    (
        "visit of unknown participant",
        lambda w: w.svc.record_visit("STALWART-XX01-0001", "ENTRY", RAND, _labs(), "n"),
        NotFoundError,
        None,
        ["no randomized participant 'STALWART-XX01-0001'"],
    ),
    # screening and randomization
    (
        "second randomization",
        lambda w: w.svc.randomize(_screening_of(w, w.a), D(2006, 1, 3), RAND, "n"),
        AlreadyRandomizedError,
        None,
        ["already randomized as", "randomization happens once"],
    ),
    (
        "ineligible participant",
        lambda w: w.svc.randomize("INELIG", D(2006, 1, 3), RAND, "n"),
        EligibilityError,
        "eligibility",
        ["INELIG is not eligible", "IN2 not met"],
    ),
    (
        "unknown screening number",
        lambda w: w.svc.randomize("NOPE", D(2006, 1, 3), RAND, "n"),
        NotFoundError,
        None,
        ["no screening numbered NOPE"],
    ),
    (
        "unknown site",
        lambda w: w.svc.screen("XX01", "NEW1", D(2006, 1, 2), _answers(), "n"),
        NotFoundError,
        None,
        ["no site 'XX01'", "US01"],
    ),
    (
        "duplicate screening number at one site",
        lambda w: w.svc.screen("US01", "ELIG", D(2006, 1, 2), _answers(), "n"),
        DuplicateError,
        None,
        ["screening number ELIG is already recorded at US01"],
    ),
    (
        "bad screening answer",
        lambda w: w.svc.screen("GB01", "NEW2", D(2006, 1, 2), _answers(cd4=-1), "n"),
        ValidationError,
        "screening.cd4",
        ["outside the valid range"],
    ),
    (
        "randomization before consent",
        lambda w: w.svc.randomize("ELIG", D(2006, 1, 12), D(2006, 1, 11), "n"),
        ValidationError,
        "randomization_date",
        ["before the date of informed consent 2006-01-12"],
    ),
    # doses
    (
        "dose on a non-dose day",
        lambda w: w.svc.record_doses(w.a.usubjid, "IL2", 2, [(_il2(w, 0, 2) - DAY, 2)], "n"),
        VisitWindowError,
        "deviation_reason",
        ["is not a IL2 day of cycle 2", "Give the reason"],
    ),
    (
        "dose for a treatment the arm does not get",
        lambda w: w.svc.record_doses(w.notrt.usubjid, "IL2", 1, [(_il2(w), 2)], "n"),
        ValidationError,
        "treatment",
        ["(arm NOTHER) has no IL2 cycle 1"],
    ),
    (
        "IL-2 cycle 4",
        lambda w: w.svc.record_doses(w.a.usubjid, "IL2", 4, [(_il2(w, 0, 3) + 56 * DAY, 2)], "n"),
        ValidationError,
        "treatment",
        ["has no IL2 cycle 4"],
    ),
    (
        "3 administrations of IL-2",
        lambda w: w.svc.record_doses(
            w.a.usubjid, "IL2", 2, [(_il2(w, 0, 2), 2), (_il2(w, 1, 2), 3)], "n"
        ),
        ValidationError,
        "administrations",
        ["3 on", "must be a whole number 0 to 2"],
    ),
    (
        "1.5 administrations",
        lambda w: w.svc.record_doses(w.a.usubjid, "IL2", 2, [(_il2(w, 0, 2), 1.5)], "n"),
        ValidationError,
        "administrations",
        ["1.5 on", "must be a whole number 0 to 2"],
    ),
    (
        "True administrations",
        lambda w: w.svc.record_doses(w.a.usubjid, "IL2", 2, [(_il2(w, 0, 2), True)], "n"),
        ValidationError,
        "administrations",
        ["True on"],
    ),
    (
        "negative administrations",
        lambda w: w.svc.record_doses(w.a.usubjid, "IL2", 2, [(_il2(w, 0, 2), -1)], "n"),
        ValidationError,
        "administrations",
        ["-1 on", "must be a whole number 0 to 2"],
    ),
    (
        "dose day twice",
        lambda w: w.svc.record_doses(
            w.a.usubjid, "IL2", 2, [(_il2(w, 0, 2), 2), (_il2(w, 0, 2), 1)], "n"
        ),
        ValidationError,
        "dose_date",
        ["listed twice"],
    ),
    (
        "doses already recorded",
        lambda w: w.svc.record_doses(w.a.usubjid, "IL2", 1, [(_il2(w, 2), 1)], "n"),
        ConflictError,
        None,
        ["IL2 doses of", "already recorded"],
    ),
    (
        "no dose days",
        lambda w: w.svc.record_doses(w.a.usubjid, "IL2", 2, [], "n"),
        ValidationError,
        "doses",
        ["at least one dose day"],
    ),
    # adverse events
    (
        "AE grade 0",
        lambda w: _ae(w, grade=0),
        ValidationError,
        "grade",
        ["whole number 1 to 5, got 0"],
    ),
    (
        "AE grade 6",
        lambda w: _ae(w, grade=6),
        ValidationError,
        "grade",
        ["whole number 1 to 5, got 6"],
    ),
    ("AE grade 2.5", lambda w: _ae(w, grade=2.5), ValidationError, "grade", ["got 2.5"]),
    ("AE grade True", lambda w: _ae(w, grade=True), ValidationError, "grade", ["got True"]),
    (
        "AE unknown term",
        lambda w: _ae(w, term="Hiccups"),
        ValidationError,
        "term",
        ["'Hiccups' is not an AE term"],
    ),
    (
        "AE unknown relatedness",
        lambda w: _ae(w, related="MAYBE"),
        ValidationError,
        "related",
        ["'MAYBE' is not a choice"],
    ),
    (
        "AE end before start",
        lambda w: _ae(w, end_date=D(2006, 1, 12)),
        ValidationError,
        "end_date",
        ["End date 2006-01-12 is before the start date 2006-01-13"],
    ),
    (
        "AE before randomization",
        lambda w: _ae(w, start_date=RAND - DAY, end_date=None),
        ValidationError,
        "start_date",
        ["before the randomization date"],
    ),
    (
        "AE of unknown participant",
        lambda w: _ae(w, usubjid="STALWART-US01-0999"),
        NotFoundError,
        None,
        ["STALWART-US01-0999"],
    ),
    # clinical events
    (
        "unknown clinical event code",
        lambda w: w.svc.report_clinical_event(w.a.usubjid, "FLU", D(2006, 2, 1), "n"),
        ValidationError,
        "event_code",
        ["'FLU' is not a coded clinical event"],
    ),
    (
        "clinical event before randomization",
        lambda w: w.svc.report_clinical_event(w.a.usubjid, "TB", RAND - DAY, "n"),
        ValidationError,
        "onset_date",
        ["before the randomization date"],
    ),
    (
        "event after death",
        lambda w: w.svc.report_clinical_event(w.dead.usubjid, "TB", DIED + DAY, "n"),
        ConflictError,
        None,
        ["died on 2006-04-01", "no event can follow a death"],
    ),
    (
        "second death",
        lambda w: w.svc.report_clinical_event(w.dead.usubjid, "DEATH", DIED, "n"),
        ConflictError,
        None,
        ["died on 2006-04-01"],
    ),
    # dispositions
    (
        "disposition twice",
        lambda w: w.svc.record_disposition(w.ended.usubjid, "COMPLETED", D(2006, 2, 1), "n"),
        ConflictError,
        None,
        ["disposition of", "already recorded"],
    ),
    (
        "disposition before last data",
        lambda w: w.svc.record_disposition(w.a.usubjid, "COMPLETED", RAND + 27 * DAY, "n"),
        ValidationError,
        "disposition_date",
        ["before the last recorded data 2006-02-02"],
    ),
    (
        "DEATH disposition without a death",
        lambda w: w.svc.record_disposition(w.notrt.usubjid, "DEATH", D(2006, 5, 1), "n"),
        ValidationError,
        "status",
        ["a DEATH disposition needs a reported death"],
    ),
    (
        "death without DEATH disposition",
        lambda w: w.svc.record_disposition(w.dead.usubjid, "COMPLETED", DIED, "n"),
        ValidationError,
        "status",
        ["a reported death needs a DEATH disposition"],
    ),
    (
        "DEATH disposition on another date",
        lambda w: w.svc.record_disposition(w.dead.usubjid, "DEATH", DIED + DAY, "n"),
        ValidationError,
        "status",
        ["on the same date"],
    ),
    (
        "unknown disposition status",
        lambda w: w.svc.record_disposition(w.notrt.usubjid, "MOVED", D(2006, 5, 1), "n"),
        ValidationError,
        "status",
        ["'MOVED' is not one of"],
    ),
    # data after disposition
    (
        "visit after disposition",
        lambda w: w.svc.record_visit(w.ended.usubjid, "WK04", RAND + 28 * DAY, _labs(), "n"),
        ValidationError,
        "visit_date",
        ["after the end of follow-up", "(2006-01-20)"],
    ),
    (
        "dose after disposition",
        lambda w: w.svc.record_doses(w.ended.usubjid, "IL2", 2, [(_il2(w, 0, 2), 2)], "n"),
        ValidationError,
        "dose_date",
        ["after the end of follow-up"],
    ),
    (
        "AE after disposition",
        lambda w: _ae(w, w.ended.usubjid, start_date=ENDED + DAY, end_date=None),
        ValidationError,
        "start_date",
        ["after the end of follow-up"],
    ),
    (
        "event after disposition",
        lambda w: w.svc.report_clinical_event(w.ended.usubjid, "TB", ENDED + DAY, "n"),
        ValidationError,
        "onset_date",
        ["after the end of follow-up"],
    ),
    # future dates (today is 2009-03-01)
    (
        "future screening",
        lambda w: w.svc.screen("GB01", "NEW3", FUTURE, _answers(), "n"),
        ValidationError,
        "screening_date",
        ["2009-03-02 is in the future"],
    ),
    (
        "future randomization",
        lambda w: w.svc.randomize("ELIG", D(2006, 1, 10), FUTURE, "n"),
        ValidationError,
        "randomization_date",
        ["in the future"],
    ),
    (
        "future visit",
        lambda w: w.svc.record_visit(w.late.usubjid, "WK04", D(2009, 3, 25), _labs(), "n"),
        ValidationError,
        "visit_date",
        ["2009-03-25 is in the future"],
    ),
    (
        "future dose",
        lambda w: w.svc.record_doses(w.late.usubjid, "IL2", 1, [(D(2009, 3, 4), 2)], "n"),
        ValidationError,
        "dose_date",
        ["2009-03-04 is in the future"],
    ),
    (
        "future AE start",
        lambda w: _ae(w, start_date=FUTURE, end_date=None),
        ValidationError,
        "start_date",
        ["in the future"],
    ),
    (
        "future AE end",
        lambda w: _ae(w, end_date=FUTURE),
        ValidationError,
        "end_date",
        ["in the future"],
    ),
    (
        "future clinical event",
        lambda w: w.svc.report_clinical_event(w.a.usubjid, "TB", FUTURE, "n"),
        ValidationError,
        "onset_date",
        ["in the future"],
    ),
    (
        "future disposition",
        lambda w: w.svc.record_disposition(w.a.usubjid, "COMPLETED", FUTURE, "n"),
        ValidationError,
        "disposition_date",
        ["in the future"],
    ),
]


def _answers(**kw: object) -> dict[str, object]:
    answers: dict[str, object] = {
        "age": 35,
        "sex": "F",
        "hiv_positive": True,
        "cd4": 450.0,
        "hiv_rna": 1000.0,
        "on_continuous_art": False,
        "arv_within_12_months": False,
        "prior_il2": False,
        "haart_access": True,
        "prior_aids": False,
        "immunomodulator_8_weeks": False,
    }
    return answers | kw


def _screening_of(w: World, a: Allocation) -> str:
    with w.engine.connect() as conn:
        number = conn.scalar(
            sa.select(Screening.screening_number)
            .join(Participant, Participant.screening_id == Screening.id)
            .where(Participant.usubjid == a.usubjid)
        )
    assert number is not None
    return number


@pytest.mark.parametrize(
    ("write", "error", "field", "fragments"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_refused_write_changes_nothing(
    world: World,
    row_counts: Counts,
    write: Callable[[World], object],
    error: type[Exception],
    field: str | None,
    fragments: list[str],
) -> None:
    before = _snapshot(world.engine, row_counts)
    with pytest.raises(error) as info:
        write(world)
    assert type(info.value) is error
    message = str(info.value)
    if field is not None:
        assert isinstance(info.value, ValidationError)
        assert info.value.field == field
        assert message.startswith(f"{field}: ")
    for fragment in fragments:
        assert fragment in message
    assert _snapshot(world.engine, row_counts) == before


def test_eligibility_error_lists_the_reasons(world: World) -> None:
    with pytest.raises(EligibilityError) as info:
        world.svc.randomize("INELIG", D(2006, 1, 3), RAND, "n")
    assert info.value.screening_number == "INELIG"
    assert info.value.reasons == ["IN2 not met: CD4+ count >= 300 cells/mm3"]


def test_catalogue_left_the_audit_verified(world: World) -> None:
    report = verify_audit(world.engine)
    assert report.ok, report.finding


# -- set-up ----------------------------------------------------------------------------------------
def _variant(packaged_text: str, list_length: int, one_site: bool = True) -> LoadedProtocol:
    """The packaged protocol with shorter allocation lists (and only site US01)."""
    text = packaged_text
    if one_site:
        text = re.sub(
            r'\[\[sites\]\]\ncode = "(?!US01)[A-Z0-9]+"\nname = "[^"]*"\ncountry = "[A-Z]{3}"\n\n',
            "",
            text,
        )
    text = text.replace("list_length_per_stratum = 300", f"list_length_per_stratum = {list_length}")
    loaded = parse_protocol(text, "variant")
    assert len(loaded.protocol.sites) == (1 if one_site else 9)
    assert loaded.protocol.randomization.list_length_per_stratum == list_length
    return loaded


@pytest.mark.parametrize("slots", [3, 6])
def test_allocation_exhausted(
    engine: Engine,
    packaged_text: str,
    row_counts: Counts,
    enrol: Enrol,
    today: dt.date,
    slots: int,
) -> None:
    variant = _variant(packaged_text, 3)
    # a list of at least 3 slots is one block of 3 or of 6: pick a seed giving ``slots``
    seed = next(
        s for s in range(100) if len(allocation_lists(variant.protocol, s)["site=US01"]) == slots
    )
    planned = allocation_lists(variant.protocol, seed)["site=US01"]
    initialize_trial(engine, variant, seed)
    svc = CaptureService.open(engine, today=lambda: today)
    assert svc.loaded.sha256 == variant.sha256
    got = [enrol(svc, "US01") for _ in range(slots)]
    assert [a.arm for a in got] == [s.arm for s in planned]
    assert [a.sequence for a in got] == list(range(1, slots + 1))
    svc.screen("US01", "ONE-TOO-MANY", D(2006, 1, 2), _answers(), "n")
    before = _snapshot(engine, row_counts)
    with pytest.raises(AllocationExhaustedError) as info:
        svc.randomize("ONE-TOO-MANY", D(2006, 1, 3), RAND, "n")
    assert "allocation list of stratum site=US01 is used up" in str(info.value)
    assert _snapshot(engine, row_counts) == before
    assert verify_audit(engine).ok


def test_initialize_twice(
    trial: CaptureService, engine: Engine, packaged: LoadedProtocol, seed: int, row_counts: Counts
) -> None:
    before = _snapshot(engine, row_counts)
    with pytest.raises(ConflictError, match="already holds a trial"):
        initialize_trial(engine, packaged, seed)
    assert _snapshot(engine, row_counts) == before


def test_initialize_writes_the_protocol_and_lists(
    engine: Engine, packaged: LoadedProtocol, row_counts: Counts
) -> None:
    assert sum(row_counts(engine).values()) == 0
    initialize_trial(engine, packaged, 7, actor="setup")
    counts = row_counts(engine)
    slots = sum(len(v) for v in allocation_lists(packaged.protocol, 7).values())
    assert counts["site"] == 9 and counts["trial"] == 1 and counts["allocation_slot"] == slots
    assert counts["audit_record"] == 1 + 9 + slots and counts["audit_head"] == 1
    with engine.connect() as conn:
        reasons = conn.scalars(sa.select(AuditRecord.reason).distinct()).all()
        stored = conn.scalar(sa.text("SELECT protocol_text FROM trial"))
        fingerprint = conn.scalar(sa.text("SELECT randomization_seed_sha256 FROM trial"))
    assert reasons == ["trial set-up"]
    assert stored == packaged.text
    assert seed_matches(7, fingerprint) and not seed_matches(0, fingerprint)
    assert verify_audit(engine).ok


def test_initialize_with_a_bad_seed_writes_nothing(
    engine: Engine, packaged: LoadedProtocol, row_counts: Counts
) -> None:
    with pytest.raises(ConfigurationError):
        initialize_trial(engine, packaged, -1)
    assert sum(row_counts(engine).values()) == 0


def test_open_needs_a_trial(engine: Engine) -> None:
    with pytest.raises(DatabaseError, match="holds no trial"):
        CaptureService.open(engine)


@pytest.mark.parametrize(
    "backend",
    [
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ],
)
def test_open_on_a_database_without_the_schema(
    make_engine: Callable[..., Engine], backend: str
) -> None:
    with pytest.raises(DatabaseError, match="holds no trial"):
        CaptureService.open(make_engine(backend, migrated=False))


def test_open_refuses_a_stored_protocol_that_does_not_match_its_hash(
    trial: CaptureService, engine: Engine
) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE trial SET protocol_text = protocol_text || ' '"))
    with pytest.raises(DatabaseError, match="does not match its recorded hash"):
        CaptureService.open(engine)


def test_service_uses_the_protocol_stored_in_the_database(
    engine: Engine, packaged_text: str
) -> None:
    variant = _variant(packaged_text, 30)
    initialize_trial(engine, variant, 1)
    svc = CaptureService.open(engine)
    assert svc.loaded.text == variant.text
    assert [s.code for s in svc.protocol.sites] == ["US01"]
