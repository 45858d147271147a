"""Login throttling: a progressive delay per client and per account, counted in the database.

Every failed login is a row of ``login_failure`` (username, client address, when), so every
server process (uvicorn worker) counts the same failures. Rows older than ``window_seconds``
no longer count and are deleted.

**Per client.** After ``client_free`` failures from one client address (any usernames) within
the window, each further attempt from it must wait ``base_seconds * 2 ** (n - client_free)``
seconds (at most ``max_seconds``) after its last failure: 1 s, 2 s, 4 s ... 15 min. A refused
attempt (``LoginThrottledError``, 429 with Retry-After) costs no password hash and is not
counted. The client is the address the connection came from (``request.client.host``, which
uvicorn takes from proxy headers only when the proxy is trusted): a caller rotating
``X-Forwarded-For`` is one client.

**Per account.** An anonymous caller must not be able to lock someone out, so an account itself
waits only on proof of a distributed attack: ``account_free`` failures within the window from
at least ``account_clients`` distinct addresses. Then every untrusted attempt on it waits
alike, the owner's right password included, with the same doubling.

**Trusted attempts never wait.** A login by someone already signed in as that same account
(their own session or token) and an e-signature (``UserStore.verify_password``) are not
throttled; their failures are counted for the account without a client, so they never add to
the evidence of many clients.

**Concurrency.** An attempt is recorded *before* its password is checked (``begin``) and then
judged against the attempts recorded before it (by id), so many guesses sent at once are
counted together instead of each seeing the same empty count; a successful attempt's row is
deleted (``succeeded``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from stalwart.capture.tables import LoginFailure
from stalwart.capture.transaction import transaction
from stalwart.errors import LoginThrottledError

__all__ = ["LoginThrottle"]

_USERNAME_LENGTH = 60
_CLIENT_LENGTH = 64


@dataclass(frozen=True)
class _Count:
    failures: int
    clients: int
    last: float


class LoginThrottle:
    """The login delay policy and its records in the trial database."""

    def __init__(
        self,
        client_free: int = 3,
        account_free: int = 10,
        account_clients: int = 5,
        base_seconds: float = 1.0,
        max_seconds: float = 900.0,
        window_seconds: float = 900.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client_free = client_free
        self.account_free = account_free
        self.account_clients = account_clients
        self.base_seconds = base_seconds
        self.max_seconds = max_seconds
        self.window_seconds = window_seconds
        self._clock = clock

    def delay(self, failures: int, free: int) -> float:
        """Seconds to wait after the last of ``failures`` failures when ``free`` are allowed."""
        if failures < free:
            return 0.0
        return float(min(self.base_seconds * 2.0 ** min(failures - free, 60), self.max_seconds))

    # -- the attempt's life --------------------------------------------------------------------
    def check(self, engine: Engine, username: str, client: str | None) -> None:
        """Refuse at once, without writing, when the client or account must still wait."""
        with Session(engine) as session:
            self._judge(session, _key(username), _client(client), self._clock(), None)

    def begin(self, engine: Engine, username: str, client: str | None, trusted: bool) -> int:
        """Record an attempt (a failure until proven otherwise) and judge it; its row id.

        An untrusted attempt is judged against the attempts recorded before it and, when it
        must wait, ``LoginThrottledError`` is raised before its row commits (none is kept). Attempts
        on one account or from one client are judged one at a time (``_serialize``).
        """
        now = self._clock()
        user, addr = _key(username), None if trusted else _client(client)
        with transaction(engine) as session:
            if not trusted:
                _serialize(session, user, addr)
            session.execute(
                sa.delete(LoginFailure).where(LoginFailure.at < now - self.window_seconds)
            )
            row = LoginFailure(at=now, username=user, client=addr)
            session.add(row)
            session.flush()
            attempt = row.id
            if not trusted:  # judged before commit: a throttled attempt leaves no row
                self._judge(session, user, addr, now, attempt)
        return attempt

    def succeeded(self, engine: Engine, attempt: int, username: str, client: str | None) -> None:
        """The attempt proved the password: forget it and, given the client, that client's
        earlier failures on this account (the owner's own typos)."""
        with transaction(engine) as session:
            session.execute(sa.delete(LoginFailure).where(LoginFailure.id == attempt))
            if client:
                session.execute(
                    sa.delete(LoginFailure).where(
                        LoginFailure.username == _key(username),
                        LoginFailure.client == _client(client),
                    )
                )

    # -- judging -------------------------------------------------------------------------------
    def _count(self, session: Session, where: sa.ColumnElement[bool]) -> _Count:
        failures, clients, last = session.execute(
            sa.select(
                sa.func.count(LoginFailure.id),
                sa.func.count(sa.distinct(LoginFailure.client)),
                sa.func.max(LoginFailure.at),
            ).where(where)
        ).one()
        return _Count(int(failures), int(clients), float(last or 0.0))

    def _judge(
        self, session: Session, username: str, client: str | None, now: float, before: int | None
    ) -> None:
        recent = LoginFailure.at > now - self.window_seconds
        if before is not None:
            recent = sa.and_(recent, LoginFailure.id < before)
        if client is not None:
            seen = self._count(session, sa.and_(recent, LoginFailure.client == client))
            wait = seen.last + self.delay(seen.failures, self.client_free) - now
            if seen.failures >= self.client_free and wait > 0:
                raise LoginThrottledError(
                    f"too many failed logins from this address ({seen.failures} in the last "
                    f"{_minutes(self.window_seconds)} minutes): wait {_seconds(wait)} before "
                    "the next try; each failure doubles the wait",
                    math.ceil(wait),
                )
        seen = self._count(session, sa.and_(recent, LoginFailure.username == username))
        if seen.clients < self.account_clients:
            return
        wait = seen.last + self.delay(seen.failures, self.account_free) - now
        if seen.failures >= self.account_free and wait > 0:
            raise LoginThrottledError(
                f"too many failed logins for {username} from {seen.clients} addresses in the "
                f"last {_minutes(self.window_seconds)} minutes: wait {_seconds(wait)} before the "
                "next try; if these were not you, tell an administrator",
                math.ceil(wait),
            )


def _serialize(session: Session, username: str, client: str | None) -> None:
    """Hold the account's (then the client's) lock until this attempt commits, so that
    simultaneous guesses are judged one after another, each seeing every attempt before it.

    PostgreSQL: transaction-scoped advisory locks (always account first, then client, so two
    attempts never wait on each other in a cycle). SQLite: the write transaction is already
    exclusive (BEGIN IMMEDIATE), so nothing more is needed.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    keys = [f"stalwart.login.user:{username}"]
    if client is not None:
        keys.append(f"stalwart.login.client:{client}")
    for key in keys:
        session.execute(
            sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": key}
        )


def _key(username: str) -> str:
    return username.strip().lower()[:_USERNAME_LENGTH]


def _client(client: str | None) -> str | None:
    return client[:_CLIENT_LENGTH] if client else None


def _minutes(seconds: float) -> int:
    return max(1, math.ceil(seconds / 60))


def _seconds(seconds: float) -> str:
    if seconds < 120:
        return f"{max(1, math.ceil(seconds))} second(s)"
    return f"{_minutes(seconds)} minute(s)"
