"""The lists a data manager lives in: participants and the participants x visits status grid.

Paged, searched, filtered and sorted in the database (``LIMIT``/``OFFSET`` over an indexed
order, ``COUNT`` for the total), so a page of 10,000 participants reads 50 rows, never all of
them. Both read within the actor's scope as ``capture.records`` does: a site user's filter is
always their own site, and arms (filter, sort, column) only for roles that may see them.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from stalwart.capture.access import Actor, ActorLike, Permission, require
from stalwart.capture.context import CaptureContext
from stalwart.capture.records import ParticipantSummary, visit_status
from stalwart.capture.tables import (
    AllocationSlot,
    Disposition,
    MissedVisit,
    Participant,
    Screening,
    Signature,
    Site,
    SourceVerification,
    Visit,
)
from stalwart.errors import NotFoundError, ValidationError
from stalwart.protocol.calendar import participant_calendar
from stalwart.protocol.schema import Protocol

__all__ = [
    "GRID_STATUSES",
    "IN_FOLLOW_UP",
    "PAGE_SIZE",
    "SORTS",
    "GridCell",
    "GridPage",
    "GridRow",
    "ListQuery",
    "Listing",
    "ParticipantPage",
]

PAGE_SIZE = 50
"""Rows per page of the lists."""

IN_FOLLOW_UP = "in follow-up"
"""The status filter's value for participants with no disposition yet."""

_SORT_COLUMNS: dict[str, Any] = {
    "usubjid": Participant.usubjid,
    "site": Site.code,
    "screening_number": Screening.screening_number,
    "consent_date": Participant.consent_date,
    "randomization_date": Participant.randomization_date,
    "status": Disposition.status,
    "arm": AllocationSlot.arm,
}
SORTS = tuple(_SORT_COLUMNS)
"""The columns a list sorts by (``arm`` only for roles who see arms)."""

GRID_STATUSES = ("not due", "due", "overdue", "entered", "signed", "missed", "off study")
"""A grid cell's status: the visit's window against today, or what was recorded."""


@dataclass(frozen=True)
class ListQuery:
    """What a list page asks for: page (from 1), search text, filters and sort."""

    page: int = 1
    search: str = ""
    site: str = ""
    arm: str = ""
    status: str = ""
    sort: str = "usubjid"
    descending: bool = False


@dataclass(frozen=True)
class ParticipantPage:
    """One page of the participant list, with the total the filters match."""

    rows: list[ParticipantSummary]
    page: int
    pages: int
    total: int
    query: ListQuery


@dataclass(frozen=True)
class GridCell:
    """One participant's visit: its status and the visit date, if recorded."""

    status: str
    visit_date: dt.date | None = None
    out_of_window: bool = False
    verified: bool = False
    """A monitor has source-verified the form (and no correction has voided it since)."""


@dataclass(frozen=True)
class GridRow:
    """One participant's row of the grid, a cell per scheduled visit code."""

    participant: ParticipantSummary
    cells: dict[str, GridCell]


@dataclass(frozen=True)
class GridPage:
    """One page of the status grid: the visit codes (columns) and a row per participant."""

    visits: list[tuple[str, str]]
    rows: list[GridRow]
    page: int
    pages: int
    total: int
    query: ListQuery


