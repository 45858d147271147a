"""Visits as protocols define them: unscheduled visits, missed visits, protocol deviations.

An unscheduled visit is a ``visit`` row coded ``UNS01``... (no new column: the audit records of
existing rows stay whole); ``missed_visit`` holds a scheduled visit that did not happen and why;
``protocol_deviation`` is the deviations log (detected by the system or reported by a user,
reviewed by the data manager).

Revision ID: 0009_visits_deviations
Revises: 0008_adverse_event_fields
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_visits_deviations"
down_revision = "0008_adverse_event_fields"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "missed_visit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("visit_code", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("recorded_on", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participant.id"],
            name=op.f("fk_missed_visit_participant_id_participant"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_missed_visit")),
        sa.UniqueConstraint(
            "participant_id", "visit_code", name=op.f("uq_missed_visit_participant_id_visit_code")
        ),
    )
    op.create_index(op.f("ix_missed_visit_participant_id"), "missed_visit", ["participant_id"])
    op.create_table(
        "protocol_deviation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=True),
        sa.Column("screening_id", sa.Integer(), nullable=True),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("category", sa.String(length=40), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("deviation_date", sa.Date(), nullable=False),
        sa.Column("visit_code", sa.String(length=20), nullable=True),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("reported_by", sa.String(length=100), nullable=False),
        sa.Column("reviewed_by", sa.String(length=100), nullable=True),
        sa.Column("review_note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participant.id"],
            name=op.f("fk_protocol_deviation_participant_id_participant"),
        ),
        sa.ForeignKeyConstraint(
            ["screening_id"],
            ["screening.id"],
            name=op.f("fk_protocol_deviation_screening_id_screening"),
        ),
        sa.ForeignKeyConstraint(
            ["site_id"], ["site.id"], name=op.f("fk_protocol_deviation_site_id_site")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_protocol_deviation")),
    )
    for column in ("participant_id", "screening_id", "site_id"):
        op.create_index(op.f(f"ix_protocol_deviation_{column}"), "protocol_deviation", [column])


def downgrade() -> None:
    """Revert this revision."""
    for column in ("participant_id", "screening_id", "site_id"):
        op.drop_index(op.f(f"ix_protocol_deviation_{column}"), table_name="protocol_deviation")
    op.drop_table("protocol_deviation")
    op.drop_index(op.f("ix_missed_visit_participant_id"), table_name="missed_visit")
    op.drop_table("missed_visit")
