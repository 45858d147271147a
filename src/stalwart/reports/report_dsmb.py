"""Sections that the DSMB reports add to the trial report: pooling for the open report, the
forest plot, adverse events by term and DAIDS grade, listings of opportunistic events and deaths,
and the results the analysis plan may add (secondary, longitudinal, safety tests).

The open report is built by pooling before anything is formatted: :func:`pool_datasets` and
:func:`pool_flow` replace every arm code by one pseudo-arm, so the section builders never see an
arm and cannot show one. The result sections read the typed records of
:class:`~stalwart.analysis.results.PlanResult`; those the plan may or may not produce
(``secondary``, ``longitudinal``, ``safety``) render when it gave records and are skipped
otherwise.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Sequence

import pandas as pd

from stalwart.analysis.datasets.bundle import TrialDatasets
from stalwart.analysis.flow import Flow
from stalwart.analysis.methods import short_label
from stalwart.analysis.results import LongitudinalComparison, PlanResult, SafetyComparison
from stalwart.protocol.schema import Protocol
from stalwart.reports.figures.forest import ForestRow, forest_figure
from stalwart.reports.figures.render import EmbeddedFigure
from stalwart.reports.report_participants import DAIDS_GRADES, ordered_levels
from stalwart.reports.report_sections import grouped
from stalwart.reports.report_tables import (
    DASH,
    Arms,
    Row,
    Table,
    confidence_label,
    endpoint_label,
    fmt_ci,
    fmt_num,
    format_p,
    n_pct,
)

__all__ = [
    "POOLED",
    "ae_grade_table",
    "event_listing",
    "forest_figures",
    "longitudinal_table",
    "pool_datasets",
    "pool_flow",
    "safety_table",
]

POOLED = "ALL"
"""The arm code of the open report's single pooled group."""

_REVIEW = {"CONFIRMED": "Confirmed", "REJECTED": "Rejected"}


# -- pooling ---------------------------------------------------------------------------------------


