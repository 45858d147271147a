"""Permuted blocks with random block sizes: balance, sizes, reproducibility."""

from __future__ import annotations

from collections import Counter
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stalwart.errors import ConfigurationError
from stalwart.randomization.blocks import Slot, permuted_blocks

ARMS = [("NOTHER", 1), ("IL2", 1), ("IL2ART", 1)]


def _blocks(slots: list[Slot]) -> dict[int, list[Slot]]:
    out: dict[int, list[Slot]] = {}
    for s in slots:
        out.setdefault(s.block, []).append(s)
    return out


def test_each_block_exactly_balanced_with_an_allowed_size() -> None:
    slots = permuted_blocks(ARMS, [3, 6], 300, np.random.default_rng(1))
    blocks = _blocks(slots)
    assert list(blocks) == list(range(1, len(blocks) + 1))
    for block in blocks.values():
        size = block[0].block_size
        assert size in (3, 6)
        assert len(block) == size
        assert all(s.block_size == size for s in block)
        assert Counter(s.arm for s in block) == {a: size // 3 for a, _ in ARMS}
    assert {b[0].block_size for b in blocks.values()} == {3, 6}  # both sizes are drawn


def test_length_is_whole_blocks_at_least_the_minimum() -> None:
    for length in (1, 2, 3, 4, 7, 300):
        slots = permuted_blocks(ARMS, [3, 6], length, np.random.default_rng(length))
        assert length <= len(slots) < length + 6
        assert [s.sequence for s in slots] == list(range(1, len(slots) + 1))
        last = _blocks(slots)[slots[-1].block]
        assert len(last) == last[0].block_size  # the last block is completed, never cut


def test_reproducible_per_seed_and_seeds_differ() -> None:
    a = permuted_blocks(ARMS, [3, 6], 60, np.random.default_rng(42))
    b = permuted_blocks(ARMS, [3, 6], 60, np.random.default_rng(42))
    c = permuted_blocks(ARMS, [3, 6], 60, np.random.default_rng(43))
    assert a == b
    assert [s.arm for s in a] != [s.arm for s in c]


def test_order_within_blocks_is_random() -> None:
    slots = permuted_blocks(ARMS, [3], 300, np.random.default_rng(7))
    orders = Counter(tuple(s.arm for s in b) for b in _blocks(slots).values())
    assert len(orders) == 6  # all 3! orders of a block of 3 occur in 100 blocks


def test_unequal_ratios() -> None:
    arms = [("A", 2), ("B", 1)]
    slots = permuted_blocks(arms, [3, 6], 90, np.random.default_rng(3))
    for block in _blocks(slots).values():
        size = block[0].block_size
        assert Counter(s.arm for s in block) == {"A": 2 * size // 3, "B": size // 3}


@pytest.mark.parametrize(
    ("arms", "sizes", "length", "fragment"),
    [
        (ARMS, [3, 4], 10, "block sizes [3, 4] must be positive multiples of the ratio sum 3"),
        (ARMS, [0], 10, "must be positive multiples"),
        (ARMS, [-3], 10, "must be positive multiples"),
        (ARMS, [], 10, "must be positive multiples"),
        ([("A", 1), ("B", 0)], [2], 10, "ratios must be positive"),
        ([("A", -1), ("B", 2)], [1], 10, "ratios must be positive"),
        ([], [3], 10, "ratios must be positive"),
        (ARMS, [3], 0, "list length must be positive, got 0"),
        (ARMS, [3], -5, "list length must be positive, got -5"),
    ],
)
def test_bad_configuration(
    arms: list[tuple[str, int]], sizes: list[int], length: int, fragment: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        permuted_blocks(arms, sizes, length, np.random.default_rng(0))
    assert fragment in str(info.value)


arm_sets = st.lists(st.integers(min_value=1, max_value=3), min_size=2, max_size=4).map(
    lambda ratios: [(f"A{i}", r) for i, r in enumerate(ratios)]
)


@settings(max_examples=200, deadline=None)
@given(
    arms=arm_sets,
    multiples=st.lists(st.integers(min_value=1, max_value=3), min_size=1, max_size=3),
    seed=st.integers(min_value=0, max_value=2**63),
    length=st.integers(min_value=1, max_value=120),
)
def test_imbalance_never_exceeds_a_largest_block(
    arms: list[tuple[str, int]], multiples: list[int], seed: int, length: int
) -> None:
    total = sum(r for _, r in arms)
    sizes = [m * total for m in multiples]
    slots = permuted_blocks(arms, sizes, length, np.random.default_rng(seed))
    ratio = dict(arms)
    bound = Fraction(max(sizes), total)
    counts: Counter[str] = Counter()
    for n, slot in enumerate(slots, start=1):
        counts[slot.arm] += 1
        # counts per unit of ratio never differ by more than one largest block's share
        scaled = [Fraction(counts[a], ratio[a]) for a, _ in arms]
        assert max(scaled) - min(scaled) <= bound
        if n == len(slots) or slots[n].block != slot.block:  # end of a block: exact balance
            assert len(set(scaled)) == 1
    assert {s.block_size for s in slots} <= set(sizes)


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32), prefix=st.integers(1, 300))
def test_three_arms_imbalance_at_most_two(seed: int, prefix: int) -> None:
    slots = permuted_blocks(ARMS, [3, 6], 300, np.random.default_rng(seed))
    counts = Counter(s.arm for s in slots[:prefix])
    n = [counts[a] for a, _ in ARMS]
    assert max(n) - min(n) <= 6 // 3
