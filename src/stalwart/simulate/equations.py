"""The laws of the STALWART participant model, each written once.

Pure functions of the parameters and of arrays: nothing here draws a random number (the draws are
passed in), so the per-participant simulator (:mod:`stalwart.simulate.model`,
:mod:`stalwart.simulate.candidates`), the vectorized one (``vectorized`` and its private modules)
and the calibration (:mod:`stalwart.simulate.calibration`) evaluate the same expressions, in the
same order of operations.

Where a law takes a scalar of the per-participant path it accepts a Python ``float`` as well as
an array: a float goes through :func:`math.exp`, an array through :func:`numpy.exp`. The two may
round the last bit differently, and each simulator keeps the rounding it has always had, so the
same seed gives the same records, byte for byte.

The laws, in the order a participant meets them (the parameters and their sources:
``parameters.toml``):

* **Latent state** at randomization from standard normal draws: HIV RNA set point; log CD4
  correlated with it; other lymphocytes; the natural CD4 decline depending on the set point; the
  individual IL-2 response (lognormal, mean 1).
* **Measurement**: the CD4 count is lymphocytes x CD4% with independent mean-preserving lognormal
  errors; log10 HIV RNA adds normal noise.
* **Natural CD4 path**: linear decline from the randomization count, not below the floor.
* **Clinical-event hazard** per day: ``frailty * rate / 365.25 * exp(k * (ref - C_nat(t)))``.
* **IL-2**: the CD4 gain and HIV RNA rise kernels after a cycle's first IL-2 day; the true CD4 is
  the natural path plus the individual's gain.
* **ART**: log10 suppression of HIV RNA, built up on each day taken and rebounding otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from stalwart.simulate.parameters import ModelParameters

__all__ = [
    "DAYS_PER_YEAR",
    "FloatArray",
    "Value",
    "art_suppression_decay",
    "art_suppression_fade_days",
    "art_suppression_step",
    "cd4_at_randomization",
    "cd4_decline",
    "cd4_log_deviation",
    "daily_event_rate",
    "event_hazard",
    "event_hazard_slope",
    "hiv_rna_setpoint",
    "il2_cd4_kernel",
    "il2_excess_window",
    "il2_hiv_rna_kernel",
    "il2_response",
    "log10_hiv_rna",
    "measured_cd4",
    "measured_log10_hiv_rna",
    "natural_cd4",
    "other_lymphocytes",
    "relative_event_hazard",
    "true_cd4",
]

DAYS_PER_YEAR = 365.25
"""Days in the year of every rate per year of the model."""

FloatArray = NDArray[np.float64]

Value = TypeVar("Value", float, FloatArray)
"""A scalar of the per-participant path (``float``) or an array of the vectorized one."""


def _exp(x: Value) -> Value:
    """``exp`` as each path has always rounded it: :func:`math.exp` on a float, else NumPy's."""
    if isinstance(x, float):
        return math.exp(x)
    out: FloatArray = np.exp(x)
    return out


def _mean_one_lognormal(sd: float, z: Value) -> Value:
    """``exp(sd * z - sd^2 / 2)``: a lognormal factor with mean 1 from a standard normal ``z``."""
    return _exp(sd * z - sd * sd / 2.0)


# ---------------------------------------------------------------------------------------------
# Latent state at randomization
# ---------------------------------------------------------------------------------------------
def hiv_rna_setpoint(params: ModelParameters, z: Value) -> Value:
    """HIV RNA set point, log10 copies/mL, from a standard normal ``z``."""
    return params.hiv_rna_setpoint_mean.value + params.hiv_rna_setpoint_sd.value * z


def cd4_log_deviation(params: ModelParameters, z_setpoint: Value, z_cd4: Value) -> Value:
    """``log CD4 - log median``: normal, correlated with the set point's ``z_setpoint``."""
    rho = params.cd4_setpoint_correlation.value
    return params.cd4_log_sd.value * (rho * z_setpoint + math.sqrt(1.0 - rho * rho) * z_cd4)


def cd4_at_randomization(params: ModelParameters, z_setpoint: Value, z_cd4: Value) -> Value:
    """True CD4 count at randomization, cells/mm3 (lognormal around the median)."""
    return params.cd4_median.value * _exp(cd4_log_deviation(params, z_setpoint, z_cd4))


def other_lymphocytes(params: ModelParameters, z: Value) -> Value:
    """Lymphocytes other than CD4 cells, cells/mm3 (lognormal around the median)."""
    return params.other_lymphocytes_median.value * _exp(params.other_lymphocytes_log_sd.value * z)


