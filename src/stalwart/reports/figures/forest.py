"""Forest plots: one row per comparison, its estimate and confidence interval.

Differences are drawn against 0, hazard ratios against 1 on a log scale.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt

from stalwart.reports.figures.render import (
    ARM_COLOURS,
    EmbeddedFigure,
    FigureFormat,
    check_ident,
    plain_label,
    render_figure,
)

__all__ = ["ForestRow", "forest_figure"]


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
    limits are missing (or not positive on a log scale) are labelled "not estimable".
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
    fig, ax = plt.subplots(figsize=(7.5, 1.0 + 0.42 * len(rows)), layout="constrained")
    try:
        y = [float(len(rows) - 1 - i) for i in range(len(rows))]
        for yi, lim in zip(y, limits, strict=True):
            if lim is None:
                ax.text(reference, yi, " not estimable", va="center", fontsize=9, color="#555555")
                continue
            est, low, high = lim
            ax.plot([low, high], [yi, yi], color="#333333", linewidth=1.4)
            ax.plot([est], [yi], marker="s", color=ARM_COLOURS[0], markersize=6)
        if log_scale:
            ax.set_xscale("log")
        ax.set_xlim(left, right)
        ax.axvline(reference, color="#888888", linestyle="--", linewidth=1)
        ax.set_yticks(y)
        ax.set_yticklabels([plain_label(r.label) for r in rows])
        ax.set_ylim(-0.7, len(rows) - 0.3)
        ax.set_xlabel(plain_label(xlabel))
        ax.grid(axis="x", color="#dddddd", linewidth=0.6)
        ax.spines[["top", "right", "left"]].set_visible(False)
        ax.tick_params(axis="y", length=0)
        return render_figure(fig, ident=ident, title=title, description=description, fmt=fmt)
    finally:
        plt.close(fig)
