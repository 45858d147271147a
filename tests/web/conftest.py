"""Web fixtures: the app over the ``trial`` database (SQLite and PostgreSQL), and users by role.

``client``
    A ``TestClient`` of ``create_app`` over the ``trial`` fixture's database, ``today`` fixed.
``login(role, site=None, username=None)``
    Creates a user of that role (real argon2id, cheap parameters) and returns the headers of a
    bearer token for it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from stalwart.capture.service import CaptureService
from stalwart.capture.users import UserStore
from stalwart.web.app import create_app

PASSWORD = "a long test password"


@pytest.fixture(scope="session")
def hasher() -> PasswordHasher:
    """argon2id with cheap parameters: the real algorithm, fast enough for tests."""
    return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture()
def client(trial: CaptureService, hasher: PasswordHasher, today: dt.date) -> Iterator[TestClient]:
    app = create_app(trial.engine, today=lambda: today, hasher=hasher)
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture()
def users(client: TestClient) -> UserStore:
    store: UserStore = client.app.state.users  # type: ignore[attr-defined]
    return store


@pytest.fixture()
def login(client: TestClient, users: UserStore) -> Callable[..., dict[str, str]]:
    def make(role: str, site: str | None = None, username: str | None = None) -> dict[str, str]:
        name = username or f"{role}.{site or 'all'}".lower()
        users.add_user(name, PASSWORD, role, "test-setup", site=site)
        response = client.post("/api/token", json={"username": name, "password": PASSWORD})
        assert response.status_code == 201, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    return make
