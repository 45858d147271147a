"""Account lifecycle over the API and the users page: admin only, audited, effective at once.

A deactivation, a revoked token or a role change applies on the user's very next request; a
reset password opens only the change-password step; bad input is a 4xx naming the field and
changes no row.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from stalwart.capture.audit import verify_audit
from stalwart.capture.users import UserStore

PASSWORD = "a long test password"
TEMPORARY = "a temporary password"
Login = Callable[..., dict[str, str]]
Counts = Callable[[Engine], dict[str, int]]
COORD = "site_coordinator.gb01"


def _csrf(text: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', text)
    assert match
    return match.group(1)


def _page_login(client: TestClient, username: str, password: str = PASSWORD) -> str:
    """Log ``client`` in through the login form; the session's CSRF token."""
    form = {
        "username": username,
        "password": password,
        "csrf_token": _csrf(client.get("/login").text),
    }
    r = client.post("/login", data=form, follow_redirects=False)
    assert r.status_code == 303, r.text
    return _csrf(client.get("/users" if username == "admin.all" else "/worklist").text)


def test_deactivation_ends_tokens_and_sessions_at_once(
    client: TestClient, login: Login, engine: Engine
) -> None:
    admin = login("admin")
    coord = login("site_coordinator", "GB01")
    page = TestClient(client.app)
    _page_login(page, COORD)
    assert client.get("/api/me", headers=coord).status_code == 200
    r = client.put(
        f"/api/users/{COORD}/active", json={"active": False, "reason": "left"}, headers=admin
    )
    assert r.status_code == 200 and r.json() == {"username": COORD, "active": False}
    assert client.get("/api/me", headers=coord).status_code == 401
    ended = page.get("/worklist", follow_redirects=False)
    assert ended.status_code == 401 and "log in again" in ended.text
    r = client.put(
        f"/api/users/{COORD}/active", json={"active": True, "reason": "back"}, headers=admin
    )
    assert r.status_code == 200
    assert client.get("/api/me", headers=coord).status_code == 401  # old tokens stay dead
    fresh = client.post("/api/token", json={"username": COORD, "password": PASSWORD})
    assert fresh.status_code == 201
    listed = {u["username"]: u for u in client.get("/api/users", headers=admin).json()}
    assert listed[COORD]["active"] and listed[COORD]["last_login"]
    assert verify_audit(engine).ok


def test_revoke_one_token_by_its_id(client: TestClient, login: Login) -> None:
    admin = login("admin")
    coord = login("site_coordinator", "GB01")
    tokens = client.get(f"/api/users/{COORD}/tokens", headers=admin).json()
    assert [t["kind"] for t in tokens] == ["api"]
    assert coord["Authorization"].split()[1] not in str(tokens)
    assert client.delete(f"/api/tokens/{tokens[0]['id']}", headers=admin).status_code == 204
    assert client.get("/api/me", headers=coord).status_code == 401
    again = client.delete(f"/api/tokens/{tokens[0]['id']}", headers=admin)
    assert again.status_code == 409 and "already revoked" in again.json()["error"]["message"]
    assert client.delete("/api/tokens/999999", headers=admin).status_code == 404
    assert client.delete("/api/tokens/0", headers=admin).status_code == 422
    assert client.get("/api/users/ghost/tokens", headers=admin).status_code == 404


