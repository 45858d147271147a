"""Permission before any read: a role without an operation's permission gets 403, whatever else.

Derived from the app's ``/openapi.json`` (each operation's ``x-stalwart-access``) and the role
table of ``capture.access``: every operation that needs a permission is called by every role that
lacks it, with a body that would fail validation and ids that do not exist (or are not even
well formed). The answer is 403 with the API's error shape every time, never 404 or 422: a
refused caller learns nothing about which records exist or what a valid body looks like, and no
row changes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from stalwart.capture.access import ROLES, SITE_ROLES, Permission, Role, permissions_of
from stalwart.capture.users import UserStore
from stalwart.web.pages import FAMILIES
from stalwart.web.pages.common import PagePermission
from stalwart.web.routes import ACCESS_KEY

PASSWORD = "a long test password"

BAD_BODIES: list[Any] = [{"nonsense": [1, 2]}, [], {"site": 7, "labs": "x", "visit_date": "x"}]
"""JSON bodies no operation accepts."""

IDS = {"nonexistent": "NOPE-0404", "malformed": "not an id!"}


def _protected(spec: dict[str, Any]) -> list[tuple[str, str, frozenset[Permission]]]:
    """(method, path, permissions of which one is needed) of every permission-bound operation."""
    found = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            access = operation.get(ACCESS_KEY)
            if isinstance(access, dict):
                found.append((method.upper(), path, frozenset(map(Permission, access["any_of"]))))
    return sorted(found, key=lambda t: (t[1], t[0]))


def _url(path: str, value: str) -> str:
    numeric = "999999" if value == IDS["nonexistent"] else value
    return re.sub(
        r"\{(\w+)\}",
        lambda m: numeric if m.group(1).endswith("id") else value.replace(" ", "%20"),
        path,
    )


@pytest.mark.parametrize("ids", sorted(IDS))
def test_a_role_without_the_permission_gets_403_before_anything_is_read(
    client: TestClient,
    login: Callable[..., dict[str, str]],
    row_counts: Callable[[Engine], dict[str, int]],
    ids: str,
) -> None:
    spec = client.get("/openapi.json").json()
    operations = _protected(spec)
    assert len(operations) >= 20, "the walk found too few operations: is the access key read?"
    tokens = {role: login(role, "US01" if Role(role) in SITE_ROLES else None) for role in ROLES}
    engine: Engine = client.app.state.service.engine  # type: ignore[attr-defined]
    before = row_counts(engine)
    calls = 0
    for method, path, needed in operations:
        for role in ROLES:
            if permissions_of(Role(role)) & needed:
                continue
            url = _url(path, IDS[ids])
            bodies = BAD_BODIES if method in ("POST", "PUT", "PATCH") else [None]
            for body in bodies:
                response = client.request(
                    method, url, json=body, headers=tokens[role], params={"format": "nonsense"}
                )
                calls += 1
                where = f"{role} {method} {url} body={body!r}"
                assert response.status_code == 403, (
                    f"{where}: {response.status_code} {response.text}"
                )
                assert response.json()["error"]["type"] == "AccessDeniedError", where
    assert calls > 100
    assert row_counts(engine) == before


def test_the_refusal_names_the_permission_and_the_role(
    client: TestClient, login: Callable[..., dict[str, str]]
) -> None:
    headers = login("statistician_blinded")
    response = client.post("/api/randomizations", json={"screening_number": 1}, headers=headers)
    assert response.status_code == 403
    message = response.json()["error"]["message"]
    assert "statistician_blinded" in message and "randomize" in message


# -- pages -----------------------------------------------------------------------------------------
PAGE_OPEN_POSTS = {"/login", "/login/password", "/logout"}
"""Page forms any visitor or signed-in user may post (they prove who is asking themselves)."""

BAD_FORMS: list[dict[str, str]] = [
    {},
    {"visit_date": "not a date", "LAB.CD4": "-5", "reason": "\x00", "version": "x"},
    {"answer": "", "note": "x" * 5000, "role": "god", "active": "maybe", "cycle": "99"},
]
"""Form fields no page form accepts (the CSRF token is added to each)."""


def _page_posts() -> list[tuple[str, frozenset[Permission]]]:
    """(path, permissions of which one is needed) of every page form that is not open."""
    found = []
    routes = [route for family in FAMILIES for route in family.router.routes]
    for route in routes:
        path = getattr(route, "path", "")
        if "POST" not in getattr(route, "methods", ()) or path.startswith("/api"):
            continue
        if path in PAGE_OPEN_POSTS:
            continue
        checks = [
            d.dependency for d in route.dependencies if isinstance(d.dependency, PagePermission)
        ]
        assert checks, f"page form POST {path} declares no permission: add **page_needs(...)"
        found.append((path, checks[0].permissions))
    return sorted(found)


def _page_login(client: TestClient, users: UserStore, role: str) -> str:
    """Signs ``role`` in on the pages (the client's cookie) and returns the page CSRF token."""
    name = f"{role}.pages"
    site = "US01" if Role(role) in SITE_ROLES else None
    users.add_user(name, PASSWORD, role, "test-setup", site=site)
    client.cookies.clear()
    page = client.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token
    form = {"username": name, "password": PASSWORD, "csrf_token": token.group(1)}
    assert client.post("/login", data=form, follow_redirects=False).status_code == 303
    home = client.get("/").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', home)
    assert csrf, f"no CSRF token on the home page of {role}"
    return csrf.group(1)


@pytest.mark.parametrize("ids", sorted(IDS))
def test_a_page_form_refuses_a_role_without_its_permission_before_reading_it(
    client: TestClient,
    users: UserStore,
    row_counts: Callable[[Engine], dict[str, int]],
    ids: str,
) -> None:
    forms = _page_posts()
    assert len(forms) >= 10, "the walk found too few page forms: are the routes read?"
    engine: Engine = client.app.state.service.engine  # type: ignore[attr-defined]
    calls = 0
    for role in ROLES:
        lacking = [(p, n) for p, n in forms if not permissions_of(Role(role)) & n]
        if not lacking:
            continue
        csrf = _page_login(client, users, role)
        before = row_counts(engine)
        for path, needed in lacking:
            url = _url(path, IDS[ids])
            for form in BAD_FORMS:
                response = client.post(
                    url, data=form | {"csrf_token": csrf}, follow_redirects=False
                )
                calls += 1
                where = f"{role} POST {url} form={form!r} (needs {sorted(needed)})"
                assert response.status_code == 403, f"{where}: {response.status_code}"
                assert "text/html" in response.headers["content-type"], where
                assert role in response.text and "may not do this" in response.text, where
        assert row_counts(engine) == before, f"{role}: a refused page form changed rows"
    assert calls > 50
