"""Published-vs-recomputed panel: each test on the rebuilt data against an independent reference."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter
from lifelines.statistics import logrank_test as lifelines_logrank
from scipy import stats

from stalwart.analysis.recompute import (
    PublishedCounts,
    closest_to_published,
    published_counts,
    recompute_published,
    reconstruct,
)
from stalwart.errors import AnalysisError, ConfigurationError


@pytest.fixture
def counts() -> PublishedCounts:
    found = published_counts("STALWART")
    assert found is not None
    return found


def _row(rows, method):
    return next(r for r in rows if r.method == method)


def test_reconstruction_keeps_the_published_counts(counts):
    time, event, treated = reconstruct(counts)
    assert treated.sum() == counts.n_treated and (1 - treated).sum() == counts.n_control
    assert event[treated == 1].sum() == counts.events_treated
    assert event[treated == 0].sum() == counts.events_control
    assert time.max() == counts.follow_up_days and time.min() > 0


def test_cox_and_logrank_match_lifelines_on_the_rebuilt_data(counts):
    rows = recompute_published(counts)
    time, event, treated = reconstruct(counts)
    frame = pd.DataFrame({"T": time, "E": event, "TRT": treated})
    cph = CoxPHFitter().fit(frame, "T", "E", fit_options={"precision": 1e-12, "max_steps": 200})
    wald = _row(rows, "Cox (Efron), Wald")
    assert wald.estimate == pytest.approx(float(np.exp(cph.params_["TRT"])), rel=1e-5)
    assert wald.p_value == pytest.approx(float(cph.summary.loc["TRT", "p"]), rel=1e-4)
    lr = _row(rows, "Cox (Efron), likelihood ratio, profile CI")
    assert lr.p_value == pytest.approx(cph.log_likelihood_ratio_test().p_value, rel=1e-4)
    ref = lifelines_logrank(
        time[treated == 1], time[treated == 0], event[treated == 1], event[treated == 0]
    )
    assert _row(rows, "Log-rank").p_value == pytest.approx(ref.p_value, rel=1e-6)


def test_exact_and_fisher_match_scipy(counts):
    rows = recompute_published(counts)
    time, _, treated = reconstruct(counts)
    t1, t0 = time[treated == 1].sum(), time[treated == 0].sum()
    d = counts.events_treated + counts.events_control
    binom = stats.binomtest(counts.events_treated, d, t1 / (t1 + t0))
    assert _row(rows, "Exact conditional (Poisson rates), two-sided").p_value == pytest.approx(
        binom.pvalue, rel=1e-9
    )
    table = [
        [counts.events_treated, counts.n_treated - counts.events_treated],
        [counts.events_control, counts.n_control - counts.events_control],
    ]
    fisher = _row(rows, "Fisher's exact (proportions with an event)")
    assert fisher.p_value == pytest.approx(stats.fisher_exact(table).pvalue, rel=1e-9)


def test_the_published_ci_implies_a_wald_p_near_0_11(counts):
    # ../shared/reference/stalwart-paper.md section 8.1, by hand: SE 1.0975, z 1.608, p 0.108
    row = _row(recompute_published(counts), "Wald p implied by the published CI")
    assert row.p_value == pytest.approx(0.108, abs=0.001)


def test_no_method_gives_the_published_p(counts):
    rows = recompute_published(counts)
    closest = closest_to_published(counts, rows)
    assert closest.p_value is not None and closest.p_value > 2 * counts.p_value
    assert all(r.to_dict()["method"] for r in rows)


def test_no_control_events_leaves_cox_infinite_but_firth_finite(counts):
    sparse = dataclasses.replace(counts, events_control=0)
    rows = recompute_published(sparse)
    assert _row(rows, "Cox (Efron), Wald").estimate is None
    firth = _row(rows, "Firth-penalized Cox (Breslow), penalized LR, profile CI")
    assert firth.estimate is not None and np.isfinite(firth.estimate)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"events_treated": 200}, "more events than participants"),
        ({"n_control": 0, "events_control": 0}, "at least one participant"),
        ({"events_control": -1}, "whole number"),
        ({"follow_up_days": 0}, "follow_up_days"),
    ],
)
def test_bad_counts_are_refused(counts, change, message):
    with pytest.raises(ConfigurationError, match=message):
        dataclasses.replace(counts, **change)


def test_no_events_at_all_is_a_clear_error(counts):
    with pytest.raises(AnalysisError, match="no events"):
        recompute_published(dataclasses.replace(counts, events_treated=0, events_control=0))
