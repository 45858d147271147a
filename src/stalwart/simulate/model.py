"""The calibrated per-participant model of STALWART: what happens to a randomized participant.

:func:`simulate_participant` follows a randomized candidate (drawn at screening by
:func:`stalwart.simulate.candidates.simulate_candidate`) from study day 0 (randomization) through
the protocol calendar to the end of follow-up, death, or dropout, and returns what a site would
record: laboratory results at the visits attended, doses taken, adverse events, clinical events,
and the disposition.

The model, in order of simulation (parameters and their sources: ``parameters.toml``; the
equations: :mod:`stalwart.simulate.equations`; the calibration:
:mod:`stalwart.simulate.calibration`):

* **Dropout.** A constant per-arm hazard gives the day a participant would leave; half of those
  leaving are lost to follow-up (last contact = last recorded data), half withdraw (on that day).
* **Clinical events.** Daily hazard ``frailty * rate * exp(slope * (ref - C_nat(t)) / 100)``,
  times the IL-2 hazard ratio from the first IL-2 day of the first cycle started. ``C_nat`` is the
  natural CD4 path (linear decline, set-point dependent); IL-2-induced cells do not protect. A
  first event is death with probability 0.2; later events have a doubled hazard. After an
  opportunistic event, treatment (rest of cycle and later cycles) stops with probability 0.8.
* **Treatment.** Cycles group the calendar's dose days (anchored ART joins its IL-2 cycle). A
  cycle is started unless declined, stopped by an earlier event, or stopped after toxicity.
  Treatment-related AEs of a started cycle are drawn first (each term at most once, onset on a
  dose day of its treatment); after a first grade >= 3 one the rest of the cycle may be withheld,
  and after the cycle all later cycles may be stopped. Each administration is taken with
  probability 0.97.
* **Laboratory results** at the visits attended (entry always; others missed with probability
  0.05; cycle visits only for started cycles), on dates jittered around the target and clipped to
  the window: CD4 = natural path + IL-2 gain (per cycle, proportional to the fraction of
  injections taken and the individual response); CD4% = CD4 / (CD4 + other lymphocytes); the
  count is measured as lymphocytes x CD4% with independent errors. log10 HIV RNA = set point +
  IL-2 transient rise - ART suppression (builds on ART days, rebounds after) + noise.
* **Background AEs** at a constant rate in every arm, unrelated to treatment.

Treatment effects follow the treatment codes in the calendar (``IL2``, ``ART``), never arm codes;
only the dropout rates are keyed by arm. Everything random comes from the ``rng`` argument.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from stalwart.errors import ConfigurationError
from stalwart.protocol.calendar import Calendar
from stalwart.protocol.schema import Protocol
from stalwart.simulate.candidates import Candidate
from stalwart.simulate.cycles import ART_TREATMENT, IL2_TREATMENT, TreatmentCycle, treatment_cycles
from stalwart.simulate.equations import (
    DAYS_PER_YEAR,
    FloatArray,
    art_suppression_fade_days,
    art_suppression_step,
    event_hazard,
    il2_cd4_kernel,
    il2_excess_window,
    il2_hiv_rna_kernel,
    log10_hiv_rna,
    measured_cd4,
    measured_log10_hiv_rna,
    natural_cd4,
    true_cd4,
)
from stalwart.simulate.parameters import ModelParameters
from stalwart.simulate.tables import model_tables, pick

__all__ = [
    "AdverseEventDraw",
    "ClinicalEventDraw",
    "Disposition",
    "DoseTaken",
    "LabDraw",
    "ParticipantCourse",
    "simulate_participant",
]

DispositionStatus = Literal["COMPLETED", "LOST TO FOLLOW-UP", "WITHDREW", "DEATH"]


# ---------------------------------------------------------------------------------------------
# Public records
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LabDraw:
    """Laboratory results of one attended visit; ``hiv_rna`` in copies/mL, not censored."""

    visit_code: str
    date: dt.date
    cd4: float
    cd4_percent: float
    hiv_rna: float


@dataclass(frozen=True)
class DoseTaken:
    """Administrations taken on one planned dose day (0 when withheld or missed)."""

    treatment: str
    cycle: int
    date: dt.date
    administrations: int


@dataclass(frozen=True)
class AdverseEventDraw:
    """An adverse event: protocol term, DAIDS grade, dates (``end`` None: ongoing), relatedness."""

    term: str
    grade: int
    start: dt.date
    end: dt.date | None
    related: str
    serious: bool


@dataclass(frozen=True)
class ClinicalEventDraw:
    """An opportunistic event or death, coded from the protocol's clinical-event list."""

    code: str
    date: dt.date


