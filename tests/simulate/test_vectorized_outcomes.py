"""The outcomes fidelity of the vectorized simulator: the same laws as model.py and the full mode.

The outcomes mode draws only what the analyses read (CD4 at baseline and week 32, visit days,
missed visits, events, deaths, dispositions, last contacts). Its per-arm metrics must agree with
the per-participant simulator (the references of test_vectorized.py, four parameter sets) and
with the full mode on many replicates (same seed, paired by replicate): means, the week-32 SD
and its covariance with baseline, event, death and dropout rates, time to event and censoring
times, each within 4 Monte Carlo standard errors, and the week-32 CD4 and event-time
distributions by a two-sample KS test (p > 1e-3 against model.py, 1e-4 against the full
mode). All draws are seeded.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from scipy import stats
from test_vectorized import (
    ARMS,
    EVENTFUL,
    PRECISE,
    STRESS,
    _agreement,
    _disagreements,
    _metrics,
)

from stalwart.errors import ConfigurationError
from stalwart.protocol.load import load_protocol
from stalwart.protocol.schema import Protocol
from stalwart.simulate._vectorized_plan import build_plan, severe_probability
from stalwart.simulate.parameters import ModelParameters, load_parameters
from stalwart.simulate.vectorized import STREAM_REPLICATES, ReplicateSimulator

OUTCOME_METRICS = (
    "baseline CD4",
    "missing week 32",
    "event",
    "death",
    "death after an OI",
    "time to event",
    "days from OI to death",
    "censoring time",
    "completed",
    "withdrew",
    "lost",
    "CD4 WK32",
    "CD4 change WK32",
    "visit day WK32",
    "SD of CD4 WK32 (squared deviation)",
    "baseline x WK32 CD4 (cross deviation)",
)
"""Per-arm metrics the outcomes mode draws (HIV RNA and AE metrics are not drawn)."""


def _scenario(name: str) -> tuple[ModelParameters, Protocol]:
    """The parameter sets of test_vectorized.py's agreement tests."""
    protocol = load_protocol().protocol
    if name == "calibrated":
        return load_parameters(), protocol
    if name == "stressed":
        return load_parameters(overrides=STRESS), protocol
    if name == "eventful":
        data = protocol.model_dump()
        data["treatments"]["IL2"]["first_cycle_day"] = 84
        return load_parameters(overrides=EVENTFUL), Protocol.model_validate(data)
    return load_parameters(overrides=PRECISE), protocol


def _outcome_metrics(data) -> dict[str, dict[str, np.ndarray]]:
    """Per arm, the outcome metrics of replicate data (any fidelity, any visits)."""
    fields = (
        "arm",
        "cd4",
        "log10_hiv_rna",
        "visit_day",
        "first_oi_day",
        "death_day",
        "status",
        "end_day",
        "ae_max_grade",
    )
    flat = {k: getattr(data, k).reshape(-1, *getattr(data, k).shape[2:]) for k in fields}
    codes = list(data.visits)
    metrics = _metrics(flat, codes, load_protocol().protocol.forms.AE.terms)
    return _with_covariance(metrics)


def _with_covariance(metrics):
    out = {}
    for arm in ARMS:
        m = dict(metrics[arm])
        base, week32 = m["baseline CD4"], m["CD4 WK32"]
        m["baseline x WK32 CD4 (cross deviation)"] = (base - np.nanmean(base)) * (
            week32 - np.nanmean(week32)
        )
        out[arm] = {k: v for k, v in m.items() if k in OUTCOME_METRICS}
    return out


def _outcomes(name: str, replicates: int, seed: int, fidelity: str = "outcomes"):
    params, protocol = _scenario(name)
    simulator = ReplicateSimulator(protocol, params, visits=["WK32"], fidelity=fidelity)
    return simulator.simulate(replicates, np.random.SeedSequence(seed))


def _assert_same_distributions(reference, candidate, label: str) -> None:
    assert _disagreements(reference, candidate) == [], label
    for arm in ARMS:
        for metric in ("CD4 WK32", "time to event"):
            a, b = reference[arm][metric], candidate[arm][metric]
            a, b = a[~np.isnan(a)], b[~np.isnan(b)]
            if min(len(a), len(b)) >= 30:
                assert stats.ks_2samp(a, b).pvalue > 1e-3, (label, arm, metric)


