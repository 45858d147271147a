"""One block of replicate trials: simulated by the vectorized model, analysed by the plan.

:class:`TrialSpec` names everything a block depends on (protocol, model, scenario, looks, seed),
so a block is a pure function of ``(spec, first_replicate, n_replicates)``: the same numbers in
any process, on any worker, in any order (the simulator's per-stream seeds). :func:`run_block`
returns per-replicate columns; :mod:`~stalwart.montecarlo.summary` reduces them.

The analyses are the protocol's ``[analysis]`` plan run with the batched kernels:

* each primary comparison (:func:`~stalwart.analysis.comparisons.plan_comparisons`) by each
  method's batched kernel (:data:`~stalwart.analysis.methods.CONTINUOUS_METHODS`: ``ancova``,
  ``value ~ arm + baseline`` with every arm; ``ttest``, Welch) on the complete cases at the
  endpoint visit;
* each time-to-event comparison (pooled arms allowed) by each method
  (:data:`~stalwart.analysis.methods.TIME_TO_EVENT_METHODS`: Cox with the method's ties and its
  Wald p-value, the log-rank test); a replicate with no events in a group is flagged not
  estimable, not dropped;
* the group-sequential looks of :mod:`~stalwart.montecarlo.sequential`.

Column names are ``"<comparison key>|<metric>"``
(:func:`~stalwart.analysis.comparisons.comparison_key`).

With ``TrialSpec.posterior`` (a posterior sample of model parameters), each stream of
``STREAM_REPLICATES`` replicates runs at a draw chosen by the seed and the stream: the
probability of success over such replicates is the assurance, success integrated over the
posterior.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from stalwart.analysis.comparisons import Comparison, plan_comparisons
from stalwart.analysis.kernels.batched import EventTimes, event_times
from stalwart.analysis.methods import CONTINUOUS_METHODS, TIME_TO_EVENT_METHODS, ReplicateSample
from stalwart.errors import ConfigurationError
from stalwart.montecarlo.scenarios import DEFAULT_LOOKS, LookPlan
from stalwart.montecarlo.sequential import LookData, analyse_looks, harm_statistics, look_days
from stalwart.protocol.schema import Protocol
from stalwart.simulate.parameters import ModelParameters
from stalwart.simulate.vectorized import (
    FIDELITIES,
    STREAM_REPLICATES,
    ReplicateData,
    ReplicateSimulator,
    apply_scenario,
)

__all__ = ["Columns", "TrialSpec", "analyse", "analyse_harm", "run_block"]

Columns = dict[str, npt.NDArray[Any]]
"""Per-replicate results of a block: one array of length n_replicates per column."""

_SIMULATED = {"CD4": "cd4", "LHIVRNA": "log10_hiv_rna"}
"""The simulator's array of each ADLB parameter's analysed value (AVAL), by PARAMCD."""


@dataclass(frozen=True)
class TrialSpec:
    """What one Monte Carlo scenario simulates and analyses (picklable; sent to workers)."""

    protocol: Protocol
    params: ModelParameters
    seed: int
    overrides: Mapping[str, Any] = field(default_factory=dict)
    looks: LookPlan = DEFAULT_LOOKS
    fidelity: str = "outcomes"
    posterior: tuple[tuple[tuple[str, float], ...], ...] = ()
    harm_only: bool = False
    """Analyse only the harm rule's statistics (:func:`analyse_harm`): a calibration run."""

    def design(self) -> tuple[Protocol, ModelParameters]:
        """The protocol and parameters with the scenario's overrides applied (and validated)."""
        return apply_scenario(self.protocol, self.params, self.overrides)

    def stream_draw(self, stream: int) -> dict[str, float]:
        """The posterior draw of one replicate stream: a function of the seed and the stream
        only, so every executor and blocking gives each replicate the same parameters."""
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, stream, 0x20]))
        return dict(self.posterior[int(rng.integers(len(self.posterior)))])

    def with_draw(self, stream: int) -> TrialSpec:
        """This spec at one stream's posterior draw (the scenario's own overrides win)."""
        overrides = {**self.stream_draw(stream), **self.overrides}
        return replace(self, overrides=overrides, posterior=())

    def simulator(self) -> ReplicateSimulator:
        """The vectorized model with the scenario applied, drawing only the visits analysed.

        The scenario is applied once and the simulator built once. ``fidelity="outcomes"``
        draws only what the analyses read (the simulator's module says what); a primary
        endpoint on another test than CD4 (HIV RNA) needs the full mode, which is then used.
        """
        if self.fidelity not in FIDELITIES:
            raise ConfigurationError(
                f"fidelity must be one of {', '.join(FIDELITIES)}, got {self.fidelity!r}"
            )
        protocol, params = self.design()
        endpoints = [protocol.endpoint(spec.endpoint) for spec in protocol.analysis.primary]
        visits = sorted(
            {
                v
                for endpoint in endpoints
                for v in (endpoint.visit, endpoint.baseline_visit)
                if v is not None
            }
        )
        tests = {endpoint.test for endpoint in endpoints}
        fidelity = self.fidelity if tests <= {"CD4"} else "full"
        return ReplicateSimulator(protocol, params, visits=visits, fidelity=fidelity)


