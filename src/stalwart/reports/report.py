"""The trial report: one self-contained HTML page from the protocol, the analysis datasets, the
results and the participant flow.

The page holds, each in a section with an id: provenance, participant flow (CONSORT diagram and
table), baseline characteristics by arm, mean CD4+ count by week, the primary comparison, time to
opportunistic event or death (Kaplan-Meier curves, numbers at risk, model results), adverse events
and, when given, published figures beside this run's. Every arm label comes from the protocol, in
protocol order. Numbers are formatted here; the Jinja2 template (autoescaped) only lays them out.
Figures are inline SVG; nothing on the page refers to an external resource.

The results arrive as results.json's dict (its ``provenance`` block and the plan's body); the body
is read once into a typed :class:`~stalwart.analysis.results.PlanResult`, which the sections use.
The section builders live in :mod:`stalwart.reports.report_participants` (flow, baseline, adverse
events), :mod:`stalwart.reports.report_outcomes` (lab course, Kaplan-Meier) and
:mod:`stalwart.reports.report_sections` (results), the table model and formatting in
:mod:`stalwart.reports.report_tables`; the DSMB reports (open and closed, HTML and PDF, from a
frozen snapshot) in :mod:`stalwart.reports.study_report`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2

from stalwart.analysis.datasets.bundle import TrialDatasets
from stalwart.analysis.flow import Flow
from stalwart.analysis.recompute import PublishedCounts, RecomputedTest
from stalwart.analysis.results import PlanResult
from stalwart.protocol.schema import Protocol
from stalwart.published import ComparisonRow
from stalwart.reports.report_outcomes import km_sections, lab_section
from stalwart.reports.report_participants import (
    ae_tables,
    baseline_table,
    check_datasets,
    consort_figure,
    flow_tables,
)
from stalwart.reports.report_sections import (
    comparison_table,
    primary_table,
    provenance_rows,
    recomputed_table,
    tte_table,
)
from stalwart.reports.report_tables import Arms, Row, Table, format_p

__all__ = [
    "Row",
    "Table",
    "format_p",
    "render_report",
    "template_environment",
    "write_report",
]


# -- rendering -------------------------------------------------------------------------------------


def template_environment() -> jinja2.Environment:
    """The Jinja2 environment of the report templates: autoescaped, undefined names fail."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("stalwart.reports", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_report(
    protocol: Protocol,
    datasets: TrialDatasets,
    results: Mapping[str, Any],
    flow: Flow,
    comparison: list[ComparisonRow] | None = None,
    recomputed: tuple[PublishedCounts, Sequence[RecomputedTest]] | None = None,
) -> str:
    """The report as the text of one self-contained HTML page.

    ``results`` is results.json's dict: the plan's sections (read as a :class:`PlanResult`) and
    an optional ``provenance`` block. Raises :class:`~stalwart.errors.AnalysisError` when a
    dataset lacks a column the report needs or names an arm the protocol does not define, or
    when ``results`` is not a results.json body.
    """
    plan = PlanResult.from_dict(results)
    arms = Arms.of(protocol)
    check_datasets(datasets, arms)
    screening, flow_table = flow_tables(flow, arms)
    lab = lab_section(protocol, datasets.adlb, arms)
    ae_terms, ae_grades = ae_tables(protocol, datasets.adsl, datasets.adae, arms)
    context = {
        "study": protocol.study,
        "arms": arms.pairs(),
        "control_label": arms.label(arms.control),
        "randomized_total": plan.randomized.total,
        "provenance": provenance_rows(protocol, results.get("provenance", {})),
        "consort": consort_figure(flow, arms),
        "screening": screening,
        "flow_table": flow_table,
        "baseline": baseline_table(protocol, datasets.adsl, arms),
        "lab": lab,
        "primary": primary_table(protocol, plan.primary, arms),
        "km_sections": km_sections(protocol, datasets.adtte, arms),
        "tte": tte_table(protocol, plan.time_to_event, arms),
        "ae_terms": ae_terms,
        "ae_grades": ae_grades,
        "comparison": None if comparison is None else comparison_table(comparison),
        "recomputed": None if recomputed is None else recomputed_table(*recomputed),
    }
    return template_environment().get_template("report.html.j2").render(context)


def write_report(
    path: Path,
    protocol: Protocol,
    datasets: TrialDatasets,
    results: Mapping[str, Any],
    flow: Flow,
    comparison: list[ComparisonRow] | None = None,
    recomputed: tuple[PublishedCounts, Sequence[RecomputedTest]] | None = None,
) -> Path:
    """Render the report and write it to ``path`` (UTF-8), creating parent folders; returns it."""
    text = render_report(protocol, datasets, results, flow, comparison, recomputed)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target
