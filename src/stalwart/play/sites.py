"""Play the sites of a trial through the real capture path.

Simulated people present at the protocol's sites over the accrual period; each is screened,
and the eligible are consented and randomized exactly as a site's data entry would. Each
participant's course (from ``simulate.model``) then becomes visit forms, dose logs, adverse event
and clinical event reports and a disposition, written in calendar order across the whole trial,
so the audit trail reads like a real trial's. Last, the endpoint reviewer confirms every reported
opportunistic event and death (the simulator's events are all true ones), since the analysis
counts confirmed events only.

The play writes through a ``CapturePort``: ``ServicePort`` calls ``CaptureService`` in process
(the site actors are named system actors), ``simulate.http_port.HttpPort`` posts the same forms
to a running server's API as logged-in site users. The same seed gives the same data either way.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Protocol as Interface

import numpy as np

from stalwart.capture.ae_form import AeDetails
from stalwart.capture.edit_checks import LabValue
from stalwart.capture.service import CaptureService
from stalwart.play.ae_details import death_report, site_ae_details
from stalwart.play.demographics import reported_answers
from stalwart.protocol.calendar import Calendar
from stalwart.protocol.eligibility import evaluate_eligibility, validate_screening_answers
from stalwart.protocol.schema import Protocol
from stalwart.simulate.candidates import Candidate, simulate_candidate
from stalwart.simulate.model import ParticipantCourse, simulate_participant
from stalwart.simulate.parameters import ModelParameters

__all__ = [
    "REVIEWER",
    "CapturePort",
    "Enrolment",
    "PlayedTrial",
    "Progress",
    "ServicePort",
    "coordinator_of",
    "play_trial",
]

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``, called as the play advances."""

_SCREENING_LAG_DAYS = (7, 28)
"""Days from screening (and consent) to randomization: uniform on this range, inclusive."""

_ORDER = {"visit": 0, "doses": 1, "ae": 2, "event": 3, "disposition": 4}

REVIEWER = "endpoint.reviewer"
"""The endpoint reviewer's name (a user of role ``endpoint_reviewer`` over HTTP)."""

REVIEW_REASON = "confirmed against the source documents (simulated: every event is true)"
"""The reason the simulated reviewer gives for each verdict."""


def coordinator_of(site: str) -> str:
    """The name of the site coordinator who enters a site's data (a valid username)."""
    return f"coordinator@{site.lower()}"


@dataclass(frozen=True)
class Enrolment:
    """A randomized participant as the site sees it: id, arm and the calendar it follows."""

    usubjid: str
    arm: str
    calendar: Calendar


LabEntry = LabValue | float | int | str | None


class CapturePort(Interface):
    """What playing the sites needs of the capture path; every write names its actor."""

    @property
    def protocol(self) -> Protocol:
        """The trial's protocol."""
        ...

    def screen(
        self,
        site: str,
        screening_number: str,
        screening_date: dt.date,
        answers: dict[str, object],
        actor: str,
    ) -> bool:
        """Record a screening; whether the person is eligible."""
        ...

    def randomize(
        self, screening_number: str, consent_date: dt.date, randomization_date: dt.date, actor: str
    ) -> Enrolment:
        """Randomize a consented, eligible person."""
        ...

    def record_visit(
        self,
        usubjid: str,
        visit_code: str,
        visit_date: dt.date,
        labs: dict[str, LabEntry],
        actor: str,
    ) -> object:
        """Enter a visit form with its laboratory results."""
        ...

    def record_doses(
        self,
        usubjid: str,
        treatment: str,
        cycle: int,
        days: list[tuple[dt.date, int]],
        actor: str,
    ) -> object:
        """Enter the dose log of one cycle."""
        ...

    def report_adverse_event(
        self,
        usubjid: str,
        term: str,
        grade: int,
        start_date: dt.date,
        end_date: dt.date | None,
        related: str,
        serious: bool,
        actor: str,
        details: AeDetails,
    ) -> object:
        """Report an adverse event."""
        ...

    def report_clinical_event(
        self, usubjid: str, event_code: str, onset_date: dt.date, actor: str
    ) -> object:
        """Report an opportunistic event or death."""
        ...

    def record_disposition(
        self, usubjid: str, status: str, disposition_date: dt.date, actor: str
    ) -> object:
        """Record how follow-up ended."""
        ...

    def pending_events(self, actor: str) -> list[int]:
        """Ids of the reported clinical events that await endpoint review, in report order."""
        ...

    def review_event(self, event_id: int, decision: str, reason: str, actor: str) -> object:
        """Confirm or reject a reported event."""
        ...


