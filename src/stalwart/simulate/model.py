"""The calibrated per-participant model of STALWART: who is screened, and what happens to them.

:func:`simulate_candidate` draws a person presenting at screening: the answers to the protocol's
screening items (the screening CD4 and HIV RNA are noisy measurements) and the latent state the
answers come from. :func:`simulate_participant` follows a randomized candidate from study day 0
(randomization) through the protocol calendar to the end of follow-up, death, or dropout, and
returns what a site would record: laboratory results at the visits attended, doses taken,
adverse events, clinical events, and the disposition.

The model, in order of simulation (parameters and their sources: ``parameters.toml``; the
calibration: :mod:`stalwart.simulate.parameters`):

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
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from stalwart.errors import ConfigurationError
from stalwart.protocol.calendar import Calendar
from stalwart.protocol.schema import Protocol, ScreeningItem
from stalwart.simulate.parameters import (
    ART_TREATMENT,
    DAYS_PER_YEAR,
    IL2_TREATMENT,
    FloatArray,
    ModelParameters,
    Parameter,
    TreatmentCycle,
    il2_cd4_kernel,
    il2_hiv_rna_kernel,
    treatment_cycles,
)

__all__ = [
    "AdverseEventDraw",
    "Candidate",
    "CandidateLatent",
    "ClinicalEventDraw",
    "Disposition",
    "DoseTaken",
    "LabDraw",
    "ParticipantCourse",
    "simulate_candidate",
    "simulate_participant",
]

Answer = bool | int | float | str
DispositionStatus = Literal["COMPLETED", "LOST TO FOLLOW-UP", "WITHDREW", "DEATH"]


# ---------------------------------------------------------------------------------------------
# Public records
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CandidateLatent:
    """The true state of a candidate, carried from screening into the participant simulation.

    Attributes
    ----------
    cd4
        True CD4 count at randomization, cells/mm3 (the screening count measures it with error).
    other_lymphocytes
        Lymphocytes other than CD4 cells, cells/mm3; sets the CD4 percent.
    cd4_decline_per_year
        Natural CD4 decline without ART, cells/mm3 per year (negative: rising).
    log10_hiv_rna_setpoint
        HIV RNA set point, log10 copies/mL.
    il2_response
        Individual multiplier of the IL-2 CD4 gain (mean 1 in the population).
    frailty
        Individual multiplier of the clinical-event hazard (mean 1).
    """

    cd4: float
    other_lymphocytes: float
    cd4_decline_per_year: float
    log10_hiv_rna_setpoint: float
    il2_response: float
    frailty: float

    @property
    def cd4_percent(self) -> float:
        """True CD4 percent of lymphocytes at randomization."""
        return 100.0 * self.cd4 / (self.cd4 + self.other_lymphocytes)


@dataclass(frozen=True)
class Candidate:
    """One person presenting at screening: the answers a site records and the truth behind them."""

    answers: dict[str, Answer]
    latent: CandidateLatent


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
# Candidates
# ---------------------------------------------------------------------------------------------
def simulate_candidate(
    params: ModelParameters, protocol: Protocol, rng: np.random.Generator
) -> Candidate:
    """Draw one person presenting at screening.

    Parameters
    ----------
    params
        Model parameters.
    protocol
        The protocol; one answer is generated per ``screening_items`` entry. Known items (age,
        sex, cd4, hiv_rna and the boolean criteria in ``screening_true_probability``) come from
        the model; any other item gets a neutral default for its type.
    rng
        The only source of randomness.

    Returns
    -------
    Candidate
        Screening answers (some candidates fail eligibility) and the latent state.
    """
    p = params
    z_setpoint, z_cd4, z_slope, z_other, z_response = (float(z) for z in rng.standard_normal(5))
    rho = p.cd4_setpoint_correlation.value
    setpoint = p.hiv_rna_setpoint_mean.value + p.hiv_rna_setpoint_sd.value * z_setpoint
    cd4 = p.cd4_median.value * math.exp(
        p.cd4_log_sd.value * (rho * z_setpoint + math.sqrt(1.0 - rho * rho) * z_cd4)
    )
    response_sd = p.il2_response_log_sd.value
    theta = p.frailty_variance.value
    latent = CandidateLatent(
        cd4=cd4,
        other_lymphocytes=p.other_lymphocytes_median.value
        * math.exp(p.other_lymphocytes_log_sd.value * z_other),
        cd4_decline_per_year=p.cd4_decline_per_year.value
        + p.cd4_decline_per_log10_rna.value * (setpoint - 4.0)
        + p.cd4_decline_sd.value * z_slope,
        log10_hiv_rna_setpoint=setpoint,
        il2_response=math.exp(response_sd * z_response - response_sd * response_sd / 2.0),
        frailty=float(rng.gamma(1.0 / theta, theta)) if theta > 0 else 1.0,
    )
    screening_cd4, _ = _measure_cd4(p, np.array([latent.cd4]), latent.other_lymphocytes, rng)
    rna = latent.log10_hiv_rna_setpoint + p.hiv_rna_noise_sd.value * float(rng.standard_normal())
    known: dict[str, Answer] = {
        "age": round(p.age_mean.value + p.age_sd.value * float(rng.standard_normal())),
        "sex": "F" if rng.random() < p.female_probability.value else "M",
        "cd4": float(round(float(screening_cd4[0]))),
        "hiv_rna": float(round(10.0**rna)),
    }
    answers: dict[str, Answer] = {}
    for item in protocol.screening_items:
        answers[item.name] = _answer(item, known, p.screening_true_probability, protocol, rng)
    return Candidate(answers=answers, latent=latent)


def _answer(
    item: ScreeningItem,
    known: Mapping[str, Answer],
    true_probability: Mapping[str, Parameter],
    protocol: Protocol,
    rng: np.random.Generator,
) -> Answer:
    if item.type == "boolean":
        chance = true_probability.get(item.name)
        return bool(rng.random() < chance.value) if chance is not None else False
    if item.type in ("integer", "number"):
        lo = item.min if item.min is not None else -math.inf
        hi = item.max if item.max is not None else math.inf
        if item.name in known and not isinstance(known[item.name], str | bool):
            number = float(known[item.name])
        else:
            number = 0.0 if lo <= 0.0 <= hi else (lo if math.isfinite(lo) else hi)
        number = min(max(number, lo), hi)
        return round(number) if item.type == "integer" else number
    if item.type == "choice":
        choices = item.choices or ["NA"]
        value = known.get(item.name)
        return value if isinstance(value, str) and value in choices else choices[0]
    if item.type == "date":
        return protocol.study.accrual_start.isoformat()
    return "NA"


def _measure_cd4(
    params: ModelParameters, cd4: FloatArray, other: float, rng: np.random.Generator
) -> tuple[FloatArray, FloatArray]:
    """Measured (count, percent) of true CD4 counts: lymphocytes x CD4%, mean-preserving errors."""
    s_count = params.lymphocyte_count_noise_log_sd.value
    s_pct = params.cd4_percent_noise_log_sd.value
    noise = rng.standard_normal((2, len(cd4)))
    lymphocytes = (cd4 + other) * np.exp(s_count * noise[0] - s_count * s_count / 2.0)
    percent = 100.0 * cd4 / (cd4 + other) * np.exp(s_pct * noise[1] - s_pct * s_pct / 2.0)
    percent = np.minimum(percent, 99.0)
    return lymphocytes * percent / 100.0, percent


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
class _AETerm:
    """A treatment-related AE term ready to draw: protocol term, chance, grade CDF, duration."""

    term: str
    chance: float
    grades: FloatArray
    mean_duration: float


@dataclass(frozen=True)
class _Tables:
    """Lookups derived once from (parameters, protocol) and shared by all participants."""

    death_code: str
    oi_codes: tuple[str, ...]
    oi_cdf: FloatArray
    treatment_aes: dict[str, tuple[_AETerm, ...]]
    treatment_related: dict[str, FloatArray]
    background_terms: tuple[str, ...]
    background_cdf: FloatArray
    background_grades: FloatArray
    background_related: FloatArray
    relatedness: tuple[str, ...]
    cycle_visit_anchor: dict[str, str]
    lab_maxima: tuple[float, float, float]


_TABLES: dict[tuple[int, int], tuple[ModelParameters, Protocol, _Tables]] = {}


def _tables(params: ModelParameters, protocol: Protocol) -> _Tables:
    """The lookups of ``(params, protocol)``, cached (the cache holds them, so ids stay unique)."""
    key = (id(params), id(protocol))
    hit = _TABLES.get(key)
    if hit is not None and hit[0] is params and hit[1] is protocol:
        return hit[2]
    tables = _build_tables(params, protocol)
    if len(_TABLES) >= 8:
        _TABLES.pop(next(iter(_TABLES)))
    _TABLES[key] = (params, protocol, tables)
    return tables


def _build_tables(params: ModelParameters, protocol: Protocol) -> _Tables:
    p = params
    deaths = [e.code for e in protocol.forms.CE.events if e.category == "DEATH"]
    ois = tuple(e.code for e in protocol.forms.CE.events if e.category == "OPPORTUNISTIC")
    if not deaths or not ois:
        raise ConfigurationError(
            "the protocol's clinical-event list needs a DEATH and an OPPORTUNISTIC code"
        )
    form = protocol.forms.AE
    labels = tuple(form.relatedness)

    def term_of(term: str) -> str | None:
        if term in form.terms:
            return term
        return "Other" if "Other" in form.terms else None

    def related_cdf(table: Mapping[str, Parameter]) -> FloatArray:
        return _cdf([_weight(table, label) for label in labels])

    il2 = tuple(
        _AETerm(
            mapped,
            chance.value,
            _cdf(p.il2_ae_grade_distribution[term].value),
            p.il2_ae_mean_duration.value,
        )
        for term, chance in p.il2_ae_probability_per_cycle.items()
        if (mapped := term_of(term)) is not None
    )
    art_grades = _cdf(p.art_ae_grade_distribution.value)
    art = tuple(
        _AETerm(mapped, chance.value, art_grades, p.art_ae_mean_duration.value)
        for term, chance in p.art_ae_probability_per_course.items()
        if (mapped := term_of(term)) is not None
    )
    background = [
        (mapped, w.value)
        for term, w in p.background_ae_term_weight.items()
        if (mapped := term_of(term)) is not None
    ]
    maxima = {item.name: item.max for item in protocol.forms.LAB.items}
    return _Tables(
        death_code=deaths[0],
        oi_codes=ois,
        oi_cdf=_cdf([_weight(p.clinical_event_weight, code) for code in ois]),
        treatment_aes={IL2_TREATMENT: il2, ART_TREATMENT: art},
        treatment_related={
            IL2_TREATMENT: related_cdf(p.il2_ae_relatedness),
            ART_TREATMENT: related_cdf(p.art_ae_relatedness),
        },
        background_terms=tuple(t for t, _ in background),
        background_cdf=_cdf([w for _, w in background]) if background else np.ones(0),
        background_grades=_cdf(p.background_ae_grade_distribution.value),
        background_related=related_cdf(p.background_ae_relatedness),
        relatedness=labels,
        cycle_visit_anchor={
            cv.code: protocol.treatments[cv.treatment].anchor or cv.treatment
            for cv in protocol.cycle_visits
        },
        lab_maxima=(
            maxima.get("CD4") or math.inf,
            maxima.get("CD4PCT") or 100.0,
            maxima.get("HIVRNA") or math.inf,
        ),
    )


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
        self.tables = _tables(params, protocol)

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
        decline = self.latent.cd4_decline_per_year * days / DAYS_PER_YEAR
        out: FloatArray = np.maximum(self.latent.cd4 - decline, self.p.cd4_floor.value)
        return out

    # -- opportunistic events and death ----------------------------------------------------------
    def _clinical_events(
        self, horizon: int, intends: Sequence[bool]
    ) -> tuple[list[tuple[int, str]], int | None, int | None]:
        """Events on days 1..horizon: (day, code) list, day of death, day treatment stopped."""
        p = self.p
        days = np.arange(horizon + 1, dtype=np.float64)
        per_day = self.latent.frailty * p.event_rate_at_reference_cd4.value / DAYS_PER_YEAR
        slope = p.event_log_hazard_per_100_cd4.value / 100.0
        hazard = per_day * np.exp(slope * (p.event_reference_cd4.value - self._natural_cd4(days)))
        hazard[0] = 0.0
        ratio = p.il2_event_hazard_ratio.value
        first_il2 = next(
            (
                c.days(IL2_TREATMENT)[0]
                for c, intend in zip(self.cycles, intends, strict=True)
                if intend and c.days(IL2_TREATMENT)
            ),
            None,
        )
        if first_il2 is not None and first_il2 <= horizon:
            hazard[first_il2:] *= ratio
        events: list[tuple[int, str]] = []
        death_day: int | None = None
        stop_day: int | None = None
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
            events.append((day, tables.oi_codes[_pick(tables.oi_cdf, self.rng.random())]))
            if len(events) == 1:
                hazard[day + 1 :] *= p.later_event_hazard_ratio.value
            if stop_day is None and self.rng.random() < p.event_stop_treatment_probability.value:
                stop_day = day
                if first_il2 is not None and day <= first_il2 <= horizon:
                    hazard[first_il2:] /= ratio  # stopped before any IL-2: no excess
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
            term = tables.background_terms[_pick(tables.background_cdf, self.rng.random())]
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
        grade = min(max(1 + _pick(grades, u_grade), form.min_grade), form.max_grade)
        if grade >= 4:
            serious = u_serious < self.p.serious_probability_grade4.value
        elif grade == 3:
            serious = u_serious < self.p.serious_probability_grade3.value
        else:
            serious = False
        duration = 1 + int(self.rng.poisson(max(mean_duration - 1.0, 0.0)))
        label = self.tables.relatedness[_pick(related, u_related)]
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
        gain = np.zeros_like(t)
        rise = np.zeros_like(t)
        for e in exposures:
            gain += e.fraction * il2_cd4_kernel(p, t - e.first_day)
            rise += e.fraction * il2_hiv_rna_kernel(p, t - e.first_day, e.length)
        gain *= self.latent.il2_response * p.il2_cd4_persistent_gain_per_cycle.value
        cd4_true = self._natural_cd4(t) + gain
        cd4, percent = _measure_cd4(p, cd4_true, self.latent.other_lymphocytes, self.rng)
        log_rna = (
            self.latent.log10_hiv_rna_setpoint
            + p.il2_hiv_rna_peak_increase.value * rise
            - self._art_suppression(art_days, t)
            + p.hiv_rna_noise_sd.value * self.rng.standard_normal(len(t))
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
        p = self.p
        down = p.art_hiv_rna_decline_per_day.value
        cap = p.art_hiv_rna_max_suppression.value
        up = p.art_hiv_rna_rebound_per_day.value
        first = min(art_days)
        last = max(art_days) + math.ceil(cap / up) + 1
        taken = set(art_days)
        level = 0.0
        morning = np.zeros(last - first + 1)
        for day in range(first, last + 1):
            morning[day - first] = level
            level = min(level + down, cap) if day in taken else max(level - up, 0.0)
        inside = (t >= first) & (t <= last)
        out[inside] = morning[(t[inside] - first).astype(np.int64)]
        return out


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------
def _weight(table: Mapping[str, Parameter], key: str) -> float:
    entry = table.get(key)
    return entry.value if entry is not None else 0.0


def _cdf(weights: Sequence[float]) -> FloatArray:
    """Cumulative probabilities of ``weights`` (uniform when they are all zero)."""
    w = np.asarray(weights, dtype=np.float64)
    if w.sum() <= 0:
        w = np.ones_like(w)
    out: FloatArray = np.cumsum(w / w.sum())
    return out


def _pick(cdf: FloatArray, u: float) -> int:
    """Index drawn by inverting a cumulative distribution at ``u`` in [0, 1)."""
    return min(int(np.searchsorted(cdf, u, side="right")), len(cdf) - 1)