def pool_datasets(datasets: TrialDatasets) -> TrialDatasets:
    """The datasets with every arm code replaced by :data:`POOLED` (for the open report)."""

    def pooled(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(ARMCD=POOLED) if "ARMCD" in frame.columns else frame

    return dataclasses.replace(
        datasets,
        adsl=pooled(datasets.adsl),
        adlb=pooled(datasets.adlb),
        adtte=pooled(datasets.adtte),
        adae=pooled(datasets.adae),
    )


def pool_flow(flow: Flow) -> Flow:
    """The participant flow with all arms summed into :data:`POOLED`."""
    discontinued: Counter[str] = Counter()
    for reasons in flow.discontinued.values():
        discontinued.update(reasons)
    return dataclasses.replace(
        flow,
        randomized={POOLED: sum(flow.randomized.values())},
        completed={POOLED: sum(flow.completed.values())},
        discontinued={POOLED: dict(discontinued.most_common())},
        analysed_primary={POOLED: sum(flow.analysed_primary.values())},
    )


# -- forest plot -----------------------------------------------------------------------------------


def forest_figures(protocol: Protocol, plan: PlanResult, arms: Arms) -> list[EmbeddedFigure]:
    """Forest plots of every comparison: differences of each continuous endpoint (primary and
    secondary, one plot per endpoint) and hazard ratios (Cox) on a log scale. A plot none of
    whose comparisons has an estimate yet (an early look) is left out."""
    conf = confidence_label(protocol)
    figures: list[EmbeddedFigure] = []
    by_endpoint = grouped((*plan.primary, *plan.secondary), lambda r: r.endpoint)
    for endpoint, records in by_endpoint.items():
        label = endpoint_label(protocol, endpoint)
        rows = [
            ForestRow(
                f"{arms.label(r.arm)} vs {arms.label(r.control)} ({short_label(r.method)})",
                r.difference,
                r.ci_low,
                r.ci_high,
            )
            for r in records
        ]
        if all(row.estimate is None or row.ci_low is None for row in rows):
            continue
        figures.append(
            forest_figure(
                rows,
                reference=0.0,
                xlabel=f"{label}: arm minus control ({conf} CI)",
                title=f"Forest plot: {label}",
                description="; ".join(
                    f"{row.label}: {fmt_num(row.estimate, 2)} "
                    f"({fmt_ci(row.ci_low, row.ci_high, 2)})"
                    for row in rows
                ),
                ident=f"fig-forest-{endpoint.lower() or 'endpoint'}",
            )
        )
    ratios = [r for r in plan.time_to_event if r.method.startswith("cox")]
    if any(r.hazard_ratio is not None and r.ci_low is not None for r in ratios):
        rows = [
            ForestRow(
                f"{arms.label(r.arm)} vs {arms.label(r.control)}",
                r.hazard_ratio,
                r.ci_low,
                r.ci_high,
            )
            for r in ratios
        ]
        figures.append(
            forest_figure(
                rows,
                reference=1.0,
                log_scale=True,
                xlabel=f"Hazard ratio (Cox), {conf} CI, log scale; below 1 favours the arm",
                title="Forest plot: hazard ratios",
                description="; ".join(
                    f"{row.label}: {fmt_num(row.estimate, 2)} "
                    f"({fmt_ci(row.ci_low, row.ci_high, 2)})"
                    for row in rows
                ),
                ident="fig-forest-hazard-ratios",
            )
        )
    return figures


# -- adverse events by term and grade --------------------------------------------------------------


def ae_grade_table(protocol: Protocol, adsl: pd.DataFrame, adae: pd.DataFrame, arms: Arms) -> Table:
    """Participants by the worst DAIDS grade they had of each term: n (%) of each group.

    A participant with several events of one term counts once, under the worst grade.
    """
    events = adae.assign(_GRADE=pd.to_numeric(adae["AETOXGR"], errors="coerce"))
    worst = (
        events.dropna(subset=["_GRADE"])
        .groupby(["AEDECOD", "USUBJID"], as_index=False)
        .agg(ARMCD=("ARMCD", "first"), GRADE=("_GRADE", "max"))
    )
    codes = list(arms.codes)
    denominators = [int((adsl["ARMCD"] == code).sum()) for code in codes]
    groups = [worst[worst["ARMCD"] == code] for code in codes]
    if not arms.is_pooled:
        denominators.append(len(adsl))
        groups.append(worst)

    def cells(selected: Iterable[pd.DataFrame]) -> tuple[str, ...]:
        return tuple(n_pct(len(frame), n) for frame, n in zip(selected, denominators, strict=True))

    ae = protocol.forms.AE
    rows: list[Row] = []
    for term in ordered_levels(worst["AEDECOD"], ae.terms):
        of_term = [g[g["AEDECOD"] == term] for g in groups]
        rows.append(Row(term, ("",) * len(groups)))
        rows.append(Row("Any grade", cells(of_term), 1))
        for grade in range(ae.min_grade, ae.max_grade + 1):
            at_grade = [g[g["GRADE"] == grade] for g in of_term]
            if any(len(g) for g in at_grade):
                name = DAIDS_GRADES.get(grade, "")
                label = f"Grade {grade}" + (f" ({name.lower()})" if name else "")
                rows.append(Row(label, cells(at_grade), 1))
    return Table(
        id="table-ae-term-grade",
        caption=f"Participants by worst grade of each adverse event term, {arms.by}: n (%)",
        stub="Term and worst grade",
        columns=tuple(
            f"{label} (n\u00a0=\u00a0{n})"
            for label, n in zip(arms.columns, denominators, strict=True)
        ),
        rows=tuple(rows),
        note=f"Grades: {ae.grading}. A participant counts once per term, under the worst grade; "
        "grades no participant had are left out.",
    )


# -- listings --------------------------------------------------------------------------------------


def event_listing(
    protocol: Protocol, events: pd.DataFrame, adsl: pd.DataFrame, arms: Arms | None
) -> Table:
    """Listing of reported opportunistic events and deaths: participant, (arm), study day, event,
    category and endpoint-review status. ``arms`` None leaves the arm out (open report)."""
    terms = {e.code: e.term for e in protocol.forms.CE.events}
    arm_of = dict(zip(adsl["USUBJID"], adsl["ARMCD"], strict=True)) if arms else {}
    rows = []
    for record in events.itertuples(index=False):
        onset = pd.Timestamp(record.onset_date)
        start = pd.Timestamp(record.randomization_date)
        day = str((onset - start).days)
        status = (
            DASH
            if "decision" not in events.columns
            else _REVIEW.get(str(record.decision), "Awaiting review")
        )
        cells: tuple[str, ...] = (
            str(record.event_code) + ": " + terms.get(str(record.event_code), ""),
            str(record.category).capitalize(),
            day,
            status,
        )
        if arms is not None:
            cells = (arms.label(str(arm_of.get(record.usubjid, DASH))), *cells)
        rows.append(Row(str(record.usubjid), cells))
    columns: tuple[str, ...] = ("Event", "Category", "Study day", "Endpoint review")
    text: tuple[int, ...] = (0, 1, 3)
    if arms is not None:
        columns = ("Arm", *columns)
        text = (0, 1, 2, 4)
    return Table(
        id="listing-events",
        caption="Listing: reported opportunistic events and deaths",
        stub="Participant",
        columns=columns,
        rows=tuple(rows),
        note="Study day: days from randomization to onset. Endpoint review: the reviewer's "
        "verdict; events awaiting review or rejected do not count as endpoint events when the "
        "protocol counts confirmed events only.",
        text_columns=text,
    )


# -- results the plan may add ----------------------------------------------------------------------


def longitudinal_table(
    protocol: Protocol, comparisons: Sequence[LongitudinalComparison], arms: Arms
) -> Table | None:
    """Contrasts by visit of the longitudinal (MMRM) analysis, or None when the plan gave none.

    Standard errors, degrees of freedom, intervals and p-values are Kenward-Roger's where the
    results carry them (the small-sample inference a DSMB statistician expects), else the plan's
    ``df_method``; the note says which. A contrast the model could not estimate is left out.
    """
    conf = confidence_label(protocol)
    shown = [r for r in comparisons if r.difference is not None]
    if not shown:
        return None
    kr = all(r.kenward_roger for r in shown)
    rows = []
    for r in shown:
        inference = r.kenward_roger or {}
        se = inference.get("se") if kr else r.se
        df = inference.get("df") if kr else r.df
        low = inference.get("ci_low") if kr else r.ci_low
        high = inference.get("ci_high") if kr else r.ci_high
        p = inference.get("p_value") if kr else r.p_value
        rows.append(
            Row(
                f"{r.endpoint} week {r.week}: {arms.label(r.arm)} vs "
                f"{arms.label(r.control)}".strip(),
                (
                    fmt_num(r.difference, 2),
                    fmt_num(se, 2),
                    fmt_num(df, 1),
                    fmt_ci(low, high, 2),
                    format_p(p),
                ),
            )
        )
    covariances = sorted({r.covariance.replace("_", " ") for r in shown})
    method = (
        "Kenward-Roger (standard errors from the adjusted covariance of the fixed effects, "
        "Kenward-Roger degrees of freedom)"
        if kr
        else {"residual": "residual degrees of freedom (N - p)"}.get(
            shown[0].df_method, shown[0].df_method.replace("-", " ").capitalize()
        )
    )
    return Table(
        id="table-longitudinal",
        caption="Longitudinal analysis (mixed model for repeated measures): contrasts by visit",
        stub="Endpoint, visit and comparison",
        columns=("Difference", "SE", "df", f"{conf} CI", "p"),
        rows=tuple(rows),
        note=f"Difference: arm minus control, least-squares means of the model ("
        f"{', '.join(covariances)} covariance). Inference: {method}.",
    )


def safety_table(comparisons: Sequence[SafetyComparison], arms: Arms) -> Table | None:
    """Tests of adverse event proportions between arms (Fisher's exact test), or None when the
    plan gave none: the odds ratio with its confidence limits, and the p-value."""
    rows = [
        Row(
            " : ".join(p for p in (r.term, f"{arms.label(r.arm)} vs {arms.label(r.control)}") if p),
            (
                fmt_num(r.odds_ratio, 2),
                fmt_ci(r.ci_low, r.ci_high, 2),
                format_p(r.p_value),
            ),
        )
        for r in comparisons
    ]
    if not rows:
        return None
    return Table(
        id="table-safety-tests",
        caption="Adverse events: each arm compared with the control arm (Fisher's exact test)",
        stub="Adverse event and comparison",
        columns=("Odds ratio", "CI", "p"),
        rows=tuple(rows),
        note="No adjustment for multiple comparisons.",
    )
