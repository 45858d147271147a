"""The scenario file of a Monte Carlo study: what changes, what "no effect" means, what is swept.

A TOML file with optional parts; every name is checked against the protocol and the model
(:func:`stalwart.simulate.vectorized.apply_scenario`) before anything runs::

    name = "larger trial, fewer dropouts"

    [scenario]                      # design keys and model parameters by key
    sample_size = 400
    allocation_ratio = { NOTHER = 1, IL2 = 2, IL2ART = 2 }
    cycles = 4
    il2_event_hazard_ratio = 3.0    # effect sizes: il2_cd4_persistent_gain_per_cycle, this
    event_rate_at_reference_cd4 = 0.01
    dropout_rate_per_year.IL2 = 0.03   # a dotted key: the IL2 entry of a table

    [null]                          # "no treatment effect" (default: NULL_OVERRIDES)
    il2_cd4_persistent_gain_per_cycle = 0.0
    il2_event_hazard_ratio = 1.0

    [sweep]                         # a power curve over one scenario key
    parameter = "sample_size"
    values = [90, 150, 267, 400, 600]
    replicates = 2000               # per value (default: the study's replicates)

    [group_sequential]              # interim looks (default: DEFAULT_LOOKS)
    information_rates = [0.5, 0.75, 1.0]
    spending = "obrien-fleming"     # efficacy, two-sided at the plan's alpha
    harm_alpha = 0.025              # DSMB one-sided harm boundary on the safety log-rank
    harm_spending = "obrien-fleming"
    harm_boundary = "calibrated"    # or "normal" (see LookPlan)

The null scenario is the study's scenario with ``[null]`` applied on top, so it differs from the
alternative only in the treatment effects.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stalwart.analysis.kernels.groupseq import group_sequential_bounds
from stalwart.errors import AnalysisError, ConfigurationError
from stalwart.protocol.schema import Protocol
from stalwart.simulate.parameters import ModelParameters
from stalwart.simulate.vectorized import apply_scenario

__all__ = [
    "DEFAULT_LOOKS",
    "HARM_BOUNDARIES",
    "HARM_SCENARIOS",
    "NULL_OVERRIDES",
    "LookPlan",
    "ScenarioFile",
    "Sweep",
    "load_scenario_file",
    "parse_scenario",
    "with_harm",
]

NULL_OVERRIDES: dict[str, Any] = {
    "il2_cd4_persistent_gain_per_cycle": 0.0,
    "il2_event_hazard_ratio": 1.0,
}
"""No treatment effect: IL-2 adds no CD4 cells and does not change the event hazard."""

HARM_SCENARIOS: dict[str, dict[str, Any]] = {
    "none": {"il2_event_hazard_ratio": 1.0},
    "cycles": {"il2_excess_hazard_window_days": 28.0},
    "persistent": {"il2_excess_hazard_window_days": 36525.0},
}
"""Named time courses of IL-2's excess event hazard (documented in the parameters file): none;
during each cycle and 28 days after it; from the first dose to the end of follow-up. Each sets
only the course: the hazard ratio is the model's (or the scenario file's) unless it is "none"."""

_SECTIONS = ("name", "description", "scenario", "null", "sweep", "group_sequential")
_SPENDING = ("obrien-fleming", "pocock")


HARM_BOUNDARIES = ("calibrated", "normal")
"""How the DSMB harm boundary's z values are set: by simulation under no excess (default) or by
normal theory (Lan-DeMets), see :class:`LookPlan`."""


@dataclass(frozen=True)
class LookPlan:
    """Interim looks: information fractions, efficacy spending, the DSMB harm boundary.

    The harm boundary spends ``harm_alpha`` over the looks by ``harm_spending``. With
    ``harm_boundary = "normal"`` its z values are Lan-DeMets' (normal theory); with
    ``"calibrated"`` (the default) they are set by simulation under the scenario with no IL-2
    excess hazard (:mod:`~stalwart.montecarlo.harm_calibration`), because with a few safety
    events and 2:1 allocation the log-rank z is discrete and skewed and the normal-theory
    boundary crosses at about half its nominal level. ``harm_critical_z`` holds the calibrated
    values once the study has computed them (``None`` until then, and for ``"normal"``).
    """

    information_rates: tuple[float, ...] = (0.5, 0.75, 1.0)
    spending: str = "obrien-fleming"
    harm_alpha: float = 0.025
    harm_spending: str = "obrien-fleming"
    harm_boundary: str = "calibrated"
    harm_critical_z: tuple[float, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain values for oc.json."""
        return {
            "information_rates": list(self.information_rates),
            "spending": self.spending,
            "harm_alpha": self.harm_alpha,
            "harm_spending": self.harm_spending,
            "harm_boundary": self.harm_boundary,
        }


