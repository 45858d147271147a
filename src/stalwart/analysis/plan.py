"""Run the protocol's statistical analysis plan on the analysis datasets.

The plan is data in the protocol (``[analysis]``): which endpoints, which comparisons (a
comparison's treated side may pool arms, ``"IL2+IL2ART"``), which methods. This module only
selects the rows each comparison needs (the comparisons of
:mod:`~stalwart.analysis.comparisons`) and calls each method's single-trial kernel
(:mod:`~stalwart.analysis.methods`); the numbers come from ``analysis.kernels``.
:func:`analyze` returns a typed :class:`~stalwart.analysis.results.PlanResult` (primary and
secondary continuous endpoints, time to event, Kaplan-Meier, and the longitudinal MMRM and
safety sections of :mod:`~stalwart.analysis.plan_longitudinal` and
:mod:`~stalwart.analysis.plan_safety`); :func:`run_plan` is its ``to_dict()``, the body of
results.json (provenance aside).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from stalwart.analysis.comparisons import Comparison, analysis_comparisons
from stalwart.analysis.datasets.adlb import analysed
from stalwart.analysis.datasets.bundle import TrialDatasets
from stalwart.analysis.kernels.km import kaplan_meier
from stalwart.analysis.methods import CONTINUOUS_METHODS, TIME_TO_EVENT_METHODS, ContinuousSample
from stalwart.analysis.plan_longitudinal import longitudinal_analyses
from stalwart.analysis.plan_safety import safety_analyses
from stalwart.analysis.results import (
    ContinuousComparison,
    KmSummary,
    PlanResult,
    Randomized,
    TimeToEventComparison,
)
from stalwart.errors import AnalysisError
from stalwart.jsonable import finite_or_none
from stalwart.protocol.analysis_plan import PrimaryAnalysis
from stalwart.protocol.schema import Protocol

__all__ = [
    "analyze",
    "analyze_available",
    "primary_analyses",
    "run_plan",
    "secondary_analyses",
    "time_to_event_analyses",
]


def _endpoint_rows(protocol: Protocol, datasets: TrialDatasets, endpoint_id: str) -> pd.DataFrame:
    endpoint = protocol.endpoint(endpoint_id)
    assert endpoint.test is not None and endpoint.visit is not None
    paramcd = protocol.lab_item(endpoint.test).paramcd
    adlb = datasets.adlb
    rows = adlb[
        (adlb["PARAMCD"] == paramcd)
        & (adlb["AVISIT"] == endpoint.visit)
        & analysed(adlb)  # the plan's out_of_window rule
    ]
    # complete case (SAP missing_data = complete_case): a value at the visit and a baseline
    return rows[rows["AVAL"].notna() & rows["BASE"].notna()]


def primary_analyses(
    protocol: Protocol, datasets: TrialDatasets
) -> tuple[ContinuousComparison, ...]:
    """Each primary continuous-endpoint comparison by each method of the plan."""
    return _continuous(protocol, datasets, "primary", protocol.analysis.primary)


def secondary_analyses(
    protocol: Protocol, datasets: TrialDatasets
) -> tuple[ContinuousComparison, ...]:
    """Each secondary continuous-endpoint comparison (same shape as the primary ones)."""
    return _continuous(protocol, datasets, "secondary", protocol.analysis.secondary)


def _continuous(
    protocol: Protocol, datasets: TrialDatasets, kind: str, specs: list[PrimaryAnalysis]
) -> tuple[ContinuousComparison, ...]:
    out: list[ContinuousComparison] = []
    for spec in specs:
        rows = _endpoint_rows(protocol, datasets, spec.endpoint)
        visit = protocol.visit(protocol.endpoint(spec.endpoint).visit or "")
        for comparison in analysis_comparisons(kind, spec):
            for method in comparison.methods:
                out.append(_compare_continuous(protocol, comparison, rows, method, visit.day // 7))
    return tuple(out)


def _compare_continuous(
    protocol: Protocol, comparison: Comparison, rows: pd.DataFrame, method: str, week: int
) -> ContinuousComparison:
    treated, control = comparison.arm, comparison.control
    in_treated = rows["ARMCD"].isin(comparison.treated)
    in_control = rows["ARMCD"] == control
    x = rows[in_treated]
    y = rows[in_control]
    if len(x) < 2 or len(y) < 2:
        raise AnalysisError(
            f"{comparison.endpoint}: {treated} vs {control} needs at least 2 participants with "
            f"a value per side, found {len(x)} and {len(y)}"
        )
    record: dict[str, Any] = {
        "endpoint": comparison.endpoint,
        "week": week,
        "arm": treated,
        "control": control,
        "n": {treated: len(x), control: len(y)},
        "mean": {treated: float(x["AVAL"].mean()), control: float(y["AVAL"].mean())},
        "method": method,
    }
    # every arm in the sample, so ANCOVA's residual variance is pooled over all arms
    sample = ContinuousSample(
        value=rows["AVAL"].to_numpy(float),
        baseline=rows["BASE"].to_numpy(float),
        side=np.where(in_treated, treated, rows["ARMCD"]).astype(str),
        treated=in_treated.to_numpy(bool),
        control=in_control.to_numpy(bool),
        treated_level=treated,
        control_level=control,
    )
    record.update(CONTINUOUS_METHODS[method].single(sample, protocol.analysis.alpha))
    for key in ("difference", "ci_low", "ci_high", "p_value", "se", "df"):
        record[key] = finite_or_none(record[key])
    return ContinuousComparison(**record)


def time_to_event_analyses(
    protocol: Protocol, datasets: TrialDatasets
) -> tuple[tuple[TimeToEventComparison, ...], tuple[KmSummary, ...]]:
    """Hazard ratios and log-rank tests of each comparison, and Kaplan-Meier medians by arm."""
    results: list[TimeToEventComparison] = []
    km: list[KmSummary] = []
    for spec in protocol.analysis.time_to_event:
        rows = datasets.adtte[datasets.adtte["PARAMCD"] == spec.endpoint]
        for comparison in analysis_comparisons("time_to_event", spec):
            for method in comparison.methods:
                results.append(_compare_tte(protocol, comparison, rows, method))
        for arm in protocol.arm_codes:
            km.append(_km_summary(protocol, spec.endpoint, arm, rows[rows["ARMCD"] == arm]))
    return tuple(results), tuple(km)


def _compare_tte(
    protocol: Protocol, comparison: Comparison, rows: pd.DataFrame, method: str
) -> TimeToEventComparison:
    treated, control = comparison.arm, comparison.control
    sub = rows[rows["ARMCD"].isin([*comparison.treated, control])]
    time = sub["AVAL"].to_numpy(float)
    event = (sub["CNSR"].to_numpy(int) == 0).astype(float)
    is_treated = sub["ARMCD"].isin(comparison.treated).to_numpy(float)
    events = {
        treated: int(event[is_treated == 1].sum()),
        control: int(event[is_treated == 0].sum()),
    }
    n = {treated: int((is_treated == 1).sum()), control: int((is_treated == 0).sum())}
    if comparison.pooled:
        for arm in comparison.treated:
            mask = sub["ARMCD"].to_numpy() == arm
            events[arm] = int(event[mask].sum())
            n[arm] = int(mask.sum())
    record: dict[str, Any] = {
        "parameter": comparison.endpoint,
        "arm": treated,
        "control": control,
        "events": events,
        "n": n,
        "method": method,
    }
    kernel = TIME_TO_EVENT_METHODS[method]
    if event.sum() == 0:
        # nothing to compare: report the counts, leave the estimates empty, say why
        record.update(
            hazard_ratio=None,
            ci_low=None,
            ci_high=None,
            p_value=None,
            note=f"no events in {treated} or {control}: not estimable",
        )
        return TimeToEventComparison(**record)
    if kernel.hazard_ratio and min(events[treated], events[control]) == 0:
        # monotone likelihood: the Cox estimate runs off to 0 or infinity
        empty = treated if events[treated] == 0 else control
        record.update(
            hazard_ratio=None,
            ci_low=None,
            ci_high=None,
            p_value=None,
            test="Wald",
            note=f"no events in {empty}: the hazard ratio is not estimable",
        )
        return TimeToEventComparison(**record)
    estimates = kernel.single(time, event, is_treated, protocol.analysis.alpha)
    record.update({k: v if isinstance(v, str) else finite_or_none(v) for k, v in estimates.items()})
    return TimeToEventComparison(**record)


def _km_summary(protocol: Protocol, endpoint: str, arm: str, rows: pd.DataFrame) -> KmSummary:
    record: dict[str, Any] = {
        "parameter": endpoint,
        "arm": arm,
        "n": len(rows),
        "events": int((rows["CNSR"] == 0).sum()),
        "median": None,
        "ci_low": None,
        "ci_high": None,
    }
    if len(rows):
        res = kaplan_meier(
            rows["AVAL"].to_numpy(float),
            (rows["CNSR"].to_numpy(int) == 0).astype(float),
            alpha=protocol.analysis.alpha,
        )
        record.update(
            median=finite_or_none(res.median),
            ci_low=finite_or_none(res.median_ci_low),
            ci_high=finite_or_none(res.median_ci_high),
        )
    return KmSummary(**record)


def analyze(protocol: Protocol, datasets: TrialDatasets) -> PlanResult:
    """Run every section of the protocol's analysis plan on the datasets."""
    by_arm = datasets.adsl["ARMCD"].value_counts()
    tte, km = time_to_event_analyses(protocol, datasets)
    return PlanResult(
        randomized=Randomized(
            total=len(datasets.adsl),
            by_arm={a: int(by_arm.get(a, 0)) for a in protocol.arm_codes},
        ),
        primary=primary_analyses(protocol, datasets),
        time_to_event=tte,
        km=km,
        secondary=secondary_analyses(protocol, datasets),
        longitudinal=longitudinal_analyses(protocol, datasets),
        safety=safety_analyses(protocol, datasets),
    )


