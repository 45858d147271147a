"""PostgreSQL: append audit records in one server-side call, so the chain lock is held briefly.

Every write appends to the hash chain under the lock of ``audit_head``. Done from Python, the
lock spans several round trips (lock and read the head, insert the records, update the head),
each waiting for the writer's thread to be scheduled again, and all writers queue behind it.
``stalwart_audit_append`` does the whole append in the server: lock the head, hash each record
from the canonical text prepared by ``capture.audit`` and the previous hash, insert, move the
head. The records come as one JSON text (cheaper to send than arrays). The hashes are the ones
``capture.audit._record_hash`` computes (``verify`` checks them in Python), and
``capture.transaction`` sends this call with the COMMIT. SQLite needs nothing: ``BEGIN
IMMEDIATE`` already serializes its writers.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_FUNCTION = """
CREATE FUNCTION stalwart_audit_append(stamp text, who text, why text, items text)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    seq integer;
    prev text;
    digest text;
    item json;
BEGIN
    SELECT sequence, hash INTO seq, prev FROM audit_head WHERE id = 1 FOR UPDATE;
    IF NOT FOUND THEN
        seq := 0;
        prev := repeat('0', 64);
        INSERT INTO audit_head (id, sequence, hash) VALUES (1, 0, prev);
    END IF;
    -- items: [[action, table_name, record_id, data, middle], ...]
    FOR item IN SELECT value FROM json_array_elements(items::json) LOOP
        seq := seq + 1;
        digest := encode(
            sha256(convert_to('[' || seq::text || ',' || (item->>4) || ',"' || prev || '"]',
                              'UTF8')),
            'hex');
        INSERT INTO audit_record
            (sequence, recorded_at, actor, action, table_name, record_id, data, reason,
             prev_hash, hash)
        VALUES (seq, stamp, who, item->>0, item->>1, (item->>2)::integer, item->>3, why, prev,
                digest);
        prev := digest;
    END LOOP;
    UPDATE audit_head SET sequence = seq, hash = prev WHERE id = 1;
    RETURN seq;
END $$
"""


def upgrade() -> None:
    """Apply this revision."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_FUNCTION)


def downgrade() -> None:
    """Revert this revision."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS stalwart_audit_append(text, text, text, text)")
