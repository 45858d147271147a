"""Sealed allocation lists (``capture.sealing``), on SQLite and PostgreSQL: a dump of the
database shows no arm of an unassigned slot, randomization opens exactly the arm the seed's list
holds, and without the key, with another key, or with a sealed arm moved to another slot,
nothing is randomized."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from stalwart.capture.audit import verify_audit
from stalwart.capture.db import open_engine
from stalwart.capture.sealing import (
    ALLOCATION_KEY_ENV,
    SEALED,
    generate_allocation_key,
    load_allocation_key,
)
from stalwart.capture.service import CaptureService, initialize_trial
from stalwart.capture.tables import AllocationSlot, Base
from stalwart.capture.users import UserStore
from stalwart.cli import app
from stalwart.errors import ConfigurationError
from stalwart.protocol.load import LoadedProtocol
from stalwart.randomization.allocation import allocation_lists
from stalwart.web.app import create_app

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
SEED = 424242
PASSWORD = "a long test password"
ARMS = re.compile(r'"arm":"(?!SEALED)')


def _dump(engine: Engine) -> str:
    """Every row of every table but the protocol's own text (which names the arms), as a
    database dump or a DBA's read shows them."""
    with engine.connect() as conn:
        return "\n".join(
            repr(tuple(row))
            for table in Base.metadata.sorted_tables
            if table.name != "trial"
            for row in conn.execute(
                sa.select(table).where(table.c.table_name != "trial")
                if table.name == "audit_record"
                else sa.select(table)
            )
        )


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_sealed_trial_hides_its_arms_and_randomizes_as_its_list_says(
    backend: str,
    make_engine: Any,
    packaged: LoadedProtocol,
    enrol: Any,
    tmp_path: Path,
    row_counts: Any,
) -> None:
    engine = make_engine(backend)
    key = generate_allocation_key(tmp_path / "allocation.key")
    initialize_trial(engine, packaged, SEED, actor="t", allocation_key=key)
    dump = _dump(engine)
    assert "IL2ART" not in dump and "NOTRT" not in dump and "'IL2'" not in dump
    assert not ARMS.search(dump)
    with engine.connect() as conn:
        arms = set(conn.scalars(sa.select(AllocationSlot.arm)))
    assert arms == {SEALED}

    # without the key, or with another key: refused, nothing written
    before = row_counts(engine)
    for opened in (None, generate_allocation_key(tmp_path / "other.key")):
        service = CaptureService.open(engine, allocation_key=opened)
        with pytest.raises(ConfigurationError, match=r"sealed|does not open"):
            enrol(service, "US01", f"US01-{'N' if opened is None else 'O'}")
        assert row_counts(engine)["participant"] == before["participant"]

    service = CaptureService.open(
        engine, allocation_key=load_allocation_key(str(tmp_path / "allocation.key"))
    )
    expected = [s.arm for s in allocation_lists(packaged.protocol, SEED)["site=GB01"]]
    got = [enrol(service, "GB01", f"GB01-{i:04d}").arm for i in range(1, 7)]
    assert got == expected[:6]
    assert verify_audit(engine).ok
    dump = _dump(engine)
    with engine.connect() as conn:
        free = conn.scalar(
            sa.select(sa.func.count())
            .select_from(AllocationSlot)
            .where(AllocationSlot.participant_id.is_(None), AllocationSlot.arm != SEALED)
        )
    assert free == 0  # opened slots are the assigned ones only

    # a sealed arm moved to another slot does not open there
    with engine.begin() as conn:
        _, second = conn.execute(
            sa.text(
                "SELECT sequence, sealed FROM sealed_arm WHERE stratum = 'site=US01' "
                "AND sequence IN (1, 2) ORDER BY sequence"
            )
        ).all()
        conn.execute(
            sa.text(
                "UPDATE sealed_arm SET sealed = :s WHERE stratum = 'site=US01' AND sequence = 1"
            ),
            {"s": second.sealed},
        )
    with pytest.raises(ConfigurationError, match="altered"):
        enrol(service, "US01", "US01-MOVED")


