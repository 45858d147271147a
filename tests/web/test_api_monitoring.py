"""Monitoring and lock on the API (SQLite and PostgreSQL): the readable audit trail, source data
verification by monitors only and at their sites only, and data locks that every write path
obeys (423 naming the lock, nothing stored) until an unlock that names its reason."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from stalwart.capture.enrolment import Allocation
from stalwart.capture.locks import NO_LOCK
from stalwart.capture.service import CaptureService

Counts = Callable[[Engine], dict[str, int]]
Login = Callable[..., dict[str, str]]
Enrol = Callable[..., Allocation]
LABS = {"CD4": 610, "HIVRNA": 400}
WK04 = dt.date(2006, 2, 2)


def _participant(trial: CaptureService, enrol: Enrol, site: str = "US01") -> str:
    a = enrol(trial, site)
    trial.record_visit(a.usubjid, "ENTRY", a.randomization_date, LABS, "nurse")
    trial.record_visit(a.usubjid, "WK04", WK04, LABS, "nurse")
    return a.usubjid


def _correct(client: TestClient, h: dict[str, str], usubjid: str, cd4: int) -> int:
    url = f"/api/participants/{usubjid}/visits/WK04"
    version = client.get(url, headers=h).json()["version"]
    body = {
        "visit_date": WK04.isoformat(),
        "labs": LABS | {"CD4": cd4},
        "reason": "transcription error",
        "version": version,
    }
    return client.put(url, json=body, headers=h).status_code


# -- the readable audit trail --------------------------------------------------------------------
def test_visit_trail_names_fields_by_label_with_old_and_new_values_and_the_reason(
    client: TestClient, login: Login, trial: CaptureService, enrol: Enrol
) -> None:
    u = _participant(trial, enrol)
    dm = login("data_manager")
    assert _correct(client, dm, u, 4900) == 200
    r = client.get(f"/api/participants/{u}/visits/WK04/audit-trail", headers=dm)
    assert r.status_code == 200, r.text
    trail = r.json()
    first = trail["entries"][0]
    (change,) = [e for e in trail["entries"] if e["action"] == "changed"]
    assert first["who"] == "nurse" and first["action"] == "entered"
    assert {c["field"] for c in first["changes"]} == {"Visit date", "CD4+ count", "HIV RNA"}
    assert change["who"] == "data_manager.all" and change["reason"] == "transcription error"
    assert change["changes"] == [
        {"field": "CD4+ count", "old": "610 cells/mm³", "new": "4,900 cells/mm³"}
    ]
    # a CD4 jump to 4,900 raises the protocol's soft-check query, in the same trail
    assert any(e["action"] == "query raised" for e in trail["entries"])
    assert trail["saved_by"] == "nurse" and trail["changed_by"] == "data_manager.all"
    assert trail["saved_at"].endswith("UTC") and trail["saved_at"][:4] != "2006"
    text = json.dumps(trail)
    for internal in ("participant_id", "visit_id", "record_id", "table_name", "LAB.", "lab_result"):
        assert internal not in text


def test_participant_trail_covers_randomization_to_queries_and_is_site_scoped(
    client: TestClient, login: Login, trial: CaptureService, enrol: Enrol
) -> None:
    u = _participant(trial, enrol)
    trial.queries.raise_on_field(u, "WK04", "LAB.CD4", "please confirm", "monitor")
    r = client.get(f"/api/participants/{u}/audit-trail", headers=login("monitor", "US01"))
    assert r.status_code == 200, r.text
    forms = [e["form"] for e in r.json()["entries"]]
    assert forms[:2] == ["Screening", "Randomization"]
    assert "Week 4 (WK04)" in forms and "Query on CD4+ count" in forms
    (randomized,) = [e for e in r.json()["entries"] if e["form"] == "Randomization"]
    fields = [c["field"] for c in randomized["changes"]]
    assert fields == ["Participant ID", "Consent date", "Randomization date", "Arm"]
    other = client.get(
        f"/api/participants/{u}/audit-trail", headers=login("site_coordinator", "GB01")
    )
    assert other.status_code == 404
    blinded = client.get(f"/api/participants/{u}/audit-trail", headers=login("dsmb"))
    assert blinded.status_code == 403


# -- source data verification --------------------------------------------------------------------
def test_a_monitor_verifies_once_and_a_correction_voids_it(
    client: TestClient, login: Login, trial: CaptureService, enrol: Enrol
) -> None:
    u = _participant(trial, enrol)
    url = f"/api/participants/{u}/visits/WK04/sdv"
    mon = login("monitor", "US01")
    r = client.post(url, json={"note": "checked against the lab report"}, headers=mon)
    assert r.status_code == 201, r.text
    again = client.post(url, json={}, headers=mon)
    assert again.status_code == 409 and "already source-verified" in again.text
    assert _correct(client, login("data_manager"), u, 640) == 200
    views = trial.verifications.of_participant(u, "x")
    assert [v.valid for v in views] == [False]
    assert views[0].void_reason == "visit corrected: transcription error"
    assert client.post(url, json={}, headers=mon).status_code == 201
    trail = client.get(f"/api/participants/{u}/visits/WK04/audit-trail", headers=mon).json()
    actions = [e["action"] for e in trail["entries"]]
    assert actions.count("source-verified") == 2 and "verification voided" in actions


@pytest.mark.parametrize(
    ("role", "site", "status"),
    [
        ("site_coordinator", "US01", 403),
        ("investigator", "US01", 403),
        ("data_manager", None, 403),
        ("monitor", "GB01", 404),  # a monitor of another site does not even see the visit
    ],
)
def test_only_a_monitor_of_the_site_may_verify(
    client: TestClient,
    login: Login,
    trial: CaptureService,
    enrol: Enrol,
    engine: Engine,
    row_counts: Counts,
    role: str,
    site: str | None,
    status: int,
) -> None:
    u = _participant(trial, enrol)
    headers = login(role, site)
    before = row_counts(engine)
    r = client.post(f"/api/participants/{u}/visits/WK04/sdv", json={}, headers=headers)
    assert r.status_code == status, r.text
    assert r.json()["error"]["message"]
    assert row_counts(engine) == before


def test_the_grid_shows_which_forms_are_verified(trial: CaptureService, enrol: Enrol) -> None:
    from stalwart.capture.listing import ListQuery

    u = _participant(trial, enrol)
    trial.verifications.verify_visit(u, "WK04", "monitor")
    (row,) = trial.lists.grid("x", ListQuery(search=u)).rows
    assert row.cells["WK04"].verified and not row.cells["ENTRY"].verified


# -- data lock -----------------------------------------------------------------------------------
def _writes(u: str, treated_days: list[str]) -> list[tuple[str, str, dict[str, object]]]:
    """Every write path of a participant's data, as (method, url, body)."""
    p = f"/api/participants/{u}"
    return [
        ("POST", f"{p}/visits/WK08", {"visit_date": "2006-03-02", "labs": LABS}),
        ("PUT", f"{p}/visits/WK04", {}),  # filled with the version below
        (
            "POST",
            f"{p}/unscheduled-visits",
            {"visit_date": "2006-02-20", "labs": {"CD4": 500}, "reason": "symptoms"},
        ),
        ("POST", f"{p}/visits/WK16/missed", {"reason": "travelling"}),
        (
            "POST",
            f"{p}/doses",
            {
                "treatment": "IL2",
                "cycle": 1,
                "days": [{"date": d, "administrations": 2} for d in treated_days],
            },
        ),
        ("POST", f"{p}/clinical-events", {"event_code": "PCP", "onset_date": "2006-02-20"}),
        (
            "POST",
            f"{p}/adverse-events",
            {
                "term": "Nausea",
                "grade": 1,
                "start_date": "2006-01-14",
                "end_date": "2006-01-15",
                "related": "POSSIBLE",
                "verbatim": "queasy",
                "outcome": "RECOVERED/RESOLVED",
                "action": "DOSE NOT CHANGED",
                "serious": False,
            },
        ),
        ("POST", f"{p}/disposition", {"status": "WITHDREW", "disposition_date": "2006-03-10"}),
        ("POST", f"{p}/queries", {"visit": "WK04", "field": "LAB.CD4", "text": "confirm"}),
        (
            "POST",
            f"{p}/deviations",
            {"category": "OTHER", "description": "late", "deviation_date": "2006-02-02"},
        ),
        ("POST", f"{p}/visits/WK04/sdv", {}),
    ]


