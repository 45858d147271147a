"""Alembic environment: migrations run on the connection stalwart hands over (or the URL)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool

from stalwart.capture.tables import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    """Run on ``config.attributes['connection']`` when given, else on a new engine."""
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = engine_from_config(
        config.get_section(config.config_ini_section) or {},
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with engine.connect() as conn:
        context.configure(
            connection=conn,
            target_metadata=target_metadata,
            render_as_batch=conn.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
