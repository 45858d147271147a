"""Participant calendars: visits with windows and dose days, recomputed from the protocol."""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stalwart.protocol.calendar import Calendar, participant_calendar
from stalwart.protocol.load import LoadedProtocol, load_protocol
from stalwart.protocol.schema import Protocol

PROTOCOL: Protocol = load_protocol().protocol
ARMS = ["NOTHER", "IL2", "IL2ART"]
DAY = dt.timedelta(days=1)

randomization_dates = st.dates(min_value=dt.date(2005, 12, 1), max_value=dt.date(2009, 2, 28))
arms = st.sampled_from(ARMS)


def test_example_calendar_il2art() -> None:
    rand = dt.date(2006, 1, 5)  # a Thursday
    cal = participant_calendar(PROTOCOL, "IL2ART", rand)
    assert cal.arm == "IL2ART" and cal.randomization_date == rand
    assert cal.cycle_start_days == {"IL2": (7, 63, 119), "ART": (7, 63, 119)}
    entry = cal.visit("ENTRY")
    assert (entry.target, entry.earliest, entry.latest, entry.kind) == (
        rand,
        rand,
        rand,
        "scheduled",
    )
    wk32 = cal.visit("WK32")
    assert wk32.study_day == 224
    assert wk32.earliest == dt.date(2006, 8, 10)
    assert wk32.latest == dt.date(2006, 8, 31)
    pre1 = cal.visit("PRECYC1")
    assert (pre1.kind, pre1.cycle, pre1.study_day) == ("cycle", 1, 5)
    assert (pre1.earliest, pre1.latest) == (rand + 3 * DAY, rand + 6 * DAY)  # IL-2 day -4 .. -1
    end3 = cal.visit("ENDCYC3")
    assert (end3.study_day, end3.earliest, end3.latest) == (123, rand + 123 * DAY, rand + 125 * DAY)
    first_il2 = next(d for d in cal.doses if d.treatment == "IL2")
    assert (first_il2.date, first_il2.cycle, first_il2.cycle_day) == (rand + 7 * DAY, 1, 0)
    assert (first_il2.administrations, first_il2.dose, first_il2.dose_unit) == (2, 7.5, "MIU")
    first_art = cal.doses[0]
    assert (first_art.treatment, first_art.date, first_art.cycle_day) == (
        "ART",
        rand + 4 * DAY,
        -3,
    )
    with pytest.raises(KeyError):
        cal.visit("PRECYC4")


def test_extended_visits_every_16_weeks_until_follow_up_end() -> None:
    rand = dt.date(2006, 1, 5)
    cal = participant_calendar(PROTOCOL, "NOTHER", rand)
    ext = [v for v in cal.visits if v.kind == "extended"]
    assert [v.code for v in ext][:3] == ["FU01", "FU02", "FU03"]
    assert [v.study_day for v in ext] == list(range(224 + 112, 1150, 112))[: len(ext)]
    assert ext[-1].target <= dt.date(2009, 2, 28) < ext[-1].target + 112 * DAY
    assert all((v.latest - v.target).days == 14 == (v.target - v.earliest).days for v in ext)


def test_follow_up_end_override() -> None:
    rand = dt.date(2006, 1, 5)
    end = rand + (224 + 112) * DAY
    cal = participant_calendar(PROTOCOL, "NOTHER", rand, follow_up_end=end)
    assert [v.code for v in cal.visits if v.kind == "extended"] == ["FU01"]
    cal = participant_calendar(PROTOCOL, "NOTHER", rand, follow_up_end=end - DAY)
    assert [v.code for v in cal.visits if v.kind == "extended"] == []


def test_late_randomization_has_no_extended_visits() -> None:
    cal = participant_calendar(PROTOCOL, "IL2", dt.date(2008, 6, 30))
    assert [v.kind for v in cal.visits].count("extended") == 0
    assert cal.visits[-1].code == "WK32"


def test_unknown_arm() -> None:
    with pytest.raises(KeyError):
        participant_calendar(PROTOCOL, "PLACEBO", dt.date(2006, 1, 5))


