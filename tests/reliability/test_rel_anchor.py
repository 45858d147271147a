"""Attacks on the audit trail by someone with full write access to the database, against signed
checkpoints kept outside it, on SQLite and PostgreSQL.

Each attack leaves a database that ``stalwart audit verify`` alone passes (the attacker rehashed
the chain, re-pointed its head and kept the data rows in step: that is checked first, so each
test shows a real attack) and that ``audit verify --checkpoints DIR --public-key FILE`` refuses
with exit 1, naming the checkpoint the chain contradicts. The attacks: a value rewritten in a
data row and its audit record with every later record rehashed; an audit record's actor and time
rewritten; the last K records rolled back with their data rows and the head (K = 1, 40, 1200);
the append-only trigger disabled and a record deleted, the rest renumbered and rehashed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from stalwart.capture.service import CaptureService
from stalwart.capture.tables import CHAINED_TABLES, AuditRecord, LabResult
from stalwart.capture.users import UserStore
from stalwart.cli import app

runner = CliRunner()
PASSWORD = "a long anchored password"


@dataclass
class Anchored:
    """A trial with a signed checkpoint of its whole chain: URL, engine, key files, folder."""

    url: str
    engine: Engine
    public: Path
    private: Path
    folder: Path
    lab: int


def _flat(text: str) -> str:
    return " ".join(text.split())


def _cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result.exit_code, _flat(result.output)


def _verify(a: Anchored, anchored: bool = True) -> tuple[int, str]:
    extra = ["--checkpoints", str(a.folder), "--public-key", str(a.public)] if anchored else []
    return _cli("audit", "verify", "--database", a.url, *extra)


def _sql(engine: Engine, statement: str, **params: Any) -> Any:
    with engine.begin() as conn:
        result = conn.execute(sa.text(statement), params)
        return result.scalar() if result.returns_rows else None


def _unlock(engine: Engine) -> None:
    """Remove the append-only guard, as a DBA or anyone with DDL rights can."""
    if engine.dialect.name == "sqlite":
        _sql(engine, "DROP TRIGGER IF EXISTS audit_record_no_update")
        _sql(engine, "DROP TRIGGER IF EXISTS audit_record_no_delete")
    else:
        _sql(engine, "ALTER TABLE audit_record DISABLE TRIGGER audit_record_append_only")


def _hash(r: dict[str, Any]) -> str:
    """The documented record hash, computed independently of the code under test."""
    fields = [
        r["sequence"],
        r["recorded_at"],
        r["actor"],
        r["action"],
        r["table_name"],
        r["record_id"],
        r["data"],
        r["reason"],
        r["prev_hash"],
    ]
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _records(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(AuditRecord.__table__).order_by(AuditRecord.sequence))
        return [dict(r._mapping) for r in rows]


def _rewrite(engine: Engine, records: list[dict[str, Any]], start: int) -> None:
    """Store ``records`` from index ``start`` on, renumbered and rehashed, and re-point the head."""
    _unlock(engine)
    prev = records[start - 1]["hash"] if start > 0 else "0" * 64
    with engine.begin() as conn:
        conn.execute(
            sa.text("DELETE FROM audit_record WHERE sequence > :s"), {"s": start}
        )  # every later record is written again
        for i, rec in enumerate(records[start:], start=start + 1):
            rec = dict(rec, sequence=i, prev_hash=prev)
            rec["hash"] = prev = _hash(rec)
            conn.execute(sa.insert(AuditRecord.__table__), [rec])
        conn.execute(
            sa.text("UPDATE audit_head SET sequence = :s, hash = :h"),
            {"s": start + len(records[start:]), "h": prev},
        )


def _typed(table: sa.Table, data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for col in table.columns:
        value = data.get(col.key)
        if value is not None and isinstance(col.type, sa.DateTime):
            value = dt.datetime.fromisoformat(value)
        elif value is not None and isinstance(col.type, sa.Date):
            value = dt.date.fromisoformat(value)
        out[col.key] = value
    return out


def _roll_back(engine: Engine, k: int) -> None:
    """Undo the last ``k`` audit records and the writes they record; re-point the head."""
    records = _records(engine)
    keep = records[:-k]
    tables = {t.__tablename__: t.__table__ for t in CHAINED_TABLES}
    _unlock(engine)
    with engine.begin() as conn:
        for index in range(len(records) - 1, len(keep) - 1, -1):
            rec = records[index]
            table = tables[rec["table_name"]]
            pk = next(iter(table.primary_key.columns))
            where = pk == rec["record_id"]
            key = (rec["table_name"], rec["record_id"])
            earlier = [r for r in records[:index] if (r["table_name"], r["record_id"]) == key]
            if rec["action"] == "INSERT" or not earlier:
                conn.execute(sa.delete(table).where(where))
            else:
                before = _typed(table, json.loads(earlier[-1]["data"]))
                conn.execute(sa.update(table).where(where).values(before))
        conn.execute(sa.text("DELETE FROM audit_record WHERE sequence > :s"), {"s": len(keep)})
        conn.execute(
            sa.text("UPDATE audit_head SET sequence = :s, hash = :h"),
            {"s": len(keep), "h": keep[-1]["hash"]},
        )


@pytest.fixture()
def anchored(
    trial: CaptureService, engine: Engine, db_url: str, enrol: Any, tmp_path: Path
) -> Anchored:
    """Three participants with visits, then a checkpoint of the whole chain."""
    first = enrol(trial, "US01")
    enrol(trial, "GB01")
    enrol(trial, "US01")
    day = dt.timedelta(days=1)
    rand = first.randomization_date
    visit = trial.record_visit(first.usubjid, "ENTRY", rand, {"CD4": 510, "HIVRNA": "<50"}, "nurse")
    trial.record_visit(
        first.usubjid, "WK04", rand + 28 * day, {"CD4": 555, "HIVRNA": 1500}, "nurse"
    )
    users = UserStore(engine)
    users.add_user("boss", PASSWORD, "admin", "cli")
    users.issue_token(users.authenticate("boss", PASSWORD))
    with engine.connect() as conn:
        lab = conn.scalar(
            sa.select(LabResult.id).where(LabResult.visit_id == visit, LabResult.test_code == "CD4")
        )
    a = Anchored(
        db_url, engine, tmp_path / "cp.pub", tmp_path / "cp.key", tmp_path / "cps", int(lab or 0)
    )
    code, out = _cli("audit", "keygen", "--private", str(a.private), "--public", str(a.public))
    assert code == 0, out
    code, out = _cli(
        "audit", "checkpoint", "--database", db_url, "--key", str(a.private), "--out", str(a.folder)
    )
    assert code == 0 and "wrote" in out, out
    code, out = _verify(a)
    assert code == 0 and "agrees with 1 signed checkpoints" in out, out
    return a


def _refused(a: Anchored, *says: str) -> None:
    """Plain verify passes (the attack is real); verify with the checkpoints fails naming one."""
    code, out = _verify(a, anchored=False)
    assert code == 0, out
    code, out = _verify(a)
    assert code == 1, out
    assert "audit verification failed: checkpoint checkpoint-" in out, out
    assert "is contradicted" in out, out
    for text in says:
        assert text in out, (text, out)


def test_rewritten_value_with_rehashed_chain_is_refused(anchored: Anchored) -> None:
    a = anchored
    records = _records(a.engine)
    at = max(
        i
        for i, r in enumerate(records)
        if (r["table_name"], r["record_id"]) == ("lab_result", a.lab)
    )
    records[at]["data"] = records[at]["data"].replace("510.0", "51.0")
    assert "51.0" in records[at]["data"]
    _sql(a.engine, "UPDATE lab_result SET value = 51 WHERE id = :i", i=a.lab)
    _rewrite(a.engine, records, at)
    _refused(a, "altered, inserted or removed and the chain rehashed")


def test_rewritten_actor_and_time_are_refused(anchored: Anchored) -> None:
    a = anchored
    records = _records(a.engine)
    at = len(records) // 2
    records[at]["actor"] = "someone-else"
    records[at]["recorded_at"] = "2006-01-01T00:00:00+00:00"
    _rewrite(a.engine, records, at)
    _refused(a, f"record {len(records)} now hashes to")


def test_deleted_record_with_trigger_disabled_is_refused(anchored: Anchored) -> None:
    a = anchored
    records = _records(a.engine)
    # a record that is not its row's last (the row still matches its last record)
    last = {(r["table_name"], r["record_id"]): i for i, r in enumerate(records)}
    at = next(i for i, r in enumerate(records) if last[(r["table_name"], r["record_id"])] > i)
    del records[at]
    _rewrite(a.engine, records, at)
    _refused(a, "the chain ends at record")


@pytest.mark.parametrize("k", [1, 40, 1200])
def test_rolled_back_tail_with_data_and_head_is_refused(anchored: Anchored, k: int) -> None:
    a = anchored
    total = len(_records(a.engine))
    assert total > k
    _roll_back(a.engine, k)
    _refused(a, f"the chain ends at record {total - k}", f"records {total - k + 1} to {total}")


def test_checkpoint_files_are_checked_and_a_rewritten_chain_is_not_signed(
    anchored: Anchored, tmp_path: Path
) -> None:
    a = anchored
    (path,) = a.folder.glob("*.json")
    doc = json.loads(path.read_text())
    doc["checkpoint"]["head_hash"] = "f" * 64
    forged = tmp_path / "forged"
    forged.mkdir()
    (forged / path.name).write_text(json.dumps(doc))
    code, out = _cli(
        "audit", "verify", "--database", a.url, "--checkpoints", str(forged),
        "--public-key", str(a.public),
    )  # fmt: skip
    assert code == 1 and "signature does not verify" in out, out
    # another key's public half does not accept these checkpoints either
    other = tmp_path / "other.pub"
    _cli("audit", "keygen", "--private", str(tmp_path / "other.key"), "--public", str(other))
    code, out = _cli(
        "audit", "verify", "--database", a.url, "--checkpoints", str(a.folder),
        "--public-key", str(other),
    )  # fmt: skip
    assert code == 1 and "signed with another key" in out, out
    # roll back and try to have the rolled-back chain signed: refused, nothing written
    _roll_back(a.engine, 3)
    code, out = _cli(
        "audit", "checkpoint", "--database", a.url, "--key", str(a.private),
        "--out", str(a.folder),
    )  # fmt: skip
    assert code == 1 and "records were removed" in out, out
    assert len(list(a.folder.glob("*.json"))) == 1


def _refused_at_once(a: Anchored, *says: str) -> None:
    """Both verifications fail, naming the row: the chain covers who may act."""
    for anchored in (False, True):
        code, out = _verify(a, anchored)
        assert code == 1, out
        for text in says:
            assert text in out, (text, out)


def test_a_planted_token_is_refused(anchored: Anchored) -> None:
    a = anchored
    user = _sql(a.engine, "SELECT id FROM app_user WHERE username = 'boss'")
    token = _sql(
        a.engine,
        "INSERT INTO auth_token (user_id, kind, token_sha256, created_at, expires_at, revoked) "
        "VALUES (:u, 'api', :h, '2026-01-01T00:00:00+00:00', '2036-01-01T00:00:00+00:00', "
        "false) RETURNING id",
        u=user,
        h=hashlib.sha256(b"mallory").hexdigest(),
    )
    _refused_at_once(a, f"auth_token id {token} has no audit record")


def test_a_planted_token_with_a_forged_record_in_the_chain_is_refused(anchored: Anchored) -> None:
    """The token's audit record forged into the middle of the chain, everything rehashed."""
    a = anchored
    records = _records(a.engine)
    issued = next(r for r in records if r["table_name"] == "auth_token")
    token = _sql(
        a.engine,
        "INSERT INTO auth_token (user_id, kind, token_sha256, created_at, expires_at, revoked) "
        "VALUES (:u, 'api', :h, '2026-01-01T00:00:00+00:00', '2036-01-01T00:00:00+00:00', "
        "false) RETURNING id",
        u=json.loads(issued["data"])["user_id"],
        h=hashlib.sha256(b"mallory").hexdigest(),
    )
    with a.engine.connect() as conn:
        row = dict(
            conn.execute(sa.text("SELECT * FROM auth_token WHERE id = :i"), {"i": token})
            .one()
            ._mapping
        )
    row["token_sha256"] = hashlib.sha256(row["token_sha256"].encode()).hexdigest()[:16]
    row["csrf_token"] = None
    row["revoked"] = bool(row["revoked"])
    forged = dict(
        issued, record_id=token, data=json.dumps(row, sort_keys=True, separators=(",", ":"))
    )
    at = records.index(issued)  # before the real token: inside the signed history
    records.insert(at, forged)
    _rewrite(a.engine, records, at)
    _refused(a, "the chain rehashed")


def test_a_replaced_credential_is_refused(anchored: Anchored) -> None:
    a = anchored
    user = _sql(a.engine, "SELECT id FROM app_user WHERE username = 'boss'")
    _sql(
        a.engine,
        "UPDATE user_credential SET password_hash = :h WHERE user_id = :u",
        h="$argon2id$v=19$m=65536,t=3,p=4$bWFsbG9yeQ$mallory",
        u=user,
    )
    _refused_at_once(
        a, f"(user_credential id {user}) does not match the stored row", "password_hash"
    )