def _il2_participant(trial: CaptureService, enrol: Enrol) -> tuple[str, list[str]]:
    a = enrol(trial, arm="IL2ART")
    trial.record_visit(a.usubjid, "ENTRY", a.randomization_date, LABS, "nurse")
    trial.record_visit(a.usubjid, "WK04", WK04, LABS, "nurse")
    days = [
        d.date.isoformat()
        for d in trial.calendar(a.arm, a.randomization_date).doses
        if d.treatment == "IL2" and d.cycle == 1
    ]
    return a.usubjid, days


def test_a_participant_lock_refuses_every_write_path_until_unlocked_with_a_reason(
    client: TestClient,
    login: Login,
    trial: CaptureService,
    enrol: Enrol,
    engine: Engine,
    row_counts: Counts,
) -> None:
    u, days = _il2_participant(trial, enrol)
    query = trial.queries.raise_on_field(u, "WK04", "LAB.HIVRNA", "units?", "monitor")
    answered = trial.queries.raise_on_field(u, "WK04", "visit_date", "date?", "monitor")
    trial.queries.answer(answered, "confirmed", "nurse")
    dm, site = login("data_manager"), login("investigator", "US01")
    mon = login("monitor", "US01")
    r = client.post(
        "/api/locks",
        json={"scope": "participant", "usubjid": u, "reason": "database lock for the interim"},
        headers=dm,
    )
    assert r.status_code == 201, r.text
    lock_id = r.json()["id"]
    version = client.get(f"/api/participants/{u}/visits/WK04", headers=dm).json()["version"]
    before = row_counts(engine)
    for method, url, body in _writes(u, days):
        if method == "PUT":
            body = {"visit_date": "2006-02-02", "labs": LABS | {"CD4": 700}, "reason": "typo"}
            body["version"] = version
        who = mon if url.endswith("/sdv") or url.endswith("/queries") else site
        if url.endswith("/deviations"):
            who = dm
        r = client.request(method, url, json=body, headers=who)
        assert r.status_code == 423, (method, url, r.text)
        error = r.json()["error"]
        assert error["type"] == "DataLockedError" and error["lock"]["id"] == lock_id
        assert f"lock {lock_id}: participant {u}" in error["message"]
        assert "database lock for the interim" in error["message"]
    answer = client.post(f"/api/queries/{query}/answer", json={"answer": "ok"}, headers=site)
    assert answer.status_code == 423
    signature = client.post(
        f"/api/participants/{u}/visits/WK04/signature",
        json={"password": "a long test password", "meaning": "I approve"},
        headers=site,
    )
    assert signature.status_code == 423
    assert row_counts(engine) == before
    # closing a query records the data manager's review and changes no datum: allowed
    closed = client.post(f"/api/queries/{answered}/close", json={"note": "fine"}, headers=dm)
    assert closed.status_code == 200, closed.text
    # unlock: the reason is required, only the data manager may, and only once
    unlock = f"/api/locks/{lock_id}/unlock"
    assert client.post(unlock, json={"reason": "  "}, headers=dm).status_code == 422
    assert client.post(unlock, json={}, headers=dm).status_code == 422
    assert client.post(unlock, json={"reason": "x"}, headers=site).status_code == 403
    r = client.post(unlock, json={"reason": "CD4 at WK04 must be corrected"}, headers=dm)
    assert r.status_code == 200, r.text
    assert client.post(unlock, json={"reason": "again"}, headers=dm).status_code == 409
    method, url, body = _writes(u, days)[0]
    assert client.request(method, url, json=body, headers=site).status_code == 201
    (view,) = trial.locks.list("x")
    assert not view.active and view.unlock_reason == "CD4 at WK04 must be corrected"
    actions = [
        e["action"]
        for e in client.get(f"/api/participants/{u}/audit-trail", headers=dm).json()["entries"]
        if e["form"] == "Data lock"
    ]
    assert actions == ["locked", "unlocked"]


