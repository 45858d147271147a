"""Bad input on the oversight endpoints (queries, endpoint review, corrections, tokens): a 4xx
with a message, and nothing stored changes. Both backends (the ``client`` fixture)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from stalwart.capture.service import CaptureService

Login = Callable[..., dict[str, str]]
Counts = Callable[[Engine], dict[str, int]]
LABS = {"CD4": 512, "CD4PCT": 28.5, "HIVRNA": "<50"}


@pytest.fixture()
def setting(
    client: TestClient, login: Login, trial: CaptureService, enrol: Callable[..., Any]
) -> dict[str, Any]:
    """A participant with a WK04 visit, a reported event and an open query; every role's token."""
    usubjid = enrol(trial).usubjid
    trial.record_visit(usubjid, "WK04", dt.date(2006, 2, 2), LABS, "site")
    event = trial.report_clinical_event(usubjid, "PCP", dt.date(2006, 3, 1), "site")
    query = trial.queries.raise_query(usubjid, "consent_date", "please check", "monitor")
    return {
        "u": usubjid,
        "event": event,
        "query": query,
        "coordinator": login("site_coordinator", "US01"),
        "monitor": login("monitor"),
        "reviewer": login("endpoint_reviewer"),
    }


CASES = [
    # (who, method, path, body, status, field or None)
    ("reviewer", "post", "/api/endpoint-reviews/{event}", {"decision": "MAYBE", "reason": "x"}, 422,
     "decision"),
    ("reviewer", "post", "/api/endpoint-reviews/{event}", {"decision": "CONFIRMED", "reason": " "},
     422, "reason"),
    ("reviewer", "post", "/api/endpoint-reviews/99999", {"decision": "CONFIRMED", "reason": "ok"},
     404, None),
    ("coordinator", "post", "/api/endpoint-reviews/{event}",
     {"decision": "CONFIRMED", "reason": "ok"}, 403, None),
    ("monitor", "post", "/api/participants/{u}/queries", {"field": "cd4", "text": ""}, 422,
     "text"),
    ("monitor", "post", "/api/participants/{u}/queries", {"field": "cd4", "txt": "typo"}, 422,
     "txt"),
    ("coordinator", "post", "/api/participants/{u}/queries", {"field": "x", "text": "y"}, 403,
     None),
    ("coordinator", "post", "/api/queries/{query}/answer", {"answer": ""}, 422, "answer"),
    ("coordinator", "post", "/api/queries/99999/answer", {"answer": "done"}, 404, None),
    ("coordinator", "post", "/api/queries/{query}/close", {"note": "closing"}, 403, None),
    ("monitor", "post", "/api/queries/{query}/close", {}, 422, "note"),
    ("coordinator", "put", "/api/participants/{u}/visits/WK04",
     {"visit_date": "2006-02-02", "labs": LABS}, 422, "reason"),
    ("coordinator", "put", "/api/participants/{u}/visits/WK08",
     {"visit_date": "2006-03-02", "labs": LABS, "reason": "typo"}, 404, None),
    ("monitor", "put", "/api/participants/{u}/visits/WK04",
     {"visit_date": "2006-02-02", "labs": LABS, "reason": "typo"}, 403, None),
    (None, "post", "/api/token", {"username": "nobody"}, 422, "password"),
    (None, "post", "/api/token", {"username": "nobody", "password": "wrong"}, 401, None),
]  # fmt: skip


@pytest.mark.parametrize(("who", "method", "path", "body", "status", "field"), CASES)
def test_refused_with_a_message_and_nothing_changes(
    client: TestClient,
    setting: dict[str, Any],
    engine: Engine,
    row_counts: Counts,
    who: str | None,
    method: str,
    path: str,
    body: dict[str, Any],
    status: int,
    field: str | None,
) -> None:
    before = row_counts(engine)
    headers = setting[who] if who else {}
    url = path.format(u=setting["u"], event=setting["event"], query=setting["query"])
    response = client.request(method.upper(), url, json=body, headers=headers)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"]
    if field is not None:  # the first problem's field, or among the problems listed
        named = {error["field"]} | {p["field"] for p in error.get("problems", [])}
        assert field in {name.split(".")[-1] for name in named}
    after = row_counts(engine)
    counted = after.pop("login_failure") - before.pop("login_failure")
    assert after == before
    assert counted == (1 if status == 401 else 0)  # a wrong password is counted, for the throttle


def test_a_second_verdict_is_a_conflict(
    client: TestClient, setting: dict[str, Any], engine: Engine, row_counts: Counts
) -> None:
    url = f"/api/endpoint-reviews/{setting['event']}"
    ok = client.post(
        url, json={"decision": "REJECTED", "reason": "not PCP"}, headers=setting["reviewer"]
    )
    assert ok.status_code == 201
    before = row_counts(engine)
    again = client.post(
        url, json={"decision": "CONFIRMED", "reason": "PCP"}, headers=setting["reviewer"]
    )
    assert again.status_code == 409 and "already reviewed" in again.json()["error"]["message"]
    assert row_counts(engine) == before
    status = client.get("/api/endpoint-reviews/status", headers=setting["reviewer"]).json()
    assert status == {"confirmed": 0, "rejected": 1, "awaiting": 0}
