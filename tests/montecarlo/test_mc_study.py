"""``stalwart simulate``: oc.json, honesty against the published trial, type I error, bad input.

Honesty: the calibrated model's 95% intervals (2.5-97.5% quantiles over replicate trials) must
contain each published STALWART figure (267 randomized, 91/89/87 by arm; week-32 CD4 +134 and
+133; 12 vs 1 opportunistic events or deaths; HR 5.84). Type I error: under the null scenario
(no IL-2 effect) each CD4 test rejects at a rate within 3 Monte Carlo standard errors of alpha;
with the published event rate the log-rank test is conservative (about 1 event in the control
arm), so it is checked at alpha under a null with a higher event rate, where it is near nominal.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from stalwart.cli import app
from stalwart.montecarlo.study import run_study

runner = CliRunner()
REPLICATES = 1000


@pytest.fixture(scope="module")
def oc(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("oc")
    result = runner.invoke(
        app, ["simulate", "--replicates", str(REPLICATES), "--seed", "11", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "Operating characteristics" in result.output
    return json.loads((out / "oc.json").read_text())


def _row(rows: list[dict[str, Any]], arm: str, method: str) -> dict[str, Any]:
    return next(r for r in rows if r["arm"] == arm and r["method"] == method)


def _contains(dist: dict[str, Any], value: float) -> bool:
    return bool(dist["q025"] <= value <= dist["q975"])


def test_oc_json_has_provenance_and_every_figure(oc: dict[str, Any]) -> None:
    prov = oc["provenance"]
    assert prov["seed"] == 11 and prov["replicates"] == REPLICATES
    assert len(prov["parameters_sha256"]) == 64 and len(prov["protocol_sha256"]) == 64
    assert prov["software_version"] and prov["scenario"]["name"] == "calibrated model"
    alt = oc["alternative"]
    assert alt["replicates"] == REPLICATES and oc["null"]["replicates"] == REPLICATES
    for row in alt["primary"]:
        assert set(row["difference"]) == {"mean", "median", "q025", "q975"}
        assert 0.0 <= row["power"] <= 1.0
    pooled = _row(alt["time_to_event"], "IL2+IL2ART", "cox_efron")
    assert set(pooled["hazard_ratio"]) == {"estimator", "median", "q025", "q975", "not_estimable"}
    assert 0.0 < pooled["hazard_ratio"]["not_estimable"] < 1.0  # no NOTHER event: flagged
    # every replicate with an event has a Firth estimate; those the Cox one leaves out are the
    # largest ratios, so the Firth median over all of them sits above the Cox median
    firth = pooled["hazard_ratio_all"]
    assert firth["estimator"].startswith("Firth-penalized Cox") and firth["covered"] > 0.99
    assert firth["median"] > pooled["hazard_ratio"]["median"]
    assert set(alt["events_by_arm"]["ODDEATH"]) == {"NOTHER", "IL2", "IL2ART"}
    gs = alt["group_sequential"]
    assert len(gs["primary"][0]["efficacy_by_look"]) == 3
    assert gs["design"]["efficacy_critical_z"][0] > gs["design"]["efficacy_critical_z"][-1]
    assert sum(gs["trial"]["stop_efficacy_by_look"]) + sum(gs["trial"]["stop_harm_by_look"]) + gs[
        "trial"
    ]["no_crossing"] == pytest.approx(1.0)
    assert {r["method"] for r in oc["type_I_error"]} >= {"ancova", "ttest", "logrank"}


def test_simulated_intervals_contain_the_published_figures(oc: dict[str, Any]) -> None:
    alt = oc["alternative"]
    assert _contains(alt["randomized"]["total"], 267)
    for arm, n in {"NOTHER": 91, "IL2": 89, "IL2ART": 87}.items():
        assert _contains(alt["randomized"]["by_arm"][arm], n), arm
    assert _contains(_row(alt["primary"], "IL2", "ancova")["difference"], 134)
    assert _contains(_row(alt["primary"], "IL2ART", "ancova")["difference"], 133)
    assert _contains(_row(alt["primary"], "IL2", "ttest")["difference"], 134)
    pooled = _row(alt["time_to_event"], "IL2+IL2ART", "cox_efron")
    assert _contains(pooled["events"]["treated"], 12)
    assert _contains(pooled["events"]["control"], 1)
    assert _contains(pooled["hazard_ratio"], 5.84)


def test_type_one_error_of_the_cd4_tests_is_alpha(oc: dict[str, Any]) -> None:
    alpha = oc["conventions"]["alpha"]
    se = math.sqrt(alpha * (1 - alpha) / REPLICATES)
    cd4 = [r for r in oc["type_I_error"] if r["endpoint"] == "CD4"]
    assert len(cd4) == 6  # 2 comparisons x (ANCOVA, Welch, group-sequential ANCOVA)
    for row in cd4:
        assert abs(row["type_I_error"] - alpha) <= 3 * se, row
    null_diff = _row(oc["null"]["primary"], "IL2", "ancova")["difference"]
    assert abs(null_diff["mean"]) < 3.0  # cells/mm3; the alternative's is about 134
    # few control events: the log-rank test can only be conservative here
    logrank = next(r for r in oc["type_I_error"] if r["method"] == "logrank")
    assert logrank["type_I_error"] <= alpha + 3 * se


def test_logrank_and_cox_type_one_error_with_many_events(tmp_path: Path) -> None:
    scenario = tmp_path / "eventful.toml"
    scenario.write_text("[scenario]\nevent_rate_at_reference_cd4 = 0.15\n")
    oc = run_study(tmp_path, replicates=REPLICATES, seed=12, scenario=scenario).oc
    alpha = oc["conventions"]["alpha"]
    se = math.sqrt(alpha * (1 - alpha) / REPLICATES)
    for row in oc["type_I_error"]:
        if row["endpoint"] == "ODDEATH":
            assert row["not_estimable"] < 0.01
            assert abs(row["type_I_error"] - alpha) <= 3 * se, row


def test_a_sweep_writes_a_power_curve_and_figures(tmp_path: Path) -> None:
    scenario = tmp_path / "sweep.toml"
    scenario.write_text(
        'name = "size"\n[sweep]\nparameter = "sample_size"\nvalues = [45, 267]\nreplicates = 200\n'
        "[group_sequential]\ninformation_rates = [0.5, 1.0]\n"
    )
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "simulate",
            "--replicates",
            "100",
            "--seed",
            "2",
            "--out",
            str(out),
            "--scenario",
            str(scenario),
        ],
    )
    assert result.exit_code == 0, result.output
    oc = json.loads((out / "oc.json").read_text())
    curve = oc["power_curve"]
    assert curve["parameter"] == "sample_size" and curve["values"] == [45, 267]
    power = {
        r["value"]: r["power"]
        for r in curve["rows"]
        if r["arm"] == "IL2" and r["method"] == "ancova"
    }
    assert power[45] < power[267]
    assert {r["replicates"] for r in curve["rows"]} == {200}
    assert len(oc["alternative"]["group_sequential"]["harm"]["harm_by_look"]) == 2
    assert (out / "power_curve.svg").read_text().lstrip().startswith("<?xml")
    assert (out / "power_curve.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--replicates", "-5"], "--replicates must be a whole number >= 1"),
        (["--seed", "-1"], "--seed must be"),
        (["--executor", "threads"], "unknown executor 'threads'"),
        (["--executor", "dask", "--scheduler", "tcp://127.0.0.1:9"], "cannot reach the Dask"),
    ],
)
def test_bad_input_is_a_clear_error_and_exit_1(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = runner.invoke(app, ["simulate", "--out", str(tmp_path / "o"), *args])
    assert result.exit_code == 1, result.output
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "o" / "oc.json").exists()


def test_a_scenario_with_an_unknown_parameter_exits_1(tmp_path: Path) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text("[scenario]\nil2_hazard_ratio = 2.0\n")
    result = runner.invoke(app, ["simulate", "--scenario", str(scenario), "--out", str(tmp_path)])
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "unknown name 'il2_hazard_ratio'" in text and "il2_event_hazard_ratio" in text


def test_help_has_an_example_and_the_readme_lists_the_command() -> None:
    result = runner.invoke(app, ["simulate", "--help"])
    assert result.exit_code == 0 and "Example: stalwart simulate" in result.output
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert "stalwart simulate" in readme


def test_simulate_harm_course_is_recorded_and_a_bad_one_refused(tmp_path: Path) -> None:
    out = tmp_path / "harm"
    args = ["simulate", "--replicates", "100", "--seed", "3", "--out", str(out)]
    result = runner.invoke(app, [*args, "--harm", "cycles"])
    assert result.exit_code == 0, result.output
    oc = json.loads((out / "oc.json").read_text())
    scenario = oc["provenance"]["scenario"]
    assert scenario["name"].endswith("IL-2 harm: cycles")
    assert scenario["overrides"]["il2_excess_hazard_window_days"] == 28.0
    bad = runner.invoke(app, [*args, "--harm", "sometimes", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 1 and "not a harm scenario" in bad.output  # as a bad scenario file
    assert not (tmp_path / "bad").exists()


def test_uncertainty_posterior_writes_assurance_beside_power(tmp_path: Path) -> None:
    out = tmp_path / "assured"
    args = ["simulate", "--replicates", "300", "--seed", "2", "--out", str(out)]
    result = runner.invoke(app, [*args, "--uncertainty", "posterior", "--harm", "none"])
    assert result.exit_code == 0, result.output
    assert "Assurance" in result.output and "over the posterior" in result.output
    assert "DSMB harm boundary (calibrated" in result.output and "nominal 0.025" in result.output
    oc = json.loads((out / "oc.json").read_text())
    assert oc["provenance"]["uncertainty"]["draws"] >= 2000
    for row in [*oc["alternative"]["primary"], *oc["alternative"]["time_to_event"]]:
        assert 0.0 <= row["assurance"] <= 1.0 and row["assurance_mc_se"] >= 0.0
    harm = oc["alternative"]["group_sequential"]["harm"]
    assert {"crossing", "assurance_crossing", "assurance_crossing_mc_se"} <= set(harm)
    assert oc["assurance"]["alternative"]["replicates"] == 300
    # under "no excess" the pooled Cox test's assurance is its type I error over the posterior
    pooled = _row(oc["alternative"]["time_to_event"], "IL2+IL2ART", "logrank")
    assert pooled["assurance"] < 0.15
    bad = runner.invoke(app, [*args, "--uncertainty", "maybe", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 1 and "--uncertainty must be one of fixed, posterior" in bad.output


def test_a_sweep_under_the_posterior_has_assurance_in_the_curve(tmp_path: Path) -> None:
    scenario = tmp_path / "sweep.toml"
    scenario.write_text(
        'name = "size"\n[sweep]\nparameter = "sample_size"\nvalues = [45, 267]\nreplicates = 200\n'
    )
    out = tmp_path / "out"
    args = ["simulate", "--replicates", "100", "--seed", "2", "--out", str(out)]
    result = runner.invoke(app, [*args, "--scenario", str(scenario), "--uncertainty", "posterior"])
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "oc.json").read_text())["power_curve"]["rows"]
    assured = {
        r["value"]: r["assurance"] for r in rows if r["arm"] == "IL2" and r["method"] == "ancova"
    }
    assert assured[45] < assured[267] and all(0 <= a <= 1 for a in assured.values())
    assert (out / "power_curve.svg").read_text().count("assurance") >= 1
