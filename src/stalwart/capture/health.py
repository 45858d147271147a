"""Whether the trial database can serve requests now: ``/readyz`` of ``stalwart serve``.

Three checks, in order, each named in the answer: the database answers a query (``database``),
its schema is at the revision this code's Alembic migrations end at (``schema``: an empty
database, one not yet upgraded, or one from a newer release is not ready), and the audit chain's
head can be read (``audit``: every write appends to it). A check that cannot run because an
earlier one failed is reported as skipped. Liveness (``/healthz``) needs none of this: it says
only that the process answers.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from stalwart.capture.tables import AuditHead
from stalwart.capture.upgrade import schema_heads

__all__ = ["Check", "Readiness", "readiness", "schema_heads"]


@dataclass(frozen=True)
class Check:
    """One readiness check: its name, whether it passed, and what was found."""

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Readiness:
    """The checks of one readiness probe; ``ready`` when every one passed."""

    checks: tuple[Check, ...]

    @property
    def ready(self) -> bool:
        """Every check passed."""
        return all(c.ok for c in self.checks)


def _reason(exc: Exception) -> str:
    """A short, one-line reason of a database error (the driver's message, not the SQL)."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


def readiness(engine: Engine) -> Readiness:
    """Check the database, the schema revision and the audit head; never raises for a database
    failure (it is the answer)."""
    checks: list[Check] = []
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
            checks.append(Check("database", True, "the database answers"))
            try:
                found = set(
                    conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars()
                )
            except sa.exc.DBAPIError as exc:
                conn.rollback()
                found = set()
                missing = f"no schema revision ({_reason(exc)}): run stalwart init or restore"
                checks.append(Check("schema", False, missing))
            else:
                heads = set(schema_heads())
                if found == heads:
                    checks.append(Check("schema", True, f"at revision {', '.join(sorted(heads))}"))
                else:
                    checks.append(
                        Check(
                            "schema",
                            False,
                            f"at revision {', '.join(sorted(found)) or 'none'}, this release "
                            f"expects {', '.join(sorted(heads))}: see `stalwart db upgrade`",
                        )
                    )
            try:
                head = conn.execute(sa.select(AuditHead.sequence).limit(1)).scalar()
                detail = "empty chain" if head is None else f"head at record {head}"
                checks.append(Check("audit", True, detail))
            except sa.exc.DBAPIError as exc:
                checks.append(Check("audit", False, f"cannot read the audit head: {_reason(exc)}"))
    except sa.exc.SQLAlchemyError as exc:
        checks.append(Check("database", False, f"unreachable: {_reason(exc)}"))
        checks.append(Check("schema", False, "skipped: no database"))
        checks.append(Check("audit", False, "skipped: no database"))
    return Readiness(tuple(checks))
