"""Screening answers: validated against the protocol's screening items, then judged for eligibility.

Validation errors (a missing answer, a wrong type, a value out of range) are the site's input
mistakes and raise ``ValidationError``; failing a criterion is a legitimate outcome, returned as
the list of reasons so the screening log can hold it.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any

from stalwart.errors import ValidationError
from stalwart.protocol.schema import Protocol, Rule, ScreeningItem

__all__ = ["Answer", "evaluate_eligibility", "validate_screening_answers"]

Answer = bool | int | float | str

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "in": lambda a, b: a in b,
}


def _coerce(item: ScreeningItem, value: object) -> Answer:
    field = f"screening.{item.name}"
    if item.type == "boolean":
        if isinstance(value, bool):
            return value
        raise ValidationError(field, f"must be true or false, got {value!r}")
    if item.type in ("integer", "number"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValidationError(field, f"must be a number ({item.unit}), got {value!r}")
        if value != value:  # NaN
            raise ValidationError(field, "must be a number, got NaN")
        # is_integer() rather than int(value): int() of inf/NaN raises OverflowError/ValueError
        if item.type == "integer" and isinstance(value, float) and not value.is_integer():
            raise ValidationError(field, f"must be a whole number, got {value!r}")
        lo = item.min if item.min is not None else float("-inf")
        hi = item.max if item.max is not None else float("inf")
        if not lo <= value <= hi:
            raise ValidationError(
                field, f"{value} {item.unit or ''} is outside the valid range {lo:g} to {hi:g}"
            )
        return int(value) if item.type == "integer" else float(value)
    if not isinstance(value, str) or not value:
        raise ValidationError(field, f"must be a non-empty text, got {value!r}")
    if item.type == "choice" and item.choices is not None and value not in item.choices:
        raise ValidationError(field, f"{value!r} is not one of {item.choices}")
    return value


def validate_screening_answers(
    protocol: Protocol, answers: Mapping[str, object]
) -> dict[str, Answer]:
    """Check every required screening item is answered with a valid value (an optional one may be
    left out); unknown items are refused."""
    items = {i.name: i for i in protocol.screening_items}
    unknown = sorted(set(answers) - set(items))
    if unknown:
        raise ValidationError(
            f"screening.{unknown[0]}",
            f"not a screening item of this protocol; known: {sorted(items)}",
        )
    missing = [name for name, item in items.items() if item.required and name not in answers]
    if missing:
        raise ValidationError(f"screening.{missing[0]}", "is required: answer every screening item")
    return {name: _coerce(item, answers[name]) for name, item in items.items() if name in answers}


def _holds(rule: Rule, answers: Mapping[str, Answer]) -> bool:
    return bool(_OPS[rule.op](answers[rule.item], rule.value))


def evaluate_eligibility(protocol: Protocol, answers: Mapping[str, Answer]) -> list[str]:
    """The criteria the participant fails, as ``"ID: text"``; an empty list means eligible."""
    reasons = []
    for crit in protocol.eligibility:
        holds = _holds(crit.rule, answers)
        if (crit.kind == "inclusion" and not holds) or (crit.kind == "exclusion" and holds):
            prefix = "not met" if crit.kind == "inclusion" else "excluded"
            reasons.append(f"{crit.id} {prefix}: {crit.text}")
    return reasons
