"""Report sections on the course of the trial by arm, from the analysis datasets: a lab
parameter's mean by week (CD4+ count, HIV RNA) and Kaplan-Meier curves of each time-to-event
parameter, each figure with the tables of its data.

Every arm label comes from the ``Arms`` given, in its order (one pooled group in the open DSMB
report); a parameter without data gives a section with no figure and no table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from stalwart.protocol.schema import Protocol
from stalwart.reports.figures.course import mean_by_visit_figure, summarize_by_visit
from stalwart.reports.figures.render import EmbeddedFigure
from stalwart.reports.figures.survival import DAYS_PER_MONTH, KMGroup, km_figure, regular_times
from stalwart.reports.report_tables import (
    DASH,
    Arms,
    Row,
    Table,
    confidence_label,
    endpoint_label,
    fmt_ci,
    fmt_num,
    lab_label,
    lab_unit,
)

__all__ = ["KMSection", "LabSection", "km_sections", "lab_section", "primary_parameter"]


# -- a lab parameter by week -----------------------------------------------------------------------


@dataclass(frozen=True)
class LabSection:
    """A lab parameter by week: figure, n table, data table (None when no data)."""

    figure: EmbeddedFigure | None
    n_table: Table | None
    data_table: Table | None
    caption: str
    parameter: str


def primary_parameter(protocol: Protocol) -> tuple[str, float]:
    """The lab parameter of the first primary endpoint and the week of its visit."""
    endpoint = protocol.endpoint(protocol.analysis.primary[0].endpoint)
    parameter = endpoint.test or endpoint.id
    try:
        week = protocol.visit(endpoint.visit or "").day / 7
    except KeyError:
        week = max(v.day for v in protocol.visits) / 7
    return parameter, week


def lab_section(
    protocol: Protocol,
    adlb: pd.DataFrame,
    arms: Arms,
    parameter: str | None = None,
    label: str | None = None,
    unit: str | None = None,
) -> LabSection:
    """Mean of an ADLB parameter by week and arm, with t-based CIs: figure, n and data tables.

    ``parameter`` (a PARAMCD) defaults to the first primary endpoint's; ``label`` and ``unit``
    default to the protocol's lab item of that name (give them for a derived parameter such as
    log10 HIV RNA). Weeks run from 0 to the primary endpoint's visit.
    """
    primary, last_week = primary_parameter(protocol)
    parameter = parameter or primary
    label = label or lab_label(protocol, parameter)
    unit = lab_unit(protocol, parameter, "") if unit is None else unit
    conf = confidence_label(protocol)
    grouping = "week (all arms pooled)" if arms.is_pooled else "week and arm"
    caption = (
        f"Mean {label} by {grouping}, with t-based {conf} confidence intervals "
        f"(weeks 0 to {last_week:g}; all participants measured at each visit)."
    )
    if "ANL01FL" in adlb.columns:  # an analysis flag, when the dataset carries one
        adlb = adlb[adlb["ANL01FL"] == "Y"]
    data = adlb[
        (adlb["PARAMCD"] == parameter)
        & (adlb["AVISITN"].astype(float) >= 0)
        & (adlb["AVISITN"].astype(float) <= last_week)
    ]
    if data.empty:
        return LabSection(None, None, None, caption, parameter)
    summary = summarize_by_visit(data, 1 - protocol.analysis.alpha)
    weeks = sorted(float(w) for w in summary["AVISITN"].unique())
    d = 0 if float(summary["mean"].abs().max()) >= 20 else 2
    ylabel = f"{label} ({unit})" if unit else label
    pieces = []
    for code, arm_label in arms.pairs():
        rows = summary[summary["ARMCD"] == code]
        if not rows.empty:
            first, last = rows.iloc[0], rows.iloc[-1]
            pieces.append(
                f"{arm_label}: mean {fmt_num(first['mean'], d)} at week {float(first['AVISITN']):g}"
                f", {fmt_num(last['mean'], d)} at week {float(last['AVISITN']):g}"
            )
    figure = mean_by_visit_figure(
        summary,
        arms.pairs(),
        ylabel=ylabel,
        title=f"Mean {label} by {grouping}",
        description="; ".join(pieces) + ".",
        ident=f"fig-mean-{parameter.lower()}",
    )

    def lookup(code: str, week: float) -> pd.Series | None:
        hit = summary[(summary["ARMCD"] == code) & (summary["AVISITN"].astype(float) == week)]
        return None if hit.empty else hit.iloc[0]

    # weeks in rows, arms in columns: a table as long as the visits, as wide as the arms, so
    # that no visit is ever cut off the page however many the protocol schedules
    n_rows, data_rows = [], []
    for week in weeks:
        hits = [lookup(code, week) for code, _ in arms.pairs()]
        n_rows.append(
            Row(f"Week {week:g}", tuple("0" if h is None else str(int(h["n"])) for h in hits))
        )
        data_rows.append(
            Row(
                f"Week {week:g}",
                tuple(
                    DASH
                    if h is None
                    else f"{fmt_num(h['mean'], d)} ({fmt_ci(h['ci_low'], h['ci_high'], d)})"
                    for h in hits
                ),
            )
        )
    arm_columns = tuple(label for _, label in arms.pairs())
    n_table = Table(
        id=f"table-n-{parameter.lower()}",
        caption=f"Participants with a {label} measurement, by {grouping}",
        stub="Visit",
        columns=arm_columns,
        rows=tuple(n_rows),
    )
    data_table = Table(
        id=f"table-mean-{parameter.lower()}",
        caption=f"Mean {label} ({conf} CI) by {grouping}: the data of the figure",
        stub="Visit",
        columns=arm_columns,
        rows=tuple(data_rows),
    )
    return LabSection(figure, n_table, data_table, caption, parameter)


# -- time to event --------------------------------------------------------------------------------


@dataclass(frozen=True)
class KMSection:
    """A time-to-event parameter: Kaplan-Meier figure and numbers at risk (None when no data)."""

    parameter: str
    title: str
    figure: EmbeddedFigure | None
    at_risk: Table | None
    caption: str


def km_sections(protocol: Protocol, adtte: pd.DataFrame, arms: Arms) -> list[KMSection]:
    """One Kaplan-Meier figure with its numbers-at-risk table per time-to-event parameter."""
    planned = [a.endpoint for a in protocol.analysis.time_to_event]
    present = [str(p) for p in adtte["PARAMCD"].dropna().unique()]
    parameters = list(dict.fromkeys(planned + sorted(p for p in present if p not in planned)))
    sections = []
    for parameter in parameters:
        title = endpoint_label(protocol, parameter)
        data = adtte[adtte["PARAMCD"] == parameter]
        caption = (
            f"Kaplan-Meier estimate of the cumulative percentage of participants with the event "
            f"(100 × (1 − S(t))) {arms.by}: {title.lower()}. Time from randomization in months; "
            "+ marks censored follow-up. Numbers at risk below the plot."
        )
        if data.empty:
            sections.append(KMSection(parameter, title, None, None, caption))
            continue
        months = data["AVAL"].astype(float) / DAYS_PER_MONTH
        at_times = regular_times(float(months.max()))
        groups = [
            KMGroup(
                label=label,
                time=(
                    data.loc[data["ARMCD"] == code, "AVAL"].astype(float) / DAYS_PER_MONTH
                ).to_numpy(),
                event=(data.loc[data["ARMCD"] == code, "CNSR"].astype(int) == 0).to_numpy(),
            )
            for code, label in arms.pairs()
        ]
        description = "; ".join(
            f"{g.label}: {int(np.sum(g.event))} events among {len(g.time)} participants"
            for g in groups
        )
        figure, at_risk = km_figure(
            groups,
            at_times=at_times,
            title=f"Kaplan-Meier curves: {title}",
            description=description + ".",
            ident=f"fig-km-{parameter.lower()}",
        )
        table = Table(
            id=f"table-at-risk-{parameter.lower()}",
            caption=f"Numbers at risk {arms.by}, {title.lower()}",
            stub="Months",
            columns=tuple(f"{t:g}" for t in at_times),
            rows=tuple(
                Row(g.label, tuple(str(v) for v in counts))
                for g, counts in zip(groups, at_risk, strict=True)
            ),
        )
        sections.append(KMSection(parameter, title, figure, table, caption))
    return sections
