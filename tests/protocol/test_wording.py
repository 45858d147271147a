"""Numbers, units and field names as people write them."""

from __future__ import annotations

import math

import pytest

from stalwart.protocol.wording import amount, label_of, number, value_range


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1e8, "100,000,000"),
        (-5.0, "-5"),
        (5000, "5,000"),
        (22.5, "22.5"),
        (0.125, "0.125"),
        (1234.5678, "1,234.5678"),
        (0.0, "0"),
        (-0.0, "0"),
        (1e-9, "0"),
        (math.inf, "inf"),
    ],
)
def test_numbers_as_people_write_them(value: float, text: str) -> None:
    assert number(value) == text
    assert "e+" not in number(value)


def test_amounts_and_ranges() -> None:
    assert amount(1e8, "copies/mL") == "100,000,000 copies/mL"
    assert amount(35, None) == "35"
    assert value_range(0, 1e8, "copies/mL") == "0 to 100,000,000 copies/mL"
    assert value_range(0, None, "years") == "at least 0 years"
    assert value_range(None, 5, None) == "at most 5"
    assert value_range(None, None, "%") is None


def test_fields_are_named_by_their_labels() -> None:
    assert label_of("consent_date") == "Date of informed consent"
    assert label_of("LAB.CD4", {"LAB.CD4": "CD4+ count (cells/mm3)"}) == "CD4+ count (cells/mm3)"
    assert label_of("LAB.CD4") == "CD4"  # no internal prefix even without the form's labels
    assert label_of("screening.prior_il2") == "Prior il2"
