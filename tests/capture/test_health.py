"""``capture.health.readiness``: the database, the schema revision and the audit head, named."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from stalwart.capture.health import readiness, schema_heads
from stalwart.capture.service import CaptureService


def _checks(engine: Engine) -> dict[str, tuple[bool, str]]:
    return {c.name: (c.ok, c.detail) for c in readiness(engine).checks}


def test_an_initialized_trial_is_ready(trial: CaptureService) -> None:
    result = readiness(trial.engine)
    assert result.ready
    checks = _checks(trial.engine)
    assert checks["schema"] == (True, f"at revision {', '.join(sorted(schema_heads()))}")
    assert checks["audit"][0] and "head at record" in checks["audit"][1]


def test_a_database_without_the_schema_is_not_ready(
    make_engine: Callable[..., Engine], backend: str
) -> None:
    engine = make_engine(backend, migrated=False)
    checks = _checks(engine)
    assert checks["database"][0] is True
    assert checks["schema"][0] is False and "no schema revision" in checks["schema"][1]
    assert checks["audit"][0] is False and "cannot read the audit head" in checks["audit"][1]


def test_a_schema_of_another_revision_is_not_ready(trial: CaptureService) -> None:
    with trial.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999_future'"))
    ok, detail = _checks(trial.engine)["schema"]
    assert not ok
    assert detail.startswith("at revision 9999_future, this release expects")


def test_an_unreachable_database_is_named_and_nothing_raises() -> None:
    engine = sa.create_engine(
        "postgresql+psycopg://nobody@127.0.0.1:1/none", connect_args={"connect_timeout": 2}
    )
    try:
        result = readiness(engine)
    finally:
        engine.dispose()
    assert not result.ready
    checks = {c.name: c for c in result.checks}
    assert not checks["database"].ok and checks["database"].detail.startswith("unreachable: ")
    assert checks["schema"].detail == "skipped: no database"
    assert checks["audit"].detail == "skipped: no database"
