"""Login throttling: an account, or a client, that keeps failing to log in is locked for a while.

Password guessing is slowed two ways: ``max_failures`` failed logins of one username within
``window_seconds`` lock that username for ``lockout_seconds`` (even the right password is then
refused, with a message saying until when); ``client_max_failures`` failures from one client
address (any usernames) lock that client alike. A successful login clears the username's count.
A locked check costs no password hash, so a flood of guesses costs the server little.

The counts live in the memory of one server process (each uvicorn worker keeps its own), which
bounds guessing to ``workers * max_failures`` tries per lockout period; they reset on restart.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from stalwart.errors import LoginThrottledError

__all__ = ["LoginThrottle"]

_MAX_KEYS = 100_000
"""Tracked usernames and clients at most; the stalest are dropped beyond it."""


@dataclass
class _Record:
    failures: deque[float] = field(default_factory=deque)
    locked_until: float = 0.0


class LoginThrottle:
    """Failed-login counts per username and per client, and the lockouts they trigger."""

    def __init__(
        self,
        max_failures: int = 5,
        client_max_failures: int = 30,
        window_seconds: float = 900.0,
        lockout_seconds: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.client_max_failures = client_max_failures
        self.window_seconds = window_seconds
        self.lockout_seconds = lockout_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._users: dict[str, _Record] = {}
        self._clients: dict[str, _Record] = {}

    def check(self, username: str, client: str | None = None) -> None:
        """Raise ``LoginThrottledError`` when the username or the client is locked."""
        now = self._clock()
        with self._lock:
            user = self._users.get(username)
            if user is not None and user.locked_until > now:
                wait = _minutes(user.locked_until - now)
                raise LoginThrottledError(
                    f"too many failed logins for {username}: the account is locked for "
                    f"{wait} more minute(s); wait, or ask an administrator to check the account",
                    math.ceil(user.locked_until - now),
                )
            held = self._clients.get(client) if client else None
            if held is not None and held.locked_until > now:
                raise LoginThrottledError(
                    f"too many failed logins from this address: try again in "
                    f"{_minutes(held.locked_until - now)} minute(s)",
                    math.ceil(held.locked_until - now),
                )

    def failed(self, username: str, client: str | None = None) -> None:
        """Count a failed login; lock the username or client once it reaches its limit."""
        now = self._clock()
        with self._lock:
            self._count(self._users, username, self.max_failures, now)
            if client:
                self._count(self._clients, client, self.client_max_failures, now)

    def succeeded(self, username: str) -> None:
        """A successful login clears the username's failures."""
        with self._lock:
            self._users.pop(username, None)

    def _count(self, table: dict[str, _Record], key: str, limit: int, now: float) -> None:
        record = table.get(key)
        if record is None:
            if len(table) >= _MAX_KEYS:
                stalest = min(table, key=lambda k: _last(table[k]))
                del table[stalest]
            record = table[key] = _Record()
        while record.failures and record.failures[0] <= now - self.window_seconds:
            record.failures.popleft()
        record.failures.append(now)
        if len(record.failures) >= limit:
            record.locked_until = now + self.lockout_seconds
            record.failures.clear()


def _last(record: _Record) -> float:
    return max(record.locked_until, record.failures[-1] if record.failures else 0.0)


def _minutes(seconds: float) -> int:
    return max(1, math.ceil(seconds / 60))
