"""The lists a role starts from: the worklist, the participants (paged, with the status grid),
the screening log, summaries.

The participant list and the grid read their page, search, filters and sort from the query string
(``web.pages.list_query``); a value that makes no sense is a 422 page saying which and why.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from stalwart.capture.access import Permission as P
from stalwart.capture.exports import EXPORTS
from stalwart.capture.followup import DISPOSITION_STATUSES
from stalwart.capture.listing import GRID_STATUSES, IN_FOLLOW_UP, SORTS
from stalwart.errors import StalwartError
from stalwart.web.pages.common import PageSession, refused, render, service_of
from stalwart.web.pages.list_query import list_query, page_link

__all__ = ["router"]

router = APIRouter()


@router.get("/worklist")
def worklist(request: Request, session: PageSession) -> HTMLResponse:
    """Visits due, overdue and out of window at the user's sites."""
    service = service_of(request)
    try:
        items = service.records.worklist(session.actor)
    except StalwartError as exc:
        return refused(request, session, exc)
    return render(
        request, "worklist.html.j2", "Worklist", session, items=items, today=service._today()
    )


def _list_context(request: Request, session: PageSession) -> dict[str, Any]:
    """What the filter form, the pager and the download links of a list page show."""
    service = service_of(request)
    actor = session.actor
    return {
        "sites": [s.code for s in service.protocol.sites if actor.sees_site(s.code)],
        "arms": [a.code for a in service.protocol.arms],
        "statuses": [IN_FOLLOW_UP, *DISPOSITION_STATUSES],
        "sorts": [s for s in SORTS if s != "arm" or actor.can(P.SEE_ARM)],
        "exports": EXPORTS,
        "page_link": lambda **changes: page_link(request, **changes),
    }


@router.get("/participants")
def participants(request: Request, session: PageSession) -> HTMLResponse:
    """Randomized participants, 50 a page: searched, filtered and sorted in the database."""
    service = service_of(request)
    try:
        found = service.lists.participants(session.actor, list_query(request))
    except StalwartError as exc:
        return refused(request, session, exc)
    return render(
        request,
        "participants.html.j2",
        "Participants",
        session,
        listing=found,
        **_list_context(request, session),
    )


@router.get("/participants-grid")
def participants_grid(request: Request, session: PageSession) -> HTMLResponse:
    """Participants x scheduled visits, each cell the visit's status, 50 participants a page."""
    service = service_of(request)
    try:
        grid = service.lists.grid(session.actor, list_query(request))
    except StalwartError as exc:
        return refused(request, session, exc)
    return render(
        request,
        "grid.html.j2",
        "Visit status grid",
        session,
        listing=grid,
        grid_statuses=GRID_STATUSES,
        **_list_context(request, session),
    )


@router.get("/screening-log")
def screening_log(request: Request, session: PageSession) -> HTMLResponse:
    """The screening log of the sites in scope, newest first."""
    service = service_of(request)
    try:
        log = service.records.screenings(session.actor)
    except StalwartError as exc:
        return refused(request, session, exc)
    return render(request, "screening_log.html.j2", "Screening log", session, screenings=log)


@router.get("/summary")
def summary_page(request: Request, session: PageSession) -> HTMLResponse:
    """Pooled summaries; by arm for unblinded roles who ask for it."""
    service = service_of(request)
    by_arm = request.query_params.get("by_arm") == "true"
    try:
        data = service.records.summary(session.actor, by_arm=by_arm)
        status = service.reviews.status(session.actor)
    except StalwartError as exc:
        return refused(request, session, exc)
    title = "Results by arm" if by_arm else "Pooled summary"
    return render(request, "summary.html.j2", title, session, summary=data, review=status)
