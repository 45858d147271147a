"""Sections of the trial reports: each function turns datasets or results into formatted tables
and figures, by arm (``Arms.of(protocol)``) or pooled (``Arms.pooled()``).

Every arm label comes from the ``Arms`` given, in its order; with a single (pooled) group the
"Total" column is left out, since it would repeat that group.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from stalwart.analysis import methods
from stalwart.analysis.datasets.bundle import TrialDatasets
from stalwart.analysis.flow import Flow
from stalwart.analysis.recompute import PublishedCounts, RecomputedTest, closest_to_published
from stalwart.errors import AnalysisError
from stalwart.outputs.figures import (
    DAYS_PER_MONTH,
    ConsortArm,
    EmbeddedFigure,
    KMGroup,
    consort_diagram,
    km_figure,
    mean_by_visit_figure,
    regular_times,
    summarize_by_visit,
)
from stalwart.outputs.report_tables import (
    DASH,
    Arms,
    Row,
    Table,
    confidence_label,
    fmt_ci,
    fmt_num,
    format_p,
    is_missing,
    mean_sd,
    median_iqr,
    n_pct,
)
from stalwart.protocol.schema import Protocol
from stalwart.published import ComparisonRow

__all__ = [
    "DAIDS_GRADES",
    "KMSection",
    "LabSection",
    "ae_tables",
    "baseline_table",
    "check_datasets",
    "comparison_table",
    "consort_figure",
    "endpoint_label",
    "flow_tables",
    "grouped",
    "km_sections",
    "lab_label",
    "lab_section",
    "lab_unit",
    "method_label",
    "ordered_levels",
    "primary_parameter",
    "primary_table",
    "provenance_rows",
    "recomputed_table",
    "tte_table",
]

_REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "adsl": ("USUBJID", "ARMCD", "AGE", "SEX", "COUNTRY", "BASECD4", "BASEVL"),
    "adlb": ("USUBJID", "ARMCD", "PARAMCD", "AVISITN", "AVAL"),
    "adtte": ("USUBJID", "ARMCD", "PARAMCD", "AVAL", "CNSR"),
    "adae": ("USUBJID", "ARMCD", "AEDECOD", "AETOXGR", "AESER"),
}

_SEX = {"F": "Female", "M": "Male"}
_NOT_RECORDED = "Not recorded"

DAIDS_GRADES = {
    1: "Mild",
    2: "Moderate",
    3: "Severe",
    4: "Potentially life-threatening",
    5: "Death",
}


# -- checks ----------------------------------------------------------------------------------------


def check_datasets(datasets: TrialDatasets, arms: Arms) -> None:
    """Raise :class:`AnalysisError` when a dataset lacks a needed column or names an unknown arm."""
    problems: list[str] = []
    for name, required in _REQUIRED_COLUMNS.items():
        frame = getattr(datasets, name)
        if not isinstance(frame, pd.DataFrame):
            problems.append(f"{name} is a {type(frame).__name__}, not a pandas DataFrame")
            continue
        missing = [c for c in required if c not in frame.columns]
        if missing:
            problems.append(f"{name} lacks column(s) {', '.join(missing)}")
            continue
        unknown = sorted(set(frame["ARMCD"].dropna().astype(str)) - set(arms.codes))
        if unknown:
            problems.append(
                f"{name}.ARMCD holds code(s) {', '.join(unknown)} that the protocol's arms "
                f"({', '.join(arms.codes)}) do not define"
            )
    if problems:
        raise AnalysisError("cannot build the report: " + "; ".join(problems))


# -- sections --------------------------------------------------------------------------------------


def provenance_rows(protocol: Protocol, results: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Name and value of each provenance item of ``results`` (protocol, software, seed, data)."""
    prov: Mapping[str, Any] = results.get("provenance", {})
    seed = prov.get("seed")

    def text(key: str) -> str:
        value = prov.get(key)
        return DASH if value is None or value == "" else str(value)

    return [
        ("Protocol", text("protocol") if prov.get("protocol") else protocol.study.id),
        (
            "Protocol version",
            text("protocol_version") if prov.get("protocol_version") else protocol.study.version,
        ),
        ("Software version", text("software_version")),
        ("Random seed", "not set" if seed is None else str(seed)),
        ("Data SHA-256", text("data_sha256")),
        ("Created", text("created")),
    ]


def _reason_union(groups: Iterable[Mapping[str, int]]) -> list[str]:
    reasons: list[str] = []
    for group in groups:
        for reason in group:
            if reason not in reasons:
                reasons.append(reason)
    return reasons


