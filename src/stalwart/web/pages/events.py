"""A clinical event, an adverse event and the end of follow-up: the API's ``/clinical-events``,
``/adverse-events`` and ``/disposition`` operations, their forms read by the same schemas."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from stalwart.capture.access import Permission as P
from stalwart.capture.ae_form import AeDetails, check_adverse_event
from stalwart.capture.followup import DISPOSITION_STATUSES, check_clinical_event
from stalwart.capture.service import CaptureService
from stalwart.errors import StalwartError
from stalwart.protocol.submission import SERIOUSNESS_CRITERIA
from stalwart.web.deps import Run
from stalwart.web.errors import status_of
from stalwart.web.pages.common import (
    NOT_SAVED,
    PageSession,
    field_errors,
    filled,
    form_values,
    merge_errors,
    page_needs,
    parsed_fields,
    read_form,
    refused,
    render,
    service_of,
)
from stalwart.web.schemas import AdverseEventCreate, ClinicalEventCreate, DispositionCreate

__all__ = ["router"]

router = APIRouter()

_EventCreate = ClinicalEventCreate | AdverseEventCreate | DispositionCreate

_FORMS: dict[str, tuple[str, type[_EventCreate]]] = {
    "clinical": ("ce", ClinicalEventCreate),
    "adverse": ("ae", AdverseEventCreate),
    "disposition": ("ds", DispositionCreate),
}
"""The kind in the URL -> the form's key on the page and its request schema."""


def _events_context(service: CaptureService) -> dict[str, Any]:
    ae = service.protocol.forms.AE
    return {
        "ce_options": [
            (e.code, f"{e.term} ({e.category.lower()})") for e in service.protocol.forms.CE.events
        ],
        "ae_terms": [(t, t) for t in ae.terms],
        "ae_grades": [(str(g), str(g)) for g in range(ae.min_grade, ae.max_grade + 1)],
        "ae_related": [(r, r.capitalize()) for r in ae.relatedness],
        "ae_outcomes": [(o, o.capitalize()) for o in ae.outcomes],
        "ae_actions": [(a, a.capitalize()) for a in ae.actions],
        "ae_criteria": [(c, SERIOUSNESS_CRITERIA[c]) for c in ae.seriousness],
        "sae_report_days": ae.sae_report_days,
        "grading": ae.grading,
        "ds_options": [(s, s.capitalize()) for s in DISPOSITION_STATUSES],
    }


@router.get("/participants/{usubjid}/events")
def events_page(usubjid: str, request: Request, session: PageSession) -> HTMLResponse:
    """Forms for a clinical event, an adverse event and the end of follow-up."""
    service = service_of(request)
    try:
        service.records.participant(usubjid, session.actor)
    except StalwartError as exc:
        return refused(request, session, exc)
    return render(
        request,
        "events.html.j2",
        f"{usubjid}: events",
        session,
        usubjid=usubjid,
        errors={"ce": {}, "ae": {}, "ds": {}},
        **_events_context(service),
    )


def _body(kind: str, values: dict[str, str]) -> dict[str, object]:
    """The form as the schema's body: blank fields left out; an absent ``serious`` is No; the
    ticked ``seriousness_<CRITERION>`` boxes are the list ``seriousness``."""
    fields = _FORMS[kind][1].model_fields
    body: dict[str, object] = dict(filled(values, fields))
    if kind == "adverse":
        body["serious"] = values.get("serious", "false")
        body["seriousness"] = sorted(
            k.removeprefix("seriousness_") for k in values if k.startswith("seriousness_")
        )
    return body


def _also_checked(
    service: CaptureService, kind: str, given: dict[str, object]
) -> StalwartError | None:
    """The checks of an event form's fields that parsed, for a form whose others did not."""
    found = parsed_fields(_FORMS[kind][1], given)
    try:
        if kind == "clinical":
            check_clinical_event(
                service.protocol,
                service._today(),
                found.get("event_code"),
                found.get("onset_date"),
            )
        elif kind == "adverse":
            details = None
            if "outcome" in found and "action" in found:
                details = AeDetails(
                    found.get("verbatim") or "-",
                    found["outcome"],
                    found["action"],
                    tuple(found.get("seriousness", ())),
                )
            check_adverse_event(
                service.protocol.forms.AE,
                service._today(),
                term=found.get("term"),
                grade=found.get("grade"),
                start_date=found.get("start_date"),
                end_date=found.get("end_date"),
                related=found.get("related"),
                serious=bool(found.get("serious", False)),
                details=details,
            )
    except StalwartError as exc:
        return exc
    return None


@router.post("/participants/{usubjid}/events/{kind}", **page_needs(P.ENTER_DATA, P.CORRECT_DATA))
async def save_event(
    usubjid: str, kind: str, request: Request, session: PageSession, run: Run
) -> Response:
    """Report a clinical event (``clinical``), adverse event (``adverse``) or ``disposition``."""
    if kind not in _FORMS:
        raise HTTPException(status_code=404)
    service = service_of(request)
    actor = session.actor
    key, schema = _FORMS[kind]
    values = await form_values(request)
    given = _body(kind, values)
    body, errors = read_form(schema, given)
    if body is None:  # the service's checks of the fields that parsed, beside these at once
        errors = merge_errors(errors, _also_checked(service, kind, given), schema.model_fields)
    page_error, status_code = NOT_SAVED, 422
    try:
        if isinstance(body, ClinicalEventCreate):
            await run(
                service.report_clinical_event, usubjid, body.event_code, body.onset_date, actor
            )
        elif isinstance(body, AdverseEventCreate):
            await run(
                service.report_adverse_event,
                usubjid,
                body.term,
                body.grade,
                body.start_date,
                body.end_date,
                body.related,
                body.serious,
                actor,
                body.details(),
            )
        elif isinstance(body, DispositionCreate):
            await run(
                service.record_disposition, usubjid, body.status, body.disposition_date, actor
            )
        if body is not None:
            return RedirectResponse(f"/participants/{usubjid}", status_code=303)
    except StalwartError as exc:
        errors = field_errors(exc, schema.model_fields)
        status_code = status_of(exc)
        if not errors:
            page_error = str(exc)
    return render(
        request,
        "events.html.j2",
        f"{usubjid}: events",
        session,
        status_code,
        usubjid=usubjid,
        values=values,
        errors={"ce": {}, "ae": {}, "ds": {}} | {key: errors},
        page_error=page_error,
        **_events_context(service),
    )
