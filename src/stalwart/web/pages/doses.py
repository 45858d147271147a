"""The dose log of one treatment cycle, as the API's ``/doses`` operation (``DoseLogCreate``).

The form has one field per planned day (``day.<date>``, administrations taken); the posted days
become the body's ``days`` in the form's order. The service checks the days against the protocol;
its refusal names the day in its message, and is shown beside that day.
"""

from __future__ import annotations

import datetime as dt
from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from stalwart.capture.access import Actor
from stalwart.capture.access import Permission as P
from stalwart.capture.service import CaptureService
from stalwart.errors import AccessDeniedError, StalwartError, ValidationError
from stalwart.protocol.calendar import DoseDay, participant_calendar
from stalwart.web.deps import Run, WebSession
from stalwart.web.errors import status_of
from stalwart.web.pages.common import (
    NOT_SAVED,
    FieldOf,
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
from stalwart.web.schemas import DoseLogCreate

__all__ = ["router"]

router = APIRouter()


def _dose_days(
    service: CaptureService, actor: Actor, usubjid: str, treatment: str, cycle: int
) -> list[DoseDay]:
    """The planned days of the cycle, from the participant's calendar."""
    summary = service.records.participant(usubjid, actor).summary
    if summary.arm is None:
        raise AccessDeniedError("see_arm", "your role may not see the dosing calendar")
    calendar = participant_calendar(service.protocol, summary.arm, summary.randomization_date)
    days = [d for d in calendar.doses if d.treatment == treatment and d.cycle == cycle]
    if not days:
        raise ValidationError("treatment", f"{usubjid} has no {treatment} cycle {cycle}")
    return days


def _doses_page(
    request: Request,
    session: WebSession,
    usubjid: str,
    treatment: str,
    cycle: int,
    days: list[DoseDay],
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    return render(
        request,
        "doses.html.j2",
        f"{usubjid}: {treatment} cycle {cycle}",
        session,
        status_code,
        usubjid=usubjid,
        treatment=treatment,
        cycle=cycle,
        days=days,
        **context,
    )


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
        days = _dose_days(service_of(request), session.actor, usubjid, treatment, cycle)
    except StalwartError as exc:
        return refused(request, session, exc)
    values = {f"day.{d.date.isoformat()}": str(d.administrations) for d in days}
    return _doses_page(request, session, usubjid, treatment, cycle, days, values=values)


def _day_field(keys: list[str]) -> FieldOf:
    """The form field of ``days.<i>...``: the i-th posted day."""

    def field_of(loc: tuple[int | str, ...]) -> str:
        if loc[0] == "days" and len(loc) > 1 and isinstance(loc[1], int) and loc[1] < len(keys):
            if keys[loc[1]] == "other_date" and loc[2:3] == ("administrations",):
                return "other_administrations"  # the off-calendar day has two fields
            return keys[loc[1]]
        return str(loc[0])

    return field_of


def _off_calendar_error(
    errors: dict[str, str],
    values: dict[str, str],
    planned: list[DoseDay],
    treatment: str,
    cycle: int,
) -> dict[str, str]:
    """Beside a dose day off the calendar given without a reason, what it needs (whatever
    else the form got wrong: every error at once)."""
    text = values.get("other_date", "").strip()
    if not text or values.get("deviation_reason", "").strip() or "other_date" in errors:
        return errors
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        return errors
    if day in {d.date for d in planned}:
        return errors
    return errors | {
        "other_date": f"{day.isoformat()} is not a {treatment} day of cycle {cycle}: give the "
        "reason below; the dose is then saved and logged as a protocol deviation"
    }


def _day_errors(exc: StalwartError, keys: list[str]) -> dict[str, str]:
    """The service's refusal of one day, keyed by the field of the day its message names."""
    if isinstance(exc, ValidationError) and exc.field in ("administrations", "dose_date"):
        for key in keys:
            if key.removeprefix("day.") in exc.message:
                return {key: exc.message}
    return {}


@router.post(
    "/participants/{usubjid}/doses/{treatment}/{cycle}",
    **page_needs(P.ENTER_DATA, P.CORRECT_DATA),
)
async def save_doses(
    usubjid: str,
    treatment: str,
    cycle: int,
    request: Request,
    session: PageSession,
    run: Run,
) -> Response:
    """Save the dose log of one cycle."""
    service = service_of(request)
    values = await form_values(request)
    keys = [k for k in values if k.startswith("day.")]
    days = [{"date": k.removeprefix("day."), "administrations": values[k]} for k in keys]
    other = filled(values, ["other_date", "other_administrations"])
    if other:  # a dose outside the calendar: one more day, its fields its own
        keys.append("other_date")
        days.append(
            {
                "date": other.get("other_date", ""),
                "administrations": other.get("other_administrations", ""),
            }
        )
    given = {"treatment": treatment, "cycle": cycle, "days": days}
    given |= filled(values, ["deviation_reason"])
    body, errors = read_form(DoseLogCreate, given, _day_field(keys))
    page_error, status_code = NOT_SAVED, 422
    if body is not None:
        taken: list[tuple[dt.date, int]] = [(d.date, d.administrations) for d in body.days]
        record = partial(service.record_doses, deviation_reason=body.deviation_reason)
        try:
            await run(record, usubjid, treatment, cycle, taken, session.actor)
            return RedirectResponse(f"/participants/{usubjid}", status_code=303)
        except StalwartError as exc:
            errors = _day_errors(exc, keys) or field_errors(exc, ["deviation_reason"])
            if not errors:
                page_error, status_code = str(exc), status_of(exc)
    try:
        planned = await run(_dose_days, service, session.actor, usubjid, treatment, cycle)
    except StalwartError as exc:
        return refused(request, session, exc)
    errors = _off_calendar_error(errors, values, planned, treatment, cycle)
    return _doses_page(
        request,
        session,
        usubjid,
        treatment,
        cycle,
        planned,
        status_code,
        values=values,
        errors=errors,
        page_error=page_error,
    )
