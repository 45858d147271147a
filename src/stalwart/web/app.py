"""``create_app``: the FastAPI application of one trial database (no engine built at import).

``stalwart serve`` runs it under uvicorn. The API lives under ``/api`` (OpenAPI at
``/openapi.json``, docs at ``/docs``), the pages at ``/``, static files at ``/static``, and
``/healthz`` says whether the database answers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.engine import Engine

from stalwart import __version__
from stalwart.capture.service import CaptureService
from stalwart.capture.users import UserStore
from stalwart.web import pages
from stalwart.web.deps import Blocking
from stalwart.web.errors import install_error_handlers
from stalwart.web.routes import PUBLIC, accounts, auth, oversight, participants, reports

__all__ = ["STATIC_DIR", "create_app"]

_DEFAULT_CAPACITY = 4
"""Concurrent service calls of the forms when the engine's pool has no fixed size."""


def _pool_capacity(engine: Engine) -> int:
    """How many of the forms' service calls may run at once: the connections of the pool."""
    size = getattr(engine.pool, "size", None)
    return max(1, int(size())) if callable(size) else _DEFAULT_CAPACITY


STATIC_DIR = Path(__file__).parent / "static"


def create_app(
    engine: Engine,
    today: Callable[[], dt.date] | None = None,
    hasher: PasswordHasher | None = None,
    secure_cookies: bool = False,
) -> FastAPI:
    """The web app over an initialized trial database.

    ``today`` fixes the date the edit checks use (tests); ``hasher`` the argon2 parameters;
    ``secure_cookies`` marks the session cookie Secure (behind HTTPS).
    """
    service = CaptureService.open(engine) if today is None else CaptureService.open(engine, today)
    study = service.protocol.study
    app = FastAPI(
        title=f"stalwart: {study.id} data capture",
        version=__version__,
        description=(
            f"{study.title}. Authenticate with POST /api/token and send "
            "'Authorization: Bearer <token>'. Every write goes through capture.service: edit "
            "checks, site scope and the audit trail."
        ),
    )
    app.state.service = service
    app.state.blocking = Blocking(_pool_capacity(engine))
    app.state.users = UserStore(engine, hasher)
    app.state.secure_cookies = secure_cookies
    install_error_handlers(app)

    @app.get("/healthz", tags=["health"], **PUBLIC)
    def healthz() -> JSONResponse:
        """Liveness and database reachability."""
        body: dict[str, Any] = {"status": "ok", "study": study.id, "version": __version__}
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError as exc:
            body.update(status="unavailable", detail=type(exc).__name__)
            return JSONResponse(body, status_code=503)
        return JSONResponse(body)

    app.include_router(auth.router)
    app.include_router(accounts.router)
    app.include_router(participants.router)
    app.include_router(oversight.router)
    app.include_router(reports.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
