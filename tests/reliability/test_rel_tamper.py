"""Tampering, end to end through the command line, on SQLite and PostgreSQL.

A small trial (two participants randomized, visits with results, an adverse event, a clinical
event) is tampered with behind the service's back, as someone with direct access to the database
would: an audit record altered, deleted or forged (after removing the append-only triggers, as
DDL rights allow), or a data row updated, inserted or deleted with raw SQL. For each,
``stalwart audit verify --database URL`` must exit 1, and both its message and its ``--json``
finding must name the record: the audit sequence number, the table and the row id.

``tests/capture/test_audit.py`` checks ``verify_audit`` itself; this is the operator's view of the
same guarantees, through the command an auditor runs (in process with Typer's runner, and once as
a real process, exit status and stderr included).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

import stalwart
from stalwart.capture.ae_form import AeDetails
from stalwart.capture.enrolment import Allocation
from stalwart.capture.service import CaptureService
from stalwart.capture.tables import AuditRecord, LabResult
from stalwart.cli import app

runner = CliRunner()
Enrol = Callable[..., Allocation]
SRC = Path(stalwart.__file__).resolve().parents[1]


@dataclass
class Small:
    """The tampered database: its URL and engine, and the ids of some of its rows."""

    url: str
    engine: Engine
    ids: dict[str, int]


@dataclass(frozen=True)
class Expected:
    """What ``audit verify`` must name: sequence (None: no record), table, row id, and text."""

    sequence: int | None
    table: str
    record_id: int
    says: tuple[str, ...]


# -- helpers ---------------------------------------------------------------------------------------
def _sql(engine: Engine, statement: str, **params: Any) -> Any:
    with engine.begin() as conn:
        result = conn.execute(sa.text(statement), params)
        return result.scalar() if result.returns_rows else None


def _unlock_audit(engine: Engine) -> None:
    """Remove the append-only guard of ``audit_record``, as an attacker with DDL rights would."""
    if engine.dialect.name == "sqlite":
        _sql(engine, "DROP TRIGGER IF EXISTS audit_record_no_update")
        _sql(engine, "DROP TRIGGER IF EXISTS audit_record_no_delete")
    else:
        _sql(engine, "ALTER TABLE audit_record DISABLE TRIGGER audit_record_append_only")


def _records(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(AuditRecord.__table__).order_by(AuditRecord.sequence))
        return [dict(r._mapping) for r in rows]


def _last_seq(engine: Engine, table: str, record_id: int) -> int:
    seq = _sql(
        engine,
        "SELECT max(sequence) FROM audit_record WHERE table_name = :t AND record_id = :i",
        t=table,
        i=record_id,
    )
    assert seq is not None
    return int(seq)


def _record_hash(r: dict[str, Any]) -> str:
    """The documented record hash, computed here independently of the code under test."""
    fields = [
        r["sequence"],
        r["recorded_at"],
        r["actor"],
        r["action"],
        r["table_name"],
        r["record_id"],
        r["data"],
        r["reason"],
        r["prev_hash"],
    ]
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _flat(text: str) -> str:
    """Output with Rich's line wrapping undone."""
    return " ".join(text.split())


def _verify(url: str) -> tuple[int, str, dict[str, Any]]:
    """``audit verify`` twice: (exit code, plain output, the ``--json`` report)."""
    plain = runner.invoke(app, ["audit", "verify", "--database", url])
    as_json = runner.invoke(app, ["audit", "verify", "--database", url, "--json"])
    assert plain.exception is None or isinstance(plain.exception, SystemExit), plain.output
    assert as_json.exit_code == plain.exit_code, as_json.output
    assert "Traceback" not in plain.output + as_json.output
    return plain.exit_code, _flat(plain.output), json.loads(as_json.stdout)


