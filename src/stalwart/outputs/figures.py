"""Figures of the trial report, rendered for embedding in one self-contained HTML page.

Each public figure function draws with matplotlib (Agg backend, no display needed), closes its
figure before returning, and hands back an :class:`EmbeddedFigure`: the raw image (SVG text or
PNG bytes) and the HTML markup that embeds it inline, an ``<svg>`` element with ``<title>`` and
``<desc>`` or an ``<img>`` with a ``data:`` URI and ``alt`` text. Nothing refers to an external
resource. The CONSORT flow diagram is drawn as SVG directly, so that its boxes stay readable text.

Element ids inside an inline SVG are prefixed with the figure's ``ident`` so that several figures
share one page without clashing; ``ident`` must therefore be unique within the page.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import math
import re
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from scipy import stats

from stalwart.analysis.kernels.km import kaplan_meier, number_at_risk

__all__ = [
    "ARM_COLOURS",
    "DAYS_PER_MONTH",
    "ConsortArm",
    "EmbeddedFigure",
    "FigureFormat",
    "ForestRow",
    "KMGroup",
    "consort_diagram",
    "forest_figure",
    "km_figure",
    "km_step_data",
    "mean_by_visit_figure",
    "regular_times",
    "summarize_by_visit",
]

FigureFormat = Literal["svg", "png"]
"""How a figure is embedded: inline SVG (default, vector, prints sharply) or a base64 PNG."""

DAYS_PER_MONTH = 365.25 / 12
"""Days in an average month: the unit of the Kaplan-Meier time axis."""

ARM_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
"""Okabe-Ito colours (colour-blind safe), given to arms in protocol order."""

_MARKERS = ("o", "s", "^", "D", "v", "P", "X")
_LINESTYLES = ("-", "--", "-.", ":", "-", "--", "-.")

_FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class EmbeddedFigure:
    """A rendered figure: ``markup`` goes into the HTML as is; ``data`` is the image itself."""

    markup: str
    data: bytes
    mime: str


@dataclass(frozen=True)
class KMGroup:
    """One Kaplan-Meier curve: a label and, per participant, a time and an event flag (1/True)."""

    label: str
    time: Sequence[float] | npt.NDArray[np.float64]
    event: Sequence[int] | Sequence[bool] | npt.NDArray[np.int_] | npt.NDArray[np.bool_]


@dataclass(frozen=True)
class ConsortArm:
    """The CONSORT counts of one arm, in the order the diagram shows them."""

    label: str
    randomized: int
    discontinued: Mapping[str, int] = field(default_factory=dict)
    completed: int = 0
    analysed: int = 0


# -- rendering -----------------------------------------------------------------------------------


def _plain(text: str) -> str:
    """Text for a matplotlib label: ``$`` would otherwise start mathtext."""
    return text.replace("$", r"\$")


def _check_ident(ident: str) -> None:
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", ident):
        raise ValueError(
            f"figure ident {ident!r} must start with a letter and hold only letters, digits, "
            "'-' and '_' (it prefixes element ids in the page)"
        )


_SVG_ID = re.compile(r'\bid="([^"]+)"')
_SVG_HREF = re.compile(r'href="#([^"]+)"')
_SVG_URL = re.compile(r"url\(#([^)]+)\)")


def _inline_svg(svg: str, ident: str, title: str, description: str) -> str:
    """Make matplotlib's standalone SVG document fit for inline use in HTML.

    Drops the XML prolog, doctype, RDF metadata and namespace declarations (HTML parses inline
    SVG without them), prefixes every id and every reference to one with ``ident``, and adds an
    accessible name (``<title>``) and description (``<desc>``).
    """
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.DOTALL)
    svg = re.sub(r'\s+xmlns(?::\w+)?="[^"]*"', "", svg)
    svg = _SVG_ID.sub(lambda m: f'id="{ident}-{m.group(1)}"', svg)
    svg = _SVG_HREF.sub(lambda m: f'href="#{ident}-{m.group(1)}"', svg)
    svg = _SVG_URL.sub(lambda m: f"url(#{ident}-{m.group(1)})", svg)
    head_end = svg.index(">") + 1
    head = svg[: head_end - 1]
    head += (
        f' id="{ident}" role="img" aria-labelledby="{ident}-title {ident}-desc" '
        'style="max-width: 100%; height: auto">'
    )
    labels = (
        f'<title id="{ident}-title">{html.escape(title)}</title>'
        f'<desc id="{ident}-desc">{html.escape(description)}</desc>'
    )
    return head + labels + svg[head_end:].rstrip() + "\n"


def _render(
    fig: Figure, *, ident: str, title: str, description: str, fmt: FigureFormat
) -> EmbeddedFigure:
    """Render and close ``fig``."""
    try:
        if fmt == "svg":
            text_buffer = io.StringIO()
            with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": ident}):
                fig.savefig(text_buffer, format="svg", metadata={"Date": None})
            svg = text_buffer.getvalue()
            return EmbeddedFigure(
                markup=_inline_svg(svg, ident, title, description),
                data=svg.encode("utf-8"),
                mime="image/svg+xml",
            )
        if fmt == "png":
            byte_buffer = io.BytesIO()
            fig.savefig(byte_buffer, format="png", dpi=150, metadata={"Software": None})
            data = byte_buffer.getvalue()
            uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
            alt = html.escape(f"{title}. {description}".strip(" ."), quote=True)
            return EmbeddedFigure(
                markup=f'<img id="{ident}" src="{uri}" alt="{alt}" style="max-width: 100%">',
                data=data,
                mime="image/png",
            )
        raise ValueError(f"figure format must be 'svg' or 'png', got {fmt!r}")
    finally:
        plt.close(fig)


def _legend(fig: Figure, ax: Axes) -> None:
    """One legend row above the axes, clear of the data."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(
            handles,
            labels,
            loc="outside upper center",
            ncols=min(len(handles), 3),
            frameon=False,
        )


