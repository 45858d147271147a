"""Screening, informed consent and randomization, as the API's ``/screenings`` and
``/randomizations`` operations: the same schemas read the forms, the same queue runs the writes.
"""

from __future__ import annotations

from functools import partial
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from stalwart.capture.access import Actor
from stalwart.capture.access import Permission as P
from stalwart.capture.enrolment import check_screening
from stalwart.capture.service import CaptureService
from stalwart.errors import AllocationKeyError, StalwartError
from stalwart.web.calls import randomize_after_consent, screening_view
from stalwart.web.deps import Run, WebSession
from stalwart.web.errors import status_of
from stalwart.web.pages.common import (
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
from stalwart.web.schemas import (
    ConsentCreate,
    RandomizationCreate,
    ScreeningCreate,
    form_answers_that_parse,
)

__all__ = ["router"]

router = APIRouter()

_SCREENING_FIELDS = ("site", "consent_date", "screening_date", "screening_number")
CONSENT_FIRST = (
    "is required: informed consent comes first, before the screening procedures; record the "
    "date it was signed"
)


def _screening_context(service: CaptureService, actor: Actor) -> dict[str, Any]:
    sites = [
        (s.code, f"{s.code} {s.name}") for s in service.protocol.sites if actor.sees_site(s.code)
    ]
    study = service.protocol.study
    example = study.screening_number(actor.site or service.protocol.sites[0].code, 1)
    return {
        "items": service.protocol.screening_items,
        "sites": sites,
        "number_hint": f"leave blank: the site's next number is given (like {example})",
    }


def _labels(service: CaptureService) -> dict[str, str]:
    """Each screening item's form label (``cd4`` -> ``Screening CD4+ count (cells/mm3)``)."""
    return {
        i.name: f"{i.label} ({i.unit})" if i.unit else i.label
        for i in service.protocol.screening_items
    }


def _screening_field(loc: tuple[int | str, ...]) -> str:
    """A screening item's answer is its own form field (``answers.cd4`` -> ``cd4``)."""
    return str(loc[1]) if loc[0] == "answers" and len(loc) > 1 else str(loc[0])


@router.get("/screening")
def screening_page(request: Request, session: PageSession) -> HTMLResponse:
    """The screening form, from the protocol's screening items: consent first, then the
    screening procedures; the verdict, then randomization."""
    context = _screening_context(service_of(request), session.actor)
    today = service_of(request)._today().isoformat()
    values = {"screening_date": today, "consent_date": today}
    if session.actor.site:
        values["site"] = session.actor.site
    return render(request, "screening.html.j2", "Screening", session, values=values, **context)


def _also_checked(
    service: CaptureService, given: dict[str, object], answers: dict[str, str]
) -> StalwartError | None:
    """The service's checks of the fields that parsed, for a form whose others did not."""
    dates = parsed_fields(ScreeningCreate, given)
    typed = form_answers_that_parse(service.protocol.screening_items, answers)
    try:
        check_screening(
            service.protocol,
            service._today(),
            dates.get("screening_date"),
            typed,
            partial=True,
            consent_date=dates.get("consent_date"),
        )
    except StalwartError as exc:
        return exc
    return None


@router.post("/screening", **page_needs(P.SCREEN))
async def screen(request: Request, session: PageSession, run: Run) -> HTMLResponse:
    """Record a screening; show the verdict, or the form again with every error beside its
    field at once."""
    service = service_of(request)
    values = await form_values(request)
    context = _screening_context(service, session.actor)
    items = service.protocol.screening_items
    known = [*_SCREENING_FIELDS, *(i.name for i in items)]
    answers = filled(values, [i.name for i in items])
    given: dict[str, object] = dict(filled(values, _SCREENING_FIELDS))
    labels = _labels(service)
    body, errors = read_form(
        ScreeningCreate,
        given | {"answers": answers},
        _screening_field,
        {"screening_items": items},
        labels,
    )
    status_code = 422
    if body is not None and body.consent_date is None:
        body, errors = None, {"consent_date": f"Date of informed consent {CONSENT_FIRST}"}
    if body is None:
        errors = merge_errors(errors, _also_checked(service, given, answers), known)
    else:
        try:
            outcome = await run(
                partial(service.screen, consent_date=body.consent_date),
                body.site,
                body.screening_number,
                body.screening_date,
                body.answers,
                session.actor,
            )
        except StalwartError as exc:
            errors = field_errors(exc, known)
            if not errors:
                return render(
                    request,
                    "screening.html.j2",
                    "Screening",
                    session,
                    status_of(exc),
                    page_error=str(exc),
                    values=values,
                    **context,
                )
            status_code = status_of(exc)
        else:
            return render(
                request, "screening.html.j2", "Screening", session, outcome=outcome, site=body.site
            )
    return render(
        request,
        "screening.html.j2",
        "Screening",
        session,
        status_code,
        errors=errors,
        values=values,
        page_error="The screening was not saved: correct the fields marked below.",
        **context,
    )


@router.get("/randomize/{number}")
def randomize_page(
    number: str, request: Request, session: PageSession, site: str | None = None
) -> Response:
    """Consent, then randomization, of an eligible screened person (``?site=`` names the site
    of the number: numbers are unique per site)."""
    service = service_of(request)
    try:
        screening = screening_view(service, session.actor, number, site)
    except StalwartError as exc:
        return refused(request, session, exc)
    if screening.usubjid:
        return RedirectResponse(f"/participants/{screening.usubjid}", status_code=303)
    today = service._today().isoformat()
    return render(
        request,
        "randomize.html.j2",
        "Randomization",
        session,
        screening=screening,
        values={"consent_date": today, "randomization_date": today},
        lab_items=service.protocol.forms.LAB.items,
    )


async def _randomize_form(
    request: Request,
    session: WebSession,
    run: Run,
    number: str,
    errors: dict[str, str],
    values: dict[str, str],
    site: str | None,
) -> HTMLResponse:
    """The consent or randomization form again (the one the screening needs), with its errors."""
    service = service_of(request)
    try:
        screening = await run(screening_view, service, session.actor, number, site)
    except StalwartError as exc:
        return refused(request, session, exc)
    return render(
        request,
        "randomize.html.j2",
        "Randomization",
        session,
        422,
        screening=screening,
        errors=errors,
        values=values,
        lab_items=service.protocol.forms.LAB.items,
    )


def _at(site: str | None) -> str:
    return f"?{urlencode({'site': site})}" if site else ""


@router.post("/randomize/{number}/consent", **page_needs(P.SCREEN))
async def consent(
    number: str, request: Request, session: PageSession, run: Run, site: str | None = None
) -> Response:
    """Record informed consent."""
    service = service_of(request)
    values = await form_values(request)
    body, errors = read_form(ConsentCreate, filled(values, ["consent_date"]))
    if body is not None:
        try:
            record = partial(service.record_consent, site=site)
            await run(record, number, body.consent_date, session.actor)
            return RedirectResponse(f"/randomize/{quote(number)}{_at(site)}", status_code=303)
        except StalwartError as exc:
            errors = field_errors(exc, ["consent_date"]) or {"consent_date": str(exc)}
    shown = {"consent_date": values.get("consent_date", "")}
    return await _randomize_form(request, session, run, number, errors, shown, site)


def _entry_field(loc: tuple[int | str, ...]) -> str:
    """An entry result is its LAB item's form field (``entry_labs.CD4`` -> ``LAB.CD4``)."""
    return f"LAB.{loc[1]}" if loc[0] == "entry_labs" and len(loc) > 1 else str(loc[0])


@router.post("/randomize/{number}", **page_needs(P.RANDOMIZE))
async def randomize(
    number: str, request: Request, session: PageSession, run: Run, site: str | None = None
) -> Response:
    """Randomize with the recorded consent; show the arm and the participant's calendar."""
    service = service_of(request)
    values = await form_values(request)
    given: dict[str, object] = {"screening_number": number, "site": site}
    given |= filled(values, ["randomization_date"])
    names = [i.name for i in service.protocol.forms.LAB.items]
    labs = {n: values[f"LAB.{n}"].strip() for n in names if values.get(f"LAB.{n}", "").strip()}
    if labs:  # the study-entry visit, saved with the randomization
        given["entry_labs"] = labs
    body, errors = read_form(RandomizationCreate, given, _entry_field)
    unavailable = False
    if body is not None:
        try:
            allocation = await run(randomize_after_consent, body, service, session.actor)
            return RedirectResponse(
                f"/participants/{allocation.usubjid}?randomized=1", status_code=303
            )
        except StalwartError as exc:
            known = ["randomization_date", "consent_date", *(f"LAB.{n}" for n in names)]
            errors = field_errors(exc, known) or {"randomization_date": str(exc)}
            unavailable = isinstance(exc, AllocationKeyError)
    shown = {k: v for k, v in values.items() if k == "randomization_date" or k.startswith("LAB.")}
    page = await _randomize_form(request, session, run, number, errors, shown, site)
    if unavailable:  # the server cannot randomize (no allocation key): the form says why, 503
        page.status_code = 503
    return page