# -- the trial -------------------------------------------------------------------------------------
@pytest.fixture()
def small(trial: CaptureService, engine: Engine, db_url: str, enrol: Enrol) -> Small:
    """Two participants with visits and results, an adverse event and a clinical event."""
    a = enrol(trial, "US01")
    b = enrol(trial, "GB01")
    rand = a.randomization_date
    day = rand.resolution
    visit = trial.record_visit(a.usubjid, "ENTRY", rand, {"CD4": 510, "HIVRNA": "<50"}, "nurse")
    trial.record_visit(a.usubjid, "WK04", rand + 28 * day, {"CD4": 555, "HIVRNA": 1500}, "nurse")
    trial.record_visit(b.usubjid, "ENTRY", rand, {"CD4": 420, "HIVRNA": 30000}, "nurse")
    ae = trial.report_adverse_event(
        a.usubjid,
        "Fever",
        2,
        rand + day,
        None,
        "POSSIBLE",
        False,
        "doctor",
        AeDetails("fever", "RECOVERED/RESOLVED", "DOSE NOT CHANGED"),
    )
    ce = trial.report_clinical_event(b.usubjid, "TB", rand + 40 * day, "doctor")
    with engine.connect() as conn:
        lab = conn.scalar(
            sa.select(LabResult.id).where(LabResult.visit_id == visit, LabResult.test_code == "CD4")
        )
    assert lab is not None
    world = Small(db_url, engine, {"visit": visit, "lab": int(lab), "ae": ae, "ce": ce})
    code, output, report = _verify(db_url)  # the tampering of each test is the only fault
    assert code == 0, output
    assert report["ok"] is True and report["finding"] is None
    assert report["records"] == len(_records(engine))
    assert f"audit chain verified: {report['records']} records, {report['rows']} data rows" in (
        output
    )
    return world


# -- the tampering ---------------------------------------------------------------------------------
def _alter_record(s: Small) -> Expected:
    seq = _last_seq(s.engine, "lab_result", s.ids["lab"])
    _unlock_audit(s.engine)
    _sql(
        s.engine,
        "UPDATE audit_record SET data = replace(data, '510.0', '51.0') WHERE sequence = :s",
        s=seq,
    )
    return Expected(
        seq, "lab_result", s.ids["lab"], ("content does not match its hash", "was altered")
    )


def _alter_record_actor(s: Small) -> Expected:
    seq = _last_seq(s.engine, "adverse_event", s.ids["ae"])
    _unlock_audit(s.engine)
    _sql(s.engine, "UPDATE audit_record SET actor = 'someone else' WHERE sequence = :s", s=seq)
    return Expected(seq, "adverse_event", s.ids["ae"], ("was altered",))


def _delete_record(s: Small) -> Expected:
    seq = _last_seq(s.engine, "lab_result", s.ids["lab"])
    following = next(r for r in _records(s.engine) if r["sequence"] == seq + 1)
    _unlock_audit(s.engine)
    _sql(s.engine, "DELETE FROM audit_record WHERE sequence = :s", s=seq)
    return Expected(
        seq + 1,
        following["table_name"],
        following["record_id"],
        (f"sequence gap, expected record {seq}", "deleted or inserted"),
    )


def _forge_record(s: Small) -> Expected:
    """A well-formed record, correctly chained and hashed, with the head moved onto it."""
    records = _records(s.engine)
    last = records[-1]
    forged = dict(
        last,
        sequence=last["sequence"] + 1,
        prev_hash=last["hash"],
        table_name="adverse_event",
        record_id=9999,
        actor="mallory",
    )
    forged["hash"] = _record_hash(forged)
    with s.engine.begin() as conn:
        conn.execute(sa.insert(AuditRecord.__table__), [forged])
        conn.execute(
            sa.text("UPDATE audit_head SET sequence = :s, hash = :h"),
            {"s": forged["sequence"], "h": forged["hash"]},
        )
    return Expected(forged["sequence"], "adverse_event", 9999, ("the row was deleted",))


def _forge_record_bad_hash(s: Small) -> Expected:
    last = _records(s.engine)[-1]
    forged = dict(last, sequence=last["sequence"] + 1, prev_hash=last["hash"], hash="f" * 64)
    with s.engine.begin() as conn:
        conn.execute(sa.insert(AuditRecord.__table__), [forged])
    return Expected(forged["sequence"], last["table_name"], last["record_id"], ("was altered",))


def _update_data_row(s: Small) -> Expected:
    seq = _last_seq(s.engine, "lab_result", s.ids["lab"])
    _sql(s.engine, "UPDATE lab_result SET value = 999 WHERE id = :i", i=s.ids["lab"])
    return Expected(
        seq,
        "lab_result",
        s.ids["lab"],
        ("does not match the stored row", "value: audit 510.0 vs data 999.0"),
    )


