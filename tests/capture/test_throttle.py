"""Login throttling: a progressive delay per client and per account, counted in the database."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from sqlalchemy.engine import Engine

from stalwart.capture.service import CaptureService
from stalwart.capture.tables import AuditRecord, LoginFailure
from stalwart.capture.throttle import LoginThrottle
from stalwart.capture.users import UserStore
from stalwart.errors import AuthenticationError, LoginThrottledError

PASSWORD = "a long test password"
WRONG = "wrong password!"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _store(engine: Engine, clock: Clock, **policy: Any) -> UserStore:
    hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    return UserStore(engine, hasher, throttle=LoginThrottle(clock=clock, **policy))


def _fail(users: UserStore, username: str, client: str | None) -> None:
    with pytest.raises(AuthenticationError, match="unknown user or wrong password"):
        users.authenticate(username, WRONG, client)


def _failures(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(sa.select(sa.func.count()).select_from(LoginFailure)) or 0)


def test_the_delay_doubles_with_each_failure_up_to_its_cap() -> None:
    throttle = LoginThrottle(client_free=3, base_seconds=1, max_seconds=900)
    assert [throttle.delay(n, 3) for n in range(7)] == [0, 0, 0, 1, 2, 4, 8]
    assert throttle.delay(40, 3) == 900
    assert throttle.delay(10_000, 3) == 900  # no overflow


def test_a_client_waits_longer_after_each_failure_then_may_try_again(
    trial: CaptureService, engine: Engine
) -> None:
    clock = Clock()
    users = _store(engine, clock)
    users.add_user("mon.one", PASSWORD, "monitor", "test-setup")
    for _ in range(3):  # three free tries
        _fail(users, "mon.one", "10.0.0.9")
    with pytest.raises(LoginThrottledError, match="wait 1 second") as info:
        users.authenticate("mon.one", PASSWORD, "10.0.0.9")
    assert info.value.retry_after == 1
    assert _failures(engine) == 3  # a refused try is not counted
    clock.now += 1
    _fail(users, "mon.one", "10.0.0.9")
    with pytest.raises(LoginThrottledError) as info:
        users.authenticate("mon.one", PASSWORD, "10.0.0.9")
    assert info.value.retry_after == 2
    # another client is not delayed: one client's failures never lock the account
    assert users.authenticate("mon.one", PASSWORD, "10.0.0.10").username == "mon.one"
    clock.now += 2
    assert users.authenticate("mon.one", PASSWORD, "10.0.0.9").username == "mon.one"


def test_a_client_guessing_many_usernames_is_one_client(
    trial: CaptureService, engine: Engine
) -> None:
    users = _store(engine, Clock())
    for i in range(3):
        _fail(users, f"user{i}", "10.0.0.9")
    with pytest.raises(LoginThrottledError, match="from this address"):
        users.authenticate("someone.else", WRONG, "10.0.0.9")


def test_failures_older_than_the_window_no_longer_count_and_are_deleted(
    trial: CaptureService, engine: Engine
) -> None:
    clock = Clock()
    users = _store(engine, clock, window_seconds=60)
    for _ in range(3):
        _fail(users, "ann", "10.0.0.9")
    clock.now += 61
    _fail(users, "ann", "10.0.0.9")  # evaluated: the old three have aged out
    assert _failures(engine) == 1


def test_a_success_clears_that_clients_failures_on_the_account(
    trial: CaptureService, engine: Engine
) -> None:
    users = _store(engine, Clock())
    users.add_user("mon.one", PASSWORD, "monitor", "test-setup")
    _fail(users, "mon.one", "10.0.0.9")
    _fail(users, "mon.one", "10.0.0.9")
    users.authenticate("mon.one", PASSWORD, "10.0.0.9")
    assert _failures(engine) == 0


def test_an_account_waits_only_on_failures_from_many_clients(
    trial: CaptureService, engine: Engine
) -> None:
    clock = Clock()
    users = _store(engine, clock, account_free=10, account_clients=5, window_seconds=100_000)
    users.add_user("mon.one", PASSWORD, "monitor", "test-setup")
    for _ in range(12):  # one client, as often as its own delay allows
        clock.now += 1000
        _fail(users, "mon.one", "10.0.0.9")
    assert users.authenticate("mon.one", PASSWORD, "192.168.1.1")  # the account never waits
    for i in range(4):  # failures from four more addresses: proof of a distributed attack
        _fail(users, "mon.one", f"10.1.0.{i}")
    with pytest.raises(LoginThrottledError, match=r"for mon\.one from 5 addresses") as info:
        users.authenticate("mon.one", PASSWORD, "192.168.1.1")  # even the right password waits
    assert info.value.retry_after == 64  # 16 failures, 10 free: 2 ** 6 s
    # the owner signed in (their own session, an e-signature) never waits
    assert users.authenticate("mon.one", PASSWORD, "192.168.1.1", trusted=True)
    actor = users.authenticate("mon.one", PASSWORD, trusted=True)
    users.verify_password(actor, PASSWORD)


def test_an_e_signature_is_never_throttled_but_its_failures_are_counted(
    trial: CaptureService, engine: Engine
) -> None:
    users = _store(engine, Clock(), account_free=1, account_clients=1)
    users.add_user("inv.one", PASSWORD, "monitor", "test-setup")
    actor = users.authenticate("inv.one", PASSWORD, "10.0.0.1")
    _fail(users, "inv.one", "10.0.0.66")
    with pytest.raises(LoginThrottledError):
        users.authenticate("inv.one", PASSWORD, "10.0.0.1")  # the account is now delayed
    for _ in range(3):
        with pytest.raises(AuthenticationError, match="signature needs the signer's own"):
            users.verify_password(actor, WRONG)
    users.verify_password(actor, PASSWORD)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(LoginFailure.username, LoginFailure.client)).all()
    assert sorted(rows, key=str) == sorted(
        [("inv.one", "10.0.0.66")] + [("inv.one", None)] * 3, key=str
    )


def test_simultaneous_guesses_are_counted_together(trial: CaptureService, engine: Engine) -> None:
    users = _store(engine, Clock(), client_free=3)
    users.add_user("mon.one", PASSWORD, "monitor", "test-setup")
    outcomes: list[str] = []

    def guess() -> None:
        try:
            users.authenticate("mon.one", WRONG, "10.0.0.9")
        except LoginThrottledError:
            outcomes.append("throttled")
        except AuthenticationError:
            outcomes.append("evaluated")

    threads = [threading.Thread(target=guess) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outcomes) == 12
    assert outcomes.count("evaluated") <= 4, outcomes  # 3 free, at most one racing past


def test_throttle_rows_are_not_audit_data(trial: CaptureService, engine: Engine) -> None:
    users = _store(engine, Clock())
    with engine.connect() as conn:
        before = conn.scalar(sa.select(sa.func.count()).select_from(AuditRecord))
    _fail(users, "nobody", "10.0.0.9")
    users.add_user("mon.one", PASSWORD, "monitor", "test-setup")
    users.authenticate("mon.one", PASSWORD, "10.0.0.8")
    with engine.connect() as conn:
        after = conn.scalar(sa.select(sa.func.count()).select_from(AuditRecord))
    assert after == (before or 0) + 2  # the account's creation and its credential's digest only


def test_long_usernames_and_addresses_are_cut_to_their_columns(
    trial: CaptureService, engine: Engine
) -> None:
    users = _store(engine, Clock())
    _fail(users, "x" * 500, "f" * 300)
    with engine.connect() as conn:
        name, client = conn.execute(sa.select(LoginFailure.username, LoginFailure.client)).one()
    assert (len(name), len(client)) == (60, 64)
