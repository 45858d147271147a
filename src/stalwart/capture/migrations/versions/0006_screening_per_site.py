"""Screening numbers unique per site; audit records found by the row they record.

A screening number was unique across all sites, so a coordinator could learn whether another
site had used a number (and take it first). It is now unique per site, ``(site_id,
screening_number)``; every lookup by number is scoped by site (``capture.enrolment``). USUBJIDs
are derived from the site and its randomization count, as before.

The index on ``audit_record (table_name, record_id)`` serves the reads that find one record's
audit trail: its version (``capture.versions``, read with every visit and checked by every
correction) and the audit-trail pages, which otherwise scan the whole chain.

SQLite cannot drop a table's unique constraint: the table is rebuilt (Alembic's batch mode), with
foreign-key checks deferred to the commit, when the rebuilt table holds every id again.
Downgrading fails if two sites use one number (the old constraint cannot hold them).

Revision ID: 0006_screening_per_site
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0006_screening_per_site"
down_revision = "0004"
branch_labels = None
depends_on = None


def _defer_foreign_keys() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("PRAGMA defer_foreign_keys = ON")


def upgrade() -> None:
    """Apply this revision."""
    _defer_foreign_keys()
    with op.batch_alter_table("screening") as batch:
        batch.drop_constraint(op.f("uq_screening_screening_number"), type_="unique")
        batch.create_unique_constraint(
            op.f("uq_screening_site_id_screening_number"), ["site_id", "screening_number"]
        )
    op.create_index(op.f("ix_audit_record_row"), "audit_record", ["table_name", "record_id"])


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index(op.f("ix_audit_record_row"), table_name="audit_record")
    _defer_foreign_keys()
    with op.batch_alter_table("screening") as batch:
        batch.drop_constraint(op.f("uq_screening_site_id_screening_number"), type_="unique")
        batch.create_unique_constraint(op.f("uq_screening_screening_number"), ["screening_number"])
