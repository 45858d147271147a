"""A participant's record, a visit's laboratory form (first save or correction), its e-signature
and audit trail: the API's visit operations, read by the same schemas, run in the same queue.

Whether the visit is saved (first save, or a correction with its reason) is asked of the visit
alone (``calls.saved_visit``); the participant's whole record is read only to draw a page.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from stalwart.capture.access import Actor
from stalwart.capture.access import Permission as P
from stalwart.capture.audit_trail import unit_text
from stalwart.capture.records import CalendarEntry, VisitRecord
from stalwart.capture.service import CaptureService
from stalwart.errors import (
    AuthenticationError,
    StaleVersionError,
    StalwartError,
    ValidationError,
)
from stalwart.protocol.calendar import UNSCHEDULED_PREFIX
from stalwart.web.calls import saved_visit
from stalwart.web.deps import Run, WebSession
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
from stalwart.web.schemas import SignatureCreate, VisitCorrection, VisitCreate

__all__ = ["render_visit", "router"]

router = APIRouter()


@router.get("/participants/{usubjid}")
def participant(usubjid: str, request: Request, session: PageSession) -> HTMLResponse:
    """The participant's record: arm, visit calendar, dosing, events."""
    service = service_of(request)
    try:
        detail = service.records.participant(usubjid, session.actor)
    except StalwartError as exc:
        return refused(request, session, exc)
    cycles: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for d in detail.dose_days:
        cycles.setdefault((d["treatment"], d["cycle"]), []).append(d)
    rows = [
        {
            "treatment": t,
            "cycle": c,
            "first": days[0]["date"],
            "last": days[-1]["date"],
            "dose": f"{days[0]['dose']:g} {days[0]['dose_unit']} x {days[0]['planned']}/day",
            "logged": all(d["taken"] is not None for d in days),
        }
        for (t, c), days in sorted(cycles.items(), key=lambda kv: kv[1][0]["date"])
    ]
    arm = detail.summary.arm
    message = None
    if request.query_params.get("randomized") and arm:
        message = f"Randomized to {arm}. The visit and dosing calendar below follows the protocol."
    return render(
        request,
        "participant.html.j2",
        usubjid,
        session,
        detail=detail,
        cycles=rows,
        arm_name=service.protocol.arm(arm).name if arm else "",
        deviations=service.deviations.list(session.actor, usubjid=usubjid),
        open_queries=_open_by_visit(service, session.actor, usubjid),
        lock=service.locks.of_participant(usubjid, session.actor),
        message=message,
    )


def _open_by_visit(service: CaptureService, actor: Actor, usubjid: str) -> dict[str, int]:
    """Open (not yet closed) queries of the participant per visit code ("" for no visit)."""
    counts: dict[str, int] = {}
    for q in service.queries.list(actor, usubjid=usubjid):
        if q.status != "CLOSED":
            counts[q.visit_code or ""] = counts.get(q.visit_code or "", 0) + 1
    return counts


def _visit_context(
    service: CaptureService, actor: Actor, usubjid: str, code: str
) -> tuple[CalendarEntry, VisitRecord | None]:
    """The planned visit of the participant's calendar, and its record once saved; an
    unscheduled visit (``UNS01``...) is its own entry, dated as recorded."""
    detail = service.records.participant(usubjid, actor)
    planned = next((v for v in detail.calendar if v.code == code), None)
    if planned is None:
        extra = next((u for u in detail.unscheduled if u["code"] == code), None)
        if extra is None:
            raise ValidationError("visit_code", f"{code!r} is not in the schedule of {usubjid}")
        day = extra["visit_date"]
        name = f"Unscheduled visit {code.removeprefix(UNSCHEDULED_PREFIX)}"
        planned = CalendarEntry(code, name, day, day, day, "recorded", day)
    record = service.records.visit(usubjid, code, actor) if planned.status == "recorded" else None
    return planned, record


