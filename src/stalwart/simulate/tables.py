"""Lookups the participant model derives once from (parameters, protocol), shared by the
per-participant simulator and the vectorized plan: clinical-event codes and their weights,
treatment-related AE terms with their chances and grade distributions per treatment, background
AE terms, relatedness labels, cycle-visit anchors and the laboratory maxima of the protocol's lab
form. Categorical draws invert the cumulative distributions built here (:func:`pick`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from stalwart.errors import ConfigurationError
from stalwart.protocol.schema import Protocol
from stalwart.simulate.cycles import ART_TREATMENT, IL2_TREATMENT
from stalwart.simulate.equations import FloatArray
from stalwart.simulate.parameters import ModelParameters, Parameter

__all__ = ["AETerm", "ModelTables", "category_cdf", "model_tables", "pick"]


@dataclass(frozen=True)
class AETerm:
    """A treatment-related AE term ready to draw: protocol term, chance, grade CDF, duration."""

    term: str
    chance: float
    grades: FloatArray
    mean_duration: float


@dataclass(frozen=True)
class ModelTables:
    """Lookups derived once from (parameters, protocol) and shared by all participants."""

    death_code: str
    oi_codes: tuple[str, ...]
    oi_cdf: FloatArray
    treatment_aes: dict[str, tuple[AETerm, ...]]
    treatment_related: dict[str, FloatArray]
    background_terms: tuple[str, ...]
    background_cdf: FloatArray
    background_grades: FloatArray
    background_related: FloatArray
    relatedness: tuple[str, ...]
    cycle_visit_anchor: dict[str, str]
    lab_maxima: tuple[float, float, float]


_CACHE: dict[tuple[int, int], tuple[ModelParameters, Protocol, ModelTables]] = {}


def model_tables(params: ModelParameters, protocol: Protocol) -> ModelTables:
    """The lookups of ``(params, protocol)``, cached (the cache holds them, so ids stay unique)."""
    key = (id(params), id(protocol))
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is params and hit[1] is protocol:
        return hit[2]
    tables = _build(params, protocol)
    if len(_CACHE) >= 8:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = (params, protocol, tables)
    return tables


def _build(params: ModelParameters, protocol: Protocol) -> ModelTables:
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
        return category_cdf([_weight(table, label) for label in labels])

    il2 = tuple(
        AETerm(
            mapped,
            chance.value,
            category_cdf(p.il2_ae_grade_distribution[term].value),
            p.il2_ae_mean_duration.value,
        )
        for term, chance in p.il2_ae_probability_per_cycle.items()
        if (mapped := term_of(term)) is not None
    )
    art_grades = category_cdf(p.art_ae_grade_distribution.value)
    art = tuple(
        AETerm(mapped, chance.value, art_grades, p.art_ae_mean_duration.value)
        for term, chance in p.art_ae_probability_per_course.items()
        if (mapped := term_of(term)) is not None
    )
    background = [
        (mapped, w.value)
        for term, w in p.background_ae_term_weight.items()
        if (mapped := term_of(term)) is not None
    ]
    maxima = {item.name: item.max for item in protocol.forms.LAB.items}
    return ModelTables(
        death_code=deaths[0],
        oi_codes=ois,
        oi_cdf=category_cdf([_weight(p.clinical_event_weight, code) for code in ois]),
        treatment_aes={IL2_TREATMENT: il2, ART_TREATMENT: art},
        treatment_related={
            IL2_TREATMENT: related_cdf(p.il2_ae_relatedness),
            ART_TREATMENT: related_cdf(p.art_ae_relatedness),
        },
        background_terms=tuple(t for t, _ in background),
        background_cdf=category_cdf([w for _, w in background]) if background else np.ones(0),
        background_grades=category_cdf(p.background_ae_grade_distribution.value),
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


def _weight(table: Mapping[str, Parameter], key: str) -> float:
    entry = table.get(key)
    return entry.value if entry is not None else 0.0


def category_cdf(weights: Sequence[float]) -> FloatArray:
    """Cumulative probabilities of ``weights`` (uniform when they are all zero)."""
    w = np.asarray(weights, dtype=np.float64)
    if w.sum() <= 0:
        w = np.ones_like(w)
    out: FloatArray = np.cumsum(w / w.sum())
    return out


def pick(cumulative: FloatArray, u: float) -> int:
    """Index drawn by inverting a cumulative distribution at ``u`` in [0, 1)."""
    return min(int(np.searchsorted(cumulative, u, side="right")), len(cumulative) - 1)
