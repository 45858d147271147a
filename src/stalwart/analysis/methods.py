"""The plan's two-arm methods by protocol name: label, single-trial kernel and batched kernel.

The protocol names a method per analysis (``methods = ["ancova", "ttest"]``,
``["cox_efron", "logrank"]``). This registry says, once per name, how it is shown in the reports
(``label`` in tables, ``short_label`` in figures), how one trial is analysed by it (``single``,
on the kernels of :mod:`stalwart.analysis.kernels`) and how a block of Monte Carlo replicates is
(``batched``, on :mod:`stalwart.analysis.kernels.batched`). The Cox methods name their ties here
(``cox_efron``: Efron, ``cox_breslow``: Breslow), so no caller chooses a default.

* :data:`CONTINUOUS_METHODS`: a continuous endpoint at its visit, treated side vs control, on
  the complete cases (:class:`ContinuousSample`, :class:`ReplicateSample`);
* :data:`TIME_TO_EVENT_METHODS`: time to the first event, treated side vs control.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from stalwart.analysis.kernels.ancova import ancova
from stalwart.analysis.kernels.cox import cox_ph
from stalwart.analysis.kernels.logrank import logrank_test
from stalwart.analysis.kernels.ttest import welch_ttest

if TYPE_CHECKING:
    from stalwart.analysis.kernels.batched import EventTimes

# The batched kernels (the Monte Carlo's) are imported where called: a single-trial analysis
# (``stalwart analyze``, the reports) does not pay for loading them.

__all__ = [
    "CONTINUOUS_METHODS",
    "METHODS",
    "TIME_TO_EVENT_METHODS",
    "ContinuousMethod",
    "ContinuousSample",
    "Estimates",
    "Method",
    "ReplicateSample",
    "TimeToEventMethod",
    "method_label",
    "short_label",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
Columns = dict[str, npt.NDArray[Any]]


@dataclass(frozen=True)
class ContinuousSample:
    """One trial's complete cases at the endpoint visit, every arm (ANCOVA pools the residual
    variance over all of them).

    ``side`` is each row's level: the treated side's label (``treated_level``) for its rows,
    the arm code for the others; ``treated`` and ``control`` select the two sides' rows.
    """

    value: FloatArray
    baseline: FloatArray
    side: npt.NDArray[np.str_]
    treated: BoolArray
    control: BoolArray
    treated_level: str
    control_level: str


@dataclass(frozen=True)
class ReplicateSample:
    """A block of replicates' values at the endpoint visit, shaped ``(replicate, participant)``.

    ``group`` numbers the levels of the model (the pooled treated side is ``levels[0]``, the
    control ``levels[1]``, every other arm its own); ``complete`` marks a value and a baseline;
    ``treated`` and ``control`` select the two sides whether complete or not.
    """

    value: FloatArray
    baseline: FloatArray
    group: npt.NDArray[np.int64]
    levels: tuple[int, int]
    complete: BoolArray
    treated: BoolArray
    control: BoolArray


class Estimates(Protocol):
    """What a batched continuous method gives per replicate (the Monte Carlo's columns)."""

    @property
    def difference(self) -> FloatArray: ...
    @property
    def p_value(self) -> FloatArray: ...
    @property
    def statistic(self) -> FloatArray: ...
    @property
    def df(self) -> FloatArray: ...
    @property
    def estimable(self) -> BoolArray: ...


@dataclass(frozen=True)
class Method:
    """A method of the plan: its protocol name and its labels in the reports."""

    name: str
    label: str
    short_label: str


@dataclass(frozen=True)
class ContinuousMethod(Method):
    """A two-arm test of a continuous endpoint.

    ``single(sample, alpha)`` gives a :class:`~stalwart.analysis.results.ContinuousComparison`'s
    estimates (``difference``, ``ci_low``, ``ci_high``, ``p_value``, ``se``, ``df``, ``test``
    and any of the method's own); ``batched(sample, alpha)`` the per-replicate
    :class:`Estimates`.
    """

    single: Callable[[ContinuousSample, float], dict[str, Any]]
    batched: Callable[[ReplicateSample, float], Estimates]


@dataclass(frozen=True)
class TimeToEventMethod(Method):
    """A two-arm comparison of time to event.

    ``single(time, event, treated, alpha)`` gives a
    :class:`~stalwart.analysis.results.TimeToEventComparison`'s estimates;
    ``batched(times, alpha)`` the Monte Carlo's columns by metric. ``hazard_ratio`` says whether
    it estimates one (a Cox model, whose likelihood is monotone when a side has no events).
    """

    single: Callable[[FloatArray, FloatArray, FloatArray, float], dict[str, Any]]
    batched: Callable[[EventTimes, float], Columns]
    hazard_ratio: bool


def _ttest(sample: ContinuousSample, alpha: float) -> dict[str, Any]:
    res = welch_ttest(sample.value[sample.treated], sample.value[sample.control], alpha=alpha)
    return {
        "difference": res.difference,
        "ci_low": res.ci_low,
        "ci_high": res.ci_high,
        "p_value": res.p_value,
        "se": res.se,
        "df": res.df,
        "test": "Welch two-sample t-test",
    }


def _ancova(sample: ContinuousSample, alpha: float) -> dict[str, Any]:
    res = ancova(
        sample.value,
        sample.side,
        sample.baseline,
        treatment_level=sample.treated_level,
        control_level=sample.control_level,
        alpha=alpha,
    )
    return {
        "difference": res.difference,
        "ci_low": res.ci_low,
        "ci_high": res.ci_high,
        "p_value": res.p_value,
        "se": res.se,
        "df": res.df,
        "adjusted_mean": {
            str(k): float(v)
            for k, v in zip(res.levels, res.adjusted_means, strict=True)
            if k in (sample.treated_level, sample.control_level)
        },
        "test": "ANCOVA: value ~ arm + baseline",
    }


def _batched_ttest(sample: ReplicateSample, alpha: float) -> Estimates:
    from stalwart.analysis.kernels.batched import batched_welch_ttest

    return batched_welch_ttest(
        sample.value, sample.complete & sample.treated, sample.complete & sample.control, alpha
    )


def _batched_ancova(sample: ReplicateSample, alpha: float) -> Estimates:
    from stalwart.analysis.kernels.batched import batched_ancova

    return batched_ancova(
        sample.value, sample.group, sample.baseline, sample.complete, *sample.levels, alpha
    )


def _logrank(
    time: FloatArray, event: FloatArray, treated: FloatArray, alpha: float
) -> dict[str, Any]:
    del alpha  # a test without an interval
    lr = logrank_test(time, event, treated)
    return {
        "hazard_ratio": None,
        "ci_low": None,
        "ci_high": None,
        "p_value": lr.p_value,
        "chi2": lr.chi2,
    }


def _batched_logrank(times: EventTimes, alpha: float) -> Columns:
    from stalwart.analysis.kernels.batched import batched_logrank

    del alpha
    lr = batched_logrank(times)
    return {"p_value": lr.p_value, "z": lr.z, "estimable": lr.estimable}


def _cox(
    ties: Literal["efron", "breslow"],
) -> tuple[
    Callable[[FloatArray, FloatArray, FloatArray, float], dict[str, Any]],
    Callable[[EventTimes, float], Columns],
]:
    """Cox regression on the treated indicator with ``ties``: single-trial and batched."""

    def single(
        time: FloatArray, event: FloatArray, treated: FloatArray, alpha: float
    ) -> dict[str, Any]:
        cox = cox_ph(time, event, treated.reshape(-1, 1), ties=ties, alpha=alpha)
        return {
            "hazard_ratio": cox.hazard_ratio[0],
            "ci_low": cox.ci_low[0],
            "ci_high": cox.ci_high[0],
            "p_value": cox.p_value[0],
            "test": "Wald",
            "lr_p_value": cox.lr_p_value,
            "score_p_value": cox.score_p_value,
        }

    def batched(times: EventTimes, alpha: float) -> Columns:
        from stalwart.analysis.kernels.batched import batched_cox, batched_firth_hazard_ratio

        cox = batched_cox(times, ties=ties, alpha=alpha)
        return {
            "hazard_ratio": cox.hazard_ratio,
            "firth_hazard_ratio": batched_firth_hazard_ratio(times, ties=ties),
            "p_value": cox.p_value,
            "estimable": cox.estimable,
        }

    return single, batched


CONTINUOUS_METHODS: Mapping[str, ContinuousMethod] = {
    "ancova": ContinuousMethod("ancova", "ANCOVA", "ANCOVA", _ancova, _batched_ancova),
    "ttest": ContinuousMethod("ttest", "t-test", "t-test", _ttest, _batched_ttest),
}
"""Continuous-endpoint methods by protocol name (``PrimaryAnalysis.methods``)."""

TIME_TO_EVENT_METHODS: Mapping[str, TimeToEventMethod] = {
    "cox_efron": TimeToEventMethod("cox_efron", "Cox (Efron ties)", "Cox", *_cox("efron"), True),
    "cox_breslow": TimeToEventMethod(
        "cox_breslow", "Cox (Breslow ties)", "Cox", *_cox("breslow"), True
    ),
    "logrank": TimeToEventMethod(
        "logrank", "Log-rank", "Log-rank", _logrank, _batched_logrank, False
    ),
}
"""Time-to-event methods by protocol name (``TimeToEventAnalysis.methods``)."""

METHODS: Mapping[str, Method] = {**CONTINUOUS_METHODS, **TIME_TO_EVENT_METHODS}
"""Every two-arm method of the plan by protocol name."""


def method_label(name: str) -> str:
    """A method's name in a report table; a name the registry lacks is shown as it is."""
    method = METHODS.get(name)
    return method.label if method is not None else name


def short_label(name: str) -> str:
    """A method's name in a figure's row label; a name the registry lacks is shown as it is."""
    method = METHODS.get(name)
    return method.short_label if method is not None else name
