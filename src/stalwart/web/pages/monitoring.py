"""Monitoring and lock as pages: a participant's readable audit trail, a monitor's source
verification of a visit's form, and the data manager's lock page (lock, unlock with a reason,
history). The API's operations of ``routes.monitoring``, read by the same schemas, run in the
same queue."""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from stalwart.capture.access import Permission as P
from stalwart.errors import StalwartError, ValidationError
from stalwart.web.deps import Run
from stalwart.web.errors import status_of
from stalwart.web.pages.common import (
    NOT_SAVED,
    PageSession,
    field_errors,
    filled,
    form_values,
    page_needs,
    read_form,
    refused,
    render,
    service_of,
)
from stalwart.web.pages.visits import render_visit
from stalwart.web.schemas import LockCreate, LockRelease, RecordId, SourceVerificationCreate

__all__ = ["router"]

router = APIRouter()


@router.get("/participants/{usubjid}/audit")
def participant_audit(usubjid: str, request: Request, session: PageSession) -> HTMLResponse:
    """Every change of the participant's data, as people read it."""
    try:
        entries = service_of(request).trails.participant(usubjid, session.actor)
    except StalwartError as exc:
        return refused(request, session, exc)
    return render(
        request,
        "audit.html.j2",
        f"Audit trail: {usubjid}",
        session,
        entries=entries,
        back=f"/participants/{usubjid}",
        back_label=usubjid,
    )


@router.post("/participants/{usubjid}/visits/{code}/sdv", **page_needs(P.VERIFY_SOURCE))
async def verify_visit(
    usubjid: str, code: str, request: Request, session: PageSession, run: Run
) -> Response:
    """Mark the visit's form source-verified; back to the visit."""
    service = service_of(request)
    values = await form_values(request)
    body, errors = read_form(SourceVerificationCreate, filled(values, ["note"]))
    if body is not None:
        try:
            await run(
                partial(service.verifications.verify_visit, note=body.note),
                usubjid,
                code,
                session.actor,
            )
            return RedirectResponse(f"/participants/{usubjid}/visits/{code}", status_code=303)
        except StalwartError as exc:
            message = exc.message if isinstance(exc, ValidationError) else str(exc)
            return render_visit(
                request,
                session,
                usubjid,
                code,
                status_of(exc),
                page_error=f"Not verified: {message}",
            )
    return render_visit(
        request, session, usubjid, code, 422, page_error=next(iter(errors.values()))
    )


def _locks_page(
    request: Request,
    session: PageSession,
    status_code: int = 200,
    **context: object,
) -> HTMLResponse:
    service = service_of(request)
    try:
        locks = service.locks.list(session.actor)
    except StalwartError as exc:
        return refused(request, session, exc)
    sites = [(s.code, f"{s.code} {s.name}") for s in service.protocol.sites]
    context.setdefault("unlock_errors", {})
    return render(
        request,
        "locks.html.j2",
        "Data locks",
        session,
        status_code,
        locks=locks,
        sites=sites,
        example_usubjid=f"{service.protocol.study.id}-{sites[0][0]}-0001" if sites else "",
        **context,
    )


@router.get("/locks")
def locks_page(request: Request, session: PageSession) -> HTMLResponse:
    """The locks in force, the lock form (data managers) and the history of lifted locks."""
    return _locks_page(request, session)


_LOCK_FIELDS = ["scope", "usubjid", "site", "cutoff", "reason"]


@router.post("/locks", **page_needs(P.LOCK_DATA))
async def lock_page(request: Request, session: PageSession, run: Run) -> Response:
    """Lock data; refused input comes back beside its field."""
    service = service_of(request)
    values = await form_values(request)
    body, errors = read_form(LockCreate, filled(values, _LOCK_FIELDS))
    status_code = 422
    page_error = NOT_SAVED
    if body is not None:
        try:
            await run(
                partial(
                    service.locks.lock, usubjid=body.usubjid, site=body.site, cutoff=body.cutoff
                ),
                body.scope,
                body.reason,
                session.actor,
            )
            return RedirectResponse("/locks", status_code=303)
        except StalwartError as exc:
            errors = field_errors(exc, _LOCK_FIELDS)
            status_code = status_of(exc)
            if not errors:
                page_error = f"Not locked: {exc}"
    return _locks_page(
        request, session, status_code, values=values, errors=errors, page_error=page_error
    )


@router.post("/locks/{lock_id}/unlock", **page_needs(P.LOCK_DATA))
async def unlock_page(
    lock_id: RecordId, request: Request, session: PageSession, run: Run
) -> Response:
    """Lift a lock, with the reason."""
    service = service_of(request)
    values = await form_values(request)
    body, errors = read_form(LockRelease, filled(values, ["reason"]))
    status_code = 422
    if body is not None:
        try:
            await run(service.locks.unlock, lock_id, body.reason, session.actor)
            return RedirectResponse("/locks", status_code=303)
        except StalwartError as exc:
            message = exc.message if isinstance(exc, ValidationError) else str(exc)
            errors, status_code = {"reason": message}, status_of(exc)
    if "reason" in errors:
        errors["reason"] = errors["reason"].removeprefix("reason: ")
    return _locks_page(
        request, session, status_code, unlock_errors={lock_id: errors}, page_error="Not unlocked."
    )
