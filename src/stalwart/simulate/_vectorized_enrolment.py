"""Screening and allocation of replicate trials, vectorized (candidates.py's, sites.py's
accrual, randomization.blocks' lists).

Candidates are drawn in rounds until each replicate has ``sample_size`` eligible ones; the first
eligible in draw order are kept, so they are independent draws from the eligible population and
the number screened has the per-participant distribution. Only candidates who pass the items
independent of the latent state (age, sex, yes/no criteria; probability ``independent_pass``)
are drawn in full: the others before the ``m``-th such candidate number ``NegBin(m, pass)``, the
same law as failing them one by one. Arms come from stratified permuted
blocks with random block sizes, taken in the order sites randomize (screening date).
"""

from __future__ import annotations

import numpy as np

from stalwart.errors import ConfigurationError
from stalwart.simulate._vectorized_plan import OPS, BoolArray, IntArray, Plan
from stalwart.simulate.equations import (
    FloatArray,
    cd4_at_randomization,
    hiv_rna_setpoint,
    measured_cd4,
    measured_log10_hiv_rna,
    other_lymphocytes,
)
from stalwart.simulate.parameters import ModelParameters

__all__ = ["allocate", "draw_strata", "screen"]

_SCREEN_LIMIT = 1000  # candidates screened per participant randomized before giving up


def screen(
    plan: Plan, params: ModelParameters, rng: np.random.Generator, reps: int
) -> tuple[dict[str, FloatArray], IntArray]:
    """Latent state of the first ``sample_size`` eligible candidates per replicate, and the
    number screened. Candidates are drawn in rounds until every replicate has enough."""
    n = plan.sample_size
    passing = plan.independent_pass
    if passing < 1.0 / _SCREEN_LIMIT:
        raise ConfigurationError(
            f"almost no candidate is eligible (fewer than 1 in {_SCREEN_LIMIT}): check the "
            "eligibility criteria against the screening parameters of the scenario"
        )
    fields = ("cd4", "other", "setpoint")
    people = {k: np.empty((reps, n)) for k in fields}
    filled = np.zeros(reps, dtype=np.int64)
    screened = np.zeros(reps, dtype=np.int64)
    rows = np.arange(reps)
    while len(rows):
        need = n - filled[rows]
        draw = int(need.max() * 1.15) + 16  # candidates passing the independent items
        candidates, eligible = _candidates(plan, params, rng, len(rows), draw)
        rank = np.cumsum(eligible, axis=1)
        take = eligible & (rank <= need[:, None])
        row, col = np.nonzero(take)
        dest = filled[rows][row] + rank[row, col] - 1
        for k in fields:
            people[k][rows[row], dest] = candidates[k][row, col]
        got = take.sum(axis=1)
        done = got == need
        last = np.where(done, draw - 1 - np.argmax(take[:, ::-1], axis=1), draw - 1)
        screened[rows] += last + 1
        filled[rows] += got
        rows = rows[~done]
        if len(rows) and screened[rows].max() > _SCREEN_LIMIT * n:
            raise ConfigurationError(
                f"almost no candidate is eligible (fewer than 1 in {_SCREEN_LIMIT}): check the "
                "eligibility criteria against the screening parameters of the scenario"
            )
    if passing < 1.0:  # the candidates failing the independent items, between those drawn
        screened = screened + rng.negative_binomial(screened, passing)
    return people, screened


