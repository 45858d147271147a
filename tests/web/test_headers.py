"""Security headers on every response: every GET page and API operation, static files, errors.

The walk is derived from the app's own routes, so a page added later is covered without naming
it here; each path parameter gets a real value of the trial (a participant on IL-2, a visit, a
dose cycle, a screening number).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

import httpx2 as httpx
import pytest
from argon2 import PasswordHasher
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Mount

from stalwart.capture.service import CaptureService
from stalwart.capture.users import UserStore
from stalwart.web.app import create_app
from stalwart.web.headers import API_CSP, PAGE_CSP

PASSWORD = "a long test password"


def _assert_secure_headers(response: httpx.Response, where: str) -> None:
    h = response.headers
    assert h.get("X-Frame-Options") == "DENY", where
    assert h.get("X-Content-Type-Options") == "nosniff", where
    assert h.get("Referrer-Policy") == "no-referrer", where
    assert "frame-ancestors 'none'" in h.get("Content-Security-Policy", ""), where


def _values(
    trial: CaptureService, enrol: Callable[..., Any], answers: dict[str, object]
) -> dict[str, str]:
    allocation = enrol(trial, arm="IL2")
    trial.record_visit(
        allocation.usubjid,
        "ENTRY",
        allocation.randomization_date,
        {"CD4": 600, "HIVRNA": 400},
        "test",
    )
    number = "US01-0999"
    trial.screen("US01", number, dt.date(2006, 1, 2), answers, "test")
    return {
        "usubjid": allocation.usubjid,
        "code": "ENTRY",
        "visit_code": "ENTRY",
        "treatment": "IL2",
        "cycle": "1",
        "number": number,
        "screening_number": number,
        "kind": "participants",
        "table_name": "visit",
        "record_id": "1",
        "event_id": "1",
        "query_id": "1",
    }


def _fill(path: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: values.get(m.group(1), "1"), path)


def _get_paths(app: Any) -> list[str]:
    """Every GET path of the app, the routers it includes (the pages' families) walked too."""
    paths = []

    def walk(routes: list[Any]) -> None:
        for route in routes:
            if isinstance(route, APIRoute) and "GET" in route.methods:
                paths.append(route.path)
            elif isinstance(route, Mount):
                paths.append(f"{route.path}/htmx.min.js")
            elif hasattr(route, "original_router"):  # an included router (no prefix here)
                walk(route.original_router.routes)
            elif getattr(route, "methods", None) and "GET" in route.methods:
                paths.append(route.path)  # /openapi.json, /docs, /redoc

    walk(app.routes)
    return sorted(set(paths))


def _signed_in(client: TestClient, users: UserStore) -> dict[str, str]:
    users.add_user("dm.headers", PASSWORD, "data_manager", "test-setup")
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
    assert match is not None
    form = {"username": "dm.headers", "password": PASSWORD, "csrf_token": match.group(1)}
    assert client.post("/login", data=form, follow_redirects=False).status_code == 303
    token = client.post("/api/token", json={"username": "dm.headers", "password": PASSWORD})
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def test_every_get_route_carries_the_security_headers(
    client: TestClient,
    trial: CaptureService,
    enrol: Callable[..., Any],
    eligible_answers: Callable[..., dict[str, object]],
) -> None:
    values = _values(trial, enrol, eligible_answers())
    bearer = _signed_in(client, client.app.state.users)  # type: ignore[attr-defined]
    paths = _get_paths(client.app)
    pages = [p for p in paths if not p.startswith(("/api/", "/openapi", "/docs", "/redoc"))]
    assert {"/participants/{usubjid}/visits/{code}", "/worklist", "/login"} <= set(pages)
    for path in paths:
        url = _fill(path, values)
        headers = bearer if path.startswith("/api/") else {}
        response = client.get(url, headers=headers, follow_redirects=False)
        assert response.status_code < 500, (url, response.text)
        _assert_secure_headers(response, url)
        if path in pages and not path.startswith("/static"):
            assert response.headers["Content-Security-Policy"] == PAGE_CSP, url
        if path.startswith("/api/"):
            assert response.headers["Content-Security-Policy"] == API_CSP, url
    # refusals and unknown routes too
    client.cookies.clear()
    for url in ("/api/participants", "/api/nowhere", "/nowhere", "/worklist"):
        _assert_secure_headers(client.get(url, follow_redirects=False), url)


def test_pages_load_no_inline_script_or_style(
    client: TestClient,
    trial: CaptureService,
    enrol: Callable[..., Any],
    eligible_answers: Callable[..., dict[str, object]],
) -> None:
    """The pages' CSP allows nothing inline: no template may rely on it."""
    values = _values(trial, enrol, eligible_answers())
    _signed_in(client, client.app.state.users)  # type: ignore[attr-defined]
    for path in _get_paths(client.app):
        if path.startswith(("/api/", "/openapi", "/docs", "/redoc", "/static")):
            continue
        text = client.get(_fill(path, values)).text
        assert not re.search(r"<script(?![^>]*\bsrc=)", text), path
        assert not re.search(r"<style|\sstyle=|\son\w+=", text), path


@pytest.mark.parametrize("secure", [False, True])
def test_hsts_only_when_cookies_are_secure(
    trial: CaptureService, hasher: PasswordHasher, secure: bool
) -> None:
    app = create_app(trial.engine, hasher=hasher, secure_cookies=secure)
    with TestClient(app) as client:
        for url in ("/login", "/healthz", "/api/me"):
            response = client.get(url)
            _assert_secure_headers(response, url)
            assert ("Strict-Transport-Security" in response.headers) is secure, url
