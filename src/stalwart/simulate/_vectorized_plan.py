"""The design compiled for the vectorized simulator: everything derived once per scenario.

:func:`build_plan` turns (protocol, parameters, visits) into arrays the engine indexes: per arm
its dropout rate and treatment cycles (dose days, IL-2 CD4 and HIV RNA kernels tabulated on study
days, treatment-related AE terms), the visits and windows, the probability that the screening
items independent of the latent state pass eligibility (computed exactly from candidates.py's answer
distributions), the stratification factors and the permuted-block contents.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import ndtr

from stalwart.errors import ConfigurationError
from stalwart.protocol.calendar import participant_calendar
from stalwart.protocol.schema import Protocol, ScreeningItem
from stalwart.simulate.cycles import ART_TREATMENT, IL2_TREATMENT, treatment_cycles
from stalwart.simulate.equations import FloatArray, il2_cd4_kernel, il2_hiv_rna_kernel
from stalwart.simulate.parameters import ModelParameters
from stalwart.simulate.tables import category_cdf, model_tables

__all__ = [
    "DEPENDENT_ITEMS",
    "OPS",
    "ArmPlan",
    "BoolArray",
    "CyclePlan",
    "Factor",
    "IntArray",
    "Plan",
    "TermGroup",
    "build_plan",
    "severe_probability",
]

IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

DEPENDENT_ITEMS = ("cd4", "hiv_rna")
"""Screening items whose answers measure the latent state (drawn per candidate)."""

OPS: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
}
"""Eligibility rule operators (``in`` is handled apart), as protocol.eligibility applies them."""


@dataclass(frozen=True)
class TermGroup:
    """Treatment-related AE terms of one treatment in a cycle."""

    days: IntArray  # the treatment's dose days in the cycle: onset is one of them
    chance: FloatArray  # (terms,)
    grade_cdf: FloatArray  # (terms, grades), padded with 1
    term: IntArray  # (terms,) index into the AE form's terms
    grade_count: IntArray  # (terms,) grades in each distribution


@dataclass(frozen=True)
class CyclePlan:
    first_day: int
    dose_days: IntArray  # every dose day of the cycle, sorted
    il2_days: IntArray
    il2_per_day: int
    art_days: IntArray
    art_per_day: int
    groups: tuple[TermGroup, ...]
    cd4_kernel: FloatArray  # IL-2 CD4 kernel at study days 0..grid (zeros without IL-2)
    rna_kernel: FloatArray
    severe_days: FloatArray  # days a treatment-related AE can start, sorted (outcomes mode)
    severe_cdf: FloatArray  # P(first grade >= 3 treatment-related AE starts on or before them)


@dataclass(frozen=True)
class ArmPlan:
    code: str
    dropout_rate: float
    cycles: tuple[CyclePlan, ...]
    cycle_visits: IntArray  # (visits, 4): study day, window before, after, cycle index


@dataclass(frozen=True)
class Factor:
    """A stratification factor: sites (uniform) or an independent screening item."""

    levels: int
    cdf: FloatArray  # level probabilities given eligibility, cumulative


@dataclass(frozen=True)
class Plan:
    arms: tuple[ArmPlan, ...]
    ratios: tuple[int, ...]
    sample_size: int
    accrual_span: int
    longest: int
    visits: tuple[str, ...]
    visit_days: IntArray  # (visits,) target study day, window before, window after
    visit_before: IntArray
    visit_after: IntArray
    other_visits: IntArray  # (k, 3) scheduled visits not simulated: day, before, after
    extended_first: int
    extended_step: int
    extended_window: int
    independent_pass: float
    dependent_rules: tuple[tuple[str, str, Any, bool], ...]  # item, op, value, inclusion
    dependent_bounds: dict[str, tuple[float, float, bool]]  # item: lo, hi, integer
    factors: tuple[Factor, ...]
    block_sizes: IntArray
    block_content: IntArray  # (sizes, largest size) arm indices, -1 padded
    arrangements: IntArray | None  # every distinct order of each block's content, stacked
    arrangement_offset: IntArray  # (sizes,) first row of each size in ``arrangements``
    arrangement_count: IntArray  # (sizes,) rows of each size
    ae_terms: tuple[str, ...]
    background_term: IntArray
    background_cdf: FloatArray
    background_grades: FloatArray
    grade_range: tuple[int, int]
    cd4_max: float
    rna_max: float
    rna_limit: float
    rna_below_log10: float


def build_plan(protocol: Protocol, params: ModelParameters, visits: Sequence[str]) -> Plan:
    tables = model_tables(params, protocol)
    study = protocol.study
    form = protocol.forms.AE
    terms = tuple(form.terms)
    scheduled = {v.code: v for v in protocol.visits}
    chosen = [scheduled[c] for c in visits]
    grid = max(v.day + v.window_after for v in chosen)
    grades = (form.min_grade, form.max_grade)
    arms = tuple(
        _build_arm(protocol, params, arm, terms, grid, grades) for arm in protocol.arm_codes
    )
    if protocol.randomization.method != "permuted_blocks" or not protocol.randomization.block_sizes:
        raise ConfigurationError(
            f"the vectorized simulator allocates by permuted blocks; randomization method "
            f"{protocol.randomization.method!r} is not supported (simulate it per participant)"
        )
    sizes = np.asarray(protocol.randomization.block_sizes, dtype=np.int64)
    ratios = tuple(a.ratio for a in protocol.arms)
    content = np.full((len(sizes), int(sizes.max())), -1, dtype=np.int64)
    for i, size in enumerate(sizes):
        per = [a for a, r in enumerate(ratios) for _ in range(r * int(size) // sum(ratios))]
        content[i, : len(per)] = per
    rule_items = {c.rule.item for c in protocol.eligibility}
    independent = [
        i for i in protocol.screening_items if i.name in rule_items and not _dependent(i)
    ]
    passing = 1.0
    for item in independent:
        passing *= sum(
            prob for value, prob in _distribution(item, params) if _passes(protocol, item, value)
        )
    limit = protocol.lab_item("HIVRNA").lower_limit or 0.0
    factor = 0.5 if protocol.analysis.hiv_rna_below_limit == "half_limit" else 1.0
    lo_grade, hi_grade = form.min_grade, form.max_grade
    return Plan(
        arms=arms,
        ratios=ratios,
        sample_size=study.sample_size,
        accrual_span=(study.accrual_end - study.accrual_start).days,
        longest=(study.follow_up_end - study.accrual_start).days,
        visits=tuple(visits),
        visit_days=np.array([v.day for v in chosen], dtype=np.int64),
        visit_before=np.array([v.window_before for v in chosen], dtype=np.int64),
        visit_after=np.array([v.window_after for v in chosen], dtype=np.int64),
        other_visits=np.array(
            [
                [v.day, v.window_before, v.window_after]
                for v in protocol.visits
                if v.code not in visits
            ],
            dtype=np.int64,
        ).reshape(-1, 3),
        extended_first=protocol.visits[-1].day
        + 7 * protocol.follow_up.extended_visit_interval_weeks,
        extended_step=7 * protocol.follow_up.extended_visit_interval_weeks,
        extended_window=protocol.follow_up.window_days,
        independent_pass=passing,
        dependent_rules=tuple(
            (c.rule.item, c.rule.op, c.rule.value, c.kind == "inclusion")
            for c in protocol.eligibility
            if _dependent(_item(protocol, c.rule.item))
        ),
        dependent_bounds={
            i.name: (
                i.min if i.min is not None else -math.inf,
                i.max if i.max is not None else math.inf,
                i.type == "integer",
            )
            for i in protocol.screening_items
            if _dependent(i)
        },
        factors=tuple(_factor(protocol, params, name) for name in protocol.randomization.strata),
        block_sizes=sizes,
        block_content=content,
        **_arrangements(content),
        ae_terms=terms,
        background_term=np.array([terms.index(t) for t in tables.background_terms], dtype=np.int64),
        background_cdf=tables.background_cdf,
        background_grades=tables.background_grades,
        grade_range=(lo_grade, hi_grade),
        cd4_max=tables.lab_maxima[0],
        rna_max=tables.lab_maxima[2],
        rna_limit=limit,
        rna_below_log10=math.log10(limit * factor) if limit > 0 else math.nan,
    )


def _build_arm(
    protocol: Protocol,
    params: ModelParameters,
    code: str,
    terms: tuple[str, ...],
    grid: int,
    grade_range: tuple[int, int],
) -> ArmPlan:
    rate = params.dropout_rate_per_year.get(code)
    if rate is None:
        raise ConfigurationError(
            f"dropout_rate_per_year has no entry for arm {code!r}; "
            f"known: {sorted(params.dropout_rate_per_year)}"
        )
    tables = model_tables(params, protocol)
    calendar = participant_calendar(protocol, code, protocol.study.accrual_start)
    cycles = treatment_cycles(protocol, calendar)
    days = np.arange(grid + 1, dtype=np.float64)
    built = []
    for cycle in cycles:
        il2 = np.array(cycle.days(IL2_TREATMENT), dtype=np.int64)
        art = np.array(cycle.days(ART_TREATMENT), dtype=np.int64)
        groups = []
        for treatment, group in tables.treatment_aes.items():
            on = np.array(cycle.days(treatment), dtype=np.int64)
            if len(on) and group:
                width = max(len(t.grades) for t in group)
                cdf = np.ones((len(group), width))
                for i, t in enumerate(group):
                    cdf[i, : len(t.grades)] = t.grades
                groups.append(
                    TermGroup(
                        days=on,
                        chance=np.array([t.chance for t in group]),
                        grade_cdf=cdf,
                        term=np.array([terms.index(t.term) for t in group], dtype=np.int64),
                        grade_count=np.array([len(t.grades) for t in group], dtype=np.int64),
                    )
                )
        per_day = {d.treatment: d.administrations for d in cycle.doses}
        zero = np.zeros_like(days)
        severe_days, severe_cdf = _severe_onset(groups, grade_range)
        built.append(
            CyclePlan(
                first_day=cycle.first_day,
                dose_days=np.unique([d.study_day for d in cycle.doses]).astype(np.int64),
                il2_days=il2,
                il2_per_day=per_day.get(IL2_TREATMENT, 0),
                art_days=art,
                art_per_day=per_day.get(ART_TREATMENT, 0),
                groups=tuple(groups),
                cd4_kernel=il2_cd4_kernel(params, days - il2[0]) if len(il2) else zero,
                rna_kernel=il2_hiv_rna_kernel(params, days - il2[0], len(il2))
                if len(il2)
                else zero,
                severe_days=severe_days,
                severe_cdf=severe_cdf,
            )
        )
    index = {c.key: k for k, c in enumerate(cycles)}
    anchors = tables.cycle_visit_anchor
    cycle_visits = []
    for visit in calendar.visits:
        if visit.kind == "cycle" and visit.cycle is not None:
            key = (anchors.get(visit.code.removesuffix(str(visit.cycle)), ""), visit.cycle)
            if key in index:
                before = (visit.target - visit.earliest).days
                after = (visit.latest - visit.target).days
                cycle_visits.append((visit.study_day, before, after, index[key]))
    visits = np.array(cycle_visits, dtype=np.int64).reshape(-1, 4)
    return ArmPlan(code, rate.value, tuple(built), visits)


def severe_probability(group: TermGroup, grade_range: tuple[int, int]) -> FloatArray:
    """Per term of ``group``, the chance that an AE of it has grade >= 3: the grade is
    ``clip(1 + min(pick, count - 1), lo, hi)`` with ``pick`` the number of CDF entries (all but
    the last) at or below a uniform, as the cohort draws it."""
    lo, hi = grade_range
    cdf = group.grade_cdf
    width = cdf.shape[1]
    edges = np.concatenate(
        [np.zeros((len(cdf), 1)), cdf[:, : width - 1], np.ones((len(cdf), 1))], 1
    )
    mass = np.diff(edges, axis=1)  # P(pick = j), j = 0 .. width - 1
    pick = np.arange(width)[None, :]
    grade = np.clip(1 + np.minimum(pick, group.grade_count[:, None] - 1), lo, hi)
    out: FloatArray = (mass * (grade >= 3)).sum(axis=1)
    return out


def _severe_onset(
    groups: Sequence[TermGroup], grade_range: tuple[int, int]
) -> tuple[FloatArray, FloatArray]:
    """Distribution of the day the first grade >= 3 treatment-related AE of a started cycle
    starts (before any stop): each term of a group occurs with its chance, on a uniformly drawn
    dose day of its treatment, with grade >= 3 with :func:`severe_probability`, independently,
    so ``P(first > d) = prod_terms (1 - chance * P(grade >= 3) * F(d))`` with ``F(d)`` the share
    of the group's dose days on or before ``d``. Returns (days, cumulative probabilities)."""
    if not groups:
        return np.zeros(0), np.zeros(0)
    days = np.unique(np.concatenate([g.days for g in groups])).astype(np.float64)
    survival = np.ones(len(days))
    for group in groups:
        own = np.sort(group.days)
        share = np.searchsorted(own, days, side="right") / len(own)
        chance = group.chance * severe_probability(group, grade_range)
        survival *= np.prod(1.0 - chance[:, None] * share[None, :], axis=0)
    return days, 1.0 - survival


