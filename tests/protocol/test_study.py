"""The study table: the screening-number format a site's numbers are written in."""

from __future__ import annotations

import pytest

from stalwart.protocol.load import load_protocol
from stalwart.protocol.study import ProtocolProblems, Study

STUDY = load_protocol().protocol.study


def test_screening_numbers_in_the_protocol_format() -> None:
    assert STUDY.screening_number("US01", 31) == "US01-S0031"
    other = STUDY.model_copy(update={"screening_number_format": "SCR-{site}-{seq:03d}"})
    assert other.screening_number("GB01", 7) == "SCR-GB01-007"


@pytest.mark.parametrize("fmt", ["{site}", "{seq}{other}", "{seq:z}", "{seq}" + "x" * 40])
def test_a_format_that_cannot_number_is_refused(fmt: str) -> None:
    data = STUDY.model_dump() | {"screening_number_format": fmt}
    with pytest.raises(ValueError, match=r"screening_number_format|must use|not a valid|longer"):
        Study.model_validate(data)


def test_protocol_problems_keep_each_problem() -> None:
    error = ProtocolProblems(["a: one", "b: two"])
    assert error.problems == ["a: one", "b: two"] and str(error) == "a: one; b: two"
