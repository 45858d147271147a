"""Reads of a trial while it is being written, on SQLite and PostgreSQL: each one snapshot.

- ``benchmarks/live_consistency.py``, reduced: HTTP clients enrol (sealed slots) and enter visits
  through ``stalwart serve`` while verify and backup loop; no verify may report tampering, no
  backup may be refused, and every backup must restore to the data sha256 of its snapshot.
- ``stalwart backup`` under writes prints the sha256 of the snapshot in its file (before, it
  hashed the live database after writing, so the printed sha256 named no file's content).
- SDTM and ADaM exports under writes are internally consistent: every subject with laboratory
  results has its DM / ADSL row (before, each table was read in a transaction of its own, so a
  participant enrolled between two reads had results but no DM row).
"""

from __future__ import annotations

import importlib.util
import re
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from stalwart.analysis.datasets.source import read_store
from stalwart.capture.audit import data_sha256
from stalwart.capture.db import open_engine
from stalwart.capture.service import CaptureService
from stalwart.cdisc.export import export_cdisc
from stalwart.cdisc.odm_import import read_odm, restore_odm
from stalwart.cli import app

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
SITES = ("US01", "GB01", "AR01")
CAP = 290
"""Enrolments per site at most: the protocol's lists hold 300 slots per stratum (on a slow,
loaded host the writers used them up during a sibling test's reads)."""
LAB: dict[str, float | str] = {"CD4": 400, "HIVRNA": "<50"}
BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "live_consistency.py"


def _benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("live_consistency", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_verify_and_backup_under_http_writers_never_raise_a_false_alarm(
    backend: str, databases: Any, tmp_path: Path
) -> None:
    bench = _benchmark()
    for run in range(2):
        folder = tmp_path / f"run-{run}"
        folder.mkdir()
        url = databases.new(backend, migrated=False, folder=folder)
        try:
            figures = bench.run_once(url, clients=8, seconds=5, workers=2, folder=folder)
        finally:
            databases.drop(url)
        assert figures.writes > 20, figures  # the clients did write
        assert figures.write_errors == 0, (figures, (folder / "server.log").read_text()[-3000:])
        assert figures.false_alarms == [], figures.false_alarms
        assert figures.refused == [], figures.refused
        assert figures.mismatched == [], figures.mismatched
        assert figures.backups >= 2 and len(set(figures.records)) >= 2, figures  # writes went on


@contextmanager
def _writing(trial: CaptureService, enrol: Callable[..., Any], visits: bool) -> Iterator[list[int]]:
    """Threads enrolling at ``SITES`` (and, with ``visits``, entering the entry visit of each
    new participant in a transaction of its own) while the body runs; yields the counts."""
    stop = threading.Event()
    written = [0] * len(SITES)
    errors: list[BaseException] = []

    def write(k: int) -> None:
        try:
            while not stop.is_set() and written[k] < CAP:
                written[k] += 1
                a = enrol(trial, SITES[k], f"{SITES[k]}-W{written[k]:04d}")
                if visits:
                    trial.record_visit(a.usubjid, "ENTRY", a.randomization_date, LAB, "nurse")
        except BaseException as exc:  # reported below: a writer must not fail
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(len(SITES))]
    for t in threads:
        t.start()
    try:
        yield written
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors


@pytest.mark.parametrize("backend", BACKENDS)
def test_backup_prints_the_sha256_of_the_snapshot_it_wrote(
    backend: str, packaged: Any, enrol: Any, tmp_path: Path, databases: Any
) -> None:
    url = databases.new(backend, packaged)
    engine = open_engine(url)
    trial = CaptureService.open(engine)
    try:
        for k in range(3):
            enrol(trial, SITES[k], f"{SITES[k]}-P{k:04d}")
        printed: list[str] = []
        with _writing(trial, enrol, visits=False) as written:
            for run in range(3):
                before = sum(written)
                file = tmp_path / f"live-{run}.odm.xml"
                result = CliRunner().invoke(app, ["backup", "--database", url, "--out", str(file)])
                assert result.exit_code == 0, result.output
                match = re.search(r"data sha256 ([0-9a-f]{64})", result.output.replace("\n", ""))
                assert match is not None, result.output
                printed.append(match.group(1))
                target = open_engine(f"sqlite:///{tmp_path / f'restored-{run}.db'}")
                try:
                    restore_odm(read_odm(file), target)
                    assert data_sha256(target) == match.group(1)
                finally:
                    target.dispose()
                # at least one write between two backups (unless every writer is at its cap)
                while sum(written) == before and sum(written) < CAP * len(SITES):
                    threading.Event().wait(0.01)
        assert len(set(printed)) == 3, printed  # three different snapshots
    finally:
        engine.dispose()
        databases.drop(url)


def _subjects(folder: Path, name: str) -> set[str]:
    return set(pd.read_csv(folder / "csv" / f"{name}.csv", dtype=str)["USUBJID"])


@contextmanager
def _write_between_reads(engine: Engine, url: str, enrol: Any) -> Iterator[list[str]]:
    """While the body runs, the first read of laboratory results on ``engine`` is preceded by
    a write from another connection: a participant enrolled, with an entry visit. A read of one
    snapshot taken before it does not see that participant anywhere; reads in transactions of
    their own see its results but not its participant row. Yields the enrolled USUBJIDs."""
    writer = open_engine(url)
    service = CaptureService.open(writer)
    enrolled: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "FROM lab_result" in statement and not enrolled:
            a = enrol(service, "US01", f"US01-X{len(enrolled):04d}")
            service.record_visit(a.usubjid, "ENTRY", a.randomization_date, LAB, "nurse")
            enrolled.append(a.usubjid)

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield enrolled
    finally:
        event.remove(engine, "before_cursor_execute", before)
        writer.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["sdtm", "adam", "extract"])
def test_exports_and_the_analysis_extract_read_one_snapshot(
    backend: str, kind: str, packaged: Any, enrol: Any, tmp_path: Path, databases: Any
) -> None:
    url = databases.new(backend, packaged)
    engine: Engine = open_engine(url)
    trial = CaptureService.open(engine)
    try:
        for k in range(3):
            a = enrol(trial, SITES[k], f"{SITES[k]}-P{k:04d}")
            trial.record_visit(a.usubjid, "ENTRY", a.randomization_date, LAB, "nurse")
        with _write_between_reads(engine, url, enrol) as enrolled:
            if kind == "extract":
                extract = read_store(engine)
                subjects = set(extract.participants["usubjid"])
                results = set(extract.labs["usubjid"])
            else:
                done = export_cdisc(kind, engine, tmp_path / kind)
                subjects = _subjects(done.out, "dm" if kind == "sdtm" else "adsl")
                results = _subjects(done.out, "lb" if kind == "sdtm" else "adlb")
        assert len(enrolled) == 1  # the write did happen while the store was being read
        assert results <= subjects, f"results of {results - subjects} but no DM/ADSL row"
        # the snapshot: the three participants enrolled before the read, not the fourth
        assert len(subjects) == 3 and enrolled[0] not in subjects, subjects
    finally:
        engine.dispose()
        databases.drop(url)
