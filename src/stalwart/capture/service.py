"""Service functions: the only way data enters the trial database.

Each public method is one transaction: it runs the edit checks, writes the rows, and appends the
audit records of those rows before committing. When a check fails nothing is written. Sites' data
entry, the web layer and the simulator all call these same methods.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session

from stalwart.capture.access import Actor, ActorLike, Permission, require
from stalwart.capture.audit import append_audit, append_audit_entries, insert_rows
from stalwart.capture.edit_checks import (
    LabValue,
    check_date_not_future,
    check_dates_in_order,
    check_lab_value,
    check_visit_window,
    parse_lab_value,
)
from stalwart.capture.queries import DataQueries
from stalwart.capture.records import Records
from stalwart.capture.reviews import EndpointReviews
from stalwart.capture.signatures import Signatures, void_signatures
from stalwart.capture.tables import (
    AdverseEvent,
    AllocationSlot,
    Base,
    ClinicalEvent,
    Consent,
    Disposition,
    Dose,
    LabResult,
    MinimizationDraw,
    Participant,
    Screening,
    Site,
    TrialInfo,
    Visit,
)
from stalwart.capture.transaction import transaction as _transaction
from stalwart.errors import (
    AccessDeniedError,
    AllocationExhaustedError,
    AlreadyRandomizedError,
    ConflictError,
    DatabaseError,
    EligibilityError,
    NotFoundError,
    ValidationError,
)
from stalwart.protocol.calendar import Calendar, participant_calendar
from stalwart.protocol.eligibility import evaluate_eligibility, validate_screening_answers
from stalwart.protocol.load import LoadedProtocol, parse_protocol
from stalwart.protocol.schema import Protocol
from stalwart.randomization.allocation import (
    allocation_lists,
    concealed_draws,
    seed_fingerprint,
    stratum_key,
)
from stalwart.randomization.minimization import MINIMIZATION_STREAM, MinimizationDesign

__all__ = [
    "DISPOSITION_STATUSES",
    "Allocation",
    "CaptureService",
    "ScreeningOutcome",
    "initialize_trial",
]

DISPOSITION_STATUSES = ("COMPLETED", "LOST TO FOLLOW-UP", "WITHDREW", "DEATH")
"""How follow-up can end (CDISC DS decoded terms)."""

_VISIT_CONTEXT = (
    sa.select(
        Participant.id,
        Participant.randomization_date,
        AllocationSlot.arm,
        Site.code.label("site"),
        Disposition.disposition_date.label("ended"),
        Visit.id.label("visit_id"),
    )
    .join(AllocationSlot, AllocationSlot.participant_id == Participant.id)
    .join(Site, Site.id == Participant.site_id)
    .outerjoin(Disposition, Disposition.participant_id == Participant.id)
    .outerjoin(
        Visit,
        sa.and_(
            Visit.participant_id == Participant.id, Visit.visit_code == sa.bindparam("visit_code")
        ),
    )
    .where(Participant.usubjid == sa.bindparam("usubjid"))
)
"""A visit's context in one read: the participant, arm and site, end of follow-up, earlier save."""


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


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def initialize_trial(
    engine: Engine, loaded: LoadedProtocol, seed: int, actor: str = "system"
) -> None:
    """Record the protocol, its sites and every stratum's allocation list in an empty database.

    The allocation lists (or, under minimization, the stream of draws) are generated from
    ``seed``; only a fingerprint of the seed is stored.
    """
    protocol = loaded.protocol
    lists = allocation_lists(protocol, seed)
    draws = concealed_draws(protocol, seed)
    with _transaction(engine) as session:
        if session.get(TrialInfo, 1) is not None:
            raise ConflictError("this database already holds a trial; use a new database")
        rows: list[Base] = [
            TrialInfo(
                id=1,
                protocol_id=protocol.study.id,
                protocol_version=protocol.study.version,
                protocol_sha256=loaded.sha256,
                protocol_text=loaded.text,
                randomization_seed_sha256=seed_fingerprint(seed),
            )
        ]
        rows += [Site(code=s.code, name=s.name, country=s.country) for s in protocol.sites]
        rows += [
            AllocationSlot(
                stratum=stratum,
                sequence=slot.sequence,
                block=slot.block,
                block_size=slot.block_size,
                arm=slot.arm,
            )
            for stratum, slots in lists.items()
            for slot in slots
        ]
        rows += [MinimizationDraw(sequence=i, draw=u) for i, u in enumerate(draws, start=1)]
        session.add_all(rows)
        append_audit(session, [("INSERT", r) for r in rows], actor, "trial set-up")


