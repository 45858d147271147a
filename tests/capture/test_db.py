"""Opening the store: URL resolution, unusable URLs, unreachable servers, SQLite settings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from stalwart.capture.db import (
    DATABASE_URL_ENV,
    create_schema,
    default_sqlite_url,
    open_engine,
    resolve_database_url,
)
from stalwart.errors import ConfigurationError, DatabaseError


# -- resolve_database_url --------------------------------------------------------------------------
def test_explicit_url_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(DATABASE_URL_ENV, "sqlite:///env.db")
    assert resolve_database_url("sqlite:///explicit.db", tmp_path) == "sqlite:///explicit.db"


def test_environment_next(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(DATABASE_URL_ENV, "postgresql://u@h/db")
    assert resolve_database_url(None, tmp_path) == "postgresql://u@h/db"
    assert resolve_database_url("", tmp_path) == "postgresql://u@h/db"


def test_folder_default_last(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    expected = f"sqlite:///{(tmp_path / 'stalwart.db').resolve()}"
    assert resolve_database_url(None, tmp_path) == expected == default_sqlite_url(tmp_path)
    monkeypatch.setenv(DATABASE_URL_ENV, "")
    assert resolve_database_url(None, tmp_path) == expected


def test_relative_folder_made_absolute(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    assert default_sqlite_url(Path("out")) == f"sqlite:///{tmp_path.resolve()}/out/stalwart.db"


def test_nothing_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    with pytest.raises(ConfigurationError) as info:
        resolve_database_url(None)
    assert "--database" in str(info.value) and DATABASE_URL_ENV in str(info.value)


# -- open_engine -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "exc", "fragments"),
    [
        ("garbage", ConfigurationError, ["not a database URL: 'garbage'", "sqlite:///"]),
        ("", ConfigurationError, ["not a database URL"]),
        ("mysql://u@127.0.0.1/x", ConfigurationError, ["unsupported database 'mysql'", "sqlite"]),
        ("oracle://u@h/x", ConfigurationError, ["unsupported database 'oracle'"]),
        (
            "postgresql+nosuchdriver://u@h/x",
            ConfigurationError,
            ["cannot use database URL 'postgresql+nosuchdriver://u@h/x'"],
        ),
    ],
)
def test_unusable_url(url: str, exc: type[Exception], fragments: list[str]) -> None:
    with pytest.raises(exc) as info:
        open_engine(url)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_sqlite_in_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such"
    with pytest.raises(ConfigurationError) as info:
        open_engine(f"sqlite:///{missing}/trial.db")
    assert f"folder {missing} for the SQLite database does not exist" in str(info.value)
    assert not missing.exists()


def test_unreachable_postgresql() -> None:
    with pytest.raises(DatabaseError) as info:
        open_engine("postgresql://root:secret@127.0.0.1:1/x")
    msg = str(info.value)
    assert msg.startswith(
        "cannot connect to the database postgresql+psycopg://root:***@127.0.0.1:1/x"
    )
    assert "refused" in msg.lower()  # the driver's reason
    assert "check that the server is running" in msg
    assert "secret" not in msg


@pytest.mark.postgres
def test_plain_postgresql_url_uses_psycopg(make_engine: Callable[..., Engine]) -> None:
    url = make_engine("postgresql").url.render_as_string(hide_password=False)
    assert url.startswith("postgresql+psycopg://")
    engine = open_engine(url.replace("postgresql+psycopg://", "postgresql://", 1))
    try:
        assert engine.dialect.driver == "psycopg"
    finally:
        engine.dispose()


def test_sqlite_pragmas(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    finally:
        engine.dispose()


def test_foreign_keys_enforced(engine: Engine) -> None:
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO participant (usubjid, site_id, screening_id, consent_date, "
            "randomization_date) VALUES ('X', 99, 99, '2006-01-01', '2006-01-01')"
        )


def test_sqlite_in_memory_opens() -> None:
    engine = open_engine("sqlite://")
    try:
        create_schema(engine)
        assert "audit_record" in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_create_schema_twice_is_harmless(engine: Engine) -> None:
    create_schema(engine)
    create_schema(engine)
    with engine.connect() as conn:
        version = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    cfg = Config()
    cfg.set_main_option("script_location", "stalwart.capture:migrations")
    heads = ScriptDirectory.from_config(cfg).get_heads()
    assert heads == [version]  # one head: the latest migration


def test_create_schema_failure_is_a_database_error(tmp_path: Path) -> None:
    path = tmp_path / "clash.db"
    engine = open_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE site (x INTEGER)")
        with pytest.raises(DatabaseError, match="cannot create the trial schema"):
            create_schema(engine)
    finally:
        engine.dispose()
