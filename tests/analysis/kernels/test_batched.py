"""Batched kernels equal the single-trial kernels on every replicate.

Data come from the vectorized simulator (so ties, arms of unequal size and rare events are as in
the Monte Carlo study) plus a stressed scenario with many events and tied days. For each
replicate the single-trial kernel (itself checked against R) is run on that replicate's
participants and compared to the batched value to 1e-8 relative.
"""

from __future__ import annotations

import numpy as np
import pytest

from stalwart.analysis.kernels.ancova import ancova
from stalwart.analysis.kernels.batched import (
    batched_ancova,
    batched_cox,
    batched_firth_hazard_ratio,
    batched_logrank,
    batched_welch_ttest,
    event_times,
)
from stalwart.analysis.kernels.cox import cox_ph
from stalwart.analysis.kernels.firth import firth_cox
from stalwart.analysis.kernels.logrank import logrank_test
from stalwart.analysis.kernels.ttest import welch_ttest
from stalwart.errors import AnalysisError
from stalwart.protocol.load import load_protocol
from stalwart.simulate.parameters import load_parameters
from stalwart.simulate.vectorized import ReplicateData, simulate_replicates

RTOL = 1e-8
STRESS = {
    "event_rate_at_reference_cd4": 0.6,
    "dropout_rate_per_year.NOTHER": 0.4,
    "missed_visit_probability": 0.2,
    "sample_size": 90,
}


@pytest.fixture(scope="module", params=["calibrated", "stressed"])
def data(request: pytest.FixtureRequest) -> ReplicateData:
    scenario = STRESS if request.param == "stressed" else None
    return simulate_replicates(
        load_protocol().protocol,
        load_parameters(),
        60,
        7,
        scenario=scenario,
        visits=["WK32"],
    )


def _close(batched: float, single: float) -> None:
    assert batched == pytest.approx(single, rel=RTOL, abs=1e-12)


def test_welch_and_ancova_equal_the_single_trial_kernels(data: ReplicateData) -> None:
    y = data.cd4[:, :, data.visit("WK32")]
    base = data.baseline_cd4
    complete = np.isfinite(y) & np.isfinite(base)
    arm = data.arm.astype(np.int64)
    for treated in (1, 2):
        welch = batched_welch_ttest(y, complete & (arm == treated), complete & (arm == 0))
        anc = batched_ancova(y, arm, base, complete, treated, 0)
        assert welch.estimable.all() and anc.estimable.all()
        for r in range(data.n_replicates):
            x_r, y_r = y[r][complete[r] & (arm[r] == treated)], y[r][complete[r] & (arm[r] == 0)]
            single = welch_ttest(x_r, y_r)
            for name in ("difference", "se", "df", "statistic", "p_value", "ci_low", "ci_high"):
                _close(getattr(welch, name)[r], getattr(single, name))
            keep = complete[r]
            ref = ancova(y[r][keep], arm[r][keep], base[r][keep], treated, 0)
            for name in ("difference", "se", "df", "statistic", "p_value", "ci_low", "ci_high"):
                _close(getattr(anc, name)[r], getattr(ref, name))
            _close(anc.baseline_coef[r], ref.baseline_coef)
            _close(anc.residual_sd[r], ref.residual_sd)


@pytest.mark.parametrize("comparison", [(1, 2), (1,), (2,)])
def test_logrank_and_cox_equal_the_single_trial_kernels(
    data: ReplicateData, comparison: tuple[int, ...]
) -> None:
    time, event = data.time_to_event()
    treated = np.isin(data.arm, comparison)
    include = treated | (data.arm == 0)
    times = event_times(time, event, treated, include)
    lr = batched_logrank(times)
    for ties in ("efron", "breslow"):
        cox = batched_cox(times, ties=ties)
        checked = 0
        for r in range(data.n_replicates):
            keep = include[r]
            t, e, g = time[r][keep], event[r][keep].astype(float), treated[r][keep].astype(float)
            assert cox.events_treated[r] == e[g == 1].sum()
            assert cox.events_control[r] == e[g == 0].sum()
            if e.sum() == 0:
                assert not lr.estimable[r] and np.isnan(lr.p_value[r])
                continue
            single_lr = logrank_test(t, e, g)
            _close(lr.chi2[r], single_lr.chi2)
            _close(lr.observed[r], single_lr.observed[1])
            _close(lr.expected[r], single_lr.expected[1])
            _close(lr.variance[r], single_lr.variance[1, 1])
            if single_lr.df:
                _close(lr.p_value[r], single_lr.p_value)
                assert np.sign(lr.z[r]) == np.sign(single_lr.observed[1] - single_lr.expected[1])
            if min(e[g == 1].sum(), e[g == 0].sum()) == 0:
                assert not cox.estimable[r] and np.isnan(cox.hazard_ratio[r])
                continue
            ref = cox_ph(t, e, g.reshape(-1, 1), ties=ties)
            assert cox.converged[r] == ref.converged
            assert cox.iterations[r] == ref.iterations
            for name in ("coef", "se", "hazard_ratio", "ci_low", "ci_high", "z", "p_value"):
                _close(getattr(cox, name)[r], getattr(ref, name)[0])
            _close(cox.loglik[r], ref.loglik)
            assert cox.monotone_likelihood[r] == ref.monotone_likelihood
            checked += 1
        assert checked > 0