def test_double_lock_and_bad_locks_are_refused(
    client: TestClient, login: Login, trial: CaptureService, enrol: Enrol
) -> None:
    u = _participant(trial, enrol)
    dm = login("data_manager")
    body = {"scope": "site", "site": "US01", "reason": "site closed"}
    assert client.post("/api/locks", json=body, headers=dm).status_code == 201
    again = client.post("/api/locks", json=body, headers=dm)
    assert again.status_code == 409 and "already locked by lock" in again.text
    bad = [
        {"scope": "participant", "reason": "x"},  # no participant named
        {"scope": "site", "reason": "x"},
        {"scope": "country", "reason": "x"},
        {"scope": "trial"},
        {"scope": "trial", "reason": "x", "cutoff": "2099-01-01"},
        {"scope": "trial", "reason": "x", "cutoff": "yesterday"},
    ]
    for b in bad:
        r = client.post("/api/locks", json=b, headers=dm)
        assert r.status_code == 422, (b, r.text)
    missing = {"scope": "participant", "usubjid": "STALWART-US01-9999", "reason": "x"}
    assert client.post("/api/locks", json=missing, headers=dm).status_code == 404
    coordinator, investigator = login("site_coordinator", "US01"), login("investigator", "US01")
    for headers in (coordinator, login("monitor"), investigator):
        r = client.post("/api/locks", json=body, headers=headers)
        assert r.status_code == 403, r.text
    # the site lock covers its participants and new randomizations at the site
    r = client.post(
        f"/api/participants/{u}/visits/WK08",
        json={"visit_date": "2006-03-02", "labs": LABS},
        headers=coordinator,
    )
    assert r.status_code == 423 and "site US01" in r.json()["error"]["message"]
    with pytest.raises(Exception, match="randomization at site US01 is locked"):
        enrol(trial, "US01")
    # site users see their site's locks; another site's users do not
    assert len(client.get("/api/locks", headers=investigator).json()) == 1
    assert client.get("/api/locks", headers=login("investigator", "GB01")).json() == []


