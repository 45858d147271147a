"""One participant from consent to week 32 in a real browser, as a site runs a trial.

Playwright (Python) on Debian's Chromium, over a uvicorn server on a fresh SQLite trial (the
app's today is 2009-03-01). Consent is recorded on the screening day, the participant is
randomized with the study-entry results, weeks 4 to 32 are entered with week 8 two weeks late
(refused without a reason, then saved and flagged), an unscheduled visit, week 12 recorded as
missed, and a correction of week 16 with its reason; the deviations log lists the late and the
missed visit, and the analysis (ADLB) flags the late value as not analysed (the plan's
``out_of_window = "exclude"``). Screenshots go to ``$STALWART_ARTIFACTS/browser-visits`` (or
the test's ``tmp_path``). Without Chromium or playwright the test skips (fails under CI).
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
from stalwart.analysis.datasets.bundle import derive_datasets
from stalwart.analysis.datasets.source import read_store
from stalwart.capture.db import open_engine
from stalwart.capture.service import CaptureService
from stalwart.capture.users import UserStore
from stalwart.protocol.load import LoadedProtocol
from stalwart.web.app import create_app

SCREENING = {
    "Age (years)": "35",
    "Sex": "M",
    "HIV infection documented": "true",
    "Screening CD4+ count (cells/mm3)": "520",
    "Screening HIV RNA (copies/mL)": "20000",
    "Currently on continuous antiretroviral therapy": "false",
    "Any antiretroviral drug (hydroxyurea included) within 1 year before entry": "false",
    "Any prior aldesleukin (IL-2)": "false",
    "Access to a HAART regimen (>= 1 PI plus >= 2 N(t)RTIs)": "true",
    "History of an AIDS-defining illness": "false",
    "Corticosteroids, chemotherapy or immunomodulators within 8 weeks": "false",
}
TYPED = ("Age (years)", "Screening CD4+ count (cells/mm3)", "Screening HIV RNA (copies/mL)")
PASSWORD = "coordinator password"
RAND = dt.date(2008, 6, 2)
DAY = dt.timedelta(days=1)


@pytest.fixture()
def server(
    databases: object, packaged: LoadedProtocol, tmp_path: Path, today: dt.date
) -> Iterator[tuple[str, str]]:
    """A uvicorn server over a fresh SQLite trial with one US01 coordinator and a screening."""
    url = databases.new("sqlite", packaged, folder=tmp_path)  # type: ignore[attr-defined]
    engine = open_engine(url)
    hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    users = UserStore(engine, hasher)
    users.add_user("coord.us", PASSWORD, "site_coordinator", "test-setup", site="US01")
    users.add_user("dm.all", PASSWORD, "data_manager", "test-setup")
    service = CaptureService.open(engine, today=lambda: today)
    service.screen("US01", "US01-S0001", RAND - 3 * DAY, eligible_answers_of(), "coord.us")
    app = create_app(engine, today=lambda: today, hasher=hasher)
    with serving(app) as base:
        yield base, url
    engine.dispose()


@pytest.fixture()
def artifacts(tmp_path: Path) -> Path:
    return artifact_folder(tmp_path, "browser-visits")


def test_one_participant_from_consent_to_week_32(
    server: tuple[str, str], artifacts: Path, packaged: LoadedProtocol
) -> None:
    _require_browser()
    from playwright.sync_api import Page, expect, sync_playwright

    base, db = server
    expect.set_options(timeout=20_000)  # a loaded machine: the pages are slow, not wrong

    def shot(page: Page, name: str) -> None:
        page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)

    def labs(page: Page, cd4: str, pct: str = "24", rna: str = "<50") -> None:
        page.get_by_label("CD4+ count (cells/mm3)").fill(cd4)
        page.get_by_label("CD4+ percent (%)").fill(pct)
        page.get_by_label("HIV RNA (copies/mL)").fill(rna)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        try:
            page.goto(f"{base}/login")
            page.get_by_label("Username").fill("coord.us")
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Log in").click()
            expect(page.get_by_role("heading", name="Worklist")).to_be_visible()

            # the screening form: consent first, then the screening procedures; three wrong
            # fields show three errors at once, in the user's words
            page.goto(f"{base}/screening")
            page.get_by_label("Date of informed consent").fill((RAND - 3 * DAY).isoformat())
            page.get_by_label("Screening date").fill("2009-03-09")
            for label, value in SCREENING.items():
                if label in TYPED:
                    page.get_by_label(label).fill(value)
                else:
                    page.get_by_label(label).select_option(value)
            page.get_by_label("Age (years)").fill("abc")
            page.get_by_label("Screening CD4+ count (cells/mm3)").fill("-5")
            page.get_by_role("button", name="Record screening").click()
            expect(page.locator("#f-age-error")).to_contain_text("enter a whole number")
            expect(page.locator("#f-cd4-error")).to_contain_text(
                "-5 cells/mm3 is outside the valid range 0 to 5,000 cells/mm3"
            )
            expect(page.locator("#f-screening_date-error")).to_contain_text("is in the future")
            expect(page.locator(".field.invalid")).to_have_count(3)
            shot(page, "00-screening-three-errors")
            page.get_by_label("Age (years)").fill("35")
            page.get_by_label("Screening CD4+ count (cells/mm3)").fill("520")
            page.get_by_label("Screening date").fill((RAND - 3 * DAY).isoformat())
            page.get_by_role("button", name="Record screening").click()
            expect(page.locator("#outcome")).to_contain_text("US01-S0002 is eligible")
            shot(page, "00b-screening-eligible")
            page.get_by_role("link", name="Randomize US01-S0002").click()
            expect(
                page.get_by_text(f"Consent recorded on {(RAND - 3 * DAY).isoformat()}")
            ).to_be_visible()
            page.get_by_label("Randomization date").fill(RAND.isoformat())
            labs(page, "512", "27")
            shot(page, "01-randomize-with-entry-labs")
            page.get_by_role("button", name="Randomize").click()
            expect(page.locator("#arm")).to_be_visible()
            expect(page.locator("#visit-ENTRY")).to_contain_text("recorded")
            usubjid = page.locator("h1").inner_text()
            shot(page, "02-randomized")

            def visit(code: str, day: int, cd4: str, reason: str | None = None) -> None:
                page.goto(f"{base}/participants/{usubjid}/visits/{code}")
                page.get_by_label("Visit date").fill((RAND + day * DAY).isoformat())
                labs(page, cd4)
                if reason is not None:
                    page.get_by_label("Reason the visit is outside its window").fill(reason)
                page.get_by_role("button", name="Save visit").click()

            visit("WK04", 28, "600")
            expect(page.locator("#saved")).to_be_visible()
            # week 8 two weeks late: refused without a reason, beside the field
            visit("WK08", 56 + 14, "640")
            expect(page.locator("#f-deviation_reason-error")).to_contain_text(
                "The visit date is outside the window"
            )
            shot(page, "03-late-visit-needs-a-reason")
            page.get_by_label("Reason the visit is outside its window").fill(
                "participant travelling"
            )
            page.get_by_role("button", name="Save visit").click()
            expect(page.locator("#out-of-window")).to_be_visible()
            shot(page, "04-late-visit-saved-flagged")

            # an unscheduled visit, any labs
            page.goto(f"{base}/participants/{usubjid}")
            page.get_by_role("link", name="Record an unscheduled visit").click()
            page.get_by_label("Visit date").fill((RAND + 40 * DAY).isoformat())
            page.get_by_label("Reason for the unscheduled visit").fill("fever: CD4 checked")
            page.get_by_label("CD4+ count (cells/mm3)").fill("450")
            shot(page, "05-unscheduled-form")
            page.get_by_role("button", name="Save unscheduled visit").click()
            shot(page, "05b-unscheduled-saved")
            expect(page.locator("h1")).to_contain_text("Unscheduled visit 01")

            # week 12 was not done: missed, with the reason
            page.goto(f"{base}/participants/{usubjid}")
            expect(page.locator("#visit-WK12")).to_contain_text("missed")
            page.locator("#visit-WK12").get_by_role("link", name="record as missed").click()
            page.get_by_label("Why the visit was missed").fill("in hospital")
            page.get_by_role("button", name="Record as missed").click()
            expect(page.locator("#visit-WK12")).to_contain_text("missed: in hospital")

            for code, day, cd4 in [
                ("WK16", 112, "700"),
                ("WK20", 140, "1300"),  # a jump the protocol's soft check queries
                ("WK24", 168, "720"),
                ("WK28", 196, "730"),
                ("WK32", 224, "740"),
            ]:
                visit(code, day, cd4)
                expect(page.locator("#saved")).to_be_visible()

            # a correction with its reason; the audit trail holds the old and the new value
            page.goto(f"{base}/participants/{usubjid}/visits/WK16")
            page.get_by_label("CD4+ count (cells/mm3)").fill("770")
            page.get_by_label("Reason for change").fill("transcription error")
            # the page before the correction shows "Saved" too: wait for the post's own answer
            with page.expect_navigation():
                page.get_by_role("button", name="Save correction").click()
            expect(page.locator("#saved")).to_be_visible()
            page.get_by_role("link", name="Audit trail").click()
            page.wait_for_url("**/visits/WK16/audit")
            trail = page.locator("#audit-trail")
            expect(trail).to_contain_text("transcription error")
            expect(trail).to_contain_text("700")
            expect(trail).to_contain_text("770")
            shot(page, "06-audit-trail")

            # the soft check raised a query on WK20's CD4 by itself: the site answers it
            page.goto(f"{base}/participants/{usubjid}/visits/WK20")
            expect(page.locator("#query-badges")).to_contain_text("1 open query on CD4+ count")
            shot(page, "06b-soft-check-query")
            page.goto(f"{base}/queries")
            row = page.locator("tbody tr", has_text="WK20")
            expect(row).to_contain_text("changed by more than 400 cells/mm3")
            row.get_by_label("Answer to query", exact=False).fill(
                "1300 confirmed against the laboratory report"
            )
            row.get_by_role("button", name="Answer").click()
            expect(page.locator("tbody tr", has_text="WK20")).to_contain_text(
                "answered by coord.us"
            )

            page.goto(f"{base}/participants/{usubjid}")
            shot(page, "07-participant-week-32")
            page.goto(f"{base}/deviations")
            expect(page.locator("tbody tr")).to_have_count(2)
            expect(page.locator("tbody")).to_contain_text("VISIT OUT OF WINDOW")
            expect(page.locator("tbody")).to_contain_text("MISSED VISIT")
            shot(page, "08-deviations-log")

            # a serious adverse event: three wrong fields at once, then saved; entered months
            # after onset, it is flagged as reported late
            page.goto(f"{base}/participants/{usubjid}/events")
            page.get_by_label("Protocol term").select_option("Fever")
            page.get_by_label("Start date").fill("2009-03-20")
            page.get_by_label("Relationship to study treatment").select_option("POSSIBLE")
            page.get_by_label("Outcome").select_option("RECOVERED/RESOLVED")
            page.get_by_label("Action taken with study treatment").select_option("DRUG INTERRUPTED")
            page.locator("#f-serious").select_option("true")
            page.get_by_role("button", name="Report adverse event").click()
            expect(page.locator("#f-verbatim-error")).to_contain_text("is required")
            expect(page.locator("#f-grade-error")).to_contain_text("is required")
            expect(page.locator("#f-start_date-error")).to_contain_text("is in the future")
            shot(page, "08b-adverse-event-errors")
            page.get_by_label("Event, in the site's words").fill("high fever after IL-2, admitted")
            page.get_by_label("DAIDS grade").select_option("3")
            page.get_by_label("Start date").fill((RAND + 60 * DAY).isoformat())
            page.get_by_label("Requires or Prolongs Hospitalization").check()
            page.get_by_role("button", name="Report adverse event").click()
            events = page.locator("#adverse-events")
            expect(events).to_contain_text("high fever after IL-2, admitted")
            expect(events).to_contain_text("serious: requires or prolongs hospitalization")
            expect(events).to_contain_text("SAE reported late")
            shot(page, "08c-serious-adverse-event")

            # the data manager closes the answered query
            with page.expect_navigation():  # the logout's own answer, before logging in again
                page.get_by_role("button", name="Log out").click()
            page.goto(f"{base}/login")
            expect(page.get_by_role("heading", name="Log in")).to_be_visible()
            page.get_by_label("Username").fill("dm.all")
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Log in").click()
            expect(page.get_by_role("button", name="Log out")).to_be_visible()
            page.goto(f"{base}/queries")
            row = page.locator("tbody tr", has_text="WK20")
            row.get_by_label("Closing note for query", exact=False).fill("confirmed by the site")
            row.get_by_role("button", name="Close").click()
            row = page.locator("tbody tr", has_text="WK20")
            expect(row).to_contain_text("closed by dm.all")
            row.get_by_role("link").first.click()
            history = page.locator("#query-history")
            expect(history).to_contain_text("coord.us")
            expect(history).to_contain_text("dm.all")
            expect(history).to_contain_text("closed")
            shot(page, "09-query-closed")
        finally:
            browser.close()

    # the analysis datasets: the late week-8 value is kept and flagged, not analysed
    engine = open_engine(db)
    try:
        adlb = derive_datasets(packaged.protocol, read_store(engine)).adlb
    finally:
        engine.dispose()
    cd4 = adlb[adlb["PARAMCD"] == "CD4"].set_index("AVISIT")
    assert cd4.loc["WK08", "ANL01FL"] == "" and cd4.loc["WK08", "ADY"] == 70
    assert cd4.loc["WK08", "AWHI"] == 63 and cd4.loc["WK32", "ANL01FL"] == "Y"
    assert "WK12" not in cd4.index and cd4.loc["WK16", "AVAL"] == 770
    assert len(list(artifacts.glob("*.png"))) == 15
