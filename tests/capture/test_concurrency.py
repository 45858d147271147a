"""Concurrent data entry through one shared engine: no slot twice, nobody twice, chain intact."""

from __future__ import annotations

import datetime as dt
import threading
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from stalwart.capture.audit import verify_audit
from stalwart.capture.enrolment import Allocation
from stalwart.capture.service import CaptureService
from stalwart.capture.tables import AllocationSlot, Participant
from stalwart.errors import AlreadyRandomizedError, ConflictError
from stalwart.protocol.load import LoadedProtocol
from stalwart.randomization.allocation import allocation_lists

D = dt.date
THREADS = 8
PER_THREAD = 15
SITES = ("US01", "GB01")
Answers = Callable[..., dict[str, object]]


def _run(threads: int, work: Callable[[int], object]) -> list[object]:
    """Run ``work(t)`` in ``threads`` threads released together; results or exceptions."""
    barrier = threading.Barrier(threads)

    def start(t: int) -> object:
        barrier.wait(timeout=30)
        try:
            return work(t)
        except Exception as exc:  # collected and checked by the caller
            return exc

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(start, range(threads)))


def test_parallel_screening_randomization_and_visits(
    trial: CaptureService,
    engine: Engine,
    eligible_answers: Answers,
    packaged: LoadedProtocol,
    seed: int,
) -> None:
    records_before = verify_audit(engine).records

    def work(t: int) -> list[Allocation]:
        mine = []
        for i in range(PER_THREAD):
            site = SITES[(t + i) % 2]
            number = f"T{t}-{i:02d}"
            actor = f"thread-{t}"
            outcome = trial.screen(site, number, D(2006, 1, 2), eligible_answers(), actor)
            assert outcome.eligible
            a = trial.randomize(number, D(2006, 1, 2), D(2006, 1, 5), actor)
            trial.record_visit(
                a.usubjid, "ENTRY", D(2006, 1, 5), {"CD4": 400 + i, "HIVRNA": "<50"}, actor
            )
            mine.append(a)
        return mine

    results = _run(THREADS, work)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []
    allocations = [a for r in results for a in r]  # type: ignore[attr-defined]
    total = THREADS * PER_THREAD
    assert len(allocations) == total

    # nobody twice, no usubjid twice, no slot twice
    assert len({a.usubjid for a in allocations}) == total
    assert len({(a.stratum, a.sequence) for a in allocations}) == total
    with engine.connect() as conn:
        used = conn.execute(
            sa.select(
                AllocationSlot.stratum,
                AllocationSlot.sequence,
                AllocationSlot.arm,
                AllocationSlot.participant_id,
            ).where(AllocationSlot.participant_id.is_not(None))
        ).all()
        participants = conn.execute(sa.select(Participant.usubjid, Participant.site_id)).all()
        screenings_randomized = conn.scalar(
            sa.select(sa.func.count(sa.distinct(Participant.screening_id)))
        )
    assert len(participants) == total and screenings_randomized == total
    assert len(used) == total
    assert len({r.participant_id for r in used}) == total

    # per stratum the used slots are exactly 1..k, in list order, with the planned arms
    lists = allocation_lists(packaged.protocol, seed)
    by_stratum: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for r in used:
        by_stratum[r.stratum].append((r.sequence, r.arm))
    assert set(by_stratum) == {f"site={s}" for s in SITES}
    for stratum, slots in by_stratum.items():
        slots.sort()
        k = len(slots)
        assert [seq for seq, _ in slots] == list(range(1, k + 1)), stratum
        assert [arm for _, arm in slots] == [s.arm for s in lists[stratum][:k]]
    assert sum(len(v) for v in by_stratum.values()) == total

    # usubjids are numbered 1..n per site without gaps
    for site in SITES:
        numbers = sorted(
            int(a.usubjid.rsplit("-", 1)[1])
            for a in allocations
            if a.usubjid.startswith(f"STALWART-{site}-")
        )
        assert numbers == list(range(1, len(numbers) + 1))
    # each thread's own allocations agree with the database
    assert {a.arm for a in allocations} <= {"NOTHER", "IL2", "IL2ART"}
    assert {(a.stratum, a.sequence, a.arm) for a in allocations} == {
        (r.stratum, r.sequence, r.arm) for r in used
    }

    report = verify_audit(engine)
    assert report.ok, report.finding
    # per participant: screening 1, randomization 2, visit 1 + 2 labs
    assert report.records == records_before + total * 6


def test_racing_randomizations_of_one_person(
    trial: CaptureService, engine: Engine, eligible_answers: Answers
) -> None:
    trial.screen("DE01", "RACE-1", D(2006, 1, 2), eligible_answers(), "nurse")
    records_before = verify_audit(engine).records

    results = _run(
        THREADS, lambda t: trial.randomize("RACE-1", D(2006, 1, 2), D(2006, 1, 5), f"thread-{t}")
    )
    winners = [r for r in results if isinstance(r, Allocation)]
    losers = [r for r in results if not isinstance(r, Allocation)]
    assert len(winners) == 1, results
    assert len(losers) == THREADS - 1
    for exc in losers:
        assert isinstance(exc, AlreadyRandomizedError | ConflictError), repr(exc)
    assert winners[0].usubjid == "STALWART-DE01-0001" and winners[0].sequence == 1

    with engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(Participant)) == 1
        used = conn.scalar(
            sa.select(sa.func.count()).where(AllocationSlot.participant_id.is_not(None))
        )
    assert used == 1
    report = verify_audit(engine)
    assert report.ok, report.finding
    assert report.records == records_before + 2


def test_racing_screenings_of_one_number(
    trial: CaptureService, engine: Engine, eligible_answers: Answers
) -> None:
    results = _run(
        THREADS,
        lambda t: trial.screen("US01", "SAME", D(2006, 1, 2), eligible_answers(), f"thread-{t}"),
    )
    ok = [r for r in results if not isinstance(r, BaseException)]
    assert len(ok) == 1
    assert all(isinstance(r, ConflictError) for r in results if r not in ok)
    assert verify_audit(engine).ok
