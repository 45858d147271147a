"""Group-sequential monitoring of replicate trials: interim looks, efficacy and harm boundaries.

Looks are calendar days. Interim look ``k`` at information fraction ``t_k`` is held on the day the
``ceil(t_k N)``-th randomized participant is due at the endpoint visit (randomization day plus
the visit's scheduled day); the primary endpoint is analysed on the participants whose endpoint
visit has happened by then (their recorded visit day, complete cases), the safety endpoint on
follow-up cut at that day (events after it censored there). The last look (``t = 1``) is the
final analysis on all data.

Boundaries are Lan-DeMets (:func:`stalwart.analysis.kernels.groupseq.group_sequential_bounds`,
equal to rpact) at the planned fractions:

* efficacy: two-sided at the plan's alpha; the ANCOVA t statistic is put on the z scale by its
  p-value (``z = sign(t) Phi^-1(1 - p/2)``), efficacy when ``z >= c_k`` (treated better),
  rejection of no difference when ``|z| >= c_k``;
* harm (the DSMB rule on the safety endpoint): one-sided at ``harm_alpha`` on the log-rank
  ``z = (O - E) / sqrt(V)`` of the treated arms, harm when ``z >= h_k``; ``h_k`` are the plan's
  calibrated values (:func:`harm_critical_values`) once the study has set them
  (:mod:`~stalwart.montecarlo.harm_calibration`), else Lan-DeMets'. Each look's z is kept
  (``gs|harm_z|k``, NaN without an event) for that calibration.

Planned rather than observed information fractions are used (the realised fractions are
reported), the usual simplification of a design simulation.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import special

from stalwart.analysis.kernels.batched import (
    EventTimes,
    batched_ancova,
    batched_logrank,
    event_times,
)
from stalwart.analysis.kernels.groupseq import GroupSequentialDesign, group_sequential_bounds
from stalwart.montecarlo.scenarios import LookPlan
from stalwart.simulate.vectorized import ReplicateData

__all__ = [
    "LookData",
    "analyse_looks",
    "boundaries",
    "harm_critical_values",
    "harm_statistics",
    "look_days",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

NO_STOP, EFFICACY, HARM = 0, 1, 2
"""``gs|stop_reason`` codes."""


@dataclass(frozen=True)
class LookData:
    """A primary comparison's inputs to the ANCOVA at each look."""

    key: str
    y: FloatArray
    base: FloatArray
    group: npt.NDArray[np.int64]
    levels: tuple[int, int]  # (treatment, control) codes in ``group``
    complete: BoolArray
    visit: int  # index on the data's visit axis
    visit_day: int  # scheduled study day of the endpoint visit
    final: tuple[FloatArray, FloatArray] | None = None
    """(statistic, p-value) of this very ANCOVA on every complete case, where the caller has
    it already (the final analysis): the last look reuses it instead of fitting it again."""


@functools.lru_cache(maxsize=64)
def boundaries(
    rates: tuple[float, ...], alpha: float, sided: int, spending: str
) -> GroupSequentialDesign:
    """Lan-DeMets boundaries, cached (the same for every block of a study)."""
    return group_sequential_bounds(rates, alpha, sided=sided, spending=spending)  # type: ignore[arg-type]


def harm_critical_values(looks: LookPlan) -> FloatArray:
    """The harm boundary's z values: the calibrated ones when set, else normal theory."""
    if looks.harm_critical_z is not None:
        return np.asarray(looks.harm_critical_z, dtype=np.float64)
    rates = tuple(float(t) for t in looks.information_rates)
    return boundaries(rates, float(looks.harm_alpha), 1, looks.harm_spending).critical_values


def look_days(data: ReplicateData, rates: tuple[float, ...], visit_day: int) -> FloatArray:
    """Calendar day (from the accrual start) of each interim look, shape (R, looks - 1)."""
    n = data.arm.shape[1]
    due = data.randomization_day.astype(np.float64) + visit_day  # sorted per replicate
    index = [max(math.ceil(t * n), 1) - 1 for t in rates[:-1]]
    return due[:, index]


