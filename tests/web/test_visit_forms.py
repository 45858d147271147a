"""Late, unscheduled and missed visits and the deviations log, by the API and the pages; the
study-entry visit with randomization (SQLite and PostgreSQL)."""

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
DAY = dt.timedelta(days=1)
RAND = D(2008, 6, 2)  # the app's today is 2009-03-01: every week-32 window has closed
LABS = {"CD4": 450, "CD4PCT": 22.5, "HIVRNA": "<50"}
PASSWORD = "a long test password"
Login = Callable[..., dict[str, str]]
Counts = Callable[[Engine], dict[str, int]]


def _participant(trial: CaptureService, enrol: Callable[..., Allocation]) -> str:
    return enrol(trial, "US01", screened=RAND - 5 * DAY, randomized=RAND).usubjid


def test_api_late_unscheduled_and_missed_visits(
    client: TestClient,
    trial: CaptureService,
    enrol: Callable[..., Allocation],
    login: Login,
    row_counts: Counts,
) -> None:
    usubjid = _participant(trial, enrol)
    coord = login("site_coordinator", "US01")
    late = {"visit_date": (RAND + 70 * DAY).isoformat(), "labs": LABS}
    before = row_counts(trial.engine)
    r = client.post(f"/api/participants/{usubjid}/visits/WK08", json=late, headers=coord)
    assert r.status_code == 422 and r.json()["error"]["field"] == "deviation_reason"
    assert "outside the window" in r.json()["error"]["message"]
    assert row_counts(trial.engine) == before
    r = client.post(
        f"/api/participants/{usubjid}/visits/WK08",
        json=late | {"deviation_reason": "participant travelling"},
        headers=coord,
    )
    assert r.status_code == 201, r.text
    r = client.post(
        f"/api/participants/{usubjid}/unscheduled-visits",
        json={"visit_date": (RAND + 10 * DAY).isoformat(), "labs": {"CD4": 300}, "reason": "fever"},
        headers=coord,
    )
    assert r.status_code == 201 and r.json()["visit_code"] == "UNS01"
    r = client.get(f"/api/participants/{usubjid}/visits/UNS01", headers=coord)
    assert r.status_code == 200 and r.json()["labs"] == {"CD4": "300"}
    r = client.post(
        f"/api/participants/{usubjid}/visits/WK12/missed",
        json={"reason": "in hospital"},
        headers=coord,
    )
    assert r.status_code == 201
    r = client.post(
        f"/api/participants/{usubjid}/visits/WK12/missed", json={"reason": ""}, headers=coord
    )
    assert r.status_code == 422
    calendar = client.get(f"/api/participants/{usubjid}", headers=coord).json()["calendar"]
    status = {v["code"]: (v["status"], v["out_of_window"]) for v in calendar}
    assert status["WK08"] == ("recorded", True) and status["WK12"] == ("missed", False)
    r = client.get("/api/deviations", params={"usubjid": usubjid}, headers=coord)
    assert [d["category"] for d in r.json()] == ["VISIT OUT OF WINDOW", "MISSED VISIT"]


def test_api_deviations_report_review_and_scope(
    client: TestClient, trial: CaptureService, enrol: Callable[..., Allocation], login: Login
) -> None:
    usubjid = _participant(trial, enrol)
    coord = login("site_coordinator", "US01")
    other = login("site_coordinator", "GB01")
    dm = login("data_manager")
    body = {"category": "OTHER", "description": "blood drawn late", "deviation_date": "2008-07-01"}
    r = client.post(f"/api/participants/{usubjid}/deviations", json=body, headers=coord)
    assert r.status_code == 201
    dev_id = r.json()["id"]
    r = client.post(
        f"/api/participants/{usubjid}/deviations", json=body | {"category": "X"}, headers=coord
    )
    assert r.status_code == 422 and r.json()["error"]["field"] == "category"
    assert client.get("/api/deviations", headers=other).json() == []
    r = client.post(f"/api/deviations/{dev_id}/review", json={"note": "ok"}, headers=coord)
    assert r.status_code == 403
    r = client.post(f"/api/deviations/{dev_id}/review", json={"note": "ok"}, headers=dm)
    assert r.status_code == 200
    (row,) = client.get("/api/deviations", headers=coord).json()
    assert row["reviewed_by"] == "data_manager.all" and row["source"] == "REPORTED"


def test_api_randomization_with_the_entry_visit(
    client: TestClient,
    trial: CaptureService,
    login: Login,
    eligible_answers: Callable[..., dict[str, object]],
) -> None:
    trial.screen("US01", "E1", RAND - DAY, eligible_answers(), "nurse")
    coord = login("site_coordinator", "US01")
    body = {
        "screening_number": "E1",
        "randomization_date": RAND.isoformat(),
        "consent_date": (RAND - DAY).isoformat(),
        "entry_labs": LABS,
    }
    r = client.post("/api/randomizations", json=body, headers=coord)
    assert r.status_code == 201, r.text
    usubjid = r.json()["usubjid"]
    r = client.get(f"/api/participants/{usubjid}/visits/ENTRY", headers=coord)
    assert r.status_code == 200 and r.json()["visit_date"] == RAND.isoformat()


def _page_login(client: TestClient, users: UserStore, role: str, site: str | None) -> str:
    name = f"{role}.visits"
    users.add_user(name, PASSWORD, role, "test-setup", site=site)
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
    assert token
    form = {"username": name, "password": PASSWORD, "csrf_token": token.group(1)}
    assert client.post("/login", data=form, follow_redirects=False).status_code == 303
    page = client.get("/worklist").text
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match
    return match.group(1)


