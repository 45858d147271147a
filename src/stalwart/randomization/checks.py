"""Design check before go-live: simulate the protocol's allocation and measure balance and guessing.

Each replicate enrols ``participants`` people whose factor levels are drawn independently and
uniformly (every site, choice, boolean value or cut category equally likely), allocated by the
very functions a trial uses (``permuted_blocks`` per stratum, or the ``Minimizer`` with the
``minimization_draws`` stream), from a set-up seed derived from ``seed`` and the replicate number.

The measures follow R's randomizeR (Uschner et al. 2018, J Stat Softw 85(8)), generalised to
``K`` arms with ratios ``r_k``: with ``n_k(i)`` the count of arm ``k`` after ``i`` allocations,

* imbalance ``D(i) = max_k n_k(i)/r_k - min_k n_k(i)/r_k`` (for two arms 1:1, ``|N_A - N_B|``,
  randomizeR's ``imbal("imb")``); the *final* imbalance is ``D(n)``, overall or among the
  participants of one stratum (for minimization: of one factor level);
* maximum running imbalance ``max_i D(i)`` (randomizeR's ``imbal("maxImb")``);
* expected proportion of correct guesses under the convergence strategy (Blackwell & Hodges
  1957; randomizeR's ``corGuess("CS")``): before each allocation the guesser names the arm with
  the smallest ``n_k/r_k`` so far, choosing at random among ties, so a guess counts ``1/m`` when
  the true arm is among ``m`` tied arms. The guesser sees either the whole sequence (overall),
  their own site's allocations (within site) or, for permuted blocks, their stratum's list.

Each measure is summarised over replicates by its mean, 5%, 50% and 95% quantiles and maximum.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from numbers import Integral
from typing import Any

import numpy as np
import numpy.typing as npt

from stalwart.errors import ConfigurationError
from stalwart.protocol.schema import Protocol
from stalwart.randomization.allocation import stratum_keys, stratum_levels
from stalwart.randomization.blocks import permuted_blocks
from stalwart.randomization.minimization import MinimizationDesign, minimization_draws

__all__ = [
    "CheckRow",
    "DesignCheck",
    "Summary",
    "check_design",
    "convergence_guesses",
    "imbalance",
    "running_imbalance",
]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

_CELLS = 250_000
"""Replicates x participants simulated together (bounds memory: arrays add an arm axis)."""


@dataclass(frozen=True)
class Summary:
    """A measure over replicates: mean, 5%, 50%, 95% quantiles and maximum."""

    mean: float
    q05: float
    median: float
    q95: float
    max: float

    @classmethod
    def of(cls, values: npt.ArrayLike) -> Summary:
        """The summary of one value per replicate."""
        v = np.asarray(values, dtype=float)
        q05, median, q95 = np.quantile(v, [0.05, 0.5, 0.95])
        return cls(float(v.mean()), float(q05), float(median), float(q95), float(v.max()))


@dataclass(frozen=True)
class CheckRow:
    """One measure in one scope: ``overall``, ``within site``, a stratum (``site=US01``) or,
    for minimization, a factor level (``cd4=<500``), ``worst stratum``."""

    measure: str
    scope: str
    summary: Summary


@dataclass(frozen=True)
class DesignCheck:
    """The simulated performance of a protocol's randomization design."""

    method: str
    participants: int
    replicates: int
    seed: int
    exhausted: float
    """Share of replicates whose allocation list (or stream of draws) would run out."""
    rows: tuple[CheckRow, ...] = field(default_factory=tuple)

    def row(self, measure: str, scope: str) -> Summary:
        """The summary of ``measure`` in ``scope``; ``KeyError`` if not reported."""
        for r in self.rows:
            if (r.measure, r.scope) == (measure, scope):
                return r.summary
        raise KeyError((measure, scope))

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return asdict(self)


# -- measures (pure kernels, leading replicate axis) -------------------------------------------
def _onehot(arms: npt.ArrayLike, k: int) -> FloatArray:
    a = np.asarray(arms, dtype=np.int64)
    return np.asarray(a[..., None] == np.arange(k), dtype=float)


def running_imbalance(arms: npt.ArrayLike, ratios: list[int]) -> FloatArray:
    """``D(i)`` after each allocation: ``(..., n)`` arm indices to ``(..., n)`` imbalances."""
    counts = np.cumsum(_onehot(arms, len(ratios)), axis=-2) / np.asarray(ratios, dtype=float)
    return np.asarray(counts.max(axis=-1) - counts.min(axis=-1))


