"""An unscheduled visit, a missed visit's form, and the protocol deviations log: the API's
``/unscheduled-visits``, ``/visits/{code}/missed`` and ``/deviations`` as pages, read by the
same schemas and run in the same queue."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from stalwart.capture.access import Permission as P
from stalwart.capture.deviations import DEVIATION_CATEGORIES
from stalwart.errors import StalwartError, ValidationError
from stalwart.web.deps import Run
from stalwart.web.errors import status_of
from stalwart.web.pages.common import (
    NOT_SAVED,
    PageSession,
    field_errors,
    filled,
    form_values,
    lab_form_checked,
    lab_labels,
    merge_errors,
    page_needs,
    read_form,
    refused,
    render,
    service_of,
)
from stalwart.web.schemas import (
    DeviationCreate,
    DeviationReview,
    MissedVisitCreate,
    RecordId,
    UnscheduledVisitCreate,
)

__all__ = ["router"]

router = APIRouter()


def _lab_field(loc: tuple[int | str, ...]) -> str:
    return f"LAB.{loc[1]}" if loc[0] == "labs" and len(loc) > 1 else str(loc[0])


@router.get("/participants/{usubjid}/unscheduled")
def unscheduled_page(usubjid: str, request: Request, session: PageSession) -> HTMLResponse:
    """The LAB form of an unscheduled visit: any date from randomization, any results."""
    return _unscheduled(request, session, usubjid, 200, values={}, errors={})


def _unscheduled(
    request: Request, session: PageSession, usubjid: str, status_code: int, **context: Any
) -> HTMLResponse:
    lab = service_of(request).protocol.forms.LAB
    return render(
        request,
        "unscheduled.html.j2",
        f"{usubjid}: unscheduled visit",
        session,
        status_code,
        usubjid=usubjid,
        items=lab.items,
        form_name=lab.name,
        **context,
    )


@router.post("/participants/{usubjid}/unscheduled", **page_needs(P.ENTER_DATA))
async def save_unscheduled(
    usubjid: str, request: Request, session: PageSession, run: Run
) -> Response:
    """Save an unscheduled visit; refused input comes back beside its field."""
    service = service_of(request)
    values = await form_values(request)
    names = [i.name for i in service.protocol.forms.LAB.items]
    labs = {n: values[f"LAB.{n}"].strip() for n in names if values.get(f"LAB.{n}", "").strip()}
    given = filled(values, ["visit_date", "reason"]) | {"labs": labs}
    labels = lab_labels(service) | {"reason": "Reason for the unscheduled visit"}
    body, errors = read_form(UnscheduledVisitCreate, given, _lab_field, labels=labels)
    if body is None:  # the results and the date beside the form's own errors, at once
        checked = lab_form_checked(service, UnscheduledVisitCreate, given, required=False)
        errors = merge_errors(errors, checked, ["visit_date", *(f"LAB.{n}" for n in names)])
    page_error, status_code = NOT_SAVED, 422
    if body is not None:
        try:
            code = await run(
                service.record_unscheduled_visit,
                usubjid,
                body.visit_date,
                body.labs,
                body.reason,
                session.actor,
            )
            return RedirectResponse(f"/participants/{usubjid}/visits/{code}", status_code=303)
        except StalwartError as exc:
            known = ["visit_date", "reason", *(f"LAB.{n}" for n in names)]
            errors = field_errors(exc, known)
            if isinstance(exc, ValidationError) and exc.field == "labs":
                errors = {f"LAB.{names[0]}": exc.message}
            if not errors:
                page_error, status_code = str(exc), status_of(exc)
    return _unscheduled(
        request, session, usubjid, status_code, values=values, errors=errors, page_error=page_error
    )


@router.get("/participants/{usubjid}/visits/{code}/missed")
def missed_page(usubjid: str, code: str, request: Request, session: PageSession) -> HTMLResponse:
    """The missed-visit form: why the visit did not take place."""
    return render(
        request,
        "missed.html.j2",
        f"{usubjid}: {code} missed",
        session,
        usubjid=usubjid,
        code=code,
        values={},
        errors={},
    )


@router.post("/participants/{usubjid}/visits/{code}/missed", **page_needs(P.ENTER_DATA))
async def save_missed(
    usubjid: str, code: str, request: Request, session: PageSession, run: Run
) -> Response:
    """Record the visit as missed, with the reason."""
    service = service_of(request)
    values = await form_values(request)
    body, errors = read_form(MissedVisitCreate, filled(values, ["reason"]))
    page_error, status_code = NOT_SAVED, 422
    if body is not None:
        try:
            await run(service.record_missed_visit, usubjid, code, body.reason, session.actor)
            return RedirectResponse(f"/participants/{usubjid}", status_code=303)
        except StalwartError as exc:
            errors = field_errors(exc, ["reason"])
            if not errors:
                page_error, status_code = str(exc), status_of(exc)
    return render(
        request,
        "missed.html.j2",
        f"{usubjid}: {code} missed",
        session,
        status_code,
        usubjid=usubjid,
        code=code,
        values=values,
        errors=errors,
        page_error=page_error,
    )


@router.get("/deviations")
def deviations_page(request: Request, session: PageSession) -> HTMLResponse:
    """The protocol deviations log of the user's sites, with the review form."""
    return _log(request, session, 200, {})


