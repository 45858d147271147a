"""Initial schema: the trial tables, the audit chain, and triggers that keep the chain append-only.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
    )
    op.create_table(
        "audit_record",
        sa.Column("sequence", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("recorded_at", sa.String(length=40), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=10), nullable=False),
        sa.Column("table_name", sa.String(length=40), nullable=False),
        sa.Column("record_id", sa.Integer(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("sequence", name=op.f("pk_audit_record")),
        sa.UniqueConstraint("hash", name=op.f("uq_audit_record_hash")),
    )
    op.create_table(
        "site",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("country", sa.String(length=3), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_site")),
        sa.UniqueConstraint("code", name=op.f("uq_site_code")),
    )
    op.create_table(
        "trial",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("protocol_id", sa.String(length=40), nullable=False),
        sa.Column("protocol_version", sa.String(length=40), nullable=False),
        sa.Column("protocol_sha256", sa.String(length=64), nullable=False),
        sa.Column("protocol_text", sa.Text(), nullable=False),
        sa.Column("randomization_seed_sha256", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trial")),
    )
    op.create_table(
        "screening",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("screening_number", sa.String(length=40), nullable=False),
        sa.Column("screening_date", sa.Date(), nullable=False),
        sa.Column("answers", sa.JSON(), nullable=False),
        sa.Column("eligible", sa.Boolean(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["site_id"], ["site.id"], name=op.f("fk_screening_site_id_site")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_screening")),
        sa.UniqueConstraint("screening_number", name=op.f("uq_screening_screening_number")),
    )
    op.create_table(
        "participant",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("usubjid", sa.String(length=40), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("screening_id", sa.Integer(), nullable=False),
        sa.Column("consent_date", sa.Date(), nullable=False),
        sa.Column("randomization_date", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(
            ["screening_id"], ["screening.id"], name=op.f("fk_participant_screening_id_screening")
        ),
        sa.ForeignKeyConstraint(["site_id"], ["site.id"], name=op.f("fk_participant_site_id_site")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_participant")),
        sa.UniqueConstraint("screening_id", name=op.f("uq_participant_screening_id")),
        sa.UniqueConstraint("usubjid", name=op.f("uq_participant_usubjid")),
    )
    op.create_table(
        "adverse_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("term", sa.String(length=100), nullable=False),
        sa.Column("grade", sa.Integer(), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=True),
        sa.Column("related", sa.String(length=20), nullable=False),
        sa.Column("serious", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participant.id"],
            name=op.f("fk_adverse_event_participant_id_participant"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_adverse_event")),
    )
    with op.batch_alter_table("adverse_event", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_adverse_event_participant_id"), ["participant_id"], unique=False
        )

    op.create_table(
        "allocation_slot",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("stratum", sa.String(length=200), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("block", sa.Integer(), nullable=False),
        sa.Column("block_size", sa.Integer(), nullable=False),
        sa.Column("arm", sa.String(length=20), nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participant.id"],
            name=op.f("fk_allocation_slot_participant_id_participant"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_allocation_slot")),
        sa.UniqueConstraint("participant_id", name=op.f("uq_allocation_slot_participant_id")),
        sa.UniqueConstraint(
            "stratum", "sequence", name=op.f("uq_allocation_slot_stratum_sequence")
        ),
    )
    with op.batch_alter_table("allocation_slot", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_allocation_slot_stratum"), ["stratum"], unique=False)

    op.create_table(
        "clinical_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("event_code", sa.String(length=20), nullable=False),
        sa.Column("category", sa.String(length=20), nullable=False),
        sa.Column("onset_date", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participant.id"],
            name=op.f("fk_clinical_event_participant_id_participant"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clinical_event")),
    )
    with op.batch_alter_table("clinical_event", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_clinical_event_participant_id"), ["participant_id"], unique=False
        )

    op.create_table(
        "disposition",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=40), nullable=False),
        sa.Column("disposition_date", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participant.id"],
            name=op.f("fk_disposition_participant_id_participant"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_disposition")),
        sa.UniqueConstraint("participant_id", name=op.f("uq_disposition_participant_id")),
    )
    op.create_table(
        "dose",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("treatment", sa.String(length=20), nullable=False),
        sa.Column("cycle", sa.Integer(), nullable=False),
        sa.Column("dose_date", sa.Date(), nullable=False),
        sa.Column("administrations", sa.Integer(), nullable=False),
        sa.Column("dose", sa.Float(), nullable=False),
        sa.Column("dose_unit", sa.String(length=20), nullable=False),
        sa.ForeignKeyConstraint(
            ["participant_id"], ["participant.id"], name=op.f("fk_dose_participant_id_participant")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dose")),
        sa.UniqueConstraint(
            "participant_id",
            "treatment",
            "dose_date",
            name=op.f("uq_dose_participant_id_treatment_dose_date"),
        ),
    )
    with op.batch_alter_table("dose", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_dose_participant_id"), ["participant_id"], unique=False
        )

    op.create_table(
        "visit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("visit_code", sa.String(length=20), nullable=False),
        sa.Column("visit_date", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(
            ["participant_id"], ["participant.id"], name=op.f("fk_visit_participant_id_participant")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_visit")),
        sa.UniqueConstraint(
            "participant_id", "visit_code", name=op.f("uq_visit_participant_id_visit_code")
        ),
    )
    with op.batch_alter_table("visit", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_visit_participant_id"), ["participant_id"], unique=False
        )

    op.create_table(
        "lab_result",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("visit_id", sa.Integer(), nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("test_code", sa.String(length=20), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("unit", sa.String(length=20), nullable=False),
        sa.Column("below_limit", sa.Boolean(), nullable=False),
        sa.Column("limit_value", sa.Float(), nullable=True),
        sa.CheckConstraint(
            "(value IS NOT NULL AND NOT below_limit) OR (value IS NULL AND below_limit "
            "AND limit_value IS NOT NULL)",
            name=op.f("ck_lab_result_censored_or_value"),
        ),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participant.id"],
            name=op.f("fk_lab_result_participant_id_participant"),
        ),
        sa.ForeignKeyConstraint(
            ["visit_id"], ["visit.id"], name=op.f("fk_lab_result_visit_id_visit")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lab_result")),
        sa.UniqueConstraint("visit_id", "test_code", name=op.f("uq_lab_result_visit_id_test_code")),
    )
    with op.batch_alter_table("lab_result", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_lab_result_participant_id"), ["participant_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_lab_result_visit_id"), ["visit_id"], unique=False)

    _append_only_audit()


_SQLITE_TRIGGERS = [
    "CREATE TRIGGER audit_record_no_update BEFORE UPDATE ON audit_record "
    "BEGIN SELECT RAISE(ABORT, 'audit_record is append-only'); END",
    "CREATE TRIGGER audit_record_no_delete BEFORE DELETE ON audit_record "
    "BEGIN SELECT RAISE(ABORT, 'audit_record is append-only'); END",
]

_PG_TRIGGERS = [
    "CREATE FUNCTION stalwart_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "BEGIN RAISE EXCEPTION 'audit_record is append-only'; END $$",
    "CREATE TRIGGER audit_record_append_only BEFORE UPDATE OR DELETE ON audit_record "
    "FOR EACH ROW EXECUTE FUNCTION stalwart_audit_append_only()",
]


def _append_only_audit() -> None:
    """Refuse UPDATE and DELETE on audit_record in the database itself, not only in code."""
    dialect = op.get_bind().dialect.name
    for statement in _SQLITE_TRIGGERS if dialect == "sqlite" else _PG_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    """Revert this revision."""
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS audit_record_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_record_no_delete")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_record_append_only ON audit_record")
        op.execute("DROP FUNCTION IF EXISTS stalwart_audit_append_only()")
    with op.batch_alter_table("lab_result", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lab_result_visit_id"))
        batch_op.drop_index(batch_op.f("ix_lab_result_participant_id"))

    op.drop_table("lab_result")
    with op.batch_alter_table("visit", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_visit_participant_id"))

    op.drop_table("visit")
    with op.batch_alter_table("dose", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dose_participant_id"))

    op.drop_table("dose")
    op.drop_table("disposition")
    with op.batch_alter_table("clinical_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_clinical_event_participant_id"))

    op.drop_table("clinical_event")
    with op.batch_alter_table("allocation_slot", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_allocation_slot_stratum"))

    op.drop_table("allocation_slot")
    with op.batch_alter_table("adverse_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_adverse_event_participant_id"))

    op.drop_table("adverse_event")
    op.drop_table("participant")
    op.drop_table("screening")
    op.drop_table("trial")
    op.drop_table("site")
    op.drop_table("audit_record")
    op.drop_table("audit_head")
