"""The shipped posterior's report: every published figure inside its 95% predictive interval,
the held-out checks beside their published intervals, and the checks run on the
shipped sample."""

from __future__ import annotations

import numpy as np
import pytest

from stalwart.protocol.load import load_protocol
from stalwart.simulate.parameters import load_parameters
from stalwart.simulate.posterior import Posterior, load_posterior_sample, load_priors
from stalwart.simulate.posterior_checks import (
    EXTENSION_HR,
    VANGUARD,
    held_out_checks,
    predictive_intervals,
    shipped_report,
)


@pytest.fixture(scope="module")
def report() -> dict:
    return shipped_report()


def test_published_figures_fall_inside_the_predictive_intervals(report) -> None:
    intervals = report["predictive_intervals"]
    assert set(intervals) == {
        "events treated",
        "events control",
        "CD4 difference IL2",
        "CD4 difference IL2ART",
        "completed NOTHER",
        "completed IL2",
        "completed IL2ART",
    }
    for name, row in intervals.items():
        assert row["q025"] <= row["published"] <= row["q975"], name
        assert row["inside"], name


def test_held_out_checks_are_shown_with_their_published_intervals(report) -> None:
    vanguard = report["held_out"]["uk_vanguard_cd4_auc_difference"]
    assert (vanguard["estimate"], vanguard["ci_low"], vanguard["ci_high"]) == (116, 51, 181)
    assert vanguard["model_predictive"]["inside"]
    extension = report["held_out"]["stalwart_extension_hazard_ratio"]
    assert (extension["estimate"], extension["ci_low"], extension["ci_high"]) == (1.45, 0.38, 5.45)
    assert extension["inside_published_ci"]
    assert VANGUARD["estimate"] == 116.0 and EXTENSION_HR["estimate"] == 1.45
    # both as predictive intervals of the published estimate, computed from posterior draws
    assert extension["model_predictive"]["inside"]
    assert extension["model_predictive"]["q025"] < 1.45 < extension["model_predictive"]["q975"]
    assert vanguard["dose_matched_7_5_miu"]["model_predictive"]["inside"]
    # reported as it is: the model's expected Vanguard gain sits well above the published one
    assert vanguard["model_expected"]["median"] > vanguard["estimate"]


def test_the_checks_run_on_the_shipped_sample(report) -> None:
    settings = report["settings"]
    posterior = Posterior(load_priors(), load_parameters(), load_protocol().protocol)
    names, flat = load_posterior_sample()
    rng = np.random.default_rng(settings["seed"])
    pick = rng.choice(len(flat), min(settings["checks"], len(flat)), False)[:40]
    sample = [dict(zip(names, flat[i], strict=True)) for i in pick]
    # the first 40 of the report's draws: the checks' code gives finite, ordered intervals
    intervals = predictive_intervals(posterior, sample)
    for row in intervals.values():
        assert row["q025"] <= row["median"] <= row["q975"]
    held = held_out_checks(posterior, sample)
    gains = held["uk_vanguard_cd4_auc_difference"]["model_expected"]
    assert 20 < gains["median"] < 400
    extension = held["stalwart_extension_hazard_ratio"]
    assert extension["model_hazard_ratio"]["median"] == 1.0
    # the prediction of the published estimate carries the extension's own sampling error: its
    # log-HR standard error from the published interval, (ln 5.45 - ln 0.38) / 3.92
    assert extension["sampling_se_log_hr"] == pytest.approx(0.6796, abs=1e-3)
    predictive = extension["model_predictive"]
    assert predictive["q025"] < 0.5 < 2.0 < predictive["q975"]
    assert predictive["published"] == 1.45
    vanguard = held["uk_vanguard_cd4_auc_difference"]
    matched = vanguard["dose_matched_7_5_miu"]
    assert matched["sampling_se"] == pytest.approx(128.4 / 3.0902, rel=1e-3)  # p 0.002, two-sided
    assert vanguard["sampling_se"] == pytest.approx(130.0 / 3.92, rel=1e-3)
