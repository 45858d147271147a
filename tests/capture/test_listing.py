"""``capture.listing``: the participant list and the status grid, paged, searched, filtered and
sorted in the database, within the actor's scope; on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from argon2 import PasswordHasher

from stalwart.capture.access import Actor, Role
from stalwart.capture.enrolment import Allocation
from stalwart.capture.listing import IN_FOLLOW_UP, PAGE_SIZE, ListQuery
from stalwart.capture.service import CaptureService
from stalwart.capture.users import UserStore
from stalwart.errors import NotFoundError, ValidationError

D = dt.date
DAY = dt.timedelta(days=1)
RAND = D(2008, 6, 2)  # trial.today is 2009-03-01
LABS = {"CD4": 450, "CD4PCT": 22.5, "HIVRNA": "<50"}
DM = Actor("dm", Role.DATA_MANAGER, None, 1)
GB = Actor("coord.gb", Role.SITE_COORDINATOR, "GB01", 2)
US_COUNT, GB_COUNT = 44, 12
Enrol = Callable[..., Allocation]


@pytest.fixture()
def crowd(trial: CaptureService, enrol: Enrol) -> list[Allocation]:
    """56 participants: 44 at US01 then 12 at GB01, a day apart."""
    made = []
    for i in range(US_COUNT + GB_COUNT):
        site = "US01" if i < US_COUNT else "GB01"
        day = RAND + i * DAY
        made.append(enrol(trial, site, f"{site}-{i + 1:04d}", screened=day, randomized=day))
    return made


def _ids(trial: CaptureService, actor: Actor, **query: object) -> list[str]:
    return [p.usubjid for p in trial.lists.participants(actor, ListQuery(**query)).rows]  # type: ignore[arg-type]


def test_pages_of_fifty_cover_every_participant_once(
    trial: CaptureService, crowd: list[Allocation]
) -> None:
    first = trial.lists.participants(DM, ListQuery())
    second = trial.lists.participants(DM, ListQuery(page=2))
    assert (first.total, first.pages, first.page) == (56, 2, 1)
    assert len(first.rows) == PAGE_SIZE and len(second.rows) == 56 - PAGE_SIZE
    ids = [p.usubjid for p in first.rows + second.rows]
    assert ids == sorted(a.usubjid for a in crowd)
    past = trial.lists.participants(DM, ListQuery(page=40))  # past the end: the last page
    assert past.page == 2 and [p.usubjid for p in past.rows] == ids[PAGE_SIZE:]


def test_search_by_participant_or_screening_number_any_case(
    trial: CaptureService, crowd: list[Allocation]
) -> None:
    target = crowd[7]
    assert _ids(trial, DM, search=target.usubjid.lower()) == [target.usubjid]
    assert _ids(trial, DM, search="  us01-0008 ") == [target.usubjid]  # screening number
    assert len(_ids(trial, DM, search="gb01-")) == GB_COUNT
    # LIKE's wildcards are text, not patterns
    assert _ids(trial, DM, search="%") == [] and _ids(trial, DM, search="_") == []
    assert _ids(trial, DM, search="no such person") == []


def test_filters_by_site_arm_and_status(trial: CaptureService, crowd: list[Allocation]) -> None:
    assert len(_ids(trial, DM, site="GB01")) == GB_COUNT
    arm = crowd[0].arm
    by_arm = _ids(trial, DM, arm=arm)
    assert by_arm and set(by_arm) == {a.usubjid for a in crowd if a.arm == arm}
    gone = crowd[3]
    trial.record_disposition(gone.usubjid, "WITHDREW", D(2009, 1, 5), DM)
    assert _ids(trial, DM, status="WITHDREW") == [gone.usubjid]
    following = trial.lists.participants(DM, ListQuery(status=IN_FOLLOW_UP))
    assert following.total == 55 and gone.usubjid not in [p.usubjid for p in following.rows]


def test_sort_by_any_column_either_way(trial: CaptureService, crowd: list[Allocation]) -> None:
    newest = trial.lists.participants(
        DM, ListQuery(sort="randomization_date", descending=True)
    ).rows
    dates = [p.randomization_date for p in newest]
    assert dates == sorted(dates, reverse=True) and dates[0] == RAND + 55 * DAY
    by_site = trial.lists.participants(DM, ListQuery(sort="site")).rows
    assert [p.site for p in by_site[:GB_COUNT]] == ["GB01"] * GB_COUNT
    by_number = _ids(trial, DM, sort="screening_number", descending=True, site="US01")
    assert by_number[0] == crowd[US_COUNT - 1].usubjid


def test_a_coordinator_never_sees_another_sites_rows(
    trial: CaptureService, crowd: list[Allocation]
) -> None:
    page = trial.lists.participants(GB, ListQuery())
    assert page.total == GB_COUNT and {p.site for p in page.rows} == {"GB01"}
    assert _ids(trial, GB, search=crowd[0].usubjid) == []  # a US01 id: nothing
    assert _ids(trial, GB, search="US01") == []
    with pytest.raises(NotFoundError, match="no site 'US01' in your scope"):
        trial.lists.participants(GB, ListQuery(site="US01"))
    grid = trial.lists.grid(GB, ListQuery(sort="site", descending=True))
    assert grid.total == GB_COUNT and {r.participant.site for r in grid.rows} == {"GB01"}


@pytest.mark.parametrize(
    ("query", "field", "words"),
    [
        (ListQuery(page=0), "page", "pages count from 1"),
        (ListQuery(page=-1), "page", "pages count from 1"),
        (ListQuery(sort="nonsense"), "sort", "cannot sort by 'nonsense'"),
        (ListQuery(sort="participant.id; drop table visit"), "sort", "use one of"),
        (ListQuery(arm="PLACEBO"), "arm", "no arm 'PLACEBO'"),
        (ListQuery(search="x" * 101), "search", "at most 100"),
    ],
)
def test_a_query_that_makes_no_sense_is_refused_naming_it(
    trial: CaptureService, query: ListQuery, field: str, words: str
) -> None:
    for read in (trial.lists.participants, trial.lists.grid):
        with pytest.raises(ValidationError, match=words) as caught:
            read(DM, query)
        assert caught.value.field == field


def test_the_grid_shows_each_visits_status(trial: CaptureService, enrol: Enrol) -> None:
    old = enrol(trial, "US01", screened=RAND, randomized=RAND)
    trial.record_visit(old.usubjid, "WK04", RAND + 28 * DAY, LABS, DM)
    trial.record_visit(
        old.usubjid, "WK08", RAND + 70 * DAY, LABS, DM, deviation_reason="travelling"
    )
    trial.record_missed_visit(old.usubjid, "WK12", "in hospital", DM)
    users = UserStore(trial.engine, PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    users.add_user("inv.us", "investigator secret", "investigator", "cli", site="US01")
    inv = users.authenticate("inv.us", "investigator secret")
    trial.signatures.sign_visit(old.usubjid, "WK04", "investigator secret", "I approve", inv, users)
    recent = trial.context.today() - 30 * DAY
    new = enrol(trial, "US01", screened=recent, randomized=recent)
    grid = trial.lists.grid(DM, ListQuery())
    assert [code for code, _ in grid.visits][:4] == ["ENTRY", "WK04", "WK08", "WK12"]
    rows = {r.participant.usubjid: r.cells for r in grid.rows}
    cells = rows[old.usubjid]
    # the grid says what the participant's own page says, visit by visit
    same = {"recorded": "entered", "upcoming": "not due"} | {"WK04": "signed"}
    calendar = trial.records.participant(old.usubjid, DM).calendar
    planned = {
        v.code: same.get(v.code, same.get(v.status, v.status)) for v in calendar if v.code in cells
    }
    assert planned == {code: c.status for code, c in cells.items()}
    assert cells["WK04"].status == "signed" and not cells["WK04"].out_of_window
    assert cells["WK08"].status == "entered" and cells["WK08"].out_of_window
    assert cells["WK12"].status == "missed"
    assert cells["WK16"].status == "missed"  # its window closed with nothing recorded
    fresh = rows[new.usubjid]
    assert fresh["WK04"].status == "overdue"  # target day 28 passed, window open to day 35
    assert fresh["WK08"].status == "not due"
    trial.record_disposition(new.usubjid, "WITHDREW", trial.context.today(), DM)
    after = {r.participant.usubjid: r.cells for r in trial.lists.grid(DM, ListQuery()).rows}
    assert after[new.usubjid]["WK08"].status == "off study"
