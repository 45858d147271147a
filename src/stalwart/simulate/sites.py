"""Play the sites of a trial through the real capture path.

Simulated people present at the protocol's sites over the accrual period; each is screened,
and the eligible are consented and randomized through ``CaptureService`` exactly as a site's
data entry would. Each participant's course (from ``simulate.model``) then becomes visit forms,
dose logs, adverse event and clinical event reports and a disposition, all written through the
same service, in calendar order across the whole trial, so the audit trail reads like a real
trial's.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from stalwart.capture.edit_checks import LabValue
from stalwart.capture.service import CaptureService
from stalwart.protocol.calendar import Calendar
from stalwart.protocol.eligibility import evaluate_eligibility, validate_screening_answers
from stalwart.simulate.model import (
    Candidate,
    ParticipantCourse,
    simulate_candidate,
    simulate_participant,
)
from stalwart.simulate.parameters import ModelParameters

__all__ = ["PlayedTrial", "Progress", "play_trial"]

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``, called as the play advances."""

_SCREENING_LAG_DAYS = (7, 28)
"""Days from screening (and consent) to randomization: uniform on this range, inclusive."""

_ORDER = {"visit": 0, "doses": 1, "ae": 2, "event": 3, "disposition": 4}


@dataclass(frozen=True)
class PlayedTrial:
    """What the play wrote."""

    screened: int
    randomized: int
    writes: int


@dataclass(frozen=True)
class _Screening:
    day: dt.date
    site: str
    candidate: Candidate
    randomize_on: dt.date | None


def _accrual(
    service: CaptureService, params: ModelParameters, rng: np.random.Generator
) -> list[_Screening]:
    """Everyone screened: each randomized participant preceded by the screen failures at the site.

    Randomization dates are uniform over the accrual period; sites are chosen uniformly.
    """
    protocol = service.protocol
    start, end = protocol.study.accrual_start, protocol.study.accrual_end
    span = (end - start).days
    target = protocol.study.sample_size
    sites = [s.code for s in protocol.sites]
    days = np.sort(rng.integers(0, span + 1, size=target))
    screenings: list[_Screening] = []
    for offset in days:
        randomize_on = start + dt.timedelta(days=int(offset))
        site = sites[int(rng.integers(len(sites)))]
        lag = int(rng.integers(_SCREENING_LAG_DAYS[0], _SCREENING_LAG_DAYS[1] + 1))
        while True:
            candidate = simulate_candidate(params, protocol, rng)
            answers = validate_screening_answers(protocol, candidate.answers)
            eligible = not evaluate_eligibility(protocol, answers)
            screened_on = randomize_on - dt.timedelta(days=lag)
            if eligible:
                screenings.append(_Screening(screened_on, site, candidate, randomize_on))
                break
            failed_on = screened_on - dt.timedelta(days=int(rng.integers(0, 60)))
            screenings.append(_Screening(failed_on, site, candidate, None))
    screenings.sort(key=lambda s: (s.day, s.site))
    return screenings


def _course_writes(
    service: CaptureService, usubjid: str, course: ParticipantCourse, actor: str
) -> list[tuple[dt.date, int, Callable[[], object]]]:
    """The forms a site fills in for one participant's course, each dated."""
    limit = service.protocol.lab_item("HIVRNA").lower_limit or 0.0
    writes: list[tuple[dt.date, int, Callable[[], object]]] = []
    for lab in course.labs:
        labs: dict[str, LabValue | float | int | str | None] = {
            "CD4": round(lab.cd4),
            "CD4PCT": round(lab.cd4_percent, 1),
            "HIVRNA": LabValue(None, True) if lab.hiv_rna < limit else round(lab.hiv_rna),
        }
        writes.append(
            (
                lab.date,
                _ORDER["visit"],
                partial(service.record_visit, usubjid, lab.visit_code, lab.date, labs, actor),
            )
        )
    cycles: dict[tuple[str, int], list[tuple[dt.date, int]]] = defaultdict(list)
    for dose in course.doses:
        cycles[(dose.treatment, dose.cycle)].append((dose.date, dose.administrations))
    for (treatment, cycle), days in cycles.items():
        writes.append(
            (
                max(d for d, _ in days),
                _ORDER["doses"],
                partial(service.record_doses, usubjid, treatment, cycle, days, actor),
            )
        )
    for ae in course.adverse_events:
        writes.append(
            (
                ae.start,
                _ORDER["ae"],
                partial(
                    service.report_adverse_event,
                    usubjid,
                    ae.term,
                    ae.grade,
                    ae.start,
                    ae.end,
                    ae.related,
                    ae.serious,
                    actor,
                ),
            )
        )
    for event in course.clinical_events:
        writes.append(
            (
                event.date,
                _ORDER["event"],
                partial(service.report_clinical_event, usubjid, event.code, event.date, actor),
            )
        )
    disp = course.disposition
    writes.append(
        (
            disp.date,
            _ORDER["disposition"],
            partial(service.record_disposition, usubjid, disp.status, disp.date, actor),
        )
    )
    return writes


def play_trial(
    service: CaptureService,
    params: ModelParameters,
    seed: np.random.SeedSequence,
    progress: Progress | None = None,
) -> PlayedTrial:
    """Screen, randomize and follow the protocol's sample size of simulated participants."""
    report = progress or (lambda stage, done, total: None)
    accrual_seed, course_seed = seed.spawn(2)
    screenings = _accrual(service, params, np.random.default_rng(accrual_seed))
    numbers: Counter[str] = Counter()
    randomized: list[tuple[str, str, Candidate, Calendar]] = []
    for i, s in enumerate(screenings, start=1):
        numbers[s.site] += 1
        number = f"{s.site}-S{numbers[s.site]:04d}"
        actor = f"coordinator@{s.site}"
        service.screen(s.site, number, s.day, s.candidate.answers, actor)
        if s.randomize_on is not None:
            allocation = service.randomize(number, s.day, s.randomize_on, actor)
            randomized.append((allocation.usubjid, s.site, s.candidate, allocation.calendar))
        report("screening and randomization", i, len(screenings))
    rngs = [np.random.default_rng(c) for c in course_seed.spawn(len(randomized))]
    writes: list[tuple[dt.date, int, int, Callable[[], object]]] = []
    for index, ((usubjid, site, candidate, calendar), rng) in enumerate(
        zip(randomized, rngs, strict=True)
    ):
        course = simulate_participant(params, service.protocol, calendar, candidate, rng)
        for day, rank, write in _course_writes(service, usubjid, course, f"coordinator@{site}"):
            writes.append((day, rank, index, write))
    writes.sort(key=lambda w: (w[0], w[1], w[2]))
    for done, (_, _, _, write) in enumerate(writes, start=1):
        write()
        if done % 50 == 0 or done == len(writes):
            report("follow-up", done, len(writes))
    return PlayedTrial(
        screened=len(screenings),
        randomized=len(randomized),
        writes=len(screenings) + len(randomized) + len(writes),
    )
