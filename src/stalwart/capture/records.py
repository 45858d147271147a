"""Reading the trial database, within what the acting user may see.

Every read takes the actor: site users see their site only (another site's participant is
"not found"), a blinded statistician gets pooled summaries and never an arm, and the unblinded
statistician and the DSMB get results by arm. The exports and the summary are read by
``capture.exports``, after the permission check here.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from stalwart.capture.access import Actor, ActorLike, Permission, require
from stalwart.capture.ae_form import ae_summary
from stalwart.capture.context import CaptureContext, find_participant
from stalwart.capture.exports import EXPORTS, AnySelect, export_select, stream_rows, trial_summary
from stalwart.capture.tables import (
    AdverseEvent,
    AllocationSlot,
    AuditRecord,
    Base,
    ClinicalEvent,
    Consent,
    DataQuery,
    Disposition,
    Dose,
    EndpointReview,
    LabResult,
    MissedVisit,
    Participant,
    Screening,
    Signature,
    Site,
    Visit,
)
from stalwart.capture.versions import record_version, visit_keys
from stalwart.errors import NotFoundError, ValidationError
from stalwart.protocol.calendar import is_unscheduled, participant_calendar

__all__ = [
    "CONCEALED",
    "AuditEntry",
    "CalendarEntry",
    "ParticipantDetail",
    "ParticipantSummary",
    "Records",
    "ScreeningView",
    "VisitRecord",
    "WorklistItem",
    "visit_status",
]

_WORKLIST_AHEAD_DAYS = 7
"""Visits whose window opens within this many days are listed as upcoming."""


@dataclass(frozen=True)
class ScreeningView:
    """A screening log entry."""

    screening_number: str
    site: str
    screening_date: dt.date
    eligible: bool
    reasons: list[str]
    consent_date: dt.date | None
    usubjid: str | None


@dataclass(frozen=True)
class ParticipantSummary:
    """One randomized participant; ``arm`` is None for users who may not see arms."""

    usubjid: str
    site: str
    screening_number: str
    consent_date: dt.date
    randomization_date: dt.date
    arm: str | None
    disposition: str | None


@dataclass(frozen=True)
class CalendarEntry:
    """A planned visit with its status: recorded, upcoming, due, overdue or missed.

    ``missed`` once the window has closed with no visit; ``missed_reason`` is the site's
    reason once the missed-visit form is saved. ``out_of_window`` marks a recorded visit dated
    outside its window (a logged deviation).
    """

    code: str
    name: str
    target: dt.date
    earliest: dt.date
    latest: dt.date
    status: str
    visit_date: dt.date | None
    out_of_window: bool = False
    missed_reason: str | None = None


@dataclass(frozen=True)
class VisitRecord:
    """A recorded visit: its results (as entered) and whether a valid signature covers it."""

    id: int
    usubjid: str
    visit_code: str
    visit_date: dt.date
    labs: dict[str, str]
    signed_by: str | None
    version: int = 0
    """The last audit sequence of the visit and its results: a correction sends it back."""


@dataclass(frozen=True)
class ParticipantDetail:
    """A participant's record: summary, visit calendar, planned dosing, events."""

    summary: ParticipantSummary
    calendar: list[CalendarEntry]
    dose_days: list[dict[str, Any]]
    clinical_events: list[dict[str, Any]]
    adverse_events: list[dict[str, Any]]
    unscheduled: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class WorklistItem:
    """A visit a site has to act on."""

    usubjid: str
    site: str
    visit_code: str
    visit_name: str
    target: dt.date
    earliest: dt.date
    latest: dt.date
    status: str


@dataclass(frozen=True)
class AuditEntry:
    """One audit record of a data row."""

    sequence: int
    recorded_at: str
    actor: str
    action: str
    table_name: str
    record_id: int
    data: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None


def _lab_text(lab: LabResult) -> str:
    if lab.below_limit:
        return f"<{lab.limit_value:g}"
    assert lab.value is not None
    return f"{lab.value:g}"


def visit_status(earliest: dt.date, target: dt.date, latest: dt.date, today: dt.date) -> str:
    """A visit not recorded, by today's date against its window: upcoming, due, overdue, missed."""
    if today < earliest:
        return "upcoming"
    if today <= target:
        return "due"
    if today <= latest:
        return "overdue"
    return "missed"


CONCEALED = "(concealed until assigned)"
"""What the audit trail of a slot nobody has been given yet shows in place of its arm."""


def _conceal_arm(entry: AuditEntry) -> AuditEntry:
    """Allocation concealment: the arm of a slot is shown only once a participant holds it."""
    return replace(entry, data={**entry.data, "arm": CONCEALED})


