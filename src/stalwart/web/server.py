"""How ``stalwart serve`` builds the app: from ``$STALWART_DATABASE_URL``, in each worker.

Also what the command checks of its edge before uvicorn starts: the proxies whose forwarding
headers are trusted (none by default), and whether cookies are Secure.
"""

from __future__ import annotations

import ipaddress
import os

from fastapi import FastAPI

from stalwart.capture.db import DATABASE_URL_ENV, open_engine
from stalwart.capture.sealing import ALLOCATION_KEY_ENV, load_allocation_key
from stalwart.capture.service import CaptureService
from stalwart.errors import ConfigurationError

__all__ = [
    "ALLOCATION_KEY_ENV",
    "POOL_SIZE",
    "POOL_SIZE_ENV",
    "SECURE_COOKIES_ENV",
    "app_from_environment",
    "check_database",
    "pool_size",
    "trusted_proxies",
]

POOL_SIZE = 4
"""Database connections of each ``stalwart serve`` worker on PostgreSQL (no overflow).

Few on purpose: every write appends to one audit chain, whose lock each writer holds until its
COMMIT is flushed. More transactions open at once than the server has cores to run them only
lengthen that queue: the lock holder waits for a core while the others wait for it (a convoy).
With 4 per worker a request beyond them waits in the worker for a free connection, which costs
nothing; ``benchmarks/api_load.py --pool-size`` measures other choices.
"""

POOL_SIZE_ENV = "STALWART_POOL_SIZE"
"""Environment variable through which ``stalwart serve --pool-size`` reaches each worker."""


SECURE_COOKIES_ENV = "STALWART_SECURE_COOKIES"
"""Environment variable through which ``stalwart serve --secure-cookies`` reaches each worker."""


def trusted_proxies(text: str | None) -> list[str]:
    """The ``--forwarded-allow-ips`` list: addresses or networks (``10.0.0.0/8``), or ``*``.

    Empty (or None) trusts no proxy. Raises ValueError naming an entry that is neither.
    """
    entries = [e.strip() for e in (text or "").split(",") if e.strip()]
    for entry in entries:
        if entry == "*":
            continue
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ValueError(
                f"{entry!r} is not an IP address or network: give e.g. 127.0.0.1,10.0.0.0/8 "
                "(the addresses of your TLS proxy), or '*' to trust any"
            ) from None
    return entries


def pool_size() -> int:
    """The pool size of each worker: ``$STALWART_POOL_SIZE``, else ``POOL_SIZE``."""
    text = os.environ.get(POOL_SIZE_ENV, "")
    if not text:
        return POOL_SIZE
    if not text.isdigit() or int(text) < 1:
        raise ConfigurationError(f"{POOL_SIZE_ENV}={text!r}: give a whole number of at least 1")
    return int(text)


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

        # at most pool_size() connections per worker, whatever the load: requests beyond it
        # wait for a free one. An overflow grows each worker's pool to its thread pool (40), so
        # --workers 3 under load asked PostgreSQL's default max_connections (100) for 120 and
        # requests failed with 503 "too many clients"
        engine = sa.create_engine(
            engine.url, pool_size=pool_size(), max_overflow=0, pool_timeout=60, pool_pre_ping=True
        )
    spec = os.environ.get(ALLOCATION_KEY_ENV, "")
    return create_app(
        engine,
        secure_cookies=os.environ.get(SECURE_COOKIES_ENV, "") == "1",
        allocation_key=load_allocation_key(spec) if spec else None,
    )