def test_role_change_applies_on_the_next_request(client: TestClient, login: Login) -> None:
    admin = login("admin")
    coord = login("site_coordinator", "GB01")
    body = {"role": "investigator", "site": "US01", "reason": "moved"}
    r = client.put(f"/api/users/{COORD}/role", json=body, headers=admin)
    assert r.status_code == 200 and (r.json()["role"], r.json()["site"]) == ("investigator", "US01")
    me = client.get("/api/me", headers=coord).json()
    assert (me["role"], me["site"]) == ("investigator", "US01") and "sign" in me["permissions"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"),
    [
        ("put", f"/api/users/{COORD}/role", {"role": "chief", "reason": "x"}, 422, "role"),
        ("put", f"/api/users/{COORD}/role", {"role": "investigator", "reason": "x"}, 422, "site"),
        (
            "put",
            f"/api/users/{COORD}/role",
            {"role": "dsmb", "site": "GB01", "reason": "x"},
            422,
            "site",
        ),
        (
            "put",
            f"/api/users/{COORD}/role",
            {"role": "monitor", "site": "XX99", "reason": "x"},
            404,
            None,
        ),
        ("put", f"/api/users/{COORD}/role", {"role": "monitor"}, 422, "reason"),
        ("put", f"/api/users/{COORD}/active", {"active": "maybe", "reason": "x"}, 422, "active"),
        ("put", f"/api/users/{COORD}/active", {"active": False, "reason": "  "}, 422, "reason"),
        ("put", "/api/users/ghost/active", {"active": False, "reason": "x"}, 404, None),
        ("put", "/api/users/admin.all/active", {"active": False, "reason": "x"}, 409, None),
        ("post", f"/api/users/{COORD}/password-reset", {"password": "short"}, 422, "password"),
        ("post", f"/api/users/{COORD}/password-reset", {"password": TEMPORARY, "x": 1}, 422, "x"),
        ("post", "/api/users/ghost/password-reset", {"password": TEMPORARY}, 404, None),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    client: TestClient,
    login: Login,
    engine: Engine,
    row_counts: Counts,
    method: str,
    path: str,
    body: dict[str, object],
    status: int,
    field: str | None,
) -> None:
    admin = login("admin")
    login("site_coordinator", "GB01")
    before = row_counts(engine)
    r = client.request(method.upper(), path, json=body, headers=admin)
    assert r.status_code == status, r.text
    if field:
        assert r.json()["error"]["field"] == field
    assert row_counts(engine) == before


def test_only_admins_manage_accounts(client: TestClient, login: Login) -> None:
    admin = login("admin")
    monitor = login("monitor")
    token_id = client.get("/api/users/admin.all/tokens", headers=admin).json()[0]["id"]
    for method, path, body in [
        ("PUT", "/api/users/admin.all/active", {"active": False, "reason": "coup"}),
        ("PUT", "/api/users/monitor.all/role", {"role": "admin", "reason": "coup"}),
        ("POST", "/api/users/admin.all/password-reset", {"password": TEMPORARY}),
        ("GET", "/api/users/admin.all/tokens", None),
        ("DELETE", f"/api/tokens/{token_id}", None),
    ]:
        assert client.request(method, path, json=body, headers=monitor).status_code == 403
        assert client.request(method, path, json=body).status_code == 401
    assert client.get("/api/me", headers=admin).status_code == 200


def test_a_reset_password_must_be_changed_over_the_api(client: TestClient, login: Login) -> None:
    admin = login("admin")
    coord = login("site_coordinator", "GB01")
    r = client.post(
        f"/api/users/{COORD}/password-reset", json={"password": TEMPORARY}, headers=admin
    )
    assert r.status_code == 204
    assert client.get("/api/me", headers=coord).status_code == 401
    r = client.post("/api/token", json={"username": COORD, "password": TEMPORARY})
    assert r.status_code == 401 and "choose a new password" in r.json()["error"]["message"]
    change = {"username": COORD, "password": "wrong password!", "new_password": "mine at last!"}
    assert client.post("/api/password", json=change).status_code == 401
    change["password"] = TEMPORARY
    assert client.post("/api/password", json=change).status_code == 204
    r = client.post("/api/token", json={"username": COORD, "password": "mine at last!"})
    assert r.status_code == 201


def test_users_page_acts_with_csrf_and_the_reset_login_step(
    client: TestClient, users: UserStore, engine: Engine
) -> None:
    users.add_user("admin.all", PASSWORD, "admin", "test-setup")
    users.add_user(COORD, PASSWORD, "site_coordinator", "test-setup", site="GB01")
    csrf = _page_login(client, "admin.all")
    listing = client.get("/users").text
    assert f'href="/users/{COORD}"' in listing and "never" in listing
    form = {"password": TEMPORARY}
    forged = client.post(f"/users/{COORD}/password-reset", data=form, follow_redirects=False)
    assert forged.status_code == 403
    short = client.post(
        f"/users/{COORD}/password-reset", data={"password": "short", "csrf_token": csrf}
    )
    assert short.status_code == 422 and "at least" in short.text
    bad_role = {"role": "chief", "reason": "x", "csrf_token": csrf}
    r = client.post(f"/users/{COORD}/role", data=bad_role)
    assert r.status_code == 422 and "is not a role" in r.text
    ok = client.post(
        f"/users/{COORD}/password-reset", data=form | {"csrf_token": csrf}, follow_redirects=False
    )
    assert (
        ok.status_code == 303 and "must change password" in client.get(ok.headers["location"]).text
    )

    person = TestClient(client.app)
    step = person.post(
        "/login",
        data={
            "username": COORD,
            "password": TEMPORARY,
            "csrf_token": _csrf(person.get("/login").text),
        },
        follow_redirects=False,
    )
    assert step.status_code == 200 and "stalwart_session" not in step.cookies
    assert 'action="/login/password"' in step.text
    new = {"username": COORD, "password": TEMPORARY, "new_password": "mine at last!"}
    differ = person.post(
        "/login/password", data=new | {"new_password_again": "typo", "csrf_token": _csrf(step.text)}
    )
    assert differ.status_code == 422 and "differ" in differ.text
    done = person.post(
        "/login/password",
        data=new | {"new_password_again": "mine at last!", "csrf_token": _csrf(differ.text)},
    )
    assert done.status_code == 200 and "password changed" in done.text
    _page_login(person, COORD, "mine at last!")

    tokens = users.admin.tokens(COORD, "test")
    revoke = client.post(
        f"/tokens/{tokens[0].id}/revoke",
        data={"username": COORD, "csrf_token": csrf},
        follow_redirects=False,
    )
    assert revoke.status_code == 303 and revoke.headers["location"] == f"/users/{COORD}"
    assert person.get("/worklist", follow_redirects=False).status_code == 401
    off = {"active": "false", "reason": "left", "csrf_token": csrf}
    assert (
        client.post(f"/users/{COORD}/active", data=off, follow_redirects=False).status_code == 303
    )
    assert "deactivated" in client.get(f"/users/{COORD}").text
    assert verify_audit(engine).ok


def test_the_users_page_is_for_admins(client: TestClient, users: UserStore) -> None:
    users.add_user(COORD, PASSWORD, "site_coordinator", "test-setup", site="GB01")
    csrf = _page_login(client, COORD)
    assert client.get("/users").status_code == 403
    r = client.post(
        f"/users/{COORD}/active", data={"active": "false", "reason": "x", "csrf_token": csrf}
    )
    assert r.status_code == 403
    assert client.get("/worklist").status_code == 200
