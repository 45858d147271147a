"""Pocock-Simon minimization: probabilities, the draw, the design from a protocol, properties."""

from __future__ import annotations

import itertools
import statistics
from collections import Counter
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from randomization.minimization_cases import minimization_protocol
from stalwart.errors import ConfigurationError, ValidationError
from stalwart.randomization import minimization as module
from stalwart.randomization.allocation import allocation_lists, concealed_draws
from stalwart.randomization.minimization import (
    MINIMIZATION_STREAM,
    MinimizationDesign,
    MinimizationFactorLevels,
    arm_probabilities,
    choose_arm,
    minimization_draws,
)

THIRD = 1 / 3


def _reference(
    counts: list[list[int]],
    ratios: list[int],
    weights: list[float],
    p: float,
    measure: str,
) -> list[float]:
    """Pocock & Simon's rule written out plainly with exact fractions, arm by arm."""
    k = len(ratios)
    totals = []
    for cand in range(k):
        total = Fraction(0)
        for row, w in zip(counts, weights, strict=True):
            x = [Fraction(row[j] + (j == cand), ratios[j]) for j in range(k)]
            d = max(x) - min(x) if measure == "range" else statistics.pvariance(x)
            total += Fraction(w) * d
        totals.append(total)
    best = min(totals)
    pref = [j for j in range(k) if totals[j] == best]
    rest = [j for j in range(k) if j not in pref]
    if not rest:
        return [r / sum(ratios) for r in ratios]
    out = [0.0] * k
    for j in pref:
        out[j] = p * ratios[j] / sum(ratios[i] for i in pref)
    for j in rest:
        out[j] = (1 - p) * ratios[j] / sum(ratios[i] for i in rest)
    return out


# -- the rule on hand-worked cases -----------------------------------------------------------------
def test_hand_worked_two_factors_three_arms() -> None:
    # site counts (3, 2, 2) weight 1; CD4 counts (1, 3, 2) weight 2. Range if allocated to
    # A: site 4-2 = 2, cd4 3-2 = 1 -> 2 + 2*1 = 4;  B: 1 + 2*3 = 7;  C: 1 + 2*2 = 5 -> A.
    p = arm_probabilities([[3, 2, 2], [1, 3, 2]], [1, 1, 1], [1, 2], 0.8)
    np.testing.assert_allclose(p, [0.8, 0.1, 0.1])
    # Variance: A 8/9 + 2*(2/9) = 12/9; B 2/9 + 2*(14/9) = 30/9; C 2/9 + 2*(8/9) = 18/9 -> A.
    v = arm_probabilities([[3, 2, 2], [1, 3, 2]], [1, 1, 1], [1, 2], 0.8, "variance")
    np.testing.assert_allclose(v, [0.8, 0.1, 0.1])


def test_every_small_table_follows_the_rule_written_out() -> None:
    for a, b, c in itertools.product(range(3), repeat=3):
        for d, e, f in itertools.product(range(3), repeat=3):
            counts = [[a, b, c], [d, e, f]]
            for measure in ("range", "variance"):
                got = arm_probabilities(counts, [1, 1, 1], [1, 2], 0.7, measure)
                np.testing.assert_allclose(got, _reference(counts, [1, 1, 1], [1, 2], 0.7, measure))


def test_ties_share_the_preferred_probability() -> None:
    # one factor (0, 0, 1): A and B give range 1, C gives 2.
    np.testing.assert_allclose(arm_probabilities([[0, 0, 1]], [1, 1, 1], [1], 0.8), [0.4, 0.4, 0.2])
    # unequal ratios 2:1:1 -> counts/ratio; same counts: A (0.5, 0, 1) r 1, B (0, 1, 1) 1, C 2.
    np.testing.assert_allclose(
        arm_probabilities([[0, 0, 1]], [2, 1, 1], [1], 0.8), [0.8 * 2 / 3, 0.8 / 3, 0.2]
    )


def test_all_tied_is_complete_randomization_by_ratio() -> None:
    np.testing.assert_allclose(arm_probabilities([[0, 0, 0]], [1, 1, 1], [1], 0.9), [THIRD] * 3)
    np.testing.assert_allclose(arm_probabilities([[7, 1]], [2, 1], [0], 0.9), [2 / 3, 1 / 3])
    # with unequal ratios an empty table is not a tie: one more in the 2-arm moves its count per
    # unit of ratio by 1/2, in the 1-arm by 1, so the 2-arm is preferred
    np.testing.assert_allclose(arm_probabilities([[0, 0]], [2, 1], [1], 0.9), [0.9, 0.1])
    # weights all zero: every arm is always tied
    np.testing.assert_allclose(
        arm_probabilities([[5, 0, 0], [0, 9, 1]], [1, 1, 1], [0, 0], 0.9), [THIRD] * 3
    )


