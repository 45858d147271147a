"""Every wrong field of a form at once, beside its field, in the user's words: the screening,
AE and clinical-event forms, pages and API (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from stalwart.capture.enrolment import Allocation
from stalwart.capture.service import CaptureService
from stalwart.capture.users import UserStore

PASSWORD = "a long test password"
Login = Callable[..., dict[str, str]]
Counts = Callable[[Engine], dict[str, int]]
INTERNAL = re.compile(r"consent_date|screening_date|LAB\.|e\+0|Input should|Field required")


def _page_login(client: TestClient, users: UserStore, site: str = "US01") -> str:
    users.add_user("coord.errors", PASSWORD, "site_coordinator", "test-setup", site=site)
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
    assert token
    form = {"username": "coord.errors", "password": PASSWORD, "csrf_token": token.group(1)}
    assert client.post("/login", data=form, follow_redirects=False).status_code == 303
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/screening").text)
    assert match
    return match.group(1)


def _errors(html: str) -> dict[str, str]:
    return dict(re.findall(r'id="f-([^"]+)-error" role="alert">([^<]+)<', html))


def _screening(csrf: str, **overrides: str) -> dict[str, str]:
    form = {
        "csrf_token": csrf,
        "site": "US01",
        "consent_date": "2009-01-05",
        "screening_date": "2009-01-05",
        "age": "35",
        "sex": "M",
        "hiv_positive": "true",
        "cd4": "520",
        "hiv_rna": "20000",
        "on_continuous_art": "false",
        "arv_within_12_months": "false",
        "prior_il2": "false",
        "haart_access": "true",
        "prior_aids": "false",
        "immunomodulator_8_weeks": "false",
    }
    return form | overrides


def test_screening_page_shows_three_errors_at_once(
    client: TestClient, users: UserStore, engine: Engine, row_counts: Counts
) -> None:
    csrf = _page_login(client, users)
    page = client.get("/screening").text
    assert "0 to 100,000,000 copies/mL" in page and "1e+08" not in page
    # consent first on the form: its field comes before the screening procedures
    assert page.index('id="f-consent_date"') < page.index('id="f-screening_date"')
    before = row_counts(engine)
    r = client.post(
        "/screening", data=_screening(csrf, age="abc", cd4="-5", screening_date="2009-03-09")
    )
    assert r.status_code == 422
    errors = _errors(r.text)
    assert set(errors) == {"age", "cd4", "screening_date"}
    assert errors["age"] == "Age (years): enter a whole number (you entered &#39;abc&#39;)"
    assert errors["cd4"] == "-5 cells/mm3 is outside the valid range 0 to 5,000 cells/mm3"
    assert (
        errors["screening_date"]
        == "Screening date 2009-03-09 is in the future (today is 2009-03-01)"
    )
    assert not any(INTERNAL.search(m) for m in errors.values())
    assert row_counts(engine) == before

    # the number is assigned; a number typed twice is refused beside its field
    r = client.post("/screening", data=_screening(csrf))
    assert r.status_code == 200 and "US01-S0001 is eligible" in r.text
    r = client.post("/screening", data=_screening(csrf, screening_number="US01-S0001"))
    assert r.status_code == 409
    assert _errors(r.text)["screening_number"].startswith(
        "screening number US01-S0001 is already recorded at US01"
    )


def test_screening_api_lists_every_error(client: TestClient, login: Login) -> None:
    coord = login("site_coordinator", "US01")
    answers = {
        "age": "abc",
        "sex": "M",
        "hiv_positive": True,
        "cd4": -5,
        "hiv_rna": 2e8,
        "on_continuous_art": False,
        "arv_within_12_months": False,
        "prior_il2": False,
        "haart_access": True,
        "prior_aids": False,
        "immunomodulator_8_weeks": False,
    }
    body = {"site": "US01", "screening_date": "2009-03-09", "answers": answers}
    r = client.post("/api/screenings", json=body, headers=coord)
    assert r.status_code == 422
    errors = r.json()["error"]["errors"]
    assert set(errors) == {"screening.age", "screening.cd4", "screening.hiv_rna", "screening_date"}
    assert "200,000,000 copies/mL" in errors["screening.hiv_rna"]
    body = {
        "site": "US01",
        "screening_date": "2009-02-09",
        "answers": answers | {"age": 35, "cd4": 520, "hiv_rna": 2000},
    }
    r = client.post("/api/screenings", json=body | {"consent_date": "2009-02-08"}, headers=coord)
    assert r.status_code == 201 and r.json()["screening_number"] == "US01-S0001"
    r = client.post(
        "/api/screenings", json=body | {"screening_number": "US01-S0001"}, headers=coord
    )
    assert r.status_code == 409 and r.json()["error"]["field"] == "screening_number"


def test_adverse_and_clinical_event_forms_show_every_error(
    client: TestClient,
    trial: CaptureService,
    enrol: Callable[..., Allocation],
    users: UserStore,
    login: Login,
    row_counts: Counts,
) -> None:
    usubjid = enrol(
        trial, "US01", screened=dt.date(2008, 5, 28), randomized=dt.date(2008, 6, 2)
    ).usubjid
    csrf = _page_login(client, users)
    coord = login("site_coordinator", "US01")
    before = row_counts(trial.engine)
    ae = {
        "csrf_token": csrf,
        "verbatim": "",
        "term": "Fever",
        "grade": "x",
        "start_date": "2009-03-09",
        "related": "POSSIBLE",
        "outcome": "RECOVERED/RESOLVED",
        "action": "DOSE NOT CHANGED",
        "serious": "false",
    }
    r = client.post(f"/participants/{usubjid}/events/adverse", data=ae)
    assert r.status_code == 422
    errors = _errors(r.text)
    assert set(errors) == {"verbatim", "grade", "start_date"}
    assert errors["grade"] == "DAIDS grade: enter a whole number (you entered &#39;x&#39;)"
    assert errors["start_date"].startswith("Start date 2009-03-09 is in the future")
    r = client.post(
        f"/participants/{usubjid}/events/clinical",
        data={"csrf_token": csrf, "event_code": "ZZ", "onset_date": "2009-04-01"},
    )
    assert r.status_code == 422 and set(_errors(r.text)) == {"event_code", "onset_date"}
    body = {
        "term": "Fever",
        "verbatim": "fever",
        "grade": 9,
        "start_date": "2009-03-09",
        "related": "MAYBE",
        "outcome": "FATAL",
        "action": "DOSE NOT CHANGED",
        "serious": False,
    }
    r = client.post(f"/api/participants/{usubjid}/adverse-events", json=body, headers=coord)
    assert r.status_code == 422
    assert set(r.json()["error"]["errors"]) == {"grade", "related", "outcome", "start_date"}
    assert row_counts(trial.engine) == before


def test_a_dose_off_the_calendar_from_the_page_and_the_api(
    client: TestClient,
    trial: CaptureService,
    enrol: Callable[..., Allocation],
    users: UserStore,
    login: Login,
) -> None:
    a = enrol(trial, arm="IL2")
    days = [d.date for d in a.calendar.doses if d.treatment == "IL2" and d.cycle == 1]
    cycle2 = [d.date for d in a.calendar.doses if d.treatment == "IL2" and d.cycle == 2]
    site = a.usubjid.split("-")[1]
    csrf = _page_login(client, users, site)
    coord = login("site_coordinator", site)
    url = f"/participants/{a.usubjid}/doses/IL2/1"
    form = {"csrf_token": csrf} | {f"day.{d.isoformat()}": "2" for d in days}
    late = (days[-1] + dt.timedelta(days=1)).isoformat()
    r = client.post(url, data=form | {"other_date": late, "other_administrations": "1"})
    assert r.status_code == 422
    errors = _errors(r.text)
    assert errors["other_date"].startswith(f"{late} is not a IL2 day of cycle 1: give the reason")
    assert "Give the reason" in errors["deviation_reason"]
    r = client.post(
        url,
        data=form
        | {"other_date": late, "other_administrations": "1", "deviation_reason": "clinic closed"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    [deviation] = trial.deviations.list("dm")
    assert deviation.category == "STUDY TREATMENT" and deviation.reason == "clinic closed"
    body = {
        "treatment": "IL2",
        "cycle": 2,
        "days": [{"date": (cycle2[0] - dt.timedelta(days=1)).isoformat(), "administrations": 1}],
    }
    api = f"/api/participants/{a.usubjid}/doses"
    r = client.post(api, json=body, headers=coord)
    assert r.status_code == 422 and r.json()["error"]["field"] == "deviation_reason"
    r = client.post(api, json=body | {"deviation_reason": "moved"}, headers=coord)
    assert r.status_code == 201, r.text
    assert len(trial.deviations.list("dm")) == 2
