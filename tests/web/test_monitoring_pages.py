"""Monitoring and lock on the pages: the readable audit trail (labels, before and after, no
internal ids), the visit banner (saved when and by whom, signature, SDV), the monitor's SDV
button, and the lock page (lock, refusal beside the field, unlock with a reason)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

from fastapi.testclient import TestClient

from stalwart.capture.enrolment import Allocation
from stalwart.capture.service import CaptureService
from stalwart.capture.users import UserStore

PASSWORD = "a long test password"
LABS = {"CD4": 610, "HIVRNA": 400}


def _log_in(client: TestClient, users: UserStore, role: str, site: str | None = None) -> str:
    """Log in as a new user of ``role``; the session's CSRF token (read from the locks page)."""
    name = f"{role}.page.{site or 'all'}".lower()
    users.add_user(name, PASSWORD, role, "test-setup", site=site)
    client.cookies.clear()
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
    assert token
    form = {"username": name, "password": PASSWORD, "csrf_token": token.group(1)}
    r = client.post("/login", data=form, follow_redirects=False)
    assert r.status_code == 303, r.text
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/locks").text)
    assert found
    return found.group(1)


def _visit(trial: CaptureService, enrol: Callable[..., Allocation]) -> str:
    a = enrol(trial, "US01")
    trial.record_visit(a.usubjid, "WK04", dt.date(2006, 2, 2), LABS, "nurse.us01")
    version = trial.records.visit(a.usubjid, "WK04", "x").version
    trial.correct_visit(
        a.usubjid, "WK04", dt.date(2006, 2, 2), LABS | {"CD4": 640}, "typo", "dm", version=version
    )
    return a.usubjid


def test_audit_pages_read_as_labels_and_values_and_the_banner_says_who_saved_when(
    client: TestClient, users: UserStore, trial: CaptureService, enrol: Callable[..., Allocation]
) -> None:
    u = _visit(trial, enrol)
    _log_in(client, users, "monitor", "US01")
    visit = client.get(f"/participants/{u}/visits/WK04").text
    assert re.search(
        r"Saved \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC by nurse\.us01; last changed", visit
    )
    assert "Visit date 2006-02-02" in visit and "Not source-verified" in visit
    page = client.get(f"/participants/{u}/visits/WK04/audit").text
    assert "CD4+ count" in page and "610 cells/mm³" in page and "640 cells/mm³" in page
    assert ">typo<" in page
    for internal in ("lab_result", "participant_id", "visit_id", "&#34;", "{"):
        assert internal not in page.split("<main")[1].split("</main>")[0], internal
    participant = client.get(f"/participants/{u}").text
    assert f'href="/participants/{u}/audit"' in participant
    whole = client.get(f"/participants/{u}/audit").text
    assert "Screening" in whole and "Randomization" in whole and "Week 4 (WK04)" in whole


def test_a_monitor_marks_a_form_source_verified_from_its_page(
    client: TestClient, users: UserStore, trial: CaptureService, enrol: Callable[..., Allocation]
) -> None:
    u = _visit(trial, enrol)
    csrf = _log_in(client, users, "monitor", "US01")
    assert "Mark source-verified" in client.get(f"/participants/{u}/visits/WK04").text
    r = client.post(f"/participants/{u}/visits/WK04/sdv", data={"csrf_token": csrf})
    assert r.status_code == 200 and "Source-verified by monitor.page.us01" in r.text
    assert "Mark source-verified" not in r.text
    grid = client.get("/participants-grid").text
    assert 'title="source-verified">SDV</abbr>' in grid
    # a site coordinator has no button, and the page refuses the post
    csrf = _log_in(client, users, "site_coordinator", "US01")
    assert "Mark source-verified" not in client.get(f"/participants/{u}/visits/WK04").text
    r = client.post(f"/participants/{u}/visits/WK04/sdv", data={"csrf_token": csrf})
    assert r.status_code == 403


def test_the_lock_page_locks_refuses_beside_the_field_and_unlocks_with_a_reason(
    client: TestClient, users: UserStore, trial: CaptureService, enrol: Callable[..., Allocation]
) -> None:
    u = _visit(trial, enrol)
    csrf = _log_in(client, users, "data_manager")
    r = client.post("/locks", data={"csrf_token": csrf, "scope": "participant", "usubjid": u})
    assert r.status_code == 422
    assert re.search(r'id="f-reason-error" role="alert">[^<]+', r.text)
    r = client.post(
        "/locks",
        data={"csrf_token": csrf, "scope": "participant", "usubjid": u, "reason": "interim 1"},
    )
    assert r.status_code == 200 and f'participant <a href="/participants/{u}">{u}</a>' in r.text
    visit = client.get(f"/participants/{u}/visits/WK04").text
    assert 'id="locked"' in visit and "Save correction" not in visit
    (lock,) = trial.locks.list("x")
    r = client.post(f"/locks/{lock.id}/unlock", data={"csrf_token": csrf, "reason": " "})
    assert r.status_code == 422 and "Not unlocked" in r.text
    r = client.post(
        f"/locks/{lock.id}/unlock", data={"csrf_token": csrf, "reason": "CD4 must be corrected"}
    )
    assert r.status_code == 200 and "CD4 must be corrected" in r.text
    assert "Save correction" in client.get(f"/participants/{u}/visits/WK04").text
    # a site coordinator reads the page but has no lock form and cannot post one
    csrf = _log_in(client, users, "site_coordinator", "US01")
    page = client.get("/locks").text
    assert 'id="lock-form"' not in page
    r = client.post("/locks", data={"csrf_token": csrf, "scope": "trial", "reason": "x"})
    assert r.status_code == 403
