"""Fisher's exact test against scipy (p-value, conditional odds ratio and CI), vectorisation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats
from scipy.stats.contingency import odds_ratio

from stalwart.analysis.kernels.fisher import fisher_exact, fisher_exact_proportions
from stalwart.errors import AnalysisError

TABLES = [
    [[3, 1], [1, 3]],
    [[10, 2], [3, 15]],
    [[12, 1], [164, 90]],
    [[50, 400], [30, 700]],
    [[2, 7], [8, 2]],
    [[1, 1], [100, 1]],
]


@pytest.mark.parametrize("table", TABLES)
def test_matches_scipy(table: list[list[int]]) -> None:
    ours = fisher_exact(table)
    assert float(ours.p_value) == pytest.approx(stats.fisher_exact(table)[1], rel=1e-12)
    ref = odds_ratio(table, kind="conditional")
    assert float(ours.odds_ratio) == pytest.approx(ref.statistic, rel=1e-8)
    ci = ref.confidence_interval(confidence_level=0.95)
    assert float(ours.ci_low) == pytest.approx(ci.low, rel=1e-7)
    assert float(ours.ci_high) == pytest.approx(ci.high, rel=1e-7)
    for alternative in ("less", "greater"):
        one = fisher_exact(table, alternative=alternative)  # type: ignore[arg-type]
        ref_p = stats.fisher_exact(table, alternative=alternative)[1]
        assert float(one.p_value) == pytest.approx(ref_p, rel=1e-12)


def test_zero_cells_and_single_table_margins() -> None:
    res = fisher_exact([[[0, 5], [5, 0]], [[5, 0], [0, 5]], [[0, 0], [3, 4]]])
    assert res.odds_ratio.tolist() == [0.0, np.inf, 0.0]
    assert res.ci_low[0] == 0.0 and np.isinf(res.ci_high[1])
    assert res.p_value[2] == 1.0 and res.ci_low[2] == 0.0 and np.isinf(res.ci_high[2])
    payload = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert payload["odds_ratio"][1] is None  # inf -> None


def test_many_ae_terms_at_once() -> None:
    rng = np.random.default_rng(9)
    events1 = rng.binomial(176, rng.uniform(0, 0.3, 200))
    events2 = rng.binomial(91, rng.uniform(0, 0.3, 200))
    many = fisher_exact_proportions(events1, 176, events2, 91)
    assert many.p_value.shape == (200,)
    for j in (0, 57, 199):
        table = [[events1[j], events2[j]], [176 - events1[j], 91 - events2[j]]]
        assert many.p_value[j] == pytest.approx(stats.fisher_exact(table)[1], rel=1e-10)
    assert many.tables.shape == (200, 2, 2)


@settings(max_examples=60, deadline=None)
@given(arrays(np.int64, (2, 2), elements=st.integers(0, 30)))
def test_interval_contains_estimate_and_p_bounds(table: np.ndarray) -> None:
    res = fisher_exact(table)
    assert 0.0 < float(res.p_value) <= 1.0
    assert float(res.ci_low) <= float(res.odds_ratio) <= float(res.ci_high)
    swapped = fisher_exact(table[:, ::-1])  # swapping columns inverts the odds ratio
    assert float(swapped.p_value) == pytest.approx(float(res.p_value), rel=1e-9)
    if 0 < float(res.odds_ratio) < np.inf:
        assert float(swapped.odds_ratio) == pytest.approx(1.0 / float(res.odds_ratio), rel=1e-7)


@pytest.mark.parametrize(
    ("table", "match"),
    [
        ([[1, 2], [3]], "numeric"),
        ([1, 2, 3, 4], "shape"),
        ([[1, -2], [3, 4]], "non-negative"),
        ([[1, 2.5], [3, 4]], "whole-number"),
    ],
)
def test_rejects_bad_tables(table: object, match: str) -> None:
    with pytest.raises(AnalysisError, match=match):
        fisher_exact(table)  # type: ignore[arg-type]


def test_rejects_more_events_than_participants() -> None:
    with pytest.raises(AnalysisError, match="exceeds"):
        fisher_exact_proportions(10, 5, 1, 10)
    with pytest.raises(AnalysisError, match="alternative"):
        fisher_exact([[1, 2], [3, 4]], alternative="both")  # type: ignore[arg-type]
