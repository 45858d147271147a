"""Server-rendered pages (Jinja2 + htmx): the same service calls as the API, as forms.

Forms are rendered from the protocol (screening items, the LAB case report form, the AE and CE
lists). A refused form comes back with status 422 and each error beside its field; nothing is
saved. Pages authenticate with a session cookie; every POST carries the session's CSRF token.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from stalwart.capture.access import Actor, Permission
from stalwart.capture.followup import DISPOSITION_STATUSES
from stalwart.capture.service import CaptureService
from stalwart.capture.users import UserStore
from stalwart.errors import (
    AuthenticationError,
    EligibilityError,
    LoginThrottledError,
    StalwartError,
    ValidationError,
)
from stalwart.protocol.schema import FormItem, ScreeningItem
from stalwart.web.deps import SESSION_COOKIE, WebSession, current_session
from stalwart.web.errors import status_of
from stalwart.web.schemas import RecordId

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
templates.env.autoescape = True  # every template, whatever its extension: entered text is data
templates.env.filters["zip_self"] = lambda values: [(v, v) for v in values]


def _range_hint(item: FormItem | ScreeningItem) -> str | None:
    parts = []
    if item.min is not None and item.max is not None:
        parts.append(f"{item.min:g} to {item.max:g}{' ' + item.unit if item.unit else ''}")
    if isinstance(item, FormItem) and item.lower_limit is not None:
        parts.append(f"below the assay limit enter <{item.lower_limit:g}")
    return "; ".join(parts) or None


templates.env.globals["range_hint"] = _range_hint


async def _page_session(request: Request) -> WebSession:
    """The logged-in user of a page; no session sends the browser to the login page."""
    if not request.cookies.get(SESSION_COOKIE):
        raise HTTPException(status_code=303, headers={"Location": "/login"})
    try:
        return await current_session(request, request.app.state.users)
    except AuthenticationError:
        raise HTTPException(status_code=303, headers={"Location": "/login"}) from None


PageSession = Annotated[WebSession, Depends(_page_session)]


def _service(request: Request) -> CaptureService:
    service: CaptureService = request.app.state.service
    return service


def _render(
    request: Request,
    template: str,
    title: str,
    session: WebSession | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    actor = session.actor if session else None

    def can(permission: str) -> bool:
        return actor is not None and actor.can(Permission(permission))

    context.setdefault("errors", {})
    context.setdefault("values", {})
    return templates.TemplateResponse(
        request,
        template,
        {
            "title": title,
            "study_id": _service(request).protocol.study.id,
            "actor": actor,
            "csrf": session.csrf_token if session else None,
            "can": can,
            **context,
        },
        status_code=status_code,
    )


def _refused(request: Request, session: WebSession, exc: StalwartError) -> HTMLResponse:
    """A page saying why a request was refused (not found, forbidden, conflict)."""
    return _render(
        request, "error.html.j2", "Refused", session, status_of(exc), page_error=str(exc)
    )


def _field_errors(exc: StalwartError, known: Iterable[str]) -> dict[str, str]:
    """Errors keyed by form field; the field of a ValidationError when the form has it."""
    if isinstance(exc, ValidationError) and not isinstance(exc, EligibilityError):
        name = exc.field.removeprefix("screening.")
        if name in set(known):
            return {name: exc.message}
    return {}


def _date(form: FormData, name: str, errors: dict[str, str], required: bool = True) -> Any:
    raw = str(form.get(name) or "").strip()
    if not raw:
        if required:
            errors[name] = "enter a date"
        return None
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        errors[name] = f"{raw!r} is not a date: use YYYY-MM-DD"
        return None


Page = Callable[..., Any]


# -- login ---------------------------------------------------------------------------------------
LOGIN_CSRF_COOKIE = "stalwart_login_csrf"
"""The login form's CSRF token (double submit): a cookie that the form's hidden field must echo."""


def _secure(request: Request) -> bool:
    """Cookies are Secure when the app says so or the request came over HTTPS."""
    return bool(request.app.state.secure_cookies) or request.url.scheme == "https"


def _login_form(
    request: Request,
    status_code: int = 200,
    errors: dict[str, str] | None = None,
    username: str = "",
) -> HTMLResponse:
    """The login form with a fresh CSRF token, set in a cookie too (SameSite=Strict)."""
    token = secrets.token_urlsafe(24)
    response = _render(
        request,
        "login.html.j2",
        "Log in",
        None,
        status_code,
        errors=errors or {},
        values={"username": username},
        login_csrf=token,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        max_age=3600,
        path="/login",
    )
    return response


@router.get("/login")
def login_page(request: Request) -> HTMLResponse:
    """The login form."""
    return _login_form(request)


@router.post("/login")
async def login(request: Request) -> Response:
    """Check the form's CSRF token and the password, start a session, go to the worklist.

    The session cookie is HttpOnly, SameSite=Strict, and Secure over HTTPS. Repeated failures
    lock the account for a while (429, said beside the password field).
    """
    form = await request.form()
    username = str(form.get("username") or "")
    password = str(form.get("password") or "")
    given = form.get("csrf_token")
    if not UserStore.csrf_matches(
        request.cookies.get(LOGIN_CSRF_COOKIE), given if isinstance(given, str) else None
    ):
        message = "the login form has expired or did not come from this site: log in again"
        return _login_form(request, 403, {"password": message}, username)
    users: UserStore = request.app.state.users
    client = request.client.host if request.client else None
    try:
        actor = await run_in_threadpool(users.authenticate, username, password, client)
        issued = await run_in_threadpool(users.issue_token, actor, "session")
    except AuthenticationError as exc:
        status_code = 429 if isinstance(exc, LoginThrottledError) else 401
        refused = _login_form(request, status_code, {"password": str(exc)}, username)
        if isinstance(exc, LoginThrottledError):
            refused.headers["Retry-After"] = str(exc.retry_after)
        return refused
    home = "/worklist" if actor.can(Permission.READ_RECORDS) else _home(actor)
    response = RedirectResponse(home, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        issued.token,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        max_age=12 * 3600,
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


def _home(actor: Actor) -> str:
    if actor.can(Permission.READ_EVENTS):
        return "/reviews"
    if actor.can(Permission.POOLED_SUMMARY):
        return "/summary"
    return "/worklist"


@router.post("/logout")
async def logout(request: Request, session: PageSession) -> Response:
    """End the session."""
    users: UserStore = request.app.state.users
    await run_in_threadpool(users.revoke_token, request.cookies.get(SESSION_COOKIE, ""))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.get("/")
def home(session: PageSession) -> Response:
    """The start page of the role."""
    return RedirectResponse(_home(session.actor), status_code=303)


# -- lists ---------------------------------------------------------------------------------------
@router.get("/worklist")
def worklist(request: Request, session: PageSession) -> HTMLResponse:
    """Visits due, overdue and out of window at the user's sites."""
    service = _service(request)
    try:
        items = service.records.worklist(session.actor)
    except StalwartError as exc:
        return _refused(request, session, exc)
    return _render(
        request, "worklist.html.j2", "Worklist", session, items=items, today=service._today()
    )


