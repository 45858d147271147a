"""One JSON error shape for the API: ``{"error": {"type", "message", "field", ...}}``.

Stalwart errors map to a status by class; pydantic's request errors become the same shape with
the field named. Nothing is written when an error is returned: the service refused before
committing.

A database that fails (refuses connections, goes away mid-request, has lost its tables, or the
pool waited too long for a connection) is mapped here, once, for every route, the token and
session lookup included: 503 with ``Retry-After`` and the same shape on the API, a plain page
saying the service is unavailable on the pages; never a 500. Nothing needs restarting when the
database is back: the pool pings each connection before lending it.
"""

from __future__ import annotations

import html
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from stalwart.errors import (
    AccessDeniedError,
    AllocationExhaustedError,
    AllocationKeyError,
    AuthenticationError,
    ConflictError,
    DatabaseError,
    DataLockedError,
    DuplicateError,
    EligibilityError,
    FieldErrors,
    LoginThrottledError,
    NotFoundError,
    PreconditionFailedError,
    StaleVersionError,
    StalwartError,
    ValidationError,
)

__all__ = [
    "DATABASE_FAILURES",
    "RETRY_AFTER_S",
    "error_body",
    "install_error_handlers",
    "status_of",
    "unavailable",
    "unavailable_page",
]

_log = logging.getLogger("stalwart.web")

RETRY_AFTER_S = 5
"""Seconds a client is asked to wait before retrying while the database is unavailable."""

DATABASE_FAILURES: tuple[type[Exception], ...] = (
    sa_exc.OperationalError,  # refused, gone mid-request, no such table (SQLite), pool at max
    sa_exc.InterfaceError,  # the driver's connection is closed
    sa_exc.ProgrammingError,  # relation does not exist (PostgreSQL): tables dropped
    sa_exc.InternalError,
    sa_exc.TimeoutError,  # the pool's timeout waiting for a free connection
    sa_exc.DisconnectionError,
    sa_exc.ResourceClosedError,
)
"""SQLAlchemy's errors of a database that cannot serve now (psycopg's own are added below)."""

try:  # psycopg's errors raised outside SQLAlchemy (the audit pipeline of capture.transaction)
    import psycopg

    DATABASE_FAILURES += (
        psycopg.OperationalError,
        psycopg.InterfaceError,
        psycopg.ProgrammingError,
        psycopg.InternalError,
    )
except ImportError:  # pragma: no cover - psycopg is a dependency
    pass

_UNAVAILABLE_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Service unavailable</title></head>
<body><h1>Service unavailable</h1>
<p>The trial database cannot be reached just now. Nothing was saved by this request.
Try again in a few seconds; if this persists, tell the coordinating centre.</p>
</body></html>
"""

_STATUS: list[tuple[type[StalwartError], int]] = [
    (LoginThrottledError, 429),
    (AuthenticationError, 401),
    (AccessDeniedError, 403),
    (NotFoundError, 404),
    (PreconditionFailedError, 412),
    (DataLockedError, 423),
    (ConflictError, 409),
    (AllocationExhaustedError, 409),
    (ValidationError, 422),
    (DatabaseError, 503),
    (AllocationKeyError, 503),
]


def status_of(exc: StalwartError) -> int:
    """The HTTP status of a stalwart error (400 for any other bad request)."""
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 400


def error_body(exc: StalwartError) -> dict[str, Any]:
    """The JSON body of a stalwart error."""
    body: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, ValidationError):
        body["field"] = exc.field
    if isinstance(exc, FieldErrors):
        body["errors"] = exc.errors
    if isinstance(exc, DuplicateError):
        body["field"] = exc.field
    if isinstance(exc, EligibilityError):
        body["reasons"] = list(exc.reasons)
    if isinstance(exc, StaleVersionError):
        body |= {"version": exc.version, "current_version": exc.current, "changes": exc.changes}
    if isinstance(exc, DataLockedError):
        body["lock"] = {"id": exc.lock_id, "scope": exc.scope, "cutoff": exc.cutoff}
    return {"error": body}


def unavailable(request: Request, message: str) -> Response:
    """503 with ``Retry-After``: the API's error shape under /api, a plain page elsewhere."""
    headers = {"Retry-After": str(RETRY_AFTER_S)}
    if request.url.path.startswith("/api/") or request.url.path == "/api":
        body = {"error": {"type": "ServiceUnavailable", "message": message}}
        return JSONResponse(body, status_code=503, headers=headers)
    return unavailable_page()


def unavailable_page() -> HTMLResponse:
    """The pages' 503: a plain page saying the service is unavailable, with ``Retry-After``."""
    headers = {"Retry-After": str(RETRY_AFTER_S)}
    return HTMLResponse(_UNAVAILABLE_PAGE, status_code=503, headers=headers)


