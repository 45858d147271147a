"""Screening numbers unique per site on the API: each site's coordinator uses a number of its own,
learns nothing of another site's, and a user who may not randomize is refused (403) before any
screening is read."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

Answers = Callable[..., dict[str, object]]
Counts = Callable[[Engine], dict[str, int]]
Login = Callable[..., dict[str, str]]


def _screen(
    client: TestClient, h: dict[str, str], answers: dict[str, object], number: str, site: str
) -> None:
    body = {"site": site, "screening_number": number, "screening_date": "2006-01-02"}
    r = client.post("/api/screenings", json=body | {"answers": answers}, headers=h)
    assert r.status_code == 201, r.text


def _post(client: TestClient, h: dict[str, str], path: str, body: dict[str, Any]) -> Any:
    return client.post(path, json=body, headers=h)


def test_each_site_screens_consents_and_randomizes_its_own_number(
    client: TestClient, login: Login, eligible_answers: Answers
) -> None:
    us, gb = login("site_coordinator", "US01"), login("site_coordinator", "GB01")
    for h, site in ((us, "US01"), (gb, "GB01")):
        _screen(client, h, eligible_answers(), "S-1", site)
    for h, site in ((us, "US01"), (gb, "GB01")):
        r = _post(client, h, "/api/screenings/S-1/consent", {"consent_date": "2006-01-03"})
        assert r.status_code == 201, r.text
        r = _post(
            client,
            h,
            "/api/randomizations",
            {"screening_number": "S-1", "randomization_date": "2006-01-05"},
        )
        assert r.status_code == 201 and r.json()["usubjid"] == f"STALWART-{site}-0001", r.text
    again = {"site": "US01", "screening_number": "S-1", "screening_date": "2006-01-02"}
    r = client.post("/api/screenings", json=again | {"answers": eligible_answers()}, headers=us)
    assert r.status_code == 409 and "already recorded at US01" in r.json()["error"]["message"]


def test_another_sites_number_looks_like_one_never_used(
    client: TestClient,
    login: Login,
    eligible_answers: Answers,
    engine: Engine,
    row_counts: Counts,
) -> None:
    us, gb = login("site_coordinator", "US01"), login("site_coordinator", "GB01")
    _screen(client, gb, eligible_answers(), "GB-ONLY", "GB01")
    before = row_counts(engine)
    replies = {}
    for number in ("GB-ONLY", "NEVER"):
        consent = _post(
            client, us, f"/api/screenings/{number}/consent", {"consent_date": "2006-01-03"}
        )
        named = _post(
            client,
            us,
            f"/api/screenings/{number}/consent",
            {"consent_date": "2006-01-03", "site": "GB01"},
        )
        rand = _post(
            client,
            us,
            "/api/randomizations",
            {
                "screening_number": number,
                "randomization_date": "2006-01-05",
                "consent_date": "2006-01-03",
            },
        )
        replies[number] = [
            (r.status_code, r.json()["error"]["message"].replace(number, "X"))
            for r in (consent, named, rand)
        ]
    assert replies["GB-ONLY"] == replies["NEVER"]
    assert [status for status, _ in replies["NEVER"]] == [404, 404, 404]
    assert row_counts(engine) == before


@pytest.mark.parametrize("site", ["US01", "GB01", None])
@pytest.mark.parametrize("number", ["US-1", "NEVER"])
def test_randomization_is_refused_403_before_the_screening_is_read(
    client: TestClient,
    login: Login,
    eligible_answers: Answers,
    engine: Engine,
    row_counts: Counts,
    site: str | None,
    number: str,
) -> None:
    us = login("site_coordinator", "US01")
    _screen(client, us, eligible_answers(), "US-1", "US01")
    assert (
        _post(
            client, us, "/api/screenings/US-1/consent", {"consent_date": "2006-01-03"}
        ).status_code
        == 201
    )
    monitor = login("monitor", site, username=f"monitor.{site}")
    before = row_counts(engine)
    for body in (
        {"screening_number": number, "randomization_date": "2006-01-05"},
        {"screening_number": number, "randomization_date": "2006-01-05", "site": "US01"},
        {
            "screening_number": number,
            "randomization_date": "2006-01-05",
            "consent_date": "2006-01-03",
        },
    ):
        r = _post(client, monitor, "/api/randomizations", body)
        assert r.status_code == 403, r.text
        assert r.json()["error"]["type"] == "AccessDeniedError"
    assert row_counts(engine) == before