@router.get("/participants")
def participants(request: Request, session: PageSession) -> HTMLResponse:
    """Randomized participants and the screening log."""
    service = _service(request)
    try:
        rows = service.records.participants(session.actor)
        log = service.records.screenings(session.actor)
    except StalwartError as exc:
        return _refused(request, session, exc)
    return _render(
        request, "participants.html.j2", "Participants", session, participants=rows, screenings=log
    )


# -- screening and randomization ---------------------------------------------------------------
def _screening_context(service: CaptureService, actor: Actor) -> dict[str, Any]:
    sites = [
        (s.code, f"{s.code} {s.name}") for s in service.protocol.sites if actor.sees_site(s.code)
    ]
    return {"items": service.protocol.screening_items, "sites": sites}


@router.get("/screening")
def screening_page(request: Request, session: PageSession) -> HTMLResponse:
    """The screening form, from the protocol's screening items."""
    context = _screening_context(_service(request), session.actor)
    values = {"screening_date": _service(request)._today().isoformat()}
    if session.actor.site:
        values["site"] = session.actor.site
    return _render(request, "screening.html.j2", "Screening", session, values=values, **context)


def _answer(item: ScreeningItem, raw: str) -> object:
    """A form string as the screening item's type (the service checks range and choices)."""
    if item.type == "boolean":
        return {"true": True, "false": False}.get(raw, raw)
    if item.type in ("integer", "number"):
        try:
            return int(raw) if item.type == "integer" else float(raw)
        except ValueError:
            raise ValidationError(item.name, f"{raw!r} is not a number") from None
    return raw


