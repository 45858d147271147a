"""Minimization through the capture service, on SQLite and PostgreSQL: concealed draws stored at
set-up, counts read and allocation written in one transaction, the same arms on replay."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from randomization.minimization_cases import minimization_protocol
from stalwart.capture.audit import verify_audit
from stalwart.capture.db import open_engine
from stalwart.capture.enrolment import Allocation
from stalwart.capture.service import CaptureService
from stalwart.capture.tables import AllocationSlot, MinimizationDraw, Participant, Screening, Site
from stalwart.errors import AllocationExhaustedError, AlreadyRandomizedError
from stalwart.protocol.load import LoadedProtocol
from stalwart.randomization.allocation import concealed_draws
from stalwart.randomization.minimization import MinimizationDesign, minimization_draws

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]
D = dt.date
SITES = ("US01", "GB01", "DE01", "TH01")


@pytest.fixture(scope="module")
def mini(packaged_text: str) -> LoadedProtocol:
    return minimization_protocol(packaged_text)


def _service(engine: Engine, today: dt.date) -> CaptureService:
    return CaptureService.open(engine, today=lambda: today)


def _stored(engine: Engine) -> list[tuple[int, str, str, dict[str, Any], int]]:
    """(sequence, arm, site, answers, participant id) of every allocation, in sequence order."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                AllocationSlot.sequence,
                AllocationSlot.arm,
                Site.code,
                Screening.answers,
                Participant.id,
            )
            .join(Participant, AllocationSlot.participant_id == Participant.id)
            .join(Site, Site.id == Participant.site_id)
            .join(Screening, Screening.id == Participant.screening_id)
            .where(AllocationSlot.stratum == "minimization")
            .order_by(AllocationSlot.sequence)
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def _replay(
    protocol: LoadedProtocol, seed: int, profiles: list[tuple[str, dict[str, Any]]]
) -> list[str]:
    """The arms minimization gives these participants in this order, from the seed alone."""
    design = MinimizationDesign.from_protocol(protocol.protocol)
    draws = minimization_draws(seed, len(profiles))
    m = design.minimizer()
    return [
        design.arms[int(m.assign(design.levels_of(site, answers), u))]
        for (site, answers), u in zip(profiles, draws, strict=True)
    ]


@pytest.mark.parametrize("backend", BACKENDS)
def test_set_up_stores_the_concealed_draws_and_no_list(
    make_engine: Callable[..., Engine], backend: str, mini: LoadedProtocol, seed: int
) -> None:
    engine = make_engine(backend, mini)
    with engine.connect() as conn:
        draws = conn.execute(
            sa.select(MinimizationDraw.sequence, MinimizationDraw.draw).order_by(
                MinimizationDraw.sequence
            )
        ).all()
        slots = conn.scalar(sa.select(sa.func.count()).select_from(AllocationSlot))
    assert [s for s, _ in draws] == list(range(1, 401))
    assert [u for _, u in draws] == concealed_draws(mini.protocol, seed)  # exact round trip
    assert slots == 0
    report = verify_audit(engine)
    assert report.ok, report.finding


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_randomization_follows_the_replay_of_the_stored_draws(
    make_engine: Callable[..., Engine],
    backend: str,
    mini: LoadedProtocol,
    seed: int,
    today: dt.date,
    enrol: Callable[..., Allocation],
    row_counts: Callable[[Engine], dict[str, int]],
) -> None:
    engine = make_engine(backend, mini)
    service = _service(engine, today)
    profiles = [(SITES[(i * 7) % 4], 350.0 if i % 3 else 800.0) for i in range(30)]
    allocations = [enrol(service, site, cd4=cd4) for site, cd4 in profiles]
    stored = _stored(engine)
    assert [a.arm for a in allocations] == [r[1] for r in stored]
    assert [(a.stratum, a.sequence) for a in allocations] == [
        ("minimization", i) for i in range(1, 31)
    ]
    expected = _replay(mini, seed, [(site, {"cd4": cd4}) for site, cd4 in profiles])
    assert [a.arm for a in allocations] == expected
    assert allocations[0].usubjid == "STALWART-US01-0001"
    # randomizing someone again is refused and changes nothing
    before = row_counts(engine)
    with engine.connect() as conn:
        number = conn.scalar(sa.select(Screening.screening_number).order_by(Screening.id).limit(1))
    with pytest.raises(AlreadyRandomizedError):
        service.randomize(str(number), D(2006, 1, 2), D(2006, 1, 5), "nurse")
    assert row_counts(engine) == before
    report = verify_audit(engine)
    assert report.ok, report.finding