def flow_tables(flow: Flow, arms: Arms) -> tuple[Table, Table]:
    """The screening table and the participant-flow table (randomized to analysed)."""
    screening_rows = [
        Row("Screened", (str(flow.screened),)),
        Row("Screen failures", (str(flow.screen_failures),)),
    ]
    screening_rows += [
        Row(reason, (str(count),), level=1) for reason, count in flow.failure_reasons.items()
    ]
    screening = Table(
        id="table-screening",
        caption="Screening: participants screened and screen failures by reason",
        stub="",
        columns=("n",),
        rows=tuple(screening_rows),
        note="A participant failing several criteria may be counted under more than one reason."
        if sum(flow.failure_reasons.values()) > flow.screen_failures
        else "",
    )

    def per_arm(values: Mapping[str, int]) -> tuple[str, ...]:
        counts = [int(values.get(code, 0)) for code in arms.codes]
        cells = tuple(str(c) for c in counts)
        return cells if arms.is_pooled else (*cells, str(sum(counts)))

    discontinued = {code: flow.discontinued.get(code, {}) for code in arms.codes}
    rows = [
        Row("Randomized", per_arm(flow.randomized)),
        Row("Completed main study", per_arm(flow.completed)),
        Row(
            "Discontinued main study",
            per_arm({code: sum(d.values()) for code, d in discontinued.items()}),
        ),
    ]
    rows += [
        Row(reason, per_arm({code: d.get(reason, 0) for code, d in discontinued.items()}), 1)
        for reason in _reason_union(discontinued.values())
    ]
    rows.append(Row("Analysed, primary endpoint", per_arm(flow.analysed_primary)))
    by_arm = Table(
        id="table-flow",
        caption=f"Participant flow, {arms.by}",
        stub="",
        columns=arms.columns,
        rows=tuple(rows),
        note="Analysed: participants with a primary-endpoint measurement (complete cases).",
    )
    return screening, by_arm


def consort_figure(flow: Flow, arms: Arms) -> EmbeddedFigure:
    """The CONSORT flow diagram, one column per arm (one column when pooled)."""
    columns = [
        ConsortArm(
            label=label,
            randomized=int(flow.randomized.get(code, 0)),
            discontinued=dict(flow.discontinued.get(code, {})),
            completed=int(flow.completed.get(code, 0)),
            analysed=int(flow.analysed_primary.get(code, 0)),
        )
        for code, label in arms.pairs()
    ]
    randomized = sum(c.randomized for c in columns)
    description = (
        f"{flow.screened} screened, {flow.screen_failures} excluded, {randomized} randomized: "
        + "; ".join(
            f"{c.label}: {c.randomized} allocated, {sum(c.discontinued.values())} discontinued, "
            f"{c.completed} completed, {c.analysed} analysed"
            for c in columns
        )
        + "."
    )
    return consort_diagram(
        flow.screened,
        flow.screen_failures,
        flow.failure_reasons,
        columns,
        ident="fig-consort",
        title="Participant flow (CONSORT diagram)",
        description=description,
    )


def ordered_levels(values: pd.Series, preferred: Sequence[str]) -> list[str]:
    """The distinct values present, ``preferred`` ones first in that order, then the rest sorted."""
    present = [str(v) for v in values.fillna("").unique()]
    first = [p for p in preferred if p in present]
    return first + sorted(v for v in present if v not in first)


