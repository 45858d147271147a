"""A database that fails gives 503 with Retry-After on every route, never a 500; /readyz says why.

In process, on SQLite and PostgreSQL: the trial's tables vanish under a running app (the token
lookup fails first), PostgreSQL refuses connections to the database, and each failure SQLAlchemy
or psycopg can raise is mapped at the boundary; the API answers in its error shape, the pages
with a plain page. When the database is back, the same app serves again (no restart).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator

import httpx2 as httpx
import psycopg
import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine, make_url

from stalwart.capture.service import CaptureService
from stalwart.protocol.load import LoadedProtocol
from stalwart.web.app import create_app
from stalwart.web.errors import RETRY_AFTER_S

PASSWORD = "a long test password"

READS = ["/api/me", "/api/participants", "/api/screenings", "/api/queries", "/api/worklist"]
PAGES = ["/participants", "/worklist", "/queries", "/screening"]


def _no_tables(engine: Engine) -> None:
    """Every table of the trial gone, behind the app's back (a wiped or wrong database)."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("DROP SCHEMA public CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA public")
        else:
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            names = conn.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
            ).scalars()
            for name in list(names):
                conn.exec_driver_sql(f'DROP TABLE "{name}"')


@pytest.fixture()
def pooled(trial: CaptureService, hasher: PasswordHasher, today: dt.date) -> Iterator[TestClient]:
    """The app over a pre-pinging engine on the trial database (as ``stalwart serve`` builds)."""
    engine = sa.create_engine(trial.engine.url, pool_pre_ping=True)
    app = create_app(engine, today=lambda: today, hasher=hasher)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client
    engine.dispose()


def _bearer(client: TestClient) -> dict[str, str]:
    users = client.app.state.users  # type: ignore[attr-defined]
    users.add_user("dm", PASSWORD, "data_manager", "test-setup")
    token = client.post("/api/token", json={"username": "dm", "password": PASSWORD})
    assert token.status_code == 201, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def _login_form(client: TestClient) -> dict[str, str]:
    """The login form of ``dm``, with the CSRF token of a freshly loaded login page."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
    assert match is not None
    return {"username": "dm", "password": PASSWORD, "csrf_token": match.group(1)}


def _session_cookie(client: TestClient) -> None:
    page = client.post("/login", data=_login_form(client), follow_redirects=False)
    assert page.status_code == 303, page.text


def _assert_unavailable_api(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == str(RETRY_AFTER_S)
    error = response.json()["error"]
    assert error["type"] in ("ServiceUnavailable", "DatabaseError")
    assert "retry" in error["message"].lower()


def test_tables_gone_every_route_is_503_then_back_after_restore(
    pooled: TestClient, backend: str
) -> None:
    headers = _bearer(pooled)
    _session_cookie(pooled)
    engine: Engine = pooled.app.state.service.engine  # type: ignore[attr-defined]
    assert pooled.get("/readyz").status_code == 200
    _no_tables(engine)
    for path in READS:
        _assert_unavailable_api(pooled.get(path, headers=headers))
    # a write, and a token lookup with a token that was never issued: 503, not 401 or 500
    _assert_unavailable_api(pooled.post("/api/screenings", json={"site": "US01"}, headers=headers))
    _assert_unavailable_api(pooled.get("/api/me", headers={"Authorization": "Bearer nope"}))
    _assert_unavailable_api(pooled.post("/api/token", json={"username": "dm", "password": "x"}))
    for path in PAGES:
        page = pooled.get(path, follow_redirects=False)
        assert page.status_code == 503, (path, page.text)
        assert page.headers["Retry-After"] == str(RETRY_AFTER_S)
        assert "Service unavailable" in page.text
        assert page.headers["content-type"].startswith("text/html")
    login = pooled.post("/login", data=_login_form(pooled), follow_redirects=False)
    assert login.status_code == 503
    ready = pooled.get("/readyz")
    assert ready.status_code == 503
    assert ready.headers["Retry-After"] == str(RETRY_AFTER_S)
    checks = ready.json()["checks"]
    assert checks["database"]["ok"] is True
    assert checks["schema"]["ok"] is False and "no schema revision" in checks["schema"]["detail"]
    assert checks["audit"]["ok"] is False
    assert pooled.get("/healthz").status_code == 200  # liveness: the process answers


@pytest.fixture()
def pg_pooled(
    make_engine: Callable[..., Engine],
    packaged: LoadedProtocol,
    hasher: PasswordHasher,
    today: dt.date,
) -> Iterator[TestClient]:
    """``pooled`` on PostgreSQL only: refusing connections is the server's case."""
    trial_engine = make_engine("postgresql", packaged)
    engine = sa.create_engine(trial_engine.url, pool_pre_ping=True)
    app = create_app(engine, today=lambda: today, hasher=hasher)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client
    engine.dispose()


