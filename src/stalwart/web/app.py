"""``create_app``: the FastAPI application of one trial database (no engine built at import).

``stalwart serve`` runs it under uvicorn. The API lives under ``/api`` (OpenAPI at
``/openapi.json``, docs at ``/docs``, served offline by ``web.docs``), the pages at ``/``, static
files at ``/static``.
``/healthz`` is liveness (the process answers; no database), ``/readyz`` readiness (the database
answers, its schema is at this release's revision and the audit head is readable: 200, else 503
naming what failed). Every response carries the security headers of ``web.headers``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from stalwart import __version__
from stalwart.capture.health import readiness
from stalwart.capture.sealing import AllocationKey
from stalwart.capture.service import CaptureService
from stalwart.capture.text import check_text
from stalwart.capture.users import UserStore
from stalwart.errors import ValidationError
from stalwart.web import pages
from stalwart.web.deps import Blocking
from stalwart.web.docs import install_docs
from stalwart.web.errors import RETRY_AFTER_S, error_body, install_error_handlers
from stalwart.web.headers import SecurityHeaders
from stalwart.web.routes import (
    PUBLIC,
    accounts,
    auth,
    deviations,
    monitoring,
    oversight,
    participants,
    reports,
)

__all__ = ["STATIC_DIR", "create_app"]

_DEFAULT_CAPACITY = 4
"""Concurrent service calls of the forms when the engine's pool has no fixed size."""


def _pool_capacity(engine: Engine) -> int:
    """How many of the forms' service calls may run at once: the connections of the pool."""
    size = getattr(engine.pool, "size", None)
    return max(1, int(size())) if callable(size) else _DEFAULT_CAPACITY


STATIC_DIR = Path(__file__).parent / "static"


async def _refuse_uncarriable_urls(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """A path or query value holding a control character or NUL (``capture.text``) is a 422
    naming it, before any route looks it up (PostgreSQL cannot even compare text with NUL)."""
    values = [("path", str(request.scope.get("path", ""))), *request.query_params.multi_items()]
    for field, value in values:
        try:
            check_text(field, value)
        except ValidationError as exc:
            return JSONResponse(error_body(exc), status_code=422)
    return await call_next(request)


def create_app(
    engine: Engine,
    today: Callable[[], dt.date] | None = None,
    hasher: PasswordHasher | None = None,
    secure_cookies: bool = False,
    allocation_key: AllocationKey | None = None,
) -> FastAPI:
    """The web app over an initialized trial database.

    ``today`` fixes the date the edit checks use (tests); ``hasher`` the argon2 parameters;
    ``secure_cookies`` marks the session cookie Secure (behind HTTPS) and sends HSTS;
    ``allocation_key`` opens the slots of sealed allocation lists (``capture.sealing``).
    """
    if today is None:
        service = CaptureService.open(engine, allocation_key=allocation_key)
    else:
        service = CaptureService.open(engine, today, allocation_key)
    study = service.protocol.study
    app = FastAPI(
        title=f"stalwart: {study.id} data capture",
        version=__version__,
        description=(
            f"{study.title}. Authenticate with `POST /api/token` and send "
            "`Authorization: Bearer <token>` (or press Authorize). Every write goes through "
            "capture.service: edit checks, site scope and the audit trail."
        ),
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = service
    app.state.blocking = Blocking(_pool_capacity(engine))
    app.state.users = UserStore(engine, hasher)
    app.state.secure_cookies = secure_cookies
    install_error_handlers(app)
    app.middleware("http")(_refuse_uncarriable_urls)
    app.add_middleware(SecurityHeaders, hsts=secure_cookies, retry_after_s=RETRY_AFTER_S)

    @app.get("/healthz", tags=["health"], **PUBLIC)
    async def healthz() -> dict[str, Any]:
        """Liveness: the process answers (the database is not consulted; see /readyz)."""
        return {"status": "ok", "study": study.id, "version": __version__}

    @app.get(
        "/readyz",
        tags=["health"],
        responses={503: {"description": "not ready: the failed checks are named"}},
        **PUBLIC,
    )
    async def readyz() -> JSONResponse:
        """Readiness: the database answers, the schema is at this release's revision, and the
        audit chain's head is readable; 503 with Retry-After naming each check that failed."""
        result = await run_in_threadpool(readiness, engine)
        body: dict[str, Any] = {
            "status": "ready" if result.ready else "unavailable",
            "study": study.id,
            "version": __version__,
            "checks": {c.name: {"ok": c.ok, "detail": c.detail} for c in result.checks},
        }
        if result.ready:
            return JSONResponse(body)
        return JSONResponse(body, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})

    app.include_router(auth.router)
    app.include_router(accounts.router)
    app.include_router(participants.router)
    app.include_router(oversight.router)
    app.include_router(deviations.router)
    app.include_router(monitoring.router)
    app.include_router(reports.router)
    app.include_router(pages.router)
    install_docs(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
