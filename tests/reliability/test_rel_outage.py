"""The database fails under a running ``stalwart serve`` (2 workers), then comes back.

PostgreSQL: the database refuses connections (``ALLOW_CONNECTIONS false``, every session cut),
then is dropped, then comes back (recreated from a copy taken while it was refused). SQLite: the
file's tables vanish (an empty database copied over it with SQLite's backup API, as a wrong
restore would), then the data comes back the same way. During each outage 200 requests, reads
and writes, API and pages, signed in by token and by session cookie, and logins: every one is a
503 with ``Retry-After`` (the API's error shape, a plain page for the pages), not one 500;
``/readyz`` says 503 naming what failed while ``/healthz`` stays 200 (liveness). Afterwards, with
the same server processes, ``/readyz`` is 200 and reads and writes succeed: no restart.
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from live_server import PASSWORD, Databases, LiveServer, add_users, bearer
from sqlalchemy.engine import make_url

from stalwart.capture.db import open_engine
from stalwart.capture.service import CaptureService
from stalwart.protocol.load import LoadedProtocol

WORKERS = 2
REQUESTS = 200
SCREENED = dt.date(2006, 1, 2)


def _requests(usubjid: str, answers: dict[str, object]) -> list[tuple[str, str, Any]]:
    """(method, path, JSON body or form) of the mix: API reads and writes, pages, logins."""
    number = iter(range(10**6))
    return [
        ("GET", "/api/participants", None),
        ("GET", f"/api/participants/{usubjid}", None),
        ("GET", "/api/me", None),
        ("GET", "/api/queries", None),
        (
            "POST",
            "/api/screenings",
            lambda: {
                "site": "US01",
                "screening_number": f"OUT-{next(number)}",
                "screening_date": SCREENED.isoformat(),
                "answers": answers,
            },
        ),
        (
            "POST",
            f"/api/participants/{usubjid}/adverse-events",
            {
                "term": "Fatigue",
                "grade": 1,
                "start_date": "2006-02-01",
                "related": "UNLIKELY",
                "verbatim": "fever",
                "outcome": "RECOVERED/RESOLVED",
                "action": "DOSE NOT CHANGED",
                "serious": False,
            },
        ),
        (
            "PUT",
            f"/api/participants/{usubjid}/visits/ENTRY",
            lambda: {
                "visit_date": "2006-01-05",
                "labs": {"CD4": 500 + next(number) % 300, "HIVRNA": 400},
                "reason": "transcription",
            },
        ),
        ("POST", "/api/token", {"username": "dm", "password": PASSWORD}),
        ("PAGE", "/worklist", None),
        ("PAGE", f"/participants/{usubjid}", None),
        ("PAGE", f"/participants/{usubjid}/visits/ENTRY", None),
        ("LOGIN", "/login", None),
        (
            "FORM",
            f"/participants/{usubjid}/events/adverse",
            {
                "term": "Headache",
                "grade": "1",
                "start_date": "2006-02-02",
                "related": "POSSIBLE",
                "verbatim": "headache",
                "outcome": "RECOVERED/RESOLVED",
                "action": "DOSE NOT CHANGED",
            },
        ),
    ]


class Walker:
    """Sends the mix round-robin as the data manager (token, session; the site coordinator
    screens) and counts the answers."""

    def __init__(self, server: LiveServer, usubjid: str, answers: dict[str, object]) -> None:
        self.api = bearer(server.url, "dm")
        self.screener = bearer(server.url, "coord")  # the data manager does not screen
        self.pages = httpx.Client(base_url=server.url, timeout=30)
        self.anonymous = httpx.Client(base_url=server.url, timeout=30)
        self.mix = _requests(usubjid, answers)
        self.version: object = None
        """The visit's version as last read (corrections are made from it)."""
        page = self.pages.post("/login", data=self._login_form(self.pages), follow_redirects=False)
        assert page.status_code == 303, page.text
        events = self.pages.get(f"/participants/{usubjid}/events").text
        match = re.search(r'name="csrf_token" value="([^"]+)"', events)
        assert match is not None, events
        self.csrf = match.group(1)  # the session's, for the forms

    @staticmethod
    def _login_form(client: httpx.Client) -> dict[str, str]:
        """The login form with the CSRF token of a freshly loaded login page (no database)."""
        page = client.get("/login")
        match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert match is not None, page.text
        return {"username": "dm", "password": PASSWORD, "csrf_token": match.group(1)}

    def close(self) -> None:
        self.pages.close()
        self.anonymous.close()

    def send(self, k: int) -> tuple[str, httpx.Response]:
        method, path, body = self.mix[k % len(self.mix)]
        body = body() if callable(body) else body
        if method == "PAGE":
            return f"GET {path}", self.pages.get(path, follow_redirects=False)
        if method == "FORM":
            form = {**body, "csrf_token": self.csrf}
            return f"POST {path}", self.pages.post(path, data=form, follow_redirects=False)
        if method == "LOGIN":  # a browser that loads the form, then signs in
            with httpx.Client(base_url=str(self.pages.base_url), timeout=30) as browser:
                form = self._login_form(browser)
                return f"POST {path}", browser.post(path, data=form, follow_redirects=False)
        headers = self.screener if path == "/api/screenings" else self.api
        if method == "PUT":  # a correction is made from the version last read (stale when down)
            read = self.anonymous.get(path, headers=self.api)
            if read.status_code == 200:
                self.version = read.json()["version"]
            body = {**body, "version": self.version}
        response = self.anonymous.request(method, path, json=body, headers=headers)
        return f"{method} {path}", response

    def outage(self, n: int) -> Counter[str]:
        """``n`` requests while the database is down: each must be a 503 with Retry-After."""
        wrong: list[str] = []
        statuses: Counter[str] = Counter()
        for k in range(n):
            what, r = self.send(k)
            statuses[str(r.status_code)] += 1
            if r.status_code != 503 or not r.headers.get("Retry-After", "").isdigit():
                wrong.append(f"{what}: {r.status_code} {r.headers} {r.text[:200]}")
            elif what.startswith(("GET /api", "POST /api", "PUT /api")):
                if r.json()["error"]["type"] not in ("ServiceUnavailable", "DatabaseError"):
                    wrong.append(f"{what}: {r.text[:200]}")
            elif "Service unavailable" not in r.text:
                wrong.append(f"{what}: not the unavailable page: {r.text[:200]}")
        assert not wrong, f"{len(wrong)} of {n} not a 503 with Retry-After:\n" + "\n".join(
            wrong[:10]
        )
        return statuses