def _log(
    request: Request, session: PageSession, status_code: int, errors: dict[int, dict[str, str]]
) -> HTMLResponse:
    try:
        rows = service_of(request).deviations.list(session.actor)
    except StalwartError as exc:
        return refused(request, session, exc)
    return render(
        request,
        "deviations.html.j2",
        "Protocol deviations",
        session,
        status_code,
        deviations=rows,
        errors=errors,
    )


@router.post("/deviations/{deviation_id}/review", **page_needs(P.CLOSE_QUERY))
async def review_page(
    deviation_id: RecordId, request: Request, session: PageSession, run: Run
) -> Response:
    """Review a deviation (data manager, monitor)."""
    service = service_of(request)
    values = await form_values(request)
    body, errors = read_form(DeviationReview, filled(values, ["note"]))
    status_code = 422
    if body is not None:
        try:
            await run(service.deviations.review, deviation_id, body.note, session.actor)
            return RedirectResponse("/deviations", status_code=303)
        except StalwartError as exc:
            message = exc.message if isinstance(exc, ValidationError) else str(exc)
            errors, status_code = {"note": message}, status_of(exc)
    return _log(request, session, status_code, {deviation_id: errors})


@router.get("/participants/{usubjid}/deviations/new")
def report_form(usubjid: str, request: Request, session: PageSession) -> HTMLResponse:
    """The form to report a protocol deviation of the participant."""
    return render(
        request,
        "deviation_report.html.j2",
        f"{usubjid}: report a deviation",
        session,
        usubjid=usubjid,
        categories=DEVIATION_CATEGORIES,
        values={"deviation_date": service_of(request).context.today().isoformat()},
        errors={},
    )


@router.post("/participants/{usubjid}/deviations", **page_needs(P.ENTER_DATA, P.RAISE_QUERY))
async def report_page(usubjid: str, request: Request, session: PageSession, run: Run) -> Response:
    """Report a deviation of the participant; back to the participant's page."""
    service = service_of(request)
    values = await form_values(request)
    body, errors = read_form(
        DeviationCreate, filled(values, ["category", "description", "deviation_date"])
    )
    if body is not None:
        try:
            await run(
                service.deviations.report,
                usubjid,
                body.category,
                body.description,
                body.deviation_date,
                session.actor,
            )
            return RedirectResponse(f"/participants/{usubjid}#deviations", status_code=303)
        except StalwartError as exc:
            errors = field_errors(exc, ["category", "description", "deviation_date"])
            if not errors:
                return refused(request, session, exc)
    return render(
        request,
        "deviation_report.html.j2",
        f"{usubjid}: report a deviation",
        session,
        422,
        usubjid=usubjid,
        categories=DEVIATION_CATEGORIES,
        values=values,
        errors=errors,
        page_error=NOT_SAVED,
    )
