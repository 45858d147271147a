"""The JSON API on SQLite and PostgreSQL: workflows, the error shape, bad input changes nothing."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from stalwart.capture.audit import verify_audit
from stalwart.capture.service import CaptureService

Answers = Callable[..., dict[str, object]]
Login = Callable[..., dict[str, str]]
Counts = Callable[[Engine], dict[str, int]]


def _screen(
    client: TestClient,
    h: dict[str, str],
    answers: dict[str, object],
    number: str,
    site: str = "US01",
) -> dict[str, Any]:
    response = client.post(
        "/api/screenings",
        json={
            "site": site,
            "screening_number": number,
            "screening_date": "2006-01-02",
            "answers": answers,
        },
        headers=h,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _enrol(
    client: TestClient,
    h: dict[str, str],
    answers: dict[str, object],
    number: str,
    site: str = "US01",
) -> dict[str, Any]:
    assert _screen(client, h, answers, number, site)["eligible"]
    r = client.post(
        f"/api/screenings/{number}/consent", json={"consent_date": "2006-01-03"}, headers=h
    )
    assert r.status_code == 201, r.text
    r = client.post(
        "/api/randomizations",
        json={"screening_number": number, "randomization_date": "2006-01-05"},
        headers=h,
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def test_health_openapi_and_docs(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    spec = client.get("/openapi.json").json()
    assert "/api/randomizations" in spec["paths"] and "/api/token" in spec["paths"]
    assert "/login" not in spec["paths"]  # pages are not API
    assert client.get("/docs").status_code == 200


def test_participant_from_screening_to_week_32(
    client: TestClient,
    login: Login,
    eligible_answers: Answers,
    engine: Engine,
    row_counts: Counts,
) -> None:
    h = login("site_coordinator", "US01")
    refused = _screen(client, h, eligible_answers(cd4=250.0, prior_aids=True), "US-0")
    assert refused == {
        "screening_number": "US-0",
        "eligible": False,
        "reasons": [
            "IN2 not met: CD4+ count >= 300 cells/mm3",
            "EX4 excluded: History of an AIDS-defining illness",
        ],
    }
    r = client.post("/api/screenings/US-0/consent", json={"consent_date": "2006-01-03"}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["reasons"][0].startswith("IN2")

    allocation = _enrol(client, h, eligible_answers(), "US-1")
    usubjid = allocation["usubjid"]
    assert allocation["arm"] in ("NOTHER", "IL2", "IL2ART")
    codes = [v["code"] for v in allocation["visits"]]
    assert codes[:2] == ["ENTRY", "WK04"] or "WK04" in codes
    wk04 = next(v for v in allocation["visits"] if v["code"] == "WK04")
    assert (wk04["target"], wk04["earliest"], wk04["latest"]) == (
        "2006-02-02",
        "2006-01-26",
        "2006-02-09",
    )
    if allocation["arm"] == "NOTHER":
        assert allocation["doses"] == []
    else:
        assert allocation["doses"][0] == {
            "treatment": "IL2" if allocation["arm"] == "IL2" else "ART",
            "cycle": 1,
            "date": "2006-01-12" if allocation["arm"] == "IL2" else "2006-01-09",
            "administrations": 2 if allocation["arm"] == "IL2" else 1,
            "dose": 7.5 if allocation["arm"] == "IL2" else 1.0,
            "dose_unit": "MIU" if allocation["arm"] == "IL2" else "regimen",
        }
    r = client.post(
        "/api/randomizations",
        json={"screening_number": "US-1", "randomization_date": "2006-01-05"},
        headers=h,
    )
    assert r.status_code == 409 and "already randomized" in r.json()["error"]["message"]

    before = row_counts(engine)
    r = client.post(
        f"/api/participants/{usubjid}/visits/WK04",
        json={"visit_date": "2006-02-02", "labs": {"CD4": 50000, "HIVRNA": 900}},
        headers=h,
    )
    assert r.status_code == 422
    assert r.json()["error"]["field"] == "LAB.CD4"
    assert "outside the valid range 0 to 5,000" in r.json()["error"]["message"]
    assert row_counts(engine) == before

    visits = {v["code"]: v for v in allocation["visits"]}
    for code in ("ENTRY", "WK04", "WK08", "WK12", "WK16", "WK20", "WK24", "WK28", "WK32"):
        r = client.post(
            f"/api/participants/{usubjid}/visits/{code}",
            json={"visit_date": visits[code]["target"], "labs": {"CD4": 600, "HIVRNA": "<50"}},
            headers=h,
        )
        assert r.status_code == 201, r.text
    r = client.put(
        f"/api/participants/{usubjid}/visits/WK32",
        json={"visit_date": visits["WK32"]["target"], "labs": {"CD4": 650, "HIVRNA": "<50"}},
        headers=h,
    )
    assert r.status_code == 422 and r.json()["error"]["field"] == "reason"
    etag = client.get(f"/api/participants/{usubjid}/visits/WK32", headers=h).headers["ETag"]
    r = client.put(
        f"/api/participants/{usubjid}/visits/WK32",
        json={
            "visit_date": visits["WK32"]["target"],
            "labs": {"CD4": 650, "HIVRNA": "<50"},
            "reason": "lab re-issued",
        },
        headers=h | {"If-Match": etag},
    )
    assert r.status_code == 200, r.text
    assert client.get(f"/api/participants/{usubjid}/visits/WK32", headers=h).json()["labs"] == {
        "CD4": "650",
        "HIVRNA": "<50",
    }
    trail = client.get(f"/api/participants/{usubjid}/visits/WK32/audit", headers=h).json()
    assert [(e["action"], e["actor"], e["reason"]) for e in trail][-1] == (
        "UPDATE",
        "site_coordinator.us01",
        "lab re-issued",
    )

    if allocation["arm"] != "NOTHER":
        first = [
            d
            for d in allocation["doses"]
            if d["cycle"] == 1 and d["treatment"] == allocation["doses"][0]["treatment"]
        ]
        r = client.post(
            f"/api/participants/{usubjid}/doses",
            json={
                "treatment": first[0]["treatment"],
                "cycle": 1,
                "days": [
                    {"date": d["date"], "administrations": d["administrations"]} for d in first
                ],
            },
            headers=h,
        )
        assert r.status_code == 201, r.text
    r = client.post(
        f"/api/participants/{usubjid}/adverse-events",
        json={
            "term": "Fever",
            "grade": 2,
            "start_date": "2006-01-13",
            "related": "PROBABLE",
            "verbatim": "fever",
            "outcome": "RECOVERED/RESOLVED",
            "action": "DOSE NOT CHANGED",
        },
        headers=h,
    )
    assert r.status_code == 201, r.text
    r = client.post(
        f"/api/participants/{usubjid}/clinical-events",
        json={"event_code": "HZOSTER", "onset_date": "2006-03-01"},
        headers=h,
    )
    assert r.status_code == 201, r.text
    r = client.post(
        f"/api/participants/{usubjid}/disposition",
        json={"status": "COMPLETED", "disposition_date": visits["WK32"]["target"]},
        headers=h,
    )
    assert r.status_code == 201, r.text
    detail = client.get(f"/api/participants/{usubjid}", headers=h).json()
    assert detail["summary"]["disposition"] == "COMPLETED"
    assert {c["code"]: c["status"] for c in detail["calendar"]}["WK32"] == "recorded"
    assert detail["clinical_events"][0]["review"] is None
    assert verify_audit(engine).ok


BAD_REQUESTS: list[tuple[str, str, dict[str, Any], int, str]] = [
    (
        "post",
        "/api/screenings",
        {"site": "US01", "screening_number": "X", "screening_date": "2006-13-01", "answers": {}},
        422,
        "screening_date",
    ),
    (
        "post",
        "/api/screenings",
        {"site": "US01", "screening_number": "X", "screening_date": "2006-01-02"},
        422,
        "answers",
    ),
    (
        "post",
        "/api/screenings",
        {
            "site": "US01",
            "screening_number": "X",
            "screening_date": "2006-01-02",
            "answers": {"age": 35},
        },
        422,
        "screening.sex",
    ),
    (
        "post",
        "/api/screenings",
        {
            "site": "ZZ01",
            "screening_number": "X",
            "screening_date": "2006-01-02",
            "answers": "ELIGIBLE",
        },
        422,
        "answers",
    ),
    ("post", "/api/screenings/NOPE/consent", {"consent_date": "2006-01-03"}, 404, ""),
    ("post", "/api/randomizations", {"screening_number": "US-1"}, 422, "randomization_date"),
    (
        "post",
        "/api/randomizations",
        {"screening_number": "US-1", "randomization_date": "2010-01-01"},
        422,
        "randomization_date",
    ),
    (
        "post",
        "/api/participants/{u}/visits/WK04",
        {"visit_date": "2006-02-02", "labs": {"CD4": "many", "HIVRNA": 100}},
        422,
        "LAB.CD4",
    ),
    (
        "post",
        "/api/participants/{u}/visits/WK04",
        {"visit_date": "2006-04-02", "labs": {"CD4": 500, "HIVRNA": 100}},
        422,
        "deviation_reason",
    ),
    (
        "post",
        "/api/participants/{u}/visits/WK99",
        {"visit_date": "2006-02-02", "labs": {"CD4": 500, "HIVRNA": 100}},
        422,
        "visit_code",
    ),
    (
        "post",
        "/api/participants/{u}/visits/WK04",
        {"visit_date": "2006-02-02", "labs": {"CD4": 500}},
        422,
        "LAB.HIVRNA",
    ),
    (
        "post",
        "/api/participants/NOBODY/visits/WK04",
        {"visit_date": "2006-02-02", "labs": {"CD4": 500, "HIVRNA": 100}},
        404,
        "",
    ),
    (
        "put",
        "/api/participants/{u}/visits/WK04",
        {"visit_date": "2006-02-02", "labs": {"CD4": 500, "HIVRNA": 100}, "reason": "x"},
        404,
        "",
    ),
    (
        "post",
        "/api/participants/{u}/doses",
        {"treatment": "IL2", "cycle": 0, "days": []},
        422,
        "cycle",
    ),
    (
        "post",
        "/api/participants/{u}/doses",
        {"treatment": "IL2", "cycle": 1, "days": [{"date": "2006-01-01", "administrations": 1}]},
        422,
        "",
    ),
    (
        "post",
        "/api/participants/{u}/adverse-events",
        {
            "term": "Fever",
            "grade": 7,
            "start_date": "2006-01-13",
            "related": "PROBABLE",
            "verbatim": "fever",
            "outcome": "RECOVERED/RESOLVED",
            "action": "DOSE NOT CHANGED",
        },
        422,
        "grade",
    ),
    (
        "post",
        "/api/participants/{u}/adverse-events",
        {
            "term": "Hiccups",
            "grade": 1,
            "start_date": "2006-01-13",
            "related": "PROBABLE",
            "verbatim": "hiccups",
            "outcome": "RECOVERED/RESOLVED",
            "action": "DOSE NOT CHANGED",
        },
        422,
        "term",
    ),
    (
        "post",
        "/api/participants/{u}/clinical-events",
        {"event_code": "FLU", "onset_date": "2006-03-01"},
        422,
        "event_code",
    ),
    (
        "post",
        "/api/participants/{u}/clinical-events",
        {"event_code": "PCP", "onset_date": "2005-03-01"},
        422,
        "onset_date",
    ),
    (
        "post",
        "/api/participants/{u}/disposition",
        {"status": "GONE", "disposition_date": "2006-03-01"},
        422,
        "status",
    ),
    ("post", "/api/participants/{u}/queries", {"field": "CD4", "text": "check"}, 403, ""),
    (
        "post",
        "/api/participants/{u}/visits/WK04/signature",
        {"password": "x", "meaning": "y"},
        403,
        "",
    ),
    ("post", "/api/endpoint-reviews/1", {"decision": "CONFIRMED", "reason": "x"}, 403, ""),
    ("post", "/api/users", {"username": "x", "password": "long enough!", "role": "admin"}, 403, ""),
    ("get", "/api/exports/everything.csv", {}, 422, "export"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "field"), BAD_REQUESTS)
def test_bad_input_gets_a_4xx_naming_the_field_and_changes_nothing(
    client: TestClient,
    login: Login,
    eligible_answers: Answers,
    engine: Engine,
    row_counts: Counts,
    method: str,
    path: str,
    body: dict[str, Any],
    status: int,
    field: str,
) -> None:
    h = login("site_coordinator", "US01")
    usubjid = _enrol(client, h, eligible_answers(), "US-1")["usubjid"]
    before = row_counts(engine)
    kwargs: dict[str, Any] = {"headers": h}
    if method != "get":
        kwargs["json"] = body
    response = getattr(client, method)(path.format(u=usubjid), **kwargs)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"]
    if field:
        assert error["field"] == field
        assert field.split(".")[-1] in error["message"] or field == "answers"
    assert row_counts(engine) == before


def test_authentication(client: TestClient, login: Login) -> None:
    assert client.get("/api/participants").status_code == 401
    assert client.get("/api/participants").headers["www-authenticate"] == "Bearer"
    bad = {"Authorization": "Bearer not-a-token"}
    assert client.get("/api/participants", headers=bad).json()["error"]["type"] == (
        "AuthenticationError"
    )
    h = login("monitor")
    assert (
        client.post("/api/token", json={"username": "monitor.all", "password": "wrong"}).status_code
        == 401
    )
    assert client.get("/api/me", headers=h).json()["role"] == "monitor"
    assert client.delete("/api/token", headers=h).status_code == 204
    assert client.get("/api/me", headers=h).status_code == 401


def test_session_cookie_needs_the_csrf_token(
    client: TestClient,
    login: Login,
    users: Any,
    eligible_answers: Answers,
    engine: Engine,
    row_counts: Counts,
) -> None:
    login("site_coordinator", "US01")
    actor = users.authenticate("site_coordinator.us01", "a long test password")
    session = users.issue_token(actor, "session")
    client.cookies.set("stalwart_session", session.token)
    body = {
        "site": "US01",
        "screening_number": "C-1",
        "screening_date": "2006-01-02",
        "answers": eligible_answers(),
    }
    before = row_counts(engine)
    r = client.post("/api/screenings", json=body)
    assert r.status_code == 403 and "CSRF" in r.json()["error"]["message"]
    r = client.post("/api/screenings", json=body, headers={"X-CSRF-Token": "forged"})
    assert r.status_code == 403
    assert row_counts(engine) == before
    r = client.post("/api/screenings", json=body, headers={"X-CSRF-Token": session.csrf_token})
    assert r.status_code == 201
    assert client.get("/api/screenings").status_code == 200  # safe methods need no token


def test_exports_stream_csv(
    client: TestClient, login: Login, eligible_answers: Answers, trial: CaptureService
) -> None:
    h = login("data_manager")
    site_users = {"US01": login("site_coordinator", "US01"), "GB01": login("investigator", "GB01")}
    for i, site in enumerate(("US01", "GB01", "US01")):
        a = _enrol(client, site_users[site], eligible_answers(), f"S-{i}", site)
        r = client.post(
            f"/api/participants/{a['usubjid']}/visits/ENTRY",
            json={"visit_date": "2006-01-05", "labs": {"CD4": 500 + i, "HIVRNA": 99}},
            headers=site_users[site],
        )
        assert r.status_code == 201
    with client.stream("GET", "/api/exports/labs.csv", headers=h) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        text = "".join(response.iter_text())
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["SITEID"], r["LBTESTCD"], r["LBSTRESN"]) for r in rows] == [
        ("US01", "CD4", "500.0"),
        ("US01", "HIVRNA", "99.0"),
        ("GB01", "CD4", "501.0"),
        ("GB01", "HIVRNA", "99.0"),
        ("US01", "CD4", "502.0"),
        ("US01", "HIVRNA", "99.0"),
    ]
    gb = site_users["GB01"]
    rows = list(
        csv.DictReader(io.StringIO(client.get("/api/exports/participants.csv", headers=gb).text))
    )
    assert [r["SITEID"] for r in rows] == ["GB01"] and rows[0]["ARMCD"]


def test_framework_errors_have_the_api_error_shape(client: TestClient, login: Login) -> None:
    """A body that is not JSON, an unknown route or method: the API's shape, with a message."""
    h = login("site_coordinator", "US01")
    cases = [
        ("post", "/api/screenings", {"content": b"\xba\x97C\xc1", "headers": h}, 422),
        (
            "post",
            "/api/screenings",
            {"content": b"]\xba", "headers": {**h, "Content-Type": "application/json"}},
            400,
        ),
        ("get", "/api/no-such-thing", {"headers": h}, 404),
        ("delete", "/api/participants", {"headers": h}, 405),
    ]
    for method, path, kwargs, status in cases:
        response = getattr(client, method)(path, **kwargs)
        assert response.status_code == status, (path, response.text)
        assert response.json()["error"]["message"], response.text
    page = client.get("/participants", follow_redirects=False)  # pages keep their redirects
    assert page.status_code == 303 and page.headers["location"] == "/login"


def test_an_id_beyond_the_store_range_is_a_4xx(
    client: TestClient, login: Login, engine: Engine, row_counts: Counts
) -> None:
    """PostgreSQL's integer ends at 2**31 - 1: a larger id is refused before the store sees it."""
    reviewer = login("endpoint_reviewer")
    monitor = login("monitor")
    before = row_counts(engine)
    big = 2**31
    cases = [
        (reviewer, f"/api/endpoint-reviews/{big}", {"decision": "CONFIRMED", "reason": "x"}),
        (monitor, f"/api/queries/{big}/close", {"note": "x"}),
    ]
    for headers, path, body in cases:
        response = client.post(path, json=body, headers=headers)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["message"]
    response = client.get(f"/api/audit/visit/{big}", headers=monitor)
    assert response.status_code == 422, response.text
    assert row_counts(engine) == before
