"""Backups that always work and restores that refuse every altered file, on SQLite and
PostgreSQL, through the command line.

A backup names its chain head and record count; ``stalwart restore`` refuses, with exit 1 and
nothing written, a file whose last record was removed, one with two records swapped, one with a
DOCTYPE (entities are never expanded). A text stored by an older version that accepted control
characters is carried by the backup (escaped reversibly) and restored exactly.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from lxml import etree
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from stalwart.capture.ae_form import AeDetails
from stalwart.capture.audit import append_audit_entries, data_sha256, row_data
from stalwart.capture.db import open_engine
from stalwart.capture.service import CaptureService
from stalwart.capture.tables import AdverseEvent
from stalwart.capture.transaction import transaction
from stalwart.cli import app

runner = CliRunner()
GOLDEN = Path(__file__).parents[1] / "cdisc" / "golden"
NS = "{http://www.cdisc.org/ns/odm/v1.3}"


def _cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result.exit_code, " ".join(result.output.split())


def _restore(file: Path, folder: Path) -> tuple[int, str, Path]:
    target = folder / f"restored-{file.stem}.db"
    code, out = _cli("restore", str(file), "--database", f"sqlite:///{target}")
    return code, out, target


def _nothing_written(target: Path) -> None:
    if target.exists():
        engine = open_engine(f"sqlite:///{target}")
        try:
            tables = sa.inspect(engine).get_table_names()
            with engine.connect() as conn:
                held = [t for t in tables if conn.scalar(sa.text(f"SELECT count(*) FROM {t}"))]
            assert held in ([], ["alembic_version"]), held
        finally:
            engine.dispose()


def _altered(tmp_path: Path, name: str, change: Any) -> Path:
    doc = etree.parse(str(GOLDEN / "tiny.odm.xml"))
    change(doc.getroot())
    out = tmp_path / f"{name}.xml"
    doc.write(str(out), xml_declaration=True, encoding="UTF-8")
    return out


def _subjects(root: Any) -> list[Any]:
    return list(root.iter(f"{NS}SubjectData"))


def _drop_last(root: Any) -> None:
    last = _subjects(root)[-1]
    last.getparent().remove(last)


def _swap(root: Any) -> None:
    a, b = _subjects(root)[-3:-1]
    parent = a.getparent()
    ia, ib = parent.index(a), parent.index(b)
    parent.remove(b)
    parent.insert(ia, b)
    assert parent.index(a) == ib


def test_the_golden_backups_restore(tmp_path: Path) -> None:
    for name in ("tiny.odm.xml", "tiny-0007.odm.xml"):  # this version's, and an older one
        code, out, _ = _restore(GOLDEN / name, tmp_path)
        assert code == 0, out


@pytest.mark.parametrize("how", ["last-record-removed", "records-swapped"])
def test_an_altered_backup_is_refused_and_nothing_written(tmp_path: Path, how: str) -> None:
    change = _drop_last if how == "last-record-removed" else _swap
    code, out, target = _restore(_altered(tmp_path, how, change), tmp_path)
    assert code == 1, out
    expected = "records are missing from its end" if change is _drop_last else "does not match"
    assert expected in out, out
    _nothing_written(target)


def test_an_older_backup_without_its_tail_is_refused(tmp_path: Path) -> None:
    doc = etree.parse(str(GOLDEN / "tiny-0007.odm.xml"))
    _drop_last(doc.getroot())
    file = tmp_path / "old-truncated.xml"
    doc.write(str(file), xml_declaration=True, encoding="UTF-8")
    code, out, target = _restore(file, tmp_path)
    assert code == 1 and "records are missing from its end" in out, out
    _nothing_written(target)


@pytest.mark.parametrize(
    "doctype",
    [
        '<!DOCTYPE ODM [<!ENTITY x "y">]>',
        '<!DOCTYPE ODM SYSTEM "file:///etc/passwd">',
        "<!DOCTYPE ODM>",
    ],
)
def test_a_backup_with_a_doctype_is_refused(tmp_path: Path, doctype: str) -> None:
    text = (GOLDEN / "tiny.odm.xml").read_text(encoding="utf-8")
    file = tmp_path / "doctype.xml"
    file.write_text(re.sub(r"(<\?xml[^>]*\?>)", r"\1" + doctype, text, count=1), encoding="utf-8")
    code, out, target = _restore(file, tmp_path)
    assert code == 1, out
    assert "DOCTYPE" in out, out
    _nothing_written(target)


def test_a_control_character_stored_by_an_older_version_is_backed_up_and_restored(
    trial: CaptureService, engine: Engine, db_url: str, enrol: Any, tmp_path: Path
) -> None:
    a = enrol(trial, "US01")
    ae = trial.report_adverse_event(
        a.usubjid, "Fever", 2, a.randomization_date + dt.timedelta(days=1), None, "POSSIBLE",
        False, "doctor", AeDetails("fever", "RECOVERED/RESOLVED", "DOSE NOT CHANGED"),
    )  # fmt: skip
    bad = "Fever\x07 \x1b[31m\x85"
    with transaction(engine) as session:  # as a version without the text rule wrote it
        session.execute(sa.update(AdverseEvent).where(AdverseEvent.id == ae).values(term=bad))
        row = session.get(AdverseEvent, ae)
        assert row is not None
        session.refresh(row)
        append_audit_entries(session, [("UPDATE", "adverse_event", ae, row_data(row))], "old")
    code, out = _cli("audit", "verify", "--database", db_url)
    assert code == 0, out
    backup = tmp_path / "backup.xml"
    code, out = _cli("backup", "--database", db_url, "--out", str(backup))
    assert code == 0, out
    code, out = _cli("export", "odm", "--database", db_url, "--out", str(tmp_path / "odm"))
    assert code == 0, out
    code, out, target = _restore(backup, tmp_path)
    assert code == 0, out
    restored = open_engine(f"sqlite:///{target}")
    try:
        assert data_sha256(restored) == data_sha256(engine)
        with restored.connect() as conn:
            term = conn.scalar(sa.select(AdverseEvent.term).where(AdverseEvent.id == ae))
        assert term == bad
    finally:
        restored.dispose()
