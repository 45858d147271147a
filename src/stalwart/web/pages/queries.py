"""Data queries of the user's sites: the site answers, the monitor closes, as the API's
``/queries/{id}/answer`` and ``/close`` (``QueryAnswer``, ``QueryClose``)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from stalwart.capture.access import Permission as P
from stalwart.errors import StalwartError, ValidationError
from stalwart.web.deps import Blocking, Run, WebSession
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
from stalwart.web.pages.visits import render_visit
from stalwart.web.schemas import QueryAnswer, QueryClose, QueryCreate, RecordId

__all__ = ["router"]

router = APIRouter()


@router.get("/queries")
def queries_page(request: Request, session: PageSession) -> HTMLResponse:
    """Queries of the user's sites, with answer and close forms."""
    try:
        rows = service_of(request).queries.list(session.actor)
    except StalwartError as exc:
        return refused(request, session, exc)
    return render(request, "queries.html.j2", "Queries", session, queries=rows)


@router.get("/queries/{query_id}")
def query_page(query_id: RecordId, request: Request, session: PageSession) -> HTMLResponse:
    """One query with each step of its life: who raised, answered, closed or re-opened it, when."""
    service = service_of(request)
    try:
        steps = service.queries.history(query_id, session.actor)
        [query] = service.queries.list(session.actor, query_id=query_id)
    except StalwartError as exc:
        return refused(request, session, exc)
    return render(request, "query.html.j2", f"Query {query_id}", session, query=query, steps=steps)


@router.post("/participants/{usubjid}/visits/{code}/queries", **page_needs(P.RAISE_QUERY))
async def raise_visit_query(
    usubjid: str, code: str, request: Request, session: PageSession, run: Run
) -> Response:
    """Raise a query on a field of a saved visit (the form beside the visit)."""
    service = service_of(request)
    values = await form_values(request)
    body = filled(values, ["field", "text"]) | {"visit": code}
    labels = {"text": "Query to the site", "field": "Field in doubt"}
    query, errors = read_form(QueryCreate, body, labels=labels)
    status_code = 422
    if query is not None:
        try:
            await run(
                service.queries.raise_on_field,
                usubjid,
                code,
                query.field,
                query.text,
                session.actor,
            )
        except StalwartError as exc:
            key = exc.field if isinstance(exc, ValidationError) and exc.field == "text" else "field"
            errors, status_code = {key: _message(exc)}, status_of(exc)
    if not errors:
        return RedirectResponse(f"/participants/{usubjid}/visits/{code}#queries", status_code=303)
    return render_visit(
        request, session, usubjid, code, status_code, query_errors=errors, query_values=values
    )


@router.post("/queries/{query_id}/reopen", **page_needs(P.RAISE_QUERY))
async def reopen_query(
    query_id: RecordId, request: Request, session: PageSession, run: Run
) -> Response:
    """Re-open an answered or closed query (the monitor or data manager)."""
    return await _query_action(query_id, "reopen", request, session, run)


@router.post("/queries/{query_id}/answer", **page_needs(P.ANSWER_QUERY))
async def answer_query(
    query_id: RecordId, request: Request, session: PageSession, run: Run
) -> Response:
    """Answer a query (the site)."""
    return await _query_action(query_id, "answer", request, session, run)


@router.post("/queries/{query_id}/close", **page_needs(P.CLOSE_QUERY))
async def close_query(
    query_id: RecordId, request: Request, session: PageSession, run: Run
) -> Response:
    """Close a query (the monitor or data manager)."""
    return await _query_action(query_id, "close", request, session, run)


async def _query_action(
    query_id: int, action: str, request: Request, session: WebSession, run: Blocking
) -> Response:
    """Answer or close a query; refused input comes back beside the query."""
    service = service_of(request)
    field = "answer" if action == "answer" else "note"
    values = await form_values(request)
    status_code = 422
    if action == "answer":
        answer, errors = read_form(QueryAnswer, filled(values, [field]))
        if answer is not None:
            try:
                await run(service.queries.answer, query_id, answer.answer, session.actor)
            except StalwartError as exc:
                errors, status_code = {field: _message(exc)}, status_of(exc)
    else:
        close, errors = read_form(QueryClose, filled(values, [field]))
        action_of = service.queries.close if action == "close" else service.queries.reopen
        if close is not None:
            try:
                await run(action_of, query_id, close.note, session.actor)
            except StalwartError as exc:
                errors, status_code = {field: _message(exc)}, status_of(exc)
    if not errors:
        return RedirectResponse("/queries", status_code=303)
    try:
        rows = await run(service.queries.list, session.actor)
    except StalwartError as exc:
        return refused(request, session, exc)
    return render(
        request,
        "queries.html.j2",
        "Queries",
        session,
        status_code,
        queries=rows,
        errors={query_id: errors},
    )


def _message(exc: StalwartError) -> str:
    """An edit check's message without its field (shown beside it); else the whole refusal."""
    return exc.message if isinstance(exc, ValidationError) else str(exc)