@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_randomizations_are_one_serial_order(
    make_engine: Callable[..., Engine],
    backend: str,
    mini: LoadedProtocol,
    seed: int,
    today: dt.date,
    eligible_answers: Callable[..., dict[str, object]],
) -> None:
    engine = make_engine(backend, mini)
    service = _service(engine, today)
    threads, per_thread = 6, 8
    for t in range(threads):
        for i in range(per_thread):
            answers = eligible_answers(cd4=350.0 if (t + i) % 2 else 900.0)
            service.screen(SITES[t % 4], f"C{t}-{i}", D(2006, 1, 2), answers, "nurse")
    barrier = threading.Barrier(threads)

    def work(t: int) -> list[Allocation]:
        barrier.wait(timeout=30)
        return [
            service.randomize(f"C{t}-{i}", D(2006, 1, 3), D(2006, 1, 5), f"thread-{t}")
            for i in range(per_thread)
        ]

    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = [a for batch in pool.map(work, range(threads)) for a in batch]
    stored = _stored(engine)
    total = threads * per_thread
    assert [r[0] for r in stored] == list(range(1, total + 1))  # one serial order, no gaps
    assert len({r[4] for r in stored}) == total  # each participant one allocation
    assert {(a.sequence, a.arm) for a in results} == {(r[0], r[1]) for r in stored}
    # the arms are exactly what the stored draws give in that order: every randomization read
    # the counts of all earlier ones
    assert [r[1] for r in stored] == _replay(mini, seed, [(r[2], r[3]) for r in stored])
    report = verify_audit(engine)
    assert report.ok, report.finding


@pytest.mark.postgres
def test_same_seed_same_arms_on_sqlite_and_postgresql(
    make_engine: Callable[..., Engine],
    mini: LoadedProtocol,
    today: dt.date,
    enrol: Callable[..., Allocation],
) -> None:
    arms = []
    for backend in ("sqlite", "postgresql"):
        service = _service(make_engine(backend, mini), today)
        arms.append([enrol(service, SITES[i % 3], cd4=400.0 + 50 * i).arm for i in range(12)])
    assert arms[0] == arms[1]


def test_the_stream_runs_out_clearly(
    make_engine: Callable[..., Engine],
    packaged_text: str,
    today: dt.date,
    enrol: Callable[..., Allocation],
    row_counts: Callable[[Engine], dict[str, int]],
    eligible_answers: Callable[..., dict[str, object]],
) -> None:
    engine = make_engine("sqlite", minimization_protocol(packaged_text, list_length=3))
    service = _service(engine, today)
    for _ in range(3):
        enrol(service, "US01")
    service.screen("US01", "LAST", D(2006, 1, 2), eligible_answers(), "nurse")
    before = row_counts(engine)
    with pytest.raises(AllocationExhaustedError, match="list_length"):
        service.randomize("LAST", D(2006, 1, 2), D(2006, 1, 5), "nurse")
    assert row_counts(engine) == before


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(attempts=st.lists(st.integers(0, 5), min_size=1, max_size=14))
def test_nobody_is_randomized_twice_and_no_sequence_is_used_twice(
    databases: Any,
    mini: LoadedProtocol,
    seed: int,
    today: dt.date,
    eligible_answers: Callable[..., dict[str, object]],
    attempts: list[int],
) -> None:
    """Any order of randomization attempts, repeats included: one allocation per person."""
    url = databases.new("sqlite", mini)
    engine = open_engine(url)
    try:
        service = _service(engine, today)
        randomized: list[int] = []
        for person in attempts:
            number = f"P{person}"
            if person not in randomized:
                answers = eligible_answers(cd4=350.0 if person % 2 else 700.0)
                service.screen(SITES[person % 4], number, D(2006, 1, 2), answers, "nurse")
                service.randomize(number, D(2006, 1, 2), D(2006, 1, 5), "nurse")
                randomized.append(person)
            else:
                with pytest.raises(AlreadyRandomizedError):
                    service.randomize(number, D(2006, 1, 2), D(2006, 1, 5), "nurse")
        stored = _stored(engine)
        assert [r[0] for r in stored] == list(range(1, len(randomized) + 1))
        assert len({r[4] for r in stored}) == len(randomized)
        assert [r[1] for r in stored] == _replay(mini, seed, [(r[2], r[3]) for r in stored])
    finally:
        engine.dispose()
        databases.drop(url)