@router.post("/screening")
async def screen(request: Request, session: PageSession) -> HTMLResponse:
    """Record a screening; show the verdict, or the form again with errors beside the fields."""
    service = _service(request)
    form = await request.form()
    values = {k: str(v) for k, v in form.items() if k != "csrf_token"}
    context = _screening_context(service, session.actor)
    errors: dict[str, str] = {}
    day = _date(form, "screening_date", errors)
    answers: dict[str, object] = {}
    for item in service.protocol.screening_items:
        raw = values.get(item.name, "").strip()
        if not raw:
            errors[item.name] = "answer this item"
            continue
        try:
            answers[item.name] = _answer(item, raw)
        except ValidationError as exc:
            errors[item.name] = exc.message
    for name in ("site", "screening_number"):
        if not values.get(name, "").strip():
            errors[name] = "required"
    if not errors:
        try:
            outcome = await run_in_threadpool(
                service.screen,
                values["site"],
                values["screening_number"].strip(),
                day,
                answers,
                session.actor,
            )
        except StalwartError as exc:
            known = ["site", "screening_number", "screening_date"] + [
                i.name for i in service.protocol.screening_items
            ]
            errors = _field_errors(exc, known)
            if not errors:
                return _render(
                    request,
                    "screening.html.j2",
                    "Screening",
                    session,
                    status_of(exc),
                    page_error=str(exc),
                    values=values,
                    **context,
                )
        else:
            return _render(request, "screening.html.j2", "Screening", session, outcome=outcome)
    return _render(
        request,
        "screening.html.j2",
        "Screening",
        session,
        422,
        errors=errors,
        values=values,
        page_error="The screening was not saved: correct the fields marked below.",
        **context,
    )


def _screening_view(service: CaptureService, actor: Actor, number: str) -> Any:
    for s in service.records.screenings(actor):
        if s.screening_number == number:
            return s
    from stalwart.errors import NotFoundError

    raise NotFoundError(f"no screening numbered {number}")


@router.get("/randomize/{number}")
def randomize_page(number: str, request: Request, session: PageSession) -> HTMLResponse:
    """Consent, then randomization, of an eligible screened person."""
    service = _service(request)
    try:
        screening = _screening_view(service, session.actor, number)
    except StalwartError as exc:
        return _refused(request, session, exc)
    if screening.usubjid:
        return RedirectResponse(f"/participants/{screening.usubjid}", status_code=303)  # type: ignore[return-value]
    today = service._today().isoformat()
    return _render(
        request,
        "randomize.html.j2",
        "Randomization",
        session,
        screening=screening,
        values={"consent_date": today, "randomization_date": today},
    )


@router.post("/randomize/{number}/consent")
async def consent(number: str, request: Request, session: PageSession) -> Response:
    """Record informed consent."""
    service = _service(request)
    form = await request.form()
    errors: dict[str, str] = {}
    day = _date(form, "consent_date", errors)
    if not errors:
        try:
            await run_in_threadpool(service.record_consent, number, day, session.actor)
            return RedirectResponse(f"/randomize/{number}", status_code=303)
        except StalwartError as exc:
            errors = _field_errors(exc, ["consent_date"]) or {"consent_date": str(exc)}
    screening = await run_in_threadpool(_screening_view, service, session.actor, number)
    return _render(
        request,
        "randomize.html.j2",
        "Randomization",
        session,
        422,
        screening=screening,
        errors=errors,
        values={"consent_date": str(form.get("consent_date") or "")},
    )


@router.post("/randomize/{number}")
async def randomize(number: str, request: Request, session: PageSession) -> Response:
    """Randomize; show the arm and the participant's calendar."""
    service = _service(request)
    form = await request.form()
    errors: dict[str, str] = {}
    day = _date(form, "randomization_date", errors)
    screening = await run_in_threadpool(_screening_view, service, session.actor, number)
    if screening.consent_date is None:  # the consent form is shown again, the error beside it
        errors = {"consent_date": "record the informed consent before randomizing"}
    if not errors:
        try:
            allocation = await run_in_threadpool(
                service.randomize, number, screening.consent_date, day, session.actor
            )
            return RedirectResponse(
                f"/participants/{allocation.usubjid}?randomized=1", status_code=303
            )
        except StalwartError as exc:
            errors = _field_errors(exc, ["randomization_date"]) or {"randomization_date": str(exc)}
    return _render(
        request,
        "randomize.html.j2",
        "Randomization",
        session,
        422,
        screening=screening,
        errors=errors,
        values={"randomization_date": str(form.get("randomization_date") or "")},
    )


