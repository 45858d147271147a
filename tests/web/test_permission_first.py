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
from stalwart.web.routes import ACCESS_KEY

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
