"""Allocation lists per stratum from one seed; stratum keys; the seed fingerprint."""

from __future__ import annotations

import hashlib
import tomllib
from collections import Counter
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stalwart.errors import ConfigurationError, ValidationError
from stalwart.protocol.load import load_protocol
from stalwart.protocol.schema import Protocol
from stalwart.randomization.allocation import (
    allocation_lists,
    seed_fingerprint,
    seed_matches,
    stratum_key,
    stratum_levels,
)

PROTOCOL: Protocol = load_protocol().protocol
SITES = [s.code for s in PROTOCOL.sites]


def _variant(**changes: Any) -> Protocol:
    data = tomllib.loads(load_protocol().text)
    for path, value in changes.items():
        section, field = path.split("__")
        data[section][field] = value
    return Protocol.model_validate(data)


def test_one_list_per_site_in_protocol_order() -> None:
    lists = allocation_lists(PROTOCOL, 1)
    assert list(lists) == [f"site={s}" for s in SITES]
    for slots in lists.values():
        assert 300 <= len(slots) < 306
        assert [s.sequence for s in slots] == list(range(1, len(slots) + 1))
        counts = Counter(s.arm for s in slots)
        assert set(counts) == {"NOTHER", "IL2", "IL2ART"}
        assert len(set(counts.values())) == 1  # whole blocks: exactly balanced overall


def test_reproducible_and_seed_sensitive() -> None:
    a = allocation_lists(PROTOCOL, 20051201)
    assert a == allocation_lists(PROTOCOL, 20051201)
    b = allocation_lists(PROTOCOL, 20051202)
    assert all([s.arm for s in a[k]] != [s.arm for s in b[k]] for k in a)


def test_strata_draw_from_distinct_streams() -> None:
    lists = allocation_lists(PROTOCOL, 5)
    arms = {tuple(s.arm for s in slots) for slots in lists.values()}
    assert len(arms) == len(lists)


def test_each_stratum_uses_the_seed_and_its_index() -> None:
    from stalwart.randomization.blocks import permuted_blocks

    lists = allocation_lists(PROTOCOL, 9)
    arms = [(a.code, a.ratio) for a in PROTOCOL.arms]
    expected = permuted_blocks(arms, [3, 6], 300, np.random.default_rng([9, 4]))
    assert lists["site=PL01"] == expected


def test_adding_a_site_at_the_end_keeps_existing_lists() -> None:
    sites = [s.model_dump() for s in PROTOCOL.sites]
    data = tomllib.loads(load_protocol().text)
    data["sites"] = [*sites, {"code": "ZA01", "name": "Cape Town", "country": "ZAF"}]
    extended = Protocol.model_validate(data)
    before = allocation_lists(PROTOCOL, 77)
    after = allocation_lists(extended, 77)
    assert list(after) == [*before, "site=ZA01"]
    assert all(after[k] == before[k] for k in before)


def test_list_length_follows_the_protocol() -> None:
    short = _variant(randomization__list_length_per_stratum=4)
    for slots in allocation_lists(short, 3).values():
        assert len(slots) in (6, 9)  # whole blocks of 3 or 6 reaching at least 4


@pytest.mark.parametrize("seed", [-1, -(2**40), 1.5, "7", None, True])
def test_bad_seed(seed: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        allocation_lists(PROTOCOL, seed)
    assert "seed must be a non-negative integer" in str(info.value)
    assert repr(seed) in str(info.value)


def test_numpy_integer_seed_is_the_same_seed() -> None:
    assert allocation_lists(PROTOCOL, np.int64(12)) == allocation_lists(PROTOCOL, 12)  # type: ignore[arg-type]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**64), prefix=st.integers(1, 300))
def test_every_prefix_of_every_list_nearly_balanced(seed: int, prefix: int) -> None:
    total = sum(a.ratio for a in PROTOCOL.arms)
    bound = max(PROTOCOL.randomization.block_sizes) // total
    for slots in allocation_lists(PROTOCOL, seed).values():
        counts = Counter(s.arm for s in slots[:prefix])
        n = [counts[a] for a in PROTOCOL.arm_codes]
        assert max(n) - min(n) <= bound


def test_seed_fingerprint_is_salted_and_slow() -> None:
    salt = bytes(range(16))
    fp = seed_fingerprint(20051201, salt)
    assert len(fp) == 64 and fp.startswith(salt.hex())
    assert seed_matches(20051201, fp) and not seed_matches(20051202, fp)
    assert fp != seed_fingerprint(20051201, bytes(16))  # another salt, another fingerprint
    assert "20051201" not in fp
    assert not seed_matches(1, "not hex") and not seed_matches(1, "ab")


@pytest.mark.parametrize("seed", [0, 1, 7, 20051201])
def test_the_old_unsalted_formula_cannot_match_a_stored_fingerprint(seed: int) -> None:
    """The earlier fingerprint, SHA-256 of a public prefix and the seed, gave seed 0 away in
    microseconds; recomputing it over the small seeds finds nothing now."""
    fp = seed_fingerprint(seed, bytes.fromhex("5a" * 16))
    old = {
        hashlib.sha256(f"stalwart-randomization-seed:{s}".encode()).hexdigest()
        for s in range(100_000)
    }
    assert fp not in old
    assert fp[32:] not in {h[:32] for h in old} and fp[32:] not in {h[32:] for h in old}
    assert seed_matches(seed, fp)


# -- strata ----------------------------------------------------------------------------------------
def test_site_stratum_key() -> None:
    assert stratum_levels(PROTOCOL) == [("site", SITES)]
    assert stratum_key(PROTOCOL, "GB01", {"sex": "F"}) == "site=GB01"
    with pytest.raises(ValidationError) as info:
        stratum_key(PROTOCOL, "XX01", {})
    assert info.value.field == "site"


def test_stratification_on_choice_and_boolean_items() -> None:
    two = _variant(randomization__strata=["site", "sex", "prior_aids"])
    levels = stratum_levels(two)
    assert levels == [("site", SITES), ("sex", ["F", "M"]), ("prior_aids", ["true", "false"])]
    lists = allocation_lists(two, 1)
    assert len(lists) == len(SITES) * 2 * 2
    assert next(iter(lists)) == "site=US01|sex=F|prior_aids=true"
    key = stratum_key(two, "DE01", {"sex": "M", "prior_aids": False})
    assert key == "site=DE01|sex=M|prior_aids=false"
    assert key in lists
    with pytest.raises(ValidationError) as info:
        stratum_key(two, "DE01", {"sex": "X", "prior_aids": False})
    assert info.value.field == "sex"


def test_stratification_on_a_number_item_is_refused() -> None:
    bad = _variant(randomization__strata=["site", "cd4"])
    with pytest.raises(ConfigurationError, match="'cd4' is a number item"):
        allocation_lists(bad, 1)
