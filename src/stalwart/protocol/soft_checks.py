"""Soft checks: plausibility rules of the protocol's ``[[soft_checks]]`` that query, never refuse.

A hard edit check (a valid range) refuses a value that cannot be right. A soft check flags a
value that is possible but unlikely, so the value is saved and a query asks the site to confirm
it (``capture.soft_checks`` raises it). Kinds:

* ``lab_change``: a LAB item changes between consecutive visits by more than both
  ``max_change`` (in the item's unit) and ``max_change_percent`` of the earlier value. Both, so
  that small values' natural relative noise and large values' natural absolute noise stay quiet.
* ``lab_ratio``: ``item`` / (``percent_item`` / 100) (for CD4 count and CD4 percent: the total
  lymphocyte count implied) outside ``[min_ratio, max_ratio]``: the two results of one sample
  disagree.
* ``date_after_start``: a visit date (or the participant's consent date) before the study's
  ``accrual_start``.

Each check has a ``name`` (the query's raiser is ``system: soft check <name>``) and a ``message``
the site reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import Field, model_validator

from stalwart.protocol.fields import Code, ProtocolModel

__all__ = ["SoftCheck", "soft_check_problems"]

_Message = Annotated[str, Field(min_length=1, max_length=400)]


_KEYS: dict[str, tuple[str, ...]] = {
    "lab_change": ("item", "max_change", "max_change_percent"),
    "lab_ratio": ("item", "percent_item", "min_ratio", "max_ratio"),
    "date_after_start": (),
}
"""The keys each kind needs (and the only optional keys it takes)."""

_OPTIONAL = ("item", "percent_item", "max_change", "max_change_percent", "min_ratio", "max_ratio")


class SoftCheck(ProtocolModel):
    """One ``[[soft_checks]]`` entry; which keys it needs depends on its ``kind``."""

    kind: Literal["lab_change", "lab_ratio", "date_after_start"]
    name: Code
    message: _Message
    item: Code | None = None
    percent_item: Code | None = None
    max_change: float | None = Field(default=None, gt=0)
    max_change_percent: float | None = Field(default=None, gt=0)
    min_ratio: float | None = Field(default=None, gt=0)
    max_ratio: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _keys_of_kind(self) -> SoftCheck:
        needed = _KEYS[self.kind]
        missing = [k for k in needed if getattr(self, k) is None]
        extra = [k for k in _OPTIONAL if k not in needed and getattr(self, k) is not None]
        problems = [f"{k}: a {self.kind} check needs it" for k in missing]
        problems += [f"{k}: not a key of a {self.kind} check (it takes {needed})" for k in extra]
        low, high = self.min_ratio, self.max_ratio
        if low is not None and high is not None and low >= high:
            problems.append(f"min_ratio: {low} must be below max_ratio ({high})")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def soft_check_problems(checks: Sequence[SoftCheck], lab_items: Sequence[str]) -> list[str]:
    """Duplicate check names, and LAB items the protocol lacks, each naming the key."""
    problems: list[str] = []
    seen: set[str] = set()
    labs = set(lab_items)
    for index, check in enumerate(checks):
        where = f"soft_checks.{index}"
        if check.name in seen:
            problems.append(f"{where}.name: {check.name!r} is used by an earlier soft check")
        seen.add(check.name)
        for key in ("item", "percent_item"):
            name = getattr(check, key, None)
            if name is not None and name not in labs:
                problems.append(
                    f"{where}.{key}: no LAB item {name!r} (items: {', '.join(sorted(labs))})"
                )
    return problems
