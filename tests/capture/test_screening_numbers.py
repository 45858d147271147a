"""Screening numbers assigned per site in the protocol's format; consent recorded with the
screening (consent first), a later-dated consent logged as a deviation (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from stalwart.capture.service import CaptureService
from stalwart.capture.tables import Screening
from stalwart.errors import DuplicateError, FieldErrors, ProtocolError
from stalwart.protocol.load import parse_protocol

D = dt.date
Answers = Callable[..., dict[str, object]]


def test_numbers_are_assigned_per_site_in_the_protocol_format(
    trial: CaptureService, eligible_answers: Answers
) -> None:
    assert trial.protocol.study.screening_number_format == "{site}-S{seq:04d}"
    first = trial.screen("US01", None, D(2006, 1, 2), eligible_answers(), "nurse")
    second = trial.screen("US01", "", D(2006, 1, 2), eligible_answers(), "nurse")
    other = trial.screen("GB01", None, D(2006, 1, 2), eligible_answers(), "nurse")
    assert (first.screening_number, second.screening_number) == ("US01-S0001", "US01-S0002")
    assert other.screening_number == "GB01-S0001"
    # a number typed by hand (a paper log's) is kept; the next assigned one skips any taken
    trial.screen("US01", "US01-S0004", D(2006, 1, 2), eligible_answers(), "nurse")
    trial.screen("US01", "PAPER-7", D(2006, 1, 2), eligible_answers(), "nurse")
    nxt = trial.screen("US01", None, D(2006, 1, 2), eligible_answers(), "nurse")
    assert nxt.screening_number == "US01-S0005"
    with pytest.raises(DuplicateError) as info:
        trial.screen("US01", "US01-S0004", D(2006, 1, 2), eligible_answers(), "nurse")
    assert info.value.field == "screening_number"


def test_numbers_assigned_at_once_are_all_different(
    trial: CaptureService, eligible_answers: Answers
) -> None:
    threads, each = 6, 5
    barrier = threading.Barrier(threads)

    def work(t: int) -> list[str]:
        barrier.wait(timeout=30)
        return [
            trial.screen("US01", None, D(2006, 1, 2), eligible_answers(), f"t{t}").screening_number
            for _ in range(each)
        ]

    with ThreadPoolExecutor(max_workers=threads) as pool:
        numbers = [n for batch in pool.map(work, range(threads)) for n in batch]
    assert sorted(numbers) == [f"US01-S{k:04d}" for k in range(1, threads * each + 1)]
    with trial.engine.connect() as conn:
        stored = conn.scalar(sa.select(sa.func.count()).select_from(Screening))
    assert stored == threads * each


def test_consent_first_and_late_consent_is_a_deviation(
    trial: CaptureService, eligible_answers: Answers
) -> None:
    on_time = trial.screen(
        "US01", None, D(2006, 1, 5), eligible_answers(), "nurse", consent_date=D(2006, 1, 4)
    )
    late = trial.screen(
        "US01", None, D(2006, 1, 5), eligible_answers(), "nurse", consent_date=D(2006, 1, 9)
    )
    log = {s.screening_number: s for s in trial.records.screenings("nurse")}
    assert log[on_time.screening_number].consent_date == D(2006, 1, 4)
    assert log[late.screening_number].consent_date == D(2006, 1, 9)  # saved, not refused
    deviations = trial.deviations.list("nurse")
    assert [(d.screening_number, d.category) for d in deviations] == [
        (late.screening_number, "INFORMED CONSENT")
    ]
    assert "after the screening procedures of 2006-01-05" in deviations[0].description
    allocation = trial.randomize(late.screening_number, D(2006, 1, 9), D(2006, 1, 10), "nurse")
    assert allocation.usubjid.startswith("STALWART-US01-")


def test_every_wrong_screening_field_at_once(
    trial: CaptureService, eligible_answers: Answers, today: dt.date
) -> None:
    future = today + dt.timedelta(days=3)
    with pytest.raises(FieldErrors) as info:
        trial.screen(
            "US01",
            None,
            future,
            eligible_answers(age="abc", cd4=-5, hiv_rna=2e8),
            "nurse",
            consent_date=future,
        )
    errors = info.value.errors
    assert set(errors) == {
        "screening.age",
        "screening.cd4",
        "screening.hiv_rna",
        "screening_date",
        "consent_date",
    }
    assert errors["screening.cd4"] == "-5 cells/mm3 is outside the valid range 0 to 5,000 cells/mm3"
    assert "100,000,000 copies/mL" in errors["screening.hiv_rna"]
    assert errors["consent_date"].startswith("Date of informed consent ")
    assert not any("e+" in m or "_date" in m for m in errors.values())
    assert trial.records.screenings("nurse") == []


@pytest.mark.parametrize(
    "fmt", ["{site}-{n}", "S{site}", "{seq:q}", "{site}{seq}" + "x" * 40, "{seq}{0}"]
)
def test_a_bad_number_format_is_refused(packaged_text: str, fmt: str) -> None:
    text = packaged_text.replace('"{site}-S{seq:04d}"', f'"{fmt}"', 1)
    with pytest.raises(ProtocolError, match="screening_number_format"):
        parse_protocol(text)
