"""Report sections that show results: the provenance of the results, the analysis plan's
comparisons (continuous endpoints, time to event) and the published results beside this run's.

They read the typed records of :class:`~stalwart.analysis.results.PlanResult`; a report that
holds results.json's dict converts it once, where it enters. Every arm label comes from the
``Arms`` given, pooled arms (``"A+B"``) joining their names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from stalwart.analysis import methods
from stalwart.analysis.recompute import PublishedCounts, RecomputedTest, closest_to_published
from stalwart.analysis.results import ContinuousComparison, TimeToEventComparison
from stalwart.protocol.schema import Protocol
from stalwart.published import ComparisonRow
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
    is_missing,
)

__all__ = [
    "comparison_table",
    "grouped",
    "method_label",
    "primary_table",
    "provenance_rows",
    "recomputed_table",
    "tte_table",
]

_Record = TypeVar("_Record")


# -- provenance ------------------------------------------------------------------------------------


def provenance_rows(protocol: Protocol, provenance: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Name and value of each item of results.json's ``provenance`` block (protocol, software,
    seed, data); the protocol's own id and version where the block names none."""
    seed = provenance.get("seed")

    def text(key: str) -> str:
        value = provenance.get(key)
        return DASH if value is None or value == "" else str(value)

    return [
        ("Protocol", text("protocol") if provenance.get("protocol") else protocol.study.id),
        (
            "Protocol version",
            text("protocol_version")
            if provenance.get("protocol_version")
            else protocol.study.version,
        ),
        ("Software version", text("software_version")),
        ("Random seed", "not set" if seed is None else str(seed)),
        ("Data SHA-256", text("data_sha256")),
        ("Created", text("created")),
    ]


# -- the plan's comparisons ------------------------------------------------------------------------


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


def grouped(records: Iterable[_Record], key: Callable[[_Record], str]) -> dict[str, list[_Record]]:
    """Records grouped by ``key(record)``, in first-seen order."""
    groups: dict[str, list[_Record]] = {}
    for record in records:
        groups.setdefault(key(record), []).append(record)
    return groups


def _adjusted(result: ContinuousComparison) -> bool:
    """Whether the record's means are least-squares (adjusted) means: an ANCOVA that gave them."""
    return result.method == "ancova" and result.adjusted_mean is not None


def primary_table(
    protocol: Protocol,
    comparisons: Sequence[ContinuousComparison],
    arms: Arms,
    key: str = "primary",
    caption: str = "Primary endpoint: each arm compared with the control arm",
) -> Table:
    """The results table of the plan's section ``key``: each comparison by each method.

    Each row's means are the ones its difference is made of: least-squares (baseline-adjusted)
    means beside the ANCOVA difference, observed means beside the t-test's; the method column
    says which. A comparison whose only rows are adjusted gets a row of observed means of its
    own. The secondary continuous endpoints (``key="secondary"``) have the same record type.
    """
    conf = confidence_label(protocol)
    columns = (
        "Method (means shown)",
        "n (arm / control)",
        "Mean, arm",
        "Mean, control",
        "Difference",
        f"{conf} CI",
        "p",
    )
    rows = []
    for endpoint, group in grouped(comparisons, lambda r: r.endpoint).items():
        try:
            heading = protocol.endpoint(endpoint).description
        except KeyError:
            heading = f"{endpoint} at week {group[0].week}"
        rows.append(Row(heading, ("",) * len(columns)))
        for (arm, control), pair in _pairs(group):
            label = f"{arms.label(arm)} vs {arms.label(control)}"
            for result in pair:
                n = result.n
                adjusted = _adjusted(result)
                mean = result.adjusted_mean if adjusted and result.adjusted_mean else result.mean
                d = _decimals([*result.mean.values(), result.difference])
                which = "least-squares means" if adjusted else "observed means"
                rows.append(
                    Row(
                        label,
                        (
                            f"{method_label(protocol, result.method, endpoint)} ({which})",
                            f"{n.get(arm, DASH)} / {n.get(control, DASH)}",
                            fmt_num(mean.get(arm), d),
                            fmt_num(mean.get(control), d),
                            fmt_num(result.difference, d),
                            fmt_ci(result.ci_low, result.ci_high, d),
                            format_p(result.p_value),
                        ),
                        level=1,
                    )
                )
            if all(_adjusted(r) for r in pair):
                first = pair[0]
                d = _decimals([*first.mean.values(), first.difference])
                rows.append(
                    Row(
                        label,
                        (
                            "Observed means (no model)",
                            f"{first.n.get(arm, DASH)} / {first.n.get(control, DASH)}",
                            fmt_num(first.mean.get(arm), d),
                            fmt_num(first.mean.get(control), d),
                            DASH,
                            DASH,
                            DASH,
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
        note="Difference: arm minus control, of the means on its row: least-squares means "
        "(ANCOVA, at the mean baseline) beside the ANCOVA difference, observed means beside the "
        "t-test's. n: participants with a value at the endpoint's visit (complete cases). No "
        "adjustment for multiple comparisons.",
        text_columns=(0,),
    )


def _pairs(
    group: Sequence[ContinuousComparison],
) -> list[tuple[tuple[str, str], list[ContinuousComparison]]]:
    """The records of one endpoint by (arm, control), in first-seen order."""
    pairs: dict[tuple[str, str], list[ContinuousComparison]] = {}
    for record in group:
        pairs.setdefault((record.arm, record.control), []).append(record)
    return list(pairs.items())


def tte_table(
    protocol: Protocol, comparisons: Sequence[TimeToEventComparison], arms: Arms
) -> Table:
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
    for parameter, group in grouped(comparisons, lambda r: r.parameter).items():
        rows.append(Row(endpoint_label(protocol, parameter), ("",) * len(columns)))
        for result in group:
            arm, control, events, n = result.arm, result.control, result.events, result.n
            method = result.method
            rows.append(
                Row(
                    f"{arms.label(arm)} vs {arms.label(control)}",
                    (
                        methods.method_label(method),
                        f"{events.get(arm, DASH)} / {n.get(arm, DASH)}",
                        f"{events.get(control, DASH)} / {n.get(control, DASH)}",
                        fmt_num(result.hazard_ratio, 2),
                        fmt_ci(result.ci_low, result.ci_high, 2),
                        format_p(result.p_value),
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


# -- published results -----------------------------------------------------------------------------


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
