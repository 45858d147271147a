"""Screening answers: validated against the protocol's screening items, then judged for eligibility.

Validation errors (a missing answer, a wrong type, a value out of range) are the site's input
mistakes and raise ``ValidationError``; failing a criterion is a legitimate outcome, returned as
the list of reasons so the screening log can hold it.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any

from stalwart.errors import FieldErrors, ValidationError
from stalwart.protocol.schema import Protocol, Rule, ScreeningItem
from stalwart.protocol.wording import amount, number, value_range

__all__ = [
    "Answer",
    "check_screening_answers",
    "evaluate_eligibility",
    "validate_screening_answers",
]

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
    unit = f" in {item.unit}" if item.unit else ""
    if item.type == "boolean":
        if isinstance(value, bool):
            return value
        raise ValidationError(field, f"{item.label}: answer yes or no, got {value!r}")
    if item.type in ("integer", "number"):
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            raise ValidationError(field, f"{item.label}: enter a number{unit}, got {value!r}")
        # is_integer() rather than int(value): int() of inf/NaN raises OverflowError/ValueError
        if item.type == "integer" and isinstance(value, float) and not value.is_integer():
            raise ValidationError(field, f"{item.label} is a whole number, got {number(value)}")
        lo = item.min if item.min is not None else float("-inf")
        hi = item.max if item.max is not None else float("inf")
        if not lo <= value <= hi:
            shown = amount(value, item.unit) if abs(value) < 1e15 else "that number"
            raise ValidationError(
                field,
                f"{shown} is outside the valid range {value_range(item.min, item.max, item.unit)}",
            )
        return int(value) if item.type == "integer" else float(value)
    if not isinstance(value, str) or not value:
        raise ValidationError(field, f"{item.label}: an answer is required")
    if item.type == "choice" and item.choices is not None and value not in item.choices:
        raise ValidationError(
            field, f"{value!r} is not an answer of {item.label}; choose one of {item.choices}"
        )
    return value


def validate_screening_answers(
    protocol: Protocol, answers: Mapping[str, object]
) -> dict[str, Answer]:
    """Check every required screening item is answered with a valid value (an optional one may be
    left out); unknown items are refused. Every wrong answer is reported at once."""
    return check_screening_answers(protocol, answers, partial=False)


def check_screening_answers(
    protocol: Protocol, answers: Mapping[str, object], *, partial: bool
) -> dict[str, Answer]:
    """``validate_screening_answers``, every wrong answer at once (one ``FieldErrors``);
    ``partial``: a missing answer is not an error (a form whose other fields failed first)."""
    items = {i.name: i for i in protocol.screening_items}
    problems: list[ValidationError] = [
        ValidationError(
            f"screening.{name}", f"not a screening item of this protocol; known: {sorted(items)}"
        )
        for name in sorted(set(answers) - set(items))
    ]
    values: dict[str, Answer] = {}
    for name, item in items.items():
        if name not in answers:
            if item.required and not partial:
                problems.append(
                    ValidationError(f"screening.{name}", f"{item.label}: an answer is required")
                )
            continue
        try:
            values[name] = _coerce(item, answers[name])
        except ValidationError as exc:
            problems.append(exc)
    if error := FieldErrors.collect(problems):
        raise error
    return values


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
