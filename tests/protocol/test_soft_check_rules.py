"""The protocol's ``[[soft_checks]]``: the packaged ones load; a bad entry is refused by its key."""

from __future__ import annotations

import pytest

from stalwart.errors import ProtocolError
from stalwart.protocol.load import parse_protocol

CHANGE = """
[[soft_checks]]
kind = "lab_change"
name = "JUMP"
item = "CD4"
max_change = 400
max_change_percent = 50
message = "check it"
"""


def test_the_packaged_protocol_declares_its_soft_checks(packaged_text: str) -> None:
    checks = parse_protocol(packaged_text).protocol.soft_checks
    assert {c.kind for c in checks} == {"lab_change", "lab_ratio", "date_after_start"}
    assert all(c.message for c in checks)


def test_a_protocol_without_soft_checks_has_none(packaged_text: str) -> None:
    text = packaged_text[: packaged_text.index("# Soft checks:")]
    assert parse_protocol(text).protocol.soft_checks == []


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('item = "CD4"\n', 'item = "CD8"\n', r"soft_checks\.\d+\.item: no LAB item 'CD8'"),
        ("max_change = 400\n", "", r"soft_checks\.\d+.*max_change: a lab_change check needs it"),
        ("max_change = 400\n", "max_change = -4\n", r"soft_checks\.\d+\.max_change"),
        ("max_change = 400\n", 'max_change = "400"\n', r"soft_checks\.\d+\.max_change"),
        ('kind = "lab_change"', 'kind = "lab_jump"', r"soft_checks\.\d+\.kind"),
        ('name = "JUMP"', 'name = "CD4_CHANGE"', r"'CD4_CHANGE' is used by an earlier"),
        ('message = "check it"\n', "", r"soft_checks\.\d+\.message"),
        ("max_change = 400\n", "max_change = 400\nmin_ratio = 3\n", "min_ratio: not a key of"),
        ("max_change = 400\n", "max_change = 400\ncolour = 3\n", r"soft_checks\.\d+\.colour"),
    ],
)
def test_a_bad_soft_check_is_refused_naming_the_key(
    packaged_text: str, old: str, new: str, expected: str
) -> None:
    assert old in CHANGE
    with pytest.raises(ProtocolError, match=expected):
        parse_protocol(packaged_text + CHANGE.replace(old, new))


def test_a_ratio_check_needs_its_bounds_in_order(packaged_text: str) -> None:
    text = packaged_text.replace("min_ratio = 300", "min_ratio = 7000")
    with pytest.raises(ProtocolError, match=r"min_ratio: 7000.0 must be below max_ratio"):
        parse_protocol(text)
    text = packaged_text.replace('percent_item = "CD4PCT"', 'percent_item = "CD8PCT"')
    with pytest.raises(ProtocolError, match=r"soft_checks\.1\.percent_item: no LAB item"):
        parse_protocol(text)