def analyze_available(
    protocol: Protocol, datasets: TrialDatasets
) -> tuple[PlanResult, dict[str, str]]:
    """Every section of the plan that the data can support yet, and why each other one cannot.

    For an interim look (the DSMB's reports while the trial runs): a section whose analysis
    raises ``AnalysisError`` (no week-32 value yet in an arm, no event) is left empty and its
    reason returned by section name (``primary``, ``time_to_event``, ...), instead of the whole
    plan failing as :func:`analyze` does.
    """
    reasons: dict[str, str] = {}

    def attempt(name: str, run: Callable[[], Any], empty: Any) -> Any:
        try:
            return run()
        except AnalysisError as exc:
            reasons[name] = str(exc)
            return empty

    by_arm = datasets.adsl["ARMCD"].value_counts()
    tte, km = attempt("time_to_event", lambda: time_to_event_analyses(protocol, datasets), ((), ()))
    result = PlanResult(
        randomized=Randomized(
            total=len(datasets.adsl),
            by_arm={a: int(by_arm.get(a, 0)) for a in protocol.arm_codes},
        ),
        primary=attempt("primary", lambda: primary_analyses(protocol, datasets), ()),
        time_to_event=tte,
        km=km,
        secondary=attempt("secondary", lambda: secondary_analyses(protocol, datasets), ()),
        longitudinal=attempt("longitudinal", lambda: longitudinal_analyses(protocol, datasets), ()),
        safety=attempt("safety", lambda: safety_analyses(protocol, datasets), ()),
    )
    return result, reasons


def run_plan(protocol: Protocol, datasets: TrialDatasets) -> dict[str, Any]:
    """The results.json body: ``analyze(protocol, datasets).to_dict()``.

    Keys ``randomized``, ``primary``, ``time_to_event``, ``km`` (the first version's records,
    unchanged), ``secondary``, ``longitudinal`` and ``safety`` (empty lists when the protocol
    plans none).
    """
    return analyze(protocol, datasets).to_dict()