# -- a participant -------------------------------------------------------------------------------
@router.get("/participants/{usubjid}")
def participant(usubjid: str, request: Request, session: PageSession) -> HTMLResponse:
    """The participant's record: arm, visit calendar, dosing, events."""
    service = _service(request)
    try:
        detail = service.records.participant(usubjid, session.actor)
    except StalwartError as exc:
        return _refused(request, session, exc)
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
    return _render(
        request,
        "participant.html.j2",
        usubjid,
        session,
        detail=detail,
        cycles=rows,
        arm_name=service.protocol.arm(arm).name if arm else "",
        message=message,
    )


def _visit_context(service: CaptureService, actor: Actor, usubjid: str, code: str) -> Any:
    detail = service.records.participant(usubjid, actor)
    planned = next((v for v in detail.calendar if v.code == code), None)
    if planned is None:
        raise ValidationError("visit_code", f"{code!r} is not in the schedule of {usubjid}")
    record = service.records.visit(usubjid, code, actor) if planned.status == "recorded" else None
    return planned, record


@router.get("/participants/{usubjid}/visits/{code}")
def visit_page(usubjid: str, code: str, request: Request, session: PageSession) -> HTMLResponse:
    """The visit's laboratory form from the protocol's CRF (a correction form once saved)."""
    service = _service(request)
    try:
        planned, record = _visit_context(service, session.actor, usubjid, code)
    except StalwartError as exc:
        return _refused(request, session, exc)
    values: dict[str, str] = {
        "visit_date": (record.visit_date if record else planned.target).isoformat()
    }
    if record:
        values |= {f"LAB.{k}": v for k, v in record.labs.items()}
    return _render(
        request,
        "visit.html.j2",
        f"{usubjid}: {planned.name}",
        session,
        usubjid=usubjid,
        planned=planned,
        record=record,
        values=values,
        items=service.protocol.forms.LAB.items,
        form_name=service.protocol.forms.LAB.name,
    )


@router.post("/participants/{usubjid}/visits/{code}")
async def save_visit(usubjid: str, code: str, request: Request, session: PageSession) -> Response:
    """First save or correction of a visit; refused input comes back beside its field."""
    service = _service(request)
    form = await request.form()
    values = {k: str(v) for k, v in form.items() if k != "csrf_token"}
    try:
        planned, record = await run_in_threadpool(
            _visit_context, service, session.actor, usubjid, code
        )
    except StalwartError as exc:
        return _refused(request, session, exc)
    errors: dict[str, str] = {}
    day = _date(form, "visit_date", errors)
    labs = {
        item.name: values[f"LAB.{item.name}"].strip()
        for item in service.protocol.forms.LAB.items
        if values.get(f"LAB.{item.name}", "").strip()
    }
    if not errors:
        try:
            if record is None:
                await run_in_threadpool(
                    service.record_visit, usubjid, code, day, labs, session.actor
                )
            else:
                await run_in_threadpool(
                    service.correct_visit,
                    usubjid,
                    code,
                    day,
                    labs,
                    values.get("reason", ""),
                    session.actor,
                )
            return RedirectResponse(f"/participants/{usubjid}/visits/{code}", status_code=303)
        except StalwartError as exc:
            known = ["visit_date", "reason"] + [
                f"LAB.{i.name}" for i in service.protocol.forms.LAB.items
            ]
            errors = _field_errors(exc, known)
            if not errors:
                return _render(
                    request,
                    "visit.html.j2",
                    f"{usubjid}: {planned.name}",
                    session,
                    status_of(exc),
                    usubjid=usubjid,
                    planned=planned,
                    record=record,
                    values=values,
                    items=service.protocol.forms.LAB.items,
                    form_name=service.protocol.forms.LAB.name,
                    page_error=str(exc),
                )
    return _render(
        request,
        "visit.html.j2",
        f"{usubjid}: {planned.name}",
        session,
        422,
        usubjid=usubjid,
        planned=planned,
        record=record,
        values=values,
        errors=errors,
        items=service.protocol.forms.LAB.items,
        form_name=service.protocol.forms.LAB.name,
        page_error="Nothing was saved: correct the fields marked below.",
    )


