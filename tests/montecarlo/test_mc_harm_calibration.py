"""The DSMB harm boundary calibrated by simulation: its level under no excess is the nominal one."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from stalwart.analysis.kernels.groupseq import group_sequential_bounds
from stalwart.montecarlo.harm_calibration import calibrate, calibration_seed, with_boundary
from stalwart.montecarlo.scenarios import DEFAULT_LOOKS, LookPlan
from stalwart.montecarlo.study import run_study

RATES = (0.5, 0.75, 1.0)


def _brownian_z(rng: np.random.Generator, n: int) -> np.ndarray:
    """Score statistics of a normal, continuous test at the looks: z_k = B(t_k) / sqrt(t_k)."""
    steps = np.diff((0.0, *RATES))
    b = np.cumsum(rng.standard_normal((n, len(RATES))) * np.sqrt(steps), axis=1)
    return b / np.sqrt(RATES)


def test_on_a_normal_statistic_the_calibration_recovers_lan_demets() -> None:
    # the group-sequential kernel equals rpact (tests/analysis); a calibration on normal z must
    # find its boundaries, within the Monte Carlo error of a 0.15% tail
    z = _brownian_z(np.random.default_rng(7), 400_000)
    normal = group_sequential_bounds(RATES, 0.025, sided=1)
    found = calibrate(z, normal.alpha_spent)
    assert found == pytest.approx(normal.critical_values.tolist(), abs=0.04)


def test_the_budget_is_never_exceeded_with_atoms_and_missing_values() -> None:
    # a discrete statistic: ties must not push the crossing share above the target
    z = np.array([[np.nan, 3.0, 3.0], [2.0, 2.0, 2.0], [2.0, 2.0, 2.0], [np.nan, np.nan, 1.0]])
    z = np.repeat(z, 25, axis=0)  # 100 replicates, atoms of 25
    bounds = calibrate(z, [0.1, 0.3, 0.6])
    assert bounds[0] == math.inf  # 2.0 has 50 replicates > 10 allowed
    assert bounds[1] == pytest.approx(2.5)  # midway between the atom 3.0 (25 <= 30) and 2.0
    crossed = np.zeros(len(z), bool)
    for k, b in enumerate(bounds):
        with np.errstate(invalid="ignore"):
            crossed |= z[:, k] >= b
        assert crossed.mean() <= [0.1, 0.3, 0.6][k]
    assert crossed.mean() == 0.25  # look 3 cannot add the 50 at 2.0 without exceeding 0.6
    with pytest.raises(ValueError, match="needs 3 values"):
        calibrate(z, [0.1, 0.3])


def test_a_normal_theory_plan_is_left_as_it_is() -> None:
    z = _brownian_z(np.random.default_rng(1), 100)
    normal = LookPlan(harm_boundary="normal")
    assert with_boundary(normal, z) is normal
    assert with_boundary(DEFAULT_LOOKS, z).harm_critical_z is not None
    assert calibration_seed(5) == calibration_seed(5) != calibration_seed(6)


REPLICATES = 2000


def _crossing(out: Path) -> tuple[float, dict]:
    oc = json.loads((out / "oc.json").read_text())
    return float(oc["alternative"]["group_sequential"]["harm"]["harm_cumulative"][-1]), oc


def test_under_no_excess_the_boundary_crosses_at_its_nominal_level(tmp_path: Path) -> None:
    # calibration and evaluation are independent runs of REPLICATES each: the crossing share
    # differs from 0.025 by the two Monte Carlo errors together
    nominal = 0.025
    se = math.sqrt(2.0 * nominal * (1.0 - nominal) / REPLICATES)
    run_study(tmp_path / "cal", replicates=REPLICATES, seed=11, harm="none")
    crossing, oc = _crossing(tmp_path / "cal")
    assert abs(crossing - nominal) <= 3.0 * se, (crossing, se)
    design = oc["design"]["group_sequential"]
    assert design["harm_boundary"] == "calibrated"
    calibration = design["harm_calibration"]
    assert calibration["replicates"] == REPLICATES
    assert calibration["calibration_cumulative_crossing"][-1] <= nominal
    used = oc["alternative"]["group_sequential"]["design"]["harm_critical_z"]
    assert used == calibration["harm_critical_z"]
    # with about three events at the file's values the calibrated boundary sits well below the
    # normal-theory one, which could not be crossed
    assert all(c < n for c, n in zip(used, calibration["normal_theory_critical_z"], strict=True))
    # the null scenario has no excess either: its crossing is the same (common random numbers)
    assert oc["null"]["group_sequential"]["harm"]["harm_cumulative"][-1] == crossing


def test_the_normal_theory_boundary_is_conservative_on_few_events(tmp_path: Path) -> None:
    # the root cause, kept visible: Lan-DeMets on the discrete, skewed log-rank z crosses far
    # less often than its nominal level under no excess
    scenario = tmp_path / "normal.toml"
    scenario.write_text('name = "normal theory"\n[group_sequential]\nharm_boundary = "normal"\n')
    run_study(tmp_path / "n", replicates=REPLICATES, seed=11, harm="none", scenario=scenario)
    crossing, oc = _crossing(tmp_path / "n")
    se = math.sqrt(0.025 * 0.975 / REPLICATES)
    assert crossing < 0.025 - 3.0 * se
    assert "harm_calibration" not in oc["design"]["group_sequential"]
    design = oc["alternative"]["group_sequential"]["design"]
    assert design["harm_critical_z"] == design["harm_critical_z_normal_theory"]
