"""The vectorized replicate simulator: closed forms, agreement with model.py, streams, scenarios.

The agreement tests draw participants per arm with ``simulate_participant`` (as test_model.py
does, without the database) and the same kind of participants with the vectorized engine, and
compare per arm: baseline CD4 and CD4 at every visit (mean, change from baseline, SD at week
32), visit days and missed visits, HIV RNA change from baseline, events, deaths, time to event
and to death after an event, censoring times, completion, withdrawal and loss to follow-up (and
its date), side effects. Each difference must lie within 4 standard errors of Monte Carlo error,
and the week-32 CD4 and event-time distributions must pass a two-sample KS test, so the test
fails if the engines disagree. Five parameter sets: as calibrated; stressed (many events,
dropouts and toxicity, the CD4 floor reached); precise (no measurement noise, so IL-2 exposure,
toxicity withholding and ART suppression show to a cell); eventful (IL-2 from day 84, so
treatment often stops before any IL-2, removing the excess hazard); windowed (a finite,
fractional excess window at the posterior medians' low event rate, the ratio exaggerated so that
an excess missing or on other days shows in the share of events inside the windows).
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pytest
from scipy import stats

from stalwart.errors import ConfigurationError
from stalwart.protocol.calendar import participant_calendar
from stalwart.protocol.eligibility import evaluate_eligibility, validate_screening_answers
from stalwart.protocol.load import load_protocol
from stalwart.protocol.schema import Protocol
from stalwart.simulate._vectorized_hazard import hazard_shape as _hazard_shape
from stalwart.simulate._vectorized_hazard import next_event as _next_event
from stalwart.simulate.candidates import simulate_candidate
from stalwart.simulate.cycles import IL2_TREATMENT, treatment_cycles
from stalwart.simulate.equations import il2_excess_window
from stalwart.simulate.model import simulate_participant
from stalwart.simulate.parameters import ModelParameters, load_parameters
from stalwart.simulate.vectorized import (
    DISPOSITION_STATUSES,
    STREAM_REPLICATES,
    ReplicateData,
    ReplicateSimulator,
    apply_scenario,
    scenario_keys,
    simulate_replicates,
)

ARMS = ("NOTHER", "IL2", "IL2ART")
STRESS = {
    "event_rate_at_reference_cd4": 0.25,
    "cd4_decline_per_year": 250.0,
    "first_event_death_probability": 0.4,
    "dropout_rate_per_year.NOTHER": 0.5,
    "dropout_rate_per_year.IL2": 0.6,
    "dropout_rate_per_year.IL2ART": 0.7,
    "il2_ae_probability_per_cycle.Hypotension": 0.6,
    "toxicity_stop_treatment_probability": 0.8,
    "missed_visit_probability": 0.2,
}


@pytest.fixture(scope="module")
def protocol() -> Protocol:
    return load_protocol().protocol


@pytest.fixture(scope="module")
def params() -> ModelParameters:
    return load_parameters()


# -- the closed-form event day ----------------------------------------------------------------
def _brute_force_day(params, cd4, decline, scale, start, e, switch, after) -> float:
    """model.py's way: cumulative sum of the daily hazard, searchsorted."""
    days = np.arange(0, 6000, dtype=np.float64)
    natural = np.maximum(cd4 - decline * days / 365.25, params.cd4_floor.value)
    kappa = params.event_log_hazard_per_100_cd4.value / 100
    hazard = scale * np.exp(-kappa * natural)
    if math.isfinite(switch):
        hazard[int(switch) :] *= after
    cumulative = np.cumsum(hazard[int(start) :])
    index = int(np.searchsorted(cumulative, e))
    return math.inf if index >= len(cumulative) else start + index


@pytest.mark.parametrize("slope", [0.3, 0.0, -0.2])
def test_next_event_day_equals_the_cumulative_daily_hazard(protocol, slope):
    params = load_parameters(overrides={"event_log_hazard_per_100_cd4": slope})
    rng = np.random.default_rng(7)
    n = 400
    cd4 = np.concatenate([rng.uniform(5, 40, 40), rng.lognormal(np.log(560), 0.5, n - 40)])
    decline = np.concatenate(
        [rng.normal(60, 200, n - 60), np.zeros(20), rng.uniform(300, 2000, 20), -np.ones(20)]
    )
    scale = rng.lognormal(np.log(0.002), 1.5, n)
    start = rng.integers(1, 400, n).astype(np.float64)
    e = rng.standard_exponential(n)
    switch = np.where(rng.random(n) < 0.6, rng.integers(1, 800, n), np.inf).astype(np.float64)
    after = 6.9
    h = _hazard_shape(params, cd4, decline)
    fast = _next_event(h, scale, start, e, switch, after)
    slow = np.array(
        [
            _brute_force_day(params, cd4[i], decline[i], scale[i], start[i], e[i], switch[i], after)
            for i in range(n)
        ]
    )
    limit = 6000  # the brute force's horizon
    fast = np.where(fast >= limit, np.inf, fast)
    np.testing.assert_array_equal(fast, slow)
    assert np.isfinite(slow).sum() > n // 3


