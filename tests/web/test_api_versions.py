"""A visit's version on the API (ETag, ``version``, If-Match) and on its page (a hidden field):
a correction from a stale read is refused naming what changed, and nothing is written."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from stalwart.capture.enrolment import Allocation
from stalwart.capture.service import CaptureService
from stalwart.capture.users import UserStore

Counts = Callable[[Engine], dict[str, int]]
Login = Callable[..., dict[str, str]]
PASSWORD = "a long test password"
LABS = {"CD4": 510, "HIVRNA": 12000}


def _visit(trial: CaptureService, enrol: Callable[..., Allocation]) -> str:
    a = enrol(trial, "US01")
    trial.record_visit(a.usubjid, "WK04", dt.date(2006, 2, 2), LABS, "nurse")
    return f"/api/participants/{a.usubjid}/visits/WK04"


def _put(cd4: int, **extra: object) -> dict[str, object]:
    return {"visit_date": "2006-02-02", "labs": LABS | {"CD4": cd4}, "reason": "typo"} | extra


def test_get_gives_the_version_as_etag_and_in_the_body(
    client: TestClient, login: Login, trial: CaptureService, enrol: Callable[..., Allocation]
) -> None:
    url = _visit(trial, enrol)
    r = client.get(url, headers=login("monitor", "US01"))
    assert r.status_code == 200
    assert r.headers["ETag"] == f'"{r.json()["version"]}"' and r.json()["version"] > 0


def test_stale_if_match_is_412_and_stale_body_version_is_409_naming_the_change(
    client: TestClient,
    login: Login,
    trial: CaptureService,
    enrol: Callable[..., Allocation],
    engine: Engine,
    row_counts: Counts,
) -> None:
    url = _visit(trial, enrol)
    h = login("data_manager")
    read = client.get(url, headers=h)
    etag, version = read.headers["ETag"], read.json()["version"]
    assert client.put(url, json=_put(520), headers=h | {"If-Match": etag}).status_code == 200
    before = row_counts(engine)
    r = client.put(url, json=_put(530), headers=h | {"If-Match": etag})
    assert r.status_code == 412, r.text
    error = r.json()["error"]
    assert error["type"] == "PreconditionFailedError" and error["version"] == version
    [change] = error["changes"]
    assert (change["field"], change["seen"], change["now"]) == ("LAB.CD4", "510", "520")
    assert change["changed_by"] == "data_manager.all" and change["changed_at"]
    assert r.headers["ETag"] == f'"{error["current_version"]}"'
    r = client.put(url, json=_put(530, version=version), headers=h)
    assert r.status_code == 409 and r.json()["error"]["type"] == "StaleVersionError"
    assert row_counts(engine) == before
    assert client.get(url, headers=h).json()["labs"]["CD4"] == "520"


@pytest.mark.parametrize(
    ("extra", "headers", "status", "expected"),
    [
        ({}, {}, 409, "must name the version it was made from"),
        ({}, {"If-Match": "*"}, 422, "is not a version"),
        ({}, {"If-Match": '"1", "2"'}, 422, "is not a version"),
        ({}, {"If-Match": '"abc"'}, 422, "is not a version"),
        ({"version": True}, {}, 422, "version"),
        ({"version": -1}, {}, 422, "version"),
        ({"version": 2**40}, {}, 422, "version"),
        ({"version": "x"}, {}, 422, "version"),
        ({"version": 1}, {"If-Match": '"2"'}, 422, "differs from If-Match"),
    ],
)
def test_a_missing_or_malformed_version_is_refused_and_changes_nothing(
    client: TestClient,
    login: Login,
    trial: CaptureService,
    enrol: Callable[..., Allocation],
    engine: Engine,
    row_counts: Counts,
    extra: dict[str, object],
    headers: dict[str, str],
    status: int,
    expected: str,
) -> None:
    url = _visit(trial, enrol)
    h = login("data_manager")
    before = row_counts(engine)
    r = client.put(url, json=_put(600, **extra), headers=h | headers)
    assert r.status_code == status, r.text
    assert expected in r.json()["error"]["message"]
    assert row_counts(engine) == before


def _page_login(client: TestClient, users: UserStore) -> str:
    users.add_user("dm.page", PASSWORD, "data_manager", "test-setup")
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
    assert token
    form = {"username": "dm.page", "password": PASSWORD, "csrf_token": token.group(1)}
    assert client.post("/login", data=form, follow_redirects=False).status_code == 303
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/worklist").text)
    assert csrf
    return csrf.group(1)


def test_the_page_carries_the_version_and_shows_both_values_of_a_stale_field(
    client: TestClient,
    users: UserStore,
    trial: CaptureService,
    enrol: Callable[..., Allocation],
    engine: Engine,
    row_counts: Counts,
) -> None:
    page_url = _visit(trial, enrol).removeprefix("/api")
    csrf = _page_login(client, users)
    hidden = re.search(r'name="version" value="(\d+)"', client.get(page_url).text)
    assert hidden
    usubjid = page_url.split("/")[2]
    # someone else corrects CD4 after this form was opened
    trial.correct_visit(
        usubjid,
        "WK04",
        dt.date(2006, 2, 2),
        LABS | {"CD4": 520},
        "re-issued",
        "nurse",
        version=int(hidden.group(1)),
    )
    form = {
        "csrf_token": csrf,
        "version": hidden.group(1),
        "visit_date": "2006-02-02",
        "LAB.CD4": "600",
        "LAB.HIVRNA": "12000",
        "reason": "source verified",
    }
    before = row_counts(engine)
    r = client.post(page_url, data=form)
    assert r.status_code == 409
    assert "changed by someone else after you opened the form" in r.text
    assert re.search(r'id="f-LAB-CD4-error" role="alert">[^<]*you saw 510, now 520', r.text)
    assert 'value="600"' in r.text  # the entry is kept
    assert row_counts(engine) == before
    current = re.search(r'name="version" value="(\d+)"', r.text)
    assert current and int(current.group(1)) > int(hidden.group(1))
    r = client.post(page_url, data=form | {"version": current.group(1)}, follow_redirects=False)
    assert r.status_code == 303
    assert trial.records.visit(usubjid, "WK04", "dm").labs["CD4"] == "600"
    # a form without its version (a tampered or old page) saves nothing
    r = client.post(page_url, data={k: v for k, v in form.items() if k != "version"})
    assert r.status_code == 409 and "must name the version" in r.text
