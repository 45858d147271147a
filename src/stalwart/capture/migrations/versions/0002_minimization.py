"""Minimization: the table of concealed uniform draws made at set-up from the seed.

The allocation counts minimization needs are read from ``allocation_slot``; only the random
stream is new. Permuted-block trials leave the table empty.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "minimization_draw",
        sa.Column("sequence", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("draw", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("sequence", name=op.f("pk_minimization_draw")),
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_table("minimization_draw")