def _not_ready(server: LiveServer, failed: str) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.get("/healthz").status_code == 200  # liveness needs no database
        for _ in range(2 * WORKERS):  # whichever worker answers
            ready = client.get("/readyz")
            assert ready.status_code == 503, ready.text
            assert ready.headers["Retry-After"].isdigit()
            assert ready.json()["checks"][failed]["ok"] is False, ready.text


def _back(server: LiveServer, walker: Walker, timeout: float = 30.0) -> None:
    """Ready again in every worker, then reads and a write succeed (the same processes)."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=server.url, timeout=30) as client:
        while True:
            answers = [client.get("/readyz").status_code for _ in range(2 * WORKERS)]
            if answers == [200] * len(answers):
                break
            assert time.monotonic() < deadline, f"/readyz still {answers} after {timeout} s"
            time.sleep(0.2)
        for k in range(2 * len(walker.mix)):
            what, r = walker.send(k)
            if what.startswith("POST /api/token"):
                assert r.status_code == 201, (what, r.text)
            elif what.startswith(("POST /login", "POST /participants")):
                assert r.status_code == 303, (what, r.status_code, r.text[-500:])
            else:
                assert r.status_code in (200, 201), (what, r.status_code, r.text[:300])


@contextmanager
def _serving(
    backend: str,
    databases: Databases,
    packaged: LoadedProtocol,
    enrol: Callable[..., Any],
    answers: dict[str, object],
    folder: Path,
) -> Iterator[tuple[str, LiveServer, Walker]]:
    url = databases.new(backend, packaged, folder=folder)
    engine = open_engine(url)
    try:
        service = CaptureService.open(engine)
        allocation = enrol(service, "US01", "US01-0001")
        service.record_visit(
            allocation.usubjid,
            "ENTRY",
            allocation.randomization_date,
            {"CD4": 610, "HIVRNA": 400},
            "setup",
        )
    finally:
        engine.dispose()
    add_users(url, [("dm", "data_manager", None), ("coord", "site_coordinator", "US01")])
    server = LiveServer(url, workers=WORKERS, log_dir=folder)
    walker: Walker | None = None
    try:
        server.start()
        walker = Walker(server, allocation.usubjid, answers)
        yield url, server, walker
        assert server.members(), "the server died"
        log = server.log_text()
        assert "Traceback" not in log, log[-3000:]
        assert " 500 " not in log, log[-3000:]
    finally:
        if walker is not None:
            walker.close()
        server.close()
        databases.drop(url)


@pytest.mark.postgres
def test_postgresql_refused_then_dropped_then_back_gives_only_503s_and_no_restart(
    databases: Any,
    packaged: LoadedProtocol,
    enrol: Callable[..., Any],
    eligible_answers: Callable[..., dict[str, object]],
    tmp_path: Path,
) -> None:
    admin = databases.pg.require()
    with _serving("postgresql", databases, packaged, enrol, eligible_answers(), tmp_path) as (
        url,
        server,
        walker,
    ):
        name = make_url(url).database
        copy = f"{name}_kept"
        pids = sorted(server.members())
        with admin.connect() as conn:
            conn.exec_driver_sql(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
            conn.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            )
            conn.exec_driver_sql(f"CREATE DATABASE {copy} TEMPLATE {name}")
        try:
            refused = walker.outage(REQUESTS // 2)
            _not_ready(server, "database")
            with admin.connect() as conn:
                conn.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")
            dropped = walker.outage(REQUESTS // 2)
            _not_ready(server, "database")
            with admin.connect() as conn:
                conn.exec_driver_sql(f"CREATE DATABASE {name} TEMPLATE {copy}")
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {copy} WITH (FORCE)")
        assert refused + dropped == Counter({"503": REQUESTS})
        _back(server, walker)
        assert sorted(server.members()) == pids, "a process was restarted"


def _copy_over(source: Path, target: Path) -> None:
    """SQLite's online backup of ``source`` onto ``target``: its whole content replaced, in a
    transaction the server's connections see (they keep their file open)."""
    with sqlite3.connect(source) as src, sqlite3.connect(target, timeout=30) as dst:
        src.backup(dst)
    src.close()
    dst.close()


def test_sqlite_tables_gone_then_back_gives_only_503s_and_no_restart(
    databases: Any,
    packaged: LoadedProtocol,
    enrol: Callable[..., Any],
    eligible_answers: Callable[..., dict[str, object]],
    tmp_path: Path,
) -> None:
    with _serving("sqlite", databases, packaged, enrol, eligible_answers(), tmp_path) as (
        url,
        server,
        walker,
    ):
        live = Path(str(make_url(url).database))
        kept, empty = tmp_path / "kept.db", tmp_path / "empty.db"
        _copy_over(live, kept)
        sqlite3.connect(empty).close()
        pids = sorted(server.members())
        _copy_over(empty, live)
        statuses = walker.outage(REQUESTS)
        _not_ready(server, "schema")
        assert statuses == Counter({"503": REQUESTS})
        _copy_over(kept, live)
        _back(server, walker)
        assert sorted(server.members()) == pids, "a process was restarted"
