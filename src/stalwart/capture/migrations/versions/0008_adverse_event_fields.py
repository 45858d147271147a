"""The AE form's submission fields: verbatim term, outcome, action taken, seriousness criteria.

SDTM AE needs the site's own words (AETERM), the outcome (AEOUT), the action taken with study
treatment (AEACN) and, for a serious event, which criteria made it serious (AESDTH, AESHOSP...);
``reported_on`` is the day the event was entered, so a serious event reported later than the
protocol allows is flagged. Rows entered before this revision keep the new columns empty (their
data, and so their audit hashes, are unchanged); they read as the protocol term, UNKNOWN outcome
and action, no criteria and no report date.

Revision ID: 0008_adverse_event_fields
Revises: 0007_login_attempts
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_adverse_event_fields"
down_revision = "0007_login_attempts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("adverse_event") as batch:
        batch.add_column(sa.Column("verbatim", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("outcome", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("action", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("seriousness", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("reported_on", sa.Date(), nullable=True))


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("adverse_event") as batch:
        for column in ("reported_on", "seriousness", "action", "outcome", "verbatim"):
            batch.drop_column(column)
