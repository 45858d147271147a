"""Published versus recomputed: every standard test applied to a publication's event counts.

A paper often reports a hazard ratio, its CI and a p-value for a comparison with few events
(STALWART: 12 of 176 on IL-2 vs 1 of 91 on no therapy, HR 5.84, CI 0.59-43.57, p = 0.009)
without saying which test gave the p. This module rebuilds a data set consistent with the counts
and runs each test a statistician might have used (Cox Wald, score and likelihood-ratio, log-rank,
Firth-penalized Cox, the exact conditional test with its mid-p, Fisher's exact test), so a reader
can see which published figure each method reproduces.

The reconstruction assumes what the publication does not give, and says so in every row: equal
follow-up for everyone (``follow_up_days``), no dropout, and event times spread evenly over
follow-up within each arm. The counts fix the exact, Fisher and (nearly) the log-rank results;
the Cox-based figures move a little with the unknown event times.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

import numpy as np

from stalwart.analysis.kernels._distributions import norm_ppf, norm_sf
from stalwart.analysis.kernels.cox import cox_ph
from stalwart.analysis.kernels.exact import rate_ratio_exact_test
from stalwart.analysis.kernels.firth import firth_cox
from stalwart.analysis.kernels.fisher import fisher_exact
from stalwart.analysis.kernels.logrank import logrank_test
from stalwart.errors import AnalysisError, ConfigurationError

__all__ = [
    "PublishedCounts",
    "RecomputedTest",
    "closest_to_published",
    "published_counts",
    "recompute_published",
    "reconstruct",
]


@dataclass(frozen=True)
class PublishedCounts:
    """A published two-group comparison of time to event: counts and the reported figures."""

    label: str
    treated: str
    control: str
    events_treated: int
    n_treated: int
    events_control: int
    n_control: int
    follow_up_days: float
    hazard_ratio: float
    ci_low: float
    ci_high: float
    p_value: float
    source: str

    def __post_init__(self) -> None:
        for name in ("events_treated", "n_treated", "events_control", "n_control"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigurationError(f"{name} must be a whole number >= 0, got {value!r}")
        if self.events_treated > self.n_treated or self.events_control > self.n_control:
            raise ConfigurationError(
                f"{self.label}: more events than participants "
                f"({self.events_treated}/{self.n_treated}, {self.events_control}/{self.n_control})"
            )
        if self.n_treated == 0 or self.n_control == 0:
            raise ConfigurationError(f"{self.label}: each group needs at least one participant")
        if not self.follow_up_days > 0:
            raise ConfigurationError(f"follow_up_days must be > 0, got {self.follow_up_days!r}")


@dataclass(frozen=True)
class RecomputedTest:
    """One method applied to the reconstructed data: estimate, CI and p, or why not."""

    method: str
    estimate_name: str
    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    note: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (non-finite numbers become None)."""
        out = asdict(self)
        for key in ("estimate", "ci_low", "ci_high", "p_value"):
            value = out[key]
            if value is not None and not math.isfinite(value):
                out[key] = None
        return out


def published_counts(study_id: str) -> PublishedCounts | None:
    """The ``[recompute]`` table of ``<study>.published.toml``, or None when there is none."""
    path = resources.files("stalwart.protocol") / "studies" / f"{study_id.lower()}.published.toml"
    if not path.is_file():
        return None
    table = tomllib.loads(path.read_text(encoding="utf-8")).get("recompute")
    if table is None:
        return None
    try:
        return PublishedCounts(**table)
    except TypeError as exc:
        raise ConfigurationError(f"{path.name} [recompute]: {exc}") from None


def _arm_times(events: int, n: int, follow_up: float) -> tuple[np.ndarray, np.ndarray]:
    # events at the midpoints of `events` equal slices of follow-up; the rest censored at its end
    event_times = follow_up * (np.arange(events) + 0.5) / max(events, 1)
    time = np.concatenate([event_times, np.full(n - events, follow_up)])
    event = np.concatenate([np.ones(events), np.zeros(n - events)])
    return time, event