# -- agreement with the per-participant simulator ------------------------------------------------
def _eligible(params, protocol, rng):
    while True:
        candidate = simulate_candidate(params, protocol, rng)
        answers = validate_screening_answers(protocol, candidate.answers)
        if not evaluate_eligibility(protocol, answers):
            return candidate


def _per_participant(
    params: ModelParameters, protocol: Protocol, n: int, seed: int
) -> dict[str, np.ndarray]:
    """``n`` participants per arm through model.py, recorded as the vectorized engine records
    them (CD4 rounded, HIV RNA below the limit at half the limit, days from randomization)."""
    rng = np.random.default_rng(seed)
    span = (protocol.study.accrual_end - protocol.study.accrual_start).days
    limit = protocol.lab_item("HIVRNA").lower_limit
    terms = protocol.forms.AE.terms
    codes = [v.code for v in protocol.visits]
    size = n * len(ARMS)
    out = {
        "arm": np.repeat(np.arange(len(ARMS)), n),
        "cd4": np.full((size, len(codes)), np.nan),
        "log10_hiv_rna": np.full((size, len(codes)), np.nan),
        "visit_day": np.full((size, len(codes)), -1),
        "first_oi_day": np.full(size, np.inf),
        "death_day": np.full(size, np.inf),
        "status": np.zeros(size, dtype=int),
        "end_day": np.zeros(size),
        "ae_max_grade": np.zeros((size, len(terms)), dtype=int),
    }
    for i in range(size):
        candidate = _eligible(params, protocol, rng)
        date = protocol.study.accrual_start + dt.timedelta(days=int(rng.integers(0, span + 1)))
        calendar = participant_calendar(protocol, ARMS[i // n], date)
        course = simulate_participant(params, protocol, calendar, candidate, rng)
        for lab in course.labs:
            if lab.visit_code in codes:
                v = codes.index(lab.visit_code)
                out["cd4"][i, v] = round(lab.cd4)
                rna = limit / 2 if lab.hiv_rna < limit else round(lab.hiv_rna)
                out["log10_hiv_rna"][i, v] = math.log10(rna)
                out["visit_day"][i, v] = (lab.date - date).days
        for event in course.clinical_events:
            day = (event.date - date).days
            if event.code == "DEATH":
                out["death_day"][i] = day
            elif not math.isfinite(out["first_oi_day"][i]):
                out["first_oi_day"][i] = day
        out["status"][i] = DISPOSITION_STATUSES.index(course.disposition.status)
        out["end_day"][i] = (course.disposition.date - date).days
        for ae in course.adverse_events:
            t = terms.index(ae.term)
            out["ae_max_grade"][i, t] = max(out["ae_max_grade"][i, t], ae.grade)
    return out


def _metrics(
    data: Mapping[str, np.ndarray],
    codes: list[str],
    terms: list[str],
    windows: Sequence[tuple[float, float]] = (),
):
    """Per arm, per metric: one value per participant (NaN where it does not apply).
    ``windows``: the IL-2 arm's excess windows on its calendar (every cycle's, as planned); with
    them, whether each first event falls inside one."""
    cd4, rna, day = data["cd4"], data["log10_hiv_rna"], data["visit_day"]
    first = np.minimum(data["first_oi_day"], data["death_day"])
    event = np.isfinite(first)
    in_window = np.zeros(first.shape, dtype=bool)
    for lo, hi in windows:
        in_window |= (first >= lo) & (first <= hi)
    status = data["status"]
    lost = status == DISPOSITION_STATUSES.index("LOST TO FOLLOW-UP")
    columns = {
        "baseline CD4": cd4[:, 0],
        "baseline log10 RNA": rna[:, 0],
        "missing week 32": np.isnan(cd4[:, codes.index("WK32")]).astype(float),
        "event": event.astype(float),
        "death": np.isfinite(data["death_day"]).astype(float),
        "death after an OI": np.where(
            np.isfinite(data["first_oi_day"]), np.isfinite(data["death_day"]), np.nan
        ),
        "time to event": np.where(event, first, np.nan),
        "days from OI to death": np.where(
            np.isfinite(data["first_oi_day"]) & np.isfinite(data["death_day"]),
            np.nan_to_num(data["death_day"], posinf=0)
            - np.nan_to_num(data["first_oi_day"], posinf=0),
            np.nan,
        ),
        "censoring time": np.where(event, np.nan, data["end_day"]),
        "completed": (status == 0).astype(float),
        "withdrew": (status == DISPOSITION_STATUSES.index("WITHDREW")).astype(float),
        "lost": lost.astype(float),
        # lost to follow-up: dated at the last data, often a scheduled visit
        "lost at a visit": np.where(lost, day.max(axis=1) == data["end_day"], np.nan),
        "fever": (data["ae_max_grade"][:, terms.index("Fever")] > 0).astype(float),
        "nausea": (data["ae_max_grade"][:, terms.index("Nausea")] > 0).astype(float),
        "any grade >= 3 AE": (data["ae_max_grade"].max(axis=1) >= 3).astype(float),
        "AE terms": (data["ae_max_grade"] > 0).sum(axis=1).astype(float),
    }
    if windows:  # when events fall relative to the cycles: inside an IL-2 excess window or not
        columns["event in an excess window"] = in_window.astype(float)
        columns["events in an excess window"] = np.where(event, in_window, np.nan)
    for v, code in enumerate(codes[1:], start=1):
        columns[f"CD4 {code}"] = cd4[:, v]
        columns[f"CD4 change {code}"] = cd4[:, v] - cd4[:, 0]
        columns[f"log10 RNA change {code}"] = rna[:, v] - rna[:, 0]
        columns[f"visit day {code}"] = np.where(day[:, v] >= 0, day[:, v], np.nan)
    week32 = cd4[:, codes.index("WK32")]
    out = {}
    for a, arm in enumerate(ARMS):
        mine = data["arm"] == a
        values = {k: np.asarray(v, dtype=np.float64)[mine] for k, v in columns.items()}
        values["SD of CD4 WK32 (squared deviation)"] = (
            week32[mine] - np.nanmean(week32[mine])
        ) ** 2
        out[arm] = values
    return out


def _disagreements(reference, vectorized) -> list[str]:
    """Metrics whose means differ by more than 4 Monte Carlo standard errors."""
    problems = []
    for arm in ARMS:
        for metric, a in reference[arm].items():
            b = vectorized[arm][metric]
            a, b = a[~np.isnan(a)], b[~np.isnan(b)]
            if len(a) < 30 or len(b) < 30:
                continue
            se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
            diff = b.mean() - a.mean()
            if abs(diff) > 4 * se + 1e-9:
                problems.append(f"{arm} {metric}: {a.mean():.5g} vs {b.mean():.5g} (SE {se:.3g})")
    return problems


def _both(params, protocol, n, seed, replicates):
    codes = [v.code for v in protocol.visits]
    terms = protocol.forms.AE.terms
    calendar = participant_calendar(protocol, "IL2", protocol.study.accrual_start)
    windows = [
        il2_excess_window(params, c.days(IL2_TREATMENT))
        for c in treatment_cycles(protocol, calendar)
        if c.days(IL2_TREATMENT)
    ]
    reference = _per_participant(params, protocol, n, seed)
    data = simulate_replicates(protocol, params, replicates, np.random.SeedSequence(seed))
    flat = {k: getattr(data, k).reshape(-1, *getattr(data, k).shape[2:]) for k in reference}
    return (
        _metrics(reference, codes, terms, windows),
        _metrics(flat, codes, terms, windows),
        data,
    )


# Few events, as calibrated; then many events, deaths, stops, dropouts, toxicity and the CD4
# floor; then without measurement noise, so IL-2 exposure and ART suppression show to a cell.
PRECISE = {
    "lymphocyte_count_noise_log_sd": 0.0,
    "cd4_percent_noise_log_sd": 0.0,
    "hiv_rna_noise_sd": 0.0,
    "il2_response_log_sd": 0.0,
    "cd4_decline_sd": 0.0,
    "event_rate_at_reference_cd4": 0.6,
    "first_event_death_probability": 0.1,
    "il2_ae_probability_per_cycle.Hypotension": 1.0,
    "il2_ae_probability_per_cycle.Fever": 0.9,
    "toxicity_stop_treatment_probability": 0.6,
    "cycle_not_started_probability": 0.1,
}


# Events from the first days and IL-2 from day 84: treatment stops before IL-2 (no excess
# hazard then), during and after cycles, later deaths.
EVENTFUL = {
    "event_rate_at_reference_cd4": 2.0,
    "first_event_death_probability": 0.0,
    "later_event_death_probability": 0.3,
    "event_stop_treatment_probability": 0.7,
}


# The posterior medians' event rate (few events), with a finite excess window of a fractional
# length (as posterior draws have) and a ratio large enough that the window's events show.
WINDOWED = {
    "event_rate_at_reference_cd4": 0.021,
    "il2_event_hazard_ratio": 6.0,
    "il2_excess_hazard_window_days": 28.6,
}


@functools.cache
def _agreement(name: str):
    """(reference metrics, vectorized metrics, replicates) of scenario ``name``, once."""
    protocol = load_protocol().protocol
    if name == "calibrated":
        return _both(load_parameters(), protocol, 2000, 20100223, 25)
    if name == "stressed":
        return _both(load_parameters(overrides=STRESS), protocol, 2500, 4, 50)
    if name == "eventful":
        data = protocol.model_dump()
        data["treatments"]["IL2"]["first_cycle_day"] = 84
        late = Protocol.model_validate(data)
        return _both(load_parameters(overrides=EVENTFUL), late, 1500, 8, 25)
    if name == "windowed":
        return _both(load_parameters(overrides=WINDOWED), protocol, 3000, 12, 100)
    return _both(load_parameters(overrides=PRECISE), protocol, 2000, 6, 25)


@pytest.mark.parametrize("name", ["calibrated", "stressed", "precise", "eventful", "windowed"])
def test_vectorized_agrees_with_the_per_participant_model(name):
    reference, vectorized, _ = _agreement(name)
    assert _disagreements(reference, vectorized) == [], name
    for arm in ARMS:  # whole distributions too
        for metric in ("CD4 WK32", "time to event"):
            a, b = reference[arm][metric], vectorized[arm][metric]
            a, b = a[~np.isnan(a)], b[~np.isnan(b)]
            if min(len(a), len(b)) >= 30:
                assert stats.ks_2samp(a, b).pvalue > 1e-3, (name, arm, metric)
    if name == "stressed":  # the comparisons have events and dropouts to see
        assert vectorized["IL2"]["event"].mean() > 0.3
        assert vectorized["IL2"]["lost"].mean() > 0.1
        assert np.nanmean(vectorized["IL2"]["death after an OI"]) > 0.1


def test_a_finite_excess_window_gives_the_same_events_on_the_same_days():
    """Few events, a finite window of 28.6 days after each cycle: both engines put the IL-2
    arms' excess on the same days (the share of events inside the windows agrees, by
    test_vectorized_agrees_with_the_per_participant_model, and is far above the control arm's,
    so an excess missing from either engine, or on other days, would fail it), and the
    vectorized engine dates events on whole days (a fractional window covers whole days)."""
    reference, vectorized, data = _agreement("windowed")
    for metrics in (reference, vectorized):
        control = np.nanmean(metrics["NOTHER"]["events in an excess window"])
        for arm in ("IL2", "IL2ART"):
            assert np.nanmean(metrics[arm]["events in an excess window"]) > control + 0.2, arm
            assert metrics[arm]["event"].mean() > metrics["NOTHER"]["event"].mean() + 0.01, arm
        assert metrics["NOTHER"]["event"].mean() < 0.06  # a low event rate
    for name in ("first_oi_day", "death_day"):
        days = getattr(data, name)
        days = days[np.isfinite(days)]
        np.testing.assert_array_equal(days, np.floor(days), err_msg=name)


def test_calibration_targets_hold_in_the_vectorized_engine():
    """The published figures the model is calibrated to, now from whole replicate trials."""
    _, vectorized, data = _agreement("calibrated")
    control = np.nanmean(vectorized["NOTHER"]["CD4 WK32"])
    assert abs(np.nanmean(vectorized["IL2"]["CD4 WK32"]) - control - 134) < 20
    assert abs(np.nanmean(vectorized["IL2ART"]["CD4 WK32"]) - control - 133) < 20
    il2 = np.concatenate([vectorized["IL2"]["event"], vectorized["IL2ART"]["event"]]).mean()
    assert abs(il2 - 12 / 176) < 0.02
    assert abs(vectorized["NOTHER"]["completed"].mean() - 83 / 91) < 0.02
    assert data.arm.shape == (25, 267)


# -- streams and reproducibility ----------------------------------------------------------------
def _assert_same(a: ReplicateData, b: ReplicateData) -> None:
    for name in ("arm", "cd4", "log10_hiv_rna", "death_day", "first_oi_day", "end_day"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for name in ("status", "ae_max_grade", "n_screened", "visit_day", "hiv_rna_below_limit"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_same_seed_same_replicates_whatever_the_blocks(params, protocol):
    simulator = ReplicateSimulator(protocol, params, visits=["WK32"])
    n = STREAM_REPLICATES + 50
    whole = simulator.simulate(n, np.random.SeedSequence(99))
    again = simulator.simulate(n, 99)
    _assert_same(whole, again)
    seed = np.random.SeedSequence(99)
    seed.spawn(3)  # earlier spawns on the object do not change the streams
    parts = [simulator.simulate(30, seed, 0), simulator.simulate(n - 30, seed, 30)]
    _assert_same(whole, ReplicateData.concatenate(parts))
    blocks = list(simulator.blocks(n, 99, block_replicates=70))
    assert [b.first_replicate for b in blocks] == [0, 70, 140]
    _assert_same(whole, ReplicateData.concatenate(blocks))
    other = simulator.simulate(n, 100)
    assert not np.array_equal(whole.arm, other.arm)
    # each stream is the k-th child of the seed
    assert simulator.visits == ("ENTRY", "WK32")


# -- invariants ----------------------------------------------------------------------------------
def test_replicates_respect_windows_dispositions_and_allocation(protocol):
    params = load_parameters(overrides=STRESS)
    data = simulate_replicates(protocol, params, 30, np.random.SeedSequence(5))
    longest = (protocol.study.follow_up_end - protocol.study.accrual_start).days
    end_of_study = longest - data.randomization_day
    day = data.visit_day.astype(float)
    seen = data.visit_day >= 0
    assert np.array_equal(seen, ~np.isnan(data.cd4))
    assert np.array_equal(seen, ~np.isnan(data.log10_hiv_rna))
    assert seen[..., 0].all() and (data.visit_day[..., 0] == 0).all()
    for v, visit in enumerate(protocol.visits):
        d = day[..., v][seen[..., v]]
        assert (d >= visit.day - visit.window_before).all()
        assert (d <= visit.day + visit.window_after).all()
    assert (np.where(seen, day, -1) <= data.end_day[..., None]).all()
    assert ((data.cd4[seen] >= 0) & (data.cd4[seen] <= 5000)).all()
    dead = np.isfinite(data.death_day)
    assert np.array_equal(dead, data.status == DISPOSITION_STATUSES.index("DEATH"))
    assert np.array_equal(data.end_day[dead], data.death_day[dead])
    done = data.completed
    assert np.array_equal(data.end_day[done], end_of_study[done])
    assert (data.end_day[~done] <= end_of_study[~done]).all()
    assert (data.first_oi_day[np.isfinite(data.first_oi_day)] >= 1).all()
    assert (data.first_oi_day < np.where(dead, data.death_day, np.inf))[
        np.isfinite(data.first_oi_day)
    ].all()
    time, _ = data.time_to_event()
    assert (time >= 0).all() and (time <= end_of_study).all()
    assert ((data.ae_max_grade >= 0) & (data.ae_max_grade <= 5)).all()
    assert (data.n_screened >= 267).all()
    # permuted blocks of 3 and 6 within each site: at most 2 apart, and every participant placed
    for r in range(data.n_replicates):
        for s in range(len(protocol.sites)):
            counts = np.bincount(data.arm[r][data.stratum[r] == s], minlength=3)
            assert counts.max() - counts.min() <= 2
    assert (np.bincount(data.arm.ravel(), minlength=3) > 0).all()


# -- scenarios ----------------------------------------------------------------------------------
def test_scenario_overrides_design_and_parameters(params, protocol):
    scenario = {
        "sample_size": 120,
        "allocation_ratio": {"IL2": 2},
        "block_sizes": [4, 8],
        "cycles": 1,
        "dropout_rate_per_year.IL2": 0.0,
        "il2_event_hazard_ratio": 1.0,
    }
    changed, new_params = apply_scenario(protocol, params, scenario)
    assert changed.study.sample_size == 120
    assert [a.ratio for a in changed.arms] == [1, 2, 1]
    assert changed.treatments["IL2"].cycles == 1
    assert new_params.il2_event_hazard_ratio.value == 1.0
    assert new_params.dropout_rate_per_year["IL2"].value == 0.0
    assert new_params.dropout_rate_per_year["NOTHER"] == params.dropout_rate_per_year["NOTHER"]
    data = simulate_replicates(protocol, params, 40, 3, scenario=scenario)
    assert data.arm.shape == (40, 120)
    share = np.bincount(data.arm.ravel(), minlength=3) / data.arm.size
    np.testing.assert_allclose(share, [0.25, 0.5, 0.25], atol=0.02)
    assert data.completed[data.arm == 1].mean() > 0.97  # no dropout, few deaths in IL2
    one_cycle = np.nanmean(data.cd4[..., -1][data.arm == 1]) - np.nanmean(
        data.cd4[..., -1][data.arm == 0]
    )
    assert 20 < one_cycle < 90  # one cycle instead of three: far below +134


def test_null_scenario_has_no_effect(params, protocol):
    null = {"il2_cd4_persistent_gain_per_cycle": 0.0, "il2_event_hazard_ratio": 1.0}
    data = simulate_replicates(protocol, params, 40, 11, scenario=null)
    week32 = data.cd4[..., data.visit("WK32")]
    a, b = week32[data.arm == 0], week32[data.arm == 1]
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    assert abs(b.mean() - a.mean()) < 4 * math.sqrt(a.var() / len(a) + b.var() / len(b))


def test_unknown_scenario_name_lists_the_valid_names(params, protocol):
    with pytest.raises(ConfigurationError) as info:
        apply_scenario(protocol, params, {"il2_event_hazard_ration": 2.0})
    message = str(info.value)
    assert (
        "'il2_event_hazard_ration'" in message and "did you mean il2_event_hazard_ratio" in message
    )
    assert "sample_size" in message and "dropout_rate_per_year.IL2" in message
    assert set(scenario_keys(params)) >= {"cycles", "cd4_median", "clinical_event_weight.TB"}


@pytest.mark.parametrize(
    ("scenario", "match"),
    [
        ({"sample_size": -5}, "sample_size: must be a positive whole number"),
        ({"sample_size": 2.5}, "sample_size"),
        ({"cycles": 0}, "cycles"),
        ({"allocation_ratio": {"XX": 1}}, "unknown arm 'XX'"),
        ({"allocation_ratio": {"IL2": 2}}, "block_sizes"),
        ({"block_sizes": [4]}, "block_sizes"),
        ({"cd4_median": -1.0}, "cd4_median"),
        ({"frailty_variance": "high"}, "must be a number"),
        ({"il2_ae_grade_distribution.Fever": 0.5}, "unknown name"),
    ],
)
def test_bad_scenarios_are_configuration_errors(params, protocol, scenario, match):
    with pytest.raises(ConfigurationError, match=match):
        apply_scenario(protocol, params, scenario)


def test_scenario_parameters_equal_loading_with_overrides(params, protocol):
    _, via_scenario = apply_scenario(protocol, params, STRESS)
    assert via_scenario == load_parameters(overrides=STRESS)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda s: s.simulate(0, 1), "n_replicates"),
        (lambda s: s.simulate(-3, 1), "n_replicates"),
        (lambda s: s.simulate(2, -1), "seed"),
        (lambda s: s.simulate(2, 1, first_replicate=-1), "first_replicate"),
        (lambda s: next(s.blocks(5, 1, block_replicates=0)), "block_replicates"),
    ],
)
def test_bad_counts_and_seeds_are_configuration_errors(params, protocol, call, match):
    simulator = ReplicateSimulator(protocol, params, visits=["WK32"])
    with pytest.raises(ConfigurationError, match=match):
        call(simulator)


def test_unknown_visit_and_unsupported_designs_are_refused(params, protocol):
    with pytest.raises(ConfigurationError, match="WK99"):
        ReplicateSimulator(protocol, params, visits=["WK99"])
    data = protocol.model_dump()
    data["randomization"] = {
        "method": "minimization",
        "minimization": {"factors": [{"name": "site"}], "probability": 0.8, "list_length": 400},
    }
    minimization = Protocol.model_validate(data)
    with pytest.raises(ConfigurationError, match="minimization"):
        ReplicateSimulator(minimization, params)
    rates = {k: v for k, v in params.dropout_rate_per_year.items() if k != "IL2"}
    with pytest.raises(ConfigurationError, match="IL2"):
        ReplicateSimulator(protocol, params.model_copy(update={"dropout_rate_per_year": rates}))