def test_unequal_ratio_balance_is_per_unit_of_ratio() -> None:
    # 2:1 with counts (2, 0): scaled (1, 0); B restores balance (1, 1).
    np.testing.assert_allclose(arm_probabilities([[2, 0]], [2, 1], [1], 0.75), [0.25, 0.75])
    # counts (2, 1) are balanced for 2:1; A gives (1.5, 1) range 0.5, B (1, 2) range 1 -> A.
    np.testing.assert_allclose(arm_probabilities([[2, 1]], [2, 1], [1], 0.75), [0.75, 0.25])


def test_probability_one_is_deterministic() -> None:
    np.testing.assert_allclose(arm_probabilities([[1, 0, 0]], [1, 1, 1], [1], 1.0), [0, 0.5, 0.5])
    np.testing.assert_allclose(arm_probabilities([[1, 1, 0]], [1, 1, 1], [1], 1.0), [0, 0, 1])


def test_leading_axes_are_replicates() -> None:
    counts = np.array([[[3, 2, 2], [1, 3, 2]], [[0, 0, 1], [0, 0, 0]]])
    got = arm_probabilities(counts, [1, 1, 1], [1, 2], 0.8)
    assert got.shape == (2, 3)
    np.testing.assert_allclose(got[0], arm_probabilities(counts[0], [1, 1, 1], [1, 2], 0.8))
    np.testing.assert_allclose(got[1], arm_probabilities(counts[1], [1, 1, 1], [1, 2], 0.8))


def test_unknown_imbalance_measure() -> None:
    with pytest.raises(ConfigurationError, match="'range' or 'variance', got 'sd'"):
        arm_probabilities([[0, 0]], [1, 1], [1], 0.8, "sd")


# -- the draw --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("draw", "arm"), [(0.0, 0), (0.39, 0), (0.4, 1), (0.79, 1), (0.8, 2), (0.999999, 2)]
)
def test_the_draw_inverts_the_cumulative_probabilities(draw: float, arm: int) -> None:
    assert int(choose_arm([0.4, 0.4, 0.2], draw)) == arm


def test_an_arm_of_probability_zero_is_never_chosen() -> None:
    assert list(choose_arm([0.0, 1.0, 0.0], [0.0, 0.5, 1 - 2**-53])) == [1, 1, 1]
    # rounding: cumulative sum 0.1 + 0.2 + 0.7 can fall short of a draw just below 1
    assert int(choose_arm([0.1, 0.2, 0.7, 0.0], 1 - 2**-53)) == 2


def test_draw_outside_unit_interval_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"\[0, 1\)"):
        choose_arm([0.5, 0.5], 1.0)


def test_draws_reproducible_from_the_seed() -> None:
    a = minimization_draws(20051201, 50)
    np.testing.assert_array_equal(a, minimization_draws(20051201, 50))
    assert not np.array_equal(a, minimization_draws(20051202, 50))
    np.testing.assert_array_equal(minimization_draws(20051201, 20), a[:20])  # a prefix
    assert ((a >= 0) & (a < 1)).all()


@pytest.mark.parametrize("seed", [-1, 1.5, "7", True])
def test_bad_seed(seed: object) -> None:
    with pytest.raises(ConfigurationError, match="non-negative integer"):
        minimization_draws(seed, 3)  # type: ignore[arg-type]


# -- the design from a protocol --------------------------------------------------------------------
@pytest.fixture(scope="module")
def design(packaged_text: str) -> MinimizationDesign:
    return MinimizationDesign.from_protocol(minimization_protocol(packaged_text).protocol)


def test_design_of_the_protocol(design: MinimizationDesign) -> None:
    assert [f.name for f in design.factors] == ["site", "cd4"]
    assert design.factors[0].levels[:2] == ("US01", "GB01") and len(design.factors[0].levels) == 9
    assert design.factors[1].levels == ("<500", ">=500")
    assert (design.arms, design.ratios) == (("NOTHER", "IL2", "IL2ART"), (1, 1, 1))
    assert (design.probability, design.imbalance, design.list_length) == (0.8, "range", 400)


def test_participant_levels(design: MinimizationDesign) -> None:
    assert design.levels_of("GB01", {"cd4": 499.9}) == (1, 0)
    assert design.levels_of("GB01", {"cd4": 500}) == (1, 1)
    assert design.profile((1, 1)) == "site=GB01|cd4=>=500"
    with pytest.raises(ValidationError) as info:
        design.levels_of("XX99", {"cd4": 600})
    assert info.value.field == "site"
    with pytest.raises(ValidationError) as info:
        design.levels_of("GB01", {})
    assert info.value.field == "cd4" and "needs a number" in info.value.message


def test_choice_boolean_and_three_category_factors() -> None:
    sex = MinimizationFactorLevels("sex", ("F", "M"), 1.0)
    aids = MinimizationFactorLevels("prior_aids", ("true", "false"), 1.0)
    cd4 = MinimizationFactorLevels("cd4", module._cut_labels([350, 500]), 1.0, (350.0, 500.0))
    assert cd4.levels == ("<350", "350-<500", ">=500")
    assert [cd4.level_of(v) for v in (0, 349, 350, 499, 500, 4000)] == [0, 0, 1, 1, 2, 2]
    assert (sex.level_of("M"), aids.level_of(False), aids.level_of(True)) == (1, 1, 0)
    with pytest.raises(ValidationError, match="not one of"):
        sex.level_of("X")


