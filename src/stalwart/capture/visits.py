"""Visits as protocols define them: scheduled, late or early, unscheduled, and missed.

A scheduled visit can be recorded whenever it happened: outside its window it is saved with
the site's reason and logged as a protocol deviation (``capture.deviations``) in the same
transaction. An unscheduled visit (any date on or after randomization, any of the LAB items)
is numbered per participant (``UNS01``...). A scheduled visit not done is recorded as missed,
with a reason, once its window has closed; that too is a deviation. A visit and its results
are the busiest write of the trial and go through Core ``insert_rows``; a correction changes
the loaded rows and voids the visit's signature in the same transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.orm import Session

from stalwart.capture.access import Actor, ActorLike, Permission, require
from stalwart.capture.audit import append_audit, append_audit_entries
from stalwart.capture.context import (
    CaptureContext,
    ParticipantRecord,
    find_participant,
    read_participant,
)
from stalwart.capture.db import core_connection
from stalwart.capture.deviations import MISSED_VISIT, VISIT_WINDOW, log_deviation
from stalwart.capture.edit_checks import (
    LabValue,
    check_date_not_future,
    check_dates_in_order,
    check_lab_value,
    check_visit_window,
    parse_lab_value,
)
from stalwart.capture.followup import check_before_disposition
from stalwart.capture.locks import check_unlocked
from stalwart.capture.signatures import void_signatures
from stalwart.capture.soft_checks import apply_soft_checks
from stalwart.capture.tables import (
    Base,
    LabResult,
    MissedVisit,
    ProtocolDeviation,
    Visit,
)
from stalwart.capture.transaction import transaction
from stalwart.capture.verification import void_verifications
from stalwart.capture.versions import check_version, visit_keys
from stalwart.capture.writes import add_rows, insert_rows
from stalwart.errors import ConflictError, FieldErrors, NotFoundError, ValidationError
from stalwart.protocol.calendar import UNSCHEDULED_PREFIX, ScheduledVisit, is_unscheduled
from stalwart.protocol.schema import Protocol

__all__ = [
    "LabEntries",
    "VisitForms",
    "check_labs",
    "check_visit_form",
    "insert_visit",
    "unscheduled_code",
]

LabEntries = Mapping[str, LabValue | float | int | str | None]
"""LAB item name -> the result as entered."""

_MAX_REASON = 2000


def unscheduled_code(number: int) -> str:
    """The code of a participant's ``number``-th unscheduled visit."""
    return f"{UNSCHEDULED_PREFIX}{number:02d}"


def _reason(field: str, reason: str | None, what: str) -> str:
    text = (reason or "").strip()
    if not text:
        raise ValidationError(field, f"give the reason {what}")
    if len(text) > _MAX_REASON:
        raise ValidationError(field, f"the reason is too long: at most {_MAX_REASON} characters")
    return text


