"""Run the protocol's statistical analysis plan on the analysis datasets.

The plan is data in the protocol (``[analysis]``): which endpoints, which comparisons (a
comparison's treated side may pool arms, ``"IL2+IL2ART"``), which methods. This module only
selects the rows each comparison needs and calls the kernels; the numbers come from
``analysis.kernels``. :func:`analyze` returns a typed :class:`~stalwart.analysis.results.PlanResult`
(primary and secondary continuous endpoints, time to event, Kaplan-Meier, and the longitudinal
MMRM and safety sections of :mod:`~stalwart.analysis.plan_longitudinal` and
:mod:`~stalwart.analysis.plan_safety`); :func:`run_plan` is its ``to_dict()``, the body of
results.json (provenance aside).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import pandas as pd

from stalwart.analysis.datasets.adlb import PARAMETERS
from stalwart.analysis.datasets.bundle import TrialDatasets
from stalwart.analysis.kernels.ancova import ancova
from stalwart.analysis.kernels.cox import cox_ph
from stalwart.analysis.kernels.km import kaplan_meier
from stalwart.analysis.kernels.logrank import logrank_test
from stalwart.analysis.kernels.ttest import welch_ttest
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
from stalwart.protocol.schema import PrimaryAnalysis, Protocol, TimeToEventAnalysis

__all__ = [
    "analyze",
    "analyze_available",
    "primary_analyses",
    "run_plan",
    "secondary_analyses",
    "time_to_event_analyses",
]


def _num(x: float | None) -> float | None:
    """A JSON-safe float: None for NaN or infinity."""
    if x is None:
        return None
    value = float(x)
    return value if math.isfinite(value) else None


def _arms_of(side: str) -> list[str]:
    return side.split("+")


def _endpoint_rows(protocol: Protocol, datasets: TrialDatasets, endpoint_id: str) -> pd.DataFrame:
    endpoint = protocol.endpoint(endpoint_id)
    assert endpoint.test is not None and endpoint.visit is not None
    paramcd = PARAMETERS[endpoint.test][0] if endpoint.test in PARAMETERS else endpoint.test
    adlb = datasets.adlb
    rows = adlb[(adlb["PARAMCD"] == paramcd) & (adlb["AVISIT"] == endpoint.visit)]
    # complete case (SAP missing_data = complete_case): a value at the visit and a baseline
    return rows[rows["AVAL"].notna() & rows["BASE"].notna()]


def primary_analyses(
    protocol: Protocol, datasets: TrialDatasets
) -> tuple[ContinuousComparison, ...]:
    """Each primary continuous-endpoint comparison by each method of the plan."""
    return _continuous(protocol, datasets, protocol.analysis.primary)


def secondary_analyses(
    protocol: Protocol, datasets: TrialDatasets
) -> tuple[ContinuousComparison, ...]:
    """Each secondary continuous-endpoint comparison (same shape as the primary ones)."""
    return _continuous(protocol, datasets, protocol.analysis.secondary)


def _continuous(
    protocol: Protocol, datasets: TrialDatasets, specs: list[PrimaryAnalysis]
) -> tuple[ContinuousComparison, ...]:
    out: list[ContinuousComparison] = []
    for spec in specs:
        rows = _endpoint_rows(protocol, datasets, spec.endpoint)
        visit = protocol.visit(protocol.endpoint(spec.endpoint).visit or "")
        for treated, control in spec.comparisons:
            for method in spec.methods:
                out.append(
                    _compare_continuous(
                        protocol, spec, rows, treated, control, method, visit.day // 7
                    )
                )
    return tuple(out)


def _compare_continuous(
    protocol: Protocol,
    spec: PrimaryAnalysis,
    rows: pd.DataFrame,
    treated: str,
    control: str,
    method: str,
    week: int,
) -> ContinuousComparison:
    alpha = protocol.analysis.alpha
    treated_arms = _arms_of(treated)
    x = rows[rows["ARMCD"].isin(treated_arms)]
    y = rows[rows["ARMCD"] == control]
    if len(x) < 2 or len(y) < 2:
        raise AnalysisError(
            f"{spec.endpoint}: {treated} vs {control} needs at least 2 participants with a "
            f"value per side, found {len(x)} and {len(y)}"
        )
    record: dict[str, Any] = {
        "endpoint": spec.endpoint,
        "week": week,
        "arm": treated,
        "control": control,
        "n": {treated: len(x), control: len(y)},
        "mean": {treated: float(x["AVAL"].mean()), control: float(y["AVAL"].mean())},
        "method": method,
    }
    if method == "ttest":
        res = welch_ttest(x["AVAL"].to_numpy(float), y["AVAL"].to_numpy(float), alpha=alpha)
        record.update(
            difference=res.difference,
            ci_low=res.ci_low,
            ci_high=res.ci_high,
            p_value=res.p_value,
            se=res.se,
            df=res.df,
            test="Welch two-sample t-test",
        )
    else:
        # every arm in one model, so the residual variance is pooled over all arms
        side = np.where(rows["ARMCD"].isin(treated_arms), treated, rows["ARMCD"])
        anc = ancova(
            rows["AVAL"].to_numpy(float),
            side.astype(str),
            rows["BASE"].to_numpy(float),
            treatment_level=treated,
            control_level=control,
            alpha=alpha,
        )
        record.update(
            difference=anc.difference,
            ci_low=anc.ci_low,
            ci_high=anc.ci_high,
            p_value=anc.p_value,
            se=anc.se,
            df=anc.df,
            adjusted_mean={
                str(k): float(v)
                for k, v in zip(anc.levels, anc.adjusted_means, strict=True)
                if k in (treated, control)
            },
            test="ANCOVA: value ~ arm + baseline",
        )
    for key in ("difference", "ci_low", "ci_high", "p_value", "se", "df"):
        record[key] = _num(record[key])
    return ContinuousComparison(**record)


def time_to_event_analyses(
    protocol: Protocol, datasets: TrialDatasets
) -> tuple[tuple[TimeToEventComparison, ...], tuple[KmSummary, ...]]:
    """Hazard ratios and log-rank tests of each comparison, and Kaplan-Meier medians by arm."""
    results: list[TimeToEventComparison] = []
    km: list[KmSummary] = []
    for spec in protocol.analysis.time_to_event:
        rows = datasets.adtte[datasets.adtte["PARAMCD"] == spec.endpoint]
        for treated, control in spec.comparisons:
            for method in spec.methods:
                results.append(_compare_tte(protocol, spec, rows, treated, control, method))
        for arm in protocol.arm_codes:
            km.append(_km_summary(protocol, spec.endpoint, arm, rows[rows["ARMCD"] == arm]))
    return tuple(results), tuple(km)


def _compare_tte(
    protocol: Protocol,
    spec: TimeToEventAnalysis,
    rows: pd.DataFrame,
    treated: str,
    control: str,
    method: str,
) -> TimeToEventComparison:
    treated_arms = _arms_of(treated)
    sub = rows[rows["ARMCD"].isin([*treated_arms, control])]
    time = sub["AVAL"].to_numpy(float)
    event = (sub["CNSR"].to_numpy(int) == 0).astype(float)
    is_treated = sub["ARMCD"].isin(treated_arms).to_numpy(float)
    events = {
        treated: int(event[is_treated == 1].sum()),
        control: int(event[is_treated == 0].sum()),
    }
    n = {treated: int((is_treated == 1).sum()), control: int((is_treated == 0).sum())}
    if len(treated_arms) > 1:
        for arm in treated_arms:
            mask = sub["ARMCD"].to_numpy() == arm
            events[arm] = int(event[mask].sum())
            n[arm] = int(mask.sum())
    record: dict[str, Any] = {
        "parameter": spec.endpoint,
        "arm": treated,
        "control": control,
        "events": events,
        "n": n,
        "method": method,
    }
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
    if method != "logrank" and min(events[treated], events[control]) == 0:
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
    if method == "logrank":
        lr = logrank_test(time, event, is_treated)
        record.update(
            hazard_ratio=None,
            ci_low=None,
            ci_high=None,
            p_value=_num(lr.p_value),
            chi2=_num(lr.chi2),
        )
    else:
        ties: Literal["efron", "breslow"] = "efron" if method == "cox_efron" else "breslow"
        cox = cox_ph(
            time, event, is_treated.reshape(-1, 1), ties=ties, alpha=protocol.analysis.alpha
        )
        record.update(
            hazard_ratio=_num(cox.hazard_ratio[0]),
            ci_low=_num(cox.ci_low[0]),
            ci_high=_num(cox.ci_high[0]),
            p_value=_num(cox.p_value[0]),
            test="Wald",
            lr_p_value=_num(cox.lr_p_value),
            score_p_value=_num(cox.score_p_value),
        )
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
            median=_num(res.median),
            ci_low=_num(res.median_ci_low),
            ci_high=_num(res.median_ci_high),
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
