"""Screening numbers unique per site; audit records found by the row they record.

A screening number was unique across all sites, so a coordinator could learn whether another
site had used a number (and take it first). It is now unique per site, ``(site_id,
screening_number)``; every lookup by number is scoped by site (``capture.enrolment``). USUBJIDs
are derived from the site and its randomization count, as before.

The index on ``audit_record (table_name, record_id)`` serves the reads that find one record's
audit trail: its version (``capture.versions``, read with every visit and checked by every
correction) and the audit-trail pages, which otherwise scan the whole chain.

SQLite cannot drop a table's unique constraint: the table is rebuilt, with foreign-key checks
deferred to the commit, when the rebuilt table holds every id again (``_screening_unique``).
Downgrading fails if two sites use one number (the old constraint cannot hold them).

Revision ID: 0006_screening_per_site
Revises: 0005_accounts
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_screening_per_site"
down_revision = "0005_accounts"
branch_labels = None
depends_on = None


def _screening_unique(drop: str, create: str, columns: list[str]) -> None:
    """Swap the screening table's unique constraint ``drop`` for ``create`` over ``columns``.

    SQLite cannot drop a constraint, so the table is rebuilt in place with foreign-key checks
    deferred to the commit: copied out, dropped (the rows of consent and participant that
    point at it count as violations), created anew and refilled (each row put back clears its
    violations), so the commit finds none. Alembic's batch mode fills the new table before the
    drop, which leaves the violations counted.
    """
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint(op.f(drop), "screening", type_="unique")
        op.create_unique_constraint(op.f(create), "screening", columns)
        return
    op.execute("PRAGMA defer_foreign_keys = ON")
    op.execute("CREATE TABLE _screening_0006 AS SELECT * FROM screening")
    op.drop_table("screening")
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
        sa.UniqueConstraint(*columns, name=op.f(create)),
    )
    names = "id, site_id, screening_number, screening_date, answers, eligible, reasons"
    op.execute(f"INSERT INTO screening ({names}) SELECT {names} FROM _screening_0006")
    op.execute("DROP TABLE _screening_0006")


def upgrade() -> None:
    """Apply this revision."""
    _screening_unique(
        "uq_screening_screening_number",
        "uq_screening_site_id_screening_number",
        ["site_id", "screening_number"],
    )
    op.create_index(op.f("ix_audit_record_row"), "audit_record", ["table_name", "record_id"])


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index(op.f("ix_audit_record_row"), table_name="audit_record")
    _screening_unique(
        "uq_screening_site_id_screening_number",
        "uq_screening_screening_number",
        ["screening_number"],
    )