@pytest.mark.parametrize("name", ["calibrated", "stressed", "precise", "eventful"])
def test_outcomes_mode_agrees_with_the_per_participant_model(name):
    reference, _, _ = _agreement(name)
    reference = _with_covariance(reference)
    data = _outcomes(name, 40, 1000 + len(name))
    assert data.fidelity == "outcomes"
    _assert_same_distributions(reference, _outcome_metrics(data), name)


def _replicate_means(data) -> dict[str, dict[str, np.ndarray]]:
    """Per arm and metric, the mean of each replicate (NaN where it has no value)."""
    metrics = _outcome_metrics(data)
    arm = data.arm.reshape(-1)
    replicate = np.repeat(np.arange(data.n_replicates), data.arm.shape[1])
    out: dict[str, dict[str, np.ndarray]] = {}
    for a, code in enumerate(ARMS):
        rows = replicate[arm == a]
        out[code] = {}
        for metric, values in metrics[code].items():
            keep = ~np.isnan(values)
            total = np.bincount(rows[keep], values[keep], minlength=data.n_replicates)
            count = np.bincount(rows[keep], minlength=data.n_replicates)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[code][metric] = np.where(count > 0, total / count, np.nan)
    return out


def _paired_disagreements(full, fast) -> list[str]:
    """Metrics whose replicate means differ on average by more than 4 standard errors of the
    paired differences. Both modes run on the same seed, so enrolment, allocation and latent
    state are common random numbers and only what the modes draw differently can differ."""
    problems = []
    for arm in ARMS:
        for metric, a in full[arm].items():
            diff = fast[arm][metric] - a
            diff = diff[~np.isnan(diff)]
            if len(diff) < 30:
                continue
            se = diff.std(ddof=1) / np.sqrt(len(diff))
            if abs(diff.mean()) > 4 * se + 1e-9:
                problems.append(f"{arm} {metric}: outcomes - full {diff.mean():.4g} (SE {se:.3g})")
    return problems


@functools.cache
def _full_and_outcomes(name: str):
    replicates = 300 if name == "calibrated" else 150
    full = _outcomes(name, replicates, 31, "full")
    fast = _outcomes(name, replicates, 31, "outcomes")
    return full, fast


@pytest.mark.parametrize("name", ["calibrated", "stressed", "precise", "eventful"])
def test_outcomes_mode_agrees_with_the_full_mode(name):
    full_data, fast_data = _full_and_outcomes(name)
    assert _paired_disagreements(_replicate_means(full_data), _replicate_means(fast_data)) == []
    full, fast = _outcome_metrics(full_data), _outcome_metrics(fast_data)
    for arm in ARMS:  # whole distributions, participants pooled
        for metric in ("CD4 WK32", "time to event"):
            a, b = full[arm][metric], fast[arm][metric]
            a, b = a[~np.isnan(a)], b[~np.isnan(b)]
            if min(len(a), len(b)) >= 30:
                assert stats.ks_2samp(a, b).pvalue > 1e-4, (name, arm, metric)
    if name == "stressed":  # events, deaths, toxicity and losses to see
        assert fast["IL2"]["event"].mean() > 0.3
        assert fast["IL2"]["lost"].mean() > 0.1


def test_week32_cd4_correlates_with_baseline_as_in_the_full_mode():
    full, fast = (_outcome_metrics(d) for d in _full_and_outcomes("calibrated"))
    for arm in ARMS:
        r = []
        for metrics in (full, fast):
            base, week32 = metrics[arm]["baseline CD4"], metrics[arm]["CD4 WK32"]
            keep = ~np.isnan(week32)
            r.append(np.corrcoef(base[keep], week32[keep])[0, 1])
        n = min(len(full[arm]["CD4 WK32"]), len(fast[arm]["CD4 WK32"]))
        se = (1 - r[0] ** 2) * np.sqrt(2.0 / n)  # of a difference of two correlations
        assert abs(r[0] - r[1]) < 4 * se, (arm, r)
        assert 0.3 < r[1] < 0.95


