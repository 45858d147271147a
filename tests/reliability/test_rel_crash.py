"""kill -9 of ``stalwart serve`` in the middle of sustained writes loses no acknowledged write.

Several clients keep screening, randomizing and entering the entry visit of new people over
HTTP against a server of two uvicorn workers; after a few hundred acknowledged writes the whole
process group gets SIGKILL while requests are in flight. Then, on the same database (SQLite and
PostgreSQL): every write that got its 201 is there with what was sent, nothing was half written
(each randomization has its slot, each visit its results, the audit chain has exactly the records
of the rows present and verifies), and a restarted server takes the old tokens and finishes the
interrupted people's forms, leaving each stratum's list used without a gap.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import sqlalchemy as sa
from live_server import Databases, LiveServer, add_coordinators, bearer, cli
from sqlalchemy.engine import make_url

from stalwart.capture.audit import verify_audit
from stalwart.capture.db import open_engine
from stalwart.capture.tables import (
    AllocationSlot,
    LabResult,
    Participant,
    Screening,
    Site,
    Visit,
)
from stalwart.protocol.load import LoadedProtocol

SITES = ("US01", "GB01", "DE01", "TH01")
CLIENTS_PER_SITE = 2
KILL_AFTER = 250
"""Acknowledged writes before the kill."""
WORKERS = 2
SCREENED = dt.date(2024, 2, 1)
CONSENTED = SCREENED  # consent first, then the screening procedures (GCP): no deviation
RANDOMIZED = dt.date(2024, 2, 5)

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]


@dataclass
class Acks:
    """What the server acknowledged (201), and how the stream ended."""

    screenings: dict[str, str] = field(default_factory=dict)  # number -> site
    randomizations: dict[str, tuple[str, str]] = field(
        default_factory=dict
    )  # number -> usubjid, arm
    visits: dict[str, float] = field(default_factory=dict)  # usubjid -> CD4 sent
    refused: list[tuple[str, int, str]] = field(default_factory=list)  # not 201 while up
    cut_off: int = 0  # clients whose request died with the server
    in_flight: int = 0
    in_flight_at_kill: int = -1
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return len(self.screenings) + len(self.randomizations) + len(self.visits)


def _answers(answers: dict[str, object], cd4: float) -> dict[str, object]:
    return {**answers, "cd4": cd4}


async def _client(
    client: httpx.AsyncClient,
    k: int,
    site: str,
    headers: dict[str, str],
    answers: dict[str, object],
    acks: Acks,
) -> None:
    """Screen, randomize and enter the entry visit of one new person after another, until the
    server is gone (the request it dies under, or the next one, fails to connect)."""

    async def post(path: str, body: dict[str, Any]) -> httpx.Response:
        acks.in_flight += 1
        try:
            return await client.post(path, json=body, headers=headers)
        finally:
            acks.in_flight -= 1

    try:
        for j in itertools.count():
            number = f"K{k}-{j:04d}"
            cd4 = float(400 + (k * 1000 + j) % 500)
            r = await post(
                "/api/screenings",
                {
                    "site": site,
                    "screening_number": number,
                    "screening_date": SCREENED.isoformat(),
                    "answers": _answers(answers, cd4),
                },
            )
            if r.status_code != 201:
                acks.refused.append((number, r.status_code, r.text[:300]))
                return
            acks.screenings[number] = site
            r = await post(
                "/api/randomizations",
                {
                    "screening_number": number,
                    "consent_date": CONSENTED.isoformat(),
                    "randomization_date": RANDOMIZED.isoformat(),
                },
            )
            if r.status_code != 201:
                acks.refused.append((number, r.status_code, r.text[:300]))
                return
            usubjid, arm = str(r.json()["usubjid"]), str(r.json()["arm"])
            acks.randomizations[number] = (usubjid, arm)
            r = await post(
                f"/api/participants/{usubjid}/visits/ENTRY",
                {"visit_date": RANDOMIZED.isoformat(), "labs": {"CD4": cd4, "HIVRNA": "<50"}},
            )
            if r.status_code != 201:
                acks.refused.append((usubjid, r.status_code, r.text[:300]))
                return
            acks.visits[usubjid] = cd4
    except httpx.TransportError:
        acks.cut_off += 1  # the server died under this request


async def _stream_then_kill(
    server: LiveServer, headers: dict[str, dict[str, str]], answers: dict[str, object]
) -> Acks:
    acks = Acks()
    clients = [(k, site) for k, site in enumerate(SITES * CLIENTS_PER_SITE)]
    async with httpx.AsyncClient(base_url=server.url, timeout=httpx.Timeout(60.0)) as client:
        tasks = [
            asyncio.create_task(_client(client, k, site, headers[site], answers, acks))
            for k, site in clients
        ]
        start = time.perf_counter()
        while acks.total < KILL_AFTER and not all(t.done() for t in tasks):
            await asyncio.sleep(0.005)
        acks.in_flight_at_kill = acks.in_flight
        acks.seconds = time.perf_counter() - start
        killed = server.kill()  # SIGKILL to the supervisor and every worker, mid-stream
        assert killed >= 1 + WORKERS, killed
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)
    return acks


def _wait_until_quiet(url: str, timeout: float = 30.0) -> None:
    """PostgreSQL: until no session of the killed server is left on the database.

    A transaction whose COMMIT the dead client had already sent (pipeline mode) may still
    commit; the checks read the store only once nothing can change it any more.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return
    engine = open_engine(url)
    try:
        deadline = time.monotonic() + timeout
        while True:
            with engine.connect() as conn:
                others = conn.scalar(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                )
            if not others:
                return
            assert time.monotonic() < deadline, f"{others} sessions outlived the server"
            time.sleep(0.05)
    finally:
        engine.dispose()


