"""Sealed allocation lists (issue 17): ``sealed_arm`` holds the encrypted arms of the slots of
a trial initialized with an allocation key (``capture.sealing``). Empty for every other trial.

Revision ID: 0011_sealed_arms
Revises: 0010_access_audit
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_sealed_arms"
down_revision = "0010_access_audit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "sealed_arm",
        sa.Column("stratum", sa.String(length=200), nullable=False),
        sa.Column("sequence", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("sealed", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("stratum", "sequence", name=op.f("pk_sealed_arm")),
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_table("sealed_arm")