def baseline_table(protocol: Protocol, adsl: pd.DataFrame, arms: Arms) -> Table:
    """Table 1: baseline characteristics of randomized participants by group."""
    groups = [adsl[adsl["ARMCD"] == code] for code in arms.codes]
    groups += [] if arms.is_pooled else [adsl]
    sizes = [len(g) for g in groups]

    def cells(fn: Any) -> tuple[str, ...]:
        return tuple(fn(g) for g in groups)

    def level_count(column: str, level: str) -> tuple[str, ...]:
        return tuple(
            n_pct(int((g[column].fillna("").astype(str) == level).sum()), n)
            for g, n in zip(groups, sizes, strict=True)
        )

    cd4_unit = lab_unit(protocol, "CD4", "cells/mm3")
    rna_unit = lab_unit(protocol, "HIVRNA", "copies/mL")
    rows = [
        Row("Participants, n", tuple(str(n) for n in sizes)),
        Row("Age (years), mean (SD)", cells(lambda g: mean_sd(g["AGE"], 1))),
        Row("Sex, n (%)", ("",) * len(groups)),
    ]
    rows += [
        Row(_SEX.get(level, level) or _NOT_RECORDED, level_count("SEX", level), 1)
        for level in ordered_levels(adsl["SEX"], list(_SEX))
    ]
    rows.append(Row("Country, n (%)", ("",) * len(groups)))
    countries = list(dict.fromkeys(site.country for site in protocol.sites))
    rows += [
        Row(level or _NOT_RECORDED, level_count("COUNTRY", level), 1)
        for level in ordered_levels(adsl["COUNTRY"], countries)
    ]
    rows += [
        Row(
            f"Baseline CD4+ count ({cd4_unit}), mean (SD)",
            cells(lambda g: mean_sd(g["BASECD4"], 0)),
        ),
        Row(
            f"Baseline CD4+ count ({cd4_unit}), median [IQR]",
            cells(lambda g: median_iqr(g["BASECD4"], 0)),
        ),
        Row(
            f"Baseline HIV RNA (log10 {rna_unit}), mean (SD)",
            cells(lambda g: mean_sd(g["BASEVL"], 2)),
        ),
    ]
    return Table(
        id="table-baseline",
        caption=f"Baseline characteristics of randomized participants, {arms.by}",
        stub="Characteristic",
        columns=tuple(
            f"{label} (n\u00a0=\u00a0{n})" for label, n in zip(arms.columns, sizes, strict=True)
        ),
        rows=tuple(rows),
        note="SD: standard deviation; IQR: interquartile range [25th, 75th percentile]. "
        "Countries are ISO 3166-1 alpha-3 codes.",
    )


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

    n_rows, data_rows = [], []
    for code, arm_label in arms.pairs():
        hits = [lookup(code, w) for w in weeks]
        n_rows.append(Row(arm_label, tuple("0" if h is None else str(int(h["n"])) for h in hits)))
        data_rows.append(
            Row(
                arm_label,
                tuple(
                    DASH
                    if h is None
                    else f"{fmt_num(h['mean'], d)} ({fmt_ci(h['ci_low'], h['ci_high'], d)})"
                    for h in hits
                ),
            )
        )
    week_columns = tuple(f"Week {w:g}" for w in weeks)
    n_table = Table(
        id=f"table-n-{parameter.lower()}",
        caption=f"Participants with a {label} measurement, by {grouping}",
        stub="Group" if arms.is_pooled else "Arm",
        columns=week_columns,
        rows=tuple(n_rows),
    )
    data_table = Table(
        id=f"table-mean-{parameter.lower()}",
        caption=f"Mean {label} ({conf} CI) by {grouping}: the data of the figure",
        stub="Group" if arms.is_pooled else "Arm",
        columns=week_columns,
        rows=tuple(data_rows),
    )
    return LabSection(figure, n_table, data_table, caption, parameter)


def endpoint_label(protocol: Protocol, endpoint_id: str) -> str:
    """The protocol's description of an endpoint, or its id."""
    try:
        return protocol.endpoint(endpoint_id).description
    except KeyError:
        return endpoint_id


def method_label(protocol: Protocol, method: str, endpoint: str) -> str:
    """A method's name for a table (ANCOVA says whether it adjusts for baseline)."""
    label = methods.method_label(method)
    adjusted = method == "ancova" and any(
        p.endpoint == endpoint and "baseline" in p.covariates for p in protocol.analysis.primary
    )
    return f"{label}, adjusted for baseline" if adjusted else label


def _decimals(values: Iterable[object]) -> int:
    finite = [abs(float(v)) for v in values if not is_missing(v)]  # type: ignore[arg-type]
    return 2 if finite and max(finite) < 20 else 1


