"""Logging in over the API and the login page: failed logins delay the client (429 with
Retry-After, the API's error shape), the owner's own session never waits, weak passwords are
refused on account creation with the reason."""

from __future__ import annotations

import re
from collections.abc import Callable

import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from stalwart.capture.tables import AppUser
from stalwart.capture.users import UserStore

PASSWORD = "a long test password"
WRONG = "a wrong guess here"


def _login_token(client: TestClient) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
    assert match
    return match.group(1)


def _page_login(client: TestClient, username: str, password: str) -> int:
    form = {"username": username, "password": password, "csrf_token": _login_token(client)}
    return client.post("/login", data=form, follow_redirects=False).status_code


def test_failed_logins_delay_the_client_on_the_page_and_the_api_alike(
    client: TestClient, users: UserStore
) -> None:
    users.add_user("coord.lock", PASSWORD, "site_coordinator", "test-setup", site="US01")
    free = users.throttle.client_free
    for _ in range(free):
        assert _page_login(client, "coord.lock", WRONG) == 401
    form = {"username": "coord.lock", "password": PASSWORD, "csrf_token": _login_token(client)}
    r = client.post("/login", data=form, follow_redirects=False)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert "too many failed logins from this address" in r.text
    assert "stalwart_session" not in r.cookies
    # the API counts the same failures, and answers in its error shape
    r = client.post("/api/token", json={"username": "someone.else", "password": WRONG})
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    error = r.json()["error"]
    assert error["type"] == "LoginThrottledError" and "wait" in error["message"]
    # X-Forwarded-For is not this app's to read: the client stays the same
    headers = {"X-Forwarded-For": "203.0.113.7"}
    r = client.post("/api/token", json={"username": "x", "password": WRONG}, headers=headers)
    assert r.status_code == 429


def test_the_owner_signed_in_logs_in_again_after_a_flood(
    client: TestClient, users: UserStore, login: Callable[..., dict[str, str]]
) -> None:
    auth = login("data_manager", username="dm.owner")
    other = login("monitor", username="mon.other")
    assert _page_login(client, "dm.owner", PASSWORD) == 303  # the browser's session
    for _ in range(users.throttle.client_free + 2):
        r = client.post("/api/token", json={"username": "dm.owner", "password": WRONG})
        assert r.status_code in (401, 429)
    # an anonymous try, even with the right password, waits
    r = client.post("/api/token", json={"username": "dm.owner", "password": PASSWORD})
    assert r.status_code == 429
    # the owner's own token, and own page session, never wait
    r = client.post("/api/token", json={"username": "dm.owner", "password": PASSWORD}, headers=auth)
    assert r.status_code == 201, r.text
    assert _page_login(client, "dm.owner", PASSWORD) == 303
    # another account's token is no pass for this one
    r = client.post(
        "/api/token", json={"username": "dm.owner", "password": PASSWORD}, headers=other
    )
    assert r.status_code == 429


def test_a_weak_password_is_refused_on_account_creation_saying_why(
    client: TestClient, login: Callable[..., dict[str, str]], engine: Engine
) -> None:
    admin = login("admin")
    for password, reason in [
        ("password", "use at least 12"),
        ("password1234", "common passwords"),
        ("\u0000" * 12, "control character"),
        (" " * 12, "all whitespace"),
    ]:
        body = {"username": "mon.new", "password": password, "role": "monitor"}
        r = client.post("/api/users", json=body, headers=admin)
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["field"] == "password" and reason in error["message"]
    with engine.connect() as conn:
        assert conn.scalar(sa.select(AppUser.id).where(AppUser.username == "mon.new")) is None
    body = {"username": "mon.new", "password": "correct horse battery", "role": "monitor"}
    assert client.post("/api/users", json=body, headers=admin).status_code == 201