def analyse_looks(
    data: ReplicateData,
    primaries: list[LookData],
    safety: tuple[FloatArray, BoolArray, BoolArray, BoolArray],
    looks: LookPlan,
    alpha: float,
    final_times: EventTimes | None = None,
) -> dict[str, npt.NDArray[Any]]:
    """First crossing look per comparison, the harm look, and the trial's stopping look.

    ``final_times``: :func:`event_times` of ``safety`` uncut, where the caller has it already
    (the final analysis); the last look reuses it.
    """
    rates = tuple(float(t) for t in looks.information_rates)
    efficacy = boundaries(rates, alpha, 2, looks.spending).critical_values
    harm = harm_critical_values(looks)
    k_looks = len(rates)
    days = look_days(data, rates, primaries[0].visit_day)
    r = data.arm.shape[0]
    randomized = data.randomization_day.astype(np.float64)
    out: dict[str, npt.NDArray[Any]] = {}
    first_efficacy = np.zeros(r, dtype=np.int64)
    for item in primaries:
        seen = randomized + data.visit_day[:, :, item.visit]
        final_n = item.complete.sum(axis=1)
        eff_look = np.zeros(r, dtype=np.int64)
        reject_look = np.zeros(r, dtype=np.int64)
        for k in range(k_looks):
            include = item.complete
            if k < k_looks - 1:
                include = include & (seen <= days[:, k, None])
                z = _ancova_z(item, include, alpha)
            else:
                z = _final_ancova_z(item, alpha)
            with np.errstate(invalid="ignore"):
                up = (z >= efficacy[k]) & (eff_look == 0)
                either = (np.abs(z) >= efficacy[k]) & (reject_look == 0)
            eff_look[up] = k + 1
            reject_look[either] = k + 1
            if item is primaries[0]:
                with np.errstate(invalid="ignore", divide="ignore"):
                    out[f"gs|information|{k + 1}"] = include.sum(axis=1) / final_n
        out[f"{item.key}|gs_efficacy_look"] = eff_look
        out[f"{item.key}|gs_reject_look"] = reject_look
        first_efficacy = np.where(
            (eff_look > 0) & ((first_efficacy == 0) | (eff_look < first_efficacy)),
            eff_look,
            first_efficacy,
        )
    harm_look = np.zeros(r, dtype=np.int64)
    safety_columns = harm_statistics(data, safety, days, final_times)
    for k in range(k_looks):
        z = safety_columns[f"gs|harm_z|{k + 1}"]
        with np.errstate(invalid="ignore"):
            crossed = (z >= harm[k]) & (harm_look == 0)
        harm_look[crossed] = k + 1
    out.update(safety_columns)
    out["gs|harm_look"] = harm_look
    stop_look, reason = _stopping(first_efficacy, harm_look, k_looks)
    out["gs|stop_look"] = stop_look
    out["gs|stop_reason"] = reason
    return out


def harm_statistics(
    data: ReplicateData,
    safety: tuple[FloatArray, BoolArray, BoolArray, BoolArray],
    days: FloatArray,
    final_times: EventTimes | None = None,
) -> dict[str, npt.NDArray[Any]]:
    """The harm rule's log-rank z (``gs|harm_z|k``, NaN without an event) and the safety events
    (``gs|safety_events|k``) at each look: follow-up cut at the interim looks' ``days``
    (:func:`look_days`), all of it at the last look (``final_times`` where the caller has it).

    All that a harm boundary's calibration reads, so it runs this alone."""
    time, event, treated, include = safety
    randomized = data.randomization_day.astype(np.float64)
    k_looks = days.shape[1] + 1
    out: dict[str, npt.NDArray[Any]] = {}
    for k in range(k_looks):
        if k < k_looks - 1:
            cut = days[:, k, None] - randomized
            included = include & (cut >= 0)
            observed = event & (time <= cut)
            times = event_times(
                np.where(included, np.minimum(time, cut), 0.0), observed, treated, included
            )
        else:
            times = (
                final_times
                if final_times is not None
                else event_times(time, event, treated, include)
            )
        out[f"gs|harm_z|{k + 1}"] = batched_logrank(times).z
        out[f"gs|safety_events|{k + 1}"] = times.total_events
    return out


def _ancova_z(item: LookData, include: BoolArray, alpha: float) -> FloatArray:
    res = batched_ancova(item.y, item.group, item.base, include, *item.levels, alpha)
    return _z(res.statistic, res.p_value)


def _final_ancova_z(item: LookData, alpha: float) -> FloatArray:
    if item.final is None:
        return _ancova_z(item, item.complete, alpha)
    return _z(*item.final)


def _z(statistic: FloatArray, p_value: FloatArray) -> FloatArray:
    """The ANCOVA t statistic on the z scale by its p-value."""
    with np.errstate(invalid="ignore"):
        z: FloatArray = np.sign(statistic) * -special.ndtri(p_value / 2.0)
    return z


def _stopping(
    efficacy_look: npt.NDArray[np.int64], harm_look: npt.NDArray[np.int64], k_looks: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The trial stops at its first crossing; harm first when both cross at one look."""
    never = k_looks + 1
    eff = np.where(efficacy_look > 0, efficacy_look, never)
    harm = np.where(harm_look > 0, harm_look, never)
    first = np.minimum(eff, harm)
    reason = np.where(first == never, NO_STOP, np.where(harm <= eff, HARM, EFFICACY))
    return np.where(first == never, k_looks, first), reason