def test_design_of_a_permuted_block_protocol_refused(packaged: object) -> None:
    with pytest.raises(ConfigurationError, match="not 'minimization'"):
        MinimizationDesign.from_protocol(packaged.protocol)  # type: ignore[attr-defined]


def test_set_up_stores_draws_not_lists(packaged_text: str) -> None:
    protocol = minimization_protocol(packaged_text, list_length=30).protocol
    assert allocation_lists(protocol, 5) == {}
    assert concealed_draws(protocol, 5) == list(minimization_draws(5, 30))
    assert MINIMIZATION_STREAM == "minimization"


def test_permuted_blocks_have_no_draws(packaged: object) -> None:
    assert concealed_draws(packaged.protocol, 5) == []  # type: ignore[attr-defined]


# -- the running counts ----------------------------------------------------------------------------
def test_minimizer_counts_and_assigns(design: MinimizationDesign) -> None:
    m = design.minimizer()
    m.add((0, 1), 2)
    m.add((0, 0), 2)
    m.add((3, 1), 0)
    assert m.counts[0, 0].tolist() == [0, 0, 2] and m.counts[1, 1].tolist() == [1, 0, 1]
    # next at US01 with CD4 >= 500: site (0,0,2), cd4 (1,0,1): A 2+2 = 4, B 2+0 = 2, C 3+2 = 5
    np.testing.assert_allclose(m.probabilities((0, 1)), [0.1, 0.8, 0.1])
    assert int(m.assign((0, 1), 0.15)) == 1  # 0.15 falls in B's share [0.1, 0.9)
    assert m.counts.sum() == 2 * 4  # four participants, each counted once per factor


# -- properties ------------------------------------------------------------------------------------
ratio_sets = st.lists(st.integers(1, 3), min_size=2, max_size=4)


@settings(max_examples=60, deadline=None)
@given(
    ratios=ratio_sets,
    levels=st.lists(st.integers(0, 3), min_size=1, max_size=80),
    seed=st.integers(0, 2**32),
    measure=st.sampled_from(["range", "variance"]),
)
def test_one_factor_deterministic_minimization_stays_within_one_allocation(
    ratios: list[int], levels: list[int], seed: int, measure: str
) -> None:
    """With p = 1 and one factor every level stays within one allocation (of the smallest-ratio
    arm) of exact balance, whatever order of levels arrives."""
    arms = tuple(f"A{i}" for i in range(len(ratios)))
    design = MinimizationDesign(
        (MinimizationFactorLevels("f", ("0", "1", "2", "3"), 1.0),),
        arms,
        tuple(ratios),
        1.0,
        measure,
        1000,
    )
    m = design.minimizer()
    draws = np.random.default_rng(seed).random(len(levels))
    for level, u in zip(levels, draws, strict=True):
        m.assign((level,), u)
        x = m.counts[0] / np.array(ratios)
        assert (x.max(axis=-1) - x.min(axis=-1)).max() <= 1 / min(ratios) + 1e-9


@settings(max_examples=60, deadline=None)
@given(
    ratios=ratio_sets,
    weights=st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.0]), min_size=1, max_size=3),
    data=st.data(),
    p=st.floats(0.55, 1.0),
    measure=st.sampled_from(["range", "variance"]),
)
def test_probabilities_follow_the_rule_written_out(
    ratios: list[int], weights: list[float], data: st.DataObject, p: float, measure: str
) -> None:
    counts = data.draw(
        st.lists(
            st.lists(st.integers(0, 6), min_size=len(ratios), max_size=len(ratios)),
            min_size=len(weights),
            max_size=len(weights),
        )
    )
    got = arm_probabilities(counts, ratios, weights, p, measure)
    np.testing.assert_allclose(got, _reference(counts, ratios, weights, p, measure), atol=1e-12)
    assert got.sum() == pytest.approx(1.0)


@settings(max_examples=30, deadline=None)
@given(
    profiles=st.lists(st.tuples(st.integers(0, 8), st.integers(0, 1)), min_size=1, max_size=60),
    seed=st.integers(0, 2**40),
)
def test_replay_is_reproducible_and_vectorised_equals_one_by_one(
    design: MinimizationDesign, profiles: list[tuple[int, int]], seed: int
) -> None:
    draws = minimization_draws(seed, len(profiles))

    def run() -> list[int]:
        m = design.minimizer()
        return [int(m.assign(lv, u)) for lv, u in zip(profiles, draws, strict=True)]

    first = run()
    assert first == run()
    both = design.minimizer(shape=(2,))
    stacked = [
        both.assign(np.array([lv, lv]), np.array([u, u]))
        for lv, u in zip(profiles, draws, strict=True)
    ]
    assert [int(a[0]) for a in stacked] == first == [int(a[1]) for a in stacked]
    assert Counter(first).total() == len(profiles)
