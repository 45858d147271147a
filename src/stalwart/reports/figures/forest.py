"""Forest plots: one row per comparison, its estimate and confidence interval.

Differences are drawn against 0, hazard ratios against 1 on a log scale.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from stalwart.reports.figures.render import (
    ARM_COLOURS,
    EmbeddedFigure,
    FigureFormat,
    check_ident,
    plain_label,
    render_figure,
)

__all__ = ["ForestRow", "forest_figure", "plain_number", "wrap_label"]

_NICE_RATIOS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)
"""Tick values of a log axis, read as plain numbers."""


def plain_number(value: float) -> str:
    """A tick value as a reader writes it: ``0.5``, ``2``, ``10`` (never ``10^1``)."""
    return f"{value:g}"


def wrap_label(text: str, width: int = 80) -> str:
    """An axis label broken into lines of at most ``width`` characters, so it fits the figure."""
    return "\n".join(textwrap.wrap(text, width)) or text


def _log_ticks(ax: Axes, left: float, right: float) -> None:
    """Ticks of a log x axis at 1-2-5 values inside the limits, printed as plain numbers."""
    ticks = [t for t in _NICE_RATIOS if left <= t <= right]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    formatter: Callable[[float, int | None], str] = lambda v, _pos: plain_number(v)  # noqa: E731
    ax.xaxis.set_major_formatter(FuncFormatter(formatter))


@dataclass(frozen=True)
class ForestRow:
    """One comparison of a forest plot: its label, estimate and confidence limits (None: not
    estimable; the row is labelled but not drawn)."""

    label: str
    estimate: float | None
    ci_low: float | None
    ci_high: float | None


def _limits(row: ForestRow, log_scale: bool) -> tuple[float, float, float] | None:
    """``(estimate, low, high)`` as floats when drawable, else None."""
    values = (row.estimate, row.ci_low, row.ci_high)
    if any(v is None or not math.isfinite(v) for v in values):
        return None
    est, low, high = (float(v) for v in values if v is not None)
    if log_scale and min(est, low, high) <= 0:
        return None
    return est, low, high


def forest_figure(
    rows: Sequence[ForestRow],
    *,
    reference: float,
    xlabel: str,
    title: str,
    description: str,
    log_scale: bool = False,
    ident: str = "fig-forest",
    fmt: FigureFormat = "svg",
) -> EmbeddedFigure:
    """A forest plot: one row per comparison, estimate and confidence interval, top to bottom.

    ``reference`` draws the line of no effect (0 for a difference, 1 for a hazard ratio, then
    with ``log_scale`` so that ratios 1/2 and 2 lie equally far from it). Rows whose estimate or
    limits are missing (or not positive on a log scale) are labelled "not estimable". Each
    row's estimate and interval are printed at the right of the plot, so the figure reads
    without its table.
    """
    check_ident(ident)
    if not rows:
        raise ValueError("a forest plot needs at least one row")
    limits = [_limits(r, log_scale) for r in rows]
    drawn = [lim for lim in limits if lim is not None]
    left = min([reference, *(lim[1] for lim in drawn)])
    right = max([reference, *(lim[2] for lim in drawn)])
    if log_scale:
        pad = math.exp(0.08 * (math.log(right / left) if right > left else 1.0))
        left, right = left / pad, right * pad
    else:
        pad = 0.08 * (right - left if right > left else 1.0)
        left, right = left - pad, right + pad
    fig, ax = plt.subplots(figsize=(7.2, 1.1 + 0.36 * len(rows)), layout="constrained")
    try:
        y = [float(len(rows) - 1 - i) for i in range(len(rows))]
        for yi, lim in zip(y, limits, strict=True):
            if lim is None:  # said in the column of estimates at the right
                continue
            est, low, high = lim
            ax.plot([low, high], [yi, yi], color="#333333", linewidth=1.4)
            ax.plot([est], [yi], marker="s", color=ARM_COLOURS[0], markersize=6)
        if log_scale:
            ax.set_xscale("log")
        ax.set_xlim(left, right)
        if log_scale:
            _log_ticks(ax, left, right)
        digits = 2 if log_scale or max(abs(left), abs(right)) < 20 else 1
        transform = ax.get_yaxis_transform()
        ax.text(
            1.02,
            len(rows) - 0.45,
            "Estimate (CI)",
            transform=transform,
            fontsize=8,
            fontweight="bold",
            va="bottom",
        )
        for yi, lim in zip(y, limits, strict=True):
            text = (
                "not estimable"
                if lim is None
                else (f"{lim[0]:.{digits}f} ({lim[1]:.{digits}f} to {lim[2]:.{digits}f})")
            )
            ax.text(1.02, yi, text, transform=transform, va="center", fontsize=8)
        ax.axvline(reference, color="#888888", linestyle="--", linewidth=1)
        ax.set_yticks(y)
        ax.set_yticklabels([plain_label(wrap_label(r.label, 48)) for r in rows])
        ax.set_ylim(-0.7, len(rows) - 0.3)
        ax.set_xlabel(plain_label(wrap_label(xlabel, 50)), fontsize=9)
        ax.grid(axis="x", color="#dddddd", linewidth=0.6)
        ax.spines[["top", "right", "left"]].set_visible(False)
        ax.tick_params(axis="y", length=0)
        return render_figure(fig, ident=ident, title=title, description=description, fmt=fmt)
    finally:
        plt.close(fig)