@dataclass(frozen=True)
class Stored:
    screenings: dict[str, tuple[str, dt.date, bool, float]]  # number -> site, date, eligible, cd4
    participants: dict[str, tuple[str, str]]  # usubjid -> screening number, arm
    visits: dict[str, tuple[dt.date, dict[str, tuple[float | None, bool]]]]  # usubjid -> ...
    slots: dict[str, list[int]]  # stratum -> sequences used
    audit_records: int


def _read_store(url: str) -> Stored:
    engine = open_engine(url)
    try:
        report = verify_audit(engine)
        assert report.ok, report.finding
        with engine.connect() as conn:
            screenings = {
                r.screening_number: (r.code, r.screening_date, r.eligible, r.answers["cd4"])
                for r in conn.execute(
                    sa.select(
                        Screening.screening_number,
                        Screening.screening_date,
                        Screening.eligible,
                        Screening.answers,
                        Site.code,
                    ).join(Site, Site.id == Screening.site_id)
                )
            }
            rows = conn.execute(
                sa.select(
                    Participant.usubjid,
                    Screening.screening_number,
                    AllocationSlot.arm,
                    AllocationSlot.stratum,
                    AllocationSlot.sequence,
                )
                .join(Screening, Screening.id == Participant.screening_id)
                .outerjoin(AllocationSlot, AllocationSlot.participant_id == Participant.id)
            ).all()
            assigned_slots = conn.scalar(
                sa.select(sa.func.count()).where(AllocationSlot.participant_id.is_not(None))
            )
            visits: dict[str, tuple[dt.date, dict[str, tuple[float | None, bool]]]] = {}
            for v in conn.execute(
                sa.select(Participant.usubjid, Visit.id, Visit.visit_code, Visit.visit_date).join(
                    Participant, Participant.id == Visit.participant_id
                )
            ):
                assert v.visit_code == "ENTRY", v
                visits[v.usubjid] = (v.visit_date, {})
                labs = conn.execute(
                    sa.select(LabResult.test_code, LabResult.value, LabResult.below_limit).where(
                        LabResult.visit_id == v.id
                    )
                )
                for lab in labs:
                    visits[v.usubjid][1][lab.test_code] = (lab.value, lab.below_limit)
    finally:
        engine.dispose()
    # a randomization is its participant and its slot, together or not at all
    assert all(r.arm is not None for r in rows), [r for r in rows if r.arm is None]
    assert assigned_slots == len(rows)
    slots: dict[str, list[int]] = defaultdict(list)
    for r in rows:
        slots[r.stratum].append(r.sequence)
    participants = {r.usubjid: (r.screening_number, r.arm) for r in rows}
    assert len(participants) == len(rows)
    # a visit is its row and both results, together or not at all
    for usubjid, (_, labs) in visits.items():
        assert set(labs) == {"CD4", "HIVRNA"}, (usubjid, labs)
    return Stored(screenings, participants, visits, dict(slots), report.records)


