"""Parameters of the STALWART participant model: loading, validation and calibration.

Every number the simulation model (:mod:`stalwart.simulate.model`) uses lives in
``parameters.toml`` next to this module, each as ``{ value, unit, source }``.
:func:`load_parameters` reads and validates that file into :class:`ModelParameters`; a key the
model does not know, a value out of range or a missing unit or source raises
:class:`~stalwart.errors.ConfigurationError` naming the key. Overrides such as
``{"cd4_median": 600, "dropout_rate_per_year.IL2": 0.1}`` replace values before validation.

Calibration
-----------
Three groups of values are not taken from the literature but computed, by :func:`calibrate`, so
that the model reproduces published STALWART results in expectation under this protocol's design.
The model never reads the published results: they are the ``target_*`` tables of the file, read
only by :func:`calibrate`. The values in the file are :func:`calibrate`'s output, rounded to four
significant digits; ``tests/simulate/test_parameters.py`` recomputes them.

1. **IL-2 CD4 gain** ``il2_cd4_persistent_gain_per_cycle`` (P). A participant who takes a
   fraction d_k of cycle k's IL-2 injections gains ``R * d_k * P * K(t - s_k)`` cells/mm3 on top of
   the natural CD4 path, ``s_k`` being the cycle's first IL-2 day and ``K`` the per-unit kernel
   :func:`il2_cd4_kernel`: a persistent part ``1 - exp(-t/14)`` plus ``2.5`` times a transient
   that peaks at 1 about 16 days after the cycle starts (time constants 8 and 42 days). R is
   lognormal with mean 1, independent of everything else, and measurement error is
   mean-preserving, so the expected week-32 difference from the no-therapy arm is ``P * g_a``
   with ``g_a = sum_k E[d_k] * E_jitter[K(t_visit - s_k)]``.

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

import hashlib
import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pydantic
from numpy.typing import NDArray
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
from scipy.optimize import brentq
from scipy.special import ndtr

from stalwart.errors import ConfigurationError
from stalwart.protocol.calendar import Calendar, DoseDay, ScheduledVisit, participant_calendar
from stalwart.protocol.schema import Protocol

__all__ = [
    "ART_TREATMENT",
    "DAYS_PER_YEAR",
    "IL2_TREATMENT",
    "Calibration",
    "Distribution",
    "FloatArray",
    "ModelParameters",
    "Parameter",
    "TreatmentCycle",
    "apply_calibration",
    "calibrate",
    "default_parameters_path",
    "il2_cd4_kernel",
    "il2_hiv_rna_kernel",
    "load_parameters",
    "overridable_keys",
    "override_parameters",
    "treatment_cycles",
]

IL2_TREATMENT = "IL2"
"""Protocol treatment code whose doses raise CD4, HIV RNA and the event hazard."""

ART_TREATMENT = "ART"
"""Protocol treatment code whose doses suppress HIV RNA."""

DAYS_PER_YEAR = 365.25

FloatArray = NDArray[np.float64]


# ---------------------------------------------------------------------------------------------
# Parameter records
# ---------------------------------------------------------------------------------------------
class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    unit: str = Field(min_length=1)
    source: str = Field(min_length=1)


class Parameter(_Record):
    """One scalar parameter: its value, unit and where the value comes from."""

    value: float

    @field_validator("value", mode="before")
    @classmethod
    def _number(cls, value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"must be finite, got {value!r}")
        return value


class Distribution(_Record):
    """Probabilities of successive categories (DAIDS grades 1, 2, ...): non-negative, sum 1."""

    value: tuple[float, ...] = Field(min_length=1)

    @field_validator("value")
    @classmethod
    def _probabilities(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(not math.isfinite(v) or v < 0 for v in value):
            raise ValueError(f"probabilities must be finite and >= 0, got {list(value)}")
        if abs(sum(value) - 1.0) > 1e-6:
            raise ValueError(f"probabilities must sum to 1, got {sum(value):g}")
        return value


def _bounded(lo: float | None, hi: float | None) -> Callable[[Parameter], Parameter]:
    def check(p: Parameter) -> Parameter:
        if (lo is not None and p.value < lo) or (hi is not None and p.value > hi):
            lo_s = "-inf" if lo is None else f"{lo:g}"
            hi_s = "inf" if hi is None else f"{hi:g}"
            raise ValueError(f"value {p.value:g} is outside [{lo_s}, {hi_s}]")
        return p

    return check


def _positive(p: Parameter) -> Parameter:
    if p.value <= 0:
        raise ValueError(f"value must be > 0, got {p.value:g}")
    return p


Real = Parameter
Probability = Annotated[Parameter, AfterValidator(_bounded(0.0, 1.0))]
Correlation = Annotated[Parameter, AfterValidator(_bounded(-1.0, 1.0))]
NonNegative = Annotated[Parameter, AfterValidator(_bounded(0.0, None))]
Positive = Annotated[Parameter, AfterValidator(_positive)]
AtLeastOne = Annotated[Parameter, AfterValidator(_bounded(1.0, None))]


class ModelParameters(BaseModel):
    """Every parameter of the participant model; see ``parameters.toml`` for meaning and sources.

    Scalars are :class:`Parameter` (read ``.value``); tables keyed by a code (arm, AE term,
    relatedness label, clinical-event code, screening item) are ``dict[str, Parameter]``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # who presents at screening
    age_mean: Positive
    age_sd: NonNegative
    female_probability: Probability
    screening_true_probability: dict[str, Probability]
    cd4_median: Positive
    cd4_log_sd: NonNegative
    hiv_rna_setpoint_mean: Real
    hiv_rna_setpoint_sd: NonNegative
    cd4_setpoint_correlation: Correlation
    other_lymphocytes_median: Positive
    other_lymphocytes_log_sd: NonNegative
    # measurement error
    lymphocyte_count_noise_log_sd: NonNegative
    cd4_percent_noise_log_sd: NonNegative
    hiv_rna_noise_sd: NonNegative
    # natural history
    cd4_decline_per_year: Real
    cd4_decline_per_log10_rna: Real
    cd4_decline_sd: NonNegative
    cd4_floor: NonNegative
    # IL-2 CD4 response
    il2_cd4_persistent_gain_per_cycle: NonNegative
    il2_cd4_transient_ratio: NonNegative
    il2_cd4_persistent_time_constant: Positive
    il2_cd4_transient_rise_time_constant: Positive
    il2_cd4_transient_decay_time_constant: Positive
    il2_response_log_sd: NonNegative
    # HIV RNA
    il2_hiv_rna_peak_increase: Real
    il2_hiv_rna_decay_time_constant: Positive
    art_hiv_rna_decline_per_day: NonNegative
    art_hiv_rna_max_suppression: NonNegative
    art_hiv_rna_rebound_per_day: Positive
    # taking the treatment
    cycle_not_started_probability: Probability
    administration_taken_probability: Probability
    toxicity_skip_rest_of_cycle_probability: Probability
    toxicity_stop_treatment_probability: Probability
    event_stop_treatment_probability: Probability
    # visits
    visit_date_sd: NonNegative
    missed_visit_probability: Probability
    # clinical events
    event_rate_at_reference_cd4: NonNegative
    event_reference_cd4: Real
    event_log_hazard_per_100_cd4: Real
    il2_event_hazard_ratio: Positive
    frailty_variance: NonNegative
    first_event_death_probability: Probability
    later_event_hazard_ratio: Positive
    later_event_death_probability: Probability
    clinical_event_weight: dict[str, NonNegative]
    # dropout
    dropout_rate_per_year: dict[str, NonNegative]
    lost_to_follow_up_share: Probability
    # adverse events
    il2_ae_probability_per_cycle: dict[str, Probability]
    il2_ae_grade_distribution: dict[str, Distribution]
    il2_ae_relatedness: dict[str, NonNegative]
    il2_ae_mean_duration: AtLeastOne
    art_ae_probability_per_course: dict[str, Probability]
    art_ae_grade_distribution: Distribution
    art_ae_relatedness: dict[str, NonNegative]
    art_ae_mean_duration: AtLeastOne
    background_ae_rate_per_year: NonNegative
    background_ae_term_weight: dict[str, NonNegative]
    background_ae_grade_distribution: Distribution
    background_ae_relatedness: dict[str, NonNegative]
    background_ae_mean_duration: AtLeastOne
    serious_probability_grade3: Probability
    serious_probability_grade4: Probability
    # calibration targets (read by calibrate() only)
    target_week32_cd4_difference: dict[str, Real]
    target_event_proportion: dict[str, Probability]
    target_completion_proportion: dict[str, Probability]

    @model_validator(mode="after")
    def _consistent(self) -> ModelParameters:
        problems = []
        if set(self.il2_ae_grade_distribution) != set(self.il2_ae_probability_per_cycle):
            problems.append(
                "il2_ae_grade_distribution: needs exactly the terms of il2_ae_probability_per_cycle"
            )
        rise = self.il2_cd4_transient_rise_time_constant.value
        if self.il2_cd4_transient_decay_time_constant.value <= rise:
            problems.append(
                "il2_cd4_transient_decay_time_constant: must be greater than the rise constant"
            )
        weights = {
            "clinical_event_weight": self.clinical_event_weight,
            "il2_ae_relatedness": self.il2_ae_relatedness,
            "art_ae_relatedness": self.art_ae_relatedness,
            "background_ae_term_weight": self.background_ae_term_weight,
            "background_ae_relatedness": self.background_ae_relatedness,
        }
        for name, table in weights.items():
            if not any(p.value > 0 for p in table.values()):
                problems.append(f"{name}: at least one weight must be > 0")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def records(self) -> dict[str, Parameter | Distribution]:
        """Every parameter by its key (``name`` or ``name.code``), in file order."""
        out: dict[str, Parameter | Distribution] = {}
        for name in type(self).model_fields:
            field = getattr(self, name)
            if isinstance(field, dict):
                for code, record in field.items():
                    out[f"{name}.{code}"] = record
            else:
                out[name] = field
        return out

    def fingerprint(self) -> str:
        """SHA-256 of the parameters' canonical JSON: identifies the exact parameter set."""
        text = self.model_dump_json()
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------
def default_parameters_path() -> Path:
    """The packaged STALWART parameter file."""
    return Path(str(resources.files("stalwart.simulate") / "parameters.toml"))


