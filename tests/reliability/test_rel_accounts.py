"""Account lifecycle against a running ``stalwart serve`` with 2 workers, on both backends.

Deactivating a user, revoking one token, or a token's expiry passing: the very next API call
and page load get 401 in every worker (each request reads its token from the database; there is
no per-process cache to age out). Each check sends a burst of requests on fresh connections,
which the two workers share, right after the act; each one before the act was answered 200, so
both workers had seen the credentials alive.

After ``stalwart restore`` (credentials are not in backups) ``stalwart user reset-password``
reopens the trial with its own admin: the admin changes the temporary password, reactivates a
colleague and resets theirs; the audit chain runs on from the restored records, under the same
account ids.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import httpx2 as httpx
import pytest
import sqlalchemy as sa
from live_server import PASSWORD, Databases, LiveServer, add_users, bearer, cli, subprocess_env

from stalwart.capture.audit import verify_audit
from stalwart.capture.db import open_engine
from stalwart.capture.tables import AuditRecord, AuthToken
from stalwart.protocol.load import LoadedProtocol

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]
BURST = 12
"""Requests per check, each on its own connection (so both workers answer some)."""
TEMPORARY = "a temporary password"


def _statuses(
    url: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    cookies: dict[str, str] | None = None,
) -> list[int]:
    out = []
    for _ in range(BURST):
        with httpx.Client(base_url=url, timeout=30) as client:
            if cookies:
                client.cookies.update(cookies)
            out.append(client.get(path, headers=headers, follow_redirects=False).status_code)
    return out


def _page_session(url: str, username: str) -> dict[str, str]:
    """The session cookie of a login through the login form."""
    with httpx.Client(base_url=url, timeout=30) as client:
        page = client.get("/login").text
        match = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert match
        form = {"username": username, "password": PASSWORD, "csrf_token": match.group(1)}
        r = client.post("/login", data=form, follow_redirects=False)
        assert r.status_code == 303, r.text
        return {"stalwart_session": r.cookies["stalwart_session"]}


@pytest.mark.parametrize("backend", BACKENDS)
def test_deactivation_revocation_and_expiry_apply_at_once_in_every_worker(
    backend: str, databases: Databases, packaged: LoadedProtocol, tmp_path: Path
) -> None:
    url = databases.new(backend, packaged, folder=tmp_path)
    add_users(
        url,
        [
            ("boss", "admin", None),
            ("coord", "site_coordinator", "GB01"),
            ("inv", "investigator", "GB01"),
            ("mon", "monitor", None),
        ],
    )
    try:
        with LiveServer(url, workers=2, log_dir=tmp_path) as server:
            admin = bearer(server.url, "boss")
            # deactivation: the API token and the page session both die
            api, page = bearer(server.url, "coord"), _page_session(server.url, "coord")
            assert set(_statuses(server.url, "/api/me", headers=api)) == {200}
            assert set(_statuses(server.url, "/worklist", cookies=page)) == {200}
            with httpx.Client(base_url=server.url, timeout=30) as client:
                r = client.put(
                    "/api/users/coord/active",
                    headers=admin,
                    json={"active": False, "reason": "left the study"},
                )
            assert r.status_code == 200, r.text
            assert set(_statuses(server.url, "/api/me", headers=api)) == {401}
            assert set(_statuses(server.url, "/worklist", cookies=page)) == {401}

            # one token revoked by its id: that one dies, the other lives
            first, second = bearer(server.url, "inv"), bearer(server.url, "inv")
            assert set(_statuses(server.url, "/api/me", headers=first)) == {200}
            with httpx.Client(base_url=server.url, timeout=30) as client:
                tokens = client.get("/api/users/inv/tokens", headers=admin).json()
                r = client.delete(f"/api/tokens/{tokens[0]['id']}", headers=admin)
            assert r.status_code == 204, r.text
            assert set(_statuses(server.url, "/api/me", headers=first)) == {401}
            assert set(_statuses(server.url, "/api/me", headers=second)) == {200}

            # expiry passed: a token whose expires_at is now in the past
            late, late_page = bearer(server.url, "mon"), _page_session(server.url, "mon")
            assert set(_statuses(server.url, "/api/me", headers=late)) == {200}
            assert set(_statuses(server.url, "/queries", cookies=late_page)) == {200}
            engine = open_engine(url)
            try:
                with engine.begin() as conn:
                    conn.execute(
                        sa.update(AuthToken).values(expires_at="2000-01-01T00:00:00+00:00")
                    )
            finally:
                engine.dispose()
            assert set(_statuses(server.url, "/api/me", headers=late)) == {401}
            assert set(_statuses(server.url, "/queries", cookies=late_page)) == {401}
    finally:
        databases.drop(url)


def _stalwart(*args: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
    env = subprocess_env()
    if password is not None:
        env["STALWART_PASSWORD"] = password
    return subprocess.run(
        [sys.executable, "-m", "stalwart.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_restored_trial_is_reopened_by_its_own_accounts(
    backend: str, databases: Databases, packaged: LoadedProtocol, tmp_path: Path
) -> None:
    source = databases.new(backend, packaged, folder=tmp_path)
    target = databases.new(backend, folder=tmp_path)
    try:
        add_users(source, [("boss", "admin", None), ("coord", "site_coordinator", "GB01")])
        with LiveServer(source, workers=2, log_dir=tmp_path) as server:
            admin = bearer(server.url, "boss")
            with httpx.Client(base_url=server.url, timeout=30) as client:
                r = client.put(
                    "/api/users/coord/active",
                    headers=admin,
                    json={"active": False, "reason": "on leave"},
                )
                assert r.status_code == 200, r.text
        backup = tmp_path / "trial.odm.xml"
        assert cli("backup", "--database", source, "--out", str(backup)).returncode == 0
        restored = cli("restore", str(backup), "--database", target)
        assert restored.returncode == 0, restored.stderr
        engine = open_engine(target)
        try:
            before = verify_audit(engine)
            assert before.ok
            reset = _stalwart(
                "user",
                "reset-password",
                "--database",
                target,
                "--username",
                "boss",
                password=TEMPORARY,
            )
            assert reset.returncode == 0, reset.stderr
            with (
                LiveServer(target, workers=2, log_dir=tmp_path) as server,
                httpx.Client(base_url=server.url, timeout=30) as client,
            ):
                r = client.post("/api/token", json={"username": "boss", "password": PASSWORD})
                assert r.status_code == 401  # the old password did not come back
                r = client.post("/api/token", json={"username": "boss", "password": TEMPORARY})
                assert r.status_code == 401 and "new password" in r.json()["error"]["message"]
                change = {
                    "username": "boss",
                    "password": TEMPORARY,
                    "new_password": "the admin's own password",
                }
                assert client.post("/api/password", json=change).status_code == 204
                r = client.post(
                    "/api/token", json={"username": "boss", "password": "the admin's own password"}
                )
                assert r.status_code == 201, r.text
                admin = {"Authorization": f"Bearer {r.json()['access_token']}"}
                r = client.put(
                    "/api/users/coord/active",
                    headers=admin,
                    json={"active": True, "reason": "back after the restore"},
                )
                assert r.status_code == 200, r.text
                r = client.post(
                    "/api/users/coord/password-reset", headers=admin, json={"password": TEMPORARY}
                )
                assert r.status_code == 204, r.text
                change = {
                    "username": "coord",
                    "password": TEMPORARY,
                    "new_password": "green kettle above the harbour",
                }
                assert client.post("/api/password", json=change).status_code == 204
                r = client.post(
                    "/api/token",
                    json={"username": "coord", "password": "green kettle above the harbour"},
                )
                assert r.status_code == 201
            after = verify_audit(engine)
            assert after.ok and after.records > before.records
            with engine.connect() as conn:
                history = conn.execute(
                    sa.select(AuditRecord.sequence, AuditRecord.record_id, AuditRecord.reason)
                    .where(AuditRecord.table_name == "app_user")
                    .order_by(AuditRecord.sequence)
                ).all()
        finally:
            engine.dispose()
        ids = {row.record_id for row in history}
        assert len(ids) == 2  # the same two accounts before and after the restore
        reasons = [row.reason or "" for row in history]
        assert any(r.startswith("account deactivated") for r in reasons)
        assert any(r.startswith("password reset by cli") for r in reasons)
        assert any(r.startswith("account reactivated: back after the restore") for r in reasons)
        assert json.dumps(reasons).count(TEMPORARY) == 0
    finally:
        databases.drop(source)
        databases.drop(target)