@router.post("/participants/{usubjid}/visits/{code}/sign")
async def sign_visit(usubjid: str, code: str, request: Request, session: PageSession) -> Response:
    """Investigator e-signature of a saved visit."""
    service = _service(request)
    form = await request.form()
    meaning = str(form.get("meaning") or "")
    try:
        await run_in_threadpool(
            service.signatures.sign_visit,
            usubjid,
            code,
            str(form.get("password") or ""),
            meaning,
            session.actor,
            request.app.state.users,
        )
        return RedirectResponse(f"/participants/{usubjid}/visits/{code}", status_code=303)
    except AuthenticationError as exc:
        errors = {"password": str(exc)}
        status = 401
    except StalwartError as exc:
        errors = _field_errors(exc, ["meaning"]) or {"meaning": str(exc)}
        status = status_of(exc)
    planned, record = await run_in_threadpool(_visit_context, service, session.actor, usubjid, code)
    return _render(
        request,
        "visit.html.j2",
        f"{usubjid}: {planned.name}",
        session,
        status,
        usubjid=usubjid,
        planned=planned,
        record=record,
        errors=errors,
        values={"meaning": meaning, "visit_date": record.visit_date.isoformat()}
        | {f"LAB.{k}": v for k, v in record.labs.items()},
        items=service.protocol.forms.LAB.items,
        form_name=service.protocol.forms.LAB.name,
    )


@router.get("/participants/{usubjid}/visits/{code}/audit")
def visit_audit(usubjid: str, code: str, request: Request, session: PageSession) -> HTMLResponse:
    """The audit trail of the visit, its results and signatures."""
    try:
        entries = _service(request).records.visit_audit_trail(usubjid, code, session.actor)
    except StalwartError as exc:
        return _refused(request, session, exc)
    return _render(
        request,
        "audit.html.j2",
        f"Audit trail: {usubjid} {code}",
        session,
        entries=entries,
        back=f"/participants/{usubjid}/visits/{code}",
    )


# -- doses and events ---------------------------------------------------------------------------
def _dose_days(
    service: CaptureService, actor: Actor, usubjid: str, treatment: str, cycle: int
) -> list[Any]:
    from stalwart.protocol.calendar import participant_calendar

    summary = service.records.participant(usubjid, actor).summary
    if summary.arm is None:
        from stalwart.errors import AccessDeniedError

        raise AccessDeniedError("see_arm", "your role may not see the dosing calendar")
    calendar = participant_calendar(service.protocol, summary.arm, summary.randomization_date)
    days = [d for d in calendar.doses if d.treatment == treatment and d.cycle == cycle]
    if not days:
        raise ValidationError("treatment", f"{usubjid} has no {treatment} cycle {cycle}")
    return days


@router.get("/participants/{usubjid}/doses/{treatment}/{cycle}")
def doses_page(
    usubjid: str,
    treatment: str,
    cycle: int,
    request: Request,
    session: PageSession,
) -> HTMLResponse:
    """The dose log of one cycle: administrations taken per planned day."""
    try:
        days = _dose_days(_service(request), session.actor, usubjid, treatment, cycle)
    except StalwartError as exc:
        return _refused(request, session, exc)
    values = {f"day.{d.date.isoformat()}": str(d.administrations) for d in days}
    return _render(
        request,
        "doses.html.j2",
        f"{usubjid}: {treatment} cycle {cycle}",
        session,
        usubjid=usubjid,
        treatment=treatment,
        cycle=cycle,
        days=days,
        values=values,
    )