def _visit_page(
    request: Request,
    session: WebSession,
    usubjid: str,
    planned: CalendarEntry,
    record: VisitRecord | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    service = service_of(request)
    lab = service.protocol.forms.LAB
    queries = service.queries.list(session.actor, usubjid=usubjid, visit_code=planned.code)
    open_fields: dict[str, int] = {}
    for q in queries:
        if q.status != "CLOSED":
            open_fields[q.field] = open_fields.get(q.field, 0) + 1
    context |= _monitoring(service, session.actor, usubjid, planned, record)
    return render(
        request,
        "visit.html.j2",
        f"{usubjid}: {planned.name}",
        session,
        status_code,
        usubjid=usubjid,
        planned=planned,
        record=record,
        items=lab.items,
        form_name=lab.name,
        unscheduled=planned.code.startswith(UNSCHEDULED_PREFIX),
        queries=queries,
        open_fields=open_fields,
        query_fields=[(f"LAB.{k}", i.label) for k, i in ((i.name, i) for i in lab.items)]
        + [("visit_date", "Visit date")],
        **context,
    )


def _monitoring(
    service: CaptureService,
    actor: Actor,
    usubjid: str,
    planned: CalendarEntry,
    record: VisitRecord | None,
) -> dict[str, Any]:
    """What the visit's banner says besides its values: when the form was saved and by whom,
    its standing source verification, and the lock covering it (``capture.locks``)."""
    day = record.visit_date if record else None
    lock = service.locks.of_participant(usubjid, actor, day)
    if record is None:
        return {"lock": lock, "saved": None, "verification": None, "unit_text": unit_text}
    verification = next(
        (
            v
            for v in service.verifications.of_participant(usubjid, actor)
            if v.visit_code == planned.code and v.valid
        ),
        None,
    )
    saved = service.trails.saved(usubjid, planned.code, actor)
    return {"lock": lock, "saved": saved, "verification": verification, "unit_text": unit_text}


def render_visit(
    request: Request, session: WebSession, usubjid: str, code: str, status_code: int, **context: Any
) -> HTMLResponse:
    """The visit page again, with ``context`` (a refused form's errors and values)."""
    try:
        planned, record = _visit_context(service_of(request), session.actor, usubjid, code)
    except StalwartError as exc:
        return refused(request, session, exc)
    return _visit_page(request, session, usubjid, planned, record, status_code, **context)


@router.get("/participants/{usubjid}/visits/{code}")
def visit_page(usubjid: str, code: str, request: Request, session: PageSession) -> HTMLResponse:
    """The visit's laboratory form from the protocol's CRF (a correction form once saved)."""
    service = service_of(request)
    try:
        planned, record = _visit_context(service, session.actor, usubjid, code)
    except StalwartError as exc:
        return refused(request, session, exc)
    values: dict[str, str] = {
        "visit_date": (record.visit_date if record else planned.target).isoformat()
    }
    if record:
        values |= {f"LAB.{k}": v for k, v in record.labs.items()}
        values["version"] = str(record.version)
    return _visit_page(request, session, usubjid, planned, record, values=values)


def _visit_field(loc: tuple[int | str, ...]) -> str:
    """A result is its LAB item's form field (``labs.CD4`` -> ``LAB.CD4``)."""
    return f"LAB.{loc[1]}" if loc[0] == "labs" and len(loc) > 1 else str(loc[0])


STALE = (
    "Nothing was saved: this visit was changed by someone else after you opened the form. "
    "Each changed field shows the value you saw and the value now; save again to correct the "
    "current values."
)


def _changed_since(change: dict[str, Any]) -> str:
    seen = change["seen"] or "(empty)"
    return (
        f"Changed since you opened the form: you saw {seen}, now {change['now']} "
        f"(by {change['changed_by']} at {change['changed_at']})."
    )


@router.post("/participants/{usubjid}/visits/{code}", **page_needs(P.ENTER_DATA, P.CORRECT_DATA))
async def save_visit(
    usubjid: str, code: str, request: Request, session: PageSession, run: Run
) -> Response:
    """First save or correction of a visit; refused input comes back beside its field."""
    service = service_of(request)
    actor = session.actor
    values = await form_values(request)
    record = await run(saved_visit, service, actor, usubjid, code)
    names = [i.name for i in service.protocol.forms.LAB.items]
    labs = {n: values[f"LAB.{n}"].strip() for n in names if values.get(f"LAB.{n}", "").strip()}
    given: dict[str, object] = filled(values, ["visit_date"]) | {"labs": labs}
    body: VisitCreate | VisitCorrection | None
    schema: type[VisitCreate | VisitCorrection]
    if record is None:
        form, schema = given | filled(values, ["deviation_reason"]), VisitCreate
    else:
        form, schema = given | filled(values, ["reason", "version"]), VisitCorrection
    body, errors = read_form(schema, form, _visit_field, labels=lab_labels(service))
    if body is None:  # the results and the date beside the form's own errors, at once
        known = ["visit_date", *(f"LAB.{n}" for n in names)]
        checked = lab_form_checked(service, schema, form, required=True)
        errors = merge_errors(errors, checked, known)
    page_error = NOT_SAVED
    status_code = 422
    if body is not None:
        try:
            if isinstance(body, VisitCorrection):
                await run(
                    partial(service.correct_visit, version=body.version),
                    usubjid,
                    code,
                    body.visit_date,
                    body.labs,
                    body.reason,
                    actor,
                )
            else:
                await run(
                    partial(service.record_visit, deviation_reason=body.deviation_reason),
                    usubjid,
                    code,
                    body.visit_date,
                    body.labs,
                    actor,
                )
            return RedirectResponse(f"/participants/{usubjid}/visits/{code}", status_code=303)
        except StaleVersionError as exc:
            # both values beside each field; the form now carries the current version, so
            # saving again (after looking) is a deliberate correction of the newer values
            errors = {str(c["field"]): _changed_since(c) for c in exc.changes}
            page_error, status_code = STALE, status_of(exc)
            values = values | {"version": str(exc.current)}
        except StalwartError as exc:
            known = ["visit_date", "reason", "deviation_reason", *(f"LAB.{n}" for n in names)]
            errors = field_errors(exc, known)
            if not errors:
                page_error, status_code = str(exc), status_of(exc)
    try:
        planned, record = await run(_visit_context, service, actor, usubjid, code)
    except StalwartError as exc:
        return refused(request, session, exc)
    return _visit_page(
        request,
        session,
        usubjid,
        planned,
        record,
        status_code,
        values=values,
        errors=errors,
        page_error=page_error,
    )


@router.post("/participants/{usubjid}/visits/{code}/sign", **page_needs(P.SIGN))
async def sign_visit(
    usubjid: str, code: str, request: Request, session: PageSession, run: Run
) -> Response:
    """Investigator e-signature of a saved visit."""
    service = service_of(request)
    values = await form_values(request)
    body, errors = read_form(SignatureCreate, filled(values, ["password", "meaning"]))
    status_code = 422
    if body is not None:
        try:
            await run(
                service.signatures.sign_visit,
                usubjid,
                code,
                body.password,
                body.meaning,
                session.actor,
                request.app.state.users,
            )
            return RedirectResponse(f"/participants/{usubjid}/visits/{code}", status_code=303)
        except AuthenticationError as exc:
            errors, status_code = {"password": str(exc)}, 401
        except StalwartError as exc:
            errors = field_errors(exc, ["meaning"]) or {"meaning": str(exc)}
            status_code = status_of(exc)
    try:
        planned, record = await run(_visit_context, service, session.actor, usubjid, code)
    except StalwartError as exc:
        return refused(request, session, exc)
    if record is None:
        return _visit_page(request, session, usubjid, planned, record, status_code, errors=errors)
    return _visit_page(
        request,
        session,
        usubjid,
        planned,
        record,
        status_code,
        errors=errors,
        values={
            "meaning": values.get("meaning", ""),
            "visit_date": record.visit_date.isoformat(),
            "version": str(record.version),
        }
        | {f"LAB.{k}": v for k, v in record.labs.items()},
    )


@router.get("/participants/{usubjid}/visits/{code}/audit")
def visit_audit(usubjid: str, code: str, request: Request, session: PageSession) -> HTMLResponse:
    """The visit's form's audit trail as people read it: each field's label, its value before
    and after, who, when and why (``capture.audit_trail``)."""
    service = service_of(request)
    try:
        entries = service.trails.visit(usubjid, code, session.actor)
        saved = service.trails.saved(usubjid, code, session.actor)
    except StalwartError as exc:
        return refused(request, session, exc)
    return render(
        request,
        "audit.html.j2",
        f"Audit trail: {usubjid} {code}",
        session,
        entries=entries,
        saved=saved,
        back=f"/participants/{usubjid}/visits/{code}",
        back_label=f"the visit {code}",
    )
