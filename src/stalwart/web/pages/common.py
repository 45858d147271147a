"""What the pages share: the templates, the logged-in session, rendering, and reading a form.

A form is read by the API's request schema of the same operation (``web.schemas``): the page
shapes the posted strings as the API's JSON body and validates it once; pydantic's errors and the
service's edit-check errors both come back keyed by the form field they concern, shown beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import pydantic
from fastapi import Depends, HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from stalwart.capture.access import Permission
from stalwart.capture.service import CaptureService
from stalwart.errors import (
    AuthenticationError,
    DatabaseError,
    EligibilityError,
    FieldErrors,
    StalwartError,
    ValidationError,
)
from stalwart.protocol.schema import FormItem, ScreeningItem
from stalwart.web.deps import SESSION_COOKIE, WebSession, current_session
from stalwart.web.errors import status_of, unavailable_page

__all__ = [
    "NOT_SAVED",
    "FieldOf",
    "PagePermission",
    "PageSession",
    "field_errors",
    "filled",
    "form_values",
    "page_needs",
    "read_form",
    "refused",
    "render",
    "service_of",
]

NOT_SAVED = "Nothing was saved: correct the fields marked below."
"""The page's message above a form refused field by field."""

templates = Jinja2Templates(directory=Path(__file__).parent.parent / "templates")
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
    """The logged-in user of a page; no session sends the browser to the login page, an ended
    one is a 401 page linking to it."""
    if not request.cookies.get(SESSION_COOKIE):
        raise HTTPException(status_code=303, headers={"Location": "/login"})
    try:
        return await current_session(request, request.app.state.users)
    except AuthenticationError:
        # the session ended (logout, revoked, account deactivated, expired): 401, and the page
        # links to the login form; the dead cookie is dropped
        raise HTTPException(
            status_code=401,
            detail="your session has ended (logged out, revoked or expired): log in again",
            headers={"Set-Cookie": f"{SESSION_COOKIE}=; Max-Age=0; Path=/; HttpOnly"},
        ) from None


PageSession = Annotated[WebSession, Depends(_page_session)]


@dataclass(frozen=True)
class PagePermission:
    """A page route's first dependency: the signed-in role must grant one of ``permissions``.

    It runs before the form is read and before any record is looked up, so a role without the
    permission gets the 403 page whatever it posted: it learns neither whether a record exists
    nor what a valid form looks like, and nothing is written (the API's ``routes.needs``, for
    pages).
    """

    permissions: frozenset[Permission]

    async def __call__(self, session: PageSession) -> None:
        actor = session.actor
        if not any(actor.can(p) for p in self.permissions):
            wanted = " or ".join(sorted(p.value for p in self.permissions))
            raise HTTPException(
                status_code=403,
                detail=f"{actor.username} ({actor.role.value}) may not do this: it needs "
                f"{wanted}; ask a user whose role allows it",
            )


def page_needs(*permissions: Permission) -> dict[str, Any]:
    """Route keyword arguments of a page that needs one of ``permissions``, checked first."""
    return {"dependencies": [Depends(PagePermission(frozenset(permissions)))]}


def service_of(request: Request) -> CaptureService:
    """The capture service of the app's trial database."""
    service: CaptureService = request.app.state.service
    return service


def render(
    request: Request,
    template: str,
    title: str,
    session: WebSession | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """A page of the site: the template with the user, their CSRF token and permissions.

    A 503 (a form whose write the database refused) is the plain unavailable page instead.
    """
    if status_code == 503:
        return unavailable_page()
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
            "study_id": service_of(request).protocol.study.id,
            "actor": actor,
            "csrf": session.csrf_token if session else None,
            "can": can,
            **context,
        },
        status_code=status_code,
    )


def refused(request: Request, session: WebSession, exc: StalwartError) -> HTMLResponse:
    """A page saying why a request was refused (not found, forbidden, conflict); the plain
    unavailable page (503, Retry-After) when the database failed."""
    if isinstance(exc, DatabaseError):
        return unavailable_page()
    return render(request, "error.html.j2", "Refused", session, status_of(exc), page_error=str(exc))


def field_errors(exc: StalwartError, known: Iterable[str]) -> dict[str, str]:
    """The service's refusal keyed by form field: the field of a ValidationError the form has."""
    if isinstance(exc, FieldErrors):
        wanted = set(known)
        found = {f.removeprefix("screening."): m for f, m in exc.errors.items()}
        return {f: m for f, m in found.items() if f in wanted}
    if isinstance(exc, ValidationError) and not isinstance(exc, EligibilityError):
        name = exc.field.removeprefix("screening.")
        if name in set(known):
            return {name: exc.message}
    return {}


async def form_values(request: Request) -> dict[str, str]:
    """The posted form's fields as text, without the CSRF token."""
    form = await request.form()
    return {k: str(v) for k, v in form.items() if k != "csrf_token"}


def filled(values: Mapping[str, str], names: Iterable[str]) -> dict[str, str]:
    """The ``names`` a user filled in: a blank field is not sent, as a JSON body would omit it."""
    return {name: values[name] for name in names if values.get(name, "").strip()}


FieldOf = Callable[[tuple[int | str, ...]], str]
"""The form field of a location in the request body (``("labs", "CD4")`` -> ``"LAB.CD4"``)."""

M = TypeVar("M", bound=pydantic.BaseModel)


def _top_field(loc: tuple[int | str, ...]) -> str:
    return str(loc[0]) if loc else "form"


def read_form(
    schema: type[M],
    body: Mapping[str, object],
    field_of: FieldOf = _top_field,
    context: Mapping[str, object] | None = None,
) -> tuple[M | None, dict[str, str]]:
    """``body`` validated by the API's request ``schema``: the model, or each field's first error.

    The message names the field, as the API's error does (``visit_date: Input should be ...``).
    """
    try:
        return schema.model_validate(body, context=context), {}
    except pydantic.ValidationError as exc:
        errors: dict[str, str] = {}
        for error in exc.errors():
            name = field_of(tuple(error["loc"]))
            errors.setdefault(name, f"{name}: {error['msg']}")
        return None, errors