class CaptureService:
    """Data entry for one trial database, under the protocol stored in it."""

    def __init__(
        self, engine: Engine, loaded: LoadedProtocol, today: Callable[[], dt.date] = _today
    ) -> None:
        self.engine = engine
        self.loaded = loaded
        self.protocol: Protocol = loaded.protocol
        self._today = today
        self._calendars: dict[tuple[str, dt.date], Calendar] = {}

    def calendar(self, arm: str, randomization_date: dt.date) -> Calendar:
        """The visit and dosing calendar of a participant, planned once per arm and date.

        Every form of a participant is checked against it, so it is kept (a few hundred
        calendars for a whole trial: arms times randomization dates).
        """
        key = (arm, randomization_date)
        cal = self._calendars.get(key)
        if cal is None:
            cal = participant_calendar(self.protocol, arm, randomization_date)
            self._calendars[key] = cal
        return cal

    @classmethod
    def open(cls, engine: Engine, today: Callable[[], dt.date] = _today) -> CaptureService:
        """The service of an initialized database, under the protocol stored in it."""
        try:
            with Session(engine) as session:
                info = session.get(TrialInfo, 1)
        except (OperationalError, ProgrammingError):
            # no trial table: SQLite says OperationalError, PostgreSQL ProgrammingError
            info = None
        if info is None:
            raise DatabaseError(
                "this database holds no trial: run `stalwart init` (or `stalwart demo`) first"
            )
        loaded = parse_protocol(info.protocol_text, source="protocol stored in the database")
        if loaded.sha256 != info.protocol_sha256:
            raise DatabaseError("the stored protocol does not match its recorded hash")
        return cls(engine, loaded, today)

    # -- companions: the same store, seen through the other workflows --------------------------
    @cached_property
    def records(self) -> Records:
        """Site-scoped reads: participants, visits, worklist, audit trail, exports, summaries."""
        return Records(self)

    @cached_property
    def queries(self) -> DataQueries:
        """Data clarification queries."""
        return DataQueries(self)

    @cached_property
    def signatures(self) -> Signatures:
        """Investigator e-signatures of visits."""
        return Signatures(self)

    @cached_property
    def reviews(self) -> EndpointReviews:
        """Endpoint review of reported opportunistic events and deaths."""
        return EndpointReviews(self)

    # -- screening and randomization ----------------------------------------------------------
    def screen(
        self,
        site: str,
        screening_number: str,
        screening_date: dt.date,
        answers: Mapping[str, object],
        actor: ActorLike,
    ) -> ScreeningOutcome:
        """Record a screening and its eligibility verdict (the reasons when not eligible)."""
        who = require(actor, Permission.SCREEN, "screen participants")
        self._require_site(who, site)
        values = validate_screening_answers(self.protocol, answers)
        check_date_not_future("screening_date", screening_date, self._today())
        if not screening_number.strip():
            raise ValidationError("screening_number", "must not be empty")
        reasons = evaluate_eligibility(self.protocol, values)
        with _transaction(self.engine) as session:
            site_row = self._site(session, site)
            exists = session.scalar(
                sa.select(Screening.id).where(Screening.screening_number == screening_number)
            )
            if exists is not None:
                raise ConflictError(f"screening number {screening_number} is already recorded")
            row = Screening(
                site_id=site_row.id,
                screening_number=screening_number,
                screening_date=screening_date,
                answers=dict(values),
                eligible=not reasons,
                reasons=reasons,
            )
            session.add(row)
            append_audit(session, [("INSERT", row)], who.label)
        return ScreeningOutcome(screening_number, not reasons, tuple(reasons))

    def record_consent(self, screening_number: str, consent_date: dt.date, actor: ActorLike) -> int:
        """Record the informed consent of an eligible screened person (before randomization)."""
        who = require(actor, Permission.SCREEN, "record consent")
        check_date_not_future("consent_date", consent_date, self._today())
        with _transaction(self.engine) as session:
            row = session.execute(
                sa.select(Screening, Site.code)
                .join(Site, Site.id == Screening.site_id)
                .where(Screening.screening_number == screening_number)
            ).one_or_none()
            if row is None or not who.sees_site(row[1]):
                raise NotFoundError(f"no screening numbered {screening_number}; screen first")
            screening = row[0]
            if not screening.eligible:
                raise EligibilityError(screening_number, screening.reasons)
            check_dates_in_order(
                "screening_date", screening.screening_date, "consent_date", consent_date
            )
            if session.scalar(sa.select(Consent.id).where(Consent.screening_id == screening.id)):
                raise ConflictError(f"the consent of {screening_number} is already recorded")
            consent = Consent(screening_id=screening.id, consent_date=consent_date)
            session.add(consent)
            append_audit(session, [("INSERT", consent)], who.label)
            return consent.id

    def randomize(
        self,
        screening_number: str,
        consent_date: dt.date,
        randomization_date: dt.date,
        actor: ActorLike,
    ) -> Allocation:
        """Enroll an eligible screened person and assign the next slot of their stratum's list.

        One transaction: the site row and the slot are locked, so no slot goes to two people and
        nobody is randomized twice (also enforced by unique constraints). Under minimization the
        trial row is locked too, so the allocation counts read and the allocation written belong
        to one serial order of randomizations, the order a replay of the stored draws follows.
        """
        who = require(actor, Permission.RANDOMIZE, "randomize participants")
        check_date_not_future("randomization_date", randomization_date, self._today())
        check_dates_in_order("consent_date", consent_date, "randomization_date", randomization_date)
        with _transaction(self.engine) as session:
            screening = session.scalar(
                sa.select(Screening).where(Screening.screening_number == screening_number)
            )
            if screening is None:
                raise NotFoundError(f"no screening numbered {screening_number}; screen first")
            site = session.scalar(
                sa.select(Site).where(Site.id == screening.site_id).with_for_update()
            )
            assert site is not None
            if not who.sees_site(site.code):
                raise NotFoundError(f"no screening numbered {screening_number}; screen first")
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
            check_dates_in_order(
                "screening_date", screening.screening_date, "consent_date", consent_date
            )
            if self.protocol.randomization.method == "minimization":
                slot = self._minimization_slot(session, site, screening)
            else:
                slot = self._next_block_slot(session, site, screening)
            number = 1 + (
                session.scalar(
                    sa.select(sa.func.count(Participant.id)).where(Participant.site_id == site.id)
                )
                or 0
            )
            usubjid = f"{self.protocol.study.id}-{site.code}-{number:04d}"
            participant = Participant(
                usubjid=usubjid,
                site_id=site.id,
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
            arm, stratum, sequence = slot.arm, slot.stratum, slot.sequence
        calendar = participant_calendar(self.protocol, arm, randomization_date)
        return Allocation(usubjid, arm, stratum, sequence, randomization_date, calendar)

    # -- follow-up data ----------------------------------------------------------------------
    def record_visit(
        self,
        usubjid: str,
        visit_code: str,
        visit_date: dt.date,
        labs: Mapping[str, LabValue | float | int | str | None],
        actor: ActorLike,
    ) -> int:
        """Record a visit of the participant's schedule with its laboratory results."""
        who = require(actor, Permission.ENTER_DATA, "enter visit data")
        check_date_not_future("visit_date", visit_date, self._today())
        results = self._check_labs(labs)
        with _transaction(self.engine) as session:
            row = (
                session.connection()
                .execute(_VISIT_CONTEXT, {"usubjid": usubjid, "visit_code": visit_code})
                .one_or_none()
            )
            if row is None or not who.sees_site(row.site):
                raise NotFoundError(f"no randomized participant {usubjid!r}")
            calendar = self.calendar(row.arm, row.randomization_date)
            try:
                planned = calendar.visit(visit_code)
            except KeyError:
                codes = ", ".join(v.code for v in calendar.visits[:12])
                raise ValidationError(
                    "visit_code",
                    f"{visit_code!r} is not in the schedule of {usubjid} ({codes}, ...)",
                ) from None
            check_visit_window(planned, visit_date)
            if row.ended is not None and visit_date > row.ended:
                raise ValidationError(
                    "visit_date",
                    f"{visit_date} is after the end of follow-up of {usubjid} ({row.ended})",
                )
            if row.visit_id is not None:
                raise ConflictError(f"visit {visit_code} of {usubjid} is already recorded")
            (visit,) = insert_rows(
                session,
                Visit,
                [{"participant_id": row.id, "visit_code": visit_code, "visit_date": visit_date}],
            )
            stored = insert_rows(
                session,
                LabResult,
                [
                    {
                        "visit_id": visit["id"],
                        "participant_id": row.id,
                        "test_code": name,
                        "value": value,
                        "unit": self.protocol.lab_item(name).unit or "",
                        "below_limit": below,
                        "limit_value": limit,
                    }
                    for name, (value, below, limit) in results.items()
                ],
            )
            append_audit_entries(
                session,
                [("INSERT", "visit", visit["id"], visit)]
                + [("INSERT", "lab_result", lab["id"], lab) for lab in stored],
                who.label,
            )
            return int(visit["id"])

    def correct_visit(
        self,
        usubjid: str,
        visit_code: str,
        visit_date: dt.date,
        labs: Mapping[str, LabValue | float | int | str | None],
        reason: str,
        actor: ActorLike,
    ) -> int:
        """Correct a saved visit (its date and results) with a reason; voids its signature.

        The same edit checks as first entry apply. A saved result can be changed, not removed.
        """
        who = require(actor, Permission.CORRECT_DATA, "correct saved data")
        if not reason.strip():
            raise ValidationError("reason", "a reason for change is required to edit saved data")
        check_date_not_future("visit_date", visit_date, self._today())
        results = self._check_labs(labs)
        with _transaction(self.engine) as session:
            participant, arm = self._participant(session, usubjid, who)
            visit = session.scalar(
                sa.select(Visit)
                .where(Visit.participant_id == participant.id, Visit.visit_code == visit_code)
                .with_for_update()
            )
            if visit is None:
                raise NotFoundError(f"visit {visit_code} of {usubjid} is not recorded; enter it")
            calendar = self.calendar(arm, participant.randomization_date)
            check_visit_window(calendar.visit(visit_code), visit_date)
            self._check_before_disposition(session, participant, "visit_date", visit_date)
            stored = {
                lab.test_code: lab
                for lab in session.scalars(
                    sa.select(LabResult).where(LabResult.visit_id == visit.id)
                )
            }
            removed = sorted(set(stored) - set(results))
            if removed:
                raise ValidationError(
                    f"LAB.{removed[0]}", "a saved result cannot be removed; correct its value"
                )
            changed: list[tuple[str, Base]] = []
            if visit.visit_date != visit_date:
                visit.visit_date = visit_date
                changed.append(("UPDATE", visit))
            for name, (value, below, limit) in results.items():
                lab = stored.get(name)
                if lab is None:
                    lab = LabResult(
                        visit_id=visit.id,
                        participant_id=participant.id,
                        test_code=name,
                        value=value,
                        unit=self.protocol.lab_item(name).unit or "",
                        below_limit=below,
                        limit_value=limit,
                    )
                    session.add(lab)
                    changed.append(("INSERT", lab))
                elif (lab.value, lab.below_limit, lab.limit_value) != (value, below, limit):
                    lab.value, lab.below_limit, lab.limit_value = value, below, limit
                    changed.append(("UPDATE", lab))
            if not changed:
                raise ValidationError("visit", "nothing changed: the entered values are stored")
            session.flush()
            voided = void_signatures(session, visit.id, f"visit corrected: {reason.strip()}")
            changed += [("UPDATE", row) for row in voided]
            append_audit(session, changed, who.label, reason.strip())
            return visit.id

    def record_doses(
        self,
        usubjid: str,
        treatment: str,
        cycle: int,
        days: Sequence[tuple[dt.date, int]],
        actor: ActorLike,
    ) -> None:
        """Record the doses of one cycle: ``(date, administrations taken)`` per dose day."""
        who = require(actor, Permission.ENTER_DATA, "enter doses")
        if not days:
            raise ValidationError("doses", "give at least one dose day")
        with _transaction(self.engine) as session:
            participant, arm = self._participant(session, usubjid, who)
            calendar = self.calendar(arm, participant.randomization_date)
            planned = {
                d.date: d for d in calendar.doses if d.treatment == treatment and d.cycle == cycle
            }
            if not planned:
                raise ValidationError(
                    "treatment",
                    f"{usubjid} (arm {arm}) has no {treatment} cycle {cycle} in the protocol",
                )
            rows: list[Base] = []
            for day, taken in days:
                plan = planned.get(day)
                if plan is None:
                    raise ValidationError(
                        "dose_date",
                        f"{day} is not a {treatment} day of cycle {cycle} "
                        f"(planned {min(planned)} to {max(planned)})",
                    )
                if (
                    isinstance(taken, bool)
                    or not isinstance(taken, int)
                    or not 0 <= taken <= plan.administrations
                ):
                    raise ValidationError(
                        "administrations",
                        f"{taken!r} on {day}: must be a whole number 0 to {plan.administrations}",
                    )
                check_date_not_future("dose_date", day, self._today())
                self._check_before_disposition(session, participant, "dose_date", day)
                rows.append(
                    Dose(
                        participant_id=participant.id,
                        treatment=treatment,
                        cycle=cycle,
                        dose_date=day,
                        administrations=taken,
                        dose=plan.dose,
                        dose_unit=plan.dose_unit,
                    )
                )
            dates = [d for d, _ in days]
            if len(set(dates)) != len(dates):
                raise ValidationError("dose_date", "a dose day is listed twice")
            existing = session.scalar(
                sa.select(sa.func.count(Dose.id)).where(
                    Dose.participant_id == participant.id,
                    Dose.treatment == treatment,
                    Dose.dose_date.in_(dates),
                )
            )
            if existing:
                raise ConflictError(
                    f"{treatment} doses of {usubjid} on these days are already recorded"
                )
            session.add_all(rows)
            append_audit(session, [("INSERT", r) for r in rows], who.label)

    def report_clinical_event(
        self, usubjid: str, event_code: str, onset_date: dt.date, actor: ActorLike
    ) -> int:
        """Report an opportunistic event or death from the protocol's coded list."""
        who = require(actor, Permission.ENTER_DATA, "report clinical events")
        terms = {e.code: e for e in self.protocol.forms.CE.events}
        if event_code not in terms:
            raise ValidationError(
                "event_code",
                f"{event_code!r} is not a coded clinical event; use one of {sorted(terms)}",
            )
        check_date_not_future("onset_date", onset_date, self._today())
        with _transaction(self.engine) as session:
            participant, _ = self._participant(session, usubjid, who)
            check_dates_in_order(
                "randomization_date", participant.randomization_date, "onset_date", onset_date
            )
            self._check_before_disposition(session, participant, "onset_date", onset_date)
            death = session.scalar(
                sa.select(ClinicalEvent.onset_date).where(
                    ClinicalEvent.participant_id == participant.id,
                    ClinicalEvent.category == "DEATH",
                )
            )
            if death is not None:
                raise ConflictError(f"{usubjid} died on {death}; no event can follow a death")
            row = ClinicalEvent(
                participant_id=participant.id,
                event_code=event_code,
                category=terms[event_code].category,
                onset_date=onset_date,
            )
            session.add(row)
            append_audit(session, [("INSERT", row)], who.label)
            return row.id

    def report_adverse_event(
        self,
        usubjid: str,
        term: str,
        grade: int,
        start_date: dt.date,
        end_date: dt.date | None,
        related: str,
        serious: bool,
        actor: ActorLike,
    ) -> int:
        """Report an adverse event with its DAIDS grade and relatedness."""
        who = require(actor, Permission.ENTER_DATA, "report adverse events")
        form = self.protocol.forms.AE
        if term not in form.terms:
            raise ValidationError(
                "term", f"{term!r} is not an AE term of this protocol; use one of {form.terms}"
            )
        if (
            isinstance(grade, bool)
            or not isinstance(grade, int)
            or not (form.min_grade <= grade <= form.max_grade)
        ):
            raise ValidationError(
                "grade",
                f"DAIDS grade must be a whole number "
                f"{form.min_grade} to {form.max_grade}, got {grade!r}",
            )
        if related not in form.relatedness:
            raise ValidationError("related", f"{related!r} is not one of {form.relatedness}")
        check_date_not_future("start_date", start_date, self._today())
        if end_date is not None:
            check_dates_in_order("start_date", start_date, "end_date", end_date)
            check_date_not_future("end_date", end_date, self._today())
        with _transaction(self.engine) as session:
            participant, _ = self._participant(session, usubjid, who)
            check_dates_in_order(
                "randomization_date", participant.randomization_date, "start_date", start_date
            )
            self._check_before_disposition(session, participant, "start_date", start_date)
            row = AdverseEvent(
                participant_id=participant.id,
                term=term,
                grade=grade,
                start_date=start_date,
                end_date=end_date,
                related=related,
                serious=bool(serious),
            )
            session.add(row)
            append_audit(session, [("INSERT", row)], who.label)
            return row.id

    def record_disposition(
        self, usubjid: str, status: str, disposition_date: dt.date, actor: ActorLike
    ) -> None:
        """Record how follow-up ended; no data may be dated after it, and it is recorded once."""
        who = require(actor, Permission.ENTER_DATA, "record dispositions")
        if status not in DISPOSITION_STATUSES:
            raise ValidationError("status", f"{status!r} is not one of {DISPOSITION_STATUSES}")
        check_date_not_future("disposition_date", disposition_date, self._today())
        with _transaction(self.engine) as session:
            participant, _ = self._participant(session, usubjid, who)
            if (
                session.scalar(
                    sa.select(Disposition.id).where(Disposition.participant_id == participant.id)
                )
                is not None
            ):
                raise ConflictError(f"the disposition of {usubjid} is already recorded")
            last = self._last_data_date(session, participant)
            check_dates_in_order("last recorded data", last, "disposition_date", disposition_date)
            death = session.scalar(
                sa.select(ClinicalEvent.onset_date).where(
                    ClinicalEvent.participant_id == participant.id,
                    ClinicalEvent.category == "DEATH",
                )
            )
            if (status == "DEATH") != (death is not None) or (
                death is not None and death != disposition_date
            ):
                raise ValidationError(
                    "status",
                    "a DEATH disposition needs a reported death on the same date, and "
                    "a reported death needs a DEATH disposition",
                )
            row = Disposition(
                participant_id=participant.id, status=status, disposition_date=disposition_date
            )
            session.add(row)
            append_audit(session, [("INSERT", row)], who.label)

    # -- helpers ------------------------------------------------------------------------------
    def _next_block_slot(
        self, session: Session, site: Site, screening: Screening
    ) -> AllocationSlot:
        """The next free slot of the participant's stratum list, locked."""
        stratum = stratum_key(self.protocol, site.code, screening.answers)
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
        return slot

    def _minimization_slot(
        self, session: Session, site: Site, screening: Screening
    ) -> AllocationSlot:
        """A new slot whose arm minimization chooses from the allocations stored so far.

        The trial row is locked first, so concurrent randomizations queue: each reads the
        counts its predecessors wrote and takes the next draw of the stream.
        """
        session.scalar(sa.select(TrialInfo.id).where(TrialInfo.id == 1).with_for_update())
        design = MinimizationDesign.from_protocol(self.protocol)
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

    def _check_labs(
        self, labs: Mapping[str, LabValue | float | int | str | None]
    ) -> dict[str, tuple[float | None, bool, float | None]]:
        items = {i.name: i for i in self.protocol.forms.LAB.items}
        unknown = sorted(set(labs) - set(items))
        if unknown:
            raise ValidationError(f"LAB.{unknown[0]}", f"not a LAB item; known: {sorted(items)}")
        results = {}
        for name, item in items.items():
            raw = labs.get(name)
            if raw is None:
                if item.required:
                    raise ValidationError(f"LAB.{name}", f"{item.label} is required")
                continue
            results[name] = check_lab_value(item, parse_lab_value(raw, f"LAB.{name}"))
        return results

    @staticmethod
    def _site(session: Session, code: str) -> Site:
        site = session.scalar(sa.select(Site).where(Site.code == code))
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

    @staticmethod
    def _participant(
        session: Session, usubjid: str, who: Actor | None = None
    ) -> tuple[Participant, str]:
        """The participant and arm; another site's participant is "not found" to a site user."""
        row = session.execute(
            sa.select(Participant, AllocationSlot.arm, Site.code)
            .join(AllocationSlot, AllocationSlot.participant_id == Participant.id)
            .join(Site, Site.id == Participant.site_id)
            .where(Participant.usubjid == usubjid)
        ).one_or_none()
        if row is None or (who is not None and not who.sees_site(row[2])):
            raise NotFoundError(f"no randomized participant {usubjid!r}")
        return row[0], row[1]

    @staticmethod
    def _check_before_disposition(
        session: Session, participant: Participant, field: str, day: dt.date
    ) -> None:
        ended = session.scalar(
            sa.select(Disposition.disposition_date).where(
                Disposition.participant_id == participant.id
            )
        )
        if ended is not None and day > ended:
            raise ValidationError(
                field, f"{day} is after the end of follow-up of {participant.usubjid} ({ended})"
            )

    @staticmethod
    def _last_data_date(session: Session, participant: Participant) -> dt.date:
        pid = participant.id
        candidates = [
            session.scalar(
                sa.select(sa.func.max(Visit.visit_date)).where(Visit.participant_id == pid)
            ),
            session.scalar(
                sa.select(sa.func.max(Dose.dose_date)).where(Dose.participant_id == pid)
            ),
            session.scalar(
                sa.select(sa.func.max(ClinicalEvent.onset_date)).where(
                    ClinicalEvent.participant_id == pid
                )
            ),
            session.scalar(
                sa.select(sa.func.max(AdverseEvent.start_date)).where(
                    AdverseEvent.participant_id == pid
                )
            ),
        ]
        dates = [participant.randomization_date, *[d for d in candidates if d is not None]]
        return max(dates)