def _check_visits(cal: Calendar, rand: dt.date, protocol: Protocol) -> None:
    for v in cal.visits:
        assert v.target == rand + v.study_day * DAY
        assert v.earliest <= v.target <= v.latest
        assert v.in_window(v.earliest) and v.in_window(v.latest)
        assert not v.in_window(v.earliest - DAY) and not v.in_window(v.latest + DAY)
        if v.kind == "extended":
            assert v.target <= protocol.study.follow_up_end
    scheduled = [v for v in cal.visits if v.kind == "scheduled"]
    assert [v.code for v in scheduled] == [v.code for v in protocol.visits]
    for got, planned in zip(scheduled, protocol.visits, strict=True):
        assert got.study_day == planned.day
        assert (got.target - got.earliest).days == planned.window_before
        assert (got.latest - got.target).days == planned.window_after
    keys = [(v.study_day, v.code) for v in cal.visits]
    assert keys == sorted(keys)
    assert len({v.code for v in cal.visits}) == len(cal.visits)


@settings(max_examples=150, deadline=None)
@given(rand=randomization_dates, arm=arms)
def test_calendar_arithmetic(rand: dt.date, arm: str) -> None:
    cal = participant_calendar(PROTOCOL, arm, rand)
    _check_visits(cal, rand, PROTOCOL)
    treatments = set(PROTOCOL.arm(arm).treatments)
    assert {d.treatment for d in cal.doses} == treatments
    assert set(cal.cycle_start_days) == treatments
    for d in cal.doses:
        assert d.date == rand + d.study_day * DAY
        assert d.study_day == cal.cycle_start_days[d.treatment][d.cycle - 1] + d.cycle_day
    cycle_visits = [v for v in cal.visits if v.kind == "cycle"]
    assert len(cycle_visits) == (6 if "IL2" in treatments else 0)

    il2 = [d for d in cal.doses if d.treatment == "IL2"]
    if "IL2" not in treatments:
        assert il2 == []
        return
    # 3 cycles x 5 days x 2 administrations, twice daily
    assert len(il2) == 15
    assert sum(d.administrations for d in il2) == 30
    assert Counter(d.cycle for d in il2) == {1: 5, 2: 5, 3: 5}
    by_cycle: dict[int, list[dt.date]] = defaultdict(list)
    for d in il2:
        by_cycle[d.cycle].append(d.date)
        # every IL-2 cycle starts on the weekday of randomization (cycles 8 weeks apart, day 7)
        assert (d.date - rand).days % 7 == d.cycle_day
    for k in (1, 2, 3):
        days = by_cycle[k]
        assert days == [days[0] + i * DAY for i in range(5)]
        assert days[0] == rand + (7 + 56 * (k - 1)) * DAY
        assert days[0].weekday() == rand.weekday()
        assert cal.visit(f"PRECYC{k}").latest < days[0]
        assert cal.visit(f"ENDCYC{k}").target == days[-1]

    art = [d for d in cal.doses if d.treatment == "ART"]
    if "ART" not in treatments:
        assert art == []
        return
    assert len(art) == 30
    for k in (1, 2, 3):
        art_days = [d.date for d in art if d.cycle == k]
        il2_days = by_cycle[k]
        assert len(art_days) == 10
        assert art_days == [il2_days[0] - 3 * DAY + i * DAY for i in range(10)]
        assert art_days[0] == il2_days[0] - 3 * DAY and art_days[-1] == il2_days[-1] + 2 * DAY
        assert all(d.administrations == 1 and d.dose_unit == "regimen" for d in art)


@settings(max_examples=60, deadline=None)
@given(rand=randomization_dates, arm=arms, end_offset=st.integers(min_value=-30, max_value=2000))
def test_extended_visits_never_past_follow_up_end(rand: dt.date, arm: str, end_offset: int) -> None:
    end = rand + end_offset * DAY
    cal = participant_calendar(PROTOCOL, arm, rand, follow_up_end=end)
    ext = [v for v in cal.visits if v.kind == "extended"]
    assert all(v.target <= end for v in ext)
    # and none is missing: the next one would be past the end
    last_day = ext[-1].study_day if ext else 224
    assert rand + (last_day + 112) * DAY > end
    assert [v.code for v in ext] == [f"FU{k:02d}" for k in range(1, len(ext) + 1)]


def test_calendar_of_packaged_loaded_protocol_is_the_same(packaged: LoadedProtocol) -> None:
    rand = dt.date(2007, 3, 14)
    assert participant_calendar(packaged.protocol, "IL2", rand) == participant_calendar(
        PROTOCOL, "IL2", rand
    )
