"""The table model and number formatting shared by the trial reports, and the labels they take
from the protocol.

A :class:`Table` holds formatted text only: numbers are turned into strings here, so that the
Jinja2 templates (autoescaped) merely lay them out. :class:`Arms` carries arm codes and labels
in protocol order; a report of pooled arms passes a single pseudo-arm instead. Endpoint and lab
labels and units come from the protocol, falling back to the code when it names none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from stalwart.protocol.schema import Protocol

__all__ = [
    "DASH",
    "Arms",
    "Row",
    "Table",
    "confidence_label",
    "endpoint_label",
    "fmt_ci",
    "fmt_num",
    "format_p",
    "in_words",
    "is_missing",
    "lab_label",
    "lab_unit",
    "mean_sd",
    "median_iqr",
    "n_pct",
]

DASH = "—"
"""What a table shows for a missing or non-finite number."""


@dataclass(frozen=True)
class Row:
    """A table row: a row header (``label``) and formatted cells; ``level`` 1 indents it."""

    label: str
    cells: tuple[str, ...]
    level: int = 0


@dataclass(frozen=True)
class Table:
    """A formatted table: ``stub`` heads the row-header column, ``columns`` the others.

    A row whose cells are all empty reads as a group heading for the indented rows below it.
    """

    id: str
    caption: str
    stub: str
    columns: tuple[str, ...]
    rows: tuple[Row, ...]
    note: str = ""
    text_columns: tuple[int, ...] = ()  # indexes into ``columns`` of left-aligned text


@dataclass(frozen=True)
class Arms:
    """Arm codes and labels in protocol order; ``control`` is the control arm's code."""

    codes: tuple[str, ...]
    labels: tuple[str, ...]
    control: str

    @classmethod
    def of(cls, protocol: Protocol) -> Arms:
        """The arms of ``protocol``."""
        return cls(
            codes=tuple(a.code for a in protocol.arms),
            labels=tuple(a.name for a in protocol.arms),
            control=protocol.control_arm,
        )

    @classmethod
    def pooled(cls, code: str = "ALL", label: str = "All participants") -> Arms:
        """One pseudo-arm standing for every arm pooled: the open (blinded) report's only group."""
        return cls(codes=(code,), labels=(label,), control=code)

    @property
    def is_pooled(self) -> bool:
        """True when there is a single group, so a "Total" column would repeat it."""
        return len(self.codes) == 1

    @property
    def columns(self) -> tuple[str, ...]:
        """Column headings of a by-group table: each arm, then "Total" unless pooled."""
        return self.labels if self.is_pooled else (*self.labels, "Total")

    @property
    def by(self) -> str:
        """How a caption names the grouping: "by arm", or "all arms pooled"."""
        return "all arms pooled" if self.is_pooled else "by arm"

    def label(self, code: str) -> str:
        """The protocol name of an arm; pooled arms (``"A+B"``) join their names."""
        names = dict(zip(self.codes, self.labels, strict=True))
        if code in names:
            return names[code]
        parts = code.split("+")
        if len(parts) > 1 and all(p in names for p in parts):
            return " + ".join(names[p] for p in parts) + " (pooled)"
        return code

    def pairs(self) -> list[tuple[str, str]]:
        """``(code, label)`` of each arm, in protocol order."""
        return list(zip(self.codes, self.labels, strict=True))


# -- formatting ------------------------------------------------------------------------------------


def is_missing(x: object) -> bool:
    """Whether ``x`` is None or a pandas missing value (NaN, NaT, NA)."""
    if x is None:
        return True
    try:
        return bool(pd.isna(x))
    except (TypeError, ValueError):
        return False


def format_p(p: float | None) -> str:
    """A p-value for a table: ``<0.001`` when smaller, else three decimals; a dash if missing."""
    if is_missing(p):
        return DASH
    value = float(p)  # type: ignore[arg-type]
    if value < 0.001:
        return "<0.001"
    return f"{min(value, 1.0):.3f}"


def fmt_num(x: object, decimals: int) -> str:
    """``x`` with ``decimals`` decimals; a dash when missing or not finite; never ``-0``."""
    if is_missing(x):
        return DASH
    value = float(x)  # type: ignore[arg-type]
    if not math.isfinite(value):
        return DASH
    text = f"{value:.{decimals}f}"
    if text.startswith("-") and float(text) == 0:
        text = text[1:]
    return text


def mean_sd(values: pd.Series, decimals: int) -> str:
    """``mean (SD)`` of the non-missing values; a dash when there are none."""
    data = values.dropna().astype(float)
    if data.empty:
        return DASH
    return f"{fmt_num(data.mean(), decimals)} ({fmt_num(data.std(ddof=1), decimals)})"


def median_iqr(values: pd.Series, decimals: int) -> str:
    """``median [Q1, Q3]`` of the non-missing values; a dash when there are none."""
    data = values.dropna().astype(float).to_numpy()
    if data.size == 0:
        return DASH
    q1, median, q3 = np.quantile(data, [0.25, 0.5, 0.75])
    return f"{fmt_num(median, decimals)} [{fmt_num(q1, decimals)}, {fmt_num(q3, decimals)}]"


def n_pct(n: int, denominator: int) -> str:
    """``n (p%)`` of ``denominator``, one decimal."""
    if denominator <= 0:
        return f"{n} ({DASH})"
    return f"{n} ({100.0 * n / denominator:.1f}%)"


_WORDS = {"WITHDREW": "Withdrew consent", "DEATH": "Died", "COMPLETED": "Completed"}
"""Controlled terms whose sentence case alone does not read as English."""


def in_words(code: str) -> str:
    """A CDISC controlled term (``LOST TO FOLLOW-UP``) as words for a reader
    (``Lost to follow-up``): sentence case, with the few terms that need it rephrased."""
    text = str(code).strip()
    if text in _WORDS:
        return _WORDS[text]
    if not text.isupper():
        return text
    lowered = text.lower()
    return lowered[:1].upper() + lowered[1:]


def fmt_ci(low: object, high: object, decimals: int) -> str:
    """``low to high``; a dash when either end is missing."""
    if is_missing(low) or is_missing(high):
        return DASH
    return f"{fmt_num(low, decimals)} to {fmt_num(high, decimals)}"


# -- labels from the protocol ----------------------------------------------------------------------


def confidence_label(protocol: Protocol) -> str:
    """The confidence level of the plan's intervals, e.g. ``95%``."""
    return f"{100 * (1 - protocol.analysis.alpha):g}%"


def endpoint_label(protocol: Protocol, endpoint_id: str) -> str:
    """The protocol's description of an endpoint, or its id."""
    try:
        return protocol.endpoint(endpoint_id).description
    except KeyError:
        return endpoint_id


def lab_unit(protocol: Protocol, item: str, default: str) -> str:
    """The unit of the protocol's lab item ``item``, or ``default``."""
    try:
        unit = protocol.lab_item(item).unit
    except KeyError:
        return default
    return unit or default


def lab_label(protocol: Protocol, item: str) -> str:
    """The label of the protocol's lab item ``item``, or ``item`` itself."""
    try:
        return protocol.lab_item(item).label
    except KeyError:
        return item