def test_first_severe_onset_has_the_term_by_term_distribution():
    """The tabulated law of a cycle's first grade >= 3 AE against direct term-by-term draws."""
    protocol = load_protocol().protocol
    params = load_parameters(overrides={"il2_ae_probability_per_cycle.Hypotension": 0.6})
    plan = build_plan(protocol, params, (protocol.visits[0].code,))
    arm = next(a for a in plan.arms if a.code == "IL2ART")
    cycle = arm.cycles[0]
    assert len(cycle.groups) == 2  # IL-2 and ART terms
    rng = np.random.default_rng(3)
    size = 200_000
    first = np.full(size, np.inf)
    for group in cycle.groups:
        q = severe_probability(group, plan.grade_range)
        for t in range(len(group.chance)):
            occurs = rng.random(size) < group.chance[t]
            severe = rng.random(size) < q[t]
            onset = group.days[rng.integers(len(group.days), size=size)].astype(float)
            first = np.where(occurs & severe, np.minimum(first, onset), first)
    empirical = np.array([(first <= d).mean() for d in cycle.severe_days])
    se = np.sqrt(cycle.severe_cdf * (1 - cycle.severe_cdf) / size) + 1e-12
    assert np.all(np.abs(empirical - cycle.severe_cdf) < 4 * se)
    assert cycle.severe_cdf[-1] > 0.3
    # the grade law: P(grade >= 3) of each term from its distribution in parameters.toml
    il2 = cycle.groups[0]
    q = severe_probability(il2, plan.grade_range)
    fever = list(params.il2_ae_probability_per_cycle).index("Fever")
    assert q[fever] == pytest.approx(0.09 + 0.01)


def test_outcomes_mode_skips_hiv_rna_and_ae_grades_and_keeps_streams(params, protocol):
    simulator = ReplicateSimulator(protocol, params, visits=["WK32"], fidelity="outcomes")
    n = STREAM_REPLICATES + 30
    whole = simulator.simulate(n, 7)
    parts = [simulator.simulate(60, 7), simulator.simulate(n - 60, 7, first_replicate=60)]
    for field in ("arm", "cd4", "visit_day", "death_day", "first_oi_day", "end_day", "status"):
        joined = np.concatenate([getattr(p, field) for p in parts])
        np.testing.assert_array_equal(getattr(whole, field), joined, err_msg=field)
    assert np.isnan(whole.log10_hiv_rna).all()
    assert not whole.ae_max_grade.any()
    assert np.isfinite(whole.cd4[:, :, 0]).all()  # baseline always recorded
    full = ReplicateSimulator(protocol, params, visits=["WK32"]).simulate(5, 7)
    assert full.fidelity == "full" and np.isfinite(full.log10_hiv_rna[:, :, 0]).all()


def test_an_unknown_fidelity_is_a_configuration_error(params, protocol):
    with pytest.raises(ConfigurationError, match="fidelity must be one of full, outcomes"):
        ReplicateSimulator(protocol, params, fidelity="fast")


@pytest.fixture(scope="module")
def protocol() -> Protocol:
    return load_protocol().protocol


@pytest.fixture(scope="module")
def params() -> ModelParameters:
    return load_parameters()


def test_candidates_screened_per_participant_match_model_py(params, protocol):
    """Screening draws in full only candidates passing the independent items; the others come
    as a negative binomial count. The number screened must match model.py's eligibility rate."""
    from stalwart.protocol.eligibility import evaluate_eligibility, validate_screening_answers
    from stalwart.simulate.candidates import simulate_candidate

    rng = np.random.default_rng(11)
    trials = 6000
    eligible = 0
    for _ in range(trials):
        answers = validate_screening_answers(
            protocol, simulate_candidate(params, protocol, rng).answers
        )
        eligible += not evaluate_eligibility(protocol, answers)
    rate = eligible / trials
    for fidelity in ("full", "outcomes"):
        simulator = ReplicateSimulator(protocol, params, visits=["WK32"], fidelity=fidelity)
        screened = simulator.simulate(200, 5).n_screened
        observed = 267 / screened.mean()
        se = np.sqrt(rate * (1 - rate) / trials)  # the reference's error dominates
        assert abs(observed - rate) < 4 * se, (fidelity, observed, rate)
        assert 0.6 < rate < 0.85