def _check_gap_free(stored: Stored) -> None:
    """Each stratum's list is used from slot 1 without a gap."""
    for stratum, sequences in stored.slots.items():
        assert sorted(sequences) == list(range(1, len(sequences) + 1)), stratum


@pytest.mark.parametrize("backend", BACKENDS)
def test_kill_9_mid_stream_loses_no_acknowledged_write(
    backend: str,
    databases: Databases,
    packaged: LoadedProtocol,
    eligible_answers: Callable[..., dict[str, object]],
    tmp_path: Path,
) -> None:
    url = databases.new(backend, packaged, folder=tmp_path)
    server = LiveServer(url, workers=WORKERS, log_dir=tmp_path)
    answers: dict[str, object] = eligible_answers()
    try:
        users = add_coordinators(url, SITES)
        server.start()
        headers = {site: bearer(server.url, name) for site, name in users.items()}
        before = _read_store(url).audit_records  # after the logins: each is an audit record
        acks = asyncio.run(_stream_then_kill(server, headers, answers))
        print(
            f"\n{backend}: {acks.total} writes acknowledged in {acks.seconds:.2f} s before kill -9 "
            f"({acks.total / acks.seconds:.0f}/s; {len(acks.screenings)} screenings, "
            f"{len(acks.randomizations)} randomizations, {len(acks.visits)} visits), "
            f"{acks.in_flight_at_kill} requests in flight at the kill"
        )
        assert not acks.refused, (acks.refused[:5], server.log_text()[-3000:])
        assert acks.total >= KILL_AFTER
        assert acks.in_flight_at_kill >= 1, "the kill did not come mid-stream"
        assert acks.cut_off == len(SITES) * CLIENTS_PER_SITE  # every client lost its server

        _wait_until_quiet(url)
        stored = _read_store(url)
        _check_acknowledged(acks, stored)
        _check_gap_free(stored)
        # nothing half written or written without its audit: one record per screening, two per
        # randomization (participant, slot), three per visit (visit, two results), users aside
        assert stored.audit_records == before + len(stored.screenings) + 2 * len(
            stored.participants
        ) + 3 * len(stored.visits)
        unacknowledged = (
            len(stored.screenings) + len(stored.participants) + len(stored.visits) - acks.total
        )
        print(
            f"{backend}: after the kill the store holds {len(stored.screenings)} screenings, "
            f"{len(stored.participants)} randomizations, {len(stored.visits)} visits "
            f"({unacknowledged} committed without their 201 reaching the client)"
        )

        # a restarted server on the same database takes the old tokens and finishes the forms
        server.start()
        finished = asyncio.run(_finish(server.url, headers, stored, acks, answers))
        server.stop()
        after = _read_store(url)
        _check_acknowledged(acks, after)
        _check_gap_free(after)
        assert set(after.participants.values()) >= set(stored.participants.values())
        assert len(after.participants) == len(after.screenings), "someone left unrandomized"
        assert set(after.visits) == set(after.participants), "a visit left unentered"
        assert finished == (len(after.screenings) - len(stored.participants)) + (
            len(after.participants) - len(stored.visits)
        )
        verify = cli("audit", "verify", "--database", url)
        assert verify.returncode == 0, verify.stdout + verify.stderr
    finally:
        server.close()
        databases.drop(url)