DEFAULT_LOOKS = LookPlan()
"""Looks at half and three quarters of the week-32 data and the final analysis, O'Brien-Fleming."""


@dataclass(frozen=True)
class Sweep:
    """One scenario key and the values it takes for a power curve."""

    parameter: str
    values: tuple[Any, ...]
    replicates: int | None = None


@dataclass(frozen=True)
class ScenarioFile:
    """A parsed, validated scenario file (or the defaults when no file is given)."""

    name: str = "calibrated model"
    description: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)
    null: dict[str, Any] = field(default_factory=lambda: dict(NULL_OVERRIDES))
    sweep: Sweep | None = None
    looks: LookPlan = DEFAULT_LOOKS
    source: str | None = None
    sha256: str | None = None

    @property
    def null_overrides(self) -> dict[str, Any]:
        """The null scenario: the study's overrides with ``null`` on top."""
        return {**self.overrides, **self.null}

    def sweep_overrides(self) -> list[tuple[Any, dict[str, Any]]]:
        """(value, overrides) for each value of the sweep; empty without one."""
        if self.sweep is None:
            return []
        return [(v, {**self.overrides, self.sweep.parameter: v}) for v in self.sweep.values]

    def to_dict(self) -> dict[str, Any]:
        """Plain values for oc.json's provenance."""
        return {
            "name": self.name,
            "file": self.source,
            "file_sha256": self.sha256,
            "overrides": self.overrides,
            "null": self.null,
            "sweep": None
            if self.sweep is None
            else {
                "parameter": self.sweep.parameter,
                "values": list(self.sweep.values),
                "replicates": self.sweep.replicates,
            },
        }