_NO_INPUT = object()


def _field(loc: tuple[Any, ...], body: Any = _NO_INPUT) -> str:
    """The dotted field of an error location, without the union member pydantic tried.

    For a value of a union type (``labs.CD4`` is a number or a string) pydantic appends the
    member to the location (``labs.CD4.float``); the request body tells them apart: a location
    step below a plain value, or a name below a list, is a member, not a field.
    """
    parts: list[str] = []
    node = body if loc[:1] == ("body",) else _NO_INPUT
    for i, step in enumerate(loc):
        if i == 0 and step in ("body", "query", "path"):
            continue
        if isinstance(node, dict):
            node = node.get(step, _NO_INPUT)
        elif isinstance(node, list) and isinstance(step, int):
            node = node[step] if 0 <= step < len(node) else _NO_INPUT
        elif node is not _NO_INPUT:
            continue  # below a given value: the union member
        parts.append(str(step))
    return ".".join(parts) or "body"


_HTTP_MESSAGES = {
    404: "no such API route: see /docs or /openapi.json for the operations",
    405: "this route does not take that method: see /docs or /openapi.json",
}


_PAGE_REFUSALS = {
    401: ("Log in again", "/login", "Log in"),  # a page whose session ended
    403: ("Not allowed", "/", "Home"),  # a page the role may not use
}
"""Status of a refused page: its title and the link it offers."""


def _page_refusal(exc: StarletteHTTPException) -> HTMLResponse:
    """A small page saying why a page request was refused, linking where to go next."""
    title, href, label = _PAGE_REFUSALS[exc.status_code]
    page = (
        f'<!doctype html><html lang="en"><meta charset="utf-8"><title>{title}</title>'
        f'<p role="alert">{html.escape(str(exc.detail))}</p><p><a href="{href}">{label}</a></p>'
        "</html>"
    )
    return HTMLResponse(page, status_code=exc.status_code, headers=exc.headers)


def install_error_handlers(app: FastAPI) -> None:
    """Map StalwartError and request validation errors to the JSON error shape."""

    async def stalwart_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StalwartError)
        if isinstance(exc, DatabaseError):
            return unavailable(request, f"the database is unavailable, retry later: {exc}")
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, AuthenticationError) else None
        if isinstance(exc, LoginThrottledError):
            headers = {"Retry-After": str(exc.retry_after)}
        if isinstance(exc, StaleVersionError):
            headers = {"ETag": f'"{exc.current}"'}
        return JSONResponse(error_body(exc), status_code=status_of(exc), headers=headers)

    async def request_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        body = getattr(exc, "body", _NO_INPUT)
        problems = [
            {"field": _field(tuple(e["loc"]), body), "message": e["msg"]} for e in exc.errors()
        ]
        first = problems[0] if problems else {"field": "body", "message": "invalid request"}
        body = {
            "error": {
                "type": "RequestValidationError",
                "field": first["field"],
                "message": f"{first['field']}: {first['message']}",
                "problems": problems,
            }
        }
        return JSONResponse(body, status_code=422)

    async def http_error(request: Request, exc: Exception) -> Response:
        """The framework's own errors (a body that is not JSON, an unknown route) on the API."""
        assert isinstance(exc, StarletteHTTPException)
        if not request.url.path.startswith("/api/"):
            if exc.status_code in _PAGE_REFUSALS:
                return _page_refusal(exc)
            return await http_exception_handler(request, exc)  # pages: redirects, 404 page
        message = _HTTP_MESSAGES.get(exc.status_code, str(exc.detail))
        if exc.detail == "There was an error parsing the body":
            message = (
                "the request body is not valid JSON: send one JSON object, with "
                "Content-Type: application/json"
            )
        body = {"error": {"type": "HTTPError", "message": message}}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    async def database_failure(request: Request, exc: Exception) -> Response:
        """Any database failure a route or dependency let through: 503, never a 500."""
        # one line for the operator (no traceback: the failure is the database's, not a bug's)
        _log.warning(
            "database unavailable on %s %s: %s: %s",
            request.method,
            request.url.path,
            type(exc).__name__,
            str(exc).strip().splitlines()[0] if str(exc).strip() else "",
        )
        return unavailable(
            request,
            f"the database is unavailable ({type(exc).__name__}): nothing was saved; retry in "
            f"{RETRY_AFTER_S} s",
        )

    for failure in DATABASE_FAILURES:
        app.add_exception_handler(failure, database_failure)
    app.add_exception_handler(StalwartError, stalwart_error)
    app.add_exception_handler(RequestValidationError, request_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