def reconstruct(counts: PublishedCounts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(time in days, event 0/1, treated 0/1) consistent with the published counts."""
    t1, e1 = _arm_times(counts.events_treated, counts.n_treated, counts.follow_up_days)
    t0, e0 = _arm_times(counts.events_control, counts.n_control, counts.follow_up_days)
    treated = np.concatenate([np.ones(t1.size), np.zeros(t0.size)])
    return np.concatenate([t1, t0]), np.concatenate([e1, e0]), treated


def _published_ci_wald_p(counts: PublishedCounts, alpha: float) -> RecomputedTest:
    """The Wald p that the published CI itself implies (SE from its width on the log scale)."""
    z = norm_ppf(1 - alpha / 2)
    se = (math.log(counts.ci_high) - math.log(counts.ci_low)) / (2 * z)
    p = float(2 * norm_sf(abs(math.log(counts.hazard_ratio)) / se))
    centre = math.exp((math.log(counts.ci_high) + math.log(counts.ci_low)) / 2)
    return RecomputedTest(
        "Wald p implied by the published CI",
        "hazard ratio",
        counts.hazard_ratio,
        counts.ci_low,
        counts.ci_high,
        p,
        f"SE of log HR from the CI width = {se:.3f}; the CI is centred on {centre:.2f}, "
        f"not {counts.hazard_ratio:g} (published figures only, no reconstruction)",
    )


def recompute_published(counts: PublishedCounts, alpha: float = 0.05) -> list[RecomputedTest]:
    """Each standard test of the published comparison, on data rebuilt from its counts."""
    if counts.events_treated + counts.events_control == 0:
        raise AnalysisError(f"{counts.label}: no events, nothing to recompute")
    time, event, treated = reconstruct(counts)
    assumed = f"rebuilt: follow-up {counts.follow_up_days:g} days for all, events evenly spread"
    rows = [_published_ci_wald_p(counts, alpha)]
    x = treated.reshape(-1, 1)
    cox = cox_ph(time, event, x, ties="efron", alpha=alpha, profile_ci=True)
    if cox.monotone_likelihood:
        rows.append(
            RecomputedTest(
                "Cox (Efron), Wald",
                "hazard ratio",
                None,
                None,
                None,
                None,
                "monotone likelihood: no events in one group, the estimate is infinite",
            )
        )
    else:
        hr = float(cox.hazard_ratio[0])
        rows += [
            RecomputedTest(
                "Cox (Efron), Wald",
                "hazard ratio",
                hr,
                float(cox.ci_low[0]),
                float(cox.ci_high[0]),
                float(cox.p_value[0]),
                assumed,
            ),
            RecomputedTest(
                "Cox (Efron), likelihood ratio, profile CI",
                "hazard ratio",
                hr,
                float(cox.profile_ci_low[0]) if cox.profile_ci_low is not None else None,
                float(cox.profile_ci_high[0]) if cox.profile_ci_high is not None else None,
                float(cox.lr_p_value),
                assumed,
            ),
            RecomputedTest(
                "Cox (Efron), score",
                "hazard ratio",
                hr,
                None,
                None,
                float(cox.score_p_value),
                assumed,
            ),
        ]
    lr = logrank_test(time, event, treated)
    rows.append(RecomputedTest("Log-rank", "", None, None, None, float(lr.p_value), assumed))
    firth = firth_cox(time, event, x, alpha=alpha)
    rows.append(
        RecomputedTest(
            "Firth-penalized Cox (Breslow), penalized LR, profile CI",
            "hazard ratio",
            float(firth.hazard_ratio[0]),
            float(firth.ci_low[0]),
            float(firth.ci_high[0]),
            float(firth.p_value[0]),
            assumed,
        )
    )
    person_time1 = float(time[treated == 1].sum())
    person_time0 = float(time[treated == 0].sum())
    exact = rate_ratio_exact_test(
        counts.events_treated,
        person_time1,
        counts.events_control,
        person_time0,
        conf_level=1 - alpha,
    )
    pt_note = f"person-time {person_time1:.0f} vs {person_time0:.0f} days ({assumed})"
    rows += [
        RecomputedTest(
            "Exact conditional (Poisson rates), two-sided",
            "rate ratio",
            float(exact.rate_ratio),
            float(exact.ci_low),
            float(exact.ci_high),
            float(exact.p_value),
            pt_note,
        ),
        RecomputedTest(
            "Exact conditional (Poisson rates), mid-p",
            "rate ratio",
            float(exact.rate_ratio),
            None,
            None,
            float(exact.mid_p),
            pt_note,
        ),
    ]
    table = [
        [counts.events_treated, counts.n_treated - counts.events_treated],
        [counts.events_control, counts.n_control - counts.events_control],
    ]
    fisher = fisher_exact(table, conf_level=1 - alpha)
    rows.append(
        RecomputedTest(
            "Fisher's exact (proportions with an event)",
            "odds ratio",
            float(fisher.odds_ratio),
            float(fisher.ci_low),
            float(fisher.ci_high),
            float(fisher.p_value),
            "counts only, no assumption on times",
        )
    )
    return rows


def closest_to_published(counts: PublishedCounts, rows: list[RecomputedTest]) -> RecomputedTest:
    """The row whose p is nearest the published p on the log scale."""
    candidates = [r for r in rows if r.p_value is not None and r.p_value > 0]
    if not candidates:
        raise AnalysisError("no recomputed p-value to compare")
    target = math.log(counts.p_value)
    return min(candidates, key=lambda r: abs(math.log(r.p_value or 1.0) - target))
