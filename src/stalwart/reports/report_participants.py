"""Report sections about the participants, from the analysis datasets: their flow (screening,
CONSORT diagram and table), their baseline characteristics and their adverse events.

Every arm label comes from the ``Arms`` given (``Arms.of(protocol)``, or ``Arms.pooled()`` for the
open DSMB report), in its order; with a single (pooled) group the "Total" column is left out,
since it would repeat that group. :func:`check_datasets` says up front what a dataset lacks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from stalwart.analysis.datasets.bundle import TrialDatasets
from stalwart.analysis.flow import Flow
from stalwart.errors import AnalysisError
from stalwart.protocol.schema import Protocol
from stalwart.reports.figures.consort import ConsortArm, consort_diagram
from stalwart.reports.figures.render import EmbeddedFigure
from stalwart.reports.report_tables import (
    Arms,
    Row,
    Table,
    in_words,
    lab_unit,
    mean_sd,
    median_iqr,
    n_pct,
)

__all__ = [
    "DAIDS_GRADES",
    "ae_tables",
    "baseline_table",
    "check_datasets",
    "consort_figure",
    "flow_tables",
    "ordered_levels",
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


# -- flow ----------------------------------------------------------------------------------------


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

    discontinued = {code: _worded(flow.discontinued.get(code, {})) for code in arms.codes}
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
        note="Analysed: participants with a primary-endpoint measurement (complete cases). It "
        "may exceed those who completed the main study: a participant who had the endpoint "
        "visit and discontinued after it is analysed without having completed.",
    )
    return screening, by_arm


def _worded(reasons: Mapping[str, int]) -> dict[str, int]:
    """Counts by reason, the CDISC codes of the reasons turned into words."""
    out: dict[str, int] = {}
    for reason, count in reasons.items():
        out[in_words(reason)] = out.get(in_words(reason), 0) + int(count)
    return out


def consort_figure(flow: Flow, arms: Arms) -> EmbeddedFigure:
    """The CONSORT flow diagram, one column per arm (one column when pooled)."""
    columns = [
        ConsortArm(
            label=label,
            randomized=int(flow.randomized.get(code, 0)),
            discontinued=_worded(flow.discontinued.get(code, {})),
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


# -- baseline characteristics ---------------------------------------------------------------------


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


# -- adverse events --------------------------------------------------------------------------------


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
