"""Nothing leaves the page: every DSMB report variant, checked from the PDF itself.

Four variants (open and closed) of two trials, each rendered to HTML and PDF by
:func:`build_report`:

* ``demo``: the demo trial (267 participants, ``run_demo`` seed 1; about a minute to play);
* ``early``: a first look, six participants of whom only some are past week 4 or week 8.

From the PDF (poppler ``pdftotext -bbox``: every word with its box) the tests check that no word
falls outside the printable area (the page less 5 mm all round) and that no word of the body
runs into the left or right margin (a table or figure wider than the text column would); and,
as a character pushed off the page is not in the text at all, that every visit the data holds
appears in each by-week table of the PDF and of the HTML. The primary table's least-squares
means are checked against the difference shown beside them.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from stalwart.analysis.datasets.bundle import derive_datasets
from stalwart.capture.db import create_schema, open_engine
from stalwart.capture.service import CaptureService, initialize_trial
from stalwart.play.demo import run_demo
from stalwart.protocol.load import load_protocol
from stalwart.reports.report_outcomes import primary_parameter
from stalwart.reports.snapshot import take_snapshot
from stalwart.reports.study_report import ReportFiles, build_report

pytestmark = pytest.mark.skipif(
    shutil.which("pdftotext") is None, reason="poppler-utils (pdftotext) not installed"
)

MM = 72 / 25.4
"""PDF points per millimetre."""

PRINTABLE_INSET = 5 * MM
"""What a printer may not reach on each side of the sheet."""

SIDE_MARGIN = 14 * MM
"""The report's left and right page margins (study_report.html.j2, ``@page``)."""

TOP_MARGIN, BOTTOM_MARGIN = 20 * MM, 18 * MM

BY_WEEK = re.compile(r"^table-(n|mean)-")


def _early_trial(folder: Path, enrol: Callable[..., Any]) -> str:
    """Six participants randomized on 2006-01-05; four seen at week 4, two of those at week 8."""
    url = f"sqlite:///{folder / 'early.db'}"
    engine = open_engine(url)
    create_schema(engine)
    initialize_trial(engine, load_protocol(), seed=11, actor="test")
    trial = CaptureService.open(engine, today=lambda: dt.date(2006, 3, 10))
    for i in range(6):
        allocation = enrol(trial, "US01", f"US01-E{i}")
        labs = {"CD4": 600 + 10 * i, "HIVRNA": 400 + 50 * i}
        trial.record_visit(allocation.usubjid, "ENTRY", dt.date(2006, 1, 5), labs, "t")
        if i < 4:
            labs = {"CD4": 650 + 10 * i, "HIVRNA": 300 + 50 * i}
            trial.record_visit(allocation.usubjid, "WK04", dt.date(2006, 2, 2), labs, "t")
        if i < 2:
            labs = {"CD4": 700 + 10 * i, "HIVRNA": 200 + 50 * i}
            trial.record_visit(allocation.usubjid, "WK08", dt.date(2006, 3, 2), labs, "t")
    engine.dispose()
    return url


@pytest.fixture(scope="module")
def trials(tmp_path_factory: pytest.TempPathFactory, enrol: Callable[..., Any]) -> dict[str, str]:
    demo = tmp_path_factory.mktemp("demo")
    run_demo(demo, seed=1)
    return {
        "demo": f"sqlite:///{demo / 'stalwart.db'}",
        "early": _early_trial(tmp_path_factory.mktemp("early"), enrol),
    }


@pytest.fixture(scope="module")
def rendered(
    trials: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, str], ReportFiles]:
    out: dict[tuple[str, str], ReportFiles] = {}
    for name, url in trials.items():
        engine = open_engine(url)
        try:
            for version in ("open", "closed"):
                folder = tmp_path_factory.mktemp(f"{name}-{version}")
                out[name, version] = build_report(engine, folder, closed=version == "closed")
        finally:
            engine.dispose()
    return out


def _weeks_in_data(url: str) -> dict[str, set[str]]:
    """The weeks (0 to the primary visit) each lab parameter of the by-week tables has data at."""
    engine = open_engine(url)
    try:
        snapshot = take_snapshot(engine)
    finally:
        engine.dispose()
    protocol = snapshot.loaded.protocol
    adlb = derive_datasets(protocol, snapshot.extract).adlb
    _, last = primary_parameter(protocol)
    weeks: dict[str, set[str]] = {}
    for parameter in ("CD4", "LHIVRNA"):
        rows = adlb[
            (adlb["PARAMCD"] == parameter)
            & adlb["AVAL"].notna()
            & (adlb["AVISITN"].astype(float) >= 0)
            & (adlb["AVISITN"].astype(float) <= last)
        ]
        weeks[parameter.lower()] = {f"Week {float(w):g}" for w in rows["AVISITN"].unique()}
    return weeks


