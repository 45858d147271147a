"""The schema revision of a trial database, and upgrading an older one in place.

A trial runs for years; stalwart's releases add tables and columns as Alembic migrations. A
database written by an older release is refused when opened (every command, ``stalwart serve``
included) with the command that upgrades it, rather than failing later on a missing column. A
database written by a newer release is refused too: this release cannot know its tables.

``stalwart db upgrade`` applies the missing migrations in one transaction (on SQLite and
PostgreSQL alike, a failure leaves the database at its old revision) and appends one audit record
naming both revisions, so the trail shows when the schema changed and who changed it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from stalwart.capture.audit import append_audit
from stalwart.capture.db import alembic_config
from stalwart.capture.tables import TrialInfo
from stalwart.capture.transaction import transaction
from stalwart.errors import ConfigurationError, DatabaseError

__all__ = [
    "SchemaState",
    "SchemaUpgrade",
    "known_revisions",
    "require_current_schema",
    "schema_heads",
    "schema_state",
    "upgrade_schema",
]


@functools.cache
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config(None))


def schema_heads() -> frozenset[str]:
    """The revisions the packaged migrations end at (this release's schema)."""
    return frozenset(_script().get_heads())


def known_revisions() -> frozenset[str]:
    """Every revision of the packaged migrations."""
    return frozenset(r.revision for r in _script().walk_revisions())


@dataclass(frozen=True)
class SchemaState:
    """The revisions a database is at, against this release's."""

    found: frozenset[str]
    heads: frozenset[str]

    @property
    def current(self) -> bool:
        """The database is at this release's schema."""
        return self.found == self.heads

    @property
    def newer(self) -> frozenset[str]:
        """Revisions this release does not know (a newer release wrote the database)."""
        return self.found - known_revisions()

    def describe(self) -> str:
        """``'0004'``-style text of the found revisions (``'none'`` when there is none)."""
        return ", ".join(sorted(self.found)) or "none"


def _found(conn: Connection) -> frozenset[str]:
    try:
        rows = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars()
        return frozenset(str(r) for r in rows)
    except sa.exc.DBAPIError:
        conn.rollback()
        return frozenset()


def schema_state(engine: Engine) -> SchemaState:
    """The database's revisions (empty when it has no schema at all)."""
    try:
        with engine.connect() as conn:
            return SchemaState(_found(conn), schema_heads())
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot read the schema revision: {exc}") from None


def _refusal(state: SchemaState) -> str | None:
    """Why this release cannot work on a database at ``state`` (None: it can)."""
    heads = ", ".join(sorted(state.heads))
    if state.newer:
        return (
            f"this database's schema is at revision {state.describe()}, written by a newer "
            f"stalwart than this one (which ends at {heads}): install that release to open it"
        )
    if not state.current:
        return (
            f"this database's schema is at revision {state.describe()}, older than this "
            f"release's {heads}: back it up (`stalwart backup`), then run "
            "`stalwart db upgrade --database URL`"
        )
    return None


def require_current_schema(engine: Engine) -> None:
    """Refuse (DatabaseError) a database this release cannot use as it is, saying what to do."""
    state = schema_state(engine)
    if not state.found:
        return  # no schema at all: the caller says "this database holds no trial"
    problem = _refusal(state)
    if problem is not None:
        raise DatabaseError(problem)


@dataclass(frozen=True)
class SchemaUpgrade:
    """What ``upgrade_schema`` did: the revisions before and after (equal when nothing to do)."""

    before: frozenset[str]
    after: frozenset[str]

    @property
    def changed(self) -> bool:
        """Migrations were applied."""
        return self.before != self.after


def upgrade_schema(engine: Engine, actor: str) -> SchemaUpgrade:
    """Apply the missing migrations to a trial database, in one transaction, and audit it.

    Refuses a database with no trial (``stalwart init`` makes one at the latest schema) and one
    written by a newer release; a database already current is left untouched.
    """
    state = schema_state(engine)
    if not state.found:
        raise DatabaseError(
            "this database holds no trial schema: run `stalwart init` (or `stalwart restore`) "
            "to make one at the latest revision"
        )
    if state.newer:
        raise ConfigurationError(str(_refusal(state)))
    if state.current:
        return SchemaUpgrade(state.found, state.found)
    cfg = alembic_config(engine)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except SQLAlchemyError as exc:
        raise DatabaseError(
            f"the upgrade from revision {state.describe()} failed and was rolled back: {exc}"
        ) from None
    after = schema_state(engine)
    with transaction(engine) as session:
        info = session.get(TrialInfo, 1)
        if info is None:
            raise DatabaseError("this database holds no trial: run `stalwart init` first")
        reason = f"schema upgraded from revision {state.describe()} to {after.describe()}"
        append_audit(session, [("UPDATE", info)], actor, reason)
    return SchemaUpgrade(state.found, after.found)