@router.post("/participants/{usubjid}/doses/{treatment}/{cycle}")
async def save_doses(
    usubjid: str,
    treatment: str,
    cycle: int,
    request: Request,
    session: PageSession,
) -> Response:
    """Save the dose log of one cycle."""
    service = _service(request)
    form = await request.form()
    values = {k: str(v) for k, v in form.items() if k != "csrf_token"}
    try:
        days = await run_in_threadpool(
            _dose_days, service, session.actor, usubjid, treatment, cycle
        )
    except StalwartError as exc:
        return _refused(request, session, exc)
    errors: dict[str, str] = {}
    taken: list[tuple[dt.date, int]] = []
    for d in days:
        key = f"day.{d.date.isoformat()}"
        raw = values.get(key, "")
        if not raw.isdigit():
            errors[key] = "choose the number of administrations taken"
        elif int(raw) > d.administrations:  # beside its day, not only at the top of the page
            errors[key] = f"at most {d.administrations} administrations on this day"
        else:
            taken.append((d.date, int(raw)))
    if not errors:
        try:
            await run_in_threadpool(
                service.record_doses, usubjid, treatment, cycle, taken, session.actor
            )
            return RedirectResponse(f"/participants/{usubjid}", status_code=303)
        except StalwartError as exc:
            return _render(
                request,
                "doses.html.j2",
                f"{usubjid}: {treatment} cycle {cycle}",
                session,
                status_of(exc),
                usubjid=usubjid,
                treatment=treatment,
                cycle=cycle,
                days=days,
                values=values,
                page_error=str(exc),
            )
    return _render(
        request,
        "doses.html.j2",
        f"{usubjid}: {treatment} cycle {cycle}",
        session,
        422,
        usubjid=usubjid,
        treatment=treatment,
        cycle=cycle,
        days=days,
        values=values,
        errors=errors,
        page_error="Nothing was saved: correct the fields marked below.",
    )


def _events_context(service: CaptureService) -> dict[str, Any]:
    ae = service.protocol.forms.AE
    return {
        "ce_options": [
            (e.code, f"{e.term} ({e.category.lower()})") for e in service.protocol.forms.CE.events
        ],
        "ae_terms": [(t, t) for t in ae.terms],
        "ae_grades": [(str(g), str(g)) for g in range(ae.min_grade, ae.max_grade + 1)],
        "ae_related": [(r, r.capitalize()) for r in ae.relatedness],
        "grading": ae.grading,
        "ds_options": [(s, s.capitalize()) for s in DISPOSITION_STATUSES],
    }


@router.get("/participants/{usubjid}/events")
def events_page(usubjid: str, request: Request, session: PageSession) -> HTMLResponse:
    """Forms for a clinical event, an adverse event and the end of follow-up."""
    service = _service(request)
    try:
        service.records.participant(usubjid, session.actor)
    except StalwartError as exc:
        return _refused(request, session, exc)
    return _render(
        request,
        "events.html.j2",
        f"{usubjid}: events",
        session,
        usubjid=usubjid,
        errors={"ce": {}, "ae": {}, "ds": {}},
        **_events_context(service),
    )


@router.post("/participants/{usubjid}/events/{kind}")
async def save_event(usubjid: str, kind: str, request: Request, session: PageSession) -> Response:
    """Report a clinical event (``clinical``), adverse event (``adverse``) or ``disposition``."""
    service = _service(request)
    form = await request.form()
    values = {k: str(v) for k, v in form.items() if k != "csrf_token"}
    errors: dict[str, str] = {}
    actor = session.actor
    key = {"clinical": "ce", "adverse": "ae", "disposition": "ds"}.get(kind)
    if key is None:
        raise HTTPException(status_code=404)
    try:
        if kind == "clinical":
            day = _date(form, "onset_date", errors)
            if not errors:
                await run_in_threadpool(
                    service.report_clinical_event, usubjid, values.get("event_code", ""), day, actor
                )
        elif kind == "adverse":
            start = _date(form, "start_date", errors)
            end = _date(form, "end_date", errors, required=False)
            grade = values.get("grade", "")
            if not grade.isdigit():
                errors["grade"] = "choose the DAIDS grade"
            if values.get("serious", "false") not in ("true", "false"):  # absent: not serious
                errors["serious"] = "choose Yes or No"
            if not errors:
                await run_in_threadpool(
                    service.report_adverse_event,
                    usubjid,
                    values.get("term", ""),
                    int(grade),
                    start,
                    end,
                    values.get("related", ""),
                    values.get("serious") == "true",
                    actor,
                )
        else:
            day = _date(form, "disposition_date", errors)
            if not errors:
                await run_in_threadpool(
                    service.record_disposition, usubjid, values.get("status", ""), day, actor
                )
        if not errors:
            return RedirectResponse(f"/participants/{usubjid}", status_code=303)
        status = 422
    except StalwartError as exc:
        errors = _field_errors(
            exc, values.keys() | {"event_code", "term", "grade", "related", "status"}
        )
        status = status_of(exc)
        if not errors:
            errors = {}
            page_error = str(exc)
        else:
            page_error = "Nothing was saved: correct the fields marked below."
        return _render(
            request,
            "events.html.j2",
            f"{usubjid}: events",
            session,
            status,
            usubjid=usubjid,
            values=values,
            errors={"ce": {}, "ae": {}, "ds": {}} | {key: errors},
            page_error=page_error,
            **_events_context(service),
        )
    return _render(
        request,
        "events.html.j2",
        f"{usubjid}: events",
        session,
        status,
        usubjid=usubjid,
        values=values,
        errors={"ce": {}, "ae": {}, "ds": {}} | {key: errors},
        page_error="Nothing was saved: correct the fields marked below.",
        **_events_context(service),
    )


