"""Upgrading a trial database written by an older release, in place, keeping its data and trail.

The older database is made the way one really is: a trial at this release's schema, with
participants, users and audit records, taken back down the packaged migrations to revision 0004
(the schema before the account lifecycle, per-site screening numbers and login throttling).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Engine

from stalwart.capture.audit import verify_audit
from stalwart.capture.db import alembic_config
from stalwart.capture.health import readiness
from stalwart.capture.service import CaptureService
from stalwart.capture.tables import AuditRecord, Participant
from stalwart.capture.upgrade import schema_heads, schema_state, upgrade_schema
from stalwart.errors import ConfigurationError, DatabaseError

Counts = Callable[[Engine], dict[str, int]]


def _downgrade(engine: Engine, revision: str) -> None:
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def _participants(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(Participant.usubjid).order_by(Participant.id)).scalars())


def _last_reason(engine: Engine) -> str | None:
    with engine.connect() as conn:
        query = sa.select(AuditRecord.reason).order_by(AuditRecord.sequence.desc()).limit(1)
        return conn.execute(query).scalar()


def test_an_older_database_is_refused_then_upgraded_with_its_data_and_trail(
    trial: CaptureService, engine: Engine, enrol: Callable[..., object]
) -> None:
    for number in range(3):
        enrol(trial, number=f"OLD-{number}")
    participants = _participants(engine)
    assert len(participants) == 3
    _downgrade(engine, "0004")
    assert schema_state(engine).found == {"0004"}

    with pytest.raises(DatabaseError) as refused:
        CaptureService.open(engine)
    assert "revision 0004, older than this release's" in str(refused.value)
    assert "stalwart db upgrade --database URL" in str(refused.value)
    assert not readiness(engine).ready

    done = upgrade_schema(engine, "cli")
    assert done.changed and done.before == {"0004"} and done.after == schema_heads()
    assert schema_state(engine).current
    service = CaptureService.open(engine)  # opens again, no restart of anything
    assert _participants(engine) == participants
    assert service.protocol.study.id
    reason = _last_reason(engine)
    assert reason is not None and reason.startswith("schema upgraded from revision 0004 to ")
    report = verify_audit(engine)
    assert report.ok, report
    assert readiness(engine).ready


def test_a_current_database_is_left_as_it_is(
    trial: CaptureService, engine: Engine, row_counts: Counts
) -> None:
    before = row_counts(engine)
    done = upgrade_schema(engine, "cli")
    assert not done.changed and done.after == schema_heads()
    assert row_counts(engine) == before


def test_a_database_of_a_newer_release_is_refused_and_untouched(
    trial: CaptureService, engine: Engine, row_counts: Counts
) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999_future'"))
    before = row_counts(engine)
    with pytest.raises(DatabaseError, match="written by a newer stalwart"):
        CaptureService.open(engine)
    with pytest.raises(ConfigurationError, match="install that release"):
        upgrade_schema(engine, "cli")
    assert row_counts(engine) == before
    assert schema_state(engine).found == {"9999_future"}


def test_a_database_without_a_trial_schema_is_sent_to_init(
    make_engine: Callable[..., Engine], backend: str
) -> None:
    engine = make_engine(backend, migrated=False)
    with pytest.raises(DatabaseError, match="run `stalwart init`"):
        upgrade_schema(engine, "cli")
    assert schema_state(engine).found == frozenset()


def test_a_failed_upgrade_is_rolled_back_to_the_old_revision(
    trial: CaptureService, engine: Engine
) -> None:
    """A table in the way (made by hand, say) stops the upgrade; nothing of it stays."""
    participants = _participants(engine)
    _downgrade(engine, "0006_screening_per_site")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE login_failure (id INTEGER PRIMARY KEY)"))
        records = conn.execute(sa.select(sa.func.count()).select_from(AuditRecord)).scalar()
    with pytest.raises(DatabaseError, match="failed and was rolled back"):
        upgrade_schema(engine, "cli")
    assert schema_state(engine).found == {"0006_screening_per_site"}
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(AuditRecord)).scalar() == records
        columns = {c["name"] for c in sa.inspect(conn).get_columns("login_failure")}
    assert columns == {"id"}  # the hand-made table, untouched
    assert _participants(engine) == participants