def cd4_decline(params: ModelParameters, setpoint: Value, z: Value) -> Value:
    """Natural CD4 decline, cells/mm3 per year: faster with a higher HIV RNA set point."""
    p = params
    return (
        p.cd4_decline_per_year.value
        + p.cd4_decline_per_log10_rna.value * (setpoint - 4.0)
        + p.cd4_decline_sd.value * z
    )


def il2_response(params: ModelParameters, z: Value) -> Value:
    """Individual multiplier of the IL-2 CD4 gain: lognormal with mean 1."""
    return _mean_one_lognormal(params.il2_response_log_sd.value, z)


# ---------------------------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------------------------
def measured_cd4(
    params: ModelParameters, cd4: FloatArray, other: float | FloatArray, noise: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Measured (count, percent) of true CD4 counts: lymphocytes x CD4%, mean-preserving errors.

    ``noise`` holds two standard normals per count, ``noise[0]`` for the lymphocyte count and
    ``noise[1]`` for the percent (shape ``(2, *cd4.shape)``); the percent is capped at 99.
    """
    s_count = params.lymphocyte_count_noise_log_sd.value
    s_pct = params.cd4_percent_noise_log_sd.value
    lymphocytes = (cd4 + other) * _mean_one_lognormal(s_count, noise[0])
    percent = 100.0 * cd4 / (cd4 + other) * _mean_one_lognormal(s_pct, noise[1])
    percent = np.minimum(percent, 99.0)
    return lymphocytes * percent / 100.0, percent


def measured_log10_hiv_rna(params: ModelParameters, log10_rna: Value, z: Value) -> Value:
    """Measured log10 HIV RNA: the true value plus normal assay noise."""
    return log10_rna + params.hiv_rna_noise_sd.value * z


# ---------------------------------------------------------------------------------------------
# CD4 over time and the clinical-event hazard
# ---------------------------------------------------------------------------------------------
def natural_cd4(
    params: ModelParameters,
    cd4: float | FloatArray,
    decline: float | FloatArray,
    days: FloatArray | NDArray[np.int64],
) -> FloatArray:
    """Natural CD4 path on study ``days``: linear decline from ``cd4``, not below the floor."""
    out: FloatArray = np.maximum(cd4 - decline * days / DAYS_PER_YEAR, params.cd4_floor.value)
    return out


def event_hazard_slope(params: ModelParameters) -> float:
    """``k``: log hazard ratio of clinical events per cell/mm3 of natural CD4 lost."""
    return params.event_log_hazard_per_100_cd4.value / 100.0


def daily_event_rate(params: ModelParameters, frailty: Value) -> Value:
    """Clinical-event hazard per day at the reference CD4 count, for a ``frailty``."""
    return frailty * params.event_rate_at_reference_cd4.value / DAYS_PER_YEAR


def il2_excess_window(params: ModelParameters, il2_days: Sequence[int]) -> tuple[float, float]:
    """First and last day (inclusive) of one IL-2 cycle's excess event hazard.

    The hazard ratio ``il2_event_hazard_ratio`` applies from the cycle's first IL-2 day to its
    last plus ``il2_excess_hazard_window_days`` (exposure-driven inflammation, hsCRP and D-dimer
    rise with each cycle and settle after it); a window longer than follow-up is a persistent
    excess from the first dose. A participant's exposure is the union over the cycles intended
    (not declined) and not stopped before their first IL-2 day.

    The window is in whole days: a fractional ``il2_excess_hazard_window_days`` (a posterior
    draw's, say) covers the days up to its floor, as a day-by-day hazard reads ``day <= last``,
    so that every simulator and the calibration give the ratio to the same days (the vectorized
    engine's closed form integrates between the bounds and would otherwise count a fraction of
    the next day, and date events on it).
    """
    last = float(il2_days[-1]) + params.il2_excess_hazard_window_days.value
    return float(il2_days[0]), float(math.floor(last)) if math.isfinite(last) else last


def relative_event_hazard(params: ModelParameters, natural: FloatArray) -> FloatArray:
    """``exp(k * (ref - C_nat))``: the hazard relative to the reference CD4 count."""
    slope = event_hazard_slope(params)
    out: FloatArray = np.exp(slope * (params.event_reference_cd4.value - natural))
    return out


def event_hazard(params: ModelParameters, frailty: float, natural: FloatArray) -> FloatArray:
    """Daily clinical-event hazard on the days of the natural CD4 path ``natural`` (before the
    IL-2 hazard ratio and the later-event ratio)."""
    out: FloatArray = daily_event_rate(params, frailty) * relative_event_hazard(params, natural)
    return out


# ---------------------------------------------------------------------------------------------
# IL-2
# ---------------------------------------------------------------------------------------------
def il2_cd4_kernel(params: ModelParameters, tau: FloatArray) -> FloatArray:
    """CD4 gain per unit of persistent gain, ``tau`` days after a cycle's first IL-2 day.

    ``(1 - exp(-tau / tau_p)) + ratio * phi(tau)`` for ``tau > 0`` (0 before), where ``phi`` is a
    difference of exponentials scaled to peak at 1.
    """
    t = np.maximum(np.asarray(tau, dtype=np.float64), 0.0)
    tp = params.il2_cd4_persistent_time_constant.value
    tr = params.il2_cd4_transient_rise_time_constant.value
    td = params.il2_cd4_transient_decay_time_constant.value
    peak = math.log(td / tr) * tr * td / (td - tr)
    height = math.exp(-peak / td) - math.exp(-peak / tr)
    persistent = 1.0 - np.exp(-t / tp)
    transient = (np.exp(-t / td) - np.exp(-t / tr)) / height
    out: FloatArray = np.where(
        t > 0, persistent + params.il2_cd4_transient_ratio.value * transient, 0.0
    )
    return out


def il2_hiv_rna_kernel(params: ModelParameters, tau: FloatArray, length: int) -> FloatArray:
    """Fraction of the peak IL-2 HIV RNA rise, ``tau`` days after a cycle's first IL-2 day.

    Rises linearly over the ``length`` IL-2 days to 1 on the last one, then decays exponentially.
    """
    t = np.asarray(tau, dtype=np.float64)
    last = max(length, 1) - 1.0
    rising = (t + 1.0) / (last + 1.0)
    decay = np.exp(-np.maximum(t - last, 0.0) / params.il2_hiv_rna_decay_time_constant.value)
    out: FloatArray = np.where(t < 0, 0.0, np.where(t <= last, rising, decay))
    return out


def true_cd4(
    params: ModelParameters,
    natural: FloatArray,
    response: float | FloatArray,
    exposure: FloatArray,
) -> FloatArray:
    """True CD4: the natural path plus the IL-2 gain, ``exposure`` being the sum over cycles of
    the fraction of injections taken times :func:`il2_cd4_kernel`."""
    gain = exposure * (response * params.il2_cd4_persistent_gain_per_cycle.value)
    out: FloatArray = natural + gain
    return out


def log10_hiv_rna(
    params: ModelParameters, setpoint: float | FloatArray, rise: FloatArray, suppression: FloatArray
) -> FloatArray:
    """True log10 HIV RNA: the set point, plus the IL-2 rise (``rise`` the sum over cycles of the
    fraction taken times :func:`il2_hiv_rna_kernel`), minus the ART suppression."""
    out: FloatArray = setpoint + params.il2_hiv_rna_peak_increase.value * rise - suppression
    return out


# ---------------------------------------------------------------------------------------------
# ART
# ---------------------------------------------------------------------------------------------
def art_suppression_step(
    params: ModelParameters, level: float | FloatArray, taken: bool | NDArray[np.bool_]
) -> FloatArray:
    """log10 HIV RNA suppression the next morning: up by the daily decline on a day ART is taken
    (at most the maximum suppression), down by the daily rebound otherwise (at least 0)."""
    p = params
    up = np.minimum(
        level + p.art_hiv_rna_decline_per_day.value, p.art_hiv_rna_max_suppression.value
    )
    down = np.maximum(level - p.art_hiv_rna_rebound_per_day.value, 0.0)
    out: FloatArray = np.where(taken, up, down)
    return out


def art_suppression_decay(
    params: ModelParameters, level: FloatArray, days: int | NDArray[np.int64]
) -> FloatArray:
    """Suppression ``days`` days of rebound after ``level`` (:func:`art_suppression_step`
    without ART, in closed form)."""
    out: FloatArray = np.maximum(level - params.art_hiv_rna_rebound_per_day.value * days, 0.0)
    return out


def art_suppression_fade_days(params: ModelParameters) -> int:
    """Days after the last ART day by which any suppression has rebounded to 0."""
    cap = params.art_hiv_rna_max_suppression.value
    return math.ceil(cap / params.art_hiv_rna_rebound_per_day.value) + 1