# -- mean by visit ---------------------------------------------------------------------------------


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
        tcrit = np.where(dof > 0, stats.t.ppf(0.5 + confidence / 2, np.maximum(dof, 1)), np.nan)
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
    _check_ident(ident)
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
                marker=_MARKERS[i % len(_MARKERS)],
                linestyle=_LINESTYLES[i % len(_LINESTYLES)],
                markersize=5,
                capsize=3,
                linewidth=1.5,
                label=_plain(label),
            )
        if len(weeks):
            ax.set_xticks(weeks)
            ax.set_xticklabels([f"{w:g}" for w in weeks])
        ax.set_xlabel(_plain(xlabel))
        ax.set_ylabel(_plain(ylabel))
        ax.grid(axis="y", color="#dddddd", linewidth=0.6)
        ax.spines[["top", "right"]].set_visible(False)
        _legend(fig, ax)
        return _render(fig, ident=ident, title=title, description=description, fmt=fmt)
    finally:
        plt.close(fig)


# -- Kaplan-Meier ---------------------------------------------------------------------------------


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
    _check_ident(ident)
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
                linestyle=_LINESTYLES[i % len(_LINESTYLES)],
                linewidth=1.6,
                label=_plain(group.label),
            )
            if censored.size:
                idx = np.searchsorted(x, censored, side="right") - 1
                ax.plot(censored, y[idx], linestyle="none", marker="+", color=colour)
        if at.size:
            ax.set_xticks(at)
            ax.set_xticklabels([f"{v:g}" for v in at])
        ax.set_xlim(0, right if right > 0 else 1.0)
        ax.set_ylim(-0.01 * upper, upper)  # a curve flat at 0 stays visible above the axis
        ax.set_xlabel(_plain(xlabel))
        ax.set_ylabel(_plain(ylabel))
        ax.grid(axis="y", color="#dddddd", linewidth=0.6)
        ax.spines[["top", "right"]].set_visible(False)
        _legend(fig, ax)
        rendered = _render(fig, ident=ident, title=title, description=description, fmt=fmt)
    finally:
        plt.close(fig)
    return rendered, at_risk