# -- screening items ----------------------------------------------------------------------------
def _item(protocol: Protocol, name: str) -> ScreeningItem:
    return next(i for i in protocol.screening_items if i.name == name)


def _dependent(item: ScreeningItem) -> bool:
    """Whether the answer measures the latent state (screening CD4, HIV RNA)."""
    return item.name in DEPENDENT_ITEMS and item.type in ("integer", "number")


def _distribution(item: ScreeningItem, params: ModelParameters) -> list[tuple[Any, float]]:
    """The validated answers of an independent item and their probabilities (candidates.py's)."""
    if item.type == "boolean":
        chance = params.screening_true_probability.get(item.name)
        p = chance.value if chance is not None else 0.0
        return [(True, p), (False, 1.0 - p)]
    if item.type == "choice":
        choices = item.choices or ["NA"]
        female = params.female_probability.value if item.name == "sex" else 0.0
        value_f = "F" if "F" in choices else choices[0]
        value_m = "M" if "M" in choices else choices[0]
        return [(value_f, female), (value_m, 1.0 - female)]
    if item.type in ("integer", "number"):
        lo = item.min if item.min is not None else -math.inf
        hi = item.max if item.max is not None else math.inf
        if item.name == "age":
            return _rounded_normal(params.age_mean.value, params.age_sd.value, lo, hi, item.type)
        value = 0.0 if lo <= 0.0 <= hi else (lo if math.isfinite(lo) else hi)
        return [(round(value) if item.type == "integer" else float(value), 1.0)]
    return [("NA", 1.0)]


