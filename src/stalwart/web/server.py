"""How ``stalwart serve`` builds the app: from ``$STALWART_DATABASE_URL``, in each worker."""

from __future__ import annotations

import os

from fastapi import FastAPI

from stalwart.capture.db import DATABASE_URL_ENV, open_engine
from stalwart.capture.service import CaptureService
from stalwart.errors import ConfigurationError

__all__ = ["POOL_SIZE", "app_from_environment", "check_database"]

POOL_SIZE = 20
"""Database connections of each ``stalwart serve`` worker on PostgreSQL (no overflow)."""


def check_database(url: str) -> None:
    """Fail early (a stalwart error) when the URL is unusable or holds no trial."""
    engine = open_engine(url)
    try:
        CaptureService.open(engine)
    finally:
        engine.dispose()


def app_from_environment() -> FastAPI:
    """The app over the database named by ``$STALWART_DATABASE_URL`` (uvicorn factory)."""
    from stalwart.web.app import create_app

    url = os.environ.get(DATABASE_URL_ENV)
    if not url:
        raise ConfigurationError(f"set {DATABASE_URL_ENV} to the trial database's URL")
    engine = open_engine(url)
    if engine.dialect.name == "postgresql":
        engine.dispose()
        import sqlalchemy as sa

        # at most POOL_SIZE connections per worker, whatever the load: requests beyond it wait
        # for a free one. An overflow grows each worker's pool to its thread pool (40), so
        # --workers 3 under load asked PostgreSQL's default max_connections (100) for 120 and
        # requests failed with 503 "too many clients"
        engine = sa.create_engine(
            engine.url, pool_size=POOL_SIZE, max_overflow=0, pool_timeout=60, pool_pre_ping=True
        )
    return create_app(engine)