# -- forest plot -----------------------------------------------------------------------------------


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
    _check_ident(ident)
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
        ax.set_yticklabels([_plain(r.label) for r in rows])
        ax.set_ylim(-0.7, len(rows) - 0.3)
        ax.set_xlabel(_plain(xlabel))
        ax.grid(axis="x", color="#dddddd", linewidth=0.6)
        ax.spines[["top", "right", "left"]].set_visible(False)
        ax.tick_params(axis="y", length=0)
        return _render(fig, ident=ident, title=title, description=description, fmt=fmt)
    finally:
        plt.close(fig)


# -- CONSORT diagram -------------------------------------------------------------------------------

_FONT = 12
_LINE = 15
_PAD = 8
_CHAR_WIDTH = 7.0  # average glyph width at 12 px, for wrapping
_NEQ = "\u00a0=\u00a0"  # " = " that wrapping never splits
_COL_WIDTH = 220
_GAP = 20


@dataclass(frozen=True)
class _Box:
    x: float
    y: float
    width: float
    lines: tuple[tuple[str, bool], ...]  # (text, bold)

    @property
    def height(self) -> float:
        return _box_height(len(self.lines))

    @property
    def bottom(self) -> float:
        return self.y + self.height

    @property
    def centre(self) -> float:
        return self.x + self.width / 2


def _box_height(n_lines: int) -> float:
    return 2 * _PAD + n_lines * _LINE


def _wrap(text: str, width: float, bold: bool = False, indent: str = "") -> list[tuple[str, bool]]:
    chars = max(8, int((width - 2 * _PAD) / _CHAR_WIDTH))
    lines = textwrap.wrap(text, chars, subsequent_indent=indent) or [""]
    return [(line, bold) for line in lines]


def _reason_lines(
    title: str, total: int, reasons: Mapping[str, int], width: float
) -> list[tuple[str, bool]]:
    lines = _wrap(f"{title} (n{_NEQ}{total})", width, bold=True)
    for reason, count in reasons.items():
        lines += _wrap(f"• {reason} (n{_NEQ}{count})", width, indent="  ")
    return lines


def _svg_box(box: _Box) -> str:
    parts = [
        f'<rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.width:.1f}" '
        f'height="{box.height:.1f}" rx="3" fill="#ffffff" stroke="#333333" stroke-width="1"/>'
    ]
    for i, (text, bold) in enumerate(box.lines):
        y = box.y + _PAD + (i + 1) * _LINE - 4
        weight = ' font-weight="bold"' if bold else ""
        parts.append(f'<text x="{box.x + _PAD:.1f}" y="{y:.1f}"{weight}>{html.escape(text)}</text>')
    return "\n".join(parts)


def _svg_line(x1: float, y1: float, x2: float, y2: float, ident: str, arrow: bool = True) -> str:
    end = f' marker-end="url(#{ident}-arrow)"' if arrow else ""
    return (
        f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
        f'stroke="#333333" stroke-width="1"{end}/>'
    )