def _candidates(
    plan: Plan, params: ModelParameters, rng: np.random.Generator, reps: int, draw: int
) -> tuple[dict[str, FloatArray], BoolArray]:
    """``draw`` candidates per row who pass the independent items: latent state and
    eligibility on the items that measure it (candidates.py's screening, the same equations)."""
    p = params
    shape = (reps, draw)
    eligible = np.ones(shape, dtype=bool)
    z = rng.standard_normal((3, *shape))
    setpoint = hiv_rna_setpoint(p, z[0])
    cd4 = cd4_at_randomization(p, z[0], z[1])
    other = other_lymphocytes(p, z[2])
    answers: dict[str, FloatArray] = {}
    items = {rule[0] for rule in plan.dependent_rules}
    if "cd4" in items:
        noise = rng.standard_normal((2, *shape))
        answers["cd4"] = np.rint(measured_cd4(p, cd4, other, noise)[0])
    if "hiv_rna" in items:
        rna = measured_log10_hiv_rna(p, setpoint, rng.standard_normal(shape))
        answers["hiv_rna"] = np.rint(10.0**rna)
    for name, value in answers.items():
        lo, hi, integer = plan.dependent_bounds[name]
        clipped = np.clip(value, lo, hi)
        answers[name] = np.rint(clipped) if integer else clipped
    for item, op, target, inclusion in plan.dependent_rules:
        value = answers[item]
        holds = np.isin(value, target) if op == "in" else OPS[op](value, target)
        eligible &= holds if inclusion else ~holds
    return {"cd4": cd4, "other": other, "setpoint": setpoint}, eligible


# -- allocation ---------------------------------------------------------------------------------
def draw_strata(plan: Plan, rng: np.random.Generator, reps: int, n: int) -> IntArray:
    """Stratum index: sites uniform, items from their distribution among the eligible."""
    stratum = np.zeros((reps, n), dtype=np.int64)
    for factor in plan.factors:
        level = np.minimum(
            np.searchsorted(factor.cdf, rng.random((reps, n)), side="right"), factor.levels - 1
        )
        stratum = stratum * factor.levels + level
    return stratum


def allocate(
    plan: Plan, rng: np.random.Generator, randomization_day: IntArray, stratum: IntArray
) -> IntArray:
    """Arms from stratified permuted blocks, taken in the order sites randomize."""
    reps, n = randomization_day.shape
    strata = int(np.prod([f.levels for f in plan.factors])) if plan.factors else 1
    lag = rng.integers(7, 29, (reps, n))  # sites.py: screening 7-28 days before randomization
    screening_day = randomization_day - lag + 64
    order_key = (stratum * (plan.accrual_span + 128) + screening_day) * n + np.arange(n)
    order = np.argsort(order_key, axis=1)
    sorted_stratum = np.take_along_axis(stratum, order, axis=1)
    index = np.broadcast_to(np.arange(n), (reps, n))
    starts = np.ones((reps, n), dtype=bool)
    starts[:, 1:] = sorted_stratum[:, 1:] != sorted_stratum[:, :-1]
    position_sorted = index - np.maximum.accumulate(np.where(starts, index, 0), axis=1)
    position = np.empty_like(position_sorted)
    np.put_along_axis(position, order, position_sorted, axis=1)
    # allocation lists: enough whole blocks per (replicate, stratum) for the longest stratum
    blocks = -(-int(position.max() + 1) // int(plan.block_sizes.min()))
    size_index = rng.integers(len(plan.block_sizes), size=(reps, strata, blocks))
    sizes = plan.block_sizes[size_index]
    largest = plan.block_content.shape[1]
    slot = np.arange(largest)
    if plan.arrangements is not None:  # a uniformly chosen distinct order of each block
        row = plan.arrangement_offset[size_index] + rng.integers(plan.arrangement_count[size_index])
        arms = plan.arrangements[row]
    else:
        keys = rng.random((reps, strata, blocks, largest))
        keys[slot >= sizes[..., None]] = 2.0  # padding sorts last
        permutation = np.argsort(keys, axis=-1)
        arms = plan.block_content[size_index[..., None], permutation]
    valid = slot < sizes[..., None]
    lists = arms[valid]
    lengths = sizes.sum(axis=2).ravel()
    offsets = np.cumsum(lengths) - lengths
    row = np.arange(reps)[:, None] * strata
    out: IntArray = lists[offsets[row + stratum] + position]
    return out