def load_parameters(
    path: Path | None = None, overrides: Mapping[str, float] | None = None
) -> ModelParameters:
    """Read, override and validate a parameter file.

    Parameters
    ----------
    path
        A parameter TOML file; the packaged STALWART file when ``None``.
    overrides
        New values by key: ``"name"`` for a scalar, ``"name.code"`` for an entry of a keyed
        table (``"dropout_rate_per_year.IL2"``). Distributions cannot be overridden.

    Returns
    -------
    ModelParameters
        The validated parameters.

    Raises
    ------
    ConfigurationError
        The file is missing or not TOML, a key is unknown, a value is invalid or out of range,
        or an override names an unknown key or is not a number. The message names the key.
    """
    file = Path(path) if path is not None else default_parameters_path()
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigurationError(f"simulation parameter file not found: {file}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read simulation parameters {file}: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(
            f"simulation parameters {file} are not valid TOML: {exc}"
        ) from None
    for key, value in (overrides or {}).items():
        _override(data, key, value)
    return _validated(data, str(file))


def override_parameters(params: ModelParameters, overrides: Mapping[str, float]) -> ModelParameters:
    """``params`` with new values by key, validated again (scenarios of a Monte Carlo study).

    Keys and errors are those of :func:`load_parameters`' ``overrides``; units and sources are
    kept. Unlike :func:`load_parameters` this starts from parameters already in memory.
    """
    data = params.model_dump(mode="json")
    for key, value in overrides.items():
        _override(data, key, value)
    return _validated(data, "with overrides " + ", ".join(sorted(overrides)))


