"""The simulation parameter file: documented values, strict loading, reproducible calibration."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from stalwart.errors import ConfigurationError
from stalwart.protocol.load import load_protocol
from stalwart.simulate.calibration import Calibration, apply_calibration, calibrate
from stalwart.simulate.parameters import (
    ModelParameters,
    Parameter,
    default_parameters_path,
    load_parameters,
)


@pytest.fixture(scope="module")
def params() -> ModelParameters:
    return load_parameters()


@pytest.fixture(scope="module")
def protocol():
    return load_protocol().protocol


@pytest.fixture(scope="module")
def calibration(params, protocol) -> Calibration:
    return calibrate(params, protocol)


def _raw() -> dict:
    return tomllib.loads(default_parameters_path().read_text(encoding="utf-8"))


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.toml"
    path.write_text(text, encoding="utf-8")
    return path


# -- documentation of every value -------------------------------------------------------------
def test_every_parameter_has_value_unit_and_source(params):
    records = params.records()
    assert len(records) > 100
    for key, record in records.items():
        assert record.unit.strip(), key
        assert record.source.strip(), key
        assert record.value is not None, key


def test_every_table_in_the_file_is_a_documented_record():
    """Walk the raw TOML: each leaf table is exactly {value, unit, source}."""
    leaves = 0
    for name, entry in _raw().items():
        tables = [entry] if "value" in entry else list(entry.values())
        for table in tables:
            assert set(table) == {"value", "unit", "source"}, name
            assert isinstance(table["unit"], str) and table["unit"].strip(), name
            assert isinstance(table["source"], str) and table["source"].strip(), name
            leaves += 1
    assert leaves == len(load_parameters().records())


def test_calibrated_values_say_how_they_were_derived(params):
    calculated = [k for k, r in params.records().items() if r.source.startswith("[CALC]")]
    assert {
        "il2_cd4_persistent_gain_per_cycle",
        "event_rate_at_reference_cd4",
        "il2_event_hazard_ratio",
        "dropout_rate_per_year.NOTHER",
        "dropout_rate_per_year.IL2",
        "dropout_rate_per_year.IL2ART",
    } == set(calculated)
    for key in calculated:
        assert "calibrate()" in params.records()[key].source, key


def test_targets_are_the_published_figures(params):
    assert params.target_week32_cd4_difference["IL2"].value == 134
    assert params.target_week32_cd4_difference["IL2ART"].value == 133
    assert params.target_event_proportion["NOTHER"].value == pytest.approx(1 / 91, abs=1e-6)
    assert params.target_event_proportion["IL2"].value == pytest.approx(12 / 176, abs=1e-6)
    assert params.target_completion_proportion["IL2ART"].value == pytest.approx(74 / 87, abs=1e-6)


# -- loading ----------------------------------------------------------------------------------
def test_loading_is_deterministic(params):
    again = load_parameters()
    assert again == params
    assert again.fingerprint() == params.fingerprint()
    assert len(params.fingerprint()) == 64


def test_override_replaces_a_value_and_changes_the_fingerprint(params):
    changed = load_parameters(overrides={"cd4_median": 600, "dropout_rate_per_year.IL2": 0.1})
    assert changed.cd4_median.value == 600.0
    assert changed.dropout_rate_per_year["IL2"].value == 0.1
    assert changed.cd4_median.source == params.cd4_median.source
    assert changed.fingerprint() != params.fingerprint()


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("no_such_parameter", 1.0, "no_such_parameter"),
        ("dropout_rate_per_year.NOARM", 0.1, "NOARM"),
        ("dropout_rate_per_year", 0.1, "dropout_rate_per_year"),
        ("art_ae_grade_distribution", 0.5, "art_ae_grade_distribution"),
        ("cd4_median", "600", "cd4_median"),
        ("cd4_median", True, "cd4_median"),
    ],
)
def test_bad_override_raises_naming_the_key(key, value, named):
    with pytest.raises(ConfigurationError, match=named):
        load_parameters(overrides={key: value})


def test_override_out_of_range_is_refused_naming_the_key():
    with pytest.raises(ConfigurationError, match="missed_visit_probability"):
        load_parameters(overrides={"missed_visit_probability": 1.5})
    with pytest.raises(ConfigurationError, match="il2_event_hazard_ratio"):
        load_parameters(overrides={"il2_event_hazard_ratio": 0.0})


def test_unknown_key_in_the_file_is_refused(tmp_path):
    text = default_parameters_path().read_text(encoding="utf-8")
    text += '\n[bogus_rate]\nvalue = 1.0\nunit = "1/yr"\nsource = "none"\n'
    with pytest.raises(ConfigurationError, match="bogus_rate"):
        load_parameters(_write(tmp_path, text))


def test_missing_source_is_refused(tmp_path):
    text = default_parameters_path().read_text(encoding="utf-8")
    start = text.index("[cd4_floor]")
    end = text.index("\n\n", start)
    block = '[cd4_floor]\nvalue = 20.0\nunit = "cells/mm3"\nsource = ""'
    with pytest.raises(ConfigurationError, match="cd4_floor"):
        load_parameters(_write(tmp_path, text[:start] + block + text[end:]))


def test_grade_distribution_must_sum_to_one(tmp_path):
    text = default_parameters_path().read_text(encoding="utf-8")
    text = text.replace("value = [0.70, 0.25, 0.045, 0.005]", "value = [0.70, 0.25, 0.045, 0.5]")
    with pytest.raises(ConfigurationError, match="art_ae_grade_distribution"):
        load_parameters(_write(tmp_path, text))


def test_cross_checks_name_the_table(tmp_path):
    text = default_parameters_path().read_text(encoding="utf-8")
    start = text.index("[il2_ae_grade_distribution.Rash]")
    end = text.index("\n\n", start)
    with pytest.raises(ConfigurationError, match="il2_ae_grade_distribution"):
        load_parameters(_write(tmp_path, text[:start] + text[end + 2 :]))
    with pytest.raises(ConfigurationError, match="il2_cd4_transient_decay_time_constant"):
        load_parameters(overrides={"il2_cd4_transient_decay_time_constant": 5.0})


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(ConfigurationError, match="not found"):
        load_parameters(tmp_path / "nope.toml")
    with pytest.raises(ConfigurationError, match="TOML"):
        load_parameters(_write(tmp_path, "this is [not toml"))


# -- calibration ------------------------------------------------------------------------------
def test_stored_calibrated_values_are_reproduced(params, calibration):
    """The [CALC] values in the file are calibrate()'s output, rounded."""
    assert params.il2_cd4_persistent_gain_per_cycle.value == pytest.approx(
        calibration.il2_cd4_persistent_gain_per_cycle, rel=2e-3
    )
    assert params.event_rate_at_reference_cd4.value == pytest.approx(
        calibration.event_rate_at_reference_cd4, rel=2e-3
    )
    assert params.il2_event_hazard_ratio.value == pytest.approx(
        calibration.il2_event_hazard_ratio, rel=2e-3
    )
    for arm, mu in calibration.dropout_rate_per_year.items():
        assert params.dropout_rate_per_year[arm].value == pytest.approx(mu, rel=2e-3), arm


