"""Loading protocol files: the packaged one loads; a broken file is a ProtocolError naming it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from stalwart.errors import ProtocolError
from stalwart.protocol.load import default_protocol_path, load_protocol, parse_protocol


def test_packaged_protocol_loads_with_hash_of_its_bytes() -> None:
    path = default_protocol_path()
    loaded = load_protocol()
    assert loaded.source == str(path)
    assert loaded.text == path.read_text(encoding="utf-8")
    assert loaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert loaded.protocol.study.id == "STALWART"


def test_explicit_path_same_as_default(tmp_path: Path, packaged_text: str) -> None:
    copy = tmp_path / "copy.toml"
    copy.write_text(packaged_text, encoding="utf-8")
    loaded = load_protocol(copy)
    assert loaded.source == str(copy)
    assert loaded.sha256 == load_protocol().sha256
    assert loaded.protocol == load_protocol().protocol


def test_any_byte_change_changes_the_hash(packaged_text: str) -> None:
    a = parse_protocol(packaged_text)
    b = parse_protocol(packaged_text + "\n# a comment\n")
    assert a.protocol == b.protocol
    assert a.sha256 != b.sha256
    assert a.source == "<text>"


def _mutate(text: str, old: str, new: str) -> str:
    assert text.count(old) >= 1, f"{old!r} not in the packaged protocol"
    return text.replace(old, new, 1)


# (id, old text, new text, fragments the single problem must contain)
MUTATIONS = [
    (
        "unknown field",
        "[study]\n",
        '[study]\ncolour = "red"\n',
        ["study.colour", "unknown field"],
    ),
    (
        "missing field",
        "sample_size = 267",
        "",
        ["study.sample_size", "required field is missing"],
    ),
    (
        "bad type",
        "sample_size = 267",
        'sample_size = "many"',
        ["study.sample_size", "valid integer", "'many'"],
    ),
    (
        "bad literal",
        'blinding = "open-label"',
        'blinding = "triple-blind"',
        ["study.blinding", "'triple-blind'"],
    ),
    (
        "block size not a multiple of the ratio sum",
        "block_sizes = [3, 6]",
        "block_sizes = [3, 4]",
        ["randomization.block_sizes", "4 is not a multiple", "ratio sum 3"],
    ),
    (
        "two control arms",
        'ratio = 1\ntreatments = ["IL2"]',
        'ratio = 1\ncontrol = true\ntreatments = ["IL2"]',
        ["arms", "exactly one arm must have control = true"],
    ),
    (
        "analysis names an unknown arm",
        'comparisons = [["IL2", "NOTHER"], ["IL2ART", "NOTHER"]]',
        'comparisons = [["IL2", "PLACEBO"], ["IL2ART", "NOTHER"]]',
        ["analysis.CD4.comparisons", "unknown arm 'PLACEBO'"],
    ),
    (
        "endpoint visit unknown",
        'visit = "WK32"',
        'visit = "WK99"',
        ["endpoints.CD4.visit", "unknown visit 'WK99'"],
    ),
    (
        "overlapping windows",
        "day = 28\nwindow_before = 7",
        "day = 50\nwindow_before = 7",
        ["visits", "windows of WK04 and WK08 overlap"],
    ),
    (
        "negative window",
        "day = 84\nwindow_before = 7",
        "day = 84\nwindow_before = -1",
        ["visits.3.window_before", "greater than or equal to 0"],
    ),
    (
        "true for a number",
        "sample_size = 267",
        "sample_size = true",
        ["study.sample_size", "must be a number, not true"],
    ),
    (
        "quoted number",
        "sample_size = 267",
        'sample_size = "267"',
        ["study.sample_size", "without quotes"],
    ),
    (
        "follow-up windows overlap",
        "window_days = 14",
        "window_days = 56",
        ["follow_up.window_days", "overlap", "at most 55"],
    ),
    (
        "bad code pattern",
        'code = "GB01"',
        'code = "gb01"',
        ["sites.1.code", "'gb01'"],
    ),
]


@pytest.mark.parametrize(
    ("old", "new", "fragments"), [m[1:] for m in MUTATIONS], ids=[m[0] for m in MUTATIONS]
)
def test_invalid_file_names_the_field(
    tmp_path: Path, packaged_text: str, old: str, new: str, fragments: list[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(_mutate(packaged_text, old, new), encoding="utf-8")
    with pytest.raises(ProtocolError) as info:
        load_protocol(path)
    err = info.value
    assert err.source == str(path)
    assert len(err.problems) == 1, err.problems
    for fragment in fragments:
        assert fragment in err.problems[0]
        assert fragment in str(err)
    assert str(path) in str(err)


def test_every_problem_is_listed(tmp_path: Path, packaged_text: str) -> None:
    text = _mutate(packaged_text, "sample_size = 267", "sample_size = 0")
    text = _mutate(text, 'country = "USA"', 'country = "US"')
    with pytest.raises(ProtocolError) as info:
        parse_protocol(text)
    joined = "\n".join(info.value.problems)
    assert len(info.value.problems) == 2
    assert "study.sample_size" in joined and "sites.0.country" in joined


def test_field_and_cross_reference_problems_are_listed_in_one_run(packaged_text: str) -> None:
    """A wrong field does not hide a duplicate code or an unknown reference until the next run."""
    text = _mutate(packaged_text, "sample_size = 267", "sample_size = -3")
    text = _mutate(text, 'code = "GB01"', 'code = "US01"')
    text = _mutate(text, 'rule = { item = "hiv_positive"', 'rule = { item = "nonexistent"')
    with pytest.raises(ProtocolError) as info:
        parse_protocol(text)
    assert info.value.problems == [
        "study.sample_size: Input should be greater than 0 (got -3)",
        "sites: duplicate code 'US01'",
        "eligibility.IN1.rule.item: 'nonexistent' is not a screening item",
    ]


def test_a_section_with_a_wrong_field_is_not_cross_checked(packaged_text: str) -> None:
    """An invalid screening item leaves the rules on it unchecked: its fix may be the answer,
    so no reference problem is invented from it."""
    text = _mutate(packaged_text, 'name = "hiv_positive"', 'name = "HIV positive"')
    with pytest.raises(ProtocolError) as info:
        parse_protocol(text)
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith("screening_items.")


def test_cross_reference_problems_one_a_line(packaged_text: str) -> None:
    text = _mutate(packaged_text, 'code = "GB01"', 'code = "US01"')
    text = _mutate(text, 'rule = { item = "hiv_positive"', 'rule = { item = "nonexistent"')
    with pytest.raises(ProtocolError) as info:
        parse_protocol(text)
    assert info.value.problems == [
        "sites: duplicate code 'US01'",
        "eligibility.IN1.rule.item: 'nonexistent' is not a screening item",
    ]


def test_malformed_toml(tmp_path: Path, packaged_text: str) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(_mutate(packaged_text, "[study]", "[study"), encoding="utf-8")
    with pytest.raises(ProtocolError) as info:
        load_protocol(path)
    assert info.value.problems[0].startswith("not valid TOML")
    assert "line 10" in info.value.problems[0]


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ProtocolError) as info:
        load_protocol(path)
    assert info.value.source == str(path)
    assert info.value.problems == ["file not found: give the path of a protocol .toml"]


def test_unreadable_file(tmp_path: Path) -> None:
    latin = tmp_path / "latin1.toml"
    latin.write_bytes("[study]\ntitle = 'caf\u00e9'\n".encode("latin-1"))
    with pytest.raises(ProtocolError, match="cannot read the file"):
        load_protocol(latin)
    with pytest.raises(ProtocolError, match="cannot read the file"):
        load_protocol(tmp_path)  # a folder


def test_protocol_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="invalid protocol <text>"):
        parse_protocol("")
