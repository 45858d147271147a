"""Request dependencies: the trial's service, the user store, and the acting user.

The API authenticates with a bearer token (``Authorization: Bearer ...``); pages with a session
cookie, and then every unsafe request must echo the session's CSRF token (``X-CSRF-Token``
header, or the ``csrf_token`` form field).
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from stalwart.capture.access import Actor
from stalwart.capture.service import CaptureService
from stalwart.capture.users import UserStore
from stalwart.errors import AccessDeniedError, AuthenticationError

__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "Blocking",
    "CurrentActor",
    "Run",
    "Service",
    "Session",
    "Users",
    "WebSession",
    "current_session",
    "get_blocking",
    "get_service",
    "get_users",
]

SESSION_COOKIE = "stalwart_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class WebSession:
    """Who is acting, and the CSRF token their pages carry (None for bearer tokens)."""

    actor: Actor
    csrf_token: str | None


async def get_service(request: Request) -> CaptureService:
    """The capture service of the app's trial database."""
    service: CaptureService = request.app.state.service
    return service


async def get_users(request: Request) -> UserStore:
    """The user store of the app's trial database."""
    users: UserStore = request.app.state.users
    return users


Service = Annotated[CaptureService, Depends(get_service)]
Users = Annotated[UserStore, Depends(get_users)]

T = TypeVar("T")


class Blocking:
    """Runs the forms' service calls in worker threads: at most ``capacity`` at once (the
    database pool's size), the others waiting their turn in arrival order.

    Past the pool's size a thread would only wait inside the pool for a connection, and the pool
    does not serve its waiters in order: under load some requests waited many times longer than
    the rest. Waiting here, in the event loop, is first come first served and holds no thread.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        # a limiter belongs to the event loop it first waits in (tests run several loops)
        self._limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, CapacityLimiter]
        self._limiters = weakref.WeakKeyDictionary()

    async def __call__(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` in a worker thread, in turn."""
        loop = asyncio.get_running_loop()
        limiter = self._limiters.get(loop)
        if limiter is None:
            limiter = self._limiters[loop] = CapacityLimiter(self.capacity)
        return await anyio.to_thread.run_sync(functools.partial(function, *args), limiter=limiter)


async def get_blocking(request: Request) -> Blocking:
    """The app's runner of blocking service calls."""
    blocking: Blocking = request.app.state.blocking
    return blocking


Run = Annotated[Blocking, Depends(get_blocking)]


async def current_session(request: Request, users: Users) -> WebSession:
    """The authenticated user of the request; 401 without valid credentials, 403 on bad CSRF."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        # read on every request: a revoked token or account is refused in every worker at once
        actor, _ = await run_in_threadpool(users.actor_for_token, token.strip(), "api")
        return WebSession(actor, None)
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        raise AuthenticationError(
            "not logged in: send 'Authorization: Bearer <token>' (POST /api/token) or log in"
        )
    actor, csrf = await run_in_threadpool(users.actor_for_token, cookie, "session")
    if request.method not in _SAFE_METHODS:
        given = request.headers.get(CSRF_HEADER)
        if given is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")
        ):
            form = await request.form()
            value = form.get(CSRF_FIELD)
            given = value if isinstance(value, str) else None
        if not UserStore.csrf_matches(csrf, given):
            raise AccessDeniedError(
                "csrf", "the form's CSRF token is missing or stale: reload the page and retry"
            )
    return WebSession(actor, csrf)


Session = Annotated[WebSession, Depends(current_session)]


async def _actor(session: Session) -> Actor:
    return session.actor


CurrentActor = Annotated[Actor, Depends(_actor)]
