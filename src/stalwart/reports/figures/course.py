"""The course of a lab parameter: mean by week and arm with t-based confidence intervals.

:func:`summarize_by_visit` reduces an ADLB parameter to n, mean, SD and interval per arm and week;
:func:`mean_by_visit_figure` draws it (the CD4+ count and HIV RNA figures of the reports).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from stalwart.analysis.kernels._distributions import t_ppf
from stalwart.reports.figures.render import (
    ARM_COLOURS,
    LINESTYLES,
    MARKERS,
    EmbeddedFigure,
    FigureFormat,
    check_ident,
    legend_above,
    plain_label,
    render_figure,
)

__all__ = ["mean_by_visit_figure", "summarize_by_visit"]


def summarize_by_visit(
    values: pd.DataFrame, confidence: float = 0.95, *, value: str = "AVAL"
) -> pd.DataFrame:
    """Per arm (``ARMCD``) and week (``AVISITN``): n, mean, SD and a t-based confidence interval.

    Rows with a missing ``value`` are left out. Returns columns ``ARMCD, AVISITN, n, mean, sd,
    ci_low, ci_high`` sorted by arm code and week; SD and the interval are NaN where n < 2.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    data = values.loc[values[value].notna(), ["ARMCD", "AVISITN", value]]
    grouped = data.groupby(["ARMCD", "AVISITN"], sort=True)[value]
    out = grouped.agg(n="count", mean="mean", sd="std").reset_index()
    out["n"] = out["n"].astype(int)
    dof = (out["n"] - 1).to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        tcrit = np.where(dof > 0, t_ppf(0.5 + confidence / 2, np.maximum(dof, 1)), np.nan)
        half = tcrit * out["sd"].to_numpy(dtype=float) / np.sqrt(out["n"].to_numpy(dtype=float))
    out["ci_low"] = out["mean"] - half
    out["ci_high"] = out["mean"] + half
    return out


def mean_by_visit_figure(
    summary: pd.DataFrame,
    arms: Sequence[tuple[str, str]],
    *,
    ylabel: str,
    title: str,
    description: str,
    ident: str = "fig-mean-by-visit",
    xlabel: str = "Week",
    fmt: FigureFormat = "svg",
) -> EmbeddedFigure:
    """Means by week with confidence-interval error bars, one line per arm.

    ``summary`` is what :func:`summarize_by_visit` returns; ``arms`` lists ``(code, label)`` in
    the order to draw and label them. Arms are dodged slightly along x so bars do not overlap.
    """
    check_ident(ident)
    weeks = np.sort(summary["AVISITN"].unique()) if len(summary) else np.array([], dtype=float)
    spacing = float(np.min(np.diff(weeks))) if len(weeks) > 1 else 1.0
    dodge = spacing * 0.12
    fig, ax = plt.subplots(figsize=(7.5, 4.2), layout="constrained")
    try:
        for i, (code, label) in enumerate(arms):
            rows = summary[summary["ARMCD"] == code].sort_values("AVISITN")
            if rows.empty:
                continue
            offset = (i - (len(arms) - 1) / 2) * dodge
            x = rows["AVISITN"].to_numpy(dtype=float) + offset
            mean = rows["mean"].to_numpy(dtype=float)
            low = np.nan_to_num(mean - rows["ci_low"].to_numpy(dtype=float), nan=0.0)
            high = np.nan_to_num(rows["ci_high"].to_numpy(dtype=float) - mean, nan=0.0)
            ax.errorbar(
                x,
                mean,
                yerr=np.vstack([low, high]),
                color=ARM_COLOURS[i % len(ARM_COLOURS)],
                marker=MARKERS[i % len(MARKERS)],
                linestyle=LINESTYLES[i % len(LINESTYLES)],
                markersize=5,
                capsize=3,
                linewidth=1.5,
                label=plain_label(label),
            )
        if len(weeks):
            ax.set_xticks(weeks)
            ax.set_xticklabels([f"{w:g}" for w in weeks])
        ax.set_xlabel(plain_label(xlabel))
        ax.set_ylabel(plain_label(ylabel))
        ax.grid(axis="y", color="#dddddd", linewidth=0.6)
        ax.spines[["top", "right"]].set_visible(False)
        legend_above(fig, ax)
        return render_figure(fig, ident=ident, title=title, description=description, fmt=fmt)
    finally:
        plt.close(fig)
