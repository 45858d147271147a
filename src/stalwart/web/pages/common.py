"""What the pages share: the templates, the logged-in session, rendering, and reading a form.

A form is read by the API's request schema of the same operation (``web.schemas``): the page
shapes the posted strings as the API's JSON body and validates it once; pydantic's errors and the
service's edit-check errors both come back keyed by the form field they concern, shown beside it.
"""

from __future__ import annotations

import functools
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
from stalwart.capture.visits import check_visit_form
from stalwart.errors import (
    AuthenticationError,
    DatabaseError,
    DuplicateError,
    EligibilityError,
    FieldErrors,
    StalwartError,
    ValidationError,
)
from stalwart.protocol.schema import FormItem, ScreeningItem
from stalwart.protocol.wording import label_of, value_range
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
    "lab_form_checked",
    "lab_labels",
    "merge_errors",
    "page_needs",
    "parsed_fields",
    "plain_error",
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
    """``0 to 100,000,000 copies/mL; below the assay limit enter <50``."""
    parts = []
    if (allowed := value_range(item.min, item.max, item.unit)) is not None:
        parts.append(allowed)
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
    """The service's refusal keyed by form field: the field of a ValidationError (or of a
    duplicate value) the form has."""
    if isinstance(exc, DuplicateError):
        return {exc.field: exc.message} if exc.field in set(known) else {}
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


_PLAIN: dict[str, str] = {
    "missing": "is required",
    "string_too_short": "is required",
    "int_parsing": "enter a whole number",
    "int_from_float": "enter a whole number",
    "int_type": "enter a whole number",
    "float_parsing": "enter a number",
    "float_type": "enter a number",
    "finite_number": "enter a number",
    "date_parsing": "enter a date as YYYY-MM-DD",
    "date_from_datetime_parsing": "enter a date as YYYY-MM-DD",
    "date_from_datetime_inexact": "enter a date as YYYY-MM-DD, without a time",
    "date_type": "enter a date as YYYY-MM-DD",
    "bool_parsing": "choose yes or no",
    "bool_type": "choose yes or no",
}
"""pydantic's error types in the words of a form (``Input should be a valid integer, unable to
parse string as an integer`` -> ``enter a whole number``)."""


def plain_error(error: Mapping[str, Any], label: str) -> str:
    """One pydantic error as a form says it, naming the field by its ``label``."""
    kind = str(error.get("type", ""))
    said = _PLAIN.get(kind)
    if said is None:
        msg = str(error.get("msg", "is not valid")).removeprefix("Value error, ")
        return f"{label}: {msg[:1].lower()}{msg[1:]}"
    if said.startswith("is "):
        return f"{label} {said}"
    given = error.get("input")
    shown = f" (you entered {given!r})" if isinstance(given, str) and given.strip() else ""
    return f"{label}: {said}{shown}"


def read_form(
    schema: type[M],
    body: Mapping[str, object],
    field_of: FieldOf = _top_field,
    context: Mapping[str, object] | None = None,
    labels: Mapping[str, str] | None = None,
) -> tuple[M | None, dict[str, str]]:
    """``body`` validated by the API's request ``schema``: the model, or each field's first error.

    The message names the field by its label (``labels``, else ``wording.FIELD_LABELS``), in
    the words of a form (``Visit date: enter a date as YYYY-MM-DD``).
    """
    try:
        return schema.model_validate(body, context=context), {}
    except pydantic.ValidationError as exc:
        errors: dict[str, str] = {}
        for error in exc.errors():
            name = field_of(tuple(error["loc"]))
            errors.setdefault(name, plain_error(error, label_of(name, dict(labels or {}))))
        return None, errors


def parsed_fields(schema: type[pydantic.BaseModel], body: Mapping[str, object]) -> dict[str, Any]:
    """The top-level fields of ``body`` that are valid on their own (each by its annotation in
    ``schema``), so a form whose other fields failed still has these checked by the service."""
    found: dict[str, Any] = {}
    for name, value in body.items():
        info = schema.model_fields.get(name)
        if info is None:
            continue
        try:
            found[name] = _adapter(schema, name).validate_python(value)
        except pydantic.ValidationError:
            continue
    return found


@functools.cache
def _adapter(schema: type[pydantic.BaseModel], name: str) -> pydantic.TypeAdapter[Any]:
    info = schema.model_fields[name]
    annotation: Any = info.annotation
    if info.metadata:
        annotation = Annotated[(annotation, *info.metadata)]
    return pydantic.TypeAdapter(annotation)


def lab_form_checked(
    service: CaptureService,
    schema: type[pydantic.BaseModel],
    given: Mapping[str, object],
    *,
    required: bool,
) -> StalwartError | None:
    """The service's checks of a LAB form's date and results that parsed, for a form whose
    other fields did not: their errors show beside those at once."""
    date = parsed_fields(schema, given).get("visit_date")
    labs = given.get("labs")
    try:
        check_visit_form(
            service.protocol,
            date,
            service._today(),
            dict(labs) if isinstance(labs, Mapping) else {},
            required=required,
        )
    except StalwartError as exc:
        return exc
    return None


def lab_labels(service: CaptureService) -> dict[str, str]:
    """Each LAB item's form label (``LAB.CD4`` -> ``CD4+ count (cells/mm3)``)."""
    return {
        f"LAB.{i.name}": f"{i.label} ({i.unit})" if i.unit else i.label
        for i in service.protocol.forms.LAB.items
    }


def merge_errors(
    first: Mapping[str, str], then: StalwartError | None, known: Iterable[str]
) -> dict[str, str]:
    """The form's own errors, and beside them the service's for the other fields."""
    more = field_errors(then, known) if then is not None else {}
    return dict(first) | {f: m for f, m in more.items() if f not in first}