class Listing:
    """Paged, filtered and sorted reads of the participants of one trial database."""

    def __init__(self, context: CaptureContext) -> None:
        self.context = context

    def participants(self, actor: ActorLike, query: ListQuery) -> ParticipantPage:
        """A page of the randomized participants the query matches, in the actor's scope."""
        who = require(actor, Permission.READ_RECORDS, "read participants")
        with Session(self.context.engine) as session:
            rows, page, pages, total = self._page(session, who, query)
        return ParticipantPage([_summary(who, *r[1:]) for r in rows], page, pages, total, query)

    def grid(self, actor: ActorLike, query: ListQuery) -> GridPage:
        """A page of the participants x scheduled visits grid, with each visit's status."""
        who = require(actor, Permission.READ_RECORDS, "read participants")
        visits = [(v.code, v.name) for v in self.context.protocol.visits]
        today = self.context.today()
        with Session(self.context.engine) as session:
            rows, page, pages, total = self._page(session, who, query)
            ids = [r[0] for r in rows]
            recorded: dict[int, dict[str, tuple[dt.date, bool, bool]]] = defaultdict(dict)
            for pid, code, day, signed, verified in session.execute(
                sa.select(
                    Visit.participant_id,
                    Visit.visit_code,
                    Visit.visit_date,
                    Signature.id,
                    SourceVerification.id,
                )
                .outerjoin(
                    Signature, sa.and_(Signature.visit_id == Visit.id, Signature.valid.is_(True))
                )
                .outerjoin(
                    SourceVerification,
                    sa.and_(
                        SourceVerification.visit_id == Visit.id,
                        SourceVerification.valid.is_(True),
                    ),
                )
                .where(Visit.participant_id.in_(ids))
            ):
                recorded[pid][code] = (day, signed is not None, verified is not None)
            missed: dict[int, set[str]] = defaultdict(set)
            for pid, code in session.execute(
                sa.select(MissedVisit.participant_id, MissedVisit.visit_code).where(
                    MissedVisit.participant_id.in_(ids)
                )
            ):
                missed[pid].add(code)
        grid_rows = []
        for pid, *row in rows:
            summary = _summary(who, *row)
            calendar = participant_calendar(self.context.protocol, row[-1], row[4])
            planned = {v.code: v for v in calendar.visits if v.cycle is None}
            cells = {}
            for code, _ in visits:
                v = planned.get(code)
                if code in recorded[pid]:
                    day, signed, verified = recorded[pid][code]
                    late = v is not None and not v.in_window(day)
                    status = "signed" if signed else "entered"
                    cells[code] = GridCell(status, day, late, verified)
                elif code in missed[pid]:
                    cells[code] = GridCell("missed")
                elif summary.disposition is not None or v is None:
                    cells[code] = GridCell("off study")
                else:
                    status = visit_status(v.earliest, v.target, v.latest, today)
                    cells[code] = GridCell("not due" if status == "upcoming" else status)
            grid_rows.append(GridRow(summary, cells))
        return GridPage(visits, grid_rows, page, pages, total, query)

    # -- the query ------------------------------------------------------------------------------
    def _page(
        self, session: Session, who: Actor, query: ListQuery
    ) -> tuple[list[Any], int, int, int]:
        """The rows of the page asked for (the last one when asked past it), the page shown,
        the number of pages and the total matched."""
        stmt = self._filtered(who, query)
        total = session.scalar(sa.select(sa.func.count()).select_from(stmt.subquery())) or 0
        pages = max(1, -(-total // PAGE_SIZE))
        page = min(query.page, pages)
        column = _SORT_COLUMNS[query.sort]
        order = [column.desc() if query.descending else column.asc(), Participant.usubjid]
        rows = session.execute(
            stmt.order_by(*order).limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)
        ).all()
        return list(rows), page, pages, total

    def _filtered(self, who: Actor, query: ListQuery) -> Any:
        """The participants in scope that the query's search and filters match, unordered."""
        sees_arm = who.can(Permission.SEE_ARM)
        _check(query, who, sees_arm, self.context.protocol)
        stmt = (
            sa.select(
                Participant.id,
                Participant.usubjid,
                Site.code,
                Screening.screening_number,
                Participant.consent_date,
                Participant.randomization_date,
                Disposition.status,
                AllocationSlot.arm,
            )
            .join(Site, Site.id == Participant.site_id)
            .join(Screening, Screening.id == Participant.screening_id)
            .join(AllocationSlot, AllocationSlot.participant_id == Participant.id)
            .outerjoin(Disposition, Disposition.participant_id == Participant.id)
        )
        if who.site is not None:
            stmt = stmt.where(Site.code == who.site)
        if query.site:
            stmt = stmt.where(Site.code == query.site)
        if query.arm:
            stmt = stmt.where(AllocationSlot.arm == query.arm)
        if query.status == IN_FOLLOW_UP:
            stmt = stmt.where(Disposition.id.is_(None))
        elif query.status:
            stmt = stmt.where(Disposition.status == query.status)
        if query.search.strip():
            term = query.search.strip().lower()
            stmt = stmt.where(
                sa.or_(
                    sa.func.lower(Participant.usubjid).contains(term, autoescape=True),
                    sa.func.lower(Screening.screening_number).contains(term, autoescape=True),
                )
            )
        return stmt


def _check(query: ListQuery, who: Actor, sees_arm: bool, protocol: Protocol) -> None:
    """A query naming what does not exist, or what the role may not use, is refused."""
    if query.page < 1:
        raise ValidationError("page", f"page {query.page} does not exist: pages count from 1")
    if query.sort not in SORTS or (query.sort == "arm" and not sees_arm):
        allowed = [s for s in SORTS if s != "arm" or sees_arm]
        raise ValidationError("sort", f"cannot sort by {query.sort!r}: use one of {allowed}")
    if query.arm and not sees_arm:
        raise ValidationError("arm", "your role may not see arms, so it cannot filter by one")
    arms = [a.code for a in protocol.arms]
    if query.arm and query.arm not in arms:
        raise ValidationError("arm", f"no arm {query.arm!r}: use one of {arms}")
    sites = {s.code for s in protocol.sites}
    if query.site and (query.site not in sites or not who.sees_site(query.site)):
        raise NotFoundError(f"no site {query.site!r} in your scope")
    if len(query.search) > 100:
        raise ValidationError("search", "search for at most 100 characters")


def _summary(
    who: Actor,
    usubjid: str,
    site: str,
    number: str,
    consent: dt.date,
    randomized: dt.date,
    status: str | None,
    arm: str,
) -> ParticipantSummary:
    return ParticipantSummary(
        usubjid,
        site,
        number,
        consent,
        randomized,
        arm if who.can(Permission.SEE_ARM) else None,
        status,
    )
