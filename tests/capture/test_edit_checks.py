"""Edit checks: lab values as entered, ranges and assay limits, visit windows, dates."""

from __future__ import annotations

import datetime as dt
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stalwart.capture.edit_checks import (
    LabValue,
    check_date_not_future,
    check_dates_in_order,
    check_lab_value,
    check_visit_window,
    parse_lab_value,
)
from stalwart.errors import ValidationError, VisitWindowError
from stalwart.protocol.calendar import participant_calendar
from stalwart.protocol.load import load_protocol
from stalwart.protocol.schema import FormItem, Protocol

PROTOCOL: Protocol = load_protocol().protocol
CD4 = PROTOCOL.lab_item("CD4")
HIVRNA = PROTOCOL.lab_item("HIVRNA")
DAY = dt.timedelta(days=1)


# -- parse_lab_value -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (450, LabValue(450.0)),
        (450.5, LabValue(450.5)),
        ("450", LabValue(450.0)),
        (" 450.25 ", LabValue(450.25)),
        ("1e3", LabValue(1000.0)),
        ("<50", LabValue(None, True, 50.0)),
        (" < 50 ", LabValue(None, True, 50.0)),
        ("<20.5", LabValue(None, True, 20.5)),
    ],
)
def test_parse_accepts(raw: object, expected: LabValue) -> None:
    got = parse_lab_value(raw, "LAB.X")  # type: ignore[arg-type]
    assert got == expected
    assert isinstance(got.value, float | type(None))


def test_parse_passes_a_lab_value_through() -> None:
    v = LabValue(None, below_limit=True)
    assert parse_lab_value(v, "LAB.X") is v


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (None, "a value is required"),
        (True, "must be a number, got True"),
        ("abc", "'abc' is not a number; enter e.g. 450, or '<50'"),
        ("", "is not a number"),
        ("<", "is not a number"),
        ("<abc", "is not a number"),
        ("450 cells", "is not a number"),
        (">50", "is not a number"),
    ],
)
def test_parse_refuses(raw: object, fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_lab_value(raw, "LAB.CD4")  # type: ignore[arg-type]
    assert info.value.field == "LAB.CD4"
    assert fragment in info.value.message


# -- check_lab_value -------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [0, 1, 299.5, 5000])
def test_cd4_in_range(value: float) -> None:
    assert check_lab_value(CD4, LabValue(float(value))) == (float(value), False, None)


@pytest.mark.parametrize("value", [-5, -0.001, 5000.001, 50000])
def test_cd4_out_of_range(value: float) -> None:
    with pytest.raises(ValidationError) as info:
        check_lab_value(CD4, LabValue(float(value)))
    assert info.value.field == "LAB.CD4"
    assert "outside the valid range 0 to 5,000 cells/mm3" in info.value.message
    assert "check the units" in info.value.message


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, None])
def test_non_finite_refused(value: float | None) -> None:
    with pytest.raises(ValidationError, match=r"LAB\.HIVRNA: HIV RNA: enter a number in copies/mL"):
        check_lab_value(HIVRNA, LabValue(value))


def test_censored_hivrna_accepted_at_the_protocol_limit() -> None:
    assert check_lab_value(HIVRNA, parse_lab_value("<50", "LAB.HIVRNA")) == (None, True, 50.0)
    assert check_lab_value(HIVRNA, LabValue(None, True)) == (None, True, 50.0)
    # a more sensitive assay's "<20" is also below 50
    assert check_lab_value(HIVRNA, parse_lab_value("<20", "LAB.HIVRNA")) == (None, True, 50.0)


def test_censored_above_the_protocol_limit_refused() -> None:
    # "<400" does not say the value is below 50: recording it as "<50" would invent data
    with pytest.raises(ValidationError) as info:
        check_lab_value(HIVRNA, parse_lab_value("<400", "LAB.HIVRNA"))
    assert info.value.field == "LAB.HIVRNA"
    assert "'<400' is not below the assay limit 50" in info.value.message


def test_censored_cd4_refused() -> None:
    with pytest.raises(ValidationError) as info:
        check_lab_value(CD4, parse_lab_value("<50", "LAB.CD4"))
    assert info.value.field == "LAB.CD4"
    assert "has no assay limit: enter the number" in info.value.message