def _rounded_normal(
    mean: float, sd: float, lo: float, hi: float, kind: str
) -> list[tuple[Any, float]]:
    """``clip(round(N(mean, sd)), lo, hi)``, candidates.py's age: values and probabilities."""
    if sd <= 0:
        values = {round(mean): 1.0}
    else:
        centre = np.arange(math.floor(mean - 12 * sd), math.ceil(mean + 12 * sd) + 1)
        mass = ndtr((centre + 0.5 - mean) / sd) - ndtr((centre - 0.5 - mean) / sd)
        values = dict(zip(centre.tolist(), mass.tolist(), strict=True))
    out: dict[Any, float] = {}
    for value, prob in values.items():
        clipped = min(max(float(value), lo), hi)
        key = round(clipped) if kind == "integer" else clipped
        out[key] = out.get(key, 0.0) + prob
    return list(out.items())


def _passes(protocol: Protocol, item: ScreeningItem, value: Any) -> bool:
    """Whether ``value`` of ``item`` meets every criterion on that item."""
    for crit in protocol.eligibility:
        if crit.rule.item != item.name:
            continue
        rule = crit.rule
        if rule.op == "in":
            holds = isinstance(rule.value, list) and value in rule.value
        else:
            holds = bool(OPS[rule.op](value, rule.value))
        if holds != (crit.kind == "inclusion"):
            return False
    return True


