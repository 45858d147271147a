"""Endpoint review: reported opportunistic events and deaths (no arm shown), and the reviewer's
verdict, as the API's ``/endpoint-reviews/{id}`` (``ReviewCreate``)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from stalwart.capture.access import Permission as P
from stalwart.errors import StalwartError, ValidationError
from stalwart.web.deps import Run
from stalwart.web.errors import status_of
from stalwart.web.pages.common import (
    PageSession,
    filled,
    form_values,
    page_needs,
    read_form,
    refused,
    render,
    service_of,
)
from stalwart.web.schemas import RecordId, ReviewCreate

__all__ = ["router"]

router = APIRouter()

_FIELDS = ("decision", "reason")


@router.get("/reviews")
def reviews_page(request: Request, session: PageSession) -> HTMLResponse:
    """Endpoint review of reported opportunistic events and deaths (no arm shown)."""
    service = service_of(request)
    try:
        events = service.reviews.events(session.actor)
        status = service.reviews.status(session.actor)
    except StalwartError as exc:
        return refused(request, session, exc)
    return render(
        request, "reviews.html.j2", "Endpoint review", session, events=events, status=status
    )


@router.post("/reviews/{event_id}", **page_needs(P.REVIEW_ENDPOINT))
async def review(event_id: RecordId, request: Request, session: PageSession, run: Run) -> Response:
    """Record a verdict."""
    service = service_of(request)
    values = await form_values(request)
    body, errors = read_form(ReviewCreate, filled(values, _FIELDS))
    status_code = 422
    if body is not None:
        try:
            await run(service.reviews.review, event_id, body.decision, body.reason, session.actor)
            return RedirectResponse("/reviews", status_code=303)
        except StalwartError as exc:
            field = exc.field if isinstance(exc, ValidationError) else "reason"
            message = exc.message if isinstance(exc, ValidationError) else str(exc)
            errors = {field if field in _FIELDS else "reason": message}
            status_code = status_of(exc)
    try:
        events = await run(service.reviews.events, session.actor)
        status = await run(service.reviews.status, session.actor)
    except StalwartError as exc:
        return refused(request, session, exc)
    return render(
        request,
        "reviews.html.j2",
        "Endpoint review",
        session,
        status_code,
        events=events,
        status=status,
        errors={event_id: errors},
    )