@pytest.mark.parametrize(("value", "ok"), [(49.9, False), (1, False), (0, False), (50, True)])
def test_number_below_assay_limit_refused_with_hint(value: float, ok: bool) -> None:
    if ok:
        assert check_lab_value(HIVRNA, LabValue(float(value))) == (float(value), False, None)
        return
    with pytest.raises(ValidationError) as info:
        check_lab_value(HIVRNA, LabValue(float(value)))
    assert info.value.field == "LAB.HIVRNA"
    assert "below the assay limit 50 copies/mL: record it as '<50'" in info.value.message


def test_integer_item_needs_whole_numbers() -> None:
    item = FormItem(name="PLT", label="Platelets", type="integer", unit="10^9/L", min=0, max=2000)
    assert check_lab_value(item, LabValue(150.0)) == (150.0, False, None)
    with pytest.raises(ValidationError, match=r"LAB\.PLT: Platelets is a whole number, got 150\.5"):
        check_lab_value(item, LabValue(150.5))


@settings(max_examples=200, deadline=None)
@given(raw=st.one_of(st.text(max_size=8), st.floats(), st.integers()))
def test_any_entry_is_stored_valid_or_refused(raw: object) -> None:
    for item in (CD4, HIVRNA):
        try:
            value, below, limit = check_lab_value(item, parse_lab_value(raw, "LAB.X"))  # type: ignore[arg-type]
        except ValidationError:
            continue
        if below:
            assert value is None and limit == item.lower_limit
        else:
            assert value is not None and limit is None
            assert math.isfinite(value)
            assert (item.min or 0) <= value <= (item.max or math.inf)
            assert item.lower_limit is None or value >= item.lower_limit


# -- visit windows ---------------------------------------------------------------------------------
RAND = dt.date(2006, 1, 5)
CAL = participant_calendar(PROTOCOL, "IL2", RAND)


@pytest.mark.parametrize(
    ("code", "offset", "inside"),
    [
        ("WK04", 21, True),
        ("WK04", 20, False),
        ("WK04", 35, True),
        ("WK04", 36, False),
        ("WK32", 217, True),
        ("WK32", 216, False),
        ("WK32", 238, True),
        ("WK32", 239, False),
        ("ENTRY", 0, True),
        ("ENTRY", 1, False),
        ("ENTRY", -1, False),
        ("PRECYC2", 59, True),
        ("PRECYC2", 62, True),
        ("PRECYC2", 63, False),  # the first IL-2 day of cycle 2 is too late for pre-cycle labs
    ],
)
def test_visit_window_bounds(code: str, offset: int, inside: bool) -> None:
    visit = CAL.visit(code)
    day = RAND + offset * DAY
    if inside:
        assert check_visit_window(visit, day, None) is None
        return
    with pytest.raises(VisitWindowError) as info:
        check_visit_window(visit, day, None)
    assert info.value.field == "deviation_reason"
    msg = info.value.message
    assert visit.name in msg and visit.earliest.isoformat() in msg
    assert visit.latest.isoformat() in msg and day.isoformat() in msg and "reason" in msg
    assert isinstance(info.value, ValidationError)
    # with a reason it is saved: the deviation's description says how far outside
    described = check_visit_window(visit, day, "participant travelling")
    assert described is not None and day.isoformat() in described
    assert ("after the window closed" in described) == (day > visit.latest)


# -- dates -----------------------------------------------------------------------------------------
def test_date_not_future() -> None:
    today = dt.date(2009, 3, 1)
    check_date_not_future("visit_date", today, today)
    check_date_not_future("visit_date", today - DAY, today)
    with pytest.raises(ValidationError) as info:
        check_date_not_future("visit_date", today + DAY, today)
    assert info.value.field == "visit_date"
    assert "2009-03-02 is in the future" in info.value.message


def test_dates_in_order() -> None:
    a, b = dt.date(2006, 1, 1), dt.date(2006, 1, 2)
    check_dates_in_order("start_date", a, "end_date", b)
    check_dates_in_order("start_date", a, "end_date", a)
    with pytest.raises(ValidationError) as info:
        check_dates_in_order("start_date", b, "end_date", a)
    assert info.value.field == "end_date"
    assert info.value.message == "End date 2006-01-01 is before the start date 2006-01-02"