def _swap_allocation(s: Small) -> Expected:
    with s.engine.connect() as conn:
        slot_id, arm = conn.execute(
            sa.text(
                "SELECT id, arm FROM allocation_slot WHERE participant_id IS NOT NULL "
                "ORDER BY id LIMIT 1"
            )
        ).one()
    other = "NOTHER" if arm != "NOTHER" else "IL2"
    _sql(s.engine, "UPDATE allocation_slot SET arm = :a WHERE id = :i", a=other, i=slot_id)
    seq = _last_seq(s.engine, "allocation_slot", slot_id)
    return Expected(seq, "allocation_slot", slot_id, (f"arm: audit '{arm}' vs data '{other}'",))


def _insert_data_row(s: Small) -> Expected:
    pid = _sql(s.engine, "SELECT min(id) FROM participant")
    new_id = _sql(
        s.engine,
        "INSERT INTO adverse_event (participant_id, term, grade, start_date, related, serious) "
        "VALUES (:p, 'Rash', 1, '2006-02-01', 'UNLIKELY', false) RETURNING id",
        p=pid,
    )
    return Expected(
        None, "adverse_event", int(new_id), ("has no audit record", "behind the service's back")
    )


def _delete_data_row(s: Small) -> Expected:
    seq = _last_seq(s.engine, "clinical_event", s.ids["ce"])
    _sql(s.engine, "DELETE FROM clinical_event WHERE id = :i", i=s.ids["ce"])
    return Expected(seq, "clinical_event", s.ids["ce"], ("the row was deleted",))


TAMPERING: dict[str, Callable[[Small], Expected]] = {
    "audit-record-altered": _alter_record,
    "audit-record-actor-altered": _alter_record_actor,
    "audit-record-deleted": _delete_record,
    "audit-record-forged": _forge_record,
    "audit-record-forged-bad-hash": _forge_record_bad_hash,
    "data-row-updated": _update_data_row,
    "allocation-swapped": _swap_allocation,
    "data-row-inserted": _insert_data_row,
    "data-row-deleted": _delete_data_row,
}


@pytest.mark.parametrize("how", list(TAMPERING))
def test_audit_verify_exits_1_naming_the_record(small: Small, how: str) -> None:
    expected = TAMPERING[how](small)
    code, output, report = _verify(small.url)
    assert code == 1, output
    assert "audit verification failed:" in output
    where = f"{expected.table} id {expected.record_id}"
    if expected.sequence is not None:
        where = f"audit record {expected.sequence} ({where})"
    assert where in output, output
    for text in expected.says:
        assert text in output, (text, output)
    finding = report["finding"]
    assert report["ok"] is False and finding is not None
    assert (finding["sequence"], finding["table"], finding["record_id"]) == (
        expected.sequence,
        expected.table,
        expected.record_id,
    )
    assert _flat(finding["message"]) in output


def test_records_removed_from_the_end_are_named_by_sequence(small: Small) -> None:
    last = len(_records(small.engine))
    _unlock_audit(small.engine)
    _sql(small.engine, "DELETE FROM audit_record WHERE sequence = :s", s=last)
    code, output, report = _verify(small.url)
    assert code == 1
    assert f"the chain head says record {last} but the chain ends at record {last - 1}" in output
    assert report["finding"]["sequence"] == last - 1


def test_a_real_process_exits_1_and_says_why_on_stderr(small: Small) -> None:
    """Outside the test runner: the installed entry point's exit status and streams."""
    env = dict(os.environ, PYTHONPATH=str(SRC), COLUMNS="200")
    command = [sys.executable, "-m", "stalwart.cli", "audit", "verify", "--database", small.url]
    clean = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert clean.returncode == 0, clean.stderr
    assert "audit chain verified" in clean.stdout
    expected = _update_data_row(small)
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1
    assert done.stdout == ""
    assert f"audit record {expected.sequence} (lab_result id {expected.record_id})" in _flat(
        done.stderr
    )
    assert "Traceback" not in done.stderr
