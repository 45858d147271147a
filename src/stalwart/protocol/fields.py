"""The pieces every model of a protocol file is built from: codes, strict numbers, checks.

:class:`ProtocolModel` is the base of each table of a protocol file (:mod:`~.schema`,
:mod:`~.analysis_plan`): unknown keys refused, models frozen, and a value that is no number where a
number is asked for refused with the key named (pydantic alone would read ``true`` as 1).
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

__all__ = [
    "UNSCHEDULED_PREFIX",
    "Code",
    "ProtocolModel",
    "check_item_bounds",
    "duplicates",
    "visit_codes",
]

Code = Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]{0,19}$")]
"""An upper-case identifier, as CDISC codes are (ARMCD, VISIT codes, PARAMCD): at most 20 chars."""


def _leaves(annotation: Any) -> set[Any]:
    """The plain types a field admits: unions and ``Annotated`` unwrapped."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _leaves(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return set().union(*(_leaves(a) for a in typing.get_args(annotation)))
    return {annotation}


def _number_problem(annotation: Any, value: Any) -> str | None:
    """Why ``value`` is no number where ``annotation`` asks only for one (None: no objection).

    Pydantic's lax mode reads ``true`` as 1 and ``"3"`` as 3; in a protocol file either is
    almost surely a slip (a value pasted into the wrong key), so it is refused, naming the key.
    """
    leaves = _leaves(annotation)
    numbers = leaves - {type(None)}
    if not numbers or not numbers <= {int, float}:
        if len(numbers) == 1 and typing.get_origin(next(iter(numbers))) is list:
            (inner,) = typing.get_args(next(iter(numbers))) or (Any,)
            if isinstance(value, list):
                for item in value:
                    problem = _number_problem(inner, item)
                    if problem:
                        return problem
        return None
    if isinstance(value, bool):
        return f"must be a number, not {str(value).lower()}"
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return None  # not read as a number anyway: pydantic's own message says so
        return f"must be a number, not the text {value!r} (write it without quotes)"
    return None


class ProtocolModel(BaseModel):
    """A table of a protocol file: no unknown keys, frozen, numbers that are numbers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """Refuse true/false or quoted text where a number is asked for."""
        if info.field_name is not None:
            problem = _number_problem(cls.model_fields[info.field_name].annotation, value)
            if problem:
                raise ValueError(problem)
        return value


def duplicates(where: str, values: list[str]) -> list[str]:
    """One problem per code that ``values`` hold more than once."""
    seen: set[str] = set()
    dup = sorted({v for v in values if v in seen or seen.add(v)})  # type: ignore[func-returns-value]
    return [f"{where}: duplicate code {d!r}" for d in dup]


UNSCHEDULED_PREFIX = "UNS"
"""Unscheduled visits are coded ``UNS01``, ``UNS02``... per participant: no planned visit's code
may start with it."""


def visit_codes(codes: list[str]) -> list[str]:
    """The problems of the planned visits' codes: duplicates, or the unscheduled visits' prefix."""
    reserved = [
        f"visits: code {c!r} starts with {UNSCHEDULED_PREFIX!r}, reserved for unscheduled visits"
        for c in codes
        if c.startswith(UNSCHEDULED_PREFIX)
    ]
    return duplicates("visits", codes) + reserved


def check_item_bounds(
    name: str, type_: str, lo: float | None, hi: float | None, choices: list[Any] | None
) -> None:
    """Refuse an item whose range is reversed or a choice item without choices."""
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"{name}: min {lo} is greater than max {hi}")
    if type_ == "choice" and not choices:
        raise ValueError(f"{name}: a choice item needs choices")
