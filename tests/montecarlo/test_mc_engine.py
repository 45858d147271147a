"""The Monte Carlo engine: the plan's analyses per replicate, blocks, interim looks, stopping."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stalwart.analysis.comparisons import plan_comparisons
from stalwart.analysis.kernels.ancova import ancova
from stalwart.analysis.kernels.cox import cox_ph
from stalwart.analysis.kernels.logrank import logrank_test
from stalwart.analysis.kernels.ttest import welch_ttest
from stalwart.montecarlo.engine import TrialSpec, analyse, run_block
from stalwart.montecarlo.scenarios import DEFAULT_LOOKS
from stalwart.montecarlo.sequential import EFFICACY, HARM, NO_STOP, _stopping, look_days
from stalwart.protocol.load import load_protocol
from stalwart.simulate.parameters import load_parameters


@pytest.fixture(scope="module")
def spec() -> TrialSpec:
    return TrialSpec(load_protocol().protocol, load_parameters(), seed=5)


def test_comparisons_are_the_plans(spec: TrialSpec) -> None:
    labels = [(c.kind, c.endpoint, c.label, c.methods) for c in plan_comparisons(spec.protocol)]
    assert labels == [
        ("primary", "CD4", "IL2 vs NOTHER", ("ancova", "ttest")),
        ("primary", "CD4", "IL2ART vs NOTHER", ("ancova", "ttest")),
        ("time_to_event", "ODDEATH", "IL2+IL2ART vs NOTHER", ("cox_efron", "logrank")),
        ("time_to_event", "ODDEATH", "IL2 vs NOTHER", ("cox_efron", "logrank")),
        ("time_to_event", "ODDEATH", "IL2ART vs NOTHER", ("cox_efron", "logrank")),
    ]


def test_columns_are_the_single_trial_analyses_of_each_replicate(spec: TrialSpec) -> None:
    simulator = spec.simulator()
    data = simulator.simulate(30, spec.seed)
    cols = analyse(data, simulator.protocol)
    y = data.cd4[:, :, data.visit("WK32")]
    time, event = data.time_to_event()
    arms = np.array(data.arms)
    estimable = 0
    for r in range(30):
        ok = np.isfinite(y[r])
        label = arms[data.arm[r]]
        anc = ancova(y[r][ok], label[ok], data.baseline_cd4[r][ok], "IL2", "NOTHER")
        assert cols["CD4 IL2 vs NOTHER ancova|difference"][r] == pytest.approx(anc.difference)
        assert cols["CD4 IL2 vs NOTHER ancova|p_value"][r] == pytest.approx(anc.p_value)
        w = welch_ttest(y[r][ok & (label == "IL2ART")], y[r][ok & (label == "NOTHER")])
        assert cols["CD4 IL2ART vs NOTHER ttest|p_value"][r] == pytest.approx(w.p_value)
        pooled = np.isin(label, ["IL2", "IL2ART"]).astype(float)
        events = (event[r] & (pooled == 1)).sum(), (event[r] & (pooled == 0)).sum()
        assert cols["ODDEATH IL2+IL2ART vs NOTHER|events_treated"][r] == events[0]
        assert cols["ODDEATH events|NOTHER"][r] == events[1]
        lr = logrank_test(time[r], event[r], pooled)
        assert cols["ODDEATH IL2+IL2ART vs NOTHER logrank|p_value"][r] == pytest.approx(lr.p_value)
        hr = cols["ODDEATH IL2+IL2ART vs NOTHER cox_efron|hazard_ratio"][r]
        if min(events) == 0:  # monotone likelihood: flagged, not crashed
            assert math.isnan(hr)
            assert not cols["ODDEATH IL2+IL2ART vs NOTHER cox_efron|estimable"][r]
        else:
            cox = cox_ph(time[r], event[r], pooled.reshape(-1, 1))
            assert hr == pytest.approx(cox.hazard_ratio[0])
            estimable += 1
    assert 0 < estimable < 30


def test_any_split_into_blocks_gives_the_same_columns(spec: TrialSpec) -> None:
    whole = run_block(spec, 0, 250)
    parts = [run_block(spec, 0, 130), run_block(spec, 130, 120)]
    for key, values in whole.items():
        np.testing.assert_array_equal(values, np.concatenate([p[key] for p in parts]), key)


def test_interim_looks_use_the_data_seen_by_the_look_day(spec: TrialSpec) -> None:
    simulator = spec.simulator()
    data = simulator.simulate(20, spec.seed)
    cols = analyse(data, simulator.protocol, DEFAULT_LOOKS)
    rates = DEFAULT_LOOKS.information_rates
    days = look_days(data, rates, 224)
    n = data.arm.shape[1]
    assert days[:, 0] == pytest.approx(data.randomization_day[:, math.ceil(0.5 * n) - 1] + 224)
    wk32 = data.visit("WK32")
    y = data.cd4[:, :, wk32]
    seen = data.randomization_day + data.visit_day[:, :, wk32] <= days[:, :1]
    info = (np.isfinite(y) & seen).sum(axis=1) / np.isfinite(y).sum(axis=1)
    np.testing.assert_allclose(cols["gs|information|1"], info)
    assert 0.4 < info.mean() < 0.6
    time, event = data.time_to_event()
    cut = days[:, 0, None] - data.randomization_day
    np.testing.assert_array_equal(
        cols["gs|safety_events|1"], (event & (time <= cut) & (cut >= 0)).sum(axis=1)
    )
    assert np.all(cols["gs|safety_events|3"] == event.sum(axis=1))
    k = len(rates)
    for key in ("CD4 IL2 vs NOTHER|gs_efficacy_look", "gs|harm_look", "gs|stop_look"):
        assert cols[key].min() >= 0 and cols[key].max() <= k


def test_stopping_takes_the_first_crossing_and_harm_on_ties() -> None:
    efficacy = np.array([0, 2, 1, 3, 0])
    harm = np.array([0, 1, 1, 0, 2])
    look, reason = _stopping(efficacy, harm, 3)
    assert look.tolist() == [3, 1, 1, 3, 2]
    assert reason.tolist() == [NO_STOP, HARM, HARM, EFFICACY, HARM]


DRAWS = (
    (("il2_event_hazard_ratio", 1.0), ("il2_cd4_persistent_gain_per_cycle", 10.0)),
    (("il2_event_hazard_ratio", 4.0), ("il2_cd4_persistent_gain_per_cycle", 80.0)),
    (("il2_event_hazard_ratio", 2.0), ("il2_cd4_persistent_gain_per_cycle", 45.0)),
)


def test_posterior_streams_are_the_same_whatever_the_blocking(spec: TrialSpec) -> None:
    """Each stream of 100 replicates runs at a draw fixed by seed and stream: one block or
    several, every replicate's columns are equal, and equal a fixed run at that draw."""
    from dataclasses import replace

    uncertain = replace(spec, posterior=DRAWS)
    whole = run_block(uncertain, 0, 300)
    parts = [run_block(uncertain, 0, 130), run_block(uncertain, 130, 170)]
    for key, values in whole.items():
        np.testing.assert_array_equal(values, np.concatenate([p[key] for p in parts]), key)
    draws = [uncertain.stream_draw(s) for s in range(3)]
    assert all(d in [dict(x) for x in DRAWS] for d in draws)
    assert uncertain.stream_draw(1) == replace(spec, seed=5, posterior=DRAWS).stream_draw(1)
    for stream, draw in enumerate(draws):
        fixed = run_block(replace(spec, overrides=draw), 100 * stream, 100)
        key = "CD4 IL2 vs NOTHER ancova|difference"
        np.testing.assert_array_equal(whole[key][100 * stream : 100 * (stream + 1)], fixed[key])
    # the scenario's own overrides win over the draw
    pinned = replace(spec, posterior=DRAWS, overrides={"il2_event_hazard_ratio": 1.0})
    assert pinned.with_draw(0).overrides["il2_event_hazard_ratio"] == 1.0


def test_a_harm_only_block_gives_the_full_analysis_harm_columns(spec: TrialSpec) -> None:
    """A calibration run analyses only the harm rule: its columns are the full analysis's own,
    to the bit, at the fixed values and over posterior streams, and nothing else is computed."""
    from dataclasses import replace

    high = replace(spec, overrides={"il2_event_hazard_ratio": 6.0})  # events at every look
    for base in (high, replace(high, posterior=DRAWS)):
        full = run_block(base, 50, 180)
        harm = run_block(replace(base, harm_only=True), 50, 180)
        assert set(harm) == {f"gs|{c}|{k}" for c in ("harm_z", "safety_events") for k in (1, 2, 3)}
        assert np.isfinite(harm["gs|harm_z|3"]).sum() > 100
        for key, values in harm.items():
            np.testing.assert_array_equal(values, full[key], key)