def overridable_keys(params: ModelParameters) -> list[str]:
    """Every key an override may name (``name`` or ``name.code``): the scalar parameters."""
    return [key for key, record in params.records().items() if isinstance(record, Parameter)]


def _validated(data: dict[str, Any], source: str) -> ModelParameters:
    try:
        return ModelParameters.model_validate(data)
    except pydantic.ValidationError as exc:
        problems = [
            f"{'.'.join(str(part) for part in error['loc']) or '<file>'}: {error['msg']}"
            for error in exc.errors()
        ]
        raise ConfigurationError(
            f"invalid simulation parameters {source}:\n" + "\n".join(f"  - {p}" for p in problems)
        ) from None


def _override(data: dict[str, Any], key: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"override {key}: must be a number, got {value!r}")
    name, _, code = key.partition(".")
    entry = data.get(name)
    if name not in ModelParameters.model_fields or not isinstance(entry, dict):
        raise ConfigurationError(f"override {key}: unknown parameter {name!r}")
    if code:
        entry = entry.get(code)
        if not isinstance(entry, dict) or "value" not in entry:
            raise ConfigurationError(f"override {key}: {name!r} has no entry {code!r}")
    elif "value" not in entry:
        raise ConfigurationError(
            f"override {key}: {name!r} is a table keyed by code; override '{name}.<code>'"
        )
    if isinstance(entry["value"], list):
        raise ConfigurationError(f"override {key}: a distribution cannot be overridden")
    entry["value"] = float(value)