def grouped(results: Iterable[Mapping[str, Any]], key: str) -> dict[str, list[Mapping[str, Any]]]:
    """Records grouped by the value of ``key``, in first-seen order."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for result in results:
        groups.setdefault(str(result.get(key, "")), []).append(result)
    return groups


def primary_table(
    protocol: Protocol,
    results: Mapping[str, Any],
    arms: Arms,
    key: str = "primary",
    caption: str = "Primary endpoint: each arm compared with the control arm",
) -> Table:
    """The results table of ``results[key]``: each comparison by each method of the plan.

    The secondary continuous endpoints (``key="secondary"``) have the same record shape.
    """
    conf = confidence_label(protocol)
    columns = (
        "Method",
        "n (arm / control)",
        "Mean, arm",
        "Mean, control",
        "Difference",
        f"{conf} CI",
        "p",
    )
    rows = []
    for endpoint, group in grouped(results.get(key, []), "endpoint").items():
        try:
            heading = protocol.endpoint(endpoint).description
        except KeyError:
            week = group[0].get("week")
            heading = endpoint + ("" if week is None else f" at week {week}")
        rows.append(Row(heading, ("",) * len(columns)))
        for result in group:
            arm, control = str(result["arm"]), str(result["control"])
            n: Mapping[str, Any] = result.get("n", {})
            mean: Mapping[str, Any] = result.get("mean", {})
            d = _decimals([*mean.values(), result.get("difference")])
            rows.append(
                Row(
                    f"{arms.label(arm)} vs {arms.label(control)}",
                    (
                        method_label(protocol, str(result.get("method", "")), endpoint),
                        f"{n.get(arm, DASH)} / {n.get(control, DASH)}",
                        fmt_num(mean.get(arm), d),
                        fmt_num(mean.get(control), d),
                        fmt_num(result.get("difference"), d),
                        fmt_ci(result.get("ci_low"), result.get("ci_high"), d),
                        format_p(result.get("p_value")),
                    ),
                    level=1,
                )
            )
    return Table(
        id=f"table-{key}",
        caption=caption,
        stub="Endpoint and comparison",
        columns=columns,
        rows=tuple(rows),
        note="Difference: arm minus control. ANCOVA means and difference are as reported by "
        "the analysis (baseline-adjusted where the method says so). No adjustment for "
        "multiple comparisons.",
        text_columns=(0,),
    )


def tte_table(protocol: Protocol, results: Mapping[str, Any], arms: Arms) -> Table:
    """Hazard ratios and log-rank p-values of each time-to-event comparison."""
    conf = confidence_label(protocol)
    columns = (
        "Method",
        "Events / n, arm",
        "Events / n, control",
        "Hazard ratio",
        f"{conf} CI",
        "p",
    )
    rows = []
    for parameter, group in grouped(results.get("time_to_event", []), "parameter").items():
        rows.append(Row(endpoint_label(protocol, parameter), ("",) * len(columns)))
        for result in group:
            arm, control = str(result["arm"]), str(result["control"])
            events: Mapping[str, Any] = result.get("events", {})
            n: Mapping[str, Any] = result.get("n", {})
            method = str(result.get("method", ""))
            rows.append(
                Row(
                    f"{arms.label(arm)} vs {arms.label(control)}",
                    (
                        methods.method_label(method),
                        f"{events.get(arm, DASH)} / {n.get(arm, DASH)}",
                        f"{events.get(control, DASH)} / {n.get(control, DASH)}",
                        fmt_num(result.get("hazard_ratio"), 2),
                        fmt_ci(result.get("ci_low"), result.get("ci_high"), 2),
                        format_p(result.get("p_value")),
                    ),
                    level=1,
                )
            )
    return Table(
        id="table-time-to-event",
        caption="Time to event: each arm (or pooled arms) compared with the control arm",
        stub="Endpoint and comparison",
        columns=columns,
        rows=tuple(rows),
        note="Hazard ratio below 1 favours the arm. A dash: not estimable (for example, no "
        "events) or not given by the method.",
        text_columns=(0,),
    )


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
            f"(100 × (1 − S(t))) by arm: {title.lower()}. Time from randomization in months; "
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
            caption=f"Numbers at risk by arm, {title.lower()}",
            stub="Months",
            columns=tuple(f"{t:g}" for t in at_times),
            rows=tuple(
                Row(g.label, tuple(str(v) for v in counts))
                for g, counts in zip(groups, at_risk, strict=True)
            ),
        )
        sections.append(KMSection(parameter, title, figure, table, caption))
    return sections


def _term_is(term: str) -> Callable[[pd.DataFrame], pd.Series]:
    def selected(frame: pd.DataFrame) -> pd.Series:
        return frame["AEDECOD"].fillna("").astype(str) == term

    return selected


def ae_tables(
    protocol: Protocol, adsl: pd.DataFrame, adae: pd.DataFrame, arms: Arms
) -> tuple[Table, Table]:
    """Participants with an adverse event overall and by term; by maximum grade."""
    codes = list(arms.codes)
    events = adae.assign(_GRADE=pd.to_numeric(adae["AETOXGR"], errors="coerce")).reset_index(
        drop=True
    )
    denominators = [int((adsl["ARMCD"] == code).sum()) for code in codes]
    frames = [events[events["ARMCD"] == code] for code in codes]
    if not arms.is_pooled:
        denominators.append(len(adsl))
        frames.append(events)
    columns = tuple(
        f"{label} (n\u00a0=\u00a0{n})" for label, n in zip(arms.columns, denominators, strict=True)
    )

    def participants(selected: Callable[[pd.DataFrame], pd.Series]) -> tuple[str, ...]:
        return tuple(
            n_pct(int(frame.loc[selected(frame), "USUBJID"].nunique()), n)
            for frame, n in zip(frames, denominators, strict=True)
        )

    rows = [
        Row("Any adverse event", participants(lambda f: f["USUBJID"].notna())),
        Row("Any grade 3 or higher", participants(lambda f: f["_GRADE"] >= 3)),
        Row("Any serious adverse event", participants(lambda f: f["AESER"] == "Y")),
        Row("By term", ("",) * len(frames)),
    ]
    terms = ordered_levels(events["AEDECOD"], protocol.forms.AE.terms)
    rows += [Row(term or _NOT_RECORDED, participants(_term_is(term)), 1) for term in terms]
    by_term = Table(
        id="table-ae-terms",
        caption="Participants with at least one adverse event, overall and by term: n (%)",
        stub="Adverse event",
        columns=columns,
        rows=tuple(rows),
        note="A participant is counted once per row; percentages of randomized participants.",
    )

    max_grade = events.groupby("USUBJID")["_GRADE"].max()
    ae = protocol.forms.AE
    grade_rows = []
    for grade in range(ae.min_grade, ae.max_grade + 1):
        name = DAIDS_GRADES.get(grade)
        label = f"Grade {grade}" + (f" ({name.lower()})" if name else "")
        grade_rows.append(
            Row(
                label,
                tuple(
                    n_pct(int((max_grade.reindex(frame["USUBJID"].unique()) == grade).sum()), n)
                    for frame, n in zip(frames, denominators, strict=True)
                ),
            )
        )
    with_ae = [int(frame["USUBJID"].nunique()) for frame in frames]
    grade_rows.append(
        Row(
            "No adverse event",
            tuple(n_pct(max(n - k, 0), n) for n, k in zip(denominators, with_ae, strict=True)),
        )
    )
    by_grade = Table(
        id="table-ae-grades",
        caption=f"Participants by maximum adverse event grade ({ae.grading}): n (%)",
        stub="Maximum grade",
        columns=columns,
        rows=tuple(grade_rows),
    )
    return by_term, by_grade


def comparison_table(comparison: Sequence[ComparisonRow]) -> Table:
    """Published STALWART results beside this run's."""
    return Table(
        id="table-comparison",
        caption="Published STALWART results beside this run's results",
        stub="Quantity",
        columns=("Published", "This run", "Source"),
        rows=tuple(Row(c.quantity, (c.published, c.this_run, c.source)) for c in comparison),
        text_columns=(0, 1, 2),
    )


