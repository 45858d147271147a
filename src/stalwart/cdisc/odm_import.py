"""Restore a trial database from its ODM 1.3.2 export: the rows and the audit chain, exactly.

The file is validated against the ODM 1.3.2 schema, then its ``ItemGroupData`` are replayed in
document order (the order of the audit chain): each one's content is re-encoded as the audit
record's canonical JSON and its hash recomputed and compared with the ``SourceID`` the export
wrote, so a file altered by hand is refused before anything is written. The rows are inserted or
updated with their original ids and the audit records copied with their original timestamps,
actors and reasons, in one transaction, into a database that holds no trial yet. The restored
database therefore has the same ``data_sha256`` as the one exported, and ``stalwart audit verify``
passes on it. This is the backup and restore path (``stalwart import odm``).

On PostgreSQL the id sequences are moved past the restored ids so that new rows can follow.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from lxml import etree
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

# the chain's own hashing, so that a restored record hashes exactly as the original did
from stalwart.capture.audit import GENESIS_HASH, _canonical, _record_hash
from stalwart.capture.db import create_schema
from stalwart.capture.tables import (
    ACCESS_TABLES,
    AUDITED_TABLES,
    CHAINED_TABLES,
    AuditRecord,
    Base,
    TrialInfo,
)
from stalwart.capture.transaction import transaction
from stalwart.cdisc.define_xml import ODM_NS, validate_xml
from stalwart.cdisc.odm import BACKUP_STATEMENT, column_kind, odm_schema, table_of, uncarried
from stalwart.errors import ConflictError, ExportError

__all__ = [
    "LATER_COLUMNS",
    "OdmBackup",
    "RestoreSummary",
    "import_odm",
    "read_odm",
    "restore_odm",
]

LATER_COLUMNS: dict[str, tuple[str, ...]] = {
    "adverse_event": ("verbatim", "outcome", "action", "seriousness", "reported_on"),
}
"""Columns added by later migrations: a backup made before one has them in no row's hash."""


@dataclass(frozen=True)
class RestoreSummary:
    """What ``import_odm`` restored: audit records, rows per table, the chain's head hash."""

    records: int
    rows: dict[str, int]
    head_hash: str


def _q(tag: str) -> str:
    return f"{{{ODM_NS}}}{tag}"


def _decode(kind: str, text: str) -> tuple[Any, Any]:
    """(JSON-able value as the audit record holds it, Python value for the column)."""
    if kind == "int":
        return int(text), int(text)
    if kind == "float":
        return float(text), float(text)
    if kind == "bool":
        if text not in ("true", "false"):
            raise ValueError(f"not a boolean: {text!r}")
        return text == "true", text == "true"
    if kind == "date":
        return dt.date.fromisoformat(text).isoformat(), dt.date.fromisoformat(text)
    if kind == "json":
        value = json.loads(text)
        return value, value
    plain = uncarried(text)
    return plain, plain


def _parse(path: Path) -> etree._ElementTree:
    if not path.is_file():
        raise ExportError(f"no ODM file at {path}; give the file `stalwart export odm` wrote")
    parser = etree.XMLParser(
        huge_tree=True, resolve_entities=False, load_dtd=False, no_network=True
    )
    try:
        doc = etree.parse(str(path), parser)
    except etree.XMLSyntaxError as exc:
        raise ExportError(f"{path} is not well-formed XML: {exc}") from None
    if doc.docinfo.doctype or doc.docinfo.internalDTD is not None:
        raise ExportError(
            f"{path} holds a DOCTYPE declaration (a document type or entities), which a "
            "backup never has: refused, nothing read from it; restore from an unaltered backup"
        )
    validate_xml(doc, odm_schema(), f"the ODM file {path}")
    return doc


def _users(doc: etree._ElementTree) -> dict[str, str]:
    users = {}
    for user in doc.getroot().iter(_q("User")):
        login = user.find(_q("LoginName"))
        try:
            users[user.get("OID", "")] = "" if login is None else uncarried(login.text or "")
        except ValueError as exc:
            raise ExportError(f"user {user.get('OID')}: bad escaped text: {exc}") from None
    return users


@dataclass(frozen=True)
class _Restored:
    """One audit record of the file and the row content it carries (column -> Python value)."""

    audit: dict[str, Any]
    table: str
    record_id: int
    action: str
    values: dict[str, Any]


