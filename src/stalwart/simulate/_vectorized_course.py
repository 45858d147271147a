"""One arm's participants of a replicate stream followed through the model together.

:class:`Cohort` runs model.py's steps in its order on arrays: dropout day, cycles declined,
clinical events, cycles started with their AEs and toxicity rules, doses taken, labs at the
visits attended, background AEs and the disposition. The first-event day solves
``sum_{j<=d} h(j) >= Exp(1)`` in closed form: the daily hazard ``exp(-k * C_nat(j))`` is geometric
in ``j`` while the natural CD4 path is above its floor and constant below it, so its cumulative
sum and the inverse are exact expressions instead of model.py's cumulative sum over every day.
Most participants have no event in follow-up: a bound on their hazard mass up to the horizon
(:func:`~stalwart.simulate._vectorized_hazard.may_reach`) leaves them out before the exact
solution, which then runs on the few kept (the same days; nothing reads a day after the horizon).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from numpy.typing import NDArray

from stalwart.simulate._vectorized_hazard import (
    FAR,
    hazard_shape,
    may_reach,
    merged_windows,
    next_event_in_windows,
)
from stalwart.simulate._vectorized_plan import ArmPlan, BoolArray, CyclePlan, IntArray, Plan
from stalwart.simulate.equations import (
    DAYS_PER_YEAR,
    FloatArray,
    art_suppression_decay,
    art_suppression_fade_days,
    art_suppression_step,
    daily_event_rate,
    event_hazard_slope,
    il2_excess_window,
    log10_hiv_rna,
    measured_cd4,
    measured_log10_hiv_rna,
    natural_cd4,
    true_cd4,
)
from stalwart.simulate.parameters import ModelParameters

__all__ = ["COMPLETED", "DEATH", "LOST", "WITHDREW", "Cohort", "empty_outputs"]

COMPLETED, LOST, WITHDREW, DEATH = range(4)
"""Disposition codes, indices into ``vectorized.DISPOSITION_STATUSES``."""


class Cohort:
    """The participants of one arm in one stream, followed through model.py's steps together.

    With ``outcomes`` (the ``outcomes`` fidelity) only what the analyses read is drawn, each from
    the same law: CD4 at the simulated visits (no HIV RNA, no ART days), events, dispositions and
    last contacts. A started cycle's grade >= 3 treatment-related AEs matter to the outcomes only
    through the first one's onset (withholding and stopping), drawn by inverting its exact
    distribution (``CyclePlan.severe_cdf``) with one uniform. AE details are drawn term by term,
    as in the full mode, only for those who will be lost to follow-up, whose last contact is
    their last recorded data (the lost-to-follow-up coin is independent of everything else, so
    it is tossed first); ``ae_max_grade`` is not drawn.
    """

    def __init__(
        self,
        plan: Plan,
        params: ModelParameters,
        arm: ArmPlan,
        rng: np.random.Generator,
        latent: Mapping[str, FloatArray],
        outcomes: bool = False,
    ) -> None:
        self.plan = plan
        self.outcomes = outcomes
        self.p = params
        self.arm = arm
        self.rng = rng
        self.x = latent
        self.n = len(latent["cd4"])
        n, cycles = self.n, len(arm.cycles)
        self.end_day = latent["end_day"]
        self.stop = np.full(n, np.inf)
        self.death = np.full(n, np.inf)
        self.first_oi = np.full(n, np.inf)
        self.last_event = np.zeros(n)
        self.fraction = np.zeros((n, cycles))
        self.started = np.zeros((n, cycles), dtype=bool)
        self.art_taken: list[BoolArray] = []
        self.last_dose = np.zeros(n)
        self.ae_days: list[tuple[IntArray, FloatArray]] = []
        self.ae_grade = np.zeros((n, len(plan.ae_terms)), dtype=np.int8)

    def run(self) -> dict[str, np.ndarray]:
        """The cohort's outputs by :func:`empty_outputs` key; in the outcomes mode those not
        drawn (HIV RNA, AE grades) are left out: the empty outputs hold their values."""
        p, n, rng = self.p, self.n, self.rng
        if self.arm.dropout_rate > 0:
            scale = DAYS_PER_YEAR / self.arm.dropout_rate
            dropout = 1.0 + np.floor(np.minimum(rng.standard_exponential(n) * scale, FAR))
        else:
            dropout = self.end_day + 1.0
        self.dropped = dropout < self.end_day
        self.horizon = np.where(self.dropped, dropout, self.end_day)
        if self.outcomes:  # who may be lost to follow-up (if alive): they need AE details
            coin = rng.random(int(self.dropped.sum())) < p.lost_to_follow_up_share.value
            self.detail = np.zeros(n, dtype=bool)
            self.detail[np.flatnonzero(self.dropped)[coin]] = True
        skip = p.cycle_not_started_probability.value
        intends = rng.random((n, len(self.arm.cycles))) >= skip
        self._clinical_events(intends)
        self.last_day = np.where(np.isfinite(self.death), self.death - 1.0, self.horizon)
        self._treatment(intends)
        labs = self._labs()
        self._background_aes()
        status, end = self._disposition(labs["visit_day"])
        out = {
            **labs,
            "first_oi_day": self.first_oi,
            "death_day": self.death,
            "status": status,
            "end_day": end,
        }
        if not self.outcomes:  # grades are not drawn in the outcomes mode (empty_outputs' 0)
            out["ae_max_grade"] = self.ae_grade
        return out

    # -- opportunistic events and death ------------------------------------------------------------
    def _clinical_events(self, intends: BoolArray) -> None:
        p, x, rng = self.p, self.x, self.rng
        kappa = event_hazard_slope(p)
        scale = daily_event_rate(p, x["frailty"]) * math.exp(kappa * p.event_reference_cd4.value)
        # each intended cycle's IL-2 exposure window; a stop before its first day removes it
        cycles = len(self.arm.cycles)
        self.window_lo = np.full((self.n, cycles), np.inf)
        self.window_hi = np.full((self.n, cycles), -np.inf)
        for k, cycle in enumerate(self.arm.cycles):
            if len(cycle.il2_days):
                first, last = il2_excess_window(p, cycle.il2_days.tolist())
                self.window_lo[:, k] = np.where(intends[:, k], first, np.inf)
                self.window_hi[:, k] = np.where(intends[:, k], last, -np.inf)
        ratio = p.il2_event_hazard_ratio.value
        # the largest multiplier of a participant's daily hazard: the IL-2 hazard ratio on the
        # days of an exposure window (a later stop only removes windows), else 1
        exposed = np.isfinite(self.window_lo).any(axis=1)
        self.factor = np.where(exposed, max(ratio, 1.0), 1.0)
        who = np.arange(self.n)
        day = np.zeros(self.n)
        later = 1.0
        first = True
        while len(who):
            e = rng.standard_exponential(len(who))
            day = self._next_event(scale, who, day + 1.0, e, ratio, later)
            hit = day <= self.horizon[who]
            who, day = who[hit], day[hit]
            self.last_event[who] = day
            death = (
                p.first_event_death_probability.value
                if first
                else p.later_event_death_probability.value
            )
            dies = rng.random(len(who)) < death
            self.death[who[dies]] = day[dies]
            who, day = who[~dies], day[~dies]
            if first:
                self.first_oi[who] = day
            self._maybe_stop(who, day)
            later, first = p.later_event_hazard_ratio.value, False

    def _next_event(
        self,
        scale: FloatArray,
        who: IntArray,
        start: FloatArray,
        e: FloatArray,
        ratio: float,
        later: float,
    ) -> FloatArray:
        """Next event day of participants ``who`` from ``start`` (inf: none by the horizon).

        Only the rows that may reach their horizon (:func:`may_reach`) are solved, their hazard
        shape computed for them alone: the others' days would be after it, and nothing reads a
        day after the horizon.
        """
        x = self.x
        whole = who.size == self.n
        rate = scale * later if whole else scale[who] * later
        near = np.flatnonzero(
            may_reach(
                self.p,
                x["cd4"] if whole else x["cd4"][who],
                x["decline"] if whole else x["decline"][who],
                rate,
                start,
                e,
                self.horizon[who],
                self.factor[who],
            )
        )
        day = np.full(len(who), np.inf)
        rows = who[near]
        h = hazard_shape(self.p, x["cd4"][rows], x["decline"][rows])
        lo, hi = merged_windows(self.window_lo[rows], self.window_hi[rows])
        used = (lo <= hi).any(axis=0)  # a window empty in every row adds nothing: left out
        day[near] = next_event_in_windows(
            h, rate[near], start[near], e[near], lo[:, used], hi[:, used], ratio
        )
        return day

    def _maybe_stop(self, who: IntArray, day: FloatArray) -> None:
        """After an opportunistic event, treatment stops (once) with its probability."""
        free = ~np.isfinite(self.stop[who])
        who, day = who[free], day[free]
        stops = self.rng.random(len(who)) < self.p.event_stop_treatment_probability.value
        who, day = who[stops], day[stops]
        self.stop[who] = day
        later = self.window_lo[who] >= day[:, None]  # cycles not reached: no IL-2, no excess
        self.window_lo[who] = np.where(later, np.inf, self.window_lo[who])
        self.window_hi[who] = np.where(later, -np.inf, self.window_hi[who])

    # -- doses and treatment-related adverse events ---------------------------------------------
    def _treatment(self, intends: BoolArray) -> None:
        stopped = np.zeros(self.n, dtype=bool)
        for k, cycle in enumerate(self.arm.cycles):
            start = float(cycle.first_day)
            started = (start <= self.last_day) & intends[:, k] & ~stopped & ~(self.stop <= start)
            self.started[:, k] = started
            who = np.flatnonzero(started)
            if self.outcomes:
                self._outcomes_cycle(cycle, k, who, stopped)
                continue
            severe = self._cycle_aes(cycle, who)
            has_severe = np.isfinite(severe)
            skips = self.rng.random(len(who)) < self.p.toxicity_skip_rest_of_cycle_probability.value
            withhold = np.where(has_severe & skips, severe, np.inf)
            self._doses(cycle, k, who, withhold)
            halts = self.rng.random(len(who)) < self.p.toxicity_stop_treatment_probability.value
            stopped[who[has_severe & halts]] = True

    def _outcomes_cycle(self, cycle: CyclePlan, k: int, who: IntArray, stopped: BoolArray) -> None:
        """A started cycle in the outcomes mode: the first severe onset, withholding, doses."""
        rng, p = self.rng, self.p
        severe = np.full(len(who), np.inf)
        detailed = self.detail[who]
        fast = np.flatnonzero(~detailed)
        if len(cycle.severe_days) and len(fast):
            index = np.searchsorted(cycle.severe_cdf, rng.random(len(fast)), side="right")
            onset = np.where(
                index < len(cycle.severe_days),
                cycle.severe_days[np.minimum(index, len(cycle.severe_days) - 1)],
                np.inf,
            )
            # severe AEs from the stop day on are not drawn (model.py): the first is before it
            severe[fast] = np.where(onset < self.stop[who[fast]], onset, np.inf)
        slow = np.flatnonzero(detailed)
        if len(slow):
            severe[slow] = self._cycle_aes(cycle, who[slow])
        heavy = np.flatnonzero(np.isfinite(severe))
        withhold = np.full(len(who), np.inf)
        skips = rng.random(len(heavy)) < p.toxicity_skip_rest_of_cycle_probability.value
        withhold[heavy[skips]] = severe[heavy[skips]]
        self._doses(cycle, k, who, withhold)
        halts = rng.random(len(heavy)) < p.toxicity_stop_treatment_probability.value
        stopped[who[heavy[halts]]] = True

    def _cycle_aes(self, cycle: CyclePlan, who: IntArray) -> FloatArray:
        """Draw the cycle's treatment-related AEs; return each one's first grade >= 3 onset."""
        rng = self.rng
        lo, hi = self.plan.grade_range
        severe = np.full(len(who), np.inf)
        for group in cycle.groups:
            terms = len(group.chance)
            hit = np.flatnonzero(rng.random((len(who), terms)) < group.chance)
            row, term = np.divmod(hit, terms)
            onset = group.days[rng.integers(len(group.days), size=len(row))].astype(np.float64)
            kept = ~(self.stop[who[row]] <= onset)
            row, term, onset = row[kept], term[kept], onset[kept]
            u = rng.random(len(row))
            pick = np.zeros(len(row), dtype=np.int64)
            for g in range(group.grade_cdf.shape[1] - 1):  # searchsorted, column by column
                pick += group.grade_cdf[term, g] <= u
            grade = np.clip(1 + np.minimum(pick, group.grade_count[term] - 1), lo, hi)
            heavy = np.flatnonzero(grade >= 3)
            np.minimum.at(severe, row[heavy], onset[heavy])
            recorded = onset <= self.last_day[who[row]]
            self._record_aes(
                who[row[recorded]],
                group.term[term[recorded]],
                grade[recorded],
                onset[recorded],
                True,
            )
        return severe

    def _record_aes(
        self, who: IntArray, term: IntArray, grade: IntArray, day: FloatArray, unique: bool
    ) -> None:
        """Worst grade per (participant, term); onsets kept for the last contact."""
        self.ae_days.append((who, day))
        if self.outcomes:  # grades are not drawn in the outcomes mode
            return
        flat = self.ae_grade.reshape(-1)
        index = who * self.ae_grade.shape[1] + term
        if unique:  # each (participant, term) at most once in this call
            flat[index] = np.maximum(flat[index], grade.astype(np.int8))
        else:
            np.maximum.at(flat, index, grade.astype(np.int8))

    def _doses(self, cycle: CyclePlan, k: int, who: IntArray, withhold: FloatArray) -> None:
        """IL-2 fraction taken and ART days taken; doses on days not withheld, up to last_day."""
        p, rng = self.p, self.rng
        last = self.last_day[who][:, None]
        stop = self.stop[who][:, None]
        take = p.administration_taken_probability.value
        if len(cycle.il2_days):
            # IL-2 days allowed: on or before the last day and the withholding, before the stop
            il2_days = np.sort(cycle.il2_days).astype(np.float64)
            n_allowed = np.minimum(
                np.searchsorted(il2_days, np.minimum(self.last_day[who], withhold), side="right"),
                np.searchsorted(il2_days, self.stop[who], side="left"),
            )
            given = rng.binomial(cycle.il2_per_day * n_allowed, take)
            self.fraction[who, k] = given / (cycle.il2_per_day * len(cycle.il2_days))
        position = np.searchsorted(cycle.dose_days, self.last_day[who], side="right") - 1
        recorded = position >= 0
        self.last_dose[who[recorded]] = np.maximum(
            self.last_dose[who[recorded]], cycle.dose_days[position[recorded]]
        )
        if self.outcomes:  # ART days only move HIV RNA, not drawn in the outcomes mode
            return
        taken = np.zeros((self.n, len(cycle.art_days)), dtype=bool)
        if len(cycle.art_days):
            days = cycle.art_days[None, :]
            allowed = (days <= last) & (days <= withhold[:, None]) & (days < stop)
            any_taken = 1.0 - (1.0 - take) ** cycle.art_per_day
            taken[who] = allowed & (rng.random(allowed.shape) < any_taken)
        self.art_taken.append(taken)

    # -- visits and laboratory results ------------------------------------------------------------
    def _visit_days(
        self, target: IntArray, before: IntArray, after: IntArray, who: IntArray | None = None
    ) -> FloatArray:
        """Day attended of each visit (model.py's _visit_days), NaN when not attended."""
        p, rng = self.p, self.rng
        sel = slice(None) if who is None else who
        end, last = self.end_day[sel][:, None], self.last_day[sel][:, None]
        shape = (len(end), len(target))
        missed = (rng.random(shape) < p.missed_visit_probability.value) & (target != 0)
        lo = np.maximum(target - before, 0)
        hi = np.minimum(target + after, end)
        jitter = np.rint(rng.normal(0.0, p.visit_date_sd.value, shape))
        day = np.minimum(np.maximum(target + jitter, lo), hi)
        attended = ~missed & (lo <= hi) & (day <= last)
        out: FloatArray = np.where(attended, day, np.nan)
        return out

    def _labs(self) -> dict[str, np.ndarray]:
        plan, p, x, rng = self.plan, self.p, self.x, self.rng
        day = self._visit_days(plan.visit_days, plan.visit_before, plan.visit_after)
        seen = ~np.isnan(day)
        t = np.where(seen, day, 0.0).astype(np.int64)
        exposure = np.zeros(t.shape)
        rise = np.zeros(t.shape)
        for k, cycle in enumerate(self.arm.cycles):
            exposure += self.fraction[:, k : k + 1] * cycle.cd4_kernel[t]
            if not self.outcomes:  # the HIV RNA rise: not drawn in the outcomes mode
                rise += self.fraction[:, k : k + 1] * cycle.rna_kernel[t]
        natural = natural_cd4(p, x["cd4"][:, None], x["decline"][:, None], t)
        cd4_true = true_cd4(p, natural, x["response"][:, None], exposure)
        other = np.broadcast_to(x["other"][:, None], t.shape)
        cd4, _ = measured_cd4(p, cd4_true, other, rng.standard_normal((2, *t.shape)))
        recorded = np.where(seen, np.rint(np.minimum(cd4, plan.cd4_max)), np.nan)
        if self.outcomes:  # HIV RNA is not drawn: its outputs keep empty_outputs' NaN/False
            return {"cd4": recorded, "visit_day": np.where(seen, t, -1).astype(np.int16)}
        suppression = self._art_suppression(t)
        log_rna = measured_log10_hiv_rna(
            p,
            log10_hiv_rna(p, x["setpoint"][:, None], rise, suppression),
            rng.standard_normal(t.shape),
        )
        rna = np.minimum(10.0**log_rna, plan.rna_max)
        below = rna < plan.rna_limit
        with np.errstate(divide="ignore"):
            logged = np.where(below, plan.rna_below_log10, np.log10(np.rint(rna)))
        return {
            "cd4": recorded,
            "visit_day": np.where(seen, t, -1).astype(np.int16),
            "log10_hiv_rna": np.where(seen, logged, np.nan),
            "hiv_rna_below_limit": seen & below,
        }

    def _art_suppression(self, t: IntArray) -> FloatArray:
        """log10 suppression on the mornings of days ``t`` from the ART days taken (model.py's
        recurrence: up on a day taken, down otherwise, between 0 and the cap)."""
        p = self.p
        out = np.zeros(t.shape)
        level = np.zeros(self.n)
        previous_last: int | None = None
        fade = art_suppression_fade_days(p)  # days after a course by which the level is back to 0
        plan = self.plan
        earliest = np.maximum(plan.visit_days - plan.visit_before, 0)
        latest = plan.visit_days + plan.visit_after
        courses = [(c, taken) for c, taken in zip(self.arm.cycles, self.art_taken, strict=True)]
        courses = [(c, taken) for c, taken in courses if len(c.art_days)]
        for k, (cycle, taken) in enumerate(courses):
            first, last = int(cycle.art_days[0]), int(cycle.art_days[-1])
            seen = bool(np.any((latest >= first) & (earliest <= last + fade)))
            following = courses[k + 1][0].art_days[0] if k + 1 < len(courses) else math.inf
            if not seen and following > last + fade:  # no visit sees it, nor the next course
                level, previous_last = np.zeros(self.n), None
                continue
            if previous_last is not None:
                level = art_suppression_decay(p, level, first - previous_last - 1)
            mornings = np.empty((self.n, last - first + 2))
            on_day = np.zeros((self.n, last - first + 1), dtype=bool)
            on_day[:, cycle.art_days - first] = taken
            for i in range(last - first + 1):
                mornings[:, i] = level
                level = art_suppression_step(p, level, on_day[:, i])
            mornings[:, -1] = level
            inside = t >= first
            within = np.take_along_axis(mornings, np.clip(t - first, 0, last - first + 1), axis=1)
            after = art_suppression_decay(p, level[:, None], t - last - 1)
            out = np.where(inside, np.where(t <= last + 1, within, after), out)
            previous_last = last
        return out

    # -- background adverse events and disposition -----------------------------------------------
    def _background_aes(self) -> None:
        plan, p, rng = self.plan, self.p, self.rng
        if not len(plan.background_term):
            return
        # outcomes mode: only the last contact of those who may be lost reads them
        owners = np.flatnonzero(self.detail) if self.outcomes else np.arange(self.n)
        last = np.maximum(self.last_day[owners], 0.0)
        mean = np.where(last >= 1, p.background_ae_rate_per_year.value * last / DAYS_PER_YEAR, 0.0)
        count = rng.poisson(mean)
        who = np.repeat(owners, count)
        day = rng.integers(1, np.maximum(self.last_day[who], 0.0).astype(np.int64) + 1)
        u = rng.random((2, len(who)))
        term = plan.background_term[_pick(plan.background_cdf, u[0])]
        grade = np.clip(1 + _pick(plan.background_grades, u[1]), *plan.grade_range)
        self._record_aes(who, term, grade, day.astype(np.float64), False)

    def _disposition(
        self, visit_day: NDArray[np.int16]
    ) -> tuple[NDArray[np.int8], NDArray[np.int32]]:
        p = self.p
        dead = np.isfinite(self.death)
        status = np.where(dead, DEATH, np.where(self.dropped, WITHDREW, COMPLETED))
        leaving = np.flatnonzero(self.dropped & ~dead)
        if self.outcomes:  # the coin tossed at the start
            lost = leaving[self.detail[leaving]]
        else:
            lost = leaving[self.rng.random(len(leaving)) < p.lost_to_follow_up_share.value]
        status[lost] = LOST
        end = np.where(dead, self.death, self.horizon)
        end[lost] = self._last_contact(lost, visit_day[lost])
        return status.astype(np.int8), end.astype(np.int32)

    def _last_ae(self, who: IntArray) -> FloatArray:
        """Latest recorded AE onset of participants ``who`` (0 when none)."""
        position = np.full(self.n, -1)
        position[who] = np.arange(len(who))
        out = np.zeros(len(who))
        for owner, day in self.ae_days:
            mine = position[owner]
            keep = mine >= 0
            np.maximum.at(out, mine[keep], day[keep])
        return out

    def _last_contact(self, who: IntArray, simulated: NDArray[np.int16]) -> FloatArray:
        """Last day with data of participants lost to follow-up: visits (all of them: cycle and
        extended ones too), doses, AEs and events, as model.py dates the disposition."""
        plan, end = self.plan, self.end_day[who]
        extended = plan.extended_first + plan.extended_step * np.arange(
            max((plan.longest - plan.extended_first) // plan.extended_step + 1, 0)
        )
        window = np.full(len(extended), plan.extended_window)
        cycle = self.arm.cycle_visits
        target = np.concatenate([plan.other_visits[:, 0], cycle[:, 0], extended])
        before = np.concatenate([plan.other_visits[:, 1], cycle[:, 1], window])
        after = np.concatenate([plan.other_visits[:, 2], cycle[:, 2], window])
        present = np.concatenate(
            [
                np.ones((len(who), len(plan.other_visits)), dtype=bool),
                self.started[who][:, cycle[:, 3]],
                extended[None, :] <= end[:, None],
            ],
            axis=1,
        )
        seen = np.where(present, self._visit_days(target, before, after, who), np.nan)
        days = [
            simulated.max(axis=1, initial=0).astype(np.float64),
            np.nanmax(seen, axis=1, initial=0.0),
            self.last_dose[who],
            self._last_ae(who),
            self.last_event[who],
        ]
        out: FloatArray = np.max(np.vstack(days), axis=0)
        return out


def empty_outputs(plan: Plan, size: int) -> dict[str, np.ndarray]:
    v, t = len(plan.visits), len(plan.ae_terms)
    return {
        "cd4": np.full((size, v), np.nan),
        "visit_day": np.full((size, v), -1, dtype=np.int16),
        "log10_hiv_rna": np.full((size, v), np.nan),
        "hiv_rna_below_limit": np.zeros((size, v), dtype=bool),
        "first_oi_day": np.full(size, np.inf),
        "death_day": np.full(size, np.inf),
        "status": np.zeros(size, dtype=np.int8),
        "end_day": np.zeros(size, dtype=np.int32),
        "ae_max_grade": np.zeros((size, t), dtype=np.int8),
    }


def _pick(cdf: FloatArray, u: FloatArray) -> IntArray:
    """model.py's ``_pick`` on arrays: ``min(searchsorted(cdf, u, "right"), len(cdf) - 1)``."""
    out = np.zeros(len(u), dtype=np.int64)
    for edge in cdf[:-1]:
        out += edge <= u
    return out
