"""``stalwart backup`` and ``stalwart restore``: a trial database survives a round trip exactly.

A trial with every kind of record (screenings, consents, randomizations, visits and a correction
with its reason, doses, adverse and clinical events, an endpoint review, a query answered and
closed, an e-signature, user accounts, a disposition) is backed up to one ODM file and restored
into an empty database: the data sha256 (``capture.audit.data_sha256``) and the audit chain head
are the same, ``stalwart audit verify`` passes, and the restored trial takes new writes. On
SQLite, on PostgreSQL, and across them both ways.

Refusals change nothing: a target that already holds any row, a missing, truncated, altered or
foreign file; a backup of a database whose audit chain does not verify writes no file and leaves
an earlier backup at the same path as it was.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from screening_answers import eligible_answers_of
from stalwart.capture.ae_form import AeDetails
from stalwart.capture.audit import data_sha256, verify_audit
from stalwart.capture.db import open_engine
from stalwart.capture.enrolment import Allocation
from stalwart.capture.service import CaptureService
from stalwart.capture.tables import LabResult
from stalwart.capture.users import UserStore
from stalwart.cli import app
from stalwart.protocol.load import LoadedProtocol

runner = CliRunner()
Enrol = Callable[..., Allocation]
Counts = Callable[[Engine], dict[str, int]]
DAY = dt.timedelta(days=1)
PASSWORD = "a long backup password"
PG = pytest.mark.postgres


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def _squeezed(text: str) -> str:
    """Text without whitespace: Rich wraps long lines (and long paths) at any column."""
    return "".join(text.split())


def _cli(*args: str) -> tuple[int, str]:
    """Exit code and output (without whitespace) of ``stalwart ARGS``."""
    result = runner.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result.exit_code, _squeezed(result.output)


def _says(output: str, text: str) -> bool:
    return _squeezed(text) in output


def _populate(svc: CaptureService, enrol: Enrol) -> None:
    """Every kind of record the service writes, INSERTs and UPDATEs, reasons and signatures."""
    users = UserStore(svc.engine, PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    users.add_user("inv.us01", PASSWORD, "investigator", "admin", site="US01", full_name="Ana Í")
    users.add_user("reviewer", PASSWORD, "endpoint_reviewer", "admin")
    a = enrol(svc, "US01")
    b = enrol(svc, arm="IL2ART", randomized=dt.date(2006, 1, 6))
    c = enrol(svc, "GB01", sex="F", cd4=333.25)
    for p in (a, b, c):
        r = p.randomization_date
        svc.record_visit(p.usubjid, "ENTRY", r, {"CD4": 512.5, "HIVRNA": "<50"}, "nurse")
        svc.record_visit(
            p.usubjid,
            "WK04",
            r + 28 * DAY,
            {"CD4": 0.1 + 0.2, "CD4PCT": 28.5, "HIVRNA": 1e7 / 3},
            "n",
        )
    svc.correct_visit(
        a.usubjid,
        "WK04",
        a.randomization_date + 29 * DAY,
        {"CD4": 640, "CD4PCT": 30, "HIVRNA": 400},
        "transcription error: 'CD4' read from the wrong line",
        "nurse",
        version=svc.records.visit(a.usubjid, "WK04", "nurse").version,
    )
    investigator = users.authenticate("inv.us01", PASSWORD)
    svc.signatures.sign_visit(a.usubjid, "ENTRY", PASSWORD, "I approve", investigator, users)
    first = b.randomization_date + 7 * DAY  # IL-2 cycle 1 starts a week after randomization
    svc.record_doses(b.usubjid, "IL2", 1, [(first + k * DAY, 2 - (k == 3)) for k in range(5)], "n")
    svc.report_adverse_event(
        b.usubjid,
        "Fever",
        3,
        first + DAY,
        first + 4 * DAY,
        "PROBABLE",
        True,
        "doctor",
        AeDetails("rash", "RECOVERED/RESOLVED", "DRUG INTERRUPTED", ("AESHOSP",)),
    )
    event = svc.report_clinical_event(c.usubjid, "PCP", c.randomization_date + 40 * DAY, "doc")
    svc.reviews.review(
        event, "CONFIRMED", "meets the criteria", users.authenticate("reviewer", PASSWORD)
    )
    query = svc.queries.raise_query(a.usubjid, "CD4", "please confirm the unit", "monitor")
    svc.queries.answer(query, "confirmed, cells/mm3", "coordinator")
    svc.queries.close(query, "resolved", "monitor")
    svc.record_disposition(c.usubjid, "WITHDREW", c.randomization_date + 60 * DAY, "doctor")
    svc.screen("US01", "US01-NOT", dt.date(2006, 2, 1), eligible_answers_of(age=16), "n")


@dataclass(frozen=True)
class Source:
    """A populated trial database and its backup file."""

    url: str
    digest: str
    head: str
    records: int
    file: Path


@pytest.fixture(scope="module")
def sources(
    databases: Any,
    packaged: LoadedProtocol,
    enrol: Enrol,
    today: dt.date,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[str], Source]]:
    """``sources(backend)``: one populated trial per backend, backed up once through the CLI."""
    made: dict[str, Source] = {}
    urls: list[str] = []

    def get(backend: str) -> Source:
        if backend not in made:
            url = databases.new(backend, packaged)
            urls.append(url)
            engine = open_engine(url)
            try:
                _populate(CaptureService.open(engine, today=lambda: today), enrol)
                report = verify_audit(engine)
                assert report.ok, report.finding
                digest = data_sha256(engine)
            finally:
                engine.dispose()
            file = tmp_path_factory.mktemp(f"backup-{backend}") / "nested" / "trial.odm.xml"
            code, output = _cli("backup", "--database", url, "--out", str(file))
            assert code == 0, output
            assert _says(output, f"backed up to {file}; data sha256 {digest}"), output
            made[backend] = Source(url, digest, report.head_hash, report.records, file)
        return made[backend]

    yield get
    for url in urls:
        databases.drop(url)


ROUND_TRIPS = [
    pytest.param("sqlite", "sqlite", False, id="sqlite-to-bare-sqlite"),
    pytest.param("sqlite", "sqlite", True, id="sqlite-to-migrated-sqlite"),
    pytest.param("postgresql", "postgresql", True, id="postgresql-to-postgresql", marks=PG),
    pytest.param("sqlite", "postgresql", False, id="sqlite-to-bare-postgresql", marks=PG),
    pytest.param("postgresql", "sqlite", False, id="postgresql-to-sqlite", marks=PG),
]


@pytest.mark.parametrize(("source", "target", "migrated"), ROUND_TRIPS)
def test_backup_then_restore_gives_the_same_data_and_a_verified_chain(
    sources: Callable[[str], Source],
    make_engine: Callable[..., Engine],
    today: dt.date,
    source: str,
    target: str,
    migrated: bool,
) -> None:
    src = sources(source)
    engine = make_engine(target, migrated=migrated)
    url = _url(engine)
    code, output = _cli("restore", str(src.file), "--database", url)
    assert code == 0, output
    assert _says(output, f"restored {src.records} audit records")
    assert _says(output, f"data sha256 {src.digest}")
    assert data_sha256(engine) == src.digest
    code, output = _cli("audit", "verify", "--database", url)
    assert code == 0, output
    assert _says(output, f"audit chain verified: {src.records} records")
    report = verify_audit(engine)
    assert report.ok and report.head_hash == src.head
    with engine.connect() as conn:  # a float that only survives if written exactly
        values = set(conn.scalars(sa.select(LabResult.value).where(LabResult.test_code == "CD4")))
    assert 0.1 + 0.2 in values
    # the restored trial is a working one: the next rows follow the restored ids
    svc = CaptureService.open(engine, today=lambda: today)
    svc.screen("GB01", "GB01-AFTER", dt.date(2006, 3, 1), eligible_answers_of(), "nurse")
    svc.record_visit(
        svc.records.participants("admin")[0].usubjid,
        "WK08",
        dt.date(2006, 3, 2),
        {"CD4": 700, "HIVRNA": 60},
        "nurse",
    )
    assert verify_audit(engine).ok
    assert data_sha256(engine) != src.digest


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=PG)])
def test_restore_refuses_a_database_holding_a_trial_and_changes_nothing(
    sources: Callable[[str], Source],
    make_engine: Callable[..., Engine],
    packaged: LoadedProtocol,
    row_counts: Counts,
    backend: str,
) -> None:
    engine = make_engine(backend, packaged)
    before, digest = row_counts(engine), data_sha256(engine)
    code, output = _cli("restore", str(sources("sqlite").file), "--database", _url(engine))
    assert code == 1
    assert _says(output, "error: the database already holds a trial: restore into a new, empty")
    assert row_counts(engine) == before and data_sha256(engine) == digest


def test_restore_refuses_a_database_holding_any_row(
    sources: Callable[[str], Source], make_engine: Callable[..., Engine], row_counts: Counts
) -> None:
    """No trial and no audit record, but a row (clashing with none restored): restoring would
    leave it there, unaudited."""
    engine = make_engine("sqlite")
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO site (id, code, name, country) VALUES (9999, 'ZZ01', 'x', 'ZZZ')")
        )
    before = row_counts(engine)
    code, output = _cli("restore", str(sources("sqlite").file), "--database", _url(engine))
    assert code == 1
    assert _says(output, "error: the database is not empty (rows in site)")
    assert row_counts(engine) == before


def _truncated(text: str) -> str:
    return text[: len(text) // 2]


def _altered(text: str) -> str:
    needle = 'ItemOID="IT.lab_result.value" Value="640.0"'  # the corrected CD4
    assert text.count(needle) == 1
    return text.replace(needle, 'ItemOID="IT.lab_result.value" Value="64.0"')


def _record_dropped(text: str) -> str:
    """One whole audit record (its subject's data) cut out of the file."""
    match = re.search(
        r"<SubjectData [^>]*>(?:(?!</SubjectData>).)*?IG\.adverse_event.*?"
        r"</SubjectData>",
        text,
        re.S,
    )
    assert match
    return text[: match.start()] + text[match.end() :]


def _foreign(text: str) -> str:
    return '<?xml version="1.0"?><ODM xmlns="http://www.cdisc.org/ns/odm/v1.3"/>'


BAD_FILES: dict[str, tuple[Callable[[str], str], str]] = {
    "truncated": (_truncated, "is not well-formed XML"),
    "value-altered": (_altered, "does not match the hash the export wrote"),
    "record-removed": (_record_dropped, "does not match the hash the export wrote"),
    "not-a-backup": (_foreign, "not valid against its schema"),
    "empty-file": (lambda text: "", "is not well-formed XML"),
}


@pytest.mark.parametrize("bad", [*BAD_FILES, "missing"])
def test_restore_refuses_a_missing_or_corrupt_file_and_changes_nothing(
    sources: Callable[[str], Source],
    make_engine: Callable[..., Engine],
    row_counts: Counts,
    tmp_path: Path,
    bad: str,
) -> None:
    file = tmp_path / "backup.odm.xml"
    if bad == "missing":
        expected = f"no ODM file at {file}"
    else:
        mutate, expected = BAD_FILES[bad]
        file.write_text(mutate(sources("sqlite").file.read_text(encoding="utf-8")))
    engine = make_engine("sqlite")
    before = row_counts(engine)
    code, output = _cli("restore", str(file), "--database", _url(engine))
    assert code == 1
    assert output.startswith("error:") and _says(output, expected), output
    assert row_counts(engine) == before
    # a database that did not exist is not created either
    absent = tmp_path / "never.db"
    code, output = _cli("restore", str(file), "--database", f"sqlite:///{absent}")
    assert code == 1 and _says(output, expected)
    assert not absent.exists()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=PG)])