def load_scenario_file(path: Path, protocol: Protocol, params: ModelParameters) -> ScenarioFile:
    """Read and validate a scenario file against the protocol and the model.

    Raises
    ------
    ConfigurationError
        The file is missing or not TOML, or names an unknown section, parameter, arm or option,
        or a value the design or model rejects; the message names the file and what to fix.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read the scenario file {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"scenario file {path} is not valid TOML: {exc}") from None
    try:
        scenario = parse_scenario(data, protocol, params)
    except ConfigurationError as exc:
        raise ConfigurationError(f"scenario file {path}: {exc}") from None
    return ScenarioFile(
        name=scenario.name,
        description=scenario.description,
        overrides=scenario.overrides,
        null=scenario.null,
        sweep=scenario.sweep,
        looks=scenario.looks,
        source=str(path),
        sha256=hashlib.sha256(raw).hexdigest(),
    )


def parse_scenario(
    data: Mapping[str, Any], protocol: Protocol, params: ModelParameters
) -> ScenarioFile:
    """A scenario from its TOML content, every override applied once to check it."""
    unknown = [k for k in data if k not in _SECTIONS]
    if unknown:
        raise ConfigurationError(
            f"unknown section(s) {unknown}{_hint(unknown[0], _SECTIONS)}; "
            f"allowed: {', '.join(_SECTIONS)}"
        )
    overrides = _flatten(_table(data, "scenario"))
    null = _flatten(_table(data, "null")) if "null" in data else dict(NULL_OVERRIDES)
    apply_scenario(protocol, params, overrides)
    apply_scenario(protocol, params, {**overrides, **null})
    sweep = _sweep(_table(data, "sweep"), overrides, protocol, params) if "sweep" in data else None
    looks = (
        _looks(_table(data, "group_sequential")) if "group_sequential" in data else DEFAULT_LOOKS
    )
    name = data.get("name", "scenario")
    if not isinstance(name, str):
        raise ConfigurationError(f"name must be text, got {name!r}")
    return ScenarioFile(
        name=name,
        description=str(data.get("description", "")),
        overrides=overrides,
        null=null,
        sweep=sweep,
        looks=looks,
    )


def _hint(word: str, choices: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _table(data: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigurationError(f"[{key}] must be a table of names and values")
    return value


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested TOML tables as dotted keys (``dropout_rate_per_year.IL2``); allocation_ratio kept."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and name != "allocation_ratio":
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _sweep(
    table: Mapping[str, Any],
    overrides: Mapping[str, Any],
    protocol: Protocol,
    params: ModelParameters,
) -> Sweep:
    allowed = ("parameter", "values", "replicates")
    unknown = [k for k in table if k not in allowed]
    if unknown:
        raise ConfigurationError(f"[sweep]: unknown option(s) {unknown}; allowed: {allowed}")
    parameter = table.get("parameter")
    values = table.get("values")
    if not isinstance(parameter, str):
        raise ConfigurationError('[sweep] parameter: name the key to vary, e.g. "sample_size"')
    if not isinstance(values, list) or not values:
        raise ConfigurationError("[sweep] values: give a non-empty list, e.g. [90, 267, 600]")
    for value in values:
        apply_scenario(protocol, params, {**overrides, parameter: value})
    replicates = table.get("replicates")
    if replicates is not None and (
        isinstance(replicates, bool) or not isinstance(replicates, int) or replicates < 1
    ):
        raise ConfigurationError(f"[sweep] replicates: a positive whole number, got {replicates!r}")
    return Sweep(parameter=parameter, values=tuple(values), replicates=replicates)


def _looks(table: Mapping[str, Any]) -> LookPlan:
    allowed = ("information_rates", "spending", "harm_alpha", "harm_spending", "harm_boundary")
    unknown = [k for k in table if k not in allowed]
    if unknown:
        raise ConfigurationError(
            f"[group_sequential]: unknown option(s) {unknown}{_hint(unknown[0], allowed)}; "
            f"allowed: {allowed}"
        )
    plan = LookPlan(
        information_rates=tuple(table.get("information_rates", DEFAULT_LOOKS.information_rates)),
        spending=table.get("spending", DEFAULT_LOOKS.spending),
        harm_alpha=table.get("harm_alpha", DEFAULT_LOOKS.harm_alpha),
        harm_spending=table.get("harm_spending", DEFAULT_LOOKS.harm_spending),
        harm_boundary=table.get("harm_boundary", DEFAULT_LOOKS.harm_boundary),
    )
    if plan.harm_boundary not in HARM_BOUNDARIES:
        raise ConfigurationError(f"[group_sequential] harm_boundary: one of {HARM_BOUNDARIES}")
    for key in ("spending", "harm_spending"):
        if getattr(plan, key) not in _SPENDING:
            raise ConfigurationError(f"[group_sequential] {key}: one of {_SPENDING}")
    if not plan.information_rates or plan.information_rates[-1] != 1.0:
        raise ConfigurationError(
            "[group_sequential] information_rates: increasing fractions ending with 1.0 "
            "(the final analysis), e.g. [0.5, 1.0]"
        )
    try:
        group_sequential_bounds(plan.information_rates, 0.05, sided=2)
        group_sequential_bounds(plan.information_rates, float(plan.harm_alpha), sided=1)
    except (AnalysisError, TypeError, ValueError) as exc:
        raise ConfigurationError(f"[group_sequential]: {exc}") from None
    return plan


def with_harm(scenario: ScenarioFile, harm: str | None) -> ScenarioFile:
    """``scenario`` with a named IL-2 harm course (:data:`HARM_SCENARIOS`) on top; the null
    scenario keeps its own "no effect" values.

    Raises
    ------
    ConfigurationError
        ``harm`` is not a name of :data:`HARM_SCENARIOS`.
    """
    if harm is None:
        return scenario
    if harm not in HARM_SCENARIOS:
        raise ConfigurationError(
            f"--harm {harm!r} is not a harm scenario; choose one of {', '.join(HARM_SCENARIOS)}"
        )
    course = HARM_SCENARIOS[harm]
    return dataclasses.replace(
        scenario,
        name=f"{scenario.name}, IL-2 harm: {harm}",
        overrides={**scenario.overrides, **course},
        null={**course, **scenario.null},
    )
