"""Account lifecycle: a password set by an administrator must be changed at the next login.

``user_credential.must_change`` is true after an administrator's reset (``stalwart user
reset-password``, the users page, the API): the temporary password then opens only the
change-password step. Credentials are not in the audit trail nor in backups, so this column
changes neither the audit data of any row nor what a backup restores.

Revision ID: 0005_accounts
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_accounts"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("user_credential", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("must_change", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("user_credential", schema=None) as batch_op:
        batch_op.drop_column("must_change")