def test_a_restored_file_survives_a_second_round_trip(
    sources: Callable[[str], Source],
    make_engine: Callable[..., Engine],
    tmp_path: Path,
    backend: str,
) -> None:
    """restore, backup again, restore again: the same data; the file itself only differs in
    its creation time."""
    src = sources("sqlite")
    first = make_engine(backend, migrated=False)
    assert _cli("restore", str(src.file), "--database", _url(first))[0] == 0
    again = tmp_path / "again.odm.xml"
    code, output = _cli("backup", "--database", _url(first), "--out", str(again))
    assert code == 0, output
    stamp = re.compile(r'CreationDateTime="[^"]*"')
    assert stamp.sub("", again.read_text()) == stamp.sub("", src.file.read_text())
    second = make_engine("sqlite", migrated=False)
    assert _cli("restore", str(again), "--database", _url(second))[0] == 0
    assert data_sha256(second) == src.digest


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=PG)])
def test_backup_refuses_a_tampered_database_and_keeps_the_earlier_backup(
    sources: Callable[[str], Source],
    make_engine: Callable[..., Engine],
    tmp_path: Path,
    backend: str,
) -> None:
    engine = make_engine(backend, migrated=False)
    assert _cli("restore", str(sources("sqlite").file), "--database", _url(engine))[0] == 0
    out = tmp_path / "trial.odm.xml"
    code, output = _cli("backup", "--database", _url(engine), "--out", str(out))
    assert code == 0, output
    earlier = out.read_bytes()
    with engine.begin() as conn:
        lab = conn.scalar(sa.text("SELECT min(id) FROM lab_result"))
        conn.execute(sa.text("UPDATE lab_result SET value = value + 1 WHERE id = :i"), {"i": lab})
    code, output = _cli("backup", "--database", _url(engine), "--out", str(out))
    assert code == 1
    assert _says(output, "the audit chain does not verify")
    assert _says(output, f"lab_result id {lab}")
    assert out.read_bytes() == earlier
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no partial file left