def test_init_seals_with_a_key_file_it_creates(tmp_path: Path) -> None:
    runner = CliRunner()
    url = f"sqlite:///{tmp_path / 'trial.db'}"
    key = tmp_path / "allocation.key"
    result = runner.invoke(app, ["init", "--database", url, "--allocation-key", str(key)])
    assert result.exit_code == 0, result.output
    assert key.stat().st_mode & 0o077 == 0
    engine = open_engine(url)
    try:
        with engine.connect() as conn:
            assert set(conn.scalars(sa.select(AllocationSlot.arm))) == {SEALED}
    finally:
        engine.dispose()


def _csrf(client: TestClient, page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(page).text)
    assert match is not None
    return match.group(1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_randomizing_without_the_right_key_is_503_naming_the_fix_and_writes_nothing(
    backend: str,
    make_engine: Any,
    packaged: LoadedProtocol,
    tmp_path: Path,
    row_counts: Any,
    eligible_answers: Any,
) -> None:
    engine = make_engine(backend)
    key = generate_allocation_key(tmp_path / "allocation.key")
    initialize_trial(engine, packaged, SEED, actor="t", allocation_key=key)
    hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    UserStore(engine, hasher).add_user("coord", PASSWORD, "site_coordinator", "t", site="US01")
    wrong = generate_allocation_key(tmp_path / "wrong.key")
    for k, (given, says) in enumerate(
        [(None, "started without the allocation key"), (wrong, "does not open slot")]
    ):
        with TestClient(create_app(engine, hasher=hasher, allocation_key=given)) as client:
            login = client.post("/api/token", json={"username": "coord", "password": PASSWORD})
            headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
            number = f"US01-K{k}"
            screened = client.post(
                "/api/screenings",
                headers=headers,
                json={
                    "site": "US01",
                    "screening_number": number,
                    "screening_date": "2006-01-02",
                    "answers": eligible_answers(),
                },
            )
            assert screened.status_code == 201, screened.text
            # a page session, and the consent the page needs before it randomizes
            form = {
                "username": "coord",
                "password": PASSWORD,
                "csrf_token": _csrf(client, "/login"),
            }
            assert client.post("/login", data=form, follow_redirects=False).status_code == 303
            form = {"randomization_date": "2006-01-05", "csrf_token": _csrf(client, "/worklist")}
            consent = {"consent_date": "2006-01-02", "csrf_token": form["csrf_token"]}
            client.post(f"/randomize/{number}/consent", data=consent)
            before = row_counts(engine)
            head = verify_audit(engine)
            refused = client.post(
                "/api/randomizations",
                headers=headers,
                json={
                    "screening_number": number,
                    "consent_date": "2006-01-02",
                    "randomization_date": "2006-01-05",
                },
            )
            assert refused.status_code == 503, refused.text
            error = refused.json()["error"]
            assert error["type"] == "AllocationKeyError"
            message = error["message"]
            assert says in message and "nothing was randomized" in message
            assert "--allocation-key FILE" in message and ALLOCATION_KEY_ENV in message
            # the page says the same, with the same status
            page = client.post(f"/randomize/{number}", data=form)
            assert page.status_code == 503 and says in page.text, page.text[-2000:]
            assert row_counts(engine) == before  # no participant, no slot taken, no audit
            assert verify_audit(engine).records == head.records

    # with the key, the same person is randomized
    with TestClient(create_app(engine, hasher=hasher, allocation_key=key)) as client:
        login = client.post("/api/token", json={"username": "coord", "password": PASSWORD})
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        done = client.post(
            "/api/randomizations",
            headers=headers,
            json={
                "screening_number": "US01-K0",
                "consent_date": "2006-01-02",
                "randomization_date": "2006-01-05",
            },
        )
        assert done.status_code == 201, done.text