def run_block(spec: TrialSpec, first_replicate: int, n_replicates: int) -> Columns:
    """Simulate replicates ``first_replicate ..`` of the spec's seed and analyse them.

    With a posterior sample, each replicate stream (``STREAM_REPLICATES`` replicates) runs
    at its own draw (:meth:`TrialSpec.stream_draw`); the results are concatenated in order.
    """
    if not spec.posterior:
        simulator = spec.simulator()
        data = simulator.simulate(n_replicates, spec.seed, first_replicate)
        if spec.harm_only:
            return analyse_harm(data, simulator.protocol, spec.looks)
        return analyse(data, simulator.protocol, spec.looks)
    parts: list[Columns] = []
    end = first_replicate + n_replicates
    for stream in range(first_replicate // STREAM_REPLICATES, -(-end // STREAM_REPLICATES)):
        lo = max(first_replicate, stream * STREAM_REPLICATES)
        hi = min(end, (stream + 1) * STREAM_REPLICATES)
        parts.append(run_block(spec.with_draw(stream), lo, hi - lo))
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def analyse(data: ReplicateData, protocol: Protocol, looks: LookPlan = DEFAULT_LOOKS) -> Columns:
    """Every analysis of the plan on every replicate of ``data`` (see the module)."""
    alpha = protocol.analysis.alpha
    arm = data.arm.astype(np.int64)
    columns: Columns = {}
    for index, code in enumerate(data.arms):
        columns[f"randomized|{code}"] = (arm == index).sum(axis=1)
    look_data: list[LookData] = []
    safety: tuple[Comparison, npt.NDArray[np.bool_], npt.NDArray[np.bool_], EventTimes] | None = (
        None
    )
    tte_cache: dict[str, tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]] = {}
    for comparison in plan_comparisons(protocol):
        treated, control = _groups(data, arm, comparison)
        if comparison.kind == "primary":
            y, base, visit = _endpoint_values(data, protocol, comparison.endpoint)
            complete = np.isfinite(y) & np.isfinite(base)
            # pooled treated arms are one level (0); every other arm stays in the model
            group = np.where(treated, -1, arm) + 1
            levels = (0, _arm_index(data, comparison.control) + 1)
            sample = ReplicateSample(y, base, group, levels, complete, treated, control)
            final = _primary(columns, comparison, sample, alpha)
            endpoint_visit = protocol.visit(protocol.endpoint(comparison.endpoint).visit or "")
            look_data.append(
                LookData(
                    comparison.key(),
                    y,
                    base,
                    group,
                    levels,
                    complete,
                    visit,
                    endpoint_visit.day,
                    final,
                )
            )
        else:
            if comparison.endpoint not in tte_cache:
                tte_cache[comparison.endpoint] = _endpoint_times(data, protocol, comparison)
                _events_by_arm(columns, data, comparison.endpoint, *tte_cache[comparison.endpoint])
            time, event = tte_cache[comparison.endpoint]
            times = _time_to_event(columns, comparison, time, event, treated, control, alpha)
            if safety is None:
                safety = (comparison, treated, treated | control, times)
    if safety is not None and look_data:
        comparison, treated, include, times = safety
        time, event = tte_cache[comparison.endpoint]
        columns.update(
            analyse_looks(data, look_data, (time, event, treated, include), looks, alpha, times)
        )
    return columns


