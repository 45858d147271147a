"""Enrolment: screening, informed consent and randomization of the sites' candidates.

A screened person's answers are validated against the protocol and the eligibility verdict is
recorded with its reasons; an eligible person's consent is recorded; randomization assigns the
next slot of the person's stratum list (or the arm minimization chooses from the allocations
stored so far and the next concealed draw) and makes them a participant with a USUBJID.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from stalwart.capture.access import Actor, ActorLike, Permission, require
from stalwart.capture.audit import append_audit
from stalwart.capture.context import CaptureContext
from stalwart.capture.deviations import CONSENT, log_deviation
from stalwart.capture.edit_checks import check_date_not_future, check_dates_in_order
from stalwart.capture.locks import check_site_unlocked
from stalwart.capture.sealing import HOW_TO_GIVE, SEALED
from stalwart.capture.soft_checks import apply_soft_checks
from stalwart.capture.tables import (
    AllocationSlot,
    Consent,
    MinimizationDraw,
    Participant,
    Screening,
    SealedArm,
    Site,
    TrialInfo,
)
from stalwart.capture.transaction import transaction
from stalwart.capture.visits import LabEntries, check_labs, insert_visit
from stalwart.capture.writes import add_rows
from stalwart.errors import (
    AccessDeniedError,
    AllocationExhaustedError,
    AllocationKeyError,
    AlreadyRandomizedError,
    ConflictError,
    DuplicateError,
    EligibilityError,
    FieldErrors,
    NotFoundError,
    ValidationError,
)
from stalwart.protocol.calendar import Calendar, participant_calendar
from stalwart.protocol.eligibility import Answer, check_screening_answers, evaluate_eligibility
from stalwart.protocol.schema import Protocol
from stalwart.randomization.allocation import stratum_key
from stalwart.randomization.minimization import MINIMIZATION_STREAM, MinimizationDesign

__all__ = [
    "Allocation",
    "Enrolment",
    "ScreeningOutcome",
    "check_screening",
    "find_screening",
]


@dataclass(frozen=True)
class ScreeningOutcome:
    """The verdict recorded for a screened person."""

    screening_number: str
    eligible: bool
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Allocation:
    """A randomization: who, which arm, from which list slot, and the resulting calendar."""

    usubjid: str
    arm: str
    stratum: str
    sequence: int
    randomization_date: dt.date
    calendar: Calendar


def find_screening(
    session: Session, who: Actor, screening_number: str, site: str | None
) -> tuple[Screening, str]:
    """The screening numbered ``screening_number`` at the actor's site, and its site code.

    Numbers are unique per site, so the lookup is scoped by site: a site-bound actor's own (a
    number used only at another site is "not found", whether or not it exists there); for an
    all-sites actor ``site`` when given, else the one site using the number (two or more: the
    site must be named).
    """
    stmt = (
        sa.select(Screening, Site.code)
        .join(Site, Site.id == Screening.site_id)
        .where(Screening.screening_number == screening_number)
    )
    if who.site is not None:
        if site is not None and site != who.site:
            raise NotFoundError(f"no screening numbered {screening_number} at site {site} for you")
        site = who.site
    if site is not None:
        stmt = stmt.where(Site.code == site)
    rows = session.execute(stmt.order_by(Site.code)).all()
    if not rows:
        where = f" at site {site}" if site is not None else ""
        raise NotFoundError(f"no screening numbered {screening_number}{where}; screen first")
    if len(rows) > 1:
        sites = ", ".join(code for _, code in rows)
        raise ValidationError(
            "site", f"screening number {screening_number} is used at {sites}: name the site"
        )
    return rows[0][0], rows[0][1]


def check_screening(
    protocol: Protocol,
    today: dt.date,
    screening_date: dt.date | None,
    answers: Mapping[str, object],
    *,
    partial: bool,
    consent_date: dt.date | None = None,
) -> dict[str, Answer]:
    """The screening's dates and answers checked together: every wrong field at once.

    ``partial``: fields missing from ``answers`` (or no date) are not errors: a form whose
    other fields failed to parse first reports those beside these.
    """
    problems: list[ValidationError] = []
    values: dict[str, Answer] = {}
    try:
        values = check_screening_answers(protocol, answers, partial=partial)
    except ValidationError as exc:
        problems.append(exc)
    for field, day in (("consent_date", consent_date), ("screening_date", screening_date)):
        if day is not None:
            try:
                check_date_not_future(field, day, today)
            except ValidationError as exc:
                problems.append(exc)
    if error := FieldErrors.collect(problems):
        raise error
    return values


def _log_late_consent(
    session: Session, screening: Screening, consent_date: dt.date, actor: str
) -> None:
    """Consent comes before the screening procedures (GCP); one dated after is a deviation."""
    if consent_date <= screening.screening_date:
        return
    log_deviation(
        session,
        site_id=screening.site_id,
        screening_id=screening.id,
        category=CONSENT,
        description=(
            f"informed consent dated {consent_date.isoformat()}, after the screening "
            f"procedures of {screening.screening_date.isoformat()}"
        ),
        deviation_date=consent_date,
        actor=actor,
    )


class Enrolment:
    """Screening, informed consent and randomization at the sites."""

    def __init__(self, context: CaptureContext) -> None:
        self.context = context

    def screen(
        self,
        site: str,
        screening_number: str | None,
        screening_date: dt.date,
        answers: Mapping[str, object],
        actor: ActorLike,
        *,
        consent_date: dt.date | None = None,
    ) -> ScreeningOutcome:
        """Record a screening and its eligibility verdict (the reasons when not eligible).

        ``consent_date``: the informed consent, recorded with the screening (GCP: consent comes
        first, then the screening procedures); one dated after the screening is saved and
        logged as a late-consent deviation.

        ``screening_number`` None (or blank) assigns the site's next number in the protocol's
        ``study.screening_number_format``; the site row is locked while it is chosen, so two
        screenings at once never get the same one. Every wrong field is reported at once.
        """
        who = require(actor, Permission.SCREEN, "screen participants")
        self._require_site(who, site)
        values = check_screening(
            self.context.protocol,
            self.context.today(),
            screening_date,
            answers,
            partial=False,
            consent_date=consent_date,
        )
        reasons = evaluate_eligibility(self.context.protocol, values)
        given = screening_number.strip() if screening_number else ""
        with transaction(self.context.engine) as session:
            site_row = self._site(session, site, lock=True)
            number = given or self._next_screening_number(session, site_row)
            exists = session.scalar(
                sa.select(Screening.id).where(
                    Screening.site_id == site_row.id, Screening.screening_number == number
                )
            )
            if exists is not None:
                raise DuplicateError(
                    "screening_number",
                    f"screening number {number} is already recorded at {site}: leave it blank "
                    "to be given the next free number",
                )
            row = Screening(
                site_id=site_row.id,
                screening_number=number,
                screening_date=screening_date,
                answers=dict(values),
                eligible=not reasons,
                reasons=reasons,
            )
            add_rows(session, [row], who.label)
            if consent_date is not None:
                consent = Consent(screening_id=row.id, consent_date=consent_date)
                add_rows(session, [consent], who.label)
                _log_late_consent(session, row, consent_date, who.label)
        return ScreeningOutcome(number, not reasons, tuple(reasons))

    def _next_screening_number(self, session: Session, site: Site) -> str:
        """The site's next free number in the protocol's format (the site row is locked)."""
        study = self.context.protocol.study
        used = set(
            session.scalars(
                sa.select(Screening.screening_number).where(Screening.site_id == site.id)
            )
        )
        seq = len(used) + 1
        while study.screening_number(site.code, seq) in used:
            seq += 1
        return study.screening_number(site.code, seq)

    def record_consent(
        self,
        screening_number: str,
        consent_date: dt.date,
        actor: ActorLike,
        *,
        site: str | None = None,
    ) -> int:
        """Record the informed consent of an eligible screened person (before randomization).

        The screening is looked up at the actor's site (``site`` for an all-sites actor, needed
        only when two sites use the number: see ``find_screening``).
        """
        who = require(actor, Permission.SCREEN, "record consent")
        check_date_not_future("consent_date", consent_date, self.context.today())
        with transaction(self.context.engine) as session:
            screening, _ = find_screening(session, who, screening_number, site)
            if not screening.eligible:
                raise EligibilityError(screening_number, screening.reasons)
            if session.scalar(sa.select(Consent.id).where(Consent.screening_id == screening.id)):
                raise ConflictError(f"the consent of {screening_number} is already recorded")
            consent = Consent(screening_id=screening.id, consent_date=consent_date)
            add_rows(session, [consent], who.label)
            _log_late_consent(session, screening, consent_date, who.label)
            return consent.id

    def randomize(
        self,
        screening_number: str,
        consent_date: dt.date,
        randomization_date: dt.date,
        actor: ActorLike,
        *,
        site: str | None = None,
        entry_labs: LabEntries | None = None,
    ) -> Allocation:
        """Enroll an eligible screened person and assign the next slot of their stratum's list.

        ``entry_labs``, when given, are the results of the study-entry visit (the protocol's
        day-0 visit), saved with the randomization in its transaction, dated the same day.

        One transaction: the site row and the slot are locked, so no slot goes to two people and
        nobody is randomized twice (also enforced by unique constraints). Under minimization the
        trial row is locked too, so the allocation counts read and the allocation written belong
        to one serial order of randomizations, the order a replay of the stored draws follows.
        The screening is looked up as by ``record_consent``.
        """
        who = require(actor, Permission.RANDOMIZE, "randomize participants")
        check_date_not_future("randomization_date", randomization_date, self.context.today())
        check_dates_in_order("consent_date", consent_date, "randomization_date", randomization_date)
        entry = self.context.protocol.visits[0]
        results = None
        if entry_labs is not None:
            if entry.day != 0:
                raise ValidationError(
                    "entry_labs", "the protocol's first visit is not on the randomization day"
                )
            results = check_labs(self.context.protocol, entry_labs, required=True)
        with transaction(self.context.engine) as session:
            screening, _ = find_screening(session, who, screening_number, site)
            site_row = session.scalar(
                sa.select(Site).where(Site.id == screening.site_id).with_for_update()
            )
            assert site_row is not None
            check_site_unlocked(
                session, site_row.id, f"randomization at site {site_row.code}", randomization_date
            )
            consented = session.scalar(
                sa.select(Consent.consent_date).where(Consent.screening_id == screening.id)
            )
            if consented is not None and consented != consent_date:
                raise ValidationError(
                    "consent_date",
                    f"{consent_date} differs from the consent recorded on {consented}",
                )
            if not screening.eligible:
                raise EligibilityError(screening_number, screening.reasons)
            taken = session.scalar(
                sa.select(Participant.usubjid).where(Participant.screening_id == screening.id)
            )
            if taken is not None:
                raise AlreadyRandomizedError(
                    f"{screening_number} is already randomized as {taken}; randomization "
                    "happens once"
                )
            if consented is None:
                _log_late_consent(session, screening, consent_date, who.label)
            if self.context.protocol.randomization.method == "minimization":
                slot = self._minimization_slot(session, site_row, screening)
            else:
                slot = self._next_block_slot(session, site_row, screening)
            number = 1 + (
                session.scalar(
                    sa.select(sa.func.count(Participant.id)).where(
                        Participant.site_id == site_row.id
                    )
                )
                or 0
            )
            usubjid = f"{self.context.protocol.study.id}-{site_row.code}-{number:04d}"
            participant = Participant(
                usubjid=usubjid,
                site_id=site_row.id,
                screening_id=screening.id,
                consent_date=consent_date,
                randomization_date=randomization_date,
            )
            session.add(participant)
            session.flush()
            slot.participant_id = participant.id
            action = "UPDATE" if slot.id is not None else "INSERT"
            session.add(slot)
            session.flush()
            append_audit(session, [("INSERT", participant), (action, slot)], who.label)
            if results is not None:
                entry_id = insert_visit(
                    session,
                    self.context.protocol,
                    who,
                    participant,
                    entry.code,
                    randomization_date,
                    results,
                )
                apply_soft_checks(session, self.context.protocol, participant, entry_id)
            arm, stratum, sequence = slot.arm, slot.stratum, slot.sequence
        calendar = participant_calendar(self.context.protocol, arm, randomization_date)
        return Allocation(usubjid, arm, stratum, sequence, randomization_date, calendar)

    # -- helpers ------------------------------------------------------------------------------

    def _next_block_slot(
        self, session: Session, site: Site, screening: Screening
    ) -> AllocationSlot:
        """The next free slot of the participant's stratum list, locked."""
        stratum = stratum_key(self.context.protocol, site.code, screening.answers)
        slot = session.scalar(
            sa.select(AllocationSlot)
            .where(AllocationSlot.stratum == stratum, AllocationSlot.participant_id.is_(None))
            .order_by(AllocationSlot.sequence)
            .limit(1)
            .with_for_update()
        )
        if slot is None:
            raise AllocationExhaustedError(
                f"the allocation list of stratum {stratum} is used up; extend it before "
                "enrolling more participants"
            )
        if slot.arm == SEALED:
            slot.arm = self._open_sealed(session, slot)
        return slot

    def _open_sealed(self, session: Session, slot: AllocationSlot) -> str:
        """The arm of a sealed slot, opened with the allocation key (in this transaction)."""
        key = self.context.allocation_key
        if key is None:
            raise AllocationKeyError(
                "randomization is unavailable: this trial's allocation list is sealed and the "
                f"server was started without the allocation key; {HOW_TO_GIVE}; nothing was "
                "randomized"
            )
        sealed = session.get(SealedArm, (slot.stratum, slot.sequence))
        if sealed is None:
            raise AllocationKeyError(
                f"slot {slot.sequence} of {slot.stratum} is sealed but its sealed arm is "
                "missing: the list was altered (restore it from a backup); nothing was randomized"
            )
        return key.open_arm(slot.stratum, slot.sequence, sealed.sealed)

    def _minimization_slot(
        self, session: Session, site: Site, screening: Screening
    ) -> AllocationSlot:
        """A new slot whose arm minimization chooses from the allocations stored so far.

        The trial row is locked first, so concurrent randomizations queue: each reads the
        counts its predecessors wrote and takes the next draw of the stream.
        """
        session.scalar(sa.select(TrialInfo.id).where(TrialInfo.id == 1).with_for_update())
        design = MinimizationDesign.from_protocol(self.context.protocol)
        levels = design.levels_of(site.code, screening.answers)
        earlier = session.execute(
            sa.select(AllocationSlot.arm, Site.code, Screening.answers)
            .join(Participant, AllocationSlot.participant_id == Participant.id)
            .join(Site, Site.id == Participant.site_id)
            .join(Screening, Screening.id == Participant.screening_id)
            .where(AllocationSlot.stratum == MINIMIZATION_STREAM)
        ).all()
        minimizer = design.minimizer()
        minimizer.add_many(
            [design.levels_of(code, answers) for _, code, answers in earlier],
            [design.arms.index(arm) for arm, _, _ in earlier],
        )
        sequence = len(earlier) + 1
        draw = session.get(MinimizationDraw, sequence)
        if draw is None:
            raise AllocationExhaustedError(
                f"the minimization stream of {design.list_length} draws is used up; extend "
                "randomization.minimization.list_length before enrolling more participants"
            )
        arm_index = int(minimizer.assign(levels, draw.draw))
        return AllocationSlot(
            stratum=MINIMIZATION_STREAM,
            sequence=sequence,
            block=0,
            block_size=0,
            arm=design.arms[arm_index],
        )

    @staticmethod
    def _site(session: Session, code: str, *, lock: bool = False) -> Site:
        stmt = sa.select(Site).where(Site.code == code)
        site = session.scalar(stmt.with_for_update() if lock else stmt)
        if site is None:
            known = ", ".join(session.scalars(sa.select(Site.code).order_by(Site.code)))
            raise NotFoundError(f"no site {code!r}; sites are {known}")
        return site

    @staticmethod
    def _require_site(who: Actor, site: str) -> None:
        """A site-bound actor may write only at its own site."""
        if not who.sees_site(site):
            raise AccessDeniedError(
                "site", f"{who.username} works at site {who.site} and may not enter data at {site}"
            )
