"""The lists a role starts from: the worklist, the participants and screening log, summaries."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from stalwart.errors import StalwartError
from stalwart.web.pages.common import PageSession, refused, render, service_of

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


@router.get("/participants")
def participants(request: Request, session: PageSession) -> HTMLResponse:
    """Randomized participants and the screening log."""
    service = service_of(request)
    try:
        rows = service.records.participants(session.actor)
        log = service.records.screenings(session.actor)
    except StalwartError as exc:
        return refused(request, session, exc)
    return render(
        request, "participants.html.j2", "Participants", session, participants=rows, screenings=log
    )


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