def consort_diagram(
    screened: int,
    screen_failures: int,
    failure_reasons: Mapping[str, int],
    arms: Sequence[ConsortArm],
    *,
    ident: str = "fig-consort",
    title: str = "CONSORT flow diagram",
    description: str = "",
) -> EmbeddedFigure:
    """A CONSORT-style flow diagram as inline SVG: screening, exclusions with reasons, randomized,
    then per arm allocated, discontinued (with reasons), completed and analysed."""
    _check_ident(ident)
    if not arms:
        raise ValueError("a CONSORT diagram needs at least one arm")
    k = len(arms)
    width = max(k * (_COL_WIDTH + _GAP) + _GAP, 740)
    centre = width / 2
    randomized = sum(a.randomized for a in arms)

    top = _Box(
        centre - 140,
        10,
        280,
        tuple(_wrap(f"Assessed for eligibility (n{_NEQ}{screened})", 280, bold=True)),
    )
    excl_x = centre + 60
    excl_width = min(300, width - excl_x - 10)
    excluded = _Box(
        excl_x,
        top.bottom + 15,
        excl_width,
        tuple(_reason_lines("Excluded", screen_failures, failure_reasons, excl_width)),
    )
    rand = _Box(
        centre - 140,
        max(top.bottom, excluded.bottom) + 25,
        280,
        tuple(_wrap(f"Randomized (n{_NEQ}{randomized})", 280, bold=True)),
    )
    split_y = rand.bottom + 20
    left = (width - (k * _COL_WIDTH + (k - 1) * _GAP)) / 2
    columns = [
        [
            _wrap(arm.label, _COL_WIDTH, bold=True)
            + _wrap(f"Allocated (n{_NEQ}{arm.randomized})", _COL_WIDTH),
            _reason_lines(
                "Discontinued main study",
                sum(arm.discontinued.values()),
                arm.discontinued,
                _COL_WIDTH,
            ),
            _wrap(f"Completed main study (n{_NEQ}{arm.completed})", _COL_WIDTH),
            _wrap(f"Analysed, primary endpoint (n{_NEQ}{arm.analysed})", _COL_WIDTH),
        ]
        for arm in arms
    ]
    boxes: list[list[_Box]] = [[] for _ in arms]
    y = split_y + 20
    for row in range(4):
        tallest = max(_box_height(len(col[row])) for col in columns)
        for j, col in enumerate(columns):
            x = left + j * (_COL_WIDTH + _GAP)
            boxes[j].append(_Box(x, y, _COL_WIDTH, tuple(col[row])))
        y += tallest + 22
    height = y - 10

    parts = [
        f'<svg width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'id="{ident}" role="img" aria-labelledby="{ident}-title {ident}-desc" '
        'style="max-width: 100%; height: auto" '
        f'font-family="DejaVu Sans, Arial, Helvetica, sans-serif" font-size="{_FONT}">',
        f'<title id="{ident}-title">{html.escape(title)}</title>',
        f'<desc id="{ident}-desc">{html.escape(description)}</desc>',
        f'<defs><marker id="{ident}-arrow" viewBox="0 0 10 10" refX="10" refY="5" '
        'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        '<path d="M 0 0 L 10 5 L 0 10 z" fill="#333333"/></marker></defs>',
        _svg_box(top),
        _svg_box(excluded),
        _svg_box(rand),
        _svg_line(centre, top.bottom, centre, rand.y, ident),
        _svg_line(
            centre,
            excluded.y + excluded.height / 2,
            excluded.x,
            excluded.y + excluded.height / 2,
            ident,
        ),
        _svg_line(centre, rand.bottom, centre, split_y, ident, arrow=False),
    ]
    centres = [column[0].centre for column in boxes]
    parts.append(_svg_line(min(centres), split_y, max(centres), split_y, ident, arrow=False))
    for column in boxes:
        first = column[0]
        parts.append(_svg_line(first.centre, split_y, first.centre, first.y, ident))
        for upper, lower in itertools.pairwise(column):
            parts.append(_svg_line(upper.centre, upper.bottom, lower.centre, lower.y, ident))
        parts.extend(_svg_box(box) for box in column)
    parts.append("</svg>")
    markup = "\n".join(parts) + "\n"
    standalone = markup.replace("<svg ", '<svg xmlns="http://www.w3.org/2000/svg" ', 1)
    return EmbeddedFigure(markup=markup, data=standalone.encode("utf-8"), mime="image/svg+xml")
