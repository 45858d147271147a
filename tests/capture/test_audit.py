"""The hash-chained audit trail: a clean trial verifies; every kind of tampering is found."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from stalwart.capture.ae_form import AeDetails
from stalwart.capture.audit import GENESIS_HASH, data_sha256, verify_audit
from stalwart.capture.db import open_engine
from stalwart.capture.enrolment import Allocation
from stalwart.capture.service import CaptureService
from stalwart.capture.tables import AUDITED_TABLES, AuditHead, AuditRecord, Base, LabResult
from stalwart.errors import ValidationError
from stalwart.protocol.load import LoadedProtocol, parse_protocol

D = dt.date
DAY = dt.timedelta(days=1)
RAND = D(2006, 1, 5)
TODAY = D(2009, 3, 1)
Enrol = Callable[..., Allocation]


# -- helpers ---------------------------------------------------------------------------------------
def _unlock_audit(engine: Engine) -> None:
    """Remove the append-only guard, as an attacker with DDL rights would."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS audit_record_no_update")
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS audit_record_no_delete")
        else:
            conn.exec_driver_sql(
                "ALTER TABLE audit_record DISABLE TRIGGER audit_record_append_only"
            )


def _sql(engine: Engine, statement: str, **params: Any) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(statement), params)


def _record_hash(r: dict[str, Any]) -> str:
    """The documented record hash, recomputed independently of the code under test."""
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
    content = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(content.encode("ascii")).hexdigest()


def _records(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(AuditRecord.__table__).order_by(AuditRecord.sequence))
        return [dict(r._mapping) for r in rows]


def _seq_of(engine: Engine, table: str, record_id: int) -> int:
    with engine.connect() as conn:
        seq = conn.scalar(
            sa.select(sa.func.max(AuditRecord.sequence)).where(
                AuditRecord.table_name == table, AuditRecord.record_id == record_id
            )
        )
    assert seq is not None
    return int(seq)


def _populate(svc: CaptureService, enrol: Enrol) -> dict[str, int]:
    """Two participants with visits, labs, an AE and an event; returns some row ids."""
    a = enrol(svc, "US01")
    b = enrol(svc, "GB01")
    visit = svc.record_visit(a.usubjid, "ENTRY", RAND, {"CD4": 510, "HIVRNA": "<50"}, "n")
    svc.record_visit(a.usubjid, "WK04", RAND + 28 * DAY, {"CD4": 555, "HIVRNA": 1500}, "n")
    svc.record_visit(b.usubjid, "ENTRY", RAND, {"CD4": 420, "HIVRNA": 30000}, "n")
    ae = svc.report_adverse_event(
        a.usubjid,
        "Fever",
        2,
        RAND + DAY,
        None,
        "POSSIBLE",
        False,
        "d",
        AeDetails("fever", "RECOVERED/RESOLVED", "DOSE NOT CHANGED"),
    )
    ce = svc.report_clinical_event(b.usubjid, "TB", RAND + 40 * DAY, "d")
    with svc.engine.connect() as conn:
        lab = conn.scalar(
            sa.select(LabResult.id).where(LabResult.visit_id == visit, LabResult.test_code == "CD4")
        )
    assert lab is not None
    return {"visit": visit, "lab": int(lab), "ae": ae, "ce": ce}


# -- a clean trial ---------------------------------------------------------------------------------
def test_clean_trial_verifies(trial: CaptureService, engine: Engine, enrol: Enrol) -> None:
    _populate(trial, enrol)
    report = verify_audit(engine)
    assert report.ok and report.finding is None
    records = _records(engine)
    assert report.records == len(records)
    assert report.head_hash == records[-1]["hash"]
    with engine.connect() as conn:
        rows = sum(
            conn.scalar(sa.select(sa.func.count()).select_from(t)) or 0 for t in AUDITED_TABLES
        )
        head = conn.execute(sa.select(AuditHead.sequence, AuditHead.hash)).one()
    assert report.rows == rows
    assert tuple(head) == (len(records), records[-1]["hash"])


def test_chain_links_and_hashes(trial: CaptureService, engine: Engine, enrol: Enrol) -> None:
    _populate(trial, enrol)
    records = _records(engine)
    assert [r["sequence"] for r in records] == list(range(1, len(records) + 1))
    prev = GENESIS_HASH
    for r in records:
        assert r["prev_hash"] == prev
        assert r["hash"] == _record_hash(r)
        prev = r["hash"]
    assert records[0]["table_name"] == "trial" and records[0]["action"] == "INSERT"


