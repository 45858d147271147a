"""Monitoring and lock (issue 21): ``source_verification`` holds monitors' source data
verification of visits' forms; ``data_lock`` the data manager's locks (a participant, a site or
the whole trial, optionally up to a cut-off date) and their unlocks. Both start empty.

Revision ID: 0012_issue21_sdv_lock
Revises: 0011_sealed_arms
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_issue21_sdv_lock"
down_revision = "0011_sealed_arms"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "source_verification",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("visit_id", sa.Integer(), nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("verified_by", sa.String(length=100), nullable=False),
        sa.Column("verified_at", sa.String(length=40), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("valid", sa.Boolean(), nullable=False),
        sa.Column("void_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participant.id"],
            name=op.f("fk_source_verification_participant_id_participant"),
        ),
        sa.ForeignKeyConstraint(
            ["visit_id"], ["visit.id"], name=op.f("fk_source_verification_visit_id_visit")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_source_verification")),
    )
    op.create_index(
        op.f("ix_source_verification_participant_id"),
        "source_verification",
        ["participant_id"],
    )
    op.create_index(op.f("ix_source_verification_visit_id"), "source_verification", ["visit_id"])
    op.create_table(
        "data_lock",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(length=20), nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=True),
        sa.Column("site_id", sa.Integer(), nullable=True),
        sa.Column("cutoff", sa.Date(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("locked_by", sa.String(length=100), nullable=False),
        sa.Column("locked_at", sa.String(length=40), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("unlocked_by", sa.String(length=100), nullable=True),
        sa.Column("unlocked_at", sa.String(length=40), nullable=True),
        sa.Column("unlock_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participant.id"],
            name=op.f("fk_data_lock_participant_id_participant"),
        ),
        sa.ForeignKeyConstraint(["site_id"], ["site.id"], name=op.f("fk_data_lock_site_id_site")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_lock")),
    )
    op.create_index(op.f("ix_data_lock_participant_id"), "data_lock", ["participant_id"])
    op.create_index(op.f("ix_data_lock_site_id"), "data_lock", ["site_id"])


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index(op.f("ix_data_lock_site_id"), table_name="data_lock")
    op.drop_index(op.f("ix_data_lock_participant_id"), table_name="data_lock")
    op.drop_table("data_lock")
    op.drop_index(op.f("ix_source_verification_visit_id"), table_name="source_verification")
    op.drop_index(op.f("ix_source_verification_participant_id"), table_name="source_verification")
    op.drop_table("source_verification")
