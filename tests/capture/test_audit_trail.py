"""The audit trail as people read it: labels and units from the protocol, before and after,
one entry per write, nothing internal; the arm only to those who may see it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.orm import Session

from stalwart.capture.audit_trail import readable_trail, unit_text, value_text
from stalwart.capture.enrolment import Allocation
from stalwart.capture.service import CaptureService
from stalwart.capture.tables import AuditRecord

LABS = {"CD4": 610, "HIVRNA": 400}


def test_values_and_units_as_people_write_them() -> None:
    assert unit_text("cells/mm3") == "cells/mm³" and unit_text("copies/mL") == "copies/mL"
    assert (
        value_text(4900.0) == "4,900"
        and value_text(12.5) == "12.5"
        and value_text(20000) == ("20,000")
    )
    assert value_text(True) == "yes" and value_text(None) == "(blank)"
    assert value_text(["CD4 below 350", "age"]) == "CD4 below 350; age"


def test_a_correction_reads_old_to_new_with_its_reason(
    trial: CaptureService, enrol: Callable[..., Allocation]
) -> None:
    a = enrol(trial, "US01")
    u = a.usubjid
    trial.record_visit(u, "WK04", dt.date(2006, 2, 2), LABS, "nurse")
    version = trial.records.visit(u, "WK04", "x").version
    trial.correct_visit(
        u,
        "WK04",
        dt.date(2006, 2, 3),
        LABS | {"HIVRNA": "<50"},
        "wrong date",
        "dm",
        version=version,
    )
    entered, changed, *_ = trial.trails.visit(u, "WK04", "x")
    assert entered.action == "entered" and entered.reason is None
    assert [c.field for c in entered.changes] == ["Visit date", "CD4+ count", "HIV RNA"]
    assert changed.who == "dm" and changed.reason == "wrong date"
    assert [(c.field, c.old, c.new) for c in changed.changes] == [
        ("Visit date", "2006-02-02", "2006-02-03"),
        ("HIV RNA", "400 copies/mL", "<50 copies/mL"),
    ]


def test_the_arm_shows_only_to_those_who_may_see_it(
    trial: CaptureService, enrol: Callable[..., Allocation]
) -> None:
    a = enrol(trial, "US01")
    with Session(trial.engine) as session:
        records = session.scalars(
            sa.select(AuditRecord)
            .where(AuditRecord.table_name.in_(["participant", "allocation_slot"]))
            .order_by(AuditRecord.sequence)
        ).all()
    hidden = readable_trail(trial.protocol, records, show_arm=False)
    shown = readable_trail(trial.protocol, records, show_arm=True)
    assert all(c.field != "Arm" for e in hidden for c in e.changes)
    assert any(c.field == "Arm" and c.new == a.arm for e in shown for c in e.changes)
    # the unassigned slots of the list (trial set-up) are nobody's data: not in the trail
    assert all(e.who != "system" for e in shown)
