"""The model's laws, written once: each path keeps its rounding, and closed forms match steps."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stalwart.simulate.equations import (
    art_suppression_decay,
    art_suppression_fade_days,
    art_suppression_step,
    cd4_at_randomization,
    event_hazard,
    il2_response,
    measured_cd4,
    natural_cd4,
    other_lymphocytes,
)
from stalwart.simulate.parameters import ModelParameters, load_parameters


@pytest.fixture(scope="module")
def params() -> ModelParameters:
    return load_parameters()


def test_a_float_goes_through_math_exp_and_an_array_through_numpy(params):
    """The per-participant path (floats) rounds as math.exp, the vectorized one as np.exp: the
    same function serves both without changing either simulator's bytes."""
    z = np.random.default_rng(3).standard_normal((2, 500))
    rho = params.cd4_setpoint_correlation.value
    for a, b in z.T.tolist():
        got = cd4_at_randomization(params, a, b)
        assert isinstance(got, float)
        deviation = params.cd4_log_sd.value * (rho * a + math.sqrt(1.0 - rho * rho) * b)
        assert got == params.cd4_median.value * math.exp(deviation)
    arrays = cd4_at_randomization(params, z[0], z[1])
    deviation = params.cd4_log_sd.value * (rho * z[0] + math.sqrt(1.0 - rho * rho) * z[1])
    assert np.array_equal(arrays, params.cd4_median.value * np.exp(deviation))
    assert isinstance(other_lymphocytes(params, 0.5), float)
    assert isinstance(il2_response(params, 0.5), float)


def test_measurement_preserves_the_mean(params):
    rng = np.random.default_rng(4)
    cd4 = np.full(200_000, 400.0)
    count, percent = measured_cd4(params, cd4, 1200.0, rng.standard_normal((2, len(cd4))))
    assert abs(count.mean() / 400.0 - 1.0) < 0.01
    assert abs(percent.mean() / 25.0 - 1.0) < 0.01
    assert percent.max() <= 99.0


def test_event_hazard_grows_as_natural_cd4_falls_to_the_floor(params):
    days = np.arange(0, 3000, dtype=np.float64)
    natural = natural_cd4(params, 500.0, 120.0, days)
    assert natural[0] == 500.0 and natural.min() == params.cd4_floor.value
    hazard = event_hazard(params, 1.0, natural)
    assert np.all(np.diff(hazard) >= 0)
    per_day = params.event_rate_at_reference_cd4.value / 365.25
    assert hazard[0] == pytest.approx(per_day)  # CD4 500 is the reference count


def test_art_suppression_rebound_in_closed_form_equals_the_daily_steps(params):
    level = np.zeros(3)
    for taken in (True, True, True, True, False, True, True):
        level = art_suppression_step(params, level, np.array([taken, False, taken]))
    assert level[1] == 0.0 and level[0] > 0.0
    days = np.arange(art_suppression_fade_days(params) + 1)
    stepped = [level]
    for _ in days[1:]:
        stepped.append(art_suppression_step(params, stepped[-1], np.zeros(3, dtype=bool)))
    closed = art_suppression_decay(params, level[None, :], days[:, None])
    assert np.allclose(closed, np.vstack(stepped), rtol=0, atol=1e-12)
    assert np.all(closed[-1] == 0.0)