class Records:
    """Site-scoped reads of one trial database."""

    def __init__(self, context: CaptureContext) -> None:
        self.context = context

    # -- screening and participants ------------------------------------------------------------
    def screenings(self, actor: ActorLike) -> list[ScreeningView]:
        """The screening log of the sites in scope, newest first."""
        who = require(actor, Permission.READ_RECORDS, "read the screening log")
        stmt = (
            sa.select(Screening, Site.code, Consent.consent_date, Participant.usubjid)
            .join(Site, Site.id == Screening.site_id)
            .outerjoin(Consent, Consent.screening_id == Screening.id)
            .outerjoin(Participant, Participant.screening_id == Screening.id)
            .order_by(Screening.id.desc())
        )
        if who.site is not None:
            stmt = stmt.where(Site.code == who.site)
        with Session(self.context.engine) as session:
            rows = session.execute(stmt).all()
        return [
            ScreeningView(
                s.screening_number, code, s.screening_date, s.eligible, list(s.reasons), c, u
            )
            for s, code, c, u in rows
        ]

    def participants(self, actor: ActorLike) -> list[ParticipantSummary]:
        """Randomized participants of the sites in scope."""
        who = require(actor, Permission.READ_RECORDS, "read participants")
        with Session(self.context.engine) as session:
            rows = session.execute(self._participant_select(who)).all()
        return [self._summary(who, *row) for row in rows]

    def participant(self, usubjid: str, actor: ActorLike) -> ParticipantDetail:
        """One participant's record with the visit calendar computed from the protocol."""
        who = require(actor, Permission.READ_RECORDS, "read participants")
        stmt = self._participant_select(who).where(Participant.usubjid == usubjid)
        with Session(self.context.engine) as session:
            row = session.execute(stmt).one_or_none()
            if row is None:
                raise NotFoundError(f"no randomized participant {usubjid!r}")
            pid = row[0].id
            visits = session.execute(
                sa.select(Visit.visit_code, Visit.visit_date)
                .where(Visit.participant_id == pid)
                .order_by(Visit.visit_date, Visit.id)
            ).all()
            recorded = {code: day for code, day in visits if not is_unscheduled(code)}
            missed = dict(
                session.execute(
                    sa.select(MissedVisit.visit_code, MissedVisit.reason).where(
                        MissedVisit.participant_id == pid
                    )
                ).all()
            )
            doses = {
                (d.treatment, d.dose_date): d.administrations
                for d in session.scalars(sa.select(Dose).where(Dose.participant_id == pid))
            }
            events = session.execute(
                sa.select(ClinicalEvent, EndpointReview.decision)
                .outerjoin(EndpointReview, EndpointReview.clinical_event_id == ClinicalEvent.id)
                .where(ClinicalEvent.participant_id == pid)
                .order_by(ClinicalEvent.onset_date)
            ).all()
            aes = list(
                session.scalars(
                    sa.select(AdverseEvent)
                    .where(AdverseEvent.participant_id == pid)
                    .order_by(AdverseEvent.start_date)
                )
            )
        summary = self._summary(who, *row)
        arm = row[5]
        calendar = participant_calendar(self.context.protocol, arm, summary.randomization_date)
        today = self.context.today()
        entries = [
            CalendarEntry(
                v.code,
                v.name,
                v.target,
                v.earliest,
                v.latest,
                "recorded"
                if v.code in recorded
                else "missed"
                if v.code in missed
                else visit_status(v.earliest, v.target, v.latest, today),
                recorded.get(v.code),
                v.code in recorded and not v.in_window(recorded[v.code]),
                missed.get(v.code),
            )
            for v in calendar.visits
        ]
        dose_days = [
            {
                "treatment": d.treatment,
                "cycle": d.cycle,
                "date": d.date,
                "planned": d.administrations,
                "dose": d.dose,
                "dose_unit": d.dose_unit,
                "taken": doses.get((d.treatment, d.date)),
            }
            for d in calendar.doses
        ]
        if summary.arm is None:  # the dosing calendar would reveal the arm
            dose_days = []
        return ParticipantDetail(
            summary,
            entries,
            dose_days,
            [
                {
                    "id": e.id,
                    "event_code": e.event_code,
                    "category": e.category,
                    "onset_date": e.onset_date,
                    "review": decision,
                }
                for e, decision in events
            ],
            [ae_summary(self.context.protocol.forms.AE, a) for a in aes],
            [{"code": c, "visit_date": day} for c, day in visits if is_unscheduled(c)],
        )

    def visit(self, usubjid: str, visit_code: str, actor: ActorLike) -> VisitRecord:
        """A recorded visit and its results."""
        who = require(actor, Permission.READ_RECORDS, "read visits")
        with Session(self.context.engine) as session:
            participant, _ = find_participant(session, usubjid, who)
            visit_id = session.scalar(
                sa.select(Visit.id).where(
                    Visit.participant_id == participant.id, Visit.visit_code == visit_code
                )
            )
            if visit_id is None:
                raise NotFoundError(f"visit {visit_code} of {usubjid} is not recorded")
            # the version before the values: a change committed between the reads makes this
            # read look older than it is (a correction from it is refused), never newer
            version = record_version(session, visit_keys(session, visit_id))
            visit = session.get_one(Visit, visit_id)
            labs = {
                lab.test_code: _lab_text(lab)
                for lab in session.scalars(
                    sa.select(LabResult).where(LabResult.visit_id == visit.id)
                )
            }
            signer = session.scalar(
                sa.select(Signature.signer).where(
                    Signature.visit_id == visit.id, Signature.valid.is_(True)
                )
            )
        return VisitRecord(visit.id, usubjid, visit_code, visit.visit_date, labs, signer, version)

    # -- worklist ------------------------------------------------------------------------------
    def worklist(self, actor: ActorLike, site: str | None = None) -> list[WorklistItem]:
        """Visits due, overdue, missed (no missed-visit form yet) or upcoming, in follow-up."""
        who = require(actor, Permission.READ_RECORDS, "read the worklist")
        if site is not None and not who.sees_site(site):
            raise NotFoundError(f"no site {site!r} in your scope")
        today = self.context.today()
        stmt = (
            self._participant_select(who)
            .where(Disposition.id.is_(None))
            .order_by(Participant.usubjid)
        )
        if site is not None:
            stmt = stmt.where(Site.code == site)
        with Session(self.context.engine) as session:
            rows = session.execute(stmt).all()
            recorded: dict[int, set[str]] = defaultdict(set)
            ids = [r[0].id for r in rows]
            for chunk in range(0, len(ids), 500):
                part = ids[chunk : chunk + 500]
                for pid, code in session.execute(
                    sa.select(Visit.participant_id, Visit.visit_code)
                    .where(Visit.participant_id.in_(part))
                    .union_all(
                        sa.select(MissedVisit.participant_id, MissedVisit.visit_code).where(
                            MissedVisit.participant_id.in_(part)
                        )
                    )
                ):
                    recorded[pid].add(code)
        items = []
        horizon = today + dt.timedelta(days=_WORKLIST_AHEAD_DAYS)
        for participant, code, _, _, _, arm in rows:
            calendar = participant_calendar(
                self.context.protocol, arm, participant.randomization_date
            )
            for v in calendar.visits:
                if v.code in recorded[participant.id] or v.earliest > horizon:
                    continue
                status = visit_status(v.earliest, v.target, v.latest, today)
                items.append(
                    WorklistItem(
                        participant.usubjid,
                        code,
                        v.code,
                        v.name,
                        v.target,
                        v.earliest,
                        v.latest,
                        status,
                    )
                )
        order = {"missed": 0, "overdue": 1, "due": 2, "upcoming": 3}
        items.sort(key=lambda i: (order[i.status], i.target, i.usubjid))
        return items

    # -- audit trail ---------------------------------------------------------------------------
    def audit_trail(self, table_name: str, record_id: int, actor: ActorLike) -> list[AuditEntry]:
        """Every audit record of one row, oldest first, if the row is in the actor's scope."""
        who = require(actor, Permission.READ_RECORDS, "read the audit trail")
        with Session(self.context.engine) as session:
            site = self._site_of_record(session, table_name, record_id)
            if (site is None and who.site is not None) or (
                site is not None and not who.sees_site(site)
            ):
                raise NotFoundError(f"no {table_name} record {record_id}")
            trail = self._trail(session, [(table_name, record_id)])
            if table_name == AllocationSlot.__tablename__ and not session.scalar(
                sa.select(AllocationSlot.participant_id).where(AllocationSlot.id == record_id)
            ):
                trail = [_conceal_arm(e) for e in trail]
            return trail

    def visit_audit_trail(
        self, usubjid: str, visit_code: str, actor: ActorLike
    ) -> list[AuditEntry]:
        """The audit records of a visit, its results, signatures and queries, oldest first."""
        who = require(actor, Permission.READ_RECORDS, "read the audit trail")
        with Session(self.context.engine) as session:
            participant, _ = find_participant(session, usubjid, who)
            visit_id = session.scalar(
                sa.select(Visit.id).where(
                    Visit.participant_id == participant.id, Visit.visit_code == visit_code
                )
            )
            if visit_id is None:
                raise NotFoundError(f"visit {visit_code} of {usubjid} is not recorded")
            keys = [("visit", visit_id)]
            keys += [
                ("lab_result", i)
                for i in session.scalars(
                    sa.select(LabResult.id).where(LabResult.visit_id == visit_id)
                )
            ]
            keys += [
                ("signature", i)
                for i in session.scalars(
                    sa.select(Signature.id).where(Signature.visit_id == visit_id)
                )
            ]
            return self._trail(session, keys)

    # -- exports and summaries (capture.exports) ----------------------------------------------
    def export(self, kind: str, actor: ActorLike) -> tuple[list[str], Iterator[tuple[Any, ...]]]:
        """The header and a row iterator of an export; rows are fetched as they are consumed."""
        who = require(actor, Permission.EXPORT, "export data")
        if kind not in EXPORTS:
            raise ValidationError("export", f"{kind!r} is not one of {EXPORTS}")
        header, stmt = export_select(kind, who.site)
        return header, stream_rows(self.context.engine, stmt)

    def summary(self, actor: ActorLike, by_arm: bool = False) -> dict[str, Any]:
        """Counts and CD4 by visit, pooled; ``by_arm`` (unblinded roles only) splits by arm."""
        if by_arm:
            require(actor, Permission.RESULTS_BY_ARM, "see results by arm")
        else:
            require(actor, Permission.POOLED_SUMMARY, "read summaries")
        return trial_summary(self.context, by_arm)

    # -- helpers -------------------------------------------------------------------------------
    @staticmethod
    def _participant_select(who: Actor) -> AnySelect:
        stmt = (
            sa.select(
                Participant,
                Site.code,
                Screening.screening_number,
                Disposition.status,
                Disposition.id,
                AllocationSlot.arm,
            )
            .join(Site, Site.id == Participant.site_id)
            .join(Screening, Screening.id == Participant.screening_id)
            .join(AllocationSlot, AllocationSlot.participant_id == Participant.id)
            .outerjoin(Disposition, Disposition.participant_id == Participant.id)
            .order_by(Participant.id)
        )
        if who.site is not None:
            stmt = stmt.where(Site.code == who.site)
        return stmt

    @staticmethod
    def _summary(
        who: Actor,
        participant: Participant,
        site: str,
        number: str,
        status: str | None,
        _disposition_id: int | None,
        arm: str,
    ) -> ParticipantSummary:
        return ParticipantSummary(
            participant.usubjid,
            site,
            number,
            participant.consent_date,
            participant.randomization_date,
            arm if who.can(Permission.SEE_ARM) else None,
            status,
        )

    @staticmethod
    def _site_of_record(session: Session, table_name: str, record_id: int) -> str | None:
        """The site code a row belongs to; None for study-wide rows (sites, users, set-up)."""
        by_participant: dict[str, type[Base]] = {
            t.__tablename__: t
            for t in (
                Visit,
                MissedVisit,
                LabResult,
                Dose,
                ClinicalEvent,
                AdverseEvent,
                Disposition,
                DataQuery,
                Signature,
                AllocationSlot,
            )
        }
        pid: int | None
        if table_name == "participant":
            pid = record_id
        elif table_name in by_participant:
            table = by_participant[table_name]
            pid = session.scalar(
                sa.select(table.participant_id).where(table.id == record_id)  # type: ignore[attr-defined]
            )
        elif table_name == "endpoint_review":
            pid = session.scalar(
                sa.select(ClinicalEvent.participant_id)
                .join(EndpointReview, EndpointReview.clinical_event_id == ClinicalEvent.id)
                .where(EndpointReview.id == record_id)
            )
        elif table_name in ("screening", "consent"):
            screening_id = (
                record_id
                if table_name == "screening"
                else session.scalar(sa.select(Consent.screening_id).where(Consent.id == record_id))
            )
            return session.scalar(
                sa.select(Site.code)
                .join(Screening, Screening.site_id == Site.id)
                .where(Screening.id == screening_id)
            )
        else:
            return None
        if pid is None:
            return None
        return session.scalar(
            sa.select(Site.code)
            .join(Participant, Participant.site_id == Site.id)
            .where(Participant.id == pid)
        )

    @staticmethod
    def _trail(session: Session, keys: list[tuple[str, int]]) -> list[AuditEntry]:
        conditions = [
            sa.and_(AuditRecord.table_name == t, AuditRecord.record_id == i) for t, i in keys
        ]
        records = session.scalars(
            sa.select(AuditRecord).where(sa.or_(*conditions)).order_by(AuditRecord.sequence)
        )
        return [
            AuditEntry(
                r.sequence,
                r.recorded_at,
                r.actor,
                r.action,
                r.table_name,
                r.record_id,
                json.loads(r.data),
                r.reason,
            )
            for r in records
        ]