def test_a_trial_lock_up_to_a_cutoff_freezes_what_is_dated_before_it_only(
    client: TestClient, login: Login, trial: CaptureService, enrol: Enrol
) -> None:
    u = _participant(trial, enrol)
    dm, site = login("data_manager"), login("site_coordinator", "US01")
    r = client.post(
        "/api/locks",
        json={"scope": "trial", "cutoff": "2006-02-15", "reason": "interim analysis 1"},
        headers=dm,
    )
    assert r.status_code == 201, r.text
    assert _correct(client, dm, u, 650) == 423  # WK04 (2006-02-02) is before the cut-off
    late = client.post(
        f"/api/participants/{u}/visits/WK08",
        json={"visit_date": "2006-03-02", "labs": LABS},
        headers=site,
    )
    assert late.status_code == 201, late.text  # follow-up continues after the cut-off
    early_ae = client.post(
        f"/api/participants/{u}/clinical-events",
        json={"event_code": "PCP", "onset_date": "2006-02-10"},
        headers=site,
    )
    assert early_ae.status_code == 423
    locks = client.get("/api/locks?active=true", headers=site).json()
    assert [lk["scope"] for lk in locks] == ["trial"]
    assert locks[0]["label"].startswith(f"lock {locks[0]['id']}: the whole trial up to 2006-02-15")


def test_reports_name_the_lock_they_ran_on(
    client: TestClient, login: Login, trial: CaptureService, enrol: Enrol
) -> None:
    from stalwart.reports.snapshot import take_snapshot

    _participant(trial, enrol)
    assert take_snapshot(trial.engine).lock == NO_LOCK
    lock_id = trial.locks.lock("trial", "final analysis", "dm", cutoff=dt.date(2008, 12, 31))
    label = take_snapshot(trial.engine).lock
    assert label.startswith(f"lock {lock_id}: the whole trial up to 2008-12-31, by dm at ")
    r = client.get("/api/reports/open", params={"format": "html"}, headers=login("data_manager"))
    assert r.status_code == 200 and f"lock {lock_id}: the whole trial" in r.text
