"""A site coordinator runs a participant from screening to week 32 with the pages alone.

Every step goes through the HTML forms a browser posts (login with its CSRF token, screening,
consent, randomization, each scheduled visit to week 32, each dose log of that period, an adverse
event, a clinical event, the end of follow-up), following the links the pages show. Bad input on
the dose, event, adverse event and disposition forms comes back 422 with the message beside the
field and writes nothing. Runs on SQLite and PostgreSQL (the ``client`` fixture).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from stalwart.capture.tables import AdverseEvent, ClinicalEvent, Disposition, Dose, Visit
from stalwart.capture.users import UserStore

PASSWORD = "a long test password"
Counts = Callable[[Engine], dict[str, int]]
WEEK_32 = dt.timedelta(weeks=32)


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "the page has no CSRF field"
    return match.group(1)


def _count(engine: Engine, table: type) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(sa.select(sa.func.count()).select_from(table)) or 0)


def test_coordinator_runs_a_participant_to_week_32_in_pages(
    client: TestClient, users: UserStore, engine: Engine, row_counts: Counts
) -> None:
    users.add_user("coord.flow", PASSWORD, "site_coordinator", "test-setup", site="US01")
    login = {"username": "coord.flow", "password": PASSWORD}
    r = client.post("/login", data=login | {"csrf_token": _csrf(client.get("/login").text)})
    assert r.status_code == 200 and "Worklist" in r.text
    csrf = _csrf(client.get("/screening").text)

    screening = {
        "csrf_token": csrf,
        "site": "US01",
        "screening_number": "US01-S0001",
        "consent_date": "2006-01-02",
        "screening_date": "2006-01-02",
        "age": "41",
        "sex": "F",
        "hiv_positive": "true",
        "cd4": "610",
        "hiv_rna": "12000",
        "on_continuous_art": "false",
        "arv_within_12_months": "false",
        "prior_il2": "false",
        "haart_access": "true",
        "prior_aids": "false",
        "immunomodulator_8_weeks": "false",
    }
    r = client.post("/screening", data=screening)
    assert r.status_code == 200 and "eligible" in r.text.lower()
    assert "Consent recorded on 2006-01-02" in client.get("/randomize/US01-S0001").text
    r = client.post(
        "/randomize/US01-S0001",
        data={"csrf_token": csrf, "randomization_date": "2006-01-05"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    usubjid = r.headers["location"].split("/")[2].split("?")[0]
    page = client.get(f"/participants/{usubjid}").text
    assert re.search(r'id="arm"><strong>(NOTHER|IL2|IL2ART)<', page)

    # every scheduled visit to week 32, from the links of the calendar
    end = dt.date(2006, 1, 5) + WEEK_32
    visits = re.findall(
        rf'href="/participants/{usubjid}/visits/(\w+)">[^<]*</a></td><td>([0-9-]+)</td>', page
    )
    due = [(code, dt.date.fromisoformat(day)) for code, day in visits]
    due = [(code, day) for code, day in due if day <= end]
    assert due[0][0] == "ENTRY" and "WK32" in [c for c, _ in due]
    for code, day in due:
        assert client.get(f"/participants/{usubjid}/visits/{code}").status_code == 200
        r = client.post(
            f"/participants/{usubjid}/visits/{code}",
            data={
                "csrf_token": csrf,
                "visit_date": day.isoformat(),
                "LAB.CD4": "600",
                "LAB.CD4PCT": "31.5",
                "LAB.HIVRNA": "<50",
            },
            follow_redirects=False,
        )
        assert r.status_code == 303, (code, r.text[:500])

    # every dose log of the period, from the dosing links
    page = client.get(f"/participants/{usubjid}").text
    logs = re.findall(rf'href="/participants/{usubjid}/doses/(\w+)/(\d+)"', page)
    arm = re.search(r'id="arm"><strong>(\w+)<', page)
    assert arm is not None
    assert bool(logs) == (arm.group(1) != "NOTHER")
    before = row_counts(engine)
    for treatment, cycle in logs:
        form = client.get(f"/participants/{usubjid}/doses/{treatment}/{cycle}").text
        days = re.findall(r'name="day\.([0-9-]+)"', form)
        if not days or dt.date.fromisoformat(days[0]) > end:
            continue
        bad = {"csrf_token": csrf} | {f"day.{d}": "lots" for d in days}
        r = client.post(f"/participants/{usubjid}/doses/{treatment}/{cycle}", data=bad)
        assert r.status_code == 422 and "enter a whole number" in r.text
        assert row_counts(engine) == before
        good = {"csrf_token": csrf} | {f"day.{d}": "1" for d in days}
        r = client.post(
            f"/participants/{usubjid}/doses/{treatment}/{cycle}",
            data=good,
            follow_redirects=False,
        )
        assert r.status_code == 303, r.text[:500]
        before = row_counts(engine)

    # events: bad input first (nothing written), then the real reports
    events = f"/participants/{usubjid}/events"
    assert "DAIDS" in client.get(events).text
    before = row_counts(engine)
    refused = [
        (
            "clinical",
            {"event_code": "PCP", "onset_date": "soon"},
            "onset_date",
            "Onset date: enter a date as YYYY-MM-DD",
        ),
        ("clinical", {"event_code": "FLU", "onset_date": "2006-03-01"}, None, "not a coded"),
        (
            "adverse",
            {
                "term": "Fatigue",
                "grade": "",
                "start_date": "2006-02-10",
                "related": "POSSIBLE",
                "verbatim": "fatigue",
                "outcome": "RECOVERED/RESOLVED",
                "action": "DOSE NOT CHANGED",
            },
            "grade",
            "DAIDS grade is required",
        ),
        ("disposition", {"status": "GONE", "disposition_date": "2006-08-30"}, "status", "not one"),
    ]
    for kind, form, field, message in refused:
        r = client.post(f"{events}/{kind}", data={"csrf_token": csrf} | form)
        assert r.status_code == 422, (kind, r.status_code)
        assert message in r.text
        if field is not None:
            assert re.search(rf'id="f-{field}-error" role="alert">[^<]*{message}', r.text)
    assert row_counts(engine) == before

    term = "Fatigue"
    reports = [
        (
            "adverse",
            {
                "term": term,
                "grade": "2",
                "start_date": "2006-02-10",
                "end_date": "2006-02-14",
                "related": "NOT RELATED",
                "verbatim": "fever",
                "outcome": "RECOVERED/RESOLVED",
                "action": "DOSE NOT CHANGED",
            },
        ),
        ("clinical", {"event_code": "HZOSTER", "onset_date": "2006-06-01"}),
        ("disposition", {"status": "COMPLETED", "disposition_date": end.isoformat()}),
    ]
    for kind, form in reports:
        r = client.post(
            f"{events}/{kind}", data={"csrf_token": csrf} | form, follow_redirects=False
        )
        assert r.status_code == 303, (kind, r.text[:800])

    assert _count(engine, Visit) == len(due)
    assert _count(engine, Dose) > 0 or not logs
    assert (_count(engine, AdverseEvent), _count(engine, ClinicalEvent)) == (1, 1)
    assert _count(engine, Disposition) == 1
    page = client.get(f"/participants/{usubjid}").text
    assert "COMPLETED" in page and "awaiting" in page and "grade 2" in page
    assert page.count('class="status-recorded"') == len(due)
