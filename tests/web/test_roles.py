"""One test per role: what it may see and do through the API, and what it may not."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

Answers = Callable[..., dict[str, object]]
Login = Callable[..., dict[str, str]]
Counts = Callable[[Engine], dict[str, int]]
ARMS = ("NOTHER", "IL2ART", "IL2")
LABS = {"CD4": 610, "HIVRNA": 400}


@pytest.fixture()
def study(client: TestClient, login: Login, eligible_answers: Answers) -> dict[str, Any]:
    """Two participants, at US01 and GB01, each with a week-4 visit and a reported event."""
    made: dict[str, Any] = {}
    for site in ("US01", "GB01"):
        h = login("site_coordinator", site)
        number = f"{site}-1"
        r = client.post(
            "/api/screenings",
            json={
                "site": site,
                "screening_number": number,
                "screening_date": "2006-01-02",
                "answers": eligible_answers(),
            },
            headers=h,
        )
        assert r.status_code == 201
        r = client.post(
            "/api/randomizations",
            json={
                "screening_number": number,
                "randomization_date": "2006-01-05",
                "consent_date": "2006-01-02",
            },
            headers=h,
        )
        assert r.status_code == 201, r.text
        usubjid = r.json()["usubjid"]
        r = client.post(
            f"/api/participants/{usubjid}/visits/WK04",
            json={"visit_date": "2006-02-02", "labs": LABS},
            headers=h,
        )
        assert r.status_code == 201
        r = client.post(
            f"/api/participants/{usubjid}/clinical-events",
            json={"event_code": "TB", "onset_date": "2006-02-10"},
            headers=h,
        )
        assert r.status_code == 201
        made[site] = {"usubjid": usubjid, "event": r.json()["id"], "headers": h}
    return made


def _visit(client: TestClient, h: dict[str, str], usubjid: str) -> int:
    return client.post(
        f"/api/participants/{usubjid}/visits/WK08",
        json={"visit_date": "2006-03-02", "labs": LABS},
        headers=h,
    ).status_code


def test_admin_manages_users_but_enters_no_data(
    client: TestClient, login: Login, study: dict[str, Any]
) -> None:
    h = login("admin")
    r = client.post(
        "/api/users",
        json={
            "username": "new.inv",
            "password": "long password 1",
            "role": "investigator",
            "site": "GB01",
        },
        headers=h,
    )
    assert r.status_code == 201 and r.json()["site"] == "GB01"
    assert "new.inv" in [u["username"] for u in client.get("/api/users", headers=h).json()]
    r = client.post(
        "/api/users",
        json={"username": "x", "password": "long password 1", "role": "investigator"},
        headers=h,
    )
    assert r.status_code == 422 and r.json()["error"]["field"] == "site"
    assert _visit(client, h, study["US01"]["usubjid"]) == 403
    assert len(client.get("/api/participants", headers=h).json()) == 2


def test_data_manager_sees_all_sites_and_corrects_data(
    client: TestClient, login: Login, study: dict[str, Any]
) -> None:
    h = login("data_manager")
    rows = client.get("/api/participants", headers=h).json()
    assert {r["site"] for r in rows} == {"US01", "GB01"} and all(r["arm"] in ARMS for r in rows)
    u = study["GB01"]["usubjid"]
    etag = client.get(f"/api/participants/{u}/visits/WK04", headers=h).headers["ETag"]
    r = client.put(
        f"/api/participants/{u}/visits/WK04",
        json={
            "visit_date": "2006-02-02",
            "labs": {"CD4": 620, "HIVRNA": 400},
            "reason": "source verified",
        },
        headers=h | {"If-Match": etag},
    )
    assert r.status_code == 200
    r = client.post(
        f"/api/participants/{u}/queries", json={"field": "CD4", "text": "please confirm"}, headers=h
    )
    assert r.status_code == 201
    assert (
        client.post(
            "/api/screenings",
            json={
                "site": "US01",
                "screening_number": "D",
                "screening_date": "2006-01-02",
                "answers": {},
            },
            headers=h,
        ).status_code
        == 403
    )


def test_site_coordinator_sees_only_its_site(
    client: TestClient, study: dict[str, Any], engine: Engine, row_counts: Counts
) -> None:
    gb, us = study["GB01"], study["US01"]
    h = gb["headers"]
    assert [p["usubjid"] for p in client.get("/api/participants", headers=h).json()] == [
        gb["usubjid"]
    ]
    before = row_counts(engine)
    assert client.get(f"/api/participants/{us['usubjid']}", headers=h).status_code == 404
    assert _visit(client, h, us["usubjid"]) == 404
    assert (
        client.get(f"/api/participants/{us['usubjid']}/visits/WK04/audit", headers=h).status_code
        == 404
    )
    assert client.get("/api/worklist?site=US01", headers=h).status_code == 404
    assert {i["site"] for i in client.get("/api/worklist", headers=h).json()} <= {"GB01"}
    assert row_counts(engine) == before
    assert _visit(client, h, gb["usubjid"]) == 201
    r = client.post(
        f"/api/participants/{gb['usubjid']}/visits/WK04/signature",
        json={"password": "a long test password", "meaning": "I approve"},
        headers=h,
    )
    assert r.status_code == 403  # coordinators do not sign
    assert client.get("/api/summary", headers=h).status_code == 403


def test_investigator_signs_and_a_correction_voids_the_signature(
    client: TestClient, login: Login, study: dict[str, Any]
) -> None:
    h = login("investigator", "GB01")
    u = study["GB01"]["usubjid"]
    url = f"/api/participants/{u}/visits/WK04/signature"
    r = client.post(url, json={"password": "wrong one", "meaning": "I approve"}, headers=h)
    assert r.status_code == 401
    r = client.post(url, json={"password": "a long test password", "meaning": "  "}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["field"] == "meaning"
    r = client.post(
        url, json={"password": "a long test password", "meaning": "I approve these data"}, headers=h
    )
    assert r.status_code == 201
    assert client.get(f"/api/participants/{u}/visits/WK04", headers=h).json()["signed_by"] == (
        "investigator.gb01"
    )
    version = client.get(f"/api/participants/{u}/visits/WK04", headers=h).json()["version"]
    r = client.put(
        f"/api/participants/{u}/visits/WK04",
        json={
            "visit_date": "2006-02-02",
            "labs": {"CD4": 611, "HIVRNA": 400},
            "reason": "typo",
            "version": version,
        },
        headers=h,
    )
    assert r.status_code == 200
    assert client.get(f"/api/participants/{u}/visits/WK04", headers=h).json()["signed_by"] is None
    other = f"/api/participants/{study['US01']['usubjid']}/visits/WK04/signature"
    r = client.post(other, json={"password": "a long test password", "meaning": "x"}, headers=h)
    assert r.status_code == 404


def test_a_flood_of_failed_logins_never_blocks_the_investigators_e_signature(
    client: TestClient, login: Login, study: dict[str, Any]
) -> None:
    h = login("investigator", "GB01")
    for _ in range(12):  # an anonymous caller guesses the investigator's password
        body = {"username": "investigator.gb01", "password": "a wrong guess here"}
        assert client.post("/api/token", json=body).status_code in (401, 429)
    body = {"username": "investigator.gb01", "password": "a long test password"}
    assert client.post("/api/token", json=body).status_code == 429
    u = study["GB01"]["usubjid"]
    r = client.post(
        f"/api/participants/{u}/visits/WK04/signature",
        json={"password": "a long test password", "meaning": "I approve these data"},
        headers=h,
    )
    assert r.status_code == 201, r.text


def test_monitor_reads_and_raises_queries_but_enters_nothing(
    client: TestClient, login: Login, study: dict[str, Any]
) -> None:
    h = login("monitor")
    us = study["US01"]
    assert len(client.get("/api/participants", headers=h).json()) == 2
    assert (
        client.get(f"/api/participants/{us['usubjid']}/visits/WK04/audit", headers=h).status_code
        == 200
    )
    r = client.post(
        f"/api/participants/{us['usubjid']}/queries",
        json={"field": "CD4", "text": "CD4 differs from source"},
        headers=h,
    )
    assert r.status_code == 201
    qid = r.json()["id"]
    assert (
        client.post(f"/api/queries/{qid}/answer", json={"answer": "x"}, headers=h).status_code
        == 403
    )
    r = client.post(
        f"/api/queries/{qid}/answer", json={"answer": "source corrected"}, headers=us["headers"]
    )
    assert r.status_code == 200
    assert (
        client.post(f"/api/queries/{qid}/close", json={"note": "ok"}, headers=h).status_code == 200
    )
    assert _visit(client, h, us["usubjid"]) == 403
    assert client.get("/api/exports/labs.csv", headers=h).status_code == 403


def test_endpoint_reviewer_reviews_events_without_seeing_arms(
    client: TestClient, login: Login, study: dict[str, Any]
) -> None:
    h = login("endpoint_reviewer")
    events = client.get("/api/endpoint-reviews?pending_only=true", headers=h).json()
    assert len(events) == 2 and all("arm" not in e for e in events)
    text = client.get("/api/endpoint-reviews", headers=h).text
    assert not any(arm in text for arm in ARMS)
    event = study["US01"]["event"]
    r = client.post(
        f"/api/endpoint-reviews/{event}",
        json={"decision": "CONFIRMED", "reason": "culture positive"},
        headers=h,
    )
    assert r.status_code == 201
    r = client.post(
        f"/api/endpoint-reviews/{event}", json={"decision": "REJECTED", "reason": "x"}, headers=h
    )
    assert r.status_code == 409
    r = client.post(
        f"/api/endpoint-reviews/{study['GB01']['event']}",
        json={"decision": "MAYBE", "reason": "x"},
        headers=h,
    )
    assert r.status_code == 422 and r.json()["error"]["field"] == "decision"
    assert client.get("/api/endpoint-reviews/status", headers=h).json() == {
        "confirmed": 1,
        "rejected": 0,
        "awaiting": 1,
    }
    assert client.get("/api/participants", headers=h).status_code == 403


def test_blinded_statistician_gets_pooled_summaries_only(
    client: TestClient, login: Login, study: dict[str, Any]
) -> None:
    h = login("statistician_blinded")
    r = client.get("/api/summary", headers=h)
    assert r.status_code == 200
    body = r.json()
    assert list(body["groups"]) == ["ALL"] and body["groups"]["ALL"]["randomized"] == 2
    assert body["groups"]["ALL"]["cd4_by_visit"]["WK04"]["n"] == 2
    assert not any(arm in r.text for arm in ARMS)
    u = study["US01"]["usubjid"]
    for path in (
        "/api/results-by-arm",
        "/api/participants",
        f"/api/participants/{u}",
        "/api/exports/participants.csv",
        f"/api/participants/{u}/visits/WK04/audit",
        "/api/screenings",
        "/api/endpoint-reviews",
        "/api/worklist",
    ):
        response = client.get(path, headers=h)
        assert response.status_code in (403, 404), path
        assert not any(arm in response.text for arm in ARMS), path
    assert client.get("/api/endpoint-reviews/status", headers=h).json()["awaiting"] == 2


@pytest.mark.parametrize("role", ["statistician_unblinded", "dsmb"])
def test_unblinded_roles_get_results_by_arm(
    client: TestClient, login: Login, study: dict[str, Any], role: str
) -> None:
    h = login(role)
    body = client.get("/api/results-by-arm", headers=h).json()
    assert set(body["groups"]) <= set(ARMS) and body["by_arm"]
    assert sum(g["randomized"] for g in body["groups"].values()) == 2
    assert client.get("/api/participants", headers=h).status_code == 403
    assert _visit(client, h, study["US01"]["usubjid"]) == 403


def test_queries_by_visit_and_field_over_the_api_with_re_opening(
    client: TestClient, login: Login, study: dict[str, Any]
) -> None:
    h = login("monitor")
    us = study["US01"]
    url = f"/api/participants/{us['usubjid']}/queries"
    body = {"visit": "WK04", "field": "LAB.CD4", "text": "CD4 differs from source"}
    r = client.post(url, json=body, headers=h)
    assert r.status_code == 201, r.text
    qid = r.json()["id"]
    r = client.post(url, json=body | {"field": "LAB.NOPE"}, headers=h)
    assert r.status_code == 422 and "LAB.NOPE" in r.text
    assert client.post(url, json=body, headers=us["headers"]).status_code == 403
    [q] = client.get(f"/api/queries?usubjid={us['usubjid']}", headers=h).json()
    assert (q["visit_code"], q["label"], q["table_name"]) == ("WK04", "CD4+ count", "lab_result")
    reopen = f"/api/queries/{qid}/reopen"
    assert client.post(reopen, json={"note": "x"}, headers=h).status_code == 409
    answer = {"answer": "transcription checked"}
    r = client.post(f"/api/queries/{qid}/answer", json=answer, headers=us["headers"])
    assert r.status_code == 200
    assert client.post(reopen, json={"note": "x"}, headers=us["headers"]).status_code == 403
    r = client.post(reopen, json={"note": "source says 540"}, headers=h)
    assert r.status_code == 200 and r.json()["status"] == "OPEN"
    steps = client.get(f"/api/queries/{qid}/history", headers=us["headers"]).json()
    assert [s["status"] for s in steps] == ["OPEN", "ANSWERED", "OPEN"]
    assert steps[2]["note"] == "query re-opened: source says 540" and steps[2]["at"]
    gb = study["GB01"]["headers"]
    assert client.get(f"/api/queries/{qid}/history", headers=gb).status_code == 404