def insert_visit(
    session: Session,
    protocol: Protocol,
    who: Actor,
    participant: ParticipantRecord,
    code: str,
    visit_date: dt.date,
    results: dict[str, tuple[float | None, bool, float | None]],
    *,
    unscheduled: bool = False,
    reason: str | None = None,
) -> int:
    """Insert a visit and its results (checked by ``check_labs``) with their audit records."""
    (visit,) = insert_rows(
        session,
        Visit,
        [
            {
                "participant_id": participant.id,
                "visit_code": code,
                "visit_date": visit_date,
                "unscheduled": unscheduled,
            }
        ],
    )
    stored = insert_rows(
        session,
        LabResult,
        [
            {
                "visit_id": visit["id"],
                "participant_id": participant.id,
                "test_code": name,
                "value": value,
                "unit": protocol.lab_item(name).unit or "",
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
        reason,
    )
    return int(visit["id"])


def check_labs(
    protocol: Protocol, labs: LabEntries, *, required: bool
) -> dict[str, tuple[float | None, bool, float | None]]:
    """Each entered LAB result checked; ``required`` items must be there unless not required."""
    items = {i.name: i for i in protocol.forms.LAB.items}
    unknown = sorted(set(labs) - set(items))
    if unknown:
        raise ValidationError(f"LAB.{unknown[0]}", f"not a LAB item; known: {sorted(items)}")
    results = {}
    problems: list[ValidationError] = []
    for name, item in items.items():
        raw = labs.get(name)
        if raw is None:
            if item.required and required:
                problems.append(ValidationError(f"LAB.{name}", f"{item.label} is required"))
            continue
        try:
            results[name] = check_lab_value(item, parse_lab_value(raw, f"LAB.{name}"))
        except ValidationError as exc:
            problems.append(exc)
    if error := FieldErrors.collect(problems):
        raise error  # every wrong result at once, each beside its field
    return results


def check_visit_form(
    protocol: Protocol,
    visit_date: dt.date | None,
    today: dt.date,
    labs: LabEntries,
    *,
    required: bool,
) -> dict[str, tuple[float | None, bool, float | None]]:
    """The visit date and every result checked together: all their errors at once (no date:
    the results only, for a form whose date was refused before)."""
    problems: list[ValidationError] = []
    try:
        if visit_date is not None:
            check_date_not_future("visit_date", visit_date, today)
    except ValidationError as exc:
        problems.append(exc)
    results = {}
    try:
        results = check_labs(protocol, labs, required=required)
    except ValidationError as exc:
        problems.append(exc)
    if error := FieldErrors.collect(problems):
        raise error
    return results


_VISIT_SAVED = sa.select(Visit.id).where(
    Visit.participant_id == sa.bindparam("participant_id"),
    Visit.visit_code == sa.bindparam("visit_code"),
)
_VISIT_MISSED = sa.select(MissedVisit.id).where(
    MissedVisit.participant_id == sa.bindparam("participant_id"),
    MissedVisit.visit_code == sa.bindparam("visit_code"),
)
"""The reads of every visit's save, built once (their construction costs more than their run)."""


class VisitForms:
    """The LAB form of scheduled and unscheduled visits, and missed visits."""

    def __init__(self, context: CaptureContext) -> None:
        self.context = context

    # -- first entry ---------------------------------------------------------------------------
    def record_visit(
        self,
        usubjid: str,
        visit_code: str,
        visit_date: dt.date,
        labs: LabEntries,
        actor: ActorLike,
        *,
        deviation_reason: str | None = None,
    ) -> int:
        """Record a visit of the participant's schedule with its laboratory results.

        A date outside the visit's window needs ``deviation_reason``; the visit is then saved
        and a VISIT OUT OF WINDOW deviation logged with it.
        """
        who = require(actor, Permission.ENTER_DATA, "enter visit data")
        results = check_visit_form(
            self.context.protocol, visit_date, self.context.today(), labs, required=True
        )
        with transaction(self.context.engine) as session:
            participant, planned = self._planned(session, who, usubjid, visit_code)
            check_unlocked(session, participant, f"visit {visit_code} of {usubjid}", visit_date)
            check_dates_in_order(
                "randomization_date", participant.randomization_date, "visit_date", visit_date
            )
            outside = check_visit_window(planned, visit_date, deviation_reason)
            check_before_disposition(session, participant, "visit_date", visit_date)
            self._check_not_recorded(session, participant, visit_code)
            visit_id = insert_visit(
                session, self.context.protocol, who, participant, visit_code, visit_date, results
            )
            apply_soft_checks(session, self.context.protocol, participant, visit_id)
            if outside is not None:
                log_deviation(
                    session,
                    site_id=participant.site_id,
                    participant_id=participant.id,
                    category=VISIT_WINDOW,
                    description=outside,
                    deviation_date=visit_date,
                    visit_code=visit_code,
                    reason=_reason("deviation_reason", deviation_reason, ""),
                    actor=who.label,
                )
            return visit_id

    def record_unscheduled_visit(
        self,
        usubjid: str,
        visit_date: dt.date,
        labs: LabEntries,
        reason: str,
        actor: ActorLike,
    ) -> str:
        """Record an unscheduled visit (any date from randomization, any LAB items); its code."""
        who = require(actor, Permission.ENTER_DATA, "enter visit data")
        why = _reason("reason", reason, "for the unscheduled visit")
        results = check_visit_form(
            self.context.protocol, visit_date, self.context.today(), labs, required=False
        )
        if not results:
            raise ValidationError("labs", "enter at least one laboratory result")
        with transaction(self.context.engine) as session:
            participant, _ = find_participant(session, usubjid, who)
            check_unlocked(session, participant, f"the data of {usubjid}", visit_date)
            check_dates_in_order(
                "randomization_date", participant.randomization_date, "visit_date", visit_date
            )
            check_before_disposition(session, participant, "visit_date", visit_date)
            count = session.scalar(
                sa.select(sa.func.count(Visit.id)).where(
                    Visit.participant_id == participant.id,
                    Visit.visit_code.startswith(UNSCHEDULED_PREFIX),
                )
            )
            code = unscheduled_code(1 + (count or 0))
            visit_id = insert_visit(
                session,
                self.context.protocol,
                who,
                participant,
                code,
                visit_date,
                results,
                unscheduled=True,
                reason=why,
            )
            apply_soft_checks(session, self.context.protocol, participant, visit_id)
            return code

    def record_missed_visit(
        self, usubjid: str, visit_code: str, reason: str, actor: ActorLike
    ) -> int:
        """Record that a scheduled visit did not happen, once its window has closed."""
        who = require(actor, Permission.ENTER_DATA, "record missed visits")
        why = _reason("reason", reason, "the visit was missed")
        today = self.context.today()
        with transaction(self.context.engine) as session:
            participant, planned = self._planned(session, who, usubjid, visit_code)
            check_unlocked(session, participant, f"visit {visit_code} of {usubjid}", planned.target)
            if today <= planned.latest:
                raise ValidationError(
                    "visit_code",
                    f"the window of {planned.name} is open until {planned.latest.isoformat()}; "
                    "a visit is missed only once its window has closed",
                )
            self._check_not_recorded(session, participant, visit_code)
            row = MissedVisit(
                participant_id=participant.id,
                visit_code=visit_code,
                reason=why,
                recorded_on=today,
            )
            add_rows(session, [row], who.label)
            log_deviation(
                session,
                site_id=participant.site_id,
                participant_id=participant.id,
                category=MISSED_VISIT,
                description=f"{planned.name} not done (window {planned.earliest.isoformat()} "
                f"to {planned.latest.isoformat()})",
                deviation_date=planned.latest,
                visit_code=visit_code,
                reason=why,
                actor=who.label,
            )
            return row.id

    # -- correction ----------------------------------------------------------------------------
    def correct_visit(
        self,
        usubjid: str,
        visit_code: str,
        visit_date: dt.date,
        labs: LabEntries,
        reason: str,
        actor: ActorLike,
        *,
        version: int | None,
    ) -> int:
        """Correct a saved visit (its date and results) with a reason; voids its signature.

        ``version`` is the version the correction was made from (``Records.visit`` reads it);
        a missing or stale one is refused (``capture.versions``). The same edit checks as first
        entry apply; a scheduled visit moved out of its window is logged as a deviation with
        the reason for change. A saved result can be changed, not removed.
        """
        who = require(actor, Permission.CORRECT_DATA, "correct saved data")
        if not reason.strip():
            raise ValidationError("reason", "a reason for change is required to edit saved data")
        check_date_not_future("visit_date", visit_date, self.context.today())
        with transaction(self.context.engine) as session:
            participant, arm = find_participant(session, usubjid, who)
            visit = session.scalar(
                sa.select(Visit)
                .where(Visit.participant_id == participant.id, Visit.visit_code == visit_code)
                .with_for_update()
            )
            if visit is None:
                raise NotFoundError(f"visit {visit_code} of {usubjid} is not recorded; enter it")
            check_unlocked(
                session,
                participant,
                f"visit {visit_code} of {usubjid}",
                min(visit.visit_date, visit_date),
            )
            results = check_labs(
                self.context.protocol, labs, required=not is_unscheduled(visit_code)
            )
            check_version(
                session, visit_keys(session, visit.id), version, f"visit {visit_code} of {usubjid}"
            )
            check_dates_in_order(
                "randomization_date", participant.randomization_date, "visit_date", visit_date
            )
            outside = None
            if not is_unscheduled(visit_code):
                calendar = self.context.calendar(arm, participant.randomization_date)
                outside = check_visit_window(calendar.visit(visit_code), visit_date, reason)
            check_before_disposition(session, participant, "visit_date", visit_date)
            changed = self._changes(session, visit, participant, visit_date, results)
            if not changed:
                raise ValidationError("visit", "nothing changed: the entered values are stored")
            session.flush()
            voided = void_signatures(session, visit.id, f"visit corrected: {reason.strip()}")
            changed += [("UPDATE", row) for row in voided]
            unverified = void_verifications(session, visit.id, f"visit corrected: {reason.strip()}")
            changed += [("UPDATE", row) for row in unverified]
            append_audit(session, changed, who.label, reason.strip())
            apply_soft_checks(session, self.context.protocol, participant, visit.id)
            if outside is not None and not self._window_logged(session, participant, visit_code):
                log_deviation(
                    session,
                    site_id=participant.site_id,
                    participant_id=participant.id,
                    category=VISIT_WINDOW,
                    description=outside,
                    deviation_date=visit_date,
                    visit_code=visit_code,
                    reason=reason.strip(),
                    actor=who.label,
                )
            return visit.id

    # -- helpers ------------------------------------------------------------------------------
    def _planned(
        self, session: Session, who: Actor, usubjid: str, visit_code: str
    ) -> tuple[ParticipantRecord, ScheduledVisit]:
        participant, arm = read_participant(session, usubjid, who)
        calendar = self.context.calendar(arm, participant.randomization_date)
        try:
            return participant, calendar.visit(visit_code)
        except KeyError:
            codes = ", ".join(v.code for v in calendar.visits[:12])
            raise ValidationError(
                "visit_code",
                f"{visit_code!r} is not in the schedule of {usubjid} ({codes}, ...); record a "
                "visit outside the schedule as an unscheduled visit",
            ) from None

    @staticmethod
    def _check_not_recorded(session: Session, participant: ParticipantRecord, code: str) -> None:
        keys = {"participant_id": participant.id, "visit_code": code}
        conn = core_connection(session)
        if conn.execute(_VISIT_SAVED, keys).scalar():
            raise ConflictError(f"visit {code} of {participant.usubjid} is already recorded")
        if conn.execute(_VISIT_MISSED, keys).scalar():
            raise ConflictError(
                f"visit {code} of {participant.usubjid} is recorded as missed; a visit done "
                "after all is entered as an unscheduled visit"
            )

    @staticmethod
    def _window_logged(session: Session, participant: ParticipantRecord, code: str) -> bool:
        return (
            session.scalar(
                sa.select(ProtocolDeviation.id).where(
                    ProtocolDeviation.participant_id == participant.id,
                    ProtocolDeviation.visit_code == code,
                    ProtocolDeviation.category == VISIT_WINDOW,
                )
            )
            is not None
        )

    def _changes(
        self,
        session: Session,
        visit: Visit,
        participant: ParticipantRecord,
        visit_date: dt.date,
        results: dict[str, tuple[float | None, bool, float | None]],
    ) -> list[tuple[str, Base]]:
        stored = {
            lab.test_code: lab
            for lab in session.scalars(sa.select(LabResult).where(LabResult.visit_id == visit.id))
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
                    unit=self.context.protocol.lab_item(name).unit or "",
                    below_limit=below,
                    limit_value=limit,
                )
                session.add(lab)
                changed.append(("INSERT", lab))
            elif (lab.value, lab.below_limit, lab.limit_value) != (value, below, limit):
                lab.value, lab.below_limit, lab.limit_value = value, below, limit
                changed.append(("UPDATE", lab))
        return changed
