"""Audit verify and backup of a trial while it is being written, on SQLite and PostgreSQL.

Writers enrol participants from several threads while ``verify_audit`` and the backup run: each
reads one snapshot (REPEATABLE READ on PostgreSQL, one read transaction on SQLite), so no run
reports tampering that is not there (before, the chain walk and the head were read in separate
READ COMMITTED statements: "the chain head says record 5404 but the chain ends at record 5399"),
and each backup restores, verifies, and holds exactly the records its file names.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from stalwart.capture.audit import verify_audit
from stalwart.capture.db import open_engine
from stalwart.capture.service import CaptureService
from stalwart.cdisc.odm import export_odm
from stalwart.cdisc.odm_import import import_odm

SITES = ("US01", "GB01", "AR01")
CAP = 290
"""Enrolments per site at most: the protocol's lists hold 300 slots per stratum, and on a slow,
loaded host the four verify/export/restore rounds lasted long enough for the writers to use
them up (AllocationExhaustedError in CI)."""


def test_verify_and_backup_pass_while_writes_continue(
    trial: CaptureService, engine: Engine, enrol: Any, tmp_path: Path
) -> None:
    stop = threading.Event()
    written = [0] * len(SITES)
    errors: list[BaseException] = []

    def write(k: int) -> None:
        try:
            while not stop.is_set() and written[k] < CAP:
                written[k] += 1
                enrol(trial, SITES[k], f"{SITES[k]}-L{written[k]:04d}")
        except BaseException as exc:  # reported below: a writer must not fail
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(len(SITES))]
    for t in threads:
        t.start()
    try:
        reports = []
        for run in range(4):
            report = verify_audit(engine)
            assert report.ok, report.finding
            reports.append(report.records)
            path = export_odm(engine, trial.loaded, tmp_path / f"live-{run}.xml")
            target = open_engine(f"sqlite:///{tmp_path / f'restored-{run}.db'}")
            try:
                summary = import_odm(path, target)
                assert verify_audit(target).ok
                assert summary.records >= report.records
            finally:
                target.dispose()
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    assert reports == sorted(reports) and reports[-1] > reports[0], reports  # writes went on
