"""A data manager's lists in a real browser (Playwright on Debian's Chromium): the participant
list paged, searched and sorted, the visit status grid, and /docs with every request that leaves
the site blocked (Swagger UI renders from the app's own files and shows its Authorize button).

Screenshots go to ``$STALWART_ARTIFACTS/browser`` (or the test's ``tmp_path``); skipped without
Chromium or playwright, except under ``CI=true`` (see ``test_browser``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from browser_server import serving
from stalwart.capture.db import open_engine
from stalwart.capture.service import CaptureService
from stalwart.capture.users import UserStore
from stalwart.protocol.load import LoadedProtocol
from stalwart.web.app import create_app
from web.test_browser import CHROMIUM, _require_browser, artifacts  # noqa: F401

PASSWORD = "data manager password"
DAY = dt.timedelta(days=1)
LABS = {"CD4": 450, "CD4PCT": 22.5, "HIVRNA": "<50"}


@pytest.fixture()
def crowded(
    databases: object, packaged: LoadedProtocol, tmp_path: Path, today: dt.date, enrol: object
) -> Iterator[str]:
    """A uvicorn server over a SQLite trial of 60 participants, some visits recorded."""
    url = databases.new("sqlite", packaged, folder=tmp_path)  # type: ignore[attr-defined]
    engine = open_engine(url)
    hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    UserStore(engine, hasher).add_user("dm.lists", PASSWORD, "data_manager", "test-setup")
    service = CaptureService.open(engine, today=lambda: today)
    for i in range(60):
        site = ("US01", "GB01", "DE01")[i % 3]
        day = dt.date(2008, 3, 3) + i * 3 * DAY
        a = enrol(service, site, f"{site}-{i + 1:04d}", screened=day, randomized=day)  # type: ignore[operator]
        if i % 4:
            service.record_visit(a.usubjid, "WK04", day + 28 * DAY, LABS, "test")
        if i % 5 == 0:
            service.record_missed_visit(a.usubjid, "WK08", "did not come", "test")
    app = create_app(engine, today=lambda: today, hasher=hasher)
    with serving(app) as base:
        yield base
    engine.dispose()


def test_data_manager_pages_searches_and_reads_the_grid(
    crowded: str,
    artifacts: Path,  # noqa: F811
) -> None:
    _require_browser()
    from playwright.sync_api import expect, sync_playwright

    base = crowded
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        offsite: list[str] = []
        page.route(
            "**/*",
            lambda route: (
                route.continue_()
                if route.request.url.startswith(base)
                else (offsite.append(route.request.url), route.abort())
            ),
        )
        try:
            page.goto(f"{base}/participants")
            page.get_by_label("Username").fill("dm.lists")
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Log in").click()
            expect(page.get_by_role("button", name="Log out")).to_be_visible()
            page.goto(f"{base}/participants")
            expect(page.locator(".row-count").first).to_have_text("60 participants, page 1 of 2")
            expect(page.locator("#participants tbody tr")).to_have_count(50)
            page.screenshot(path=str(artifacts / "lists-01-participants.png"), full_page=True)
            page.get_by_role("link", name="Next").first.click()
            expect(page.locator("#participants tbody tr")).to_have_count(10)
            # search, then sort by randomization date, newest first
            page.get_by_label("Participant or screening number").fill("gb01")
            page.get_by_role("button", name="Show").click()
            expect(page.locator(".row-count").first).to_have_text("20 participants, page 1 of 1")
            page.get_by_role("link", name="Randomized").click()
            page.get_by_role("link", name="Randomized ▲").click()
            expect(page.get_by_role("link", name="Randomized ▼")).to_be_visible()
            first = page.locator("#participants tbody tr").first.locator("td").nth(3)
            expect(first).to_have_text("2008-08-24")  # the last at GB01: the 59th, 58 x 3 days on
            page.screenshot(path=str(artifacts / "lists-02-search-sort.png"), full_page=True)
            # the grid
            page.get_by_role("link", name="Grid", exact=True).click()
            expect(page.get_by_role("heading", name="Visit status grid")).to_be_visible()
            expect(page.locator("#grid tbody tr")).to_have_count(50)
            expect(page.locator("#grid td.cell-missed").first).to_be_visible()
            expect(page.locator("#grid td.cell-entered").first).to_be_visible()
            page.screenshot(path=str(artifacts / "lists-03-grid.png"), full_page=True)
            # /docs with nothing outside the site reachable
            page.goto(f"{base}/docs")
            expect(page.get_by_role("button", name="Authorize")).to_be_visible(timeout=15000)
            page.screenshot(path=str(artifacts / "lists-04-docs-offline.png"))
            assert offsite == [], offsite
        finally:
            browser.close()