@pytest.mark.postgres
def test_postgresql_refusing_connections_is_503_and_recovers_without_restart(
    pg_pooled: TestClient, databases: object
) -> None:
    pooled = pg_pooled
    headers = _bearer(pooled)
    engine: Engine = pooled.app.state.service.engine  # type: ignore[attr-defined]
    name = make_url(str(engine.url)).database
    admin = databases.pg.require()  # type: ignore[attr-defined]
    with admin.connect() as conn:
        conn.exec_driver_sql(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
        conn.exec_driver_sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        )
    try:
        for path in READS:
            _assert_unavailable_api(pooled.get(path, headers=headers))
        _assert_unavailable_api(
            pooled.post(
                "/api/participants/NOPE/visits/ENTRY",
                json={"visit_date": "2006-01-01", "labs": {"CD4": 500}},
                headers=headers,
            )
        )
        pooled.cookies.set("stalwart_session", "a session that was never issued")
        page = pooled.get("/participants", follow_redirects=False)
        assert page.status_code == 503
        ready = pooled.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"]["ok"] is False
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
    assert pooled.get("/readyz").status_code == 200
    assert pooled.get("/api/participants", headers=headers).status_code == 200


FAILURES: list[Exception] = [
    sa_exc.OperationalError("SELECT 1", {}, Exception("connection refused")),
    sa_exc.InterfaceError("SELECT 1", {}, Exception("connection already closed")),
    sa_exc.ProgrammingError("SELECT 1", {}, Exception('relation "app_user" does not exist')),
    sa_exc.TimeoutError("QueuePool limit of size 4 overflow 0 reached"),
    psycopg.OperationalError("server closed the connection unexpectedly"),
]


@pytest.mark.parametrize("failure", FAILURES, ids=lambda e: type(e).__name__)
def test_each_database_failure_maps_to_503_on_the_api_and_the_pages(
    client: TestClient, failure: Exception
) -> None:
    app = client.app

    def broken() -> None:
        raise failure

    app.get("/api/broken")(broken)  # type: ignore[attr-defined]
    app.get("/broken")(broken)  # type: ignore[attr-defined]
    _assert_unavailable_api(client.get("/api/broken"))
    page = client.get("/broken")
    assert page.status_code == 503
    assert page.headers["Retry-After"] == str(RETRY_AFTER_S)
    assert "Service unavailable" in page.text


def test_healthz_is_liveness_and_readyz_checks_the_schema_revision(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "ready"
    assert {name: c["ok"] for name, c in body["checks"].items()} == {
        "database": True,
        "schema": True,
        "audit": True,
    }
    engine: Engine = client.app.state.service.engine  # type: ignore[attr-defined]
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0001'"))
    stale = client.get("/readyz")
    assert stale.status_code == 503
    assert "at revision 0001, this release expects" in stale.json()["checks"]["schema"]["detail"]


def test_health_operations_are_public_in_openapi(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/healthz", "/readyz"):
        assert paths[path]["get"]["x-stalwart-access"] == "public"