def test_empty_database_verifies(engine: Engine) -> None:
    report = verify_audit(engine)
    assert report.ok and (report.records, report.rows, report.head_hash) == (0, 0, GENESIS_HASH)


# -- tampering -------------------------------------------------------------------------------------
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]


def _two_site_text(packaged_text: str) -> str:
    text = re.sub(
        r'\[\[sites\]\]\ncode = "(?!GB01)[A-Z0-9]+"\nname = "[^"]*"\ncountry = "[A-Z]{3}"\n\n',
        "",
        packaged_text,
    )
    return text.replace("list_length_per_stratum = 300", "list_length_per_stratum = 24")


@pytest.fixture(scope="module")
def two_sites(packaged_text: str) -> LoadedProtocol:
    """STALWART at US01 and GB01 with short lists: a small chain, quick to verify."""
    loaded = parse_protocol(_two_site_text(packaged_text), "two sites")
    assert [s.code for s in loaded.protocol.sites] == ["US01", "GB01"]
    return loaded


@dataclass
class Small:
    """A small trial with data that verifies, and the ids of some of its rows."""

    engine: Engine
    ids: dict[str, int]


Dump = dict[str, list[tuple[Any, ...]]]


def _dump(engine: Engine) -> Dump:
    """Every row of every table, in key order."""
    with engine.connect() as conn:
        return {
            t.name: [tuple(r) for r in conn.execute(sa.select(t).order_by(*t.primary_key))]
            for t in Base.metadata.sorted_tables
        }


def _restore(engine: Engine, dump: Dump) -> None:
    """Put every table back as dumped (children deleted first, parents inserted first)."""
    tables = Base.metadata.sorted_tables
    with engine.begin() as conn:
        for t in reversed(tables):
            conn.execute(sa.delete(t))
        for t in tables:
            if dump[t.name]:
                keys = [c.key for c in t.columns]
                conn.execute(sa.insert(t), [dict(zip(keys, r, strict=True)) for r in dump[t.name]])


@pytest.fixture(scope="module", params=BACKENDS)
def small_world(
    request: pytest.FixtureRequest, databases: Any, two_sites: LoadedProtocol, enrol: Enrol
) -> Iterator[tuple[Small, Dump]]:
    """One small trial per backend for all tampering tests: each test's damage is undone."""
    url = databases.new(request.param, two_sites)
    engine = open_engine(url)
    ids = _populate(CaptureService.open(engine, today=lambda: TODAY), enrol)
    _unlock_audit(engine)
    yield Small(engine, ids), _dump(engine)
    engine.dispose()
    databases.drop(url)


@pytest.fixture()
def small(small_world: tuple[Small, Dump]) -> Iterator[Small]:
    world, dump = small_world
    assert verify_audit(world.engine).ok  # the tampering below is the only fault
    yield world
    _restore(world.engine, dump)
    assert _dump(world.engine) == dump


def test_altered_record_data(small: Small) -> None:
    engine, ids = small.engine, small.ids
    seq = _seq_of(engine, "lab_result", ids["lab"])
    _unlock_audit(engine)
    _sql(
        engine,
        "UPDATE audit_record SET data = replace(data, '510.0', '51.0') WHERE sequence = :s",
        s=seq,
    )
    f = verify_audit(engine).finding
    assert f is not None
    assert (f.sequence, f.table, f.record_id) == (seq, "lab_result", ids["lab"])
    assert "content does not match its hash (the record was altered)" in f.message


def test_altered_record_with_recomputed_hash(small: Small) -> None:
    engine, ids = small.engine, small.ids
    seq = _seq_of(engine, "lab_result", ids["lab"])
    record = next(r for r in _records(engine) if r["sequence"] == seq)
    record["data"] = record["data"].replace("510.0", "51.0")
    _unlock_audit(engine)
    _sql(
        engine,
        "UPDATE audit_record SET data = :d, hash = :h WHERE sequence = :s",
        d=record["data"],
        h=_record_hash(record),
        s=seq,
    )
    f = verify_audit(engine).finding
    assert f is not None
    assert f.sequence == seq + 1
    assert f"prev_hash does not match the hash of record {seq}" in f.message


@pytest.mark.parametrize("column", ["actor", "action", "table_name", "recorded_at", "reason"])
def test_altered_record_metadata(small: Small, column: str) -> None:
    engine, ids = small.engine, small.ids
    seq = _seq_of(engine, "adverse_event", ids["ae"])
    _unlock_audit(engine)
    _sql(engine, f"UPDATE audit_record SET {column} = 'forged' WHERE sequence = :s", s=seq)
    f = verify_audit(engine).finding
    assert f is not None and f.sequence == seq
    assert "the record was altered" in f.message


