"""One JSON error shape for the API: ``{"error": {"type", "message", "field", ...}}``.

Stalwart errors map to a status by class; pydantic's request errors become the same shape with
the field named. Nothing is written when an error is returned: the service refused before
committing.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from stalwart.errors import (
    AccessDeniedError,
    AllocationExhaustedError,
    AuthenticationError,
    ConflictError,
    DatabaseError,
    EligibilityError,
    LoginThrottledError,
    NotFoundError,
    StalwartError,
    ValidationError,
)

__all__ = ["error_body", "install_error_handlers", "status_of"]

_STATUS: list[tuple[type[StalwartError], int]] = [
    (LoginThrottledError, 429),
    (AuthenticationError, 401),
    (AccessDeniedError, 403),
    (NotFoundError, 404),
    (ConflictError, 409),
    (AllocationExhaustedError, 409),
    (ValidationError, 422),
    (DatabaseError, 503),
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
    if isinstance(exc, EligibilityError):
        body["reasons"] = list(exc.reasons)
    return {"error": body}


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


def install_error_handlers(app: FastAPI) -> None:
    """Map StalwartError and request validation errors to the JSON error shape."""

    async def stalwart_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StalwartError)
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, AuthenticationError) else None
        if isinstance(exc, LoginThrottledError):
            headers = {"Retry-After": str(exc.retry_after)}
        return JSONResponse(error_body(exc), status_code=status_of(exc), headers=headers)

    async def request_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = [{"field": _field(tuple(e["loc"])), "message": e["msg"]} for e in exc.errors()]
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

    app.add_exception_handler(StalwartError, stalwart_error)
    app.add_exception_handler(RequestValidationError, request_error)