def test_pages_late_unscheduled_missed_and_the_log(
    client: TestClient,
    trial: CaptureService,
    enrol: Callable[..., Allocation],
    users: UserStore,
) -> None:
    usubjid = _participant(trial, enrol)
    csrf = _page_login(client, users, "site_coordinator", "US01")
    form = {
        "csrf_token": csrf,
        "visit_date": (RAND + 70 * DAY).isoformat(),
        "LAB.CD4": "450",
        "LAB.CD4PCT": "22",
        "LAB.HIVRNA": "<50",
    }
    r = client.post(f"/participants/{usubjid}/visits/WK08", data=form)
    assert r.status_code == 422
    assert re.search(
        r'id="f-deviation_reason-error" role="alert">The visit date is outside', r.text
    )
    r = client.post(
        f"/participants/{usubjid}/visits/WK08",
        data=form | {"deviation_reason": "travelling"},
        follow_redirects=True,
    )
    assert r.status_code == 200 and 'id="out-of-window"' in r.text
    page = client.get(f"/participants/{usubjid}").text
    assert 'id="unscheduled-link"' in page and "record as missed" in page
    r = client.post(
        f"/participants/{usubjid}/unscheduled",
        data={"csrf_token": csrf, "visit_date": (RAND + 3 * DAY).isoformat(), "reason": ""},
    )
    assert r.status_code == 422
    assert 'id="f-reason-error" role="alert">Reason for the unscheduled visit is required' in r.text
    r = client.post(
        f"/participants/{usubjid}/unscheduled",
        data={
            "csrf_token": csrf,
            "visit_date": (RAND + 3 * DAY).isoformat(),
            "reason": "rash",
            "LAB.CD4": "380",
        },
        follow_redirects=True,
    )
    assert r.status_code == 200 and "Unscheduled visit 01" in r.text
    r = client.post(
        f"/participants/{usubjid}/visits/WK12/missed",
        data={"csrf_token": csrf, "reason": "in hospital"},
        follow_redirects=True,
    )
    assert r.status_code == 200 and "missed: in hospital" in r.text
    log = client.get("/deviations").text
    assert "VISIT OUT OF WINDOW" in log and "MISSED VISIT" in log and "travelling" in log


def test_page_randomization_saves_the_entry_visit(
    client: TestClient,
    trial: CaptureService,
    users: UserStore,
    eligible_answers: Callable[..., dict[str, object]],
    row_counts: Counts,
) -> None:
    trial.screen("US01", "E2", D(2009, 2, 20), eligible_answers(), "nurse")
    trial.record_consent("E2", D(2009, 2, 20), "nurse")
    csrf = _page_login(client, users, "site_coordinator", "US01")
    page = client.get("/randomize/E2").text
    assert '<label for="f-LAB-CD4">CD4+ count (cells/mm3)' in page
    form = {
        "csrf_token": csrf,
        "randomization_date": "2009-02-27",
        "LAB.CD4": "-5",
        "LAB.CD4PCT": "22",
        "LAB.HIVRNA": "<50",
    }
    before = row_counts(trial.engine)
    r = client.post("/randomize/E2", data=form)
    assert r.status_code == 422 and re.search(r'id="f-LAB-CD4-error" role="alert">-5', r.text)
    assert row_counts(trial.engine) == before  # not randomized without its entry visit
    r = client.post("/randomize/E2", data=form | {"LAB.CD4": "512"}, follow_redirects=True)
    assert r.status_code == 200 and "Randomized to" in r.text
    row = re.search(r'id="visit-ENTRY">(.*?)</tr>', r.text, re.S)
    assert row and 'class="status-recorded"' in row.group(1) and "2009-02-27" in row.group(1)


def test_three_wrong_fields_show_all_three_errors_at_once(
    client: TestClient,
    trial: CaptureService,
    enrol: Callable[..., Allocation],
    users: UserStore,
    login: Login,
    row_counts: Counts,
) -> None:
    usubjid = _participant(trial, enrol)
    coord = login("site_coordinator", "US01")
    csrf = _page_login(client, users, "site_coordinator", "US01")
    before = row_counts(trial.engine)
    body = {"visit_date": "2009-03-02", "labs": {"CD4": -5, "CD4PCT": 22, "HIVRNA": "abc"}}
    r = client.post(f"/api/participants/{usubjid}/visits/WK04", json=body, headers=coord)
    assert r.status_code == 422
    errors = r.json()["error"]["errors"]
    assert set(errors) == {"visit_date", "LAB.CD4", "LAB.HIVRNA"}
    assert (
        "in the future" in errors["visit_date"] and "outside the valid range" in errors["LAB.CD4"]
    )
    form = {
        "csrf_token": csrf,
        "visit_date": "2009-03-02",
        "LAB.CD4": "-5",
        "LAB.CD4PCT": "22",
        "LAB.HIVRNA": "abc",
    }
    r = client.post(f"/participants/{usubjid}/visits/WK04", data=form)
    assert r.status_code == 422
    for fid, text in [
        ("visit_date", "is in the future"),
        ("LAB-CD4", "outside the valid range"),
        ("LAB-HIVRNA", "is not a number"),
    ]:
        assert re.search(rf'id="f-{fid}-error" role="alert">[^<]*{text}', r.text), fid
    assert row_counts(trial.engine) == before