def test_backup_of_a_database_without_a_trial_is_refused(
    make_engine: Callable[..., Engine], tmp_path: Path
) -> None:
    engine = make_engine("sqlite")
    out = tmp_path / "b.odm.xml"
    code, output = _cli("backup", "--database", _url(engine), "--out", str(out))
    assert code == 1 and _says(output, "holds no trial")
    assert not out.exists()
    code, output = _cli("backup", "--database", _url(engine), "--out", str(tmp_path))
    assert code == 1 and _says(output, "is a folder")


def test_commands_have_help_with_an_example_and_a_readme_row() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    rows = [line for line in readme.splitlines() if line.startswith("| `stalwart backup")]
    assert len(rows) == 1 and "`stalwart restore FILE --database URL`" in rows[0]
    for command in ("backup", "restore"):
        code, output = _cli(command, "--help")
        assert code == 0 and _says(output, f"Example: stalwart {command}")


def test_backup_file_is_one_odm_document_naming_its_chain(sources: Callable[[str], Source]) -> None:
    src = sources("sqlite")
    text = src.file.read_text(encoding="utf-8")
    assert text.count("<ODM ") == 1 and 'FileType="Transactional"' in text
    assert f'FileOID="ODM.STALWART.{src.head[:16]}"' in text
    assert text.count("<AuditRecord ") == src.records
    assert f"<SourceID>{src.head}</SourceID>" in text  # the last record's hash