def test_deleted_record_in_the_middle(small: Small) -> None:
    engine, ids = small.engine, small.ids
    seq = _seq_of(engine, "lab_result", ids["lab"])
    _unlock_audit(engine)
    _sql(engine, "DELETE FROM audit_record WHERE sequence = :s", s=seq)
    f = verify_audit(engine).finding
    assert f is not None
    assert f.sequence == seq + 1
    assert f"sequence gap, expected record {seq}" in f.message


def test_deleted_last_record(small: Small) -> None:
    engine = small.engine
    last = len(_records(engine))
    _unlock_audit(engine)
    _sql(engine, "DELETE FROM audit_record WHERE sequence = :s", s=last)
    report = verify_audit(engine)
    assert report.ok is False
    assert report.finding is not None and report.finding.sequence == last - 1
    assert f"the chain head says record {last} but the chain ends at record {last - 1}" in (
        report.finding.message
    )


def test_deleted_last_record_and_head_rewound(small: Small) -> None:
    engine = small.engine
    """Removing the last record and rewinding the head hides the record, but not its row."""
    records = _records(engine)
    last = records[-1]
    _unlock_audit(engine)
    _sql(engine, "DELETE FROM audit_record WHERE sequence = :s", s=last["sequence"])
    _sql(
        engine,
        "UPDATE audit_head SET sequence = :s, hash = :h",
        s=last["sequence"] - 1,
        h=records[-2]["hash"],
    )
    f = verify_audit(engine).finding
    assert f is not None
    assert (f.table, f.record_id) == (last["table_name"], last["record_id"])
    assert "has no audit record" in f.message


def test_forged_record_appended(small: Small) -> None:
    engine = small.engine
    records = _records(engine)
    forged = dict(
        records[-1], sequence=len(records) + 1, prev_hash=records[-1]["hash"], actor="mallory"
    )
    forged["hash"] = _record_hash(forged)
    with engine.begin() as conn:
        conn.execute(sa.insert(AuditRecord.__table__), [forged])
    f = verify_audit(engine).finding
    assert f is not None and f.sequence == len(records) + 1
    assert "chain head says record" in f.message


def test_forged_record_with_a_bad_hash(small: Small) -> None:
    engine = small.engine
    records = _records(engine)
    forged = dict(
        records[-1], sequence=len(records) + 1, prev_hash=records[-1]["hash"], hash="f" * 64
    )
    with engine.begin() as conn:
        conn.execute(sa.insert(AuditRecord.__table__), [forged])
    f = verify_audit(engine).finding
    assert f is not None and f.sequence == len(records) + 1
    assert "the record was altered" in f.message


def test_forged_record_and_head_for_a_row_that_does_not_exist(small: Small) -> None:
    engine = small.engine
    records = _records(engine)
    forged = dict(
        records[-1],
        sequence=len(records) + 1,
        prev_hash=records[-1]["hash"],
        table_name="adverse_event",
        record_id=9999,
    )
    forged["hash"] = _record_hash(forged)
    with engine.begin() as conn:
        conn.execute(sa.insert(AuditRecord.__table__), [forged])
        conn.execute(sa.update(AuditHead).values(sequence=forged["sequence"], hash=forged["hash"]))
    f = verify_audit(engine).finding
    assert f is not None
    assert (f.sequence, f.table, f.record_id) == (forged["sequence"], "adverse_event", 9999)
    assert "the row was deleted" in f.message


def test_altered_head(small: Small) -> None:
    engine = small.engine
    _sql(engine, "UPDATE audit_head SET hash = :h", h="0" * 64)
    f = verify_audit(engine).finding
    assert f is not None and "the head was altered" in f.message


def test_data_row_changed_behind_the_service(small: Small) -> None:
    engine, ids = small.engine, small.ids
    seq = _seq_of(engine, "lab_result", ids["lab"])
    _sql(engine, "UPDATE lab_result SET value = 999 WHERE id = :i", i=ids["lab"])
    f = verify_audit(engine).finding
    assert f is not None
    assert (f.sequence, f.table, f.record_id) == (seq, "lab_result", ids["lab"])
    assert "does not match the stored row: value: audit 510.0 vs data 999.0" in f.message


