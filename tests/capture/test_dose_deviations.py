"""A dose outside the protocol's dosing calendar: refused without a reason, saved with one and
logged as a STUDY TREATMENT deviation (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from stalwart.capture.enrolment import Allocation
from stalwart.capture.service import CaptureService
from stalwart.capture.tables import Dose
from stalwart.errors import VisitWindowError

DAY = dt.timedelta(days=1)


def test_a_dose_off_the_calendar_is_saved_as_a_deviation(
    trial: CaptureService,
    enrol: Callable[..., Allocation],
    row_counts: Callable[..., dict[str, int]],
) -> None:
    a = enrol(trial, arm="IL2")
    cycle1 = [d for d in a.calendar.doses if d.treatment == "IL2" and d.cycle == 1]
    late = cycle1[-1].date + 2 * DAY
    before = row_counts(trial.engine)
    with pytest.raises(VisitWindowError) as info:
        trial.record_doses(a.usubjid, "IL2", 1, [(cycle1[0].date, 2), (late, 1)], "nurse")
    assert info.value.field == "deviation_reason"
    assert "2 day(s) after the nearest planned dose day" in info.value.message
    assert row_counts(trial.engine) == before

    trial.record_doses(
        a.usubjid,
        "IL2",
        1,
        [(cycle1[0].date, 2), (late, 1)],
        "nurse",
        deviation_reason="participant away on the last dose day",
    )
    with trial.engine.connect() as conn:
        doses = conn.execute(sa.select(Dose.dose_date, Dose.dose).order_by(Dose.dose_date)).all()
    assert [d for d, _ in doses] == [cycle1[0].date, late]
    assert doses[1].dose == cycle1[-1].dose  # the nearest planned day's dose
    [deviation] = trial.deviations.list("nurse")
    assert deviation.category == "STUDY TREATMENT" and deviation.usubjid == a.usubjid
    assert deviation.deviation_date == late
    assert deviation.reason == "participant away on the last dose day"
    assert f"IL2 cycle 1 dose on {late.isoformat()}" in deviation.description


def test_a_dose_before_randomization_is_refused(
    trial: CaptureService, enrol: Callable[..., Allocation]
) -> None:
    a = enrol(trial, arm="IL2")
    with pytest.raises(Exception, match="before the randomization date"):
        trial.record_doses(
            a.usubjid, "IL2", 1, [(a.randomization_date - DAY, 1)], "nurse", deviation_reason="x"
        )
