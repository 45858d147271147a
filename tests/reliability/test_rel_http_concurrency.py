"""500 concurrent randomizations over HTTP against a real ``stalwart serve``, both backends.

The people are screened first (through the service: only the randomizations need to race); then
every randomization request, and a second one at the same moment for some of the people, is sent
at once by one ``httpx`` client over as many connections, to a server of several uvicorn
workers. Afterwards the store must hold exactly one allocation per person, each stratum's list
used as a gap-free prefix in list order, every complete block balanced, the arm of every 201
equal to the stored one, and an audit chain that verifies.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx
import pytest
import sqlalchemy as sa
from live_server import Databases, LiveServer, add_coordinators, bearer

from stalwart.capture.audit import verify_audit
from stalwart.capture.db import open_engine
from stalwart.capture.service import CaptureService
from stalwart.capture.tables import AllocationSlot, AuditRecord, Participant, Screening, Site
from stalwart.protocol.load import LoadedProtocol
from stalwart.randomization.allocation import allocation_lists

PEOPLE = 500
DUPLICATED = 60
"""People whose randomization is sent twice at the same moment."""
SITES = ("US01", "GB01", "DE01", "TH01")
"""Four strata of 125 people: the site lock and the slot rows are fought over."""
SCREENED = dt.date(2024, 1, 2)
CONSENTED = SCREENED  # consent first, then the screening procedures (GCP): no deviation
RANDOMIZED = dt.date(2024, 1, 5)
SEED = 20051201  # the seed of tests/conftest.py's trial template

CASES = [
    pytest.param("sqlite", 2, id="sqlite-2workers"),
    pytest.param("postgresql", 3, id="postgresql-3workers", marks=pytest.mark.postgres),
]


@dataclass(frozen=True)
class Reply:
    """One randomization request and what came back."""

    screening_number: str
    status: int
    body: dict[str, object]


def _number(i: int) -> str:
    return f"R{i:04d}"


def _site_of(i: int) -> str:
    return SITES[i % len(SITES)]


def _screen_everyone(url: str, answers: dict[str, object]) -> None:
    engine = open_engine(url)
    try:
        service = CaptureService.open(engine)
        for i in range(PEOPLE):
            outcome = service.screen(_site_of(i), _number(i), SCREENED, answers, "screener")
            assert outcome.eligible, outcome.reasons
    finally:
        engine.dispose()


async def _fire(base_url: str, headers: dict[str, dict[str, str]]) -> tuple[list[Reply], float]:
    """Every randomization at once (the duplicated people twice); replies and seconds taken."""
    requests = [_number(i) for i in range(PEOPLE)]
    requests += [_number(i) for i in random.Random(7).sample(range(PEOPLE), DUPLICATED)]
    random.Random(11).shuffle(requests)
    site_of = {_number(i): _site_of(i) for i in range(PEOPLE)}
    limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=len(requests))
    gate = asyncio.Event()

    async with httpx.AsyncClient(
        base_url=base_url, limits=limits, timeout=httpx.Timeout(180.0)
    ) as client:

        async def randomize(number: str) -> Reply:
            await gate.wait()
            r = await client.post(
                "/api/randomizations",
                json={
                    "screening_number": number,
                    "consent_date": CONSENTED.isoformat(),
                    "randomization_date": RANDOMIZED.isoformat(),
                },
                headers=headers[site_of[number]],
            )
            try:
                body = r.json()
            except ValueError:
                body = {"text": r.text[:500]}
            return Reply(number, r.status_code, body)

        tasks = [asyncio.create_task(randomize(n)) for n in requests]
        await asyncio.sleep(0)  # every task is parked at the gate
        start = time.perf_counter()
        gate.set()
        replies = await asyncio.gather(*tasks)
        return list(replies), time.perf_counter() - start


@pytest.mark.parametrize(("backend", "workers"), CASES)
def test_500_concurrent_randomizations_over_http(
    backend: str,
    workers: int,
    databases: Databases,
    packaged: LoadedProtocol,
    eligible_answers: Callable[..., dict[str, object]],
    tmp_path: Path,
) -> None:
    url = databases.new(backend, packaged, folder=tmp_path)
    server = LiveServer(url, workers=workers, log_dir=tmp_path)
    try:
        _screen_everyone(url, eligible_answers())
        users = add_coordinators(url, SITES)
        server.start()
        # the supervisor and its workers (and, with workers, multiprocessing's resource tracker)
        assert len(server.members()) >= 1 + (workers if workers > 1 else 0), server.members()
        headers = {site: bearer(server.url, name) for site, name in users.items()}
        engine = open_engine(url)
        try:  # after the logins: each token issued is an audit record of its account
            records_before = verify_audit(engine).records
        finally:
            engine.dispose()
        replies, seconds = asyncio.run(_fire(server.url, headers))
        log = server.log_text()
        server.stop()
        print(
            f"\n{backend}, {workers} worker(s): {len(replies)} randomization requests "
            f"({PEOPLE} people, {DUPLICATED} sent twice) in {seconds:.2f} s, "
            f"{PEOPLE / seconds:.0f} randomizations/s over HTTP"
        )
        _check_replies(replies, log)
        _check_store(url, replies, packaged, records_before)
    finally:
        server.close()
        databases.drop(url)


def _check_replies(replies: list[Reply], log: str) -> None:
    """No 5xx; per person exactly one 201, every second request a 409."""
    statuses = Counter(r.status for r in replies)
    server_errors = [r for r in replies if r.status >= 500]
    assert not server_errors, (server_errors[:5], log[-3000:])
    by_person: dict[str, list[Reply]] = defaultdict(list)
    for r in replies:
        by_person[r.screening_number].append(r)
    assert len(by_person) == PEOPLE
    assert statuses == {201: PEOPLE, 409: DUPLICATED}, statuses
    for number, mine in by_person.items():
        assert sorted(r.status for r in mine) in ([201], [201, 409]), (number, mine)
        for r in mine:
            if r.status == 409:
                error = r.body.get("error")
                assert isinstance(error, dict), r
                assert error.get("type") in ("AlreadyRandomizedError", "ConflictError"), r


def _check_store(
    url: str, replies: list[Reply], packaged: LoadedProtocol, records_before: int
) -> None:
    engine = open_engine(url)
    try:
        with engine.connect() as conn:
            participants = conn.execute(
                sa.select(
                    Participant.id,
                    Participant.usubjid,
                    Screening.screening_number,
                    Site.code,
                ).join(Screening, Screening.id == Participant.screening_id)
                .join(Site, Site.id == Participant.site_id)
            ).all()  # fmt: skip
            slots = conn.execute(
                sa.select(
                    AllocationSlot.id,
                    AllocationSlot.stratum,
                    AllocationSlot.sequence,
                    AllocationSlot.block,
                    AllocationSlot.block_size,
                    AllocationSlot.arm,
                    AllocationSlot.participant_id,
                )
            ).all()
            slot_audit = conn.execute(
                sa.select(AuditRecord.record_id, AuditRecord.sequence).where(
                    AuditRecord.table_name == AllocationSlot.__tablename__,
                    AuditRecord.action == "UPDATE",
                )
            ).all()
        report = verify_audit(engine)
    finally:
        engine.dispose()

    # nobody twice, no slot twice
    assert len(participants) == PEOPLE
    assert len({p.screening_number for p in participants}) == PEOPLE
    assert len({p.usubjid for p in participants}) == PEOPLE
    used = [s for s in slots if s.participant_id is not None]
    assert len(used) == PEOPLE
    assert len({s.participant_id for s in used}) == PEOPLE
    assert {s.participant_id for s in used} == {p.id for p in participants}
    assert len({(s.stratum, s.sequence) for s in used}) == PEOPLE

    # each stratum's list is used from its start, without a gap, in list order: slot k went to
    # the site's k-th participant and was committed after slot k - 1
    lists = allocation_lists(packaged.protocol, SEED)
    participant_of = {p.id: p for p in participants}
    audited_at = {record_id: seq for record_id, seq in slot_audit}
    by_stratum: dict[str, list[tuple[int, str, int, int, int]]] = defaultdict(list)
    for s in used:
        by_stratum[s.stratum].append((s.sequence, s.arm, s.participant_id, s.block, s.block_size))
    assert set(by_stratum) == {f"site={site}" for site in SITES}
    for stratum, mine in by_stratum.items():
        mine.sort()
        k = len(mine)
        assert k == PEOPLE // len(SITES), (stratum, k)
        assert [seq for seq, *_ in mine] == list(range(1, k + 1)), stratum
        assert [arm for _, arm, *_ in mine] == [slot.arm for slot in lists[stratum][:k]]
        site = stratum.removeprefix("site=")
        for seq, _, pid, _, _ in mine:
            p = participant_of[pid]
            assert p.code == site
            assert p.usubjid == f"STALWART-{site}-{seq:04d}", (stratum, seq, p.usubjid)
        slot_ids = {
            (s.stratum, s.sequence): s.id for s in used if s.stratum == stratum
        }  # fmt: skip
        order = [audited_at[slot_ids[(stratum, seq)]] for seq, *_ in mine]
        assert order == sorted(order), f"{stratum}: slots committed out of list order"

    # block balance: every complete block holds each arm block_size * ratio / sum(ratios) times;
    # the one partly used block (the last) never more
    ratio = {a.code: a.ratio for a in packaged.protocol.arms}
    total_ratio = sum(ratio.values())
    blocks: dict[tuple[str, int], list[str]] = defaultdict(list)
    sizes: dict[tuple[str, int], int] = {}
    for s in used:
        blocks[(s.stratum, s.block)].append(s.arm)
        sizes[(s.stratum, s.block)] = s.block_size
    complete = 0
    for key, arms in blocks.items():
        size = sizes[key]
        quota = {arm: size * r // total_ratio for arm, r in ratio.items()}
        counts = Counter(arms)
        assert set(counts) <= set(ratio), key
        if len(arms) == size:
            complete += 1
            assert counts == Counter(quota), (key, counts)
        else:
            assert len(arms) < size and all(counts[a] <= quota[a] for a in counts), (key, counts)
            last = max(b for st, b in blocks if st == key[0])
            assert key[1] == last, f"{key}: a block left incomplete before the stratum's last"
    assert complete >= len(SITES) * (PEOPLE // len(SITES) // 6), complete

    # what each 201 said is what is stored
    stored = {p.screening_number: p for p in participants}
    arm_of = {s.participant_id: s.arm for s in used}
    acknowledged = [r for r in replies if r.status == 201]
    assert {r.screening_number for r in acknowledged} == set(stored)
    for r in acknowledged:
        p = stored[r.screening_number]
        assert r.body["usubjid"] == p.usubjid, r
        assert r.body["arm"] == arm_of[p.id], r
        assert r.body["randomization_date"] == RANDOMIZED.isoformat(), r

    # the audit chain verifies and holds two records per randomization, none for a refusal
    assert report.ok, report.finding
    assert report.records == records_before + 2 * PEOPLE
