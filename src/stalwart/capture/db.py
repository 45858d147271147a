"""Open a trial database from a SQLAlchemy URL: SQLite by default, PostgreSQL in production.

SQLite gets WAL journaling, enforced foreign keys and ``BEGIN IMMEDIATE`` transactions so that
concurrent writers queue instead of failing half-way; PostgreSQL uses row locks taken by the
service. Schema creation and upgrade go through the Alembic migrations.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from stalwart.errors import ConfigurationError, DatabaseError

if TYPE_CHECKING:  # Alembic is imported where a schema is made or upgraded, not by every command
    from alembic.config import Config

__all__ = [
    "DATABASE_URL_ENV",
    "alembic_config",
    "core_connection",
    "create_schema",
    "default_sqlite_url",
    "open_engine",
    "resolve_database_url",
    "snapshot_connection",
    "snapshot_session",
]

DATABASE_URL_ENV = "STALWART_DATABASE_URL"


def default_sqlite_url(folder: Path) -> str:
    """The default database: ``folder/stalwart.db`` (SQLite)."""
    return f"sqlite:///{(folder / 'stalwart.db').resolve()}"


def resolve_database_url(explicit: str | None, folder: Path | None = None) -> str:
    """The URL to use: ``explicit``, else ``$STALWART_DATABASE_URL``, else SQLite in ``folder``."""
    url = explicit or os.environ.get(DATABASE_URL_ENV)
    if url:
        return url
    if folder is None:
        raise ConfigurationError(
            f"no database given: pass --database URL or set {DATABASE_URL_ENV}"
        )
    return default_sqlite_url(folder)


def open_engine(url: str) -> Engine:
    """An engine for ``url``, checked by connecting once; bad URLs raise ConfigurationError."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigurationError(
            f"not a database URL: {url!r}; use e.g. sqlite:///trial.db or "
            "postgresql+psycopg://user@host/dbname"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ConfigurationError(
            f"unsupported database {backend!r} in {url!r}: use sqlite or postgresql"
        )
    if backend == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite" and parsed.database not in (None, "", ":memory:"):
        folder = Path(parsed.database).parent
        if not folder.is_dir():
            raise ConfigurationError(f"folder {folder} for the SQLite database does not exist")
    kwargs: dict[str, Any] = {}
    if backend == "sqlite":
        kwargs["connect_args"] = {"timeout": 30}
    try:
        engine = sa.create_engine(parsed, **kwargs)
    except (NoSuchModuleError, ArgumentError) as exc:
        raise ConfigurationError(f"cannot use database URL {url!r}: {exc}") from None
    if backend == "sqlite":
        _configure_sqlite(engine)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except OperationalError as exc:
        engine.dispose()
        reason = str(exc.orig).strip() if exc.orig is not None else str(exc)
        raise DatabaseError(
            f"cannot connect to the database {parsed.render_as_string(hide_password=True)}: "
            f"{reason}; check that the server is running and the URL's host, port, user and "
            "database name"
        ) from None
    return engine


def _configure_sqlite(engine: Engine) -> None:
    """WAL, foreign keys, and BEGIN IMMEDIATE (the pysqlite transaction recipe of SQLAlchemy)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # let SQLAlchemy's BEGIN below be the only one
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # a snapshot read needs no write lock: a deferred BEGIN reads one WAL snapshot
        snapshot = conn.get_execution_options().get(_SNAPSHOT, False)
        conn.exec_driver_sql("BEGIN" if snapshot else "BEGIN IMMEDIATE")


_SNAPSHOT = "stalwart_snapshot"


@contextmanager
def snapshot_connection(engine: Engine | sa.Connection) -> Iterator[sa.Connection]:
    """A connection inside one read transaction that sees one snapshot of the database, however
    long it reads (given a connection, the caller's transaction on it is that snapshot).

    PostgreSQL: one REPEATABLE READ, READ ONLY transaction (every statement sees the data as of
    the first); SQLite: one deferred read transaction (WAL keeps its snapshot, and writers go
    on). Audit verify, backup, the exports, reports and analysis read through it, so that
    writes going on meanwhile cannot make the chain head, the chain, the rows and the data hash
    disagree. Sessions bound to the connection join its transaction.
    """
    if isinstance(engine, sa.Connection):  # a caller's own read transaction: read in it
        yield engine
        return
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        else:
            conn.execution_options(**{_SNAPSHOT: True})
        transaction = conn.begin()
        try:
            yield conn
        finally:
            transaction.rollback()  # it only read


@contextmanager
def snapshot_session(engine: Engine | sa.Connection) -> Iterator[Session]:
    """A read-only session in one snapshot of the database (``snapshot_connection``)."""
    with snapshot_connection(engine) as conn, Session(bind=conn) as session:
        yield session


def core_connection(session: Session) -> sa.Connection:
    """The connection of ``session``'s transaction, for Core statements of the busiest forms.

    A Core statement run on it skips the ORM's per-statement work (several times the cost of
    a small read on SQLite), and, unlike ``session.execute``, would not flush pending ORM
    changes first: they are flushed here, so what it reads and writes follows them as before.
    """
    session.flush()
    return session.connection()


def alembic_config(engine: Engine | None) -> Config:
    """The Alembic configuration of the packaged migrations (for ``engine``'s database, if any)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", "stalwart.capture:migrations")
    if engine is not None:
        cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return cfg


def create_schema(engine: Engine) -> None:
    """Bring the database to the latest schema through the Alembic migrations."""
    from alembic import command

    cfg = alembic_config(engine)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot create the trial schema: {exc}") from None
