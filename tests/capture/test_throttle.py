"""Login throttling: lockout after repeated failures, per account and per client, with expiry."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from sqlalchemy.engine import Engine

from stalwart.capture.service import CaptureService
from stalwart.capture.throttle import LoginThrottle
from stalwart.capture.users import UserStore
from stalwart.errors import AuthenticationError, LoginThrottledError

PASSWORD = "a long test password"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_account_locks_after_max_failures_and_unlocks_later() -> None:
    clock = Clock()
    throttle = LoginThrottle(max_failures=3, window_seconds=60, lockout_seconds=300, clock=clock)
    for _ in range(2):
        throttle.check("ann")
        throttle.failed("ann")
    throttle.check("ann")  # two failures: not yet
    throttle.failed("ann")
    with pytest.raises(LoginThrottledError, match="locked for 5 more minute") as info:
        throttle.check("ann")
    assert info.value.retry_after == 300
    throttle.check("bob")  # others are not affected
    clock.now += 301
    throttle.check("ann")


def test_failures_outside_the_window_do_not_add_up_and_success_clears() -> None:
    clock = Clock()
    throttle = LoginThrottle(max_failures=3, window_seconds=60, lockout_seconds=300, clock=clock)
    throttle.failed("ann")
    throttle.failed("ann")
    clock.now += 61
    throttle.failed("ann")
    throttle.check("ann")
    throttle.failed("ann")
    throttle.succeeded("ann")
    throttle.failed("ann")
    throttle.check("ann")


def test_a_client_guessing_many_usernames_is_locked() -> None:
    throttle = LoginThrottle(max_failures=100, client_max_failures=4, clock=Clock())
    for i in range(4):
        throttle.failed(f"user{i}", "10.0.0.9")
    with pytest.raises(LoginThrottledError, match="from this address"):
        throttle.check("someone.else", "10.0.0.9")
    throttle.check("someone.else", "10.0.0.10")


def test_user_store_refuses_even_the_right_password_while_locked(
    trial: CaptureService, engine: Engine
) -> None:
    clock = Clock()
    users = UserStore(
        engine,
        PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1),
        throttle=LoginThrottle(max_failures=2, lockout_seconds=60, clock=clock),
    )
    users.add_user("mon.one", PASSWORD, "monitor", "test-setup")
    for _ in range(2):
        with pytest.raises(AuthenticationError, match="unknown user or wrong password"):
            users.authenticate("MON.ONE", "wrong password!")
    with pytest.raises(LoginThrottledError):
        users.authenticate("mon.one", PASSWORD)
    clock.now += 61
    assert users.authenticate("mon.one", PASSWORD).username == "mon.one"
