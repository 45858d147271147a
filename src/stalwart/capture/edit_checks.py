"""Edit checks: the rules a value must pass before the store accepts it.

Pure functions over protocol definitions and plain values, so they are tested without a database
and reused by the web forms. Each failure raises ``ValidationError`` naming the field and saying
what is allowed.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass

from stalwart.errors import ValidationError, VisitWindowError
from stalwart.protocol.calendar import ScheduledVisit
from stalwart.protocol.schema import FormItem
from stalwart.protocol.wording import amount, label_of, number, value_range

__all__ = [
    "LabValue",
    "check_date_not_future",
    "check_dates_in_order",
    "check_lab_value",
    "check_visit_window",
    "parse_lab_value",
]

_CENSORED = re.compile(r"^\s*<\s*([0-9]+(?:\.[0-9]+)?)\s*$")


@dataclass(frozen=True)
class LabValue:
    """A laboratory result as entered: a number, or below the assay limit (censored).

    ``limit`` is the limit the result was reported with (the 400 of ``"<400"``), when known.
    """

    value: float | None
    below_limit: bool = False
    limit: float | None = None


def parse_lab_value(raw: LabValue | float | int | str | None, field: str) -> LabValue:
    """Accept ``LabValue``, a number, a numeric string, or ``"<50"`` for below the assay limit."""
    if isinstance(raw, LabValue):
        return raw
    if raw is None:
        raise ValidationError(field, "a value is required")
    if isinstance(raw, bool):
        raise ValidationError(field, f"must be a number, got {raw!r}")
    if isinstance(raw, int | float):
        return LabValue(float(raw))
    match = _CENSORED.match(raw)
    if match:
        return LabValue(None, below_limit=True, limit=float(match.group(1)))
    try:
        return LabValue(float(raw))
    except ValueError:
        raise ValidationError(
            field, f"{raw!r} is not a number; enter e.g. 450, or '<50' below the assay limit"
        ) from None


def check_lab_value(item: FormItem, entered: LabValue) -> tuple[float | None, bool, float | None]:
    """Validate one result against its form item; returns ``(value, below_limit, limit)``.

    Messages use the numbers and units as people write them (``100,000,000 copies/mL``).
    """
    field = f"LAB.{item.name}"
    if entered.below_limit:
        if item.lower_limit is None:
            raise ValidationError(field, f"{item.label} has no assay limit: enter the number")
        if entered.limit is not None and entered.limit > item.lower_limit:
            # "<400" does not say the value is below 50: storing it as "<50" would invent data
            raise ValidationError(
                field,
                f"'<{number(entered.limit)}' is not below the assay limit "
                f"{amount(item.lower_limit, item.unit)} of this protocol; enter a result "
                f"measured down to {number(item.lower_limit)}",
            )
        return None, True, item.lower_limit
    value = entered.value
    if value is None or not math.isfinite(value):
        raise ValidationError(field, f"{item.label}: enter a number in {item.unit}")
    lo = item.min if item.min is not None else -math.inf
    hi = item.max if item.max is not None else math.inf
    if not lo <= value <= hi:
        allowed = value_range(item.min, item.max, item.unit)
        raise ValidationError(
            field,
            f"{amount(value, item.unit)} is outside the valid range {allowed}; "
            "check the units and the number",
        )
    if item.lower_limit is not None and value < item.lower_limit:
        raise ValidationError(
            field,
            f"{amount(value, item.unit)} is below the assay limit "
            f"{amount(item.lower_limit, item.unit)}: record it as '<{number(item.lower_limit)}'",
        )
    if item.type == "integer" and value != int(value):
        raise ValidationError(field, f"{item.label} is a whole number, got {number(value)}")
    return value, False, None


def check_visit_window(visit: ScheduledVisit, day: dt.date, reason: str | None) -> str | None:
    """A visit dated outside its protocol window needs a reason: it is saved as a deviation.

    Returns the deviation's description when ``day`` is out of the window (``reason`` given),
    None when it is in the window; without a reason an out-of-window date is refused, saying
    what the window is and what to do.
    """
    if visit.in_window(day):
        return None
    late = (day - visit.latest).days
    early = (visit.earliest - day).days
    off = (day - visit.target).days
    how = (
        f"{off} days after its target, {late} after the window closed"
        if late > 0
        else f"{-off} days before its target, {early} before the window opened"
    )
    description = (
        f"{visit.name} on {day.isoformat()}, {how} (window {visit.earliest.isoformat()} to "
        f"{visit.latest.isoformat()}, target {visit.target.isoformat()})"
    )
    if reason is None or not reason.strip():
        raise VisitWindowError(
            "deviation_reason",
            f"The visit date is outside the window: {description}. Give the reason the visit "
            "was out of window; it is saved and logged as a protocol deviation.",
        )
    return description


def check_date_not_future(field: str, day: dt.date, today: dt.date) -> None:
    """A date of something that happened cannot be after today."""
    if day > today:
        raise ValidationError(
            field, f"{label_of(field)} {day.isoformat()} is in the future (today is {today})"
        )


def check_dates_in_order(
    first_field: str, first: dt.date, second_field: str, second: dt.date
) -> None:
    """``first`` must not come after ``second``."""
    if first > second:
        raise ValidationError(
            second_field,
            f"{label_of(second_field)} {second.isoformat()} is before the "
            f"{label_of(first_field).lower()} {first.isoformat()}",
        )