# ---------------------------------------------------------------------------------------------
# Kinetics shared by the model and the calibration
# ---------------------------------------------------------------------------------------------
def il2_cd4_kernel(params: ModelParameters, tau: FloatArray) -> FloatArray:
    """CD4 gain per unit of persistent gain, ``tau`` days after a cycle's first IL-2 day.

    ``(1 - exp(-tau / tau_p)) + ratio * phi(tau)`` for ``tau > 0`` (0 before), where ``phi`` is a
    difference of exponentials scaled to peak at 1.
    """
    t = np.maximum(np.asarray(tau, dtype=np.float64), 0.0)
    tp = params.il2_cd4_persistent_time_constant.value
    tr = params.il2_cd4_transient_rise_time_constant.value
    td = params.il2_cd4_transient_decay_time_constant.value
    peak = math.log(td / tr) * tr * td / (td - tr)
    height = math.exp(-peak / td) - math.exp(-peak / tr)
    persistent = 1.0 - np.exp(-t / tp)
    transient = (np.exp(-t / td) - np.exp(-t / tr)) / height
    out: FloatArray = np.where(
        t > 0, persistent + params.il2_cd4_transient_ratio.value * transient, 0.0
    )
    return out


def il2_hiv_rna_kernel(params: ModelParameters, tau: FloatArray, length: int) -> FloatArray:
    """Fraction of the peak IL-2 HIV RNA rise, ``tau`` days after a cycle's first IL-2 day.

    Rises linearly over the ``length`` IL-2 days to 1 on the last one, then decays exponentially.
    """
    t = np.asarray(tau, dtype=np.float64)
    last = max(length, 1) - 1.0
    rising = (t + 1.0) / (last + 1.0)
    decay = np.exp(-np.maximum(t - last, 0.0) / params.il2_hiv_rna_decay_time_constant.value)
    out: FloatArray = np.where(t < 0, 0.0, np.where(t <= last, rising, decay))
    return out