def test_calibration_hits_its_targets(params, calibration):
    diff = calibration.expected_week32_cd4_difference
    assert diff["IL2"] == pytest.approx(134, abs=1.5)
    assert diff["IL2ART"] == pytest.approx(133, abs=1.5)
    events = calibration.expected_event_proportion
    assert events["NOTHER"] == pytest.approx(1 / 91, abs=1e-5)
    assert (events["IL2"] + events["IL2ART"]) / 2 == pytest.approx(12 / 176, abs=1e-5)
    for arm, target in params.target_completion_proportion.items():
        assert calibration.expected_completion_proportion[arm] == pytest.approx(
            target.value, abs=1e-6
        )
    # IL-2 raises the hazard several-fold; dropout is higher in the IL-2 arms, as in the registry
    assert 3 < calibration.il2_event_hazard_ratio < 15
    mu = calibration.dropout_rate_per_year
    assert mu["NOTHER"] < mu["IL2"] < mu["IL2ART"]


def test_calibration_responds_to_its_inputs(protocol, calibration):
    """A larger CD4 target needs a larger gain; a steeper CD4 hazard slope a different rate."""
    raised = load_parameters().model_copy(
        update={
            "target_week32_cd4_difference": {
                arm: Parameter(value=2 * p.value, unit=p.unit, source=p.source)
                for arm, p in load_parameters().target_week32_cd4_difference.items()
            }
        }
    )
    again = calibrate(raised, protocol, iterations=1)
    assert again.il2_cd4_persistent_gain_per_cycle == pytest.approx(
        2 * calibration.il2_cd4_persistent_gain_per_cycle, rel=1e-9
    )
    fewer_doses = load_parameters(overrides={"administration_taken_probability": 0.5})
    assert calibrate(fewer_doses, protocol, iterations=1).il2_cd4_persistent_gain_per_cycle > (
        1.8 * calibration.il2_cd4_persistent_gain_per_cycle
    )


def test_apply_calibration_round_trips(params, calibration):
    applied = apply_calibration(
        load_parameters(overrides={"il2_event_hazard_ratio": 1.0}), calibration
    )
    assert applied.il2_event_hazard_ratio.value == calibration.il2_event_hazard_ratio
    assert applied.il2_event_hazard_ratio.source == params.il2_event_hazard_ratio.source
    assert (
        applied.dropout_rate_per_year["NOTHER"].value == calibration.dropout_rate_per_year["NOTHER"]
    )
