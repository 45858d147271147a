"""Group-sequential boundaries: closed forms, grid convergence, a seeded simulation, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from stalwart.analysis.kernels import groupseq
from stalwart.analysis.kernels.groupseq import alpha_spending, group_sequential_bounds
from stalwart.errors import AnalysisError


@pytest.mark.parametrize("sided", [1, 2])
@pytest.mark.parametrize("spending", ["obrien-fleming", "pocock"])
def test_single_look_is_the_fixed_design(sided: int, spending: str) -> None:
    design = group_sequential_bounds([1.0], 0.05, sided=sided, spending=spending)  # type: ignore[arg-type]
    assert design.critical_values[0] == pytest.approx(stats.norm.isf(0.05 / sided), rel=1e-12)
    assert design.alpha_spent[0] == pytest.approx(0.05, rel=1e-12)
    assert design.nominal_p[0] == pytest.approx(0.05, rel=1e-12)


def test_spending_functions() -> None:
    t = np.array([0.0, 0.25, 0.5, 1.0])
    of = alpha_spending(t, 0.025, spending="obrien-fleming")
    with np.errstate(divide="ignore"):
        expected = 2 * stats.norm.sf(stats.norm.isf(0.0125) / np.sqrt(t))
    np.testing.assert_allclose(of, expected, rtol=1e-12)
    two = alpha_spending(t, 0.05, sided=2, spending="obrien-fleming")
    assert two[-1] == pytest.approx(0.05, rel=1e-12)
    pocock = alpha_spending(t, 0.05, spending="pocock")
    np.testing.assert_allclose(pocock, 0.05 * np.log(1 + (np.e - 1) * t), rtol=1e-12)


def test_two_looks_match_a_bivariate_normal_integral() -> None:
    design = group_sequential_bounds([0.4, 1.0], 0.025, spending="pocock")
    c1, c2 = design.critical_values
    rho = np.sqrt(0.4)
    neither = stats.multivariate_normal([0, 0], [[1, rho], [rho, 1]]).cdf([c1, c2])
    assert 1.0 - neither == pytest.approx(0.025, abs=1e-7)  # scipy's Genz integration error


def test_grid_refinement_does_not_move_the_boundaries(monkeypatch: pytest.MonkeyPatch) -> None:
    rates = [0.2, 0.45, 0.7, 0.85, 1.0]
    base = group_sequential_bounds(rates, 0.05, sided=2)
    monkeypatch.setattr(groupseq, "_POINTS_PER_SD", 96)
    monkeypatch.setattr(groupseq, "_MIN_INTERVALS", 1200)
    fine = group_sequential_bounds(rates, 0.05, sided=2)
    np.testing.assert_allclose(base.critical_values, fine.critical_values, rtol=0, atol=5e-9)


def test_seeded_simulation_rejects_at_alpha() -> None:
    rng = np.random.default_rng(20240601)
    rates = np.array([0.25, 0.5, 0.75, 1.0])
    design = group_sequential_bounds(rates, 0.05, sided=2, spending="obrien-fleming")
    steps = rng.standard_normal((200_000, 4)) * np.sqrt(np.diff(rates, prepend=0.0))
    z = np.cumsum(steps, axis=1) / np.sqrt(rates)
    crossed = np.cumsum(np.abs(z) >= design.critical_values, axis=1) > 0
    observed = crossed.mean(axis=0)
    se = np.sqrt(design.alpha_spent * (1 - design.alpha_spent) / z.shape[0])
    assert np.all(np.abs(observed - design.alpha_spent) < 4 * se)


def test_boundaries_shape_and_json() -> None:
    of = group_sequential_bounds([0.25, 0.5, 0.75, 1.0], 0.025)
    assert np.all(np.diff(of.critical_values) < 0)  # O'Brien-Fleming-like: strict early
    pocock = group_sequential_bounds([0.25, 0.5, 0.75, 1.0], 0.025, spending="pocock")
    assert np.ptp(pocock.critical_values) < 0.05  # Pocock-like: nearly flat
    payload = json.loads(json.dumps(of.to_dict(), allow_nan=False))
    assert payload["sided"] == 1 and len(payload["critical_values"]) == 4


@pytest.mark.parametrize(
    ("rates", "kwargs", "match"),
    [
        ([0.5, 0.5, 1.0], {}, "strictly increasing"),
        ([0.0, 1.0], {}, r"\(0, 1\]"),
        ([0.5, 1.2], {}, r"\(0, 1\]"),
        ([], {}, "non-empty"),
        ([0.5, 1.0], {"alpha": 0.7}, "alpha"),
        ([0.5, 1.0], {"sided": 3}, "sided"),
        ([0.5, 1.0], {"spending": "haybittle"}, "spending"),
    ],
)
def test_rejects_bad_designs(rates: list[float], kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(AnalysisError, match=match):
        group_sequential_bounds(rates, **kwargs)  # type: ignore[arg-type]