def recomputed_table(counts: PublishedCounts, rows: Sequence[RecomputedTest]) -> Table:
    """Each standard test recomputed from the published event counts, beside the published p."""
    closest = closest_to_published(counts, list(rows))

    def fmt(value: float | None, digits: int = 2) -> str:
        return "" if value is None else f"{value:.{digits}f}"

    def p_text(value: float | None) -> str:
        return "" if value is None else ("<0.001" if value < 0.001 else f"{value:.3f}")

    body = [
        Row(
            "Published",
            (
                "hazard ratio",
                fmt(counts.hazard_ratio),
                f"{fmt(counts.ci_low)} to {fmt(counts.ci_high)}",
                p_text(counts.p_value),
                counts.source,
            ),
        )
    ]
    for r in rows:
        ci = f"{fmt(r.ci_low)} to {fmt(r.ci_high)}" if r.ci_low is not None else ""
        label = r.method + (" (closest p)" if r is closest else "")
        body.append(Row(label, (r.estimate_name, fmt(r.estimate), ci, p_text(r.p_value), r.note)))
    return Table(
        id="table-recomputed",
        caption=(
            f"{counts.label}: {counts.events_treated} of {counts.n_treated} vs "
            f"{counts.events_control} of {counts.n_control}; each test recomputed from the "
            "published counts"
        ),
        stub="Method",
        columns=("Estimate", "Value", "95% CI", "p", "Basis"),
        rows=tuple(body),
        note=(
            "The publication gives counts, not event times: the data are rebuilt with equal "
            "follow-up and events spread evenly, so the Cox, log-rank and exact (person-time) "
            "figures are approximate; the Fisher and implied-Wald rows depend on the published "
            "figures alone. No row is this run's result."
        ),
        text_columns=(0, 4),
    )
