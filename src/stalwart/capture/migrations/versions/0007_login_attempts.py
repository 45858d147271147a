"""Failed logins counted in the database, shared by every server process (``login_failure``).

Each worker kept its own counts before, so guessing was bounded per worker and a lock on one
worker did not hold on another. The table holds the recent failures only (the throttle deletes
rows older than its window); it is not audit data and is not in a backup. A database restored
from a backup made before this revision gets the table when it is upgraded.

Revision ID: 0007_login_attempts
Revises: 0006_screening_per_site
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_login_attempts"
down_revision = "0006_screening_per_site"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "login_failure",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("username", sa.String(length=60), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_failure")),
    )
    op.create_index(op.f("ix_login_failure_at"), "login_failure", ["at"])
    op.create_index(op.f("ix_login_failure_username"), "login_failure", ["username"])
    op.create_index(op.f("ix_login_failure_client"), "login_failure", ["client"])


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index(op.f("ix_login_failure_client"), table_name="login_failure")
    op.drop_index(op.f("ix_login_failure_username"), table_name="login_failure")
    op.drop_index(op.f("ix_login_failure_at"), table_name="login_failure")
    op.drop_table("login_failure")
