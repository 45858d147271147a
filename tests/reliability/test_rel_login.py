"""Login hardening against a real ``stalwart serve`` of two workers, on both backends.

Twelve wrong passwords, each on a new connection (so the kernel spreads them over the workers)
and each with another ``X-Forwarded-For`` (not trusted: the server must not read it), are counted
together: a few are evaluated, the rest are answered 429 with Retry-After in the API's error
shape, and the failures the database holds are exactly the evaluated ones, all from one client.
Counted per worker, twice as many would be evaluated. After that anonymous flood the owner,
from their own session (a bearer token, a browser session), still logs in with the right
password, while an anonymous try with it waits. The 20 most common passwords are refused when an
administrator creates an account, each with a message saying why.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx2 as httpx
import pytest
import sqlalchemy as sa
from live_server import PASSWORD, Databases, LiveServer, add_users, bearer

from stalwart.capture.db import open_engine
from stalwart.capture.tables import AppUser, LoginFailure
from stalwart.protocol.load import LoadedProtocol

CASES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]

TOP_20 = [
    "123456", "123456789", "qwerty", "password", "111111", "12345678", "abc123", "1234567",
    "password1", "12345", "1234567890", "123123", "000000", "iloveyou", "1234", "1q2w3e4r5t",
    "qwertyuiop", "123", "monkey", "dragon",
]  # fmt: skip

FREE = 3
"""Failures one client may make before it must wait (``LoginThrottle``'s default)."""


def _guess(base_url: str, n: int) -> httpx.Response:
    """One wrong password on a new connection, claiming another address each time."""
    headers = {"X-Forwarded-For": f"198.51.100.{n}, 10.0.0.{n}", "X-Real-IP": f"192.0.2.{n}"}
    with httpx.Client(base_url=base_url, timeout=30) as client:
        return client.post(
            "/api/token",
            json={"username": "dm.owner", "password": f"guess {n:02d} wrong"},
            headers=headers,
        )


def _failures(url: str) -> list[tuple[str, str | None]]:
    engine = open_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(LoginFailure.username, LoginFailure.client)).all()
        return [(name, client) for name, client in rows]
    finally:
        engine.dispose()


def _page_login(client: httpx.Client, username: str, password: str) -> httpx.Response:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
    assert match
    form = {"username": username, "password": password, "csrf_token": match.group(1)}
    return client.post("/login", data=form, follow_redirects=False)


@pytest.mark.parametrize("backend", CASES)
def test_failed_logins_are_counted_across_workers_and_the_owner_still_logs_in(
    backend: str, databases: Databases, packaged: LoadedProtocol, tmp_path: Path
) -> None:
    url = databases.new(backend, packaged, folder=tmp_path)
    server = LiveServer(url, workers=2, log_dir=tmp_path)
    try:
        add_users(url, [("admin.one", "admin", None), ("dm.owner", "data_manager", None)])
        server.start()
        admin = bearer(server.url, "admin.one")
        owner = bearer(server.url, "dm.owner")
        with httpx.Client(base_url=server.url, timeout=30) as browser:
            assert _page_login(browser, "dm.owner", PASSWORD).status_code == 303

            # the 20 most common passwords are refused, saying why, and no account is made
            with httpx.Client(base_url=server.url, timeout=30, headers=admin) as client:
                for i, password in enumerate(TOP_20):
                    body = {"username": f"mon.{i}", "password": password, "role": "monitor"}
                    r = client.post("/api/users", json=body)
                    assert r.status_code == 422, r.text
                    error = r.json()["error"]
                    assert error["field"] == "password", error
                    assert "use at least 12 characters" in error["message"], error
                body = {"username": "mon.long", "password": "qwertyuiop123", "role": "monitor"}
                r = client.post("/api/users", json=body)
                assert r.status_code == 422 and "common passwords" in r.json()["error"]["message"]
            engine = open_engine(url)
            try:
                with engine.connect() as conn:
                    made = conn.scalars(
                        sa.select(AppUser.username).order_by(AppUser.username)
                    ).all()
            finally:
                engine.dispose()
            assert made == ["admin.one", "dm.owner"]

            # the anonymous flood: 12 wrong passwords, rotating X-Forwarded-For, over both workers
            replies = [_guess(server.url, n) for n in range(12)]
            statuses = [r.status_code for r in replies]
            evaluated = statuses.count(401)
            assert set(statuses) <= {401, 429}, statuses
            assert statuses[:FREE] == [401] * FREE, statuses
            assert evaluated <= FREE + 1, statuses  # per worker it would be 2 * FREE
            for r in replies:
                if r.status_code == 429:
                    assert int(r.headers["retry-after"]) >= 1
                    error = r.json()["error"]
                    assert error["type"] == "LoginThrottledError"
                    assert "from this address" in error["message"]
            failures = _failures(url)
            assert len(failures) == evaluated  # refused tries cost no hash and are not counted
            assert {client for _, client in failures} == {"127.0.0.1"}  # never a forwarded address

            # an anonymous try with the right password waits too ...
            with httpx.Client(base_url=server.url, timeout=30) as client:
                body = {"username": "dm.owner", "password": PASSWORD}
                assert client.post("/api/token", json=body).status_code == 429
            # ... but the owner, from their own token or their own browser session, does not
            for _ in range(4):  # on whichever worker
                with httpx.Client(base_url=server.url, timeout=30, headers=owner) as client:
                    r = client.post(
                        "/api/token", json={"username": "dm.owner", "password": PASSWORD}
                    )
                    assert r.status_code == 201, r.text
            r = _page_login(browser, "dm.owner", PASSWORD)
            assert r.status_code == 303, r.text
    finally:
        server.close()
        databases.drop(url)