def analyse_harm(
    data: ReplicateData, protocol: Protocol, looks: LookPlan = DEFAULT_LOOKS
) -> Columns:
    """Only the harm rule's statistics at each look (``gs|harm_z|k``, ``gs|safety_events|k``):
    what a harm boundary's calibration reads. The same numbers as :func:`analyse` gives them
    (the looks of the first primary comparison's endpoint visit, the first time-to-event
    comparison), without the analyses the calibration does not read."""
    comparisons = plan_comparisons(protocol)
    primary = next((c for c in comparisons if c.kind == "primary"), None)
    safety = next((c for c in comparisons if c.kind != "primary"), None)
    if primary is None or safety is None:
        return {}
    arm = data.arm.astype(np.int64)
    treated, control = _groups(data, arm, safety)
    time, event = _endpoint_times(data, protocol, safety)
    visit_day = protocol.visit(protocol.endpoint(primary.endpoint).visit or "").day
    rates = tuple(float(t) for t in looks.information_rates)
    days = look_days(data, rates, visit_day)
    include = treated | control
    return harm_statistics(data, (time, event, treated, include), days)


def _groups(
    data: ReplicateData, arm: npt.NDArray[np.int64], comparison: Comparison
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """(treated, control) masks of a comparison: its treated arms pooled, its control arm."""
    treated = np.zeros(arm.shape, dtype=bool)
    for code in comparison.treated:
        treated |= arm == _arm_index(data, code)
    return treated, arm == _arm_index(data, comparison.control)


def _arm_index(data: ReplicateData, code: str) -> int:
    if code not in data.arms:
        raise ConfigurationError(f"the analysis plan names arm {code!r}; arms: {data.arms}")
    return data.arms.index(code)


def _endpoint_values(
    data: ReplicateData, protocol: Protocol, endpoint_id: str
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], int]:
    endpoint = protocol.endpoint(endpoint_id)
    paramcd = protocol.lab_item(endpoint.test).paramcd if endpoint.test else ""
    if paramcd not in _SIMULATED:
        raise ConfigurationError(
            f"endpoint {endpoint_id}: the simulator records parameters {sorted(_SIMULATED)}, "
            f"not {paramcd!r}"
        )
    values = getattr(data, _SIMULATED[paramcd])
    visit = data.visit(endpoint.visit or "")
    base = values[:, :, data.visit(endpoint.baseline_visit or "")]
    return values[:, :, visit], base, visit


def _endpoint_times(
    data: ReplicateData, protocol: Protocol, comparison: Comparison
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    categories = protocol.endpoint(comparison.endpoint).event_categories
    return data.time_to_event([c for c in categories if c != "OTHER"])


def _events_by_arm(
    columns: Columns,
    data: ReplicateData,
    endpoint: str,
    time: npt.NDArray[np.float64],
    event: npt.NDArray[np.bool_],
) -> None:
    del time
    for index, code in enumerate(data.arms):
        columns[f"{endpoint} events|{code}"] = (event & (data.arm == index)).sum(axis=1)


def _primary(
    columns: Columns, comparison: Comparison, sample: ReplicateSample, alpha: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None:
    """The comparison's columns; returns the ANCOVA's (statistic, p-value) where it is one of
    the methods (the final look reuses them)."""
    prefix = comparison.key()
    final = None
    columns[f"{prefix}|n_treated"] = (sample.complete & sample.treated).sum(axis=1)
    columns[f"{prefix}|n_control"] = (sample.complete & sample.control).sum(axis=1)
    for method in comparison.methods:
        key = comparison.key(method)
        res = CONTINUOUS_METHODS[method].batched(sample, alpha)
        columns[f"{key}|difference"] = res.difference
        columns[f"{key}|p_value"] = res.p_value
        columns[f"{key}|statistic"] = res.statistic
        columns[f"{key}|df"] = res.df
        columns[f"{key}|estimable"] = res.estimable
        if method == "ancova":
            final = (res.statistic, res.p_value)
    return final


def _time_to_event(
    columns: Columns,
    comparison: Comparison,
    time: npt.NDArray[np.float64],
    event: npt.NDArray[np.bool_],
    treated: npt.NDArray[np.bool_],
    control: npt.NDArray[np.bool_],
    alpha: float,
) -> EventTimes:
    times = event_times(time, event, treated, treated | control)
    prefix = comparison.key()
    columns[f"{prefix}|events_treated"] = times.total_events_treated
    columns[f"{prefix}|events_control"] = times.total_events - times.total_events_treated
    for method in comparison.methods:
        key = comparison.key(method)
        for metric, values in TIME_TO_EVENT_METHODS[method].batched(times, alpha).items():
            columns[f"{key}|{metric}"] = values
    return times