class ServicePort:
    """The capture port of an in-process ``CaptureService`` (actors are system actors)."""

    def __init__(self, service: CaptureService) -> None:
        self.service = service

    @property
    def protocol(self) -> Protocol:
        """The protocol stored in the database."""
        return self.service.protocol

    def screen(
        self,
        site: str,
        screening_number: str,
        screening_date: dt.date,
        answers: dict[str, object],
        actor: str,
    ) -> bool:
        """``CaptureService.screen``."""
        return self.service.screen(site, screening_number, screening_date, answers, actor).eligible

    def randomize(
        self, screening_number: str, consent_date: dt.date, randomization_date: dt.date, actor: str
    ) -> Enrolment:
        """``CaptureService.randomize``."""
        a = self.service.randomize(screening_number, consent_date, randomization_date, actor)
        return Enrolment(a.usubjid, a.arm, a.calendar)

    def record_visit(
        self,
        usubjid: str,
        visit_code: str,
        visit_date: dt.date,
        labs: dict[str, LabEntry],
        actor: str,
    ) -> object:
        """``CaptureService.record_visit``."""
        return self.service.record_visit(usubjid, visit_code, visit_date, labs, actor)

    def record_doses(
        self,
        usubjid: str,
        treatment: str,
        cycle: int,
        days: list[tuple[dt.date, int]],
        actor: str,
    ) -> object:
        """``CaptureService.record_doses``."""
        self.service.record_doses(usubjid, treatment, cycle, days, actor)
        return None

    def report_adverse_event(
        self,
        usubjid: str,
        term: str,
        grade: int,
        start_date: dt.date,
        end_date: dt.date | None,
        related: str,
        serious: bool,
        actor: str,
        details: AeDetails,
    ) -> object:
        """``CaptureService.report_adverse_event``."""
        return self.service.report_adverse_event(
            usubjid, term, grade, start_date, end_date, related, serious, actor, details
        )

    def report_clinical_event(
        self, usubjid: str, event_code: str, onset_date: dt.date, actor: str
    ) -> object:
        """``CaptureService.report_clinical_event``."""
        return self.service.report_clinical_event(usubjid, event_code, onset_date, actor)

    def record_disposition(
        self, usubjid: str, status: str, disposition_date: dt.date, actor: str
    ) -> object:
        """``CaptureService.record_disposition``."""
        self.service.record_disposition(usubjid, status, disposition_date, actor)
        return None

    def pending_events(self, actor: str) -> list[int]:
        """``EndpointReviews.events`` awaiting a verdict."""
        return [e.id for e in self.service.reviews.events(actor, pending_only=True)]

    def review_event(self, event_id: int, decision: str, reason: str, actor: str) -> object:
        """``EndpointReviews.review``."""
        return self.service.reviews.review(event_id, decision, reason, actor)


@dataclass(frozen=True)
class PlayedTrial:
    """What the play wrote."""

    screened: int
    randomized: int
    writes: int
    reviewed: int = 0


@dataclass(frozen=True)
class _Screening:
    day: dt.date
    site: str
    candidate: Candidate
    randomize_on: dt.date | None


