"""The DSMB study report: open and closed, HTML and PDF, from a snapshot named by its data hash.

One small demo database (STALWART with 24 participants) serves the module; the PDFs are rendered
to PNG with pdftoppm and to text with pdftotext (poppler-utils) and checked page by page.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from stalwart.capture.audit import data_sha256
from stalwart.capture.db import create_schema, open_engine
from stalwart.capture.service import CaptureService, initialize_trial
from stalwart.capture.users import UserStore
from stalwart.cli import app as cli_app
from stalwart.errors import AnalysisError, ConfigurationError, DatabaseError
from stalwart.play.demo import run_demo
from stalwart.protocol.load import default_protocol_path, load_protocol, parse_protocol
from stalwart.reports.study_report import ReportFiles, build_report, build_report_from_url
from stalwart.web.app import create_app

ARM_CODES = ("NOTHER", "IL2", "IL2ART")
ARM_NAMES = ("No therapy", "IL-2 alone", "IL-2 with peri-cycle ART")

needs_poppler = pytest.mark.skipif(
    shutil.which("pdftoppm") is None or shutil.which("pdftotext") is None,
    reason="poppler-utils (pdftoppm, pdftotext) not installed; .ci/run installs it",
)


def _small_text(version: str = "1.0.0") -> str:
    text = default_protocol_path().read_text(encoding="utf-8")
    text = text.replace("sample_size = 267", "sample_size = 24")
    return text.replace('version = "1.0.0"', f'version = "{version}"', 1)


@pytest.fixture(scope="session")
def small_protocol(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("protocol") / "small.toml"
    path.write_text(_small_text(), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def demo_db(small_protocol: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    run_demo(out, seed=5, protocol=small_protocol)
    return out / "stalwart.db"


@pytest.fixture(scope="session")
def reports(demo_db: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, ReportFiles]:
    out = tmp_path_factory.mktemp("reports")
    url = f"sqlite:///{demo_db}"
    return {
        "open": build_report_from_url(url, out, closed=False),
        "closed": build_report_from_url(url, out, closed=True),
    }


def _html(files: ReportFiles) -> str:
    assert files.html is not None
    return files.html.read_text(encoding="utf-8")


def _pdf_pages_text(pdf: Path) -> list[str]:
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], check=True, capture_output=True, text=True
    ).stdout
    pages = text.split("\f")
    return pages[:-1] if pages and not pages[-1].strip() else pages


class _Sections(HTMLParser):
    """Text of each top-level <section>, by id."""

    def __init__(self) -> None:
        super().__init__()
        self.text: dict[str, list[str]] = {}
        self._current: str | None = None
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "section":
            self._depth += 1
            if self._depth == 1:
                self._current = dict(attrs).get("id") or ""
                self.text[self._current] = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self._depth -= 1
            if self._depth == 0:
                self._current = None

    def handle_data(self, data: str) -> None:
        if self._current is not None:
            self.text[self._current].append(data)


def _sections(html: str) -> dict[str, str]:
    parser = _Sections()
    parser.feed(html)
    return {k: " ".join(v) for k, v in parser.text.items()}


# -- the snapshot ------------------------------------------------------------------------------


def test_the_snapshot_is_named_by_the_audit_data_hash(demo_db: Path, reports) -> None:
    engine = open_engine(f"sqlite:///{demo_db}")
    try:
        expected = data_sha256(engine)
    finally:
        engine.dispose()
    for files in reports.values():
        assert files.snapshot == expected
        assert files.html is not None and files.pdf is not None
        assert expected[:12] in files.html.name and expected[:12] in files.pdf.name


@pytest.mark.parametrize("version", ["open", "closed"])
def test_every_html_section_shows_hash_versions_and_open_or_closed(reports, version) -> None:
    files = reports[version]
    sections = _sections(_html(files))
    assert {"provenance", "flow", "baseline", "trajectories", "time-to-event"} <= set(sections)
    assert {"adverse-events", "listings"} <= set(sections)
    for name, text in sections.items():
        assert files.snapshot in text, name
        assert version.upper() in text and "STALWART 1.0.0" in text and "stalwart " in text, name


@needs_poppler
@pytest.mark.parametrize("version", ["open", "closed"])
def test_every_pdf_page_shows_the_hash_and_is_not_blank(reports, version, tmp_path) -> None:
    files = reports[version]
    assert files.pdf is not None and files.pdf.read_bytes().startswith(b"%PDF")
    pages = _pdf_pages_text(files.pdf)
    assert len(pages) == files.pages and len(pages) >= 5
    for number, text in enumerate(pages, start=1):
        assert files.snapshot in text, f"page {number} lacks the snapshot hash"
        assert version.upper() in text and f"page {number} of {len(pages)}" in text
    subprocess.run(
        ["pdftoppm", "-r", "30", "-gray", "-png", str(files.pdf), str(tmp_path / "page")],
        check=True,
    )
    images = sorted(tmp_path.glob("page-*.png"))
    assert len(images) == len(pages)
    for image in images:
        pixels = np.asarray(Image.open(image).convert("L"), dtype=float)
        height = pixels.shape[0]
        body = pixels[int(height * 0.08) : int(height * 0.92)]  # inside the header and footer
        assert body.var() > 50.0, f"{image.name}: the page body is blank"
        assert (body < 128).mean() > 0.002, f"{image.name}: almost no ink on the page body"


# -- open and closed -------------------------------------------------------------------------


def test_the_open_report_names_no_arm_and_shows_no_by_arm_result(reports) -> None:
    files = reports["open"]
    texts = [_html(files)]
    if shutil.which("pdftotext") and files.pdf is not None:
        texts += _pdf_pages_text(files.pdf)
    for text in texts:
        for code in ARM_CODES:
            assert not re.search(rf"\b{code}\b", text), code
        for name in ARM_NAMES:
            assert name not in text, name
    html = texts[0]
    for by_arm in ("table-primary", "fig-forest", "table-time-to-event", "table-comparison"):
        assert by_arm not in html
    assert "table-recomputed" not in html
    # pooled tables: one group column, no "Total" beside it
    flow = re.search(r'<table id="table-flow">.*?</thead>', html, re.DOTALL)
    assert flow is not None and flow.group(0).count('scope="col"') == 2
    assert ">Total<" not in html
    # one Kaplan-Meier curve: a single legend entry
    km = re.search(r'<svg[^>]*id="fig-km-oddeath".*?</svg>', html, re.DOTALL)
    assert km is not None and "All participants" in km.group(0)
    # exposure by treatment would give the arms' sizes away: closed report only; the pooled
    # monitoring sections are there, the SAE listing without an arm column
    assert 'id="table-exposure"' not in html and 'id="table-interim"' not in html
    for ident in ("table-accrual", "table-data-quality", "table-deviations", "listing-sae"):
        assert f'id="{ident}"' in html, ident


def test_the_closed_report_has_every_section_by_arm(reports) -> None:
    html = _html(reports["closed"])
    for name in ARM_NAMES:
        assert name in html
    for ident in (
        "fig-consort",
        "table-baseline",
        "fig-mean-cd4",
        "fig-mean-lhivrna",
        "table-primary",
        "fig-forest-cd4",
        "fig-km-oddeath",
        "table-time-to-event",
        "table-accrual",
        "table-accrual-site",
        "table-data-quality",
        "table-deviations",
        "table-exposure",
        "fig-interim",
        "table-interim",
        "listing-sae",
        "listing-deaths",
        "table-at-risk-oddeath",
        "table-ae-term-grade",
        "listing-events",
        "table-comparison",
        "table-recomputed",
    ):
        assert f'id="{ident}"' in html, ident
    # the hazard-ratio forest plot is drawn when some hazard ratio is estimable (24 participants
    # may have no event in an arm)
    estimable = re.search(
        r"Cox \(Efron ties\)</td>\s*<td>[^<]*</td>\s*<td>[^<]*</td>\s*<td>\d", html
    )
    assert ('id="fig-forest-hazard-ratios"' in html) == bool(estimable)


def test_listing_has_every_reported_event_with_its_review(demo_db: Path, reports) -> None:
    with sqlite3.connect(demo_db) as conn:
        stored = conn.execute(
            "SELECT p.usubjid, ce.event_code, r.decision FROM clinical_event ce "
            "JOIN participant p ON p.id = ce.participant_id "
            "LEFT JOIN endpoint_review r ON r.clinical_event_id = ce.id"
        ).fetchall()
    listing = re.search(r'<table id="listing-events">.*?</table>', _html(reports["closed"]), re.S)
    assert listing is not None
    body = listing.group(0).split("<tbody>")[1]
    rows = re.findall(r"<tr ", body)
    assert len(rows) == len(stored) or (not stored and "No rows." in body)
    for usubjid, code, decision in stored:
        assert usubjid in body and f"{code}:" in body
        if decision:
            assert decision.capitalize() in body


def test_ae_worst_grade_table_matches_the_store(demo_db: Path, reports) -> None:
    """Any-grade and worst-grade counts of each term, per the whole trial, recounted in SQL."""
    with sqlite3.connect(demo_db) as conn:
        worst = conn.execute(
            "SELECT term, grade, count(*) FROM (SELECT participant_id, term, max(grade) AS grade "
            "FROM adverse_event GROUP BY participant_id, term) GROUP BY term, grade"
        ).fetchall()
        n = conn.execute("SELECT count(*) FROM participant").fetchone()[0]
    html = _html(reports["open"])  # the pooled table: its one column is the whole trial
    table = re.search(r'<table id="table-ae-term-grade">.*?</table>', html, re.S)
    assert table is not None
    cells = re.findall(r'<th scope="row">([^<]*)</th>\s*<td>([^<]*)</td>', table.group(0))
    counts: dict[tuple[str, str], int] = {}
    term = ""
    for label, cell in cells:
        if not cell.strip():
            term = label
            continue
        counts[(term, label.split(" (")[0])] = int(cell.split(" ")[0])
    expected: dict[tuple[str, str], int] = {}
    for ae_term, grade, count in worst:
        expected[(ae_term, f"Grade {grade}")] = count
        expected[(ae_term, "Any grade")] = expected.get((ae_term, "Any grade"), 0) + count
    assert counts == expected
    assert f"(n\u00a0=\u00a0{n})" in table.group(0)


# -- bad input -------------------------------------------------------------------------------


def test_unknown_format_is_refused_and_nothing_is_written(demo_db: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    with pytest.raises(ConfigurationError, match="unknown report format 'docx'"):
        build_report_from_url(f"sqlite:///{demo_db}", out, fmt="docx")
    assert not out.exists()
    result = CliRunner().invoke(
        cli_app,
        ["report", "--database", f"sqlite:///{demo_db}", "--out", str(out), "--format", "x"],
    )
    assert result.exit_code == 1 and "unknown report format" in result.output
    assert "Traceback" not in result.output and not out.exists()


def test_an_empty_database_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    with pytest.raises(DatabaseError, match="holds no trial"):
        build_report_from_url(f"sqlite:///{empty}", tmp_path / "r1")
    url = f"sqlite:///{tmp_path / 'init.db'}"
    engine = open_engine(url)
    try:
        create_schema(engine)
        initialize_trial(engine, load_protocol(), seed=4, actor="test")
        before = data_sha256(engine)
        with pytest.raises(AnalysisError, match="no randomized participants"):
            build_report(engine, tmp_path / "r2", closed=True)
        assert data_sha256(engine) == before
    finally:
        engine.dispose()
    missing = tmp_path / "missing.db"
    with pytest.raises(ConfigurationError, match="no SQLite database"):
        build_report_from_url(f"sqlite:///{missing}", tmp_path / "r3")
    assert not missing.exists()
    assert not any((tmp_path / d).exists() for d in ("r1", "r2", "r3"))


def test_an_early_closed_report_says_what_is_not_estimable_yet(
    trial: CaptureService, enrol: Callable[..., Any], tmp_path: Path
) -> None:
    """A first DSMB look, before any week-32 value: the closed report renders and says why."""
    import datetime as dt

    for i in range(4):
        allocation = enrol(trial, "US01", f"US01-E{i}")
        trial.record_visit(
            allocation.usubjid, "ENTRY", dt.date(2006, 1, 5), {"CD4": 600, "HIVRNA": 400}, "t"
        )
    before = data_sha256(trial.engine)
    files = build_report(trial.engine, tmp_path / "early", closed=True, fmt="html")
    html = _html(files)
    assert "Not estimable yet" in html
    assert "<strong>primary</strong>: " in html  # the ANCOVA at week 32 has no value yet
    # the DSMB's sections are there and say what the data cannot support yet
    for text in (
        "No primary-endpoint comparison is estimable yet",
        "No comparison with an estimate in the results",
        "No dose recorded yet by the data cut-off",
        "No serious adverse event reported by the data cut-off",
        "No death reported by the data cut-off",
        'id="table-accrual"',
        'id="table-data-quality"',
        'id="table-deviations"',
        'id="table-exposure"',
    ):
        assert text in html, text
    assert data_sha256(trial.engine) == before


def test_a_database_of_another_protocol_version_is_refused(demo_db: Path, tmp_path: Path) -> None:
    other = parse_protocol(_small_text("2.0.0"), source="small-v2.toml")
    engine = open_engine(f"sqlite:///{demo_db}")
    try:
        with pytest.raises(DatabaseError, match=r"version 1\.0\.0.*version 2\.0\.0"):
            build_report(engine, tmp_path / "r", protocol=other)
        with pytest.raises(DatabaseError, match="differs"):
            build_report(engine, tmp_path / "r", protocol=load_protocol())  # 267, not 24
    finally:
        engine.dispose()
    assert not (tmp_path / "r").exists()
    result = CliRunner().invoke(
        cli_app,
        ["report", "--database", f"sqlite:///{demo_db}", "--out", str(tmp_path / "r")],
    )
    assert result.exit_code == 0, result.output  # no --protocol: the database's own
    assert "OPEN report of snapshot" in result.output


# -- over HTTP -------------------------------------------------------------------------------


def test_closed_report_only_for_unblinded_roles_over_http(demo_db: Path, tmp_path: Path) -> None:
    copy = tmp_path / "web.db"
    shutil.copy(demo_db, copy)  # user accounts are written: keep the shared database as it is
    engine = open_engine(f"sqlite:///{copy}")
    hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    try:
        with TestClient(create_app(engine, hasher=hasher)) as client:
            users: UserStore = client.app.state.users  # type: ignore[attr-defined]

            def token(role: str) -> dict[str, str]:
                users.add_user(role, "a long test password", role, "test-setup")
                response = client.post(
                    "/api/token", json={"username": role, "password": "a long test password"}
                )
                assert response.status_code == 201, response.text
                return {"Authorization": f"Bearer {response.json()['access_token']}"}

            blinded, dsmb = token("statistician_blinded"), token("dsmb")
            manager, monitor = token("data_manager"), token("monitor")
            denied = client.get("/api/reports/closed", headers=blinded)
            assert denied.status_code == 403 and "results_by_arm" in denied.text
            assert client.get("/api/reports/open", headers=monitor).status_code == 403
            assert client.get("/api/reports/closed").status_code == 401
            opened = client.get("/api/reports/open?format=html", headers=manager)
            assert opened.status_code == 200 and "OPEN" in opened.text
            assert not any(name in opened.text for name in ARM_NAMES)
            closed = client.get("/api/reports/closed", headers=dsmb)
            assert closed.status_code == 200, closed.text
            assert closed.headers["content-type"] == "application/pdf"
            assert closed.content.startswith(b"%PDF")
            assert len(closed.headers["x-stalwart-snapshot"]) == 64
            # the same data: the page rendered first, byte for byte; after a write, a new one
            again = client.get("/api/reports/open?format=html", headers=manager)
            assert again.text == opened.text
            with engine.connect() as conn:
                usubjid = conn.execute(sa.text("SELECT min(usubjid) FROM participant")).scalar()
            CaptureService.open(engine).queries.raise_query(usubjid, "CD4", "check", "test")
            after = client.get("/api/reports/open?format=html", headers=manager)
            assert after.headers["x-stalwart-snapshot"] != opened.headers["x-stalwart-snapshot"]
            assert after.text != opened.text
    finally:
        engine.dispose()
