"""Calibration of the STALWART participant model: parameters computed from published results.

Three groups of values are not taken from the literature but computed, by :func:`calibrate`, so
that the model reproduces published STALWART results in expectation under this protocol's design.
The model never reads the published results: they are the ``target_*`` tables of the file, read
only by :func:`calibrate`. The values in the file are :func:`calibrate`'s output, rounded to four
significant digits; ``tests/simulate/test_parameters.py`` recomputes them. The expectations
evaluate the model's own laws (:mod:`stalwart.simulate.equations`: latent state, natural CD4 path,
event hazard, IL-2 kernel), so they cannot drift from what the simulators draw.

1. **IL-2 CD4 gain** ``il2_cd4_persistent_gain_per_cycle`` (P). A participant who takes a
   fraction d_k of cycle k's IL-2 injections gains ``R * d_k * P * K(t - s_k)`` cells/mm3 on top of
   the natural CD4 path, ``s_k`` being the cycle's first IL-2 day and ``K`` the per-unit kernel
   :func:`~stalwart.simulate.equations.il2_cd4_kernel`: a persistent part ``1 - exp(-t/14)``
   plus ``2.5`` times a transient that peaks at 1 about 16 days after the cycle starts (time
   constants 8 and 42 days). R is lognormal with mean 1, independent of everything else, and
   measurement error is mean-preserving, so the expected week-32 difference from the no-therapy
   arm is ``P * g_a`` with ``g_a = sum_k E[d_k] * E_jitter[K(t_visit - s_k)]``.

   ``E[d_k]`` follows from the adherence parameters: a cycle is started with probability 0.97
   unless treatment has been stopped; in a started cycle the IL-2 days after a first
   treatment-related grade >= 3 AE are withheld with probability 0.5 (the first-onset day
   distribution is computed exactly from the per-term probabilities, grade distributions and
   uniform onset days: 3.6% of IL-2 injections lost alone, 4.0% with ART); each administration
   is taken with probability 0.97; after a cycle with such an AE (17.5% of cycles, 18.9% with
   ART) all later cycles stop with probability 0.3. The visit date is the model's rounded normal
   jitter (SD 3 days) clipped to the window [-7, +14]. With cycles starting on days 7, 63 and
   119 and the week-32 visit on day 224, K is 1.03, 1.10 and 1.37 and g = 3.000 (IL-2 alone) and
   2.973 (IL-2 + ART: ART adds GI toxicity, so slightly fewer IL-2 doses). P is the
   least-squares fit of the two published differences, ``P = sum(T_a g_a) / sum(g_a^2)`` with
   T = 134 (IL-2) and 133 (IL-2 + ART) [PAPER]: **P = 44.70**, expectations 134.1 and 132.9. The
   two arms share every IL-2 parameter and differ only through the ART arm's extra toxicity.
   Ignored here: treatment stops after opportunistic events before week 32 (about 1% of IL-2
   participants, about -1 cell) and who attends week 32 (deaths by then are about 0.3%).

2. **Event rate** ``event_rate_at_reference_cd4`` (lambda) and **IL-2 hazard ratio**
   ``il2_event_hazard_ratio`` (HR). The first opportunistic event or death has daily hazard
   ``Z * lambda / 365.25 * exp(0.3 * (500 - C_nat(t)) / 100) * HR^[IL-2 started by t]``, Z a
   gamma frailty (mean 1, variance 0.5) and ``C_nat`` the natural CD4 path: IL-2-induced cells do
   not protect (ESPRIT/SILCAAT, X1). The excess applies from the first IL-2 day of the first
   cycle a participant starts to the end of follow-up (28 Feb 2009, when IL-2 was stopped
   everywhere); the extension phase after IL-2 had stopped found HR 1.45 (0.38-5.45) [EXT], so
   nothing beyond this study's follow-up is modelled. The expected proportion of an arm with an
   observed event is ``sum_d E[F(d) - F(d-1)] * exp(-mu (d-1) / 365.25) * P(T_end >= d)`` with
   ``F(d) = 1 - (1 + 0.5 H(d))^-2`` (gamma-frailty survival), ``H`` the cumulative hazard and mu
   the arm's dropout rate; the expectation over the eligible population is taken by Gauss-Hermite
   quadrature (log CD4 and RNA set point jointly normal, CD4 slope depending on the set point,
   each node weighted by the probability that its noisy screening count passes the protocol's
   CD4 criterion). Follow-up ``T_end`` runs from a randomization day uniform over the accrual
   period (1 Dec 2005 - 30 Jun 2008, as the site player draws it) to 28 Feb 2009: 243 to 1185
   days, mean 714 days (1.96 years); with dropout the mean time at risk is 1.86 years (no
   therapy) and 1.83 / 1.80 years (IL-2 arms). lambda is solved so that the no-therapy arm
   expects 1/91 [PAPER] (0.59 first events per 100 person-years), then HR so that the two IL-2
   arms expect 12/176 on average [PAPER] (3.76 per 100 person-years): **lambda = 0.005885** per
   person-year at CD4 500 and **HR = 6.907**. HR exceeds both the crude rate ratio (6.4) and the
   published 5.84 because the frailty flattens the proportion-to-hazard relation and the excess
   starts only on day 7.

3. **Dropout** ``dropout_rate_per_year.<ARM>`` (mu). Constant hazard from randomization; a
   participant completes when neither dropout nor death comes before the end of follow-up, so the
   expected completion is ``E_T[exp(-mu (T - 1) / 365.25) * (1 - p_death * F(T))]`` with
   ``p_death = 0.2`` the share of first events that are deaths. mu is solved per arm for the
   registry's 83/91, 78/89 and 74/87 [REGISTRY]: **0.04627, 0.06063, 0.07629** per person-year.
   Groups 2 and 3 depend on each other (dropout shortens the time at risk; deaths prevent
   completion), so :func:`calibrate` iterates them to a fixed point. Deaths after a first
   opportunistic event (about 0.3% of IL-2 participants) are neglected, so simulated completion
   in the IL-2 arms runs about 0.3 points under the target.

The Monte Carlo tests in ``tests/simulate/test_model.py`` check the simulated model against these
expectations.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq
from scipy.special import ndtr

from stalwart.errors import ConfigurationError
from stalwart.protocol.calendar import ScheduledVisit, participant_calendar
from stalwart.protocol.schema import Protocol
from stalwart.simulate.cycles import ART_TREATMENT, IL2_TREATMENT, TreatmentCycle, treatment_cycles
from stalwart.simulate.equations import (
    DAYS_PER_YEAR,
    FloatArray,
    cd4_decline,
    cd4_log_deviation,
    hiv_rna_setpoint,
    il2_cd4_kernel,
    il2_excess_window,
    natural_cd4,
    relative_event_hazard,
)
from stalwart.simulate.parameters import ModelParameters, Parameter

__all__ = ["Calibration", "EventExpectations", "apply_calibration", "calibrate", "week32_gain"]

Exposure = tuple[tuple[float, float], ...]
"""IL-2 exposure windows (first and last day, inclusive) of one pattern of intended cycles."""


@dataclass(frozen=True)
class Calibration:
    """Calibrated values and what the model then expects (see the module docstring)."""

    il2_cd4_persistent_gain_per_cycle: float
    event_rate_at_reference_cd4: float
    il2_event_hazard_ratio: float
    dropout_rate_per_year: dict[str, float]
    expected_week32_cd4_difference: dict[str, float]
    expected_event_proportion: dict[str, float]
    expected_completion_proportion: dict[str, float]


def calibrate(params: ModelParameters, protocol: Protocol, iterations: int = 4) -> Calibration:
    """Recompute the calibrated parameters from the others and the ``target_*`` tables.

    Parameters
    ----------
    params
        The parameters; their calibrated values are ignored except as the starting point.
    protocol
        The protocol whose design (accrual, follow-up end, cycles, visits) the targets refer to.
    iterations
        Rounds of the event-rate / dropout fixed point.

    Returns
    -------
    Calibration
        The values and the expectations they imply.

    Raises
    ------
    ConfigurationError
        A target names an arm the protocol lacks, or a target cannot be reached.
    """
    for table in (
        params.target_week32_cd4_difference,
        params.target_event_proportion,
        params.target_completion_proportion,
    ):
        for arm in table:
            if arm not in protocol.arm_codes:
                raise ConfigurationError(f"calibration target for unknown arm {arm!r}")
    gains = {
        arm: _week32_gain_per_unit(params, protocol, arm)
        for arm in params.target_week32_cd4_difference
    }
    denominator = sum(g * g for g in gains.values())
    if denominator <= 0:
        raise ConfigurationError("target_week32_cd4_difference: no arm receives IL-2")
    gain = sum(params.target_week32_cd4_difference[a].value * g for a, g in gains.items())
    gain /= denominator
    events = _EventModel(params, protocol)
    rate = params.event_rate_at_reference_cd4.value
    ratio = params.il2_event_hazard_ratio.value
    dropout = {
        a: params.dropout_rate_per_year[a].value for a in params.target_completion_proportion
    }
    for _ in range(max(iterations, 1)):
        rate, ratio = events.solve_hazard(rate, ratio, dropout)
        dropout = {
            arm: events.solve_dropout(arm, rate, ratio, target.value)
            for arm, target in params.target_completion_proportion.items()
        }
    arms = sorted(set(params.target_event_proportion) | set(dropout))
    return Calibration(
        il2_cd4_persistent_gain_per_cycle=gain,
        event_rate_at_reference_cd4=rate,
        il2_event_hazard_ratio=ratio,
        dropout_rate_per_year=dropout,
        expected_week32_cd4_difference={a: gain * g for a, g in gains.items()},
        expected_event_proportion={
            a: events.event_proportion(a, rate, ratio, dropout.get(a, 0.0)) for a in arms
        },
        expected_completion_proportion={
            a: events.completion(a, rate, ratio, mu) for a, mu in dropout.items()
        },
    )


def apply_calibration(params: ModelParameters, calibration: Calibration) -> ModelParameters:
    """``params`` with the calibrated values of ``calibration`` (units and sources kept)."""

    def replaced(p: Parameter, value: float) -> Parameter:
        return p.model_copy(update={"value": value})

    dropout = dict(params.dropout_rate_per_year)
    for arm, mu in calibration.dropout_rate_per_year.items():
        dropout[arm] = replaced(dropout[arm], mu)
    return params.model_copy(
        update={
            "il2_cd4_persistent_gain_per_cycle": replaced(
                params.il2_cd4_persistent_gain_per_cycle,
                calibration.il2_cd4_persistent_gain_per_cycle,
            ),
            "event_rate_at_reference_cd4": replaced(
                params.event_rate_at_reference_cd4, calibration.event_rate_at_reference_cd4
            ),
            "il2_event_hazard_ratio": replaced(
                params.il2_event_hazard_ratio, calibration.il2_event_hazard_ratio
            ),
            "dropout_rate_per_year": dropout,
        }
    )


def week32_gain(params: ModelParameters, protocol: Protocol, arm: str) -> float:
    """Expected week-32 CD4 difference from no therapy per unit of the persistent gain (g_a, §1)."""
    return _week32_gain_per_unit(params, protocol, arm)


class EventExpectations:
    """The expected event and completion proportions by arm (§2-3) for any event rate, IL-2
    hazard ratio, excess window and dropout rates: the likelihood of the posterior calibration.

    The population quadrature (``nodes`` per dimension) is built once; each call rebuilds only
    what the window changes.
    """

    def __init__(self, params: ModelParameters, protocol: Protocol, nodes: int = 4) -> None:
        self._model = _EventModel(params, protocol, nodes)
        self._params = params

    def __call__(
        self, rate: float, ratio: float, window: float, dropout: Mapping[str, float]
    ) -> tuple[dict[str, float], dict[str, float]]:
        """(event proportion, completion proportion) by arm of ``dropout``."""
        model = self._model
        current = self._params.il2_excess_hazard_window_days
        window_parameter = current.model_copy(update={"value": window})
        model.params = self._params.model_copy(
            update={"il2_excess_hazard_window_days": window_parameter}
        )
        model._first_days.clear()
        model._cumulative.clear()
        model._first_event.clear()
        events = {a: model.event_proportion(a, rate, ratio, mu) for a, mu in dropout.items()}
        done = {a: model.completion(a, rate, ratio, mu) for a, mu in dropout.items()}
        return events, done


def _cd4_endpoint_visit(protocol: Protocol) -> str:
    for endpoint in protocol.endpoints:
        if endpoint.kind == "continuous" and endpoint.test == "CD4" and endpoint.visit:
            return endpoint.visit
    raise ConfigurationError("the protocol has no continuous CD4 endpoint to calibrate against")


def _jitter_distribution(sd: float, before: int, after: int) -> tuple[list[int], list[float]]:
    """Offsets from the target day and their probabilities: ``round(N(0, sd))`` clipped."""
    offsets = list(range(-before, after + 1))
    if sd <= 0:
        return offsets, [1.0 if j == 0 else 0.0 for j in offsets]
    cdf = [float(ndtr((j + 0.5) / sd)) for j in offsets]
    probs = [cdf[i] - (cdf[i - 1] if i else 0.0) for i in range(len(offsets))]
    probs[-1] += 1.0 - cdf[-1]
    return offsets, probs


def _treatment_aes(params: ModelParameters, treatment: str) -> list[tuple[float, float]]:
    """(probability per cycle, share of grade >= 3) of each treatment-related AE term."""
    if treatment == IL2_TREATMENT:
        return [
            (p.value, sum(params.il2_ae_grade_distribution[term].value[2:]))
            for term, p in params.il2_ae_probability_per_cycle.items()
        ]
    if treatment == ART_TREATMENT:
        severe = sum(params.art_ae_grade_distribution.value[2:])
        return [(p.value, severe) for p in params.art_ae_probability_per_course.values()]
    return []


def _cycle_toxicity(params: ModelParameters, cycle: TreatmentCycle) -> tuple[float, float]:
    """(expected share of IL-2 administrations not withheld for toxicity, P(grade >= 3 AE))."""
    sources = []
    for treatment in dict.fromkeys(d.treatment for d in cycle.doses):
        days = cycle.days(treatment)
        for p, severe in _treatment_aes(params, treatment):
            sources.append((p * severe, np.asarray(days)))
    grid = sorted({d.study_day for d in cycle.doses})
    none_by = [
        math.prod(1.0 - q * float(np.sum(days <= c)) / len(days) for q, days in sources)
        for c in grid
    ]
    il2 = [(d.study_day, d.administrations) for d in cycle.doses if d.treatment == IL2_TREATMENT]
    planned = sum(n for _, n in il2)
    lost = 0.0
    previous = 1.0
    for c, survive in zip(grid, none_by, strict=True):
        first_here = previous - survive
        previous = survive
        if planned:
            lost += first_here * sum(n for day, n in il2 if day > c) / planned
    retained = 1.0 - params.toxicity_skip_rest_of_cycle_probability.value * lost
    any_severe = 1.0 - math.prod(1.0 - q for q, _ in sources)
    return retained, any_severe


def _week32_gain_per_unit(params: ModelParameters, protocol: Protocol, arm: str) -> float:
    """Expected CD4 gain at the CD4 endpoint visit per unit of persistent gain per cycle."""
    calendar = participant_calendar(protocol, arm, protocol.study.accrual_start)
    visit: ScheduledVisit = calendar.visit(_cd4_endpoint_visit(protocol))
    offsets, probs = _jitter_distribution(
        params.visit_date_sd.value,
        (visit.target - visit.earliest).days,
        (visit.latest - visit.target).days,
    )
    t = visit.study_day + np.asarray(offsets, dtype=np.float64)
    weights = np.asarray(probs)
    started = 1.0 - params.cycle_not_started_probability.value
    taken = params.administration_taken_probability.value
    stop = params.toxicity_stop_treatment_probability.value
    not_stopped = 1.0
    total = 0.0
    for cycle in treatment_cycles(protocol, calendar):
        retained, severe = _cycle_toxicity(params, cycle)
        il2_days = cycle.days(IL2_TREATMENT)
        if il2_days:
            fraction = started * not_stopped * taken * retained
            total += fraction * float(np.sum(weights * il2_cd4_kernel(params, t - il2_days[0])))
        not_stopped *= 1.0 - started * severe * stop
    return total


class _EventModel:
    """Expected first-event and completion proportions by arm, by quadrature (docstring §2-3)."""

    def __init__(self, params: ModelParameters, protocol: Protocol, nodes: int = 8) -> None:
        self.params = params
        self.protocol = protocol
        study = protocol.study
        longest = (study.follow_up_end - study.accrual_start).days
        span = (study.accrual_end - study.accrual_start).days
        self.days = np.arange(longest + 1, dtype=np.float64)
        ends = longest - np.arange(span + 1)
        # P(T_end >= d) and P(T_end = T) for uniform randomization days
        self.at_risk = np.array([(ends >= d).mean() for d in range(longest + 1)])
        self.end_prob = np.bincount(ends, minlength=longest + 1) / len(ends)
        self.weights, hazard = self._population(nodes)
        self.hazard = hazard  # per day, at rate 1 per person-year, no IL-2
        self._cumulative: dict[Exposure, tuple[FloatArray, FloatArray]] = {}
        self._first_days: dict[str, list[tuple[float, Exposure]]] = {}
        self._first_event: dict[tuple[object, float, float], FloatArray] = {}

    def _population(self, nodes: int) -> tuple[FloatArray, FloatArray]:
        p = self.params
        z, w = np.polynomial.hermite_e.hermegauss(nodes)
        w = w / w.sum()
        z3, w3 = np.polynomial.hermite_e.hermegauss(max(nodes // 2, 3))
        w3 = w3 / w3.sum()
        grid = np.meshgrid(z, z, z3, indexing="ij")
        a, b, c = (g.ravel() for g in grid)
        weight = (w[:, None, None] * w[None, :, None] * w3[None, None, :]).ravel()
        setpoint = hiv_rna_setpoint(p, a)
        log_cd4 = math.log(p.cd4_median.value) + cd4_log_deviation(p, a, b)
        decline = cd4_decline(p, setpoint, c)
        weight = weight * self._eligible(log_cd4)
        weight = weight / weight.sum()
        cd4 = natural_cd4(p, np.exp(log_cd4)[:, None], decline[:, None], self.days[None, :])
        hazard = relative_event_hazard(p, cd4) / DAYS_PER_YEAR
        hazard[:, 0] = 0.0
        return weight, hazard

    def _eligible(self, log_cd4: FloatArray) -> FloatArray:
        """P(screening count passes every CD4 criterion | true CD4), counts rounded to integers."""
        p = self.params
        sd = math.hypot(p.lymphocyte_count_noise_log_sd.value, p.cd4_percent_noise_log_sd.value)
        prob = np.ones_like(log_cd4)
        for crit in self.protocol.eligibility:
            rule = crit.rule
            if rule.item != "cd4" or rule.op not in (">=", ">") or isinstance(rule.value, bool):
                continue
            if not isinstance(rule.value, int | float):
                continue
            threshold = float(rule.value) - 0.5 if rule.op == ">=" else float(rule.value) + 0.5
            if sd == 0:
                prob *= (log_cd4 >= math.log(threshold)).astype(np.float64)
            else:
                prob *= ndtr((log_cd4 - sd * sd / 2 - math.log(threshold)) / sd)
        return prob

    def _exposures(self, arm: str) -> list[tuple[float, Exposure]]:
        """(probability, IL-2 exposure windows) over which of the arm's cycles are intended.

        Each cycle is declined independently with ``cycle_not_started_probability``; the
        windows of the intended ones (:func:`~stalwart.simulate.equations.il2_excess_window`)
        make the exposure. Declining every cycle, or an arm without IL-2, leaves none.
        """
        if arm in self._first_days:
            return self._first_days[arm]
        calendar = participant_calendar(self.protocol, arm, self.protocol.study.accrual_start)
        windows = [
            il2_excess_window(self.params, c.days(IL2_TREATMENT))
            for c in treatment_cycles(self.protocol, calendar)
            if c.days(IL2_TREATMENT)
        ]
        skip = self.params.cycle_not_started_probability.value
        merged: dict[Exposure, float] = {}
        for intended in itertools.product((False, True), repeat=len(windows)):
            prob = math.prod((1.0 - skip) if i else skip for i in intended)
            key = tuple(w for w, i in zip(windows, intended, strict=True) if i)
            merged[key] = merged.get(key, 0.0) + prob
        out = sorted(merged.items(), key=lambda item: (len(item[0]), item[0]))
        self._first_days[arm] = [(prob, key) for key, prob in out]
        return self._first_days[arm]

    def _split(self, exposure: Exposure) -> tuple[FloatArray, FloatArray]:
        if exposure not in self._cumulative:
            exposed = np.zeros(self.days.shape, dtype=bool)
            for lo, hi in exposure:
                exposed |= (self.days >= lo) & (self.days <= hi)
            before = np.cumsum(self.hazard * (1.0 - exposed), axis=1)
            after = np.cumsum(self.hazard * exposed, axis=1)
            self._cumulative[exposure] = (before, after)
        return self._cumulative[exposure]

    def first_event(self, arm: str, rate: float, ratio: float) -> FloatArray:
        """P(first event by day d), population average, ignoring dropout."""
        scenarios = self._exposures(arm)
        key = (tuple(scenarios), rate, ratio)
        if key in self._first_event:
            return self._first_event[key]
        theta = self.params.frailty_variance.value
        total = np.zeros_like(self.days)
        for prob, first in scenarios:
            if prob <= 0:
                continue
            before, after = self._split(first)
            cumulative = rate * (before + ratio * after)
            if theta > 0:
                survival = (1.0 + theta * cumulative) ** (-1.0 / theta)
            else:
                survival = np.exp(-cumulative)
            total += prob * (self.weights @ (1.0 - survival))
        self._first_event[key] = total
        return total

    def event_proportion(self, arm: str, rate: float, ratio: float, dropout: float) -> float:
        """Expected proportion of the arm with an observed first event."""
        first = self.first_event(arm, rate, ratio)
        density = np.diff(first, prepend=0.0)
        kept = np.exp(-dropout * np.maximum(self.days - 1.0, 0.0) / DAYS_PER_YEAR)
        return float(np.sum(density * kept * self.at_risk))

    def completion(self, arm: str, rate: float, ratio: float, dropout: float) -> float:
        """Expected proportion of the arm followed, alive, to the end of follow-up."""
        first = self.first_event(arm, rate, ratio)
        death = self.params.first_event_death_probability.value
        stay = np.exp(-dropout * np.maximum(self.days - 1.0, 0.0) / DAYS_PER_YEAR)
        return float(np.sum(self.end_prob * stay * (1.0 - death * first)))

    def solve_hazard(
        self, rate: float, ratio: float, dropout: Mapping[str, float]
    ) -> tuple[float, float]:
        """Rate from the arms without IL-2, then the IL-2 hazard ratio from the arms with it."""
        targets = self.params.target_event_proportion
        control = [a for a in targets if all(not key for _, key in self._exposures(a))]
        treated = [a for a in targets if a not in control]
        if control:
            goal = float(np.mean([targets[a].value for a in control]))

            def control_gap(r: float) -> float:
                got = [self.event_proportion(a, r, ratio, dropout.get(a, 0.0)) for a in control]
                return float(np.mean(got)) - goal

            rate = _root(control_gap, 1e-7, 10.0, "event_rate_at_reference_cd4")
        if treated:
            goal = float(np.mean([targets[a].value for a in treated]))

            def treated_gap(hr: float) -> float:
                got = [self.event_proportion(a, rate, hr, dropout.get(a, 0.0)) for a in treated]
                return float(np.mean(got)) - goal

            ratio = _root(treated_gap, 1e-3, 1e3, "il2_event_hazard_ratio")
        return rate, ratio

    def solve_dropout(self, arm: str, rate: float, ratio: float, target: float) -> float:
        """Dropout rate giving the arm's target completion proportion."""
        return _root(
            lambda mu: self.completion(arm, rate, ratio, mu) - target,
            0.0,
            20.0,
            f"dropout_rate_per_year.{arm}",
        )


def _root(f: Callable[[float], float], lo: float, hi: float, name: str) -> float:
    f_lo, f_hi = f(lo), f(hi)
    if f_lo * f_hi > 0:
        raise ConfigurationError(f"cannot calibrate {name}: its target is out of reach")
    return float(brentq(f, lo, hi, xtol=1e-10, rtol=1e-10))
