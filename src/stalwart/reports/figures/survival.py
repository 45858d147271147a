"""Kaplan-Meier curves of the reports, with the numbers at risk at regular times.

Times are in months (:data:`DAYS_PER_MONTH`); the estimate is
:func:`stalwart.analysis.kernels.km.kaplan_meier`'s, so the curves match the analysis.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt

from stalwart.analysis.kernels.km import kaplan_meier, number_at_risk
from stalwart.reports.figures.render import (
    ARM_COLOURS,
    LINESTYLES,
    EmbeddedFigure,
    FigureFormat,
    check_ident,
    legend_above,
    plain_label,
    render_figure,
)

__all__ = ["DAYS_PER_MONTH", "KMGroup", "km_figure", "km_step_data", "regular_times"]

DAYS_PER_MONTH = 365.25 / 12
"""Days in an average month: the unit of the Kaplan-Meier time axis."""

_FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class KMGroup:
    """One Kaplan-Meier curve: a label and, per participant, a time and an event flag (1/True)."""

    label: str
    time: Sequence[float] | npt.NDArray[np.float64]
    event: Sequence[int] | Sequence[bool] | npt.NDArray[np.int_] | npt.NDArray[np.bool_]


def km_step_data(
    time: Iterable[float] | npt.ArrayLike, event: Iterable[int] | npt.ArrayLike
) -> tuple[_FloatArray, _FloatArray]:
    """The Kaplan-Meier survival curve as step data for ``plt.step(x, y, where="post")``.

    ``x`` starts at 0 with ``y`` = 1, then holds each distinct event time and the survival just
    after it; the last point extends the curve to the largest observed time. The estimate is
    :func:`stalwart.analysis.kernels.km.kaplan_meier`'s; no observations give ``[0], [1]``.
    """
    t = np.asarray(time, dtype=float).ravel()
    e = np.asarray(event).ravel()
    if t.size == 0 and e.size == 0:
        return np.array([0.0]), np.array([1.0])
    km = kaplan_meier(t, e)
    has_event = km.n_events > 0
    x = np.concatenate([[0.0], km.time[has_event]])
    y = np.concatenate([[1.0], km.survival[has_event]])
    if km.time[-1] > x[-1]:
        x = np.append(x, km.time[-1])
        y = np.append(y, y[-1])
    return x, y


def regular_times(max_time: float, max_ticks: int = 8) -> _FloatArray:
    """Regular times 0, step, 2 step... up to ``max_time``; ``step`` in 1, 2, 3, 6, 12, 24... so
    that at most ``max_ticks`` intervals fit (months: quarters, half-years, years)."""
    if max_time <= 0 or not math.isfinite(max_time):
        return np.array([0.0])
    steps = [1.0, 2.0, 3.0, 6.0, 12.0]
    while steps[-1] * max_ticks < max_time:
        steps.append(steps[-1] * 2)
    step = next(s for s in steps if max_time / s <= max_ticks)
    return np.arange(0.0, max_time + 1e-9, step)


def km_figure(
    groups: Sequence[KMGroup],
    *,
    at_times: Sequence[float] | _FloatArray,
    title: str,
    description: str,
    ident: str = "fig-km",
    xlabel: str = "Months since randomization",
    ylabel: str = "Cumulative incidence (%)",
    cumulative: bool = True,
    fmt: FigureFormat = "svg",
) -> tuple[EmbeddedFigure, list[list[int]]]:
    """Kaplan-Meier curves, one per group, and the numbers at risk at ``at_times``.

    With ``cumulative`` the curve is 100 (1 - S(t)), the percentage with the event, which shows
    rare events better than S(t); otherwise S(t) in percent. Censored times are marked ``+``.
    Returns the figure and, per group, the numbers at risk (for a table under the plot; the
    x ticks sit at ``at_times`` so the two line up).
    """
    check_ident(ident)
    at = np.asarray(at_times, dtype=float).ravel()
    curves: list[tuple[_FloatArray, _FloatArray, _FloatArray]] = []  # x, y, censored times
    at_risk: list[list[int]] = []
    for group in groups:
        t = np.asarray(group.time, dtype=float).ravel()
        e = np.asarray(group.event).ravel()
        x, s = km_step_data(t, e)  # the kernel checks times and event flags
        y = 100.0 * (1.0 - s) if cumulative else 100.0 * s
        curves.append((x, y, np.unique(t[~e.astype(bool)]) if t.size else t))
        at_risk.append([int(v) for v in number_at_risk(t, at)] if t.size else [0] * at.size)
    last = max((float(x[-1]) for x, _, _ in curves), default=0.0)
    right = max(last, float(at[-1]) if at.size else 0.0)
    top = max((float(np.max(y)) for _, y, _ in curves), default=0.0)
    upper = min(101.0, max(5.0, math.ceil(top * 1.2 / 5) * 5)) if cumulative else 101.0

    fig, ax = plt.subplots(figsize=(7.5, 4.2), layout="constrained")
    try:
        for i, (group, (x, y, censored)) in enumerate(zip(groups, curves, strict=True)):
            if x.size < 2:
                continue  # no observations
            colour = ARM_COLOURS[i % len(ARM_COLOURS)]
            ax.step(
                x,
                y,
                where="post",
                color=colour,
                linestyle=LINESTYLES[i % len(LINESTYLES)],
                linewidth=1.6,
                label=plain_label(group.label),
            )
            if censored.size:
                idx = np.searchsorted(x, censored, side="right") - 1
                ax.plot(censored, y[idx], linestyle="none", marker="+", color=colour)
        if at.size:
            ax.set_xticks(at)
            ax.set_xticklabels([f"{v:g}" for v in at])
        ax.set_xlim(0, right if right > 0 else 1.0)
        ax.set_ylim(-0.01 * upper, upper)  # a curve flat at 0 stays visible above the axis
        ax.set_xlabel(plain_label(xlabel))
        ax.set_ylabel(plain_label(ylabel))
        ax.grid(axis="y", color="#dddddd", linewidth=0.6)
        ax.spines[["top", "right"]].set_visible(False)
        legend_above(fig, ax)
        rendered = render_figure(fig, ident=ident, title=title, description=description, fmt=fmt)
    finally:
        plt.close(fig)
    return rendered, at_risk