# -- queries, reviews, summaries ----------------------------------------------------------------
@router.get("/queries")
def queries_page(request: Request, session: PageSession) -> HTMLResponse:
    """Queries of the user's sites, with answer and close forms."""
    try:
        rows = _service(request).queries.list(session.actor)
    except StalwartError as exc:
        return _refused(request, session, exc)
    return _render(request, "queries.html.j2", "Queries", session, queries=rows)


@router.post("/queries/{query_id}/{action}")
async def query_action(
    query_id: RecordId, action: str, request: Request, session: PageSession
) -> Response:
    """Answer or close a query."""
    service = _service(request)
    form = await request.form()
    try:
        if action == "answer":
            await run_in_threadpool(
                service.queries.answer, query_id, str(form.get("answer") or ""), session.actor
            )
        elif action == "close":
            await run_in_threadpool(
                service.queries.close, query_id, str(form.get("note") or ""), session.actor
            )
        else:
            raise HTTPException(status_code=404)
    except StalwartError as exc:
        rows = await run_in_threadpool(service.queries.list, session.actor)
        field = "answer" if action == "answer" else "note"
        return _render(
            request,
            "queries.html.j2",
            "Queries",
            session,
            status_of(exc),
            queries=rows,
            errors={query_id: {field: getattr(exc, "message", str(exc))}},
        )
    return RedirectResponse("/queries", status_code=303)


@router.get("/reviews")
def reviews_page(request: Request, session: PageSession) -> HTMLResponse:
    """Endpoint review of reported opportunistic events and deaths (no arm shown)."""
    service = _service(request)
    try:
        events = service.reviews.events(session.actor)
        status = service.reviews.status(session.actor)
    except StalwartError as exc:
        return _refused(request, session, exc)
    return _render(
        request, "reviews.html.j2", "Endpoint review", session, events=events, status=status
    )


@router.post("/reviews/{event_id}")
async def review(event_id: RecordId, request: Request, session: PageSession) -> Response:
    """Record a verdict."""
    service = _service(request)
    form = await request.form()
    try:
        await run_in_threadpool(
            service.reviews.review,
            event_id,
            str(form.get("decision") or ""),
            str(form.get("reason") or ""),
            session.actor,
        )
    except StalwartError as exc:
        events = await run_in_threadpool(service.reviews.events, session.actor)
        status = await run_in_threadpool(service.reviews.status, session.actor)
        field = getattr(exc, "field", "reason")
        return _render(
            request,
            "reviews.html.j2",
            "Endpoint review",
            session,
            status_of(exc),
            events=events,
            status=status,
            errors={
                event_id: {
                    field if field in ("decision", "reason") else "reason": getattr(
                        exc, "message", str(exc)
                    )
                }
            },
        )
    return RedirectResponse("/reviews", status_code=303)


@router.get("/summary")
def summary_page(request: Request, session: PageSession) -> HTMLResponse:
    """Pooled summaries; by arm for unblinded roles who ask for it."""
    service = _service(request)
    by_arm = request.query_params.get("by_arm") == "true"
    try:
        data = service.records.summary(session.actor, by_arm=by_arm)
        status = service.reviews.status(session.actor)
    except StalwartError as exc:
        return _refused(request, session, exc)
    title = "Results by arm" if by_arm else "Pooled summary"
    return _render(request, "summary.html.j2", title, session, summary=data, review=status)