def _factor(protocol: Protocol, params: ModelParameters, name: str) -> Factor:
    if name == "site":
        return Factor(
            len(protocol.sites), np.arange(1, len(protocol.sites) + 1) / len(protocol.sites)
        )
    item = _item(protocol, name)
    levels = list(item.choices or []) if item.type == "choice" else [True, False]
    weights = dict.fromkeys(levels, 0.0)
    for value, prob in _distribution(item, params):
        if value in weights and _passes(protocol, item, value):
            weights[value] += prob
    if item.name in DEPENDENT_ITEMS or sum(weights.values()) <= 0:
        raise ConfigurationError(f"randomization.strata: cannot simulate stratum {name!r}")
    return Factor(len(levels), category_cdf(list(weights.values())))


_MAX_ARRANGEMENTS = 20_000


def _arrangements(content: IntArray) -> dict[str, Any]:
    """Every distinct order of each block's content, so that a uniform random row is a random
    permutation of the block (each distinct order has the same number of permutations).
    ``arrangements`` is None when a block has too many orders: blocks are then shuffled."""
    tables, counts = [], []
    for row in content:
        items = [int(a) for a in row if a >= 0]
        total = math.factorial(len(items))
        for arm in set(items):
            total //= math.factorial(items.count(arm))
        if total > _MAX_ARRANGEMENTS:
            return {
                "arrangements": None,
                "arrangement_offset": np.zeros(len(content), dtype=np.int64),
                "arrangement_count": np.zeros(len(content), dtype=np.int64),
            }
        orders = np.full((total, content.shape[1]), -1, dtype=np.int64)
        orders[:, : len(items)] = list(_distinct_orders(sorted(items)))
        tables.append(orders)
        counts.append(total)
    count = np.array(counts, dtype=np.int64)
    return {
        "arrangements": np.concatenate(tables),
        "arrangement_offset": np.cumsum(count) - count,
        "arrangement_count": count,
    }


def _distinct_orders(items: list[int]) -> Iterator[tuple[int, ...]]:
    """Distinct permutations of a sorted multiset, in lexicographic order."""
    if not items:
        yield ()
        return
    for i, first in enumerate(items):
        if i and items[i - 1] == first:
            continue
        for rest in _distinct_orders(items[:i] + items[i + 1 :]):
            yield (first, *rest)
