"""A participant's visit and dosing calendar, computed from the protocol and the randomization date.

Nothing here is stored: the calendar is always recomputed, so it can never disagree with the
protocol. Study day 0 is the day of randomization.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from stalwart.protocol.fields import UNSCHEDULED_PREFIX
from stalwart.protocol.schema import Protocol

__all__ = [
    "UNSCHEDULED_PREFIX",
    "Calendar",
    "DoseDay",
    "ScheduledVisit",
    "is_unscheduled",
    "participant_calendar",
]


def is_unscheduled(code: str) -> bool:
    """Whether a recorded visit's code is an unscheduled visit's."""
    return code.startswith(UNSCHEDULED_PREFIX)


VisitKind = Literal["scheduled", "cycle", "extended"]


@dataclass(frozen=True)
class ScheduledVisit:
    """A visit the participant is due, with its target date and allowed window."""

    code: str
    name: str
    kind: VisitKind
    study_day: int
    target: dt.date
    earliest: dt.date
    latest: dt.date
    cycle: int | None = None

    def in_window(self, day: dt.date) -> bool:
        """Whether ``day`` lies within the visit's window (bounds included)."""
        return self.earliest <= day <= self.latest


@dataclass(frozen=True)
class DoseDay:
    """One day of a treatment: ``administrations`` doses of ``dose`` ``dose_unit``."""

    treatment: str
    cycle: int
    cycle_day: int
    study_day: int
    date: dt.date
    administrations: int
    dose: float
    dose_unit: str


@dataclass(frozen=True)
class Calendar:
    """Every visit and dose day planned for one participant, in date order."""

    arm: str
    randomization_date: dt.date
    visits: tuple[ScheduledVisit, ...]
    doses: tuple[DoseDay, ...]
    cycle_start_days: dict[str, tuple[int, ...]]

    def visit(self, code: str) -> ScheduledVisit:
        """The planned visit with this code; ``KeyError`` if the participant has none."""
        for v in self.visits:
            if v.code == code:
                return v
        raise KeyError(code)


def participant_calendar(
    protocol: Protocol,
    arm: str,
    randomization_date: dt.date,
    follow_up_end: dt.date | None = None,
) -> Calendar:
    """Plan the visits and doses of a participant randomized to ``arm`` on ``randomization_date``.

    Scheduled visits follow the protocol's ``visits``; cycle visits (pre-cycle labs...) follow
    each cycle of the treatments the arm receives; extended follow-up visits come every
    ``follow_up.extended_visit_interval_weeks`` after the last scheduled visit, up to
    ``follow_up_end`` (the study's, unless given).
    """
    arm_def = protocol.arm(arm)
    end = follow_up_end if follow_up_end is not None else protocol.study.follow_up_end
    starts = _cycle_start_days(protocol, arm_def.treatments)
    visits: list[ScheduledVisit] = []
    for v in protocol.visits:
        visits.append(
            _visit(
                v.code,
                v.name,
                "scheduled",
                v.day,
                v.window_before,
                v.window_after,
                randomization_date,
            )
        )
    for cv in protocol.cycle_visits:
        for k, start in enumerate(starts.get(cv.treatment, ()), start=1):
            visits.append(
                _visit(
                    f"{cv.code}{k}",
                    f"{cv.name}, cycle {k}",
                    "cycle",
                    start + cv.cycle_day,
                    cv.window_before,
                    cv.window_after,
                    randomization_date,
                    cycle=k,
                )
            )
    visits += _extended_visits(protocol, randomization_date, end)
    doses = _dose_days(protocol, arm_def.treatments, starts, randomization_date)
    visits.sort(key=lambda v: (v.study_day, v.code))
    return Calendar(
        arm=arm,
        randomization_date=randomization_date,
        visits=tuple(visits),
        doses=tuple(doses),
        cycle_start_days=starts,
    )


def _visit(
    code: str,
    name: str,
    kind: VisitKind,
    day: int,
    before: int,
    after: int,
    origin: dt.date,
    cycle: int | None = None,
) -> ScheduledVisit:
    target = origin + dt.timedelta(days=day)
    return ScheduledVisit(
        code=code,
        name=name,
        kind=kind,
        study_day=day,
        target=target,
        earliest=target - dt.timedelta(days=before),
        latest=target + dt.timedelta(days=after),
        cycle=cycle,
    )


def _cycle_start_days(protocol: Protocol, treatments: list[str]) -> dict[str, tuple[int, ...]]:
    """Study day of day 0 of each cycle, per treatment the arm receives (anchors resolved)."""
    starts: dict[str, tuple[int, ...]] = {}
    for code in treatments:
        t = protocol.treatments[code]
        own = t if t.anchor is None else protocol.treatments[t.anchor]
        assert own.first_cycle_day is not None and own.cycles is not None
        assert own.cycle_interval_weeks is not None
        starts[code] = tuple(
            own.first_cycle_day + 7 * own.cycle_interval_weeks * k for k in range(own.cycles)
        )
    return starts


def _dose_days(
    protocol: Protocol, treatments: list[str], starts: dict[str, tuple[int, ...]], origin: dt.date
) -> list[DoseDay]:
    doses = []
    for code in treatments:
        t = protocol.treatments[code]
        for k, start in enumerate(starts[code], start=1):
            for cd in t.cycle_days:
                day = start + cd
                doses.append(
                    DoseDay(
                        treatment=code,
                        cycle=k,
                        cycle_day=cd,
                        study_day=day,
                        date=origin + dt.timedelta(days=day),
                        administrations=t.administrations_per_day,
                        dose=t.dose,
                        dose_unit=t.dose_unit,
                    )
                )
    doses.sort(key=lambda d: (d.study_day, d.treatment))
    return doses


def _extended_visits(protocol: Protocol, origin: dt.date, end: dt.date) -> list[ScheduledVisit]:
    last = protocol.visits[-1]
    step = 7 * protocol.follow_up.extended_visit_interval_weeks
    w = protocol.follow_up.window_days
    visits = []
    day = last.day + step
    k = 1
    while origin + dt.timedelta(days=day) <= end:
        visits.append(_visit(f"FU{k:02d}", f"Follow-up {k}", "extended", day, w, w, origin))
        day += step
        k += 1
    return visits
