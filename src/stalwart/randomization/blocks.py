"""Permuted blocks with random block sizes: the allocation list of one stratum.

Each block holds every arm ``ratio * size / sum(ratios)`` times in random order, so the list is
exactly balanced at the end of every block and at most half a block out of balance anywhere. The
block size is drawn uniformly from the allowed sizes, which keeps the next allocation hard to
guess for a site that knows the design.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stalwart.errors import ConfigurationError

__all__ = ["Slot", "permuted_blocks"]


@dataclass(frozen=True)
class Slot:
    """One position of an allocation list."""

    sequence: int
    block: int
    block_size: int
    arm: str


def permuted_blocks(
    arms: Sequence[tuple[str, int]],
    block_sizes: Sequence[int],
    length: int,
    rng: np.random.Generator,
) -> list[Slot]:
    """A list of at least ``length`` slots made of whole permuted blocks.

    Parameters
    ----------
    arms
        ``(arm code, ratio)`` pairs, e.g. ``[("NOTHER", 1), ("IL2", 1), ("IL2ART", 1)]``.
    block_sizes
        Allowed block sizes, each a multiple of the ratio sum.
    length
        Minimum number of slots; the last block is completed, never cut.
    rng
        The source of randomness (seeded by the caller for reproducibility).
    """
    total = sum(r for _, r in arms)
    if total <= 0 or any(r <= 0 for _, r in arms):
        raise ConfigurationError("allocation ratios must be positive integers")
    bad = [s for s in block_sizes if s <= 0 or s % total]
    if bad or not block_sizes:
        raise ConfigurationError(
            f"block sizes {list(block_sizes)} must be positive multiples of the ratio sum {total}"
        )
    if length <= 0:
        raise ConfigurationError(f"list length must be positive, got {length}")
    slots: list[Slot] = []
    block = 0
    sizes = np.asarray(block_sizes)
    while len(slots) < length:
        block += 1
        size = int(rng.choice(sizes))
        content = [code for code, ratio in arms for _ in range(ratio * size // total)]
        order = rng.permutation(len(content))
        for i in order:
            slots.append(
                Slot(sequence=len(slots) + 1, block=block, block_size=size, arm=content[int(i)])
            )
    return slots
