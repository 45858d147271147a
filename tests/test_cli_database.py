"""`stalwart db status` and `db upgrade`: an older database found, upgraded, reopened."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from stalwart.capture.db import alembic_config
from stalwart.capture.service import CaptureService
from stalwart.capture.tables import AuditRecord
from stalwart.cli import app

runner = CliRunner()


def _audit_records(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(AuditRecord)).scalar_one())


def test_an_older_database_is_named_upgraded_once_and_reopened(
    trial: CaptureService,
    engine: Engine,
    db_url: str,
) -> None:
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0004")

    refused = runner.invoke(app, ["user", "list", "-d", db_url])
    assert refused.exit_code != 0
    said = " ".join(refused.output.split())  # the console wraps long lines
    assert "stalwart db upgrade --database URL" in said and "Traceback" not in said

    status = runner.invoke(app, ["db", "status", "-d", db_url])
    assert status.exit_code == 1, status.output
    assert "database schema revision: 0004" in status.output and "older" in status.output

    before = _audit_records(engine)
    upgraded = runner.invoke(app, ["db", "upgrade", "-d", db_url])
    assert upgraded.exit_code == 0, upgraded.output
    assert "schema upgraded from revision 0004 to " in upgraded.output
    again = runner.invoke(app, ["db", "upgrade", "-d", db_url])
    assert again.exit_code == 0 and "already at this release's schema" in again.output
    assert _audit_records(engine) == before + 1  # one record: the upgrade

    assert runner.invoke(app, ["db", "status", "-d", db_url]).exit_code == 0
    listed = runner.invoke(app, ["user", "list", "-d", db_url])
    assert listed.exit_code == 0, listed.output


def test_a_bad_database_url_is_one_message() -> None:
    result = runner.invoke(app, ["db", "upgrade", "-d", "nonsense://"])
    assert result.exit_code != 0
    assert "Traceback" not in result.output and "nonsense" in result.output
