"""A site coordinator in a real browser: Playwright (Python) driving Debian's Chromium.

Logs in (by keyboard), screens a participant, records consent, randomizes, enters the week-4
visit with CD4 = 50,000 (the error shows beside the field and nothing is saved), corrects it,
and opens the audit trail. Screenshots go to ``$STALWART_ARTIFACTS/browser`` (or the test's
``tmp_path``). Chromium is launched by its path, never downloaded; without it (or without the
playwright package) the test skips, except under ``CI=true`` where it fails.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher

from browser_server import CHROMIUM, artifact_folder, serving
from browser_server import require_browser as _require_browser
from stalwart.capture.db import open_engine
from stalwart.capture.tables import LabResult, Visit
from stalwart.capture.users import UserStore
from stalwart.protocol.load import LoadedProtocol
from stalwart.web.app import create_app

PASSWORD = "coordinator password"


@pytest.fixture()
def server(
    databases: object, packaged: LoadedProtocol, tmp_path: Path, today: dt.date
) -> Iterator[tuple[str, str]]:
    """A uvicorn server over a fresh SQLite trial, with one GB01 coordinator."""
    url = databases.new("sqlite", packaged, folder=tmp_path)  # type: ignore[attr-defined]
    engine = open_engine(url)
    hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    UserStore(engine, hasher).add_user(
        "coord.gb", PASSWORD, "site_coordinator", "test-setup", site="GB01"
    )
    app = create_app(engine, today=lambda: today, hasher=hasher)
    with serving(app) as base:
        yield base, url
    engine.dispose()


@pytest.fixture()
def artifacts(tmp_path: Path) -> Path:
    return artifact_folder(tmp_path, "browser")


def _count(url: str, table: type[Visit] | type[LabResult]) -> int:
    engine = open_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.scalar(sa.select(sa.func.count()).select_from(table)) or 0)
    finally:
        engine.dispose()


def test_coordinator_screens_randomizes_and_enters_week_4(
    server: tuple[str, str], artifacts: Path
) -> None:
    _require_browser()
    from playwright.sync_api import expect, sync_playwright

    base, db = server
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        try:
            # log in, by keyboard only
            page.goto(f"{base}/worklist")
            expect(page.get_by_label("Username")).to_be_visible()
            page.get_by_label("Username").focus()
            page.keyboard.type("coord.gb")
            page.keyboard.press("Tab")
            page.keyboard.type(PASSWORD)
            page.keyboard.press("Enter")
            expect(page.get_by_role("heading", name="Worklist")).to_be_visible()
            page.screenshot(path=str(artifacts / "01-worklist.png"), full_page=True)

            # screen
            page.get_by_role("link", name="Screen").click()
            expect(page.get_by_label("Screening number")).to_be_visible()
            page.get_by_label("Date of informed consent").fill("2006-01-02")  # consent first
            page.get_by_label("Screening number").fill("GB01-S0001")
            page.get_by_label("Screening date").fill("2006-01-02")
            page.get_by_label("Age").fill("34")
            page.get_by_label("Sex").select_option("F")
            page.get_by_label("HIV infection documented").select_option("true")
            page.get_by_label("Screening CD4+ count").fill("540")
            page.get_by_label("Screening HIV RNA").fill("15000")
            for label in (
                "Currently on continuous antiretroviral therapy",
                "Any antiretroviral drug",
                "Any prior aldesleukin",
                "History of an AIDS-defining illness",
                "Corticosteroids, chemotherapy or immunomodulators",
            ):
                page.get_by_label(label).select_option("false")
            page.get_by_label("Access to a HAART regimen").select_option("true")
            page.screenshot(path=str(artifacts / "02-screening-form.png"), full_page=True)
            page.get_by_role("button", name="Record screening").click()
            expect(page.locator("#outcome")).to_contain_text("GB01-S0001 is eligible")
            page.screenshot(path=str(artifacts / "03-eligible.png"), full_page=True)

            # randomize (the consent was recorded with the screening)
            page.get_by_role("link", name="Randomize GB01-S0001").click()
            expect(page.get_by_text("Consent recorded on 2006-01-02")).to_be_visible()
            page.get_by_label("Randomization date").fill("2006-01-05")
            page.get_by_role("button", name="Randomize").click()
            expect(page.locator("#arm")).to_be_visible()
            arm = page.locator("#arm strong").inner_text()
            assert arm in ("NOTHER", "IL2", "IL2ART")
            expect(page.get_by_role("link", name="WK32 Week 32 (primary)")).to_be_visible()
            page.screenshot(path=str(artifacts / "04-randomized.png"), full_page=True)

            # week 4 with CD4 = 50,000: refused beside the field, nothing saved
            page.get_by_role("link", name="WK04 Week 4").click()
            cd4 = page.get_by_label("CD4+ count (cells/mm3)")
            expect(cd4).to_be_visible()
            page.get_by_label("Visit date").fill("2006-02-01")
            cd4.fill("50000")
            page.get_by_label("HIV RNA (copies/mL)").fill("<50")
            page.get_by_role("button", name="Save visit").click()
            error = page.locator("#f-LAB-CD4-error")
            expect(error).to_contain_text("50,000 cells/mm3 is outside the valid range 0 to 5,000")
            expect(page.get_by_label("CD4+ count (cells/mm3)")).to_have_attribute(
                "aria-invalid", "true"
            )
            page.screenshot(path=str(artifacts / "05-cd4-refused.png"), full_page=True)
            assert _count(db, Visit) == 0 and _count(db, LabResult) == 0

            # corrected, saved
            page.get_by_label("CD4+ count (cells/mm3)").fill("500")
            page.get_by_role("button", name="Save visit").click()
            expect(page.locator("#saved")).to_contain_text("by coord.gb")
            expect(page.locator("#saved")).to_contain_text("Visit date 2006-02-01")
            assert _count(db, Visit) == 1 and _count(db, LabResult) == 2
            page.screenshot(path=str(artifacts / "06-saved.png"), full_page=True)

            # audit trail
            page.get_by_role("link", name="Audit trail").click()
            # one entry (the visit saved), a row per field: date and both results, by label
            trail = page.locator("#audit-trail tbody tr")
            expect(trail).to_have_count(3)
            expect(page.locator("#audit-trail")).to_contain_text("coord.gb")
            expect(page.locator("#audit-trail")).to_contain_text("CD4+ count")
            expect(page.locator("#audit-trail")).not_to_contain_text("lab_result")
            page.screenshot(path=str(artifacts / "07-audit-trail.png"), full_page=True)
        finally:
            browser.close()
    assert len(list(artifacts.glob("*.png"))) == 7