def _records(doc: etree._ElementTree, path: Path) -> list[_Restored]:
    """Every audit record of the file with its row, hash-checked against ``SourceID``."""
    users = _users(doc)
    kinds = {
        m.__tablename__: {c.key: column_kind(c) for c in table_of(m.__tablename__).columns}
        for m in CHAINED_TABLES
    }
    prev = GENESIS_HASH
    out: list[_Restored] = []
    for ig in doc.getroot().iter(_q("ItemGroupData")):
        table = (ig.get("ItemGroupOID") or "").removeprefix("IG.")
        ar = ig.find(_q("AuditRecord"))
        where = f"{path}: item group {table} {ig.get('ItemGroupRepeatKey')}"
        user = None if ar is None else ar.find(_q("UserRef"))
        if table not in kinds or ar is None or user is None:
            raise ExportError(f"{where} is not a stalwart table row with its audit record")
        seq = len(out) + 1
        stored: dict[str, Any] = dict.fromkeys(kinds[table])
        values: dict[str, Any] = dict.fromkeys(kinds[table])
        present: set[str] = set()
        for item in ig.iter(_q("ItemData")):
            col = (item.get("ItemOID") or "").removeprefix(f"IT.{table}.")
            present.add(col)
            if col not in kinds[table]:
                raise ExportError(f"{where}: unknown item {item.get('ItemOID')}")
            try:
                stored[col], values[col] = _decode(kinds[table][col], item.get("Value", ""))
            except ValueError as exc:
                raise ExportError(f"{where}: bad value of {col}: {exc}") from None
        reason_el = ar.find(_q("ReasonForChange"))
        try:
            reason = None if reason_el is None else uncarried(reason_el.text or "")
            recorded_at = uncarried(ar.findtext(_q("DateTimeStamp")) or "")
        except ValueError as exc:
            raise ExportError(f"{where}: bad escaped text: {exc}") from None
        actor = users.get(user.get("UserOID", ""), "")
        action = "INSERT" if ig.get("TransactionType") == "Insert" else "UPDATE"
        try:
            record_id = int(ig.get("ItemGroupRepeatKey") or "")
        except ValueError:
            raise ExportError(f"{where}: the repeat key must be the row id") from None
        for col in LATER_COLUMNS.get(table, ()):
            if stored.get(col) is None and col not in present:
                del stored[col]  # a backup from before the column: its hash never had it
        data = _canonical(stored)
        digest = _record_hash(seq, recorded_at, actor, action, table, record_id, data, reason, prev)
        if digest != ar.findtext(_q("SourceID")):
            raise ExportError(
                f"{where} (audit record {seq}) does not match the hash the export wrote: the file "
                "was altered or is incomplete; restore from an unaltered export"
            )
        audit = {
            "sequence": seq,
            "recorded_at": recorded_at,
            "actor": actor,
            "action": action,
            "table_name": table,
            "record_id": record_id,
            "data": data,
            "reason": reason,
            "prev_hash": prev,
            "hash": digest,
        }
        prev = digest
        out.append(_Restored(audit, table, record_id, action, values))
    if not out:
        raise ExportError(f"{path} holds no clinical data to restore")
    _check_end(doc, path, out)
    return out


def _check_end(doc: etree._ElementTree, path: Path, out: list[_Restored]) -> None:
    """Refuse a file whose records do not end where the file says: a truncated file.

    The file names its chain head and record count (``backup_statement``), and older files
    the head's first 16 hex digits (``FileOID``)."""
    root = doc.getroot()
    last, count = out[-1].audit["hash"], len(out)
    stated = BACKUP_STATEMENT.search(root.get("Description") or "")
    oid = (root.get("FileOID") or "").rsplit(".", 1)[-1]
    if stated is not None:
        head, records = stated.group(1), int(stated.group(2))
    elif len(oid) == 16:
        head, records = oid, count
    else:
        raise ExportError(f"{path} does not name its chain head: not a stalwart backup")
    if records != count or not last.startswith(head):
        raise ExportError(
            f"{path} says its audit chain ends at record {records} with head {head[:16]}..., "
            f"but its records end at record {count} with head {last[:16]}...: records are "
            "missing from its end or were added (a truncated or altered file); restore from "
            "an unaltered backup"
        )


