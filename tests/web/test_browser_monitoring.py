"""Monitoring and lock in a real browser: a monitor reads a visit's banner (saved when and by
whom), marks it source-verified and sees it on the status grid; the readable audit trail shows
the correction old -> new with its reason; the data manager locks the participant (the visit's
form disappears, the banner names the lock), then unlocks with a reason.

Playwright on Debian's Chromium over a uvicorn server on a fresh SQLite trial. Screenshots go to
``$STALWART_ARTIFACTS/browser-monitoring`` (or the test's ``tmp_path``). Without Chromium or
playwright the test skips (fails under CI).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from browser_server import CHROMIUM, artifact_folder, serving
from browser_server import require_browser as _require_browser
from screening_answers import eligible_answers_of
from stalwart.capture.db import open_engine
from stalwart.capture.service import CaptureService
from stalwart.capture.users import UserStore
from stalwart.protocol.load import LoadedProtocol
from stalwart.web.app import create_app

PASSWORD = "a long browser password"
RAND = dt.date(2008, 6, 2)
DAY = dt.timedelta(days=1)
LABS = {"CD4": 610, "CD4PCT": 24, "HIVRNA": "<50"}


@pytest.fixture()
def server(
    databases: object, packaged: LoadedProtocol, tmp_path: Path, today: dt.date
) -> Iterator[tuple[str, str]]:
    """A server over a trial with one US01 participant whose week 4 was corrected; a US01
    monitor and a data manager."""
    url = databases.new("sqlite", packaged, folder=tmp_path)  # type: ignore[attr-defined]
    engine = open_engine(url)
    hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    users = UserStore(engine, hasher)
    users.add_user("monitor.us", PASSWORD, "monitor", "test-setup", site="US01")
    users.add_user("dm", PASSWORD, "data_manager", "test-setup")
    service = CaptureService.open(engine, today=lambda: today)
    service.screen("US01", "US01-S0001", RAND - 3 * DAY, eligible_answers_of(), "coord.us")
    service.record_consent("US01-S0001", RAND - 3 * DAY, "coord.us")
    allocation = service.randomize("US01-S0001", RAND - 3 * DAY, RAND, "coord.us", entry_labs=LABS)
    u = allocation.usubjid
    service.record_visit(u, "WK04", RAND + 28 * DAY, LABS, "coord.us")
    version = service.records.visit(u, "WK04", "x").version
    service.correct_visit(
        u,
        "WK04",
        RAND + 28 * DAY,
        LABS | {"CD4": 670},
        "lab report re-read",
        "coord.us",
        version=version,
    )
    service.record_visit(u, "WK08", RAND + 56 * DAY, LABS | {"CD4": 700}, "coord.us")
    app = create_app(engine, today=lambda: today, hasher=hasher)
    with serving(app) as base:
        yield base, u
    engine.dispose()


@pytest.fixture()
def artifacts(tmp_path: Path) -> Path:
    return artifact_folder(tmp_path, "browser-monitoring")


def test_monitor_verifies_and_data_manager_locks(server: tuple[str, str], artifacts: Path) -> None:
    _require_browser()
    from playwright.sync_api import Page, expect, sync_playwright

    base, u = server
    expect.set_options(timeout=20_000)

    def shot(page: Page, name: str) -> None:
        page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)

    def log_in(page: Page, username: str) -> None:
        page.goto(f"{base}/login")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(PASSWORD)
        with page.expect_navigation():
            page.get_by_role("button", name="Log in").click()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        try:
            log_in(page, "monitor.us")
            page.goto(f"{base}/participants/{u}/visits/WK04")
            banner = page.locator("#saved")
            expect(banner).to_contain_text("by coord.us; last changed")
            expect(banner).to_contain_text("Not source-verified")
            shot(page, "01-visit-banner")
            with page.expect_navigation():
                page.get_by_role("button", name="Mark source-verified").click()
            expect(page.locator("#sdv")).to_contain_text("Source-verified by monitor.us")
            shot(page, "02-visit-verified")

            page.goto(f"{base}/participants-grid")
            expect(page.locator("#grid")).to_contain_text("SDV")
            shot(page, "03-grid-sdv")

            page.goto(f"{base}/participants/{u}/visits/WK04")
            page.get_by_role("link", name="Audit trail").click()
            page.wait_for_url("**/visits/WK04/audit")
            trail = page.locator("#audit-trail")
            expect(trail).to_contain_text("610 cells/mm³")
            expect(trail).to_contain_text("670 cells/mm³")
            expect(trail).to_contain_text("lab report re-read")
            expect(trail).not_to_contain_text("lab_result")
            shot(page, "04-visit-audit")
            page.goto(f"{base}/participants/{u}/audit")
            expect(page.locator("#audit-trail")).to_contain_text("Randomization")
            shot(page, "05-participant-audit")

            page.context.clear_cookies()
            log_in(page, "dm")
            page.goto(f"{base}/locks")
            page.get_by_label("What to lock").select_option("participant")
            page.get_by_label("Participant ID").fill(u)
            page.get_by_label("Reason for the lock").fill("database lock for interim 1")
            with page.expect_navigation():
                page.get_by_role("button", name="Lock", exact=True).click()
            expect(page.locator("#locks-active")).to_contain_text(u)
            shot(page, "06-locks")
            page.goto(f"{base}/participants/{u}/visits/WK08")
            expect(page.locator("#locked")).to_contain_text("database lock for interim 1")
            expect(page.get_by_role("button", name="Save correction")).to_have_count(0)
            shot(page, "07-visit-locked")
            page.goto(f"{base}/locks")
            page.get_by_label("Reason for the unlock").fill("WK08 CD4 must be corrected")
            with page.expect_navigation():
                page.get_by_role("button", name="Unlock").click()
            expect(page.locator("#locks-history")).to_contain_text("WK08 CD4 must be corrected")
            shot(page, "08-unlocked")
        finally:
            browser.close()