@dataclass(frozen=True)
class Disposition:
    """How follow-up ended, dated at the last contact."""

    status: DispositionStatus
    date: dt.date


@dataclass(frozen=True)
class ParticipantCourse:
    """Everything a site records for one participant, all dated on or before the disposition."""

    labs: tuple[LabDraw, ...]
    doses: tuple[DoseTaken, ...]
    adverse_events: tuple[AdverseEventDraw, ...]
    clinical_events: tuple[ClinicalEventDraw, ...]
    disposition: Disposition


# ---------------------------------------------------------------------------------------------
# Participants
# ---------------------------------------------------------------------------------------------
def simulate_participant(
    params: ModelParameters,
    protocol: Protocol,
    calendar: Calendar,
    candidate: Candidate,
    rng: np.random.Generator,
) -> ParticipantCourse:
    """Follow one randomized participant from day 0 to the end of follow-up, death or dropout.

    Parameters
    ----------
    params
        Model parameters; ``dropout_rate_per_year`` must have the calendar's arm.
    protocol
        The protocol the calendar was computed from.
    calendar
        The participant's visits and dose days (``participant_calendar``).
    candidate
        The randomized candidate; its latent state drives the course.
    rng
        The only source of randomness: the same generator state gives the same course.

    Returns
    -------
    ParticipantCourse
        Labs at the visits attended (dates within their windows), doses on planned dose days,
        adverse and clinical events, and the disposition; nothing is dated after the disposition.

    Raises
    ------
    ConfigurationError
        The parameters have no dropout rate for the arm, or the protocol's clinical-event list
        has no death or no opportunistic event code.
    """
    return _Course(params, protocol, calendar, candidate, rng).run()


@dataclass(frozen=True)
class _AE:
    day: int
    term: str
    grade: int
    duration: int
    related: str
    serious: bool


@dataclass(frozen=True)
class _Exposure:
    """IL-2 actually given in one cycle: first IL-2 day, fraction of injections, IL-2 days."""

    first_day: int
    fraction: float
    length: int