def test_heavy_ties_match_efron_and_logrank() -> None:
    """Many events per day (coarse times) exercise the Efron tie terms and the variance."""
    rng = np.random.default_rng(3)
    reps, n = 40, 60
    time = np.ceil(rng.exponential(4.0, (reps, n)))
    event = rng.random((reps, n)) < 0.8
    treated = rng.random((reps, n)) < 0.5
    include = rng.random((reps, n)) < 0.9
    cox = batched_cox(time, event, treated, include)
    lr = batched_logrank(time, event, treated, include)
    for r in range(reps):
        k = include[r]
        ref = cox_ph(time[r][k], event[r][k], treated[r][k].astype(float).reshape(-1, 1))
        _close(cox.coef[r], ref.coef[0])
        _close(cox.se[r], ref.se[0])
        _close(lr.chi2[r], logrank_test(time[r][k], event[r][k], treated[r][k]).chi2)


def test_replicates_without_data_are_flagged_not_raised() -> None:
    time = np.array([[5.0, 6.0, 7.0, 8.0], [5.0, 6.0, 7.0, 8.0]])
    event = np.array([[False, False, False, False], [True, False, True, False]])
    treated = np.array([[True, True, False, False], [True, True, False, False]])
    include = np.ones_like(event)
    lr = batched_logrank(time, event, treated, include)
    cox = batched_cox(time, event, treated, include)
    assert lr.estimable.tolist() == [False, True]
    assert cox.estimable.tolist() == [False, True]
    assert np.isnan(cox.hazard_ratio[0]) and np.isfinite(cox.hazard_ratio[1])
    y = np.array([[1.0, 2.0, np.nan, 4.0, 5.0, 6.0]] * 2)
    arm = np.array([[0, 0, 1, 2, 2, 2], [0, 0, 0, 2, 2, 2]])  # no IL-2 value in either
    anc = batched_ancova(y, arm, y + 0.1 * np.arange(6), np.isfinite(y), 1, 0)
    assert not anc.estimable.any() and np.isnan(anc.difference).all()
    welch = batched_welch_ttest(y, arm == 1, arm == 0)
    assert not welch.estimable.any()


def test_bad_shapes_and_options_are_clear_errors() -> None:
    with pytest.raises(AnalysisError, match="shape"):
        batched_welch_ttest(np.zeros((2, 3)), np.zeros((2, 2), bool), np.zeros((2, 3), bool))
    with pytest.raises(AnalysisError, match="overlap"):
        batched_welch_ttest(np.zeros((1, 2)), np.ones((1, 2), bool), np.ones((1, 2), bool))
    with pytest.raises(AnalysisError, match="ties"):
        batched_cox(
            np.ones((1, 2)), np.ones((1, 2), bool), [[True, False]], [[True, True]], ties="x"
        )
    with pytest.raises(AnalysisError, match="non-negative"):
        event_times([[-1.0, 2.0]], [[True, True]], [[True, False]], [[True, True]])
    for bad in (np.nan, np.inf):
        with pytest.raises(AnalysisError, match="finite"):
            event_times([[bad, 2.0]], [[True, True]], [[True, False]], [[True, True]])
    # a participant not analysed may hold anything
    times = event_times([[np.nan, 2.0, 3.0]], [[True] * 3], [[True, False, True]], [[0, 1, 1]])
    assert times.total_events.tolist() == [2.0]
    with pytest.raises(AnalysisError, match="differ"):
        batched_ancova(
            np.ones((1, 4)), np.zeros((1, 4), int), np.ones((1, 4)), np.ones((1, 4)), 0, 0
        )


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_firth_hazard_ratio_equals_the_single_trial_firth_kernel(data: ReplicateData, ties) -> None:
    """Every replicate with an event, including those with none on one side (infinite Cox)."""
    time, event = data.time_to_event()
    treated = data.arm == 1
    include = treated | (data.arm == 0)
    firth = batched_firth_hazard_ratio(event_times(time, event, treated, include), ties=ties)
    for r in range(data.n_replicates):
        keep = include[r]
        t, e, g = time[r][keep], event[r][keep].astype(float), treated[r][keep].astype(float)
        if e.sum() == 0:
            assert np.isnan(firth[r])
            continue
        ref = firth_cox(t, e, g.reshape(-1, 1), ties=ties)
        assert firth[r] == pytest.approx(ref.hazard_ratio[0], rel=1e-6)
    assert np.isfinite(firth).sum() > 0


