"""The Alembic migrations: they build the schema of the models, revert, and guard the audit."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from stalwart.capture.audit import append_audit, take_pending_audit, verify_audit
from stalwart.capture.db import create_schema
from stalwart.capture.service import initialize_trial
from stalwart.capture.tables import AppUser, Base
from stalwart.protocol.load import load_protocol

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]


def _alembic(engine: Engine, conn: sa.Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "stalwart.capture:migrations")
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    cfg.attributes["connection"] = conn
    return cfg


def _diff(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(ctx, Base.metadata))


def _tables(engine: Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


MODEL_TABLES = set(Base.metadata.tables)


@pytest.mark.parametrize("backend", BACKENDS)
def test_migrated_schema_equals_the_models(
    make_engine: Callable[..., Engine], backend: str
) -> None:
    engine = make_engine(backend, migrated=False)
    assert _tables(engine) == set()
    create_schema(engine)
    assert _tables(engine) == MODEL_TABLES | {"alembic_version"}
    assert _diff(engine) == []


def test_the_comparison_can_see_a_difference(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine("sqlite")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE INDEX ix_extra ON site (name)")
    diff = _diff(engine)
    assert [d[0] for d in diff] == ["remove_index"]  # type: ignore[index]


@pytest.mark.parametrize("backend", BACKENDS)
def test_downgrade_to_base_then_upgrade(make_engine: Callable[..., Engine], backend: str) -> None:
    engine = make_engine(backend)  # migrated template copy
    with engine.begin() as conn:
        command.downgrade(_alembic(engine, conn), "base")
    assert _tables(engine) == {"alembic_version"}
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM alembic_version").scalar() == 0
        if backend == "postgresql":
            n = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_proc WHERE proname = 'stalwart_audit_append_only'"
            ).scalar()
            assert n == 0
    with engine.begin() as conn:
        command.upgrade(_alembic(engine, conn), "head")
    assert _tables(engine) == MODEL_TABLES | {"alembic_version"}
    assert _diff(engine) == []
    _assert_audit_append_only(engine)


def _insert_audit_record(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO audit_record (sequence, recorded_at, actor, action, table_name, "
            "record_id, data, reason, prev_hash, hash) VALUES "
            "(1, 't', 'a', 'INSERT', 'site', 1, '{}', NULL, 'p', 'h')"
        )


def _assert_audit_append_only(engine: Engine) -> None:
    _insert_audit_record(engine)
    for statement in (
        "UPDATE audit_record SET data = '{\"x\":1}' WHERE sequence = 1",
        "UPDATE audit_record SET sequence = 2",
        "DELETE FROM audit_record WHERE sequence = 1",
        "DELETE FROM audit_record",
    ):
        with pytest.raises(sa.exc.DBAPIError) as info, engine.begin() as conn:
            conn.exec_driver_sql(statement)
        assert "audit_record is append-only" in str(info.value)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT sequence, data FROM audit_record").all()
    assert [tuple(r) for r in rows] == [(1, "{}")]


@pytest.mark.parametrize("backend", BACKENDS)
def test_audit_record_refuses_update_and_delete(
    make_engine: Callable[..., Engine], backend: str
) -> None:
    _assert_audit_append_only(make_engine(backend))


def test_audit_record_allows_insert_and_other_tables_allow_update(engine: Engine) -> None:
    _insert_audit_record(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO site (code, name, country) VALUES ('X1', 'x', 'XXX')")
        conn.exec_driver_sql("UPDATE site SET name = 'y'")
        conn.exec_driver_sql("DELETE FROM site")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM audit_record").scalar() == 1
        assert conn.exec_driver_sql("SELECT count(*) FROM site").scalar() == 0


def test_lab_result_check_constraint(engine: Engine) -> None:
    """A lab row is either a value or censored with a limit, in the database itself."""
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO site (id, code, name, country) VALUES (1, 'S', 's', 'SSS')"
        )
        conn.exec_driver_sql(
            "INSERT INTO screening (id, site_id, screening_number, screening_date, answers, "
            "eligible, reasons) VALUES (1, 1, 'N', '2006-01-01', '{}', true, '[]')"
        )
        conn.exec_driver_sql(
            "INSERT INTO participant (id, usubjid, site_id, screening_id, consent_date, "
            "randomization_date) VALUES (1, 'U', 1, 1, '2006-01-01', '2006-01-01')"
        )
        conn.exec_driver_sql(
            "INSERT INTO visit (id, participant_id, visit_code, visit_date) "
            "VALUES (1, 1, 'ENTRY', '2006-01-01')"
        )
    insert = (
        "INSERT INTO lab_result (visit_id, participant_id, test_code, value, unit, below_limit, "
        "limit_value) VALUES (1, 1, '{code}', {value}, 'u', {below}, {limit})"
    )
    ok = [("A", "1.0", "false", "NULL"), ("B", "NULL", "true", "50")]
    bad = [
        ("C", "NULL", "false", "NULL"),
        ("D", "1.0", "true", "50"),
        ("E", "NULL", "true", "NULL"),
    ]
    for code, value, below, limit in ok:
        with engine.begin() as conn:
            conn.exec_driver_sql(insert.format(code=code, value=value, below=below, limit=limit))
    for code, value, below, limit in bad:
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.exec_driver_sql(insert.format(code=code, value=value, below=below, limit=limit))


@pytest.mark.parametrize("backend", BACKENDS)
def test_0010_brings_stored_credentials_and_tokens_into_the_audit_chain(
    make_engine: Callable[..., Engine], backend: str
) -> None:
    """A database of revision 0009 (the one before 0010) holding an account and a token, written
    then without audit records of their own, verifies after the upgrade, and a token planted
    after it does not."""
    engine = make_engine(backend, migrated=False)
    with engine.begin() as conn:
        command.upgrade(_alembic(engine, conn), "0009_visits_deviations")
    initialize_trial(engine, load_protocol(None), seed=1, actor="t")
    with engine.begin() as conn:  # what the code before 0010 left: rows without audit records
        conn.exec_driver_sql(
            "INSERT INTO app_user (id, username, full_name, role, active, password_changed_at) "
            "VALUES (50, 'old', 'Old', 'admin', true, 't')"
        )
        conn.exec_driver_sql(
            "INSERT INTO user_credential (user_id, password_hash, must_change) "
            "VALUES (50, '$argon2id$x', false)"
        )
        conn.exec_driver_sql(
            "INSERT INTO auth_token (user_id, kind, token_sha256, created_at, expires_at, "
            "revoked) VALUES (50, 'api', 'ab', 't', 'u', false)"
        )
    before = verify_audit(engine)
    assert before.finding is not None and before.finding.table == "app_user"
    with engine.begin() as conn:  # the account itself was audited then
        session = Session(bind=conn)
        user = session.get(AppUser, 50)
        assert user is not None
        append_audit(session, [("INSERT", user)], "t")
        for payload in take_pending_audit(session):
            conn.execute(
                sa.text("SELECT stalwart_audit_append(:stamp, :actor, :reason, :items)"), payload
            )
    with engine.begin() as conn:
        command.upgrade(_alembic(engine, conn), "head")
    after = verify_audit(engine)
    assert after.ok, after.finding
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO auth_token (user_id, kind, token_sha256, created_at, expires_at, "
            "revoked) VALUES (50, 'api', 'cd', 't', '2099', false)"
        )
    planted = verify_audit(engine).finding
    assert planted is not None and planted.table == "auth_token"