class _Course:
    """One participant's simulation; the steps share the participant's state."""

    def __init__(
        self,
        params: ModelParameters,
        protocol: Protocol,
        calendar: Calendar,
        candidate: Candidate,
        rng: np.random.Generator,
    ) -> None:
        self.p = params
        self.protocol = protocol
        self.calendar = calendar
        self.latent = candidate.latent
        self.rng = rng
        self.origin = calendar.randomization_date
        self.end_day = max((protocol.study.follow_up_end - self.origin).days, 0)
        self.cycles = treatment_cycles(protocol, calendar)
        rate = params.dropout_rate_per_year.get(calendar.arm)
        if rate is None:
            raise ConfigurationError(
                f"dropout_rate_per_year has no entry for arm {calendar.arm!r}; "
                f"known: {sorted(params.dropout_rate_per_year)}"
            )
        self.dropout_rate = rate.value
        self.tables = model_tables(params, protocol)

    # -- the whole course ------------------------------------------------------------------------
    def run(self) -> ParticipantCourse:
        if self.dropout_rate > 0:
            dropout_day = 1 + int(self.rng.exponential(DAYS_PER_YEAR / self.dropout_rate))
        else:
            dropout_day = self.end_day + 1
        dropped = dropout_day < self.end_day
        horizon = dropout_day if dropped else self.end_day
        skip = self.p.cycle_not_started_probability.value
        intends = [bool(u >= skip) for u in self.rng.random(len(self.cycles))]
        events, death_day, stop_day = self._clinical_events(horizon, intends)
        last_day = death_day - 1 if death_day is not None else horizon
        doses, treatment_aes, exposures, art_days, started = self._treatment(
            intends, stop_day, last_day
        )
        labs = self._labs(last_day, started, exposures, art_days)
        aes = treatment_aes + self._background_aes(last_day)
        aes.sort(key=lambda a: (a.day, a.term))
        if death_day is not None:
            status: DispositionStatus = "DEATH"
            end = death_day
        elif dropped and self.rng.random() < self.p.lost_to_follow_up_share.value:
            status = "LOST TO FOLLOW-UP"
            end = max(
                [0]
                + [(lab.date - self.origin).days for lab in labs]
                + [(d.date - self.origin).days for d in doses]
                + [a.day for a in aes]
                + [day for day, _ in events]
            )
        else:
            status = "WITHDREW" if dropped else "COMPLETED"
            end = horizon
        return ParticipantCourse(
            labs=tuple(labs),
            doses=tuple(doses),
            adverse_events=tuple(self._ae_record(a, end) for a in aes),
            clinical_events=tuple(ClinicalEventDraw(code, self._date(day)) for day, code in events),
            disposition=Disposition(status, self._date(end)),
        )

    def _date(self, day: int) -> dt.date:
        return self.origin + dt.timedelta(days=day)

    def _natural_cd4(self, days: FloatArray) -> FloatArray:
        return natural_cd4(self.p, self.latent.cd4, self.latent.cd4_decline_per_year, days)

    # -- opportunistic events and death ----------------------------------------------------------
    def _clinical_events(
        self, horizon: int, intends: Sequence[bool]
    ) -> tuple[list[tuple[int, str]], int | None, int | None]:
        """Events on days 1..horizon: (day, code) list, day of death, day treatment stopped."""
        p = self.p
        days = np.arange(horizon + 1, dtype=np.float64)
        base = event_hazard(p, self.latent.frailty, self._natural_cd4(days))
        base[0] = 0.0
        ratio = p.il2_event_hazard_ratio.value
        windows = [
            il2_excess_window(p, c.days(IL2_TREATMENT))
            for c, intend in zip(self.cycles, intends, strict=True)
            if intend and c.days(IL2_TREATMENT)
        ]

        def exposed(kept: Sequence[tuple[float, float]]) -> FloatArray:
            inside = np.zeros(days.shape, dtype=bool)
            for lo, hi in kept:
                inside |= (days >= lo) & (days <= hi)
            return np.where(inside, ratio, 1.0)

        hazard = base * exposed(windows)
        events: list[tuple[int, str]] = []
        death_day: int | None = None
        stop_day: int | None = None
        later = 1.0
        day = 1
        while day <= horizon:
            cumulative = np.cumsum(hazard[day:])
            index = int(np.searchsorted(cumulative, self.rng.exponential()))
            if index >= len(cumulative):
                break
            day += index
            death_chance = (
                p.first_event_death_probability if not events else p.later_event_death_probability
            )
            if self.rng.random() < death_chance.value:
                events.append((day, self.tables.death_code))
                death_day = day
                break
            tables = self.tables
            events.append((day, tables.oi_codes[pick(tables.oi_cdf, self.rng.random())]))
            if len(events) == 1:
                later = p.later_event_hazard_ratio.value
                hazard[day + 1 :] *= later
            if stop_day is None and self.rng.random() < p.event_stop_treatment_probability.value:
                stop_day = day
                # cycles not reached by the stop give no IL-2, so no excess
                windows = [(lo, hi) for lo, hi in windows if lo < day]
                hazard[day + 1 :] = (base * exposed(windows) * later)[day + 1 :]
            day += 1
        return events, death_day, stop_day

    # -- doses and treatment-related adverse events ---------------------------------------------
    def _treatment(
        self, intends: Sequence[bool], stop_day: int | None, last_day: int
    ) -> tuple[list[DoseTaken], list[_AE], list[_Exposure], list[int], set[tuple[str, int]]]:
        p = self.p
        doses: list[DoseTaken] = []
        aes: list[_AE] = []
        exposures: list[_Exposure] = []
        art_days: list[int] = []
        started: set[tuple[str, int]] = set()
        stopped = False
        for cycle, intend in zip(self.cycles, intends, strict=True):
            if cycle.first_day > last_day:
                break
            if not intend or stopped or (stop_day is not None and stop_day <= cycle.first_day):
                continue
            started.add(cycle.key)
            cycle_aes = self._cycle_aes(cycle, stop_day)
            severe = [a.day for a in cycle_aes if a.grade >= 3]
            withhold_after = (
                min(severe)
                if severe and self.rng.random() < p.toxicity_skip_rest_of_cycle_probability.value
                else None
            )
            planned = given = 0
            counts = self.rng.binomial(
                [d.administrations for d in cycle.doses],
                p.administration_taken_probability.value,
            )
            for dose, count in zip(cycle.doses, counts, strict=True):
                is_il2 = dose.treatment == IL2_TREATMENT
                planned += dose.administrations if is_il2 else 0
                if dose.study_day > last_day:
                    continue
                withheld = (withhold_after is not None and dose.study_day > withhold_after) or (
                    stop_day is not None and dose.study_day >= stop_day
                )
                taken = 0 if withheld else int(count)
                doses.append(DoseTaken(dose.treatment, dose.cycle, dose.date, taken))
                given += taken if is_il2 else 0
                if dose.treatment == ART_TREATMENT and taken > 0:
                    art_days.append(dose.study_day)
            il2_days = cycle.days(IL2_TREATMENT)
            if planned and given:
                exposures.append(_Exposure(il2_days[0], given / planned, len(il2_days)))
            if severe and self.rng.random() < p.toxicity_stop_treatment_probability.value:
                stopped = True
            aes.extend(a for a in cycle_aes if a.day <= last_day)
        return doses, aes, exposures, art_days, started

    def _cycle_aes(self, cycle: TreatmentCycle, stop_day: int | None) -> list[_AE]:
        out: list[_AE] = []
        for treatment, terms in self.tables.treatment_aes.items():
            days = cycle.days(treatment)
            if not days or not terms:
                continue
            related = self.tables.treatment_related[treatment]
            draws = self.rng.random(len(terms))
            for term, u in zip(terms, draws, strict=True):
                if u >= term.chance:
                    continue
                day = days[int(self.rng.integers(len(days)))]
                if stop_day is not None and day >= stop_day:
                    continue
                out.append(self._ae(day, term.term, term.grades, related, term.mean_duration))
        return out

    def _background_aes(self, last_day: int) -> list[_AE]:
        p = self.p
        tables = self.tables
        if last_day < 1 or not tables.background_terms:
            return []
        expected = p.background_ae_rate_per_year.value * last_day / DAYS_PER_YEAR
        out = []
        for _ in range(int(self.rng.poisson(expected))):
            day = int(self.rng.integers(1, last_day + 1))
            term = tables.background_terms[pick(tables.background_cdf, self.rng.random())]
            out.append(
                self._ae(
                    day,
                    term,
                    tables.background_grades,
                    tables.background_related,
                    p.background_ae_mean_duration.value,
                )
            )
        return out

    def _ae(
        self, day: int, term: str, grades: FloatArray, related: FloatArray, mean_duration: float
    ) -> _AE:
        """One AE of ``term`` on ``day``, with grade, relatedness, seriousness and duration."""
        form = self.protocol.forms.AE
        u_grade, u_related, u_serious = self.rng.random(3)
        grade = min(max(1 + pick(grades, u_grade), form.min_grade), form.max_grade)
        if grade >= 4:
            serious = u_serious < self.p.serious_probability_grade4.value
        elif grade == 3:
            serious = u_serious < self.p.serious_probability_grade3.value
        else:
            serious = False
        duration = 1 + int(self.rng.poisson(max(mean_duration - 1.0, 0.0)))
        label = self.tables.relatedness[pick(related, u_related)]
        return _AE(day, term, grade, duration, label, bool(serious))

    def _ae_record(self, ae: _AE, end_day: int) -> AdverseEventDraw:
        last = ae.day + ae.duration - 1
        return AdverseEventDraw(
            term=ae.term,
            grade=ae.grade,
            start=self._date(ae.day),
            end=self._date(last) if last <= end_day else None,
            related=ae.related,
            serious=ae.serious,
        )

    # -- visits and laboratory results ------------------------------------------------------------
    def _labs(
        self,
        last_day: int,
        started: set[tuple[str, int]],
        exposures: Sequence[_Exposure],
        art_days: Sequence[int],
    ) -> list[LabDraw]:
        attended = self._visit_days(last_day, started)
        if not attended:
            return []
        t = np.array([day for _, day in attended], dtype=np.float64)
        p = self.p
        exposure = np.zeros_like(t)
        rise = np.zeros_like(t)
        for e in exposures:
            exposure += e.fraction * il2_cd4_kernel(p, t - e.first_day)
            rise += e.fraction * il2_hiv_rna_kernel(p, t - e.first_day, e.length)
        cd4_true = true_cd4(p, self._natural_cd4(t), self.latent.il2_response, exposure)
        noise = self.rng.standard_normal((2, len(cd4_true)))
        cd4, percent = measured_cd4(p, cd4_true, self.latent.other_lymphocytes, noise)
        suppression = self._art_suppression(art_days, t)
        log_rna = measured_log10_hiv_rna(
            p,
            log10_hiv_rna(p, self.latent.log10_hiv_rna_setpoint, rise, suppression),
            self.rng.standard_normal(len(t)),
        )
        cd4_max, pct_max, rna_max = self.tables.lab_maxima
        return [
            LabDraw(
                visit_code=code,
                date=self._date(day),
                cd4=float(min(cd4[i], cd4_max)),
                cd4_percent=float(min(percent[i], pct_max)),
                hiv_rna=float(min(10.0 ** log_rna[i], rna_max)),
            )
            for i, (code, day) in enumerate(attended)
        ]

    def _visit_days(self, last_day: int, started: set[tuple[str, int]]) -> list[tuple[str, int]]:
        """(visit code, study day) of the visits attended, in date order."""
        cycle_visit_keys = self._cycle_visit_keys()
        out = []
        for visit in self.calendar.visits:
            key = cycle_visit_keys.get(visit.code)
            if visit.kind == "cycle" and key not in started:
                continue
            if visit.study_day != 0 and self.rng.random() < self.p.missed_visit_probability.value:
                continue
            lo = max((visit.earliest - self.origin).days, 0)
            hi = min((visit.latest - self.origin).days, self.end_day)
            if lo > hi:
                continue
            jitter = int(np.rint(self.rng.normal(0.0, self.p.visit_date_sd.value)))
            day = min(max(visit.study_day + jitter, lo), hi)
            if day <= last_day:
                out.append((visit.code, day))
        out.sort(key=lambda visit: visit[1])  # windows may overlap: date order, stable
        return out

    def _cycle_visit_keys(self) -> dict[str, tuple[str, int]]:
        """Calendar code of each cycle visit -> (anchor treatment, cycle number)."""
        keys = {}
        anchors = self.tables.cycle_visit_anchor
        for visit in self.calendar.visits:
            if visit.kind != "cycle" or visit.cycle is None:
                continue
            code = visit.code.removesuffix(str(visit.cycle))
            if code in anchors:
                keys[visit.code] = (anchors[code], visit.cycle)
        return keys

    def _art_suppression(self, art_days: Sequence[int], t: FloatArray) -> FloatArray:
        """log10 suppression of HIV RNA on the mornings of days ``t`` from the ART days taken."""
        out = np.zeros_like(t)
        if not art_days:
            return out
        first = min(art_days)
        last = max(art_days) + art_suppression_fade_days(self.p)
        taken = set(art_days)
        level = 0.0
        morning = np.zeros(last - first + 1)
        for day in range(first, last + 1):
            morning[day - first] = level
            level = float(art_suppression_step(self.p, level, day in taken))
        inside = (t >= first) & (t <= last)
        out[inside] = morning[(t[inside] - first).astype(np.int64)]
        return out