def _check_acknowledged(acks: Acks, stored: Stored) -> None:
    """Every 201 before the kill is in the store, as it was sent and answered."""
    for number, site in acks.screenings.items():
        assert number in stored.screenings, f"acknowledged screening {number} lost"
        stored_site, date, eligible, _ = stored.screenings[number]
        assert (stored_site, date, eligible) == (site, SCREENED, True), number
    by_usubjid = {u: (n, arm) for n, (u, arm) in acks.randomizations.items()}
    for usubjid, (number, arm) in by_usubjid.items():
        assert usubjid in stored.participants, f"acknowledged randomization {usubjid} lost"
        assert stored.participants[usubjid] == (number, arm), usubjid
    for usubjid, cd4 in acks.visits.items():
        assert usubjid in stored.visits, f"acknowledged visit of {usubjid} lost"
        date, labs = stored.visits[usubjid]
        assert date == RANDOMIZED
        assert labs["CD4"] == (cd4, False), (usubjid, labs)
        assert labs["HIVRNA"][1] is True, (usubjid, labs)
        number = by_usubjid[usubjid][0]
        assert stored.screenings[number][3] == cd4  # the visit is that person's


async def _finish(
    base_url: str,
    headers: dict[str, dict[str, str]],
    stored: Stored,
    acks: Acks,
    answers: dict[str, object],
) -> int:
    """Randomize the screened but unrandomized, enter the missing entry visits; 201s counted."""
    randomized = {number for number, _ in stored.participants.values()}
    async with httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(60.0)) as client:
        for site, h in headers.items():  # tokens issued before the kill still work
            me = await client.get("/api/me", headers=h)
            assert me.status_code == 200 and me.json()["site"] == site, me.text
        # an acknowledged screening is there for the API too: a second one is refused
        number, site = next(iter(acks.screenings.items()))
        again = await client.post(
            "/api/screenings",
            json={
                "site": site,
                "screening_number": number,
                "screening_date": SCREENED.isoformat(),
                "answers": _answers(answers, 450.0),
            },
            headers=headers[site],
        )
        assert again.status_code == 409, again.text

        async def randomize(number: str, site: str) -> httpx.Response:
            return await client.post(
                "/api/randomizations",
                json={
                    "screening_number": number,
                    "consent_date": CONSENTED.isoformat(),
                    "randomization_date": RANDOMIZED.isoformat(),
                },
                headers=headers[site],
            )

        todo = [(n, s[0]) for n, s in stored.screenings.items() if n not in randomized]
        replies = await asyncio.gather(*(randomize(n, s) for n, s in todo))
        assert all(r.status_code == 201 for r in replies), [r.text for r in replies]
        site_of = {n: s[0] for n, s in stored.screenings.items()}
        cd4_of = {n: s[3] for n, s in stored.screenings.items()}
        pending = [
            (u, n) for u, (n, _) in stored.participants.items() if u not in stored.visits
        ] + [(str(r.json()["usubjid"]), n) for r, (n, _) in zip(replies, todo, strict=True)]

        async def visit(usubjid: str, number: str) -> httpx.Response:
            return await client.post(
                f"/api/participants/{usubjid}/visits/ENTRY",
                json={
                    "visit_date": RANDOMIZED.isoformat(),
                    "labs": {"CD4": cd4_of[number], "HIVRNA": "<50"},
                },
                headers=headers[site_of[number]],
            )

        visits = await asyncio.gather(*(visit(u, n) for u, n in pending))
        assert all(r.status_code == 201 for r in visits), [r.text for r in visits]
    return len(replies) + len(visits)
