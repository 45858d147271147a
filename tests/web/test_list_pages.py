"""The participant list and the status grid pages: paging, search, filter, sort, site scope,
download links and bad query strings (a 422 page naming the parameter, never a 500)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from stalwart.capture.enrolment import Allocation
from stalwart.capture.service import CaptureService
from stalwart.capture.users import UserStore
from web.conftest import PASSWORD

DAY = dt.timedelta(days=1)
RAND = dt.date(2008, 6, 2)
Enrol = Callable[..., Allocation]


def _login(client: TestClient, users: UserStore, role: str, site: str | None) -> None:
    name = f"{role}.{site or 'all'}".lower()
    users.add_user(name, PASSWORD, role, "test-setup", site=site)
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
    assert match
    form = {"username": name, "password": PASSWORD, "csrf_token": match.group(1)}
    assert client.post("/login", data=form, follow_redirects=False).status_code == 303


@pytest.fixture()
def crowd(trial: CaptureService, enrol: Enrol) -> list[Allocation]:
    """53 at US01, 3 at GB01."""
    made = []
    for i in range(56):
        site = "US01" if i < 53 else "GB01"
        day = RAND + i * DAY
        made.append(enrol(trial, site, f"{site}-{i + 1:04d}", screened=day, randomized=day))
    return made


def _rows(html: str, table: str) -> list[str]:
    body = html.split(f'id="{table}"', 1)[1].split("</tbody>", 1)[0]
    return re.findall(r'<a href="/participants/([^"/]+)">', body)


def test_the_list_pages_fifty_rows_with_search_filter_sort(
    client: TestClient, users: UserStore, crowd: list[Allocation]
) -> None:
    _login(client, users, "data_manager", None)
    first = client.get("/participants")
    assert first.status_code == 200
    assert "56 participants, page 1 of 2" in first.text
    ids = _rows(first.text, "participants")
    assert len(ids) == 50 and ids == sorted(ids)
    assert 'href="/participants?page=2"' in first.text
    second = _rows(client.get("/participants?page=2").text, "participants")
    assert sorted(ids + second) == sorted(a.usubjid for a in crowd)
    assert _rows(client.get("/participants?q=us01-0009").text, "participants") == [crowd[8].usubjid]
    gb = client.get("/participants?site=GB01&sort=randomization_date&order=desc").text
    assert _rows(gb, "participants") == [a.usubjid for a in reversed(crowd[53:])]
    # the sort links keep the filters and go back to page 1
    assert 'href="/participants?site=GB01&amp;sort=usubjid&amp;order=asc"' in gb
    arm = crowd[0].arm
    by_arm = _rows(client.get(f"/participants?arm={arm}").text, "participants")
    assert set(by_arm) <= {a.usubjid for a in crowd if a.arm == arm}
    # download links for a role with the export permission, and they answer
    assert 'href="/api/exports/participants.csv"' in first.text
    assert client.get("/api/exports/participants.csv").status_code == 200


def test_the_grid_pages_participants_by_visits(
    client: TestClient, users: UserStore, crowd: list[Allocation], trial: CaptureService
) -> None:
    trial.record_visit(
        crowd[0].usubjid,
        "WK04",
        RAND + 28 * DAY,
        {"CD4": 450, "CD4PCT": 22.5, "HIVRNA": "<50"},
        "test",
    )
    _login(client, users, "monitor", None)
    page = client.get("/participants-grid")
    assert page.status_code == 200 and "56 participants, page 1 of 2" in page.text
    assert len(_rows(page.text, "grid")) == 50
    assert f'href="/participants/{crowd[0].usubjid}/visits/WK04">entered</a>' in page.text
    assert 'class="cell cell-missed"' in page.text
    assert "/api/exports/" not in page.text  # a monitor may not export
    last = client.get("/participants-grid?page=2&q=gb01").text
    assert "3 participants, page 1 of 1" in last  # past the end: the last page


def test_a_coordinator_sees_only_their_site_on_every_list_page(
    client: TestClient, users: UserStore, crowd: list[Allocation]
) -> None:
    _login(client, users, "site_coordinator", "GB01")
    gb_ids = {a.usubjid for a in crowd[53:]}
    for url in (
        "/participants",
        "/participants-grid",
        "/participants?sort=site&order=desc",
        "/participants?q=US01",
        "/participants-grid?q=STALWART",
        "/participants?page=2",
        "/screening-log",
    ):
        page = client.get(url)
        assert page.status_code == 200, url
        assert not re.search(r"US01-\d", page.text), url
        seen = set(re.findall(r'href="/participants/(STALWART-[^"/]+)"', page.text))
        assert seen <= gb_ids, url
    refused = client.get("/participants?site=US01")
    assert refused.status_code == 404 and "no site &#39;US01&#39; in your scope" in refused.text
    assert 'name="site"' not in client.get("/participants").text  # one site: no site filter


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("page=-1", "pages count from 1"),
        ("page=0", "pages count from 1"),
        ("page=abc", "is not a page number"),
        ("page=99999999999999999999", "is not a page number"),
        ("sort=nonsense", "cannot sort by &#39;nonsense&#39;"),
        ("order=sideways", "is not &#39;asc&#39; or &#39;desc&#39;"),
        ("arm=PLACEBO", "no arm &#39;PLACEBO&#39;"),
        ("site=XX99", "no site &#39;XX99&#39;"),
    ],
)
def test_a_bad_query_string_is_a_clear_refusal_never_a_500(
    client: TestClient,
    users: UserStore,
    trial: CaptureService,
    enrol: Enrol,
    query: str,
    words: str,
) -> None:
    enrol(trial, "US01")
    _login(client, users, "data_manager", None)
    for path in ("/participants", "/participants-grid"):
        page = client.get(f"{path}?{query}")
        assert page.status_code in (404, 422), (path, query)
        assert words in page.text, (path, query, page.text[-600:])


def test_roles_without_records_get_403_on_the_list_pages(
    client: TestClient, users: UserStore
) -> None:
    _login(client, users, "statistician_blinded", None)
    for path in ("/participants", "/participants-grid", "/screening-log"):
        assert client.get(path).status_code == 403, path
