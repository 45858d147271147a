"""Who presents at screening: a candidate's answers and the latent state behind them.

:func:`simulate_candidate` draws a person presenting at screening: the answers to the protocol's
screening items (the screening CD4 and HIV RNA are noisy measurements of the latent state, by the
laws of :mod:`stalwart.simulate.equations`) and the latent state the participant simulation
(:func:`stalwart.simulate.model.simulate_participant`) follows if the candidate is randomized.
Everything random comes from the ``rng`` argument.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from stalwart.protocol.schema import Protocol, ScreeningItem
from stalwart.simulate.equations import (
    cd4_at_randomization,
    cd4_decline,
    hiv_rna_setpoint,
    il2_response,
    measured_cd4,
    measured_log10_hiv_rna,
    other_lymphocytes,
)
from stalwart.simulate.parameters import ModelParameters, Parameter

__all__ = ["Answer", "Candidate", "CandidateLatent", "simulate_candidate"]

Answer = bool | int | float | str
"""A screening answer as a site records it."""


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
    setpoint = hiv_rna_setpoint(p, z_setpoint)
    theta = p.frailty_variance.value
    latent = CandidateLatent(
        cd4=cd4_at_randomization(p, z_setpoint, z_cd4),
        other_lymphocytes=other_lymphocytes(p, z_other),
        cd4_decline_per_year=cd4_decline(p, setpoint, z_slope),
        log10_hiv_rna_setpoint=setpoint,
        il2_response=il2_response(p, z_response),
        frailty=float(rng.gamma(1.0 / theta, theta)) if theta > 0 else 1.0,
    )
    noise = rng.standard_normal((2, 1))
    screening_cd4, _ = measured_cd4(p, np.array([latent.cd4]), latent.other_lymphocytes, noise)
    rna = measured_log10_hiv_rna(p, latent.log10_hiv_rna_setpoint, float(rng.standard_normal()))
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