def test_allocation_swapped_behind_the_service(small: Small) -> None:
    engine = small.engine
    with engine.connect() as conn:
        slot_id, arm = conn.execute(
            sa.text(
                "SELECT id, arm FROM allocation_slot WHERE participant_id IS NULL "
                "ORDER BY id LIMIT 1"
            )
        ).one()
    other = "NOTHER" if arm != "NOTHER" else "IL2"
    _sql(engine, "UPDATE allocation_slot SET arm = :a WHERE id = :i", a=other, i=slot_id)
    f = verify_audit(engine).finding
    assert f is not None and (f.table, f.record_id) == ("allocation_slot", slot_id)
    assert f"arm: audit '{arm}' vs data '{other}'" in f.message


def test_data_row_inserted_without_audit(small: Small) -> None:
    engine = small.engine
    with engine.begin() as conn:
        pid = conn.scalar(sa.text("SELECT min(id) FROM participant"))
        new_id = conn.execute(
            sa.text(
                "INSERT INTO adverse_event (participant_id, term, grade, start_date, related, "
                "serious) VALUES (:p, 'Rash', 1, '2006-02-01', 'UNLIKELY', false) RETURNING id"
            ),
            {"p": pid},
        ).scalar_one()
    f = verify_audit(engine).finding
    assert f is not None
    assert (f.sequence, f.table, f.record_id) == (None, "adverse_event", new_id)
    assert "has no audit record (written behind the service's back)" in f.message


def test_data_row_deleted(small: Small) -> None:
    engine, ids = small.engine, small.ids
    seq = _seq_of(engine, "clinical_event", ids["ce"])
    _sql(engine, "DELETE FROM clinical_event WHERE id = :i", i=ids["ce"])
    f = verify_audit(engine).finding
    assert f is not None
    assert (f.sequence, f.table, f.record_id) == (seq, "clinical_event", ids["ce"])
    assert "the row was deleted" in f.message


# -- data_sha256 -----------------------------------------------------------------------------------
def _scripted_writes(svc: CaptureService, enrol: Enrol) -> None:
    _populate(svc, enrol)
    c = enrol(svc, "US01", arm=None, sex="F", cd4=333.25)
    svc.record_visit(
        c.usubjid, "ENTRY", RAND, {"CD4": 0.1 + 0.2, "CD4PCT": 12.5, "HIVRNA": 123456789 / 7}, "n"
    )
    svc.report_adverse_event(
        c.usubjid,
        "Rash",
        3,
        RAND + DAY,
        RAND + 9 * DAY,
        "DEFINITE",
        True,
        "d",
        AeDetails("rash", "RECOVERED/RESOLVED", "DRUG INTERRUPTED", ("AESHOSP",)),
    )
    svc.report_clinical_event(c.usubjid, "DEATH", RAND + 50 * DAY, "d")
    svc.record_disposition(c.usubjid, "DEATH", RAND + 50 * DAY, "d")


@pytest.mark.postgres
def test_data_sha256_same_on_sqlite_and_postgresql(
    make_engine: Callable[..., Engine], packaged: LoadedProtocol, enrol: Enrol
) -> None:
    digests = []
    for backend in ("sqlite", "postgresql"):
        engine = make_engine(backend, packaged)
        svc = CaptureService.open(engine, today=lambda: TODAY)
        _scripted_writes(svc, enrol)
        assert verify_audit(engine).ok
        digests.append(data_sha256(engine))
    assert digests[0] == digests[1]
    assert re.fullmatch(r"[0-9a-f]{64}", digests[0])


def test_data_sha256_unchanged_by_a_failed_write_changed_by_a_good_one(
    trial: CaptureService, engine: Engine, enrol: Enrol
) -> None:
    a = enrol(trial)
    before = data_sha256(engine)
    assert data_sha256(engine) == before
    with pytest.raises(ValidationError):
        trial.record_visit(a.usubjid, "ENTRY", RAND, {"CD4": -5, "HIVRNA": 100}, "n")
    assert data_sha256(engine) == before
    trial.record_visit(a.usubjid, "ENTRY", RAND, {"CD4": 5, "HIVRNA": 100}, "n")
    assert data_sha256(engine) != before


def test_data_sha256_ignores_audit_timestamps(small: Small) -> None:
    engine, ids = small.engine, small.ids
    before = data_sha256(engine)
    _unlock_audit(engine)
    _sql(engine, "UPDATE audit_record SET recorded_at = '1999-01-01T00:00:00'")
    assert data_sha256(engine) == before
    _sql(engine, "UPDATE lab_result SET value = value + 1 WHERE id = :i", i=ids["lab"])
    assert data_sha256(engine) != before