def _require_empty(engine: Engine) -> None:
    """Refuse a database with a row in any stalwart table (a bare database is empty)."""
    present = set(sa.inspect(engine).get_table_names())
    tables = [t for name, t in Base.metadata.tables.items() if name in present]
    with engine.connect() as conn:
        held = [t.name for t in tables if conn.scalar(sa.select(sa.func.count()).select_from(t))]
    if {TrialInfo.__tablename__, AuditRecord.__tablename__} & set(held):
        raise ConflictError(
            "the database already holds a trial: restore into a new, empty database"
        )
    if held:
        raise ConflictError(
            f"the database is not empty (rows in {', '.join(held)}): restore into a new, "
            "empty database"
        )


_ACCESS = {t.__tablename__ for t in ACCESS_TABLES}


def _flush(conn: sa.Connection, table: str, batch: list[dict[str, Any]]) -> None:
    if batch:
        conn.execute(sa.insert(table_of(table)), batch)
        batch.clear()


def _reset_sequences(conn: sa.Connection) -> None:
    """Move PostgreSQL id sequences past the restored ids."""
    if conn.dialect.name != "postgresql":
        return
    for model in AUDITED_TABLES:
        name = model.__tablename__
        pk = table_of(name).primary_key.columns.values()[0]
        if pk.autoincrement is False:
            continue
        conn.execute(
            sa.text(
                f"SELECT setval(pg_get_serial_sequence('{name}', '{pk.name}'), "
                f"COALESCE((SELECT MAX({pk.name}) FROM {name}), 1), "
                f"(SELECT MAX({pk.name}) FROM {name}) IS NOT NULL)"
            )
        )


@dataclass(frozen=True)
class OdmBackup:
    """An ODM export read and checked (schema, every record's hash), ready to restore."""

    path: Path
    records: list[_Restored]


def read_odm(path: Path) -> OdmBackup:
    """Read and check the ODM export at ``path`` without touching any database.

    Raises ``ExportError`` for a missing file or one that is not a valid, unaltered export.
    """
    return OdmBackup(path, _records(_parse(path), path))


def import_odm(path: Path, engine: Engine) -> RestoreSummary:
    """Restore the ODM export at ``path`` into the empty database of ``engine``.

    Raises ``ExportError`` for a file that is not a valid, unaltered stalwart ODM export and
    ``ConflictError`` when the database holds any row; nothing is written then.
    """
    return restore_odm(read_odm(path), engine)


def restore_odm(backup: OdmBackup, engine: Engine) -> RestoreSummary:
    """Restore a checked export (``read_odm``) into the empty database of ``engine``."""
    path, records = backup.path, backup.records
    _require_empty(engine)  # before the schema is touched: a refused database stays as it was
    create_schema(engine)
    counts: dict[str, int] = {}
    try:
        with transaction(engine) as session:
            conn = session.connection()
            batch: list[dict[str, Any]] = []
            batch_table = ""
            for rec in records:
                if rec.table in _ACCESS:
                    continue  # the file holds digests only: accounts get new passwords
                if rec.action == "INSERT":
                    if rec.table != batch_table:
                        _flush(conn, batch_table, batch)
                        batch_table = rec.table
                    batch.append(rec.values)
                    counts[rec.table] = counts.get(rec.table, 0) + 1
                    continue
                _flush(conn, batch_table, batch)
                table = table_of(rec.table)
                pk = table.primary_key.columns.values()[0]
                conn.execute(sa.update(table).where(pk == rec.record_id).values(**rec.values))
            _flush(conn, batch_table, batch)
            audit = [r.audit for r in records]
            for start in range(0, len(audit), 5000):
                conn.execute(sa.insert(table_of("audit_record")), audit[start : start + 5000])
            head = audit[-1]
            conn.execute(
                sa.insert(table_of("audit_head")),
                [{"id": 1, "sequence": head["sequence"], "hash": head["hash"]}],
            )
            _reset_sequences(conn)
    except SQLAlchemyError as exc:
        raise ExportError(f"cannot restore {path}: {exc}") from None
    return RestoreSummary(len(records), counts, records[-1].audit["hash"])
