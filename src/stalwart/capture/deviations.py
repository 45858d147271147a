"""The protocol deviations log: detected by the system, reported by users, reviewed.

The system logs a deviation in the same transaction as the write that reveals it (a visit saved
outside its window, a missed visit, consent given after the screening procedures, a dose
outside the dosing calendar) with
``log_deviation``; a site or monitor reports the others (``Deviations.report``). The data
manager (or a monitor) reviews each one. ``deviation_rows`` is the trial-wide listing the DSMB
report and an SDTM DV export read: one dict per deviation, DV-ready (category, term, date).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, aliased

from stalwart.capture.access import ActorLike, Permission, require
from stalwart.capture.audit import append_audit
from stalwart.capture.context import CaptureContext, find_participant
from stalwart.capture.edit_checks import check_date_not_future
from stalwart.capture.locks import check_unlocked
from stalwart.capture.tables import Participant, ProtocolDeviation, Screening, Site
from stalwart.capture.transaction import transaction
from stalwart.capture.writes import add_rows
from stalwart.errors import ConflictError, NotFoundError, ValidationError

__all__ = [
    "CONSENT",
    "DEVIATION_CATEGORIES",
    "DEVIATION_COLUMNS",
    "DOSE_CALENDAR",
    "MISSED_VISIT",
    "VISIT_WINDOW",
    "DeviationView",
    "Deviations",
    "deviation_rows",
    "log_deviation",
]

VISIT_WINDOW = "VISIT OUT OF WINDOW"
MISSED_VISIT = "MISSED VISIT"
CONSENT = "INFORMED CONSENT"
DOSE_CALENDAR = "STUDY TREATMENT"
"""A dose given on a day outside the protocol's dosing calendar (logged when it is saved)."""
DEVIATION_CATEGORIES = (
    VISIT_WINDOW,
    MISSED_VISIT,
    CONSENT,
    "ELIGIBILITY",
    DOSE_CALENDAR,
    "STUDY PROCEDURE",
    "OTHER",
)
"""Deviation categories (DVCAT), after ICH E3's grouping of important protocol deviations."""

DEVIATION_COLUMNS = (
    "USUBJID",
    "SCREENING",
    "SITEID",
    "DVTERM",
    "DVCAT",
    "DVSTDTC",
    "VISIT",
    "SOURCE",
    "REVIEWED",
)
"""The keys of each row of :func:`deviation_rows`, in order."""

_MAX_TEXT = 2000


@dataclass(frozen=True)
class DeviationView:
    """One deviation as a log page or report shows it."""

    id: int
    site: str
    usubjid: str | None
    screening_number: str | None
    category: str
    description: str
    deviation_date: dt.date
    visit_code: str | None
    source: str
    reason: str | None
    reported_by: str
    reviewed_by: str | None
    review_note: str | None


def log_deviation(
    session: Session,
    *,
    site_id: int,
    category: str,
    description: str,
    deviation_date: dt.date,
    actor: str,
    participant_id: int | None = None,
    screening_id: int | None = None,
    visit_code: str | None = None,
    reason: str | None = None,
    source: str = "DETECTED",
) -> ProtocolDeviation:
    """Log a deviation in the caller's transaction (audited like every row)."""
    row = ProtocolDeviation(
        participant_id=participant_id,
        screening_id=screening_id,
        site_id=site_id,
        category=category,
        description=description,
        deviation_date=deviation_date,
        visit_code=visit_code,
        source=source,
        reason=reason,
        reported_by=actor,
    )
    add_rows(session, [row], actor)
    return row


def _text(field: str, value: str, label: str) -> str:
    text = value.strip()
    if not text:
        raise ValidationError(field, f"{label} is required")
    if len(text) > _MAX_TEXT:
        raise ValidationError(field, f"{label} is too long: at most {_MAX_TEXT} characters")
    return text


def _listing() -> Any:
    """Deviations with site, participant (also through the screening) and screening number."""
    screened = aliased(Screening)
    return (
        sa.select(ProtocolDeviation, Site.code, Participant.usubjid, screened.screening_number)
        .join(Site, Site.id == ProtocolDeviation.site_id)
        .outerjoin(
            Participant,
            sa.or_(
                Participant.id == ProtocolDeviation.participant_id,
                Participant.screening_id == ProtocolDeviation.screening_id,
            ),
        )
        .outerjoin(screened, screened.id == ProtocolDeviation.screening_id)
        .order_by(ProtocolDeviation.deviation_date, ProtocolDeviation.id)
    )