# -- properties ------------------------------------------------------------------------------------
TERMS = ["Fever", "Nausea", "Rash", "Other"]
EVENTS = ["PCP", "TB", "KS", "HZOSTER"]
ops = st.lists(
    st.one_of(
        st.tuples(st.just("enrol"), st.sampled_from(["US01", "GB01"]), st.booleans()),
        st.tuples(
            st.just("visit"),
            st.integers(0, 30),
            st.floats(0, 5000),
            st.one_of(st.just("<50"), st.floats(50, 1e8)),
            st.integers(-7, 7),
        ),
        st.tuples(
            st.just("ae"),
            st.integers(0, 30),
            st.sampled_from(TERMS),
            st.integers(1, 5),
            st.integers(0, 400),
            st.booleans(),
        ),
        st.tuples(
            st.just("event"), st.integers(0, 30), st.sampled_from(EVENTS), st.integers(0, 400)
        ),
    ),
    max_size=14,
)


def _play(svc: CaptureService, steps: list[tuple[Any, ...]], enrol: Enrol) -> int:
    """Apply valid writes; returns the number of slot updates (randomizations)."""
    people: list[Allocation] = []
    done: dict[str, int] = {}
    randomized = 0
    for step in steps:
        kind = step[0]
        if kind == "enrol":
            n = len(people) + len(done) + randomized + 1
            if step[2]:
                people.append(
                    enrol(
                        svc,
                        step[1],
                        f"P{n:03d}",
                        randomized=RAND + n * DAY,
                        screened=RAND + (n - 1) * DAY,
                    )
                )
                randomized += 1
            else:
                svc.screen(
                    step[1],
                    f"X{n:03d}",
                    RAND,
                    {
                        "age": 16,
                        "sex": "F",
                        "hiv_positive": True,
                        "cd4": 250.0,
                        "hiv_rna": 100.0,
                        "on_continuous_art": False,
                        "arv_within_12_months": False,
                        "prior_il2": False,
                        "haart_access": True,
                        "prior_aids": False,
                        "immunomodulator_8_weeks": False,
                    },
                    "n",
                )
                done[f"X{n:03d}"] = 0
            continue
        if not people:
            continue
        p = people[step[1] % len(people)]
        if kind == "visit":
            k = done.get(p.usubjid, 0)
            if k >= len(svc.protocol.visits):
                continue
            planned = svc.protocol.visits[k]
            offset = max(-planned.window_before, min(planned.window_after, step[4]))
            day = p.randomization_date + (planned.day + offset) * DAY
            svc.record_visit(p.usubjid, planned.code, day, {"CD4": step[2], "HIVRNA": step[3]}, "n")
            done[p.usubjid] = k + 1
        elif kind == "ae":
            start = p.randomization_date + step[4] * DAY
            criteria = ("AESHOSP",) if step[5] else ()
            details = AeDetails("event", "RECOVERED/RESOLVED", "DOSE NOT CHANGED", criteria)
            svc.report_adverse_event(
                p.usubjid, step[2], step[3], start, None, "UNLIKELY", step[5], "n", details
            )
        else:
            svc.report_clinical_event(p.usubjid, step[2], p.randomization_date + step[3] * DAY, "n")
    return randomized


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=ops, data=st.data())
def test_random_writes_verify_and_any_byte_change_is_found(
    databases: Any, two_sites: LoadedProtocol, enrol: Enrol, steps: list[Any], data: st.DataObject
) -> None:
    url = databases.new("sqlite", two_sites)
    engine = open_engine(url)
    try:
        svc = CaptureService.open(engine, today=lambda: TODAY)
        randomized = _play(svc, steps, enrol)
        report = verify_audit(engine)
        assert report.ok, report.finding
        # one record per inserted row, plus one per allocation slot given out
        assert report.records == report.rows + randomized

        records = _records(engine)
        target = data.draw(st.sampled_from(records), label="record")
        text = target["data"]
        pos = data.draw(st.integers(0, len(text) - 1), label="position")
        new = data.draw(
            st.characters(min_codepoint=32, max_codepoint=126).filter(lambda c: c != text[pos]),
            label="new byte",
        )
        _unlock_audit(engine)
        _sql(
            engine,
            "UPDATE audit_record SET data = :d WHERE sequence = :s",
            d=text[:pos] + new + text[pos + 1 :],
            s=target["sequence"],
        )
        finding = verify_audit(engine).finding
        assert finding is not None
        assert finding.sequence == target["sequence"]
        assert (finding.table, finding.record_id) == (target["table_name"], target["record_id"])
    finally:
        engine.dispose()
        databases.drop(url)