def _accrual(
    protocol: Protocol, params: ModelParameters, rng: np.random.Generator
) -> list[_Screening]:
    """Everyone screened: each randomized participant preceded by the screen failures at the site.

    Randomization dates are uniform over the accrual period; sites are chosen uniformly.
    """
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
    service: CapturePort, usubjid: str, course: ParticipantCourse, actor: str
) -> list[tuple[dt.date, int, Callable[[], object]]]:
    """The forms a site fills in for one participant's course, each dated."""
    limit = service.protocol.lab_item("HIVRNA").lower_limit or 0.0
    writes: list[tuple[dt.date, int, Callable[[], object]]] = []
    for lab in course.labs:
        labs: dict[str, LabEntry] = {
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
    last_dose = max((d.date for d in course.doses), default=None)
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
                    site_ae_details(service.protocol.forms.AE, ae, last_dose),
                ),
            )
        )
    form = service.protocol.forms.AE
    deaths = {e.code: e.term for e in service.protocol.forms.CE.events if e.category == "DEATH"}
    for event in course.clinical_events:
        writes.append(
            (
                event.date,
                _ORDER["event"],
                partial(service.report_clinical_event, usubjid, event.code, event.date, actor),
            )
        )
        if event.code in deaths:
            death = death_report(form, deaths[event.code])
            writes.append(
                (
                    event.date,
                    _ORDER["ae"],
                    partial(
                        service.report_adverse_event,
                        usubjid,
                        death.term,
                        death.grade,
                        event.date,
                        event.date,
                        death.related,
                        True,
                        actor,
                        death.details,
                    ),
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
    service: CaptureService | CapturePort,
    params: ModelParameters,
    seed: np.random.SeedSequence,
    progress: Progress | None = None,
) -> PlayedTrial:
    """Screen, randomize, follow and review the protocol's sample size of simulated participants.

    ``service`` is a capture port, or a ``CaptureService`` to write to in process.
    """
    port: CapturePort = ServicePort(service) if isinstance(service, CaptureService) else service
    report = progress or (lambda stage, done, total: None)
    accrual_seed, course_seed, people_seed = seed.spawn(3)  # a third stream: the first two stay
    people = np.random.default_rng(people_seed)
    screenings = _accrual(port.protocol, params, np.random.default_rng(accrual_seed))
    numbers: Counter[str] = Counter()
    randomized: list[tuple[str, str, Candidate, Calendar]] = []
    to_randomize = sum(s.randomize_on is not None for s in screenings)
    for i, s in enumerate(screenings, start=1):
        numbers[s.site] += 1
        number = f"{s.site}-S{numbers[s.site]:04d}"
        actor = coordinator_of(s.site)
        answers = reported_answers(port.protocol, dict(s.candidate.answers), people)
        port.screen(s.site, number, s.day, answers, actor)
        report("people screened at the sites", i, len(screenings))
        if s.randomize_on is not None:
            enrolment = port.randomize(number, s.day, s.randomize_on, actor)
            randomized.append((enrolment.usubjid, s.site, s.candidate, enrolment.calendar))
            report("participants randomized", len(randomized), to_randomize)
    rngs = [np.random.default_rng(c) for c in course_seed.spawn(len(randomized))]
    writes: list[tuple[dt.date, int, int, Callable[[], object]]] = []
    for index, ((usubjid, site, candidate, calendar), rng) in enumerate(
        zip(randomized, rngs, strict=True)
    ):
        course = simulate_participant(params, port.protocol, calendar, candidate, rng)
        for day, rank, write in _course_writes(port, usubjid, course, coordinator_of(site)):
            writes.append((day, rank, index, write))
    writes.sort(key=lambda w: (w[0], w[1], w[2]))
    for done, (_, _, _, write) in enumerate(writes, start=1):
        write()
        if done % 50 == 0 or done == len(writes):
            report("follow-up forms captured", done, len(writes))
    pending = port.pending_events(REVIEWER)
    for done, event_id in enumerate(pending, start=1):
        port.review_event(event_id, "CONFIRMED", REVIEW_REASON, REVIEWER)
        report("events adjudicated", done, len(pending))
    return PlayedTrial(
        screened=len(screenings),
        randomized=len(randomized),
        writes=len(screenings) + len(randomized) + len(writes) + len(pending),
        reviewed=len(pending),
    )