def test_firth_is_finite_where_cox_is_infinite() -> None:
    """12 events against none, and against one: Firth finite, both equal to the single fit."""
    rng = np.random.default_rng(5)
    time = rng.uniform(1, 100, (2, 60)).round()
    treated = np.zeros((2, 60), dtype=bool)
    treated[:, :30] = True
    event = np.zeros((2, 60), dtype=bool)
    event[:, :12] = True
    event[1, 40] = True
    include = np.ones((2, 60), dtype=bool)
    firth = batched_firth_hazard_ratio(time, event, treated, include)
    cox = batched_cox(time, event, treated, include)
    assert not cox.estimable[0] and cox.estimable[1]
    for r in range(2):
        ref = firth_cox(time[r], event[r].astype(float), treated[r].astype(float), ties="efron")
        assert firth[r] == pytest.approx(ref.hazard_ratio[0], rel=1e-6)
    assert 5 < firth[1] < firth[0] < 100


def test_efron_terms_of_some_replicates_are_those_of_all(data: ReplicateData) -> None:
    """The Newton loops compute the likelihood terms of the replicates still iterating only:
    their values are the very same floats as when every replicate is computed."""
    from stalwart.analysis.kernels.batched.survival import _EfronTerms

    time, event = data.time_to_event()
    arm = data.arm.astype(np.int64)
    times = event_times(time, event, arm > 0, np.ones(arm.shape, dtype=bool))
    terms = _EfronTerms(times, np.ones(times.replicate.size, dtype=bool), True)
    rng = np.random.default_rng(2)
    beta = rng.normal(0.0, 1.0, data.n_replicates)
    only = rng.random(data.n_replicates) < 0.3
    for every, some in zip(terms(beta), terms(beta, only), strict=True):
        np.testing.assert_array_equal(every[only], some[only])
    fewer = only & (rng.random(data.n_replicates) < 0.5)  # cut from the kept restriction
    for every, some in zip(terms(beta), terms(beta, fewer), strict=True):
        np.testing.assert_array_equal(every[fewer], some[fewer])
    slope = terms.information_slope(beta, only)
    np.testing.assert_array_equal(terms.information_slope(beta)[only], slope[only])


def test_risk_sets_equal_a_direct_count_across_chunks() -> None:
    """At-risk counts are counted per event time by comparison with the replicate's row, in
    chunks of rows: many event rows (over one chunk), ties, excluded and censored participants
    give the counts of a direct loop."""
    rng = np.random.default_rng(41)
    r, n = 700, 40
    time = rng.integers(0, 15, (r, n)).astype(float)  # heavy ties
    event = rng.random((r, n)) < 0.5
    treated = rng.random((r, n)) < 0.5
    include = rng.random((r, n)) < 0.9
    times = event_times(time, event, treated, include)
    assert times.replicate.size > 4096
    for row in range(0, times.replicate.size, 97):
        rep = times.replicate[row]
        events_here = event[rep] & include[rep]
        distinct = np.unique(time[rep][events_here])
        when = distinct[row - np.searchsorted(times.replicate, rep)]
        risk = include[rep] & (time[rep] >= when)
        assert times.at_risk[row] == risk.sum()
        assert times.at_risk_treated[row] == (risk & treated[rep]).sum()
        assert times.events[row] == (events_here & (time[rep] == when)).sum()
