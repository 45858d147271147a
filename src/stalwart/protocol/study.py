"""The study's identity and calendar bounds, its arms and its sites (tables of a protocol file),
and the error that lists a protocol's cross-reference problems one a line."""

from __future__ import annotations

import datetime as dt
import string
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from stalwart.protocol.fields import Code, ProtocolModel

__all__ = ["Arm", "ProtocolProblems", "Site", "Study"]


class Study(ProtocolModel):
    """Identity, design and calendar bounds of the study."""

    id: Code
    title: str
    version: str
    registry_ids: list[str] = Field(default_factory=list)
    phase: str
    design: str
    blinding: Literal["open-label", "single-blind", "double-blind"]
    sample_size: int = Field(gt=0)
    accrual_start: dt.date
    accrual_end: dt.date
    follow_up_end: dt.date
    screening_number_format: str = "{site}-S{seq:04d}"
    """How a site's screening numbers are written: ``{site}`` is the site code, ``{seq}`` the
    site's running number (``{seq:04d}``: four digits). The system assigns them, so a screening
    number never looks like a participant id (``STUDY-SITE-0003``) by chance."""

    @field_validator("screening_number_format")
    @classmethod
    def _formats_a_number(cls, value: str) -> str:
        fields = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        if "seq" not in fields or not fields <= {"site", "seq"}:
            raise ValueError(
                f"{value!r} must use {{seq}} (the running number) and may use {{site}}, no "
                'other field; e.g. "{site}-S{seq:04d}"'
            )
        try:
            example = value.format(site="SITE01", seq=1)
        except (ValueError, IndexError) as exc:
            raise ValueError(f"{value!r} is not a valid format: {exc}") from None
        if not example.strip() or len(value.format(site="SITE01", seq=10**6)) > 40:
            raise ValueError(f"{value!r} writes numbers longer than 40 characters")
        return value

    def screening_number(self, site: str, seq: int) -> str:
        """The ``seq``-th screening number of ``site``."""
        return self.screening_number_format.format(site=site, seq=seq)

    @model_validator(mode="after")
    def _dates_in_order(self) -> Study:
        if not self.accrual_start <= self.accrual_end <= self.follow_up_end:
            raise ValueError(
                "dates must satisfy accrual_start <= accrual_end <= follow_up_end; "
                f"got {self.accrual_start}, {self.accrual_end}, {self.follow_up_end}"
            )
        return self


class Arm(ProtocolModel):
    """One randomized arm; ``treatments`` names entries of the protocol's ``treatments`` table."""

    code: Code
    name: str
    ratio: int = Field(ge=1)
    control: bool = False
    treatments: list[Code] = Field(default_factory=list)


class Site(ProtocolModel):
    """A participating site; ``country`` is ISO 3166-1 alpha-3 (CDISC DM.COUNTRY)."""

    code: Code
    name: str
    country: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]


class ProtocolProblems(ValueError):
    """The cross-reference problems of a protocol, each its own line of the error."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))
