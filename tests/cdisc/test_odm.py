"""ODM 1.3.2: valid against the schema; export then import reproduces the database exactly.

The restore path: ``export odm`` of a trial, imported into an empty SQLite and an empty
PostgreSQL database, gives the same ``data_sha256`` and an audit chain that verifies. An altered
file, a non-empty target, a bad format or an empty trial are refused and change nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from lxml import etree
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from cdisc_export import CdiscTrial
from stalwart.analysis.datasets.source import read_store
from stalwart.capture.audit import data_sha256, verify_audit
from stalwart.capture.db import open_engine
from stalwart.capture.service import CaptureService
from stalwart.cdisc.export import export_cdisc
from stalwart.cdisc.odm import ODM_XSD, export_odm, odm_schema
from stalwart.cdisc.odm_import import import_odm
from stalwart.cli import app
from stalwart.errors import AuditChainError, ConflictError, ExportError
from stalwart.protocol.load import LoadedProtocol

ODM = "{http://www.cdisc.org/ns/odm/v1.3}"
GOLDEN = Path(__file__).parent / "golden" / "tiny.odm.xml"
runner = CliRunner()


def _odm_file(trial: CdiscTrial) -> Path:
    return trial.odm / "stalwart.odm.xml"


def test_the_schema_ships_with_odmlib() -> None:
    assert ODM_XSD.is_file(), "odmlib no longer ships the ODM 1.3.2 schema"


def test_export_validates_and_carries_the_audit_trail(cdisc_trial: CdiscTrial) -> None:
    doc = etree.parse(str(_odm_file(cdisc_trial)))
    assert odm_schema().validate(doc), odm_schema().error_log
    root = doc.getroot()
    assert root.get("ODMVersion") == "1.3.2" and root.get("FileType") == "Transactional"
    report = verify_audit(cdisc_trial.engine)
    groups = list(root.iter(f"{ODM}ItemGroupData"))
    assert len(groups) == report.records
    records = list(root.iter(f"{ODM}AuditRecord"))
    assert [r.findtext(f"{ODM}SourceID") for r in records][-1] == report.head_hash
    # metadata from the protocol: its arms and lab tests are code lists
    arms = [
        e.get("CodedValue")
        for e in root.iter(f"{ODM}CodeList")
        if e.get("OID") == "CL.ARM"
        for e in e.iter(f"{ODM}EnumeratedItem")
    ]
    assert arms == ["NOTHER", "IL2", "IL2ART"]
    assert root.findtext(f"{ODM}Study/{ODM}GlobalVariables/{ODM}StudyName") == "STALWART"


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_import_into_an_empty_database_restores_the_same_data(
    cdisc_trial: CdiscTrial, make_engine: Callable[..., Engine], backend: str
) -> None:
    target = make_engine(backend, migrated=False)
    summary = import_odm(_odm_file(cdisc_trial), target)
    assert data_sha256(target) == data_sha256(cdisc_trial.engine)
    report = verify_audit(target)
    assert report.ok, report.finding
    assert report.head_hash == summary.head_hash == verify_audit(cdisc_trial.engine).head_hash
    # the restored database is a working trial: new writes follow the restored ids
    service = CaptureService.open(target)
    usubjid = read_one(target, "SELECT usubjid FROM participant ORDER BY id LIMIT 1")
    site = usubjid.split("-")[1]
    n = service.screen(site, f"{site}-NEW1", _today(target), _answers(), "tester")
    assert n.eligible
    assert verify_audit(target).ok


def read_one(engine: Engine, sql: str) -> str:
    with engine.connect() as conn:
        return str(conn.execute(sa.text(sql)).scalar_one())


def _today(engine: Engine):  # the last date in the trial, so the screening is not in the future
    import datetime as dt

    return dt.date.fromisoformat(
        read_one(engine, "SELECT MAX(randomization_date) FROM participant")
    )


def _answers() -> dict[str, object]:
    return {
        "age": 35,
        "sex": "M",
        "hiv_positive": True,
        "cd4": 520.0,
        "hiv_rna": 20000.0,
        "on_continuous_art": False,
        "arv_within_12_months": False,
        "prior_il2": False,
        "haart_access": True,
        "prior_aids": False,
        "immunomodulator_8_weeks": False,
    }


def test_the_golden_file_restores_and_exports_back_to_itself(
    tmp_path: Path, make_engine: Callable[..., Engine]
) -> None:
    target = make_engine("sqlite", migrated=False)
    import_odm(GOLDEN, target)
    assert verify_audit(target).ok
    again = export_odm(target, CaptureService.open(target).loaded, tmp_path / "again.xml")
    stamp = re.compile(r'CreationDateTime="[^"]*"')
    assert stamp.sub("", again.read_text()) == stamp.sub("", GOLDEN.read_text())
    lab = read_one(target, "SELECT below_limit FROM lab_result WHERE test_code = 'HIVRNA'")
    assert lab in ("1", "True", "true")


def test_an_altered_file_is_refused_and_writes_nothing(
    cdisc_trial: CdiscTrial,
    tmp_path: Path,
    make_engine: Callable[..., Engine],
    row_counts: Callable[[Engine], dict[str, int]],
) -> None:
    text = GOLDEN.read_text()
    altered = tmp_path / "altered.xml"
    needle = 'ItemOID="IT.lab_result.value" Value="512.0"'
    assert needle in text
    altered.write_text(text.replace(needle, 'ItemOID="IT.lab_result.value" Value="612.0"'))
    target = make_engine("sqlite")
    before = row_counts(target)
    with pytest.raises(ExportError, match="does not match the hash"):
        import_odm(altered, target)
    assert row_counts(target) == before
    invalid = tmp_path / "invalid.xml"
    invalid.write_text(text.replace('FileType="Transactional"', 'FileType="Weekly"'))
    with pytest.raises(ExportError, match="not valid against its schema"):
        import_odm(invalid, target)
    with pytest.raises(ExportError, match="no ODM file"):
        import_odm(tmp_path / "missing.xml", target)
    assert row_counts(target) == before


def test_import_into_a_database_holding_a_trial_is_refused(
    cdisc_trial: CdiscTrial,
    make_engine: Callable[..., Engine],
    packaged: LoadedProtocol,
    row_counts: Callable[[Engine], dict[str, int]],
) -> None:
    target = make_engine("sqlite", packaged)
    before = row_counts(target)
    with pytest.raises(ConflictError, match="already holds a trial"):
        import_odm(GOLDEN, target)
    assert row_counts(target) == before


def test_bad_exports_are_refused_and_write_nothing(
    cdisc_trial: CdiscTrial,
    tmp_path: Path,
    make_engine: Callable[..., Engine],
    packaged: LoadedProtocol,
) -> None:
    out = tmp_path / "out"
    with pytest.raises(ExportError, match="unknown export format 'xml'"):
        export_cdisc("xml", cdisc_trial.engine, out)
    empty = make_engine("sqlite", packaged)  # a trial set up, nobody randomized
    for kind in ("sdtm", "adam", "define"):
        with pytest.raises(ExportError, match="no randomized participants"):
            export_cdisc(kind, empty, out)
    other = tmp_path / "other.toml"
    other.write_text(
        cdisc_trial.protocol_path.read_text().replace('version = "1.0.0"', 'version = "1.1.0"')
    )
    with pytest.raises(ExportError, match=r"STALWART 1\.0\.0 .* is STALWART 1\.1\.0"):
        export_cdisc("sdtm", cdisc_trial.engine, out, protocol=other)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["other.toml"]  # no staging folder left


def test_cli_export_and_import_round_trip(cdisc_trial: CdiscTrial, tmp_path: Path) -> None:
    out = tmp_path / "odm"
    done = runner.invoke(app, ["export", "odm", "--database", cdisc_trial.url, "--out", str(out)])
    assert done.exit_code == 0, done.output
    url = f"sqlite:///{tmp_path / 'restored.db'}"
    restored = runner.invoke(app, ["import", "odm", str(out / "stalwart.odm.xml"), "-d", url])
    assert restored.exit_code == 0, restored.output
    assert data_sha256(cdisc_trial.engine) in restored.output.replace("\n", "")
    verify = runner.invoke(app, ["audit", "verify", "--database", url])
    assert verify.exit_code == 0, verify.output
    bad = runner.invoke(app, ["export", "json", "--database", cdisc_trial.url, "--out", str(out)])
    assert bad.exit_code == 1 and "unknown export format" in bad.output
    assert "Traceback" not in bad.output
    again = runner.invoke(app, ["import", "odm", str(out / "stalwart.odm.xml"), "-d", url])
    assert again.exit_code == 1 and "already holds a trial" in again.output
    other = runner.invoke(app, ["import", "csv", str(out / "stalwart.odm.xml"), "-d", url])
    assert other.exit_code == 1 and "unknown import format 'csv'" in other.output
    engine = open_engine(url)
    try:
        assert data_sha256(engine) == data_sha256(cdisc_trial.engine)
    finally:
        engine.dispose()


def test_a_tampered_database_is_not_exported(
    tmp_path: Path, make_engine: Callable[..., Engine]
) -> None:
    target = make_engine("sqlite", migrated=False)
    import_odm(GOLDEN, target)
    with target.begin() as conn:
        conn.execute(sa.text("UPDATE lab_result SET value = 999 WHERE test_code = 'CD4'"))
    with pytest.raises(AuditChainError, match="lab_result"):
        export_odm(target, CaptureService.open(target).loaded, tmp_path / "x.xml")
    with pytest.raises(AuditChainError):
        export_cdisc("odm", target, tmp_path / "out")
    assert not (tmp_path / "x.xml").exists() and not (tmp_path / "out").exists()


def test_public_names() -> None:
    import importlib

    for name in (
        "xpt",
        "sdtm",
        "trial_design",
        "adam_export",
        "define_xml",
        "odm",
        "odm_import",
        "export",
        "adam_io",
        "foreign",
    ):
        module = importlib.import_module(f"stalwart.cdisc.{name}")
        for exported in module.__all__:
            assert hasattr(module, exported), (name, exported)


def test_a_backup_from_before_the_ae_form_fields_still_restores(
    make_engine: Callable[..., Engine],
) -> None:
    """A backup written before migration 0008 added the AE form's fields restores, verifies, and
    reads those fields as the migration defines them (verbatim = the term, UNKNOWN outcome)."""
    old = GOLDEN.with_name("tiny_before_0008.odm.xml")
    target = make_engine("sqlite", migrated=False)
    import_odm(old, target)
    assert verify_audit(target).ok
    ae = read_store(target).adverse_events
    assert list(ae["verbatim"]) == list(ae["term"]) == ["Fever"]
    assert list(ae["outcome"]) == ["UNKNOWN"] and list(ae["seriousness"]) == [""]