def _view(row: Any) -> DeviationView:
    d, site, usubjid, number = row
    return DeviationView(
        d.id,
        site,
        usubjid,
        number,
        d.category,
        d.description,
        d.deviation_date,
        d.visit_code,
        d.source,
        d.reason,
        d.reported_by,
        d.reviewed_by,
        d.review_note,
    )


def deviation_rows(engine: Engine | sa.Connection) -> list[dict[str, Any]]:
    """Every deviation of the trial, oldest first, as plain dicts (DSMB report, SDTM DV).

    Keys follow DV: ``USUBJID``, ``SITEID``, ``DVTERM`` (the description), ``DVCAT``,
    ``DVSTDTC`` (ISO date), ``VISIT`` (visit code or empty), and ``SOURCE``, ``REVIEWED``.
    A deviation logged before randomization (consent) has no USUBJID; its ``SCREENING``
    names the screening number.
    """
    with Session(engine) as session:
        views = [_view(r) for r in session.execute(_listing())]
    return [
        {
            "USUBJID": v.usubjid or "",
            "SCREENING": v.screening_number or "",
            "SITEID": v.site,
            "DVTERM": v.description,
            "DVCAT": v.category,
            "DVSTDTC": v.deviation_date.isoformat(),
            "VISIT": v.visit_code or "",
            "SOURCE": v.source,
            "REVIEWED": "Y" if v.reviewed_by else "N",
        }
        for v in views
    ]


class Deviations:
    """The deviations log of the sites in the actor's scope: list, report, review."""

    def __init__(self, context: CaptureContext) -> None:
        self.context = context

    def list(
        self, actor: ActorLike, *, usubjid: str | None = None, site: str | None = None
    ) -> list[DeviationView]:
        """Deviations in scope (a participant's, a site's, or all), oldest first."""
        who = require(actor, Permission.READ_RECORDS, "read the deviations log")
        stmt = _listing()
        if who.site is not None:
            stmt = stmt.where(Site.code == who.site)
        if site is not None:
            stmt = stmt.where(Site.code == site)
        with Session(self.context.engine) as session:
            if usubjid is not None:
                participant, _ = find_participant(session, usubjid, who)
                stmt = stmt.where(Participant.id == participant.id)
            return [_view(r) for r in session.execute(stmt)]

    def report(
        self,
        usubjid: str,
        category: str,
        description: str,
        deviation_date: dt.date,
        actor: ActorLike,
    ) -> int:
        """A user reports a deviation of a participant (category from ``DEVIATION_CATEGORIES``)."""
        who = require(actor, Permission.READ_RECORDS, "report protocol deviations")
        if not (who.can(Permission.ENTER_DATA) or who.can(Permission.RAISE_QUERY)):
            require(who, Permission.ENTER_DATA, "report protocol deviations")
        if category not in DEVIATION_CATEGORIES:
            raise ValidationError(
                "category",
                f"{category!r} is not a deviation category; use one of "
                + ", ".join(DEVIATION_CATEGORIES),
            )
        text = _text("description", description, "a description of the deviation")
        check_date_not_future("deviation_date", deviation_date, self.context.today())
        with transaction(self.context.engine) as session:
            participant, _ = find_participant(session, usubjid, who)
            check_unlocked(session, participant, f"the data of {usubjid}", deviation_date)
            row = log_deviation(
                session,
                site_id=participant.site_id,
                participant_id=participant.id,
                category=category,
                description=text,
                deviation_date=deviation_date,
                actor=who.label,
                source="REPORTED",
            )
            return row.id

    def review(self, deviation_id: int, note: str, actor: ActorLike) -> None:
        """The data manager (or a monitor) reviews a deviation, once, with a note."""
        who = require(actor, Permission.CLOSE_QUERY, "review protocol deviations")
        text = _text("note", note, "a review note")
        with transaction(self.context.engine) as session:
            row = session.scalar(
                sa.select(ProtocolDeviation)
                .where(ProtocolDeviation.id == deviation_id)
                .with_for_update()
            )
            site = (
                None
                if row is None
                else session.scalar(sa.select(Site.code).where(Site.id == row.site_id))
            )
            if row is None or site is None or not who.sees_site(site):
                raise NotFoundError(f"no protocol deviation {deviation_id}")
            if row.reviewed_by is not None:
                raise ConflictError(
                    f"deviation {deviation_id} was already reviewed by {row.reviewed_by}"
                )
            row.reviewed_by, row.review_note = who.label, text
            append_audit(session, [("UPDATE", row)], who.label)

    @staticmethod
    def as_dict(view: DeviationView) -> dict[str, Any]:
        """A deviation as the API returns it."""
        return asdict(view)