def imbalance(
    arms: npt.ArrayLike, ratios: list[int], members: npt.ArrayLike | None = None
) -> FloatArray:
    """Final imbalance ``D(n)`` of each replicate, among ``members`` (a mask) when given."""
    onehot = _onehot(arms, len(ratios))
    if members is not None:
        onehot = onehot * np.asarray(members, dtype=float)[..., None]
    counts = onehot.sum(axis=-2) / np.asarray(ratios, dtype=float)
    return np.asarray(counts.max(axis=-1) - counts.min(axis=-1))


def convergence_guesses(
    arms: npt.ArrayLike, ratios: list[int], groups: npt.ArrayLike | None = None
) -> FloatArray:
    """Expected proportion of correct convergence-strategy guesses of each replicate.

    ``groups`` (same shape as ``arms``) limits what the guesser sees to earlier allocations of
    the same group (a site, a stratum); ``None``: the whole sequence.
    """
    onehot = _onehot(arms, len(ratios))
    if groups is None:
        before = np.cumsum(onehot, axis=-2) - onehot
    else:
        g = np.asarray(groups)
        before = np.zeros_like(onehot)
        for value in np.unique(g):
            mask = (g == value)[..., None]
            mine = onehot * mask
            before += (np.cumsum(mine, axis=-2) - mine) * mask
    scaled = before / np.asarray(ratios, dtype=float)
    low = scaled.min(axis=-1, keepdims=True)
    guessed = scaled <= low + 1e-9
    correct = (guessed * onehot).sum(axis=-1) / guessed.sum(axis=-1)
    return np.asarray(correct.mean(axis=-1))


# -- simulation ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Simulated:
    arms: IntArray  # (R, n)
    sites: IntArray  # (R, n)
    strata: IntArray  # (R, n): list stratum (permuted blocks) or 0
    levels: IntArray  # (R, n, F): minimization factor levels (F = 0 for permuted blocks)
    exhausted: npt.NDArray[np.bool_]  # (R,)


def _replicate_seed(seed: int, replicate: int) -> int:
    """The set-up seed of one replicate: a trial initialized with it allocates identically."""
    state = np.random.SeedSequence([seed, replicate]).generate_state(1, np.uint64)
    return int(state[0]) >> 1  # non-negative, below 2**63


def _profiles(seed: int, first: int, count: int, n: int, bounds: list[int]) -> IntArray:
    """``(count, n, len(bounds))`` uniform level indices; replicate ``r`` uses its own stream."""
    out = np.empty((count, n, len(bounds)), dtype=np.int64)
    for rep in range(count):
        rng = np.random.default_rng([seed, first + rep, 1])
        out[rep] = rng.integers(0, bounds, (n, len(bounds)))
    return out


def _simulate_blocks(protocol: Protocol, n: int, seed: int, first: int, count: int) -> _Simulated:
    block_sizes, length = protocol.randomization.permuted_blocks
    arm_list = [(a.code, a.ratio) for a in protocol.arms]
    factors = stratum_levels(protocol)
    sizes = [len(levels) for _, levels in factors]
    n_sites = len(protocol.sites)
    bounds = [len(levels) for _, levels in factors]
    if "site" not in [name for name, _ in factors]:
        bounds.append(n_sites)
    profiles = _profiles(seed, first, count, n, bounds)
    draws = {name: profiles[..., j] for j, (name, _) in enumerate(factors)}
    sites = draws["site"] if "site" in draws else profiles[..., -1]
    strata = np.zeros((count, n), dtype=np.int64)
    for (name, _), size in zip(factors, sizes, strict=True):
        strata = strata * size + draws[name]  # itertools.product order: last factor fastest
    arms = np.zeros((count, n), dtype=np.int64)
    exhausted = np.zeros(count, dtype=bool)
    index = {a.code: i for i, a in enumerate(protocol.arms)}
    for rep in range(count):
        setup = _replicate_seed(seed, first + rep)
        for stratum in np.unique(strata[rep]):
            where = np.flatnonzero(strata[rep] == stratum)
            stream = np.random.default_rng([setup, int(stratum)])
            slots = permuted_blocks(arm_list, block_sizes, len(where), stream)
            if len(where) > length:
                real = permuted_blocks(
                    arm_list, block_sizes, length, np.random.default_rng([setup, int(stratum)])
                )
                exhausted[rep] |= len(where) > len(real)
            arms[rep, where] = [index[s.arm] for s in slots[: len(where)]]
    return _Simulated(arms, sites, strata, np.zeros((count, n, 0), dtype=np.int64), exhausted)