@dataclass(frozen=True)
class TreatmentCycle:
    """The dose days of one cycle: a treatment's cycle with the treatments anchored to it."""

    anchor: str
    number: int
    doses: tuple[DoseDay, ...]

    @property
    def key(self) -> tuple[str, int]:
        """``(anchor treatment, cycle number)``."""
        return (self.anchor, self.number)

    @property
    def first_day(self) -> int:
        """Study day of the cycle's first dose of any treatment."""
        return self.doses[0].study_day

    def days(self, treatment: str) -> tuple[int, ...]:
        """Study days on which ``treatment`` is planned in this cycle."""
        return tuple(d.study_day for d in self.doses if d.treatment == treatment)


def treatment_cycles(protocol: Protocol, calendar: Calendar) -> tuple[TreatmentCycle, ...]:
    """Group a calendar's dose days into cycles (anchored treatments join their anchor's cycle)."""
    groups: dict[tuple[str, int], list[DoseDay]] = {}
    for dose in calendar.doses:
        treatment = protocol.treatments[dose.treatment]
        anchor = treatment.anchor or dose.treatment
        groups.setdefault((anchor, dose.cycle), []).append(dose)
    cycles = [
        TreatmentCycle(anchor, number, tuple(sorted(doses, key=lambda d: d.study_day)))
        for (anchor, number), doses in groups.items()
    ]
    cycles.sort(key=lambda c: (c.first_day, c.anchor))
    return tuple(cycles)


# ---------------------------------------------------------------------------------------------
# Calibration
# ---------------------------------------------------------------------------------------------
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
        self._cumulative: dict[int | None, tuple[FloatArray, FloatArray]] = {}
        self._first_days: dict[str, list[tuple[float, int | None]]] = {}
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
        rho = p.cd4_setpoint_correlation.value
        setpoint = p.hiv_rna_setpoint_mean.value + p.hiv_rna_setpoint_sd.value * a
        log_cd4 = math.log(p.cd4_median.value) + p.cd4_log_sd.value * (
            rho * a + math.sqrt(1.0 - rho * rho) * b
        )
        decline = (
            p.cd4_decline_per_year.value
            + p.cd4_decline_per_log10_rna.value * (setpoint - 4.0)
            + p.cd4_decline_sd.value * c
        )
        weight = weight * self._eligible(log_cd4)
        weight = weight / weight.sum()
        cd4 = np.maximum(
            np.exp(log_cd4)[:, None] - decline[:, None] * self.days[None, :] / DAYS_PER_YEAR,
            p.cd4_floor.value,
        )
        slope = p.event_log_hazard_per_100_cd4.value
        hazard = np.exp(slope * (p.event_reference_cd4.value - cd4) / 100.0) / DAYS_PER_YEAR
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

    def _first_il2_days(self, arm: str) -> list[tuple[float, int | None]]:
        """(probability, first IL-2 day) by which cycle is the first one started."""
        if arm in self._first_days:
            return self._first_days[arm]
        calendar = participant_calendar(self.protocol, arm, self.protocol.study.accrual_start)
        starts = [
            c.days(IL2_TREATMENT)[0]
            for c in treatment_cycles(self.protocol, calendar)
            if c.days(IL2_TREATMENT)
        ]
        skip = self.params.cycle_not_started_probability.value
        out: list[tuple[float, int | None]] = [
            (skip**k * (1.0 - skip), day) for k, day in enumerate(starts)
        ]
        out.append((skip ** len(starts), None))
        self._first_days[arm] = out
        return out

    def _split(self, first_il2: int | None) -> tuple[FloatArray, FloatArray]:
        if first_il2 not in self._cumulative:
            exposed = np.zeros_like(self.days) if first_il2 is None else self.days >= first_il2
            before = np.cumsum(self.hazard * (1.0 - exposed), axis=1)
            after = np.cumsum(self.hazard * exposed, axis=1)
            self._cumulative[first_il2] = (before, after)
        return self._cumulative[first_il2]

    def first_event(self, arm: str, rate: float, ratio: float) -> FloatArray:
        """P(first event by day d), population average, ignoring dropout."""
        scenarios = self._first_il2_days(arm)
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
        control = [a for a in targets if self._first_il2_days(a)[0][1] is None]
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
