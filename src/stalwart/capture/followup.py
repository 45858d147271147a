"""Follow-up: doses, clinical and adverse events, and the end of follow-up (disposition).

Every form is checked against the participant's calendar (planned dose days), the protocol's
coded lists and the dates already recorded; nothing may be dated after the disposition. The
visits and their laboratory results are ``capture.visits``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from stalwart.capture.access import ActorLike, Permission, require
from stalwart.capture.ae_form import AeDetails, check_adverse_event
from stalwart.capture.context import CaptureContext, ParticipantRecord, read_participant
from stalwart.capture.db import core_connection
from stalwart.capture.deviations import DOSE_CALENDAR, log_deviation
from stalwart.capture.edit_checks import (
    check_date_not_future,
    check_dates_in_order,
)
from stalwart.capture.locks import check_unlocked
from stalwart.capture.tables import (
    AdverseEvent,
    AllocationSlot,
    ClinicalEvent,
    Disposition,
    Dose,
    Participant,
    Site,
    Visit,
)
from stalwart.capture.transaction import transaction
from stalwart.capture.writes import add_rows, insert_audited
from stalwart.errors import ConflictError, FieldErrors, ValidationError, VisitWindowError
from stalwart.protocol.schema import Protocol

__all__ = [
    "DISPOSITION_STATUSES",
    "FollowUp",
    "check_before_disposition",
    "check_clinical_event",
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


def _off_calendar(
    day: dt.date,
    nearest: dt.date,
    treatment: str,
    cycle: int,
    planned: Mapping[dt.date, object],
    reason: str | None,
) -> str:
    """The deviation of a dose outside the dosing calendar, or a refusal without a reason."""
    off = (day - nearest).days
    description = (
        f"{treatment} cycle {cycle} dose on {day.isoformat()}, {abs(off)} day(s) "
        f"{'after' if off > 0 else 'before'} the nearest planned dose day {nearest.isoformat()} "
        f"(planned {min(planned).isoformat()} to {max(planned).isoformat()})"
    )
    if reason is None or not reason.strip():
        raise VisitWindowError(
            "deviation_reason",
            f"{day.isoformat()} is not a {treatment} day of cycle {cycle}: {description}. Give "
            "the reason the dose was given outside the protocol's dosing calendar; it is saved "
            "and logged as a protocol deviation.",
        )
    return description


def check_clinical_event(
    protocol: Protocol, today: dt.date, event_code: str | None, onset_date: dt.date | None
) -> None:
    """The event's code and onset date checked together, both errors at once (None: not
    checked, a form reports it)."""
    terms = sorted(e.code for e in protocol.forms.CE.events)
    problems: list[ValidationError] = []
    if event_code is not None and event_code not in terms:
        problems.append(
            ValidationError(
                "event_code", f"{event_code!r} is not a coded clinical event; use one of {terms}"
            )
        )
    if onset_date is not None:
        try:
            check_date_not_future("onset_date", onset_date, today)
        except ValidationError as exc:
            problems.append(exc)
    if error := FieldErrors.collect(problems):
        raise error


class FollowUp:
    """A participant's follow-up: visits and their laboratory results, doses, events, the end."""

    def __init__(self, context: CaptureContext) -> None:
        self.context = context

    def record_doses(
        self,
        usubjid: str,
        treatment: str,
        cycle: int,
        days: Sequence[tuple[dt.date, int]],
        actor: ActorLike,
        *,
        deviation_reason: str | None = None,
    ) -> None:
        """Record the doses of one cycle: ``(date, administrations taken)`` per dose day.

        A dose on a day that is not in the protocol's dosing calendar for the cycle needs
        ``deviation_reason``: it is then saved (with the nearest planned day's dose) and logged
        as a STUDY TREATMENT deviation; without it, it is refused saying what to do.
        """
        who = require(actor, Permission.ENTER_DATA, "enter doses")
        if not days:
            raise ValidationError("doses", "give at least one dose day")
        with transaction(self.context.engine) as session:
            participant, arm = read_participant(session, usubjid, who)
            check_unlocked(session, participant, f"the doses of {usubjid}", min(d for d, _ in days))
            calendar = self.context.calendar(arm, participant.randomization_date)
            planned = {
                d.date: d for d in calendar.doses if d.treatment == treatment and d.cycle == cycle
            }
            if not planned:
                raise ValidationError(
                    "treatment",
                    f"{usubjid} (arm {arm}) has no {treatment} cycle {cycle} in the protocol",
                )
            rows: list[dict[str, object]] = []
            ended = _end_of_follow_up(session, participant)
            off_calendar: list[tuple[str, dt.date]] = []
            for day, taken in days:
                plan = planned.get(day)
                if plan is None:
                    nearest = min(planned, key=lambda d: (abs((d - day).days), d))
                    plan = planned[nearest]
                    what = _off_calendar(day, nearest, treatment, cycle, planned, deviation_reason)
                    off_calendar.append((what, day))
                    check_dates_in_order(
                        "randomization_date", participant.randomization_date, "dose_date", day
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
                check_date_not_future("dose_date", day, self.context.today())
                _check_before(participant, "dose_date", day, ended)
                rows.append(
                    {
                        "participant_id": participant.id,
                        "treatment": treatment,
                        "cycle": cycle,
                        "dose_date": day,
                        "administrations": taken,
                        "dose": plan.dose,
                        "dose_unit": plan.dose_unit,
                    }
                )
            dates = [d for d, _ in days]
            if len(set(dates)) != len(dates):
                raise ValidationError("dose_date", "a dose day is listed twice")
            keys = {"participant_id": participant.id, "treatment": treatment, "dates": dates}
            existing = core_connection(session).execute(_DOSES_ON, keys).scalar()
            if existing:
                raise ConflictError(
                    f"{treatment} doses of {usubjid} on these days are already recorded"
                )
            insert_audited(session, Dose, rows, who.label)
            for description, day in off_calendar:
                log_deviation(
                    session,
                    site_id=participant.site_id,
                    participant_id=participant.id,
                    category=DOSE_CALENDAR,
                    description=description,
                    deviation_date=day,
                    reason=(deviation_reason or "").strip(),
                    actor=who.label,
                )

    def report_clinical_event(
        self, usubjid: str, event_code: str, onset_date: dt.date, actor: ActorLike
    ) -> int:
        """Report an opportunistic event or death from the protocol's coded list."""
        who = require(actor, Permission.ENTER_DATA, "report clinical events")
        terms = {e.code: e for e in self.context.protocol.forms.CE.events}
        check_clinical_event(self.context.protocol, self.context.today(), event_code, onset_date)
        with transaction(self.context.engine) as session:
            participant, _ = read_participant(session, usubjid, who)
            check_unlocked(session, participant, f"the clinical events of {usubjid}", onset_date)
            check_dates_in_order(
                "randomization_date", participant.randomization_date, "onset_date", onset_date
            )
            check_before_disposition(session, participant, "onset_date", onset_date)
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
            add_rows(session, [row], who.label)
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
        details: AeDetails,
    ) -> int:
        """Report an adverse event: grade, relatedness, verbatim term, outcome, action, criteria."""
        who = require(actor, Permission.ENTER_DATA, "report adverse events")
        form = self.context.protocol.forms.AE
        checked = check_adverse_event(
            form,
            self.context.today(),
            term=term,
            grade=grade,
            start_date=start_date,
            end_date=end_date,
            related=related,
            serious=bool(serious),
            details=details,
        )
        assert checked is not None
        details = checked
        with transaction(self.context.engine) as session:
            participant, _ = read_participant(session, usubjid, who)
            check_unlocked(session, participant, f"the adverse events of {usubjid}", start_date)
            check_dates_in_order(
                "randomization_date", participant.randomization_date, "start_date", start_date
            )
            check_before_disposition(session, participant, "start_date", start_date)
            row = {
                "participant_id": participant.id,
                "term": term,
                "grade": grade,
                "start_date": start_date,
                "end_date": end_date,
                "related": related,
                "serious": bool(serious),
                "verbatim": details.verbatim,
                "outcome": details.outcome,
                "action": details.action,
                "seriousness": ",".join(details.seriousness),
                "reported_on": self.context.today(),
            }
            (stored,) = insert_audited(session, AdverseEvent, [row], who.label)
            return int(stored["id"])

    def record_disposition(
        self, usubjid: str, status: str, disposition_date: dt.date, actor: ActorLike
    ) -> None:
        """Record how follow-up ended; no data may be dated after it, and it is recorded once."""
        who = require(actor, Permission.ENTER_DATA, "record dispositions")
        if status not in DISPOSITION_STATUSES:
            raise ValidationError("status", f"{status!r} is not one of {DISPOSITION_STATUSES}")
        check_date_not_future("disposition_date", disposition_date, self.context.today())
        with transaction(self.context.engine) as session:
            participant, _ = read_participant(session, usubjid, who)
            check_unlocked(session, participant, f"the disposition of {usubjid}", disposition_date)
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
            add_rows(session, [row], who.label)

    # -- helpers ------------------------------------------------------------------------------
    @staticmethod
    def _last_data_date(session: Session, participant: ParticipantRecord) -> dt.date:
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


def check_before_disposition(
    session: Session, participant: ParticipantRecord, field: str, day: dt.date
) -> None:
    """Nothing may be dated after the participant's end of follow-up."""
    _check_before(participant, field, day, _end_of_follow_up(session, participant))


_ENDED = sa.select(Disposition.disposition_date).where(
    Disposition.participant_id == sa.bindparam("participant_id")
)
"""Built once (as the busiest forms' other reads): the end of a participant's follow-up."""

_DOSES_ON = sa.select(sa.func.count(Dose.id)).where(
    Dose.participant_id == sa.bindparam("participant_id"),
    Dose.treatment == sa.bindparam("treatment"),
    Dose.dose_date.in_(sa.bindparam("dates", expanding=True)),
)


def _end_of_follow_up(session: Session, participant: ParticipantRecord) -> dt.date | None:
    """The participant's disposition date, None while follow-up goes on."""
    return core_connection(session).execute(_ENDED, {"participant_id": participant.id}).scalar()


def _check_before(
    participant: ParticipantRecord, field: str, day: dt.date, ended: dt.date | None
) -> None:
    if ended is not None and day > ended:
        raise ValidationError(
            field, f"{day} is after the end of follow-up of {participant.usubjid} ({ended})"
        )
