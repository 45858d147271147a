"""Credentials and tokens covered by the audit chain (issue 17): the rows already stored get one
INSERT audit record each, their secrets as digests (``audit.row_data``), so that from this
revision on a planted token or a replaced password hash is a finding of audit verify.

No table changes. The records are appended by ``migration``; a database without accounts gets
none.

Revision ID: 0010_access_audit
Revises: 0009_visits_deviations
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.orm import Session

revision = "0010_access_audit"
down_revision = "0009_visits_deviations"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    from stalwart.capture.audit import append_audit, take_pending_audit
    from stalwart.capture.tables import AuthToken, Base, UserCredential

    session = Session(bind=op.get_bind())
    rows: list[tuple[str, Base]] = [
        ("INSERT", row)
        for model in (UserCredential, AuthToken)
        for row in session.scalars(sa.select(model).order_by(*model.__table__.primary_key))
    ]
    if rows:
        append_audit(session, rows, "migration", "credentials and tokens join the audit chain")
        for payload in take_pending_audit(session):  # PostgreSQL: the server-side append
            session.execute(
                sa.text("SELECT stalwart_audit_append(:stamp, :actor, :reason, :items)"), payload
            )
        session.flush()


def downgrade() -> None:
    """Revert this revision: the audit records stay (the chain is append-only)."""