def _simulate_minimization(
    protocol: Protocol, n: int, seed: int, first: int, count: int
) -> _Simulated:
    design = MinimizationDesign.from_protocol(protocol)
    names = [f.name for f in design.factors]
    bounds = [len(f.levels) for f in design.factors]
    if "site" not in names:
        bounds.append(len(protocol.sites))
    profiles = _profiles(seed, first, count, n, bounds)
    levels = profiles[..., : len(names)]
    sites = profiles[..., names.index("site") if "site" in names else -1]
    draws = np.stack(
        [minimization_draws(_replicate_seed(seed, first + rep), n) for rep in range(count)]
    )
    minimizer = design.minimizer(shape=(count,))
    arms = np.zeros((count, n), dtype=np.int64)
    for i in range(n):
        arms[:, i] = minimizer.assign(levels[:, i, :], draws[:, i])
    exhausted = np.full(count, n > design.list_length)
    return _Simulated(arms, sites, np.zeros((count, n), dtype=np.int64), levels, exhausted)


def _chunks(replicates: int, participants: int) -> Iterator[tuple[int, int]]:
    size = max(1, _CELLS // participants)
    for first in range(0, replicates, size):
        yield first, min(size, replicates - first)


def _measures(
    protocol: Protocol, sim: _Simulated, scopes: list[tuple[str, npt.NDArray[np.bool_]]]
) -> dict[tuple[str, str], FloatArray]:
    """Every measure of one chunk of replicates, keyed by (measure, scope)."""
    ratios = [a.ratio for a in protocol.arms]
    path = running_imbalance(sim.arms, ratios)
    out: dict[tuple[str, str], FloatArray] = {
        ("final imbalance", "overall"): path[:, -1],
        ("max running imbalance", "overall"): path.max(axis=-1),
    }
    per_scope = [imbalance(sim.arms, ratios, mask) for _, mask in scopes]
    for (scope, _), values in zip(scopes, per_scope, strict=True):
        out[("final imbalance", scope)] = values
    if scopes:
        out[("final imbalance", "worst stratum")] = np.max(per_scope, axis=0)
    out[("correct guesses", "overall")] = convergence_guesses(sim.arms, ratios)
    out[("correct guesses", "within site")] = convergence_guesses(sim.arms, ratios, sim.sites)
    if protocol.randomization.method == "permuted_blocks" and protocol.randomization.strata != [
        "site"
    ]:
        out[("correct guesses", "within stratum")] = convergence_guesses(
            sim.arms, ratios, sim.strata
        )
    return out


def _scopes(protocol: Protocol, sim: _Simulated) -> list[tuple[str, npt.NDArray[np.bool_]]]:
    """Stratum masks: each list stratum, or each minimization factor level."""
    if protocol.randomization.method == "permuted_blocks":
        return [(key or "all", sim.strata == i) for i, key in enumerate(stratum_keys(protocol))]
    design = MinimizationDesign.from_protocol(protocol)
    return [
        (f"{f.name}={level}", sim.levels[..., j] == i)
        for j, f in enumerate(design.factors)
        for i, level in enumerate(f.levels)
    ]


def check_design(
    protocol: Protocol, participants: int | None = None, replicates: int = 1000, seed: int = 1
) -> DesignCheck:
    """Simulate the protocol's randomization ``replicates`` times and summarise its measures.

    ``participants`` defaults to the protocol's ``study.sample_size``. Same seed, same figures.
    """
    n = protocol.study.sample_size if participants is None else participants
    for name, value, low in (
        ("participants", n, 1),
        ("replicates", replicates, 1),
        ("seed", seed, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
            raise ConfigurationError(f"{name} must be a whole number >= {low}, got {value!r}")
    simulate = (
        _simulate_minimization
        if protocol.randomization.method == "minimization"
        else _simulate_blocks
    )
    values: dict[tuple[str, str], list[FloatArray]] = {}
    exhausted = 0
    for first, count in _chunks(replicates, n):
        sim = simulate(protocol, n, seed, first, count)
        exhausted += int(sim.exhausted.sum())
        for key, v in _measures(protocol, sim, _scopes(protocol, sim)).items():
            values.setdefault(key, []).append(v)
    rows = tuple(
        CheckRow(measure, scope, Summary.of(np.concatenate(parts)))
        for (measure, scope), parts in values.items()
    )
    return DesignCheck(
        method=protocol.randomization.method,
        participants=n,
        replicates=replicates,
        seed=seed,
        exhausted=exhausted / replicates,
        rows=rows,
    )