class _Tables(HTMLParser):
    """Caption and row headers of every table, by id, in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, dict[str, Any]] = {}
        self._id: str | None = None
        self._cell: str | None = None
        self._row: list[str] = []
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._id = dict(attrs).get("id") or ""
            self.tables[self._id] = {"caption": "", "rows": []}
        elif self._id is not None and tag in ("caption", "th", "td"):
            self._cell, self._text = tag, []
        elif tag == "tr":
            self._row = []

    def handle_endtag(self, tag: str) -> None:
        if self._id is None:
            return
        if tag == self._cell:
            text = " ".join("".join(self._text).split())
            if tag == "caption":
                self.tables[self._id]["caption"] = text
            else:
                self._row.append(text)
            self._cell = None
        elif tag == "tr":
            self.tables[self._id]["rows"].append(self._row)
        elif tag == "table":
            self._id = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._text.append(data)


def _tables(files: ReportFiles) -> dict[str, dict[str, Any]]:
    assert files.html is not None
    parser = _Tables()
    parser.feed(files.html.read_text(encoding="utf-8"))
    return parser.tables


_PAGE = re.compile(r'<page width="([\d.]+)" height="([\d.]+)">(.*?)</page>', re.DOTALL)
_WORD = re.compile(
    r'<word xMin="([\d.-]+)" yMin="([\d.-]+)" xMax="([\d.-]+)" yMax="([\d.-]+)">(.*?)</word>'
)


def _words(
    pdf: Path,
) -> list[tuple[int, float, float, list[tuple[float, float, float, float, str]]]]:
    """Per page: number, width, height and every word with its box (points, origin top left)."""
    text = subprocess.run(
        ["pdftotext", "-bbox", str(pdf), "-"], check=True, capture_output=True, text=True
    ).stdout
    pages = []
    for number, match in enumerate(_PAGE.finditer(text), start=1):
        words = [
            (float(a), float(b), float(c), float(d), w)
            for a, b, c, d, w in _WORD.findall(match.group(3))
        ]
        pages.append((number, float(match.group(1)), float(match.group(2)), words))
    return pages


VARIANTS = [
    pytest.param(("demo", "open"), id="demo-open", marks=pytest.mark.slow),
    pytest.param(("demo", "closed"), id="demo-closed", marks=pytest.mark.slow),
    pytest.param(("early", "open"), id="early-open", marks=pytest.mark.slow),
    pytest.param(("early", "closed"), id="early-closed", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("variant", VARIANTS)
def test_no_character_falls_outside_the_printable_area(rendered, variant) -> None:
    files = rendered[variant]
    assert files.pdf is not None
    pages = _words(files.pdf)
    assert len(pages) == files.pages
    outside = []
    for number, width, height, words in pages:
        assert words, f"page {number} has no text"
        for x0, y0, x1, y1, word in words:
            if x0 < PRINTABLE_INSET or y0 < PRINTABLE_INSET:
                outside.append((number, word, "beyond the top or left edge"))
            elif x1 > width - PRINTABLE_INSET or y1 > height - PRINTABLE_INSET:
                outside.append((number, word, "beyond the bottom or right edge"))
            elif (
                y0 > TOP_MARGIN  # the body, not the stamps in the margins
                and y1 < height - BOTTOM_MARGIN
                and (x0 < SIDE_MARGIN - 0.5 or x1 > width - SIDE_MARGIN + 0.5)
            ):
                outside.append((number, word, f"in the side margin ({x0:.0f}-{x1:.0f} pt)"))
    assert not outside, outside[:20]


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_visit_in_the_data_is_in_each_by_week_table(rendered, trials, variant) -> None:
    files = rendered[variant]
    weeks = _weeks_in_data(trials[variant[0]])
    tables = _tables(files)
    by_week = {tid: t for tid, t in tables.items() if BY_WEEK.match(tid)}
    assert {tid.split("-")[-1] for tid in by_week} == set(weeks)  # both parameters, n and mean
    assert files.pdf is not None
    pdf_text = " ".join(
        subprocess.run(
            ["pdftotext", str(files.pdf), "-"], check=True, capture_output=True, text=True
        ).stdout.split()
    )
    # the PDF text of each table runs from its caption to the next table's caption
    captions = [(tid, t["caption"]) for tid, t in tables.items() if t["caption"]]
    starts, position = {}, 0
    for tid, caption in captions:
        found = pdf_text.find(caption, position)
        assert found >= 0, f"{tid}: caption {caption!r} is not in the PDF"
        starts[tid], position = found, found + len(caption)
    ordered = sorted(starts.items(), key=lambda item: item[1])
    for i, (tid, start) in enumerate(ordered):
        if tid not in by_week:
            continue
        end = ordered[i + 1][1] if i + 1 < len(ordered) else len(pdf_text)
        chunk = pdf_text[start:end]
        expected = weeks[tid.split("-")[-1]]
        html_weeks = {row[0] for row in by_week[tid]["rows"][1:]}
        assert html_weeks == expected, f"{tid} (HTML)"
        missing = [w for w in sorted(expected) if not re.search(rf"\b{w}\b", chunk)]
        assert not missing, f"{tid} (PDF) lacks {missing}"


def _number(text: str) -> float:
    return float(text.replace("−", "-"))


@pytest.mark.slow
def test_the_primary_table_shows_the_means_its_difference_is_made_of(rendered) -> None:
    """LS mean (arm) minus LS mean (control) is the ANCOVA difference shown, to the rounding."""
    rows = _tables(rendered["demo", "closed"])["table-primary"]["rows"][1:]
    ancova = [r for r in rows if "least-squares means" in r[1]]
    observed = [r for r in rows if "observed means" in r[1]]
    assert len(ancova) == 2 and len(observed) == 2
    for row in ancova + observed:
        arm, control, difference = (_number(c) for c in row[3:6])
        decimals = len(row[5].split(".")[-1]) if "." in row[5] else 0
        assert abs((arm - control) - difference) <= 1.5 * 10**-decimals, row
