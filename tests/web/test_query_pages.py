"""Queries from the pages: raised beside a visit by field, badges where the data is, a soft
check's query answered by the site, closed and re-opened (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from stalwart.capture.enrolment import Allocation
from stalwart.capture.service import CaptureService
from stalwart.capture.users import UserStore

D = dt.date
RAND = D(2008, 6, 2)
PASSWORD = "a long test password"
Counts = Callable[[Engine], dict[str, int]]


def _labs(cd4: float, pct: float = 30) -> dict[str, object]:
    return {"CD4": cd4, "CD4PCT": pct, "HIVRNA": "<50"}


def _page_login(client: TestClient, users: UserStore, role: str, site: str | None) -> str:
    name = f"{role}.queries"
    users.add_user(name, PASSWORD, role, "test-setup", site=site)
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
    assert token
    form = {"username": name, "password": PASSWORD, "csrf_token": token.group(1)}
    assert client.post("/login", data=form, follow_redirects=False).status_code == 303
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/queries").text)
    assert match
    return match.group(1)


def test_raise_by_field_beside_the_visit_and_see_the_badges(
    client: TestClient,
    trial: CaptureService,
    enrol: Callable[..., Allocation],
    users: UserStore,
    engine: Engine,
    row_counts: Counts,
) -> None:
    usubjid = enrol(trial, "US01", screened=D(2008, 5, 28), randomized=RAND).usubjid
    trial.record_visit(usubjid, "WK04", D(2008, 6, 30), _labs(600), "nurse")
    csrf = _page_login(client, users, "monitor", None)
    page = client.get(f"/participants/{usubjid}/visits/WK04").text
    assert 'id="raise-query"' in page and '<option value="LAB.CD4">CD4+ count</option>' in page
    url = f"/participants/{usubjid}/visits/WK04/queries"
    before = row_counts(engine)
    r = client.post(url, data={"csrf_token": csrf, "field": "LAB.CD4", "text": " "})
    assert (
        r.status_code == 422
        and 'id="f-text-error" role="alert">Query to the site is required' in r.text
    )
    r = client.post(url, data={"csrf_token": csrf, "field": "LAB.NOPE", "text": "why?"})
    assert r.status_code == 422 and re.search(r'id="f-field-error" role="alert">[^<]*NOPE', r.text)
    assert row_counts(engine) == before
    r = client.post(url, data={"csrf_token": csrf, "field": "LAB.CD4", "text": "source says 660"})
    assert r.status_code == 200 and "1 open query on CD4+ count" in r.text
    assert "source says 660" in r.text and "lab_result" not in r.text
    assert "1 open query" in client.get(f"/participants/{usubjid}").text
    listing = client.get("/queries").text
    assert "WK04</a> · CD4+ count" in listing and "LAB.CD4" not in listing
    # a role without raise_query sees no form and is refused before anything is read
    csrf = _page_login(client, users, "site_coordinator", "US01")
    assert 'id="raise-query"' not in client.get(f"/participants/{usubjid}/visits/WK04").text
    r = client.post(url, data={"csrf_token": csrf, "field": "LAB.CD4", "text": "x"})
    assert r.status_code == 403


def test_a_soft_check_query_answered_closed_and_reopened_on_the_pages(
    client: TestClient,
    trial: CaptureService,
    enrol: Callable[..., Allocation],
    users: UserStore,
) -> None:
    usubjid = enrol(trial, "US01", screened=D(2008, 5, 28), randomized=RAND).usubjid
    trial.record_visit(usubjid, "WK04", D(2008, 6, 30), _labs(821), "nurse")
    trial.record_visit(usubjid, "WK08", D(2008, 7, 28), _labs(4900, 90), "nurse")
    [q] = trial.queries.list("dm", usubjid=usubjid)
    csrf = _page_login(client, users, "site_coordinator", "US01")
    assert "1 open query" in client.get(f"/participants/{usubjid}").text
    visit = client.get(f"/participants/{usubjid}/visits/WK08").text
    assert "system: soft check CD4_CHANGE" in visit and "1 open query on CD4+ count" in visit
    r = client.post(
        f"/queries/{q.id}/answer",
        data={"csrf_token": csrf, "answer": "4900 confirmed by the lab"},
        follow_redirects=True,
    )
    assert r.status_code == 200 and "answered by site_coordinator.queries" in r.text
    assert (
        client.post(f"/queries/{q.id}/reopen", data={"csrf_token": csrf, "note": "x"}).status_code
        == 403
    )
    csrf = _page_login(client, users, "data_manager", None)
    r = client.post(
        f"/queries/{q.id}/close",
        data={"csrf_token": csrf, "note": "accepted"},
        follow_redirects=True,
    )
    assert "closed by data_manager.queries" in r.text
    r = client.post(f"/queries/{q.id}/reopen", data={"csrf_token": csrf, "note": ""})
    assert r.status_code == 422
    r = client.post(
        f"/queries/{q.id}/reopen",
        data={"csrf_token": csrf, "note": "the lab report says 490"},
        follow_redirects=True,
    )
    assert r.status_code == 200
    assert trial.queries.list("dm", usubjid=usubjid)[0].status == "OPEN"
    history = client.get(f"/queries/{q.id}").text
    steps = re.findall(r"<tr><td>[^<]+</td><td>([^<]+)</td><td>([^<]+)</td>", history)
    assert steps == [
        ("system: soft check CD4_CHANGE", "open"),
        ("site_coordinator.queries", "answered"),
        ("data_manager.queries", "closed"),
        ("data_manager.queries", "open"),
    ]
    assert "query re-opened: the lab report says 490" in history
    assert client.get("/queries/999999").status_code == 404
