"""Scenario files: overrides, null, sweep and looks are validated before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from stalwart.errors import ConfigurationError
from stalwart.montecarlo.scenarios import (
    DEFAULT_LOOKS,
    HARM_SCENARIOS,
    NULL_OVERRIDES,
    ScenarioFile,
    load_scenario_file,
    parse_scenario,
    with_harm,
)
from stalwart.protocol.load import load_protocol
from stalwart.protocol.schema import Protocol
from stalwart.simulate.parameters import ModelParameters, load_parameters
from stalwart.simulate.vectorized import simulate_replicates


@pytest.fixture(scope="module")
def protocol() -> Protocol:
    return load_protocol().protocol


@pytest.fixture(scope="module")
def params() -> ModelParameters:
    return load_parameters()


FULL = """
name = "bigger, fewer dropouts"
[scenario]
sample_size = 400
allocation_ratio = { NOTHER = 1, IL2 = 2, IL2ART = 2 }
block_sizes = [5, 10]
cycles = 4
il2_event_hazard_ratio = 3.0
event_rate_at_reference_cd4 = 0.01
dropout_rate_per_year.IL2 = 0.03
"dropout_rate_per_year.IL2ART" = 0.04

[sweep]
parameter = "sample_size"
values = [90, 267, 600]
replicates = 300

[group_sequential]
information_rates = [0.4, 1.0]
spending = "pocock"
harm_alpha = 0.05
"""


def test_a_full_file_is_read_with_dotted_and_nested_keys(
    tmp_path: Path, protocol: Protocol, params: ModelParameters
) -> None:
    path = tmp_path / "s.toml"
    path.write_text(FULL)
    s = load_scenario_file(path, protocol, params)
    assert s.name == "bigger, fewer dropouts"
    assert s.overrides["dropout_rate_per_year.IL2"] == 0.03
    assert s.overrides["dropout_rate_per_year.IL2ART"] == 0.04
    assert s.overrides["allocation_ratio"] == {"NOTHER": 1, "IL2": 2, "IL2ART": 2}
    assert s.null == NULL_OVERRIDES
    assert s.null_overrides["sample_size"] == 400
    assert s.null_overrides["il2_event_hazard_ratio"] == 1.0
    assert s.sweep is not None and s.sweep.values == (90, 267, 600) and s.sweep.replicates == 300
    assert [o["sample_size"] for _, o in s.sweep_overrides()] == [90, 267, 600]
    assert s.looks.information_rates == (0.4, 1.0) and s.looks.spending == "pocock"
    assert s.sha256 is not None and len(s.sha256) == 64


def test_defaults_without_file_sections(protocol: Protocol, params: ModelParameters) -> None:
    s = parse_scenario({}, protocol, params)
    assert s.overrides == {} and s.null == NULL_OVERRIDES and s.looks == DEFAULT_LOOKS


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"scenario": {"sample_sise": 90}}, "unknown name 'sample_sise'.*did you mean sample_size"),
        ({"scenario": {"sample_size": -5}}, "positive whole number"),
        ({"scenario": {"dropout_rate_per_year": {"XX": 0.1}}}, "dropout_rate_per_year.XX"),
        ({"scenario": {"allocation_ratio": {"PLACEBO": 1}}}, "unknown arm 'PLACEBO'"),
        ({"senario": {}}, "unknown section.*did you mean 'scenario'"),
        ({"null": {"il2_event_hazard_ratio": "one"}}, "must be a number"),
        ({"sweep": {"parameter": "sample_size"}}, "values"),
        ({"sweep": {"parameter": "sample_size", "values": [90, 0]}}, "positive whole number"),
        ({"sweep": {"parameter": "nope", "values": [1]}}, "unknown name 'nope'"),
        ({"group_sequential": {"information_rates": [0.5, 0.9]}}, "ending with 1.0"),
        ({"group_sequential": {"information_rates": [0.7, 0.5, 1.0]}}, "increasing"),
        ({"group_sequential": {"spending": "haybittle"}}, "spending"),
        ({"group_sequential": {"looks": 3}}, "unknown option"),
    ],
)
def test_bad_scenarios_are_clear_errors(
    data: dict, message: str, protocol: Protocol, params: ModelParameters
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_scenario(data, protocol, params)


def test_file_errors_name_the_file(
    tmp_path: Path, protocol: Protocol, params: ModelParameters
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[scenario]\nsample_size = \n")
    with pytest.raises(ConfigurationError, match=r"bad\.toml is not valid TOML"):
        load_scenario_file(bad, protocol, params)
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_scenario_file(tmp_path / "missing.toml", protocol, params)
    bad.write_text("[scenario]\nevent_rate = 1\n")
    with pytest.raises(ConfigurationError, match=r"bad\.toml: .*unknown name 'event_rate'"):
        load_scenario_file(bad, protocol, params)


def test_harm_courses_are_named_scenarios(protocol: Protocol, params: ModelParameters) -> None:
    base = ScenarioFile(overrides={"sample_size": 300})
    cycles = with_harm(base, "cycles")
    assert cycles.overrides == {"sample_size": 300, "il2_excess_hazard_window_days": 28.0}
    assert cycles.null_overrides["il2_event_hazard_ratio"] == 1.0
    assert cycles.name.endswith("IL-2 harm: cycles")
    assert with_harm(base, "none").overrides["il2_event_hazard_ratio"] == 1.0
    assert with_harm(base, None) is base
    with pytest.raises(ConfigurationError, match="'some' is not a harm scenario; choose one of"):
        with_harm(base, "some")
    for course in HARM_SCENARIOS.values():  # every course is valid for the model
        parse_scenario({"scenario": course}, protocol, params)


def test_harm_courses_order_the_il2_arms_events_and_leave_control_alone(
    protocol: Protocol, params: ModelParameters
) -> None:
    """Same seed, same control arm; IL-2 arms: none < during cycles < persistent."""
    events = {}
    for name, course in HARM_SCENARIOS.items():
        data = simulate_replicates(
            protocol, params, 40, 5, scenario={"sample_size": 600, **course}, visits=["WK32"]
        )
        _, event = data.time_to_event()
        events[name] = {
            arm: int(event[data.arm == k].sum())
            for k, arm in enumerate(("NOTHER", "IL2", "IL2ART"))
        }
    assert events["none"]["NOTHER"] == events["cycles"]["NOTHER"] == events["persistent"]["NOTHER"]
    for arm in ("IL2", "IL2ART"):
        assert events["none"][arm] < events["cycles"][arm] < events["persistent"][arm], events
