"""Parameters of the STALWART participant model: loading and validation.

Every number the simulation model (:mod:`stalwart.simulate.equations` and the simulators built on
it) uses lives in ``parameters.toml`` next to this module, each as ``{ value, unit, source }``.
:func:`load_parameters` reads and validates that file into :class:`ModelParameters`; a key the
model does not know, a value out of range or a missing unit or source raises
:class:`~stalwart.errors.ConfigurationError` naming the key. Overrides such as
``{"cd4_median": 600, "dropout_rate_per_year.IL2": 0.1}`` replace values before validation.

Three groups of values are computed from published STALWART results by
:func:`stalwart.simulate.calibration.calibrate` (the ``target_*`` tables of the file, read by
nothing else); that module says how.
"""

from __future__ import annotations

import hashlib
import math
import tomllib
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import pydantic
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from stalwart.errors import ConfigurationError

__all__ = [
    "Distribution",
    "ModelParameters",
    "Parameter",
    "default_parameters_path",
    "load_parameters",
    "overridable_keys",
    "override_parameters",
]


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
    il2_excess_hazard_window_days: NonNegative
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
