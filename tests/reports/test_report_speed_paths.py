"""The report's fast paths give what the plain ones give: the closed report's analysis computed
in a forked child, and the PDF drawn from the SVG figures as images rather than inline."""

from __future__ import annotations

import base64
import datetime as dt
import os
import re
import threading
from pathlib import Path

import pytest

from stalwart.capture.db import open_engine
from stalwart.errors import ConfigurationError
from stalwart.play.demo import run_demo
from stalwart.protocol.load import default_protocol_path
from stalwart.reports import _forked
from stalwart.reports._forked import fork_worker
from stalwart.reports.figures.consort import ConsortArm, consort_diagram
from stalwart.reports.snapshot import Snapshot, take_snapshot
from stalwart.reports.study_report import _svg_image, render_pdf, render_study_report

GENERATED = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    text = default_protocol_path().read_text(encoding="utf-8")
    protocol = tmp_path_factory.mktemp("protocol") / "small.toml"
    protocol.write_text(text.replace("sample_size = 267", "sample_size = 24"), encoding="utf-8")
    out = tmp_path_factory.mktemp("demo")
    run_demo(out, seed=3, protocol=protocol)
    engine = open_engine(f"sqlite:///{out / 'stalwart.db'}")
    try:
        return take_snapshot(engine)
    finally:
        engine.dispose()


# -- the forked child ------------------------------------------------------------------------------


@pytest.fixture
def forkable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fork even where an earlier test left an idle thread behind (a web test client's): these
    tests are of the mechanism, not of when it is safe to use."""
    monkeypatch.setattr(_forked.threading, "active_count", lambda: 1)
    monkeypatch.setattr(_forked, "_cores", lambda: 2)


def _pid_and_upper(text: str) -> tuple[int, str]:
    return os.getpid(), text.upper() * 40_000


@pytest.mark.parametrize("fork", [True, False])
def test_a_worker_prepares_then_answers_one_call(fork: bool, forkable: None) -> None:
    worker = fork_worker(lambda: None, _pid_and_upper, fork)
    pid, text = worker.call("é<svg>")  # more than a pipe holds, both ways
    assert text == "É<SVG>" * 40_000
    assert (pid != os.getpid()) == (fork and hasattr(os, "fork"))
    if pid != os.getpid():
        with pytest.raises(RuntimeError, match="twice"):
            worker.result()


def test_a_worker_raises_its_exception_in_the_parent(forkable: None) -> None:
    def fail(text: str) -> None:
        raise ConfigurationError(f"bad page {text}")

    for fork in (True, False):
        with pytest.raises(ConfigurationError, match="bad page x"):
            fork_worker(lambda: None, fail, fork).call("x")


def test_a_worker_whose_result_cannot_be_pickled_says_so(forkable: None) -> None:
    if not hasattr(os, "fork"):
        pytest.skip("no fork here: the call is made in place")
    with pytest.raises(RuntimeError, match="cannot hand back"):
        fork_worker(lambda: None, lambda _: lambda: 1).call(None)


@pytest.mark.parametrize("sent", [False, True])
def test_a_cancelled_worker_leaves_no_child(sent: bool, forkable: None) -> None:
    worker = fork_worker(lambda: None, lambda n: b"x" * n)
    pid = worker._pid
    if sent:
        worker.send(1_000_000)  # the child blocks handing back more than a pipe holds
    worker.cancel()
    worker.cancel()
    if pid is not None:  # reaped: no such child any more
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def test_a_second_worker_does_not_hold_the_first_ones_input_open(forkable: None) -> None:
    """The first worker sees the end of its input when the parent closes it, though a second
    worker, forked after it, has not ended yet."""
    first = fork_worker(lambda: None, str.upper)
    second = fork_worker(lambda: None, str.lower)
    try:
        assert first.call("a") == "A"
    finally:
        second.cancel()


def test_on_one_core_the_call_is_made_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_forked, "_cores", lambda: 1)
    assert fork_worker(lambda: None, lambda _: os.getpid()).call("") == os.getpid()


def test_with_a_thread_running_the_call_is_made_in_place() -> None:
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert fork_worker(lambda: None, lambda _: os.getpid()).call("") == os.getpid()
    finally:
        stop.set()
        thread.join()


@pytest.mark.parametrize("closed", [True, False])
def test_the_report_is_the_same_computed_in_one_process_or_two(snapshot, closed, forkable) -> None:
    one = render_study_report(snapshot, closed, GENERATED, parallel=False)
    two = render_study_report(snapshot, closed, GENERATED, parallel=True)
    assert one == two


# -- SVG figures as images in the PDF -------------------------------------------------------------


def _consort() -> str:
    arms = [ConsortArm("No therapy", 9, {"Withdrew": 1}, 8, 7), ConsortArm("IL-2", 9, {}, 9, 8)]
    return consort_diagram(20, 2, {"CD4 < 300": 2}, arms, ident="c1", title="Flow & <x>").markup


def test_an_inline_svg_becomes_an_img_of_the_same_svg_document() -> None:
    svg = _consort()
    img = re.sub(r"<svg\b([^>]*)>.*?</svg>", _svg_image, svg, flags=re.DOTALL)
    assert img.startswith('<img id="c1" style="') and "<svg" not in img
    uri = re.search(r'src="data:image/svg\+xml;base64,([^"]+)"', img)
    assert uri is not None
    document = base64.b64decode(uri.group(1)).decode("utf-8")
    assert document == svg.strip().replace(
        "<svg",
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"',
        1,
    )


def test_an_svg_that_is_not_xml_stays_inline() -> None:
    svg = '<svg width="10" height="10"><text>&nbsp;</text></svg>'
    assert re.sub(r"<svg\b([^>]*)>.*?</svg>", _svg_image, svg, flags=re.DOTALL) == svg


def test_the_pdf_is_the_same_with_the_figures_inline(snapshot, tmp_path: Path) -> None:
    """render_pdf hands WeasyPrint the figures as images; WeasyPrint itself on the page as it
    is (figures inline) gives the same bytes."""
    weasyprint = pytest.importorskip("weasyprint")
    html = render_study_report(snapshot, True, GENERATED)
    assert html.count("<svg") >= 5
    ours, pages = render_pdf(html)
    plain = weasyprint.HTML(string=html).write_pdf()
    assert ours == plain and pages >= 5


def test_a_worker_whose_preparation_fails_still_answers(forkable: None) -> None:
    def prepare() -> None:
        raise OSError("no fonts")

    assert fork_worker(prepare, str.upper).call("a") == "A"
