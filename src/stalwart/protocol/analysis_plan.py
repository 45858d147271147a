"""The protocol's endpoints and statistical analysis plan (``[[endpoints]]``, ``[analysis]``).

The models validate each table; :func:`plan_problems` checks the plan against the rest of the
protocol (the visits, LAB items, arms and AE form it names), for
:class:`~stalwart.protocol.schema.Protocol`'s validation. A comparison is written
``[treated, control]``, the treated side pooling arms as ``"IL2+IL2ART"``: :func:`treated_arms`
reads it, here and in the analyses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import Field, model_validator

from stalwart.protocol.fields import Code, ProtocolModel, duplicates

__all__ = [
    "POOLED",
    "AnalysisPlan",
    "ComparisonPair",
    "Endpoint",
    "LongitudinalAnalysis",
    "PrimaryAnalysis",
    "SafetyAnalysis",
    "TimeToEventAnalysis",
    "plan_problems",
    "treated_arms",
]


class Endpoint(ProtocolModel):
    """An endpoint; which fields apply depends on ``kind``."""

    id: Code
    kind: Literal["continuous", "time_to_event", "safety"]
    description: str
    test: Code | None = None
    visit: Code | None = None
    baseline_visit: Code | None = None
    event_categories: list[Literal["OPPORTUNISTIC", "DEATH", "OTHER"]] = []
    origin: Literal["randomization"] | None = None
    censor_at: Literal["last_contact"] | None = None

    @model_validator(mode="after")
    def _fields_for_kind(self) -> Endpoint:
        if self.kind == "continuous" and None in (self.test, self.visit, self.baseline_visit):
            raise ValueError(f"continuous endpoint {self.id} needs test, visit and baseline_visit")
        if self.kind == "time_to_event" and not self.event_categories:
            raise ValueError(f"time-to-event endpoint {self.id} needs event_categories")
        return self


ComparisonPair = Annotated[list[str], Field(min_length=2, max_length=2)]
"""[treated, control]; the treated side may pool arms as ``"IL2+IL2ART"`` (:func:`treated_arms`)."""

POOLED = "+"
"""Joins the arms of a pooled treated side, as the protocol writes it."""


def treated_arms(side: str) -> tuple[str, ...]:
    """The arm codes of a comparison's treated side: ``"IL2+IL2ART"`` -> ``("IL2", "IL2ART")``."""
    return tuple(side.split(POOLED))


class PrimaryAnalysis(ProtocolModel):
    """A continuous endpoint compared between arms at its visit (primary or secondary)."""

    endpoint: Code
    comparisons: list[ComparisonPair] = Field(min_length=1)
    methods: list[Literal["ancova", "ttest"]] = Field(min_length=1)
    covariates: list[Literal["baseline"]] = []


class TimeToEventAnalysis(ProtocolModel):
    """A time-to-event endpoint compared between arms (or pooled arms)."""

    endpoint: Code
    comparisons: list[ComparisonPair] = Field(min_length=1)
    methods: list[Literal["cox_efron", "cox_breslow", "logrank"]] = Field(min_length=1)


class LongitudinalAnalysis(ProtocolModel):
    """A continuous endpoint compared between arms at each of ``visits`` by one MMRM.

    ``covariance`` is fitted first; when it cannot be fitted (no convergence, or a visit with too
    few participants for an unstructured matrix) the plan refits with ``fallback_covariance``
    and says so in the results (``null``: no fallback, the error stands).
    """

    endpoint: Code
    method: Literal["mmrm"] = "mmrm"
    visits: list[Code] = Field(min_length=1)
    comparisons: list[ComparisonPair] = Field(min_length=1)
    covariance: Literal["unstructured", "compound_symmetry"] = "unstructured"
    fallback_covariance: Literal["compound_symmetry"] | None = "compound_symmetry"
    baseline: Literal["by_visit", "common", "none"] = "by_visit"
    df_method: Literal["residual", "satterthwaite", "kenward-roger"] = "residual"


class SafetyAnalysis(ProtocolModel):
    """Proportions of participants with an adverse event, compared between arms.

    One test per AE term of ``terms`` and per threshold of ``any_grade_at_least`` (participants
    with any AE of that grade or worse); ``treatment_emergent`` counts only AEs starting on or
    after randomization. Denominators are the randomized participants of each arm.
    """

    endpoint: Code
    method: Literal["fisher"] = "fisher"
    comparisons: list[ComparisonPair] = Field(min_length=1)
    terms: list[str] = []
    any_grade_at_least: list[int] = []
    treatment_emergent: bool = True


class AnalysisPlan(ProtocolModel):
    """The statistical analysis plan."""

    alpha: float = Field(gt=0, lt=1)
    population: Literal["ITT"]
    missing_data: Literal["complete_case"]
    multiplicity: Literal["none"]
    hiv_rna_below_limit: Literal["half_limit", "limit"]
    out_of_window: Literal["exclude", "include"] = "exclude"
    """A scheduled visit's value recorded outside its protocol window: ``exclude`` keeps it in
    the data (ADLB, flagged by AWLO/AWHI) but does not analyse it at that visit (ANL01FL
    blank); ``include`` analyses it at its visit all the same."""
    primary: list[PrimaryAnalysis] = Field(min_length=1)
    time_to_event: list[TimeToEventAnalysis] = []
    secondary: list[PrimaryAnalysis] = []
    longitudinal: list[LongitudinalAnalysis] = []
    safety: list[SafetyAnalysis] = []
    event_review: Literal["confirmed_only", "all_reported"] = "confirmed_only"  # endpoint events


def plan_problems(
    analysis: AnalysisPlan,
    endpoints: Sequence[Endpoint],
    visit_codes: Sequence[str],
    lab_items: Sequence[str],
    arm_codes: Sequence[str],
    ae_terms: Sequence[str],
    ae_grades: tuple[int, int],
) -> list[str]:
    """What the endpoints and the plan name that the protocol lacks, one problem per line.

    ``visit_codes`` are the scheduled visits, ``lab_items`` the LAB form's item names,
    ``ae_terms`` and ``ae_grades`` (lowest, highest) the AE form's terms and grades.
    """
    problems = []
    by_id = {e.id: e for e in endpoints}
    for e in endpoints:
        if e.visit is not None and e.visit not in visit_codes:
            problems.append(f"endpoints.{e.id}.visit: unknown visit {e.visit!r}")
        if e.baseline_visit is not None and e.baseline_visit not in visit_codes:
            problems.append(f"endpoints.{e.id}.baseline_visit: unknown visit")
        if e.test is not None and e.test not in lab_items:
            problems.append(f"endpoints.{e.id}.test: {e.test!r} is not a LAB item")
    analyses: list[
        PrimaryAnalysis | TimeToEventAnalysis | LongitudinalAnalysis | SafetyAnalysis
    ] = [
        *analysis.primary,
        *analysis.time_to_event,
        *analysis.secondary,
        *analysis.longitudinal,
        *analysis.safety,
    ]
    problems += _longitudinal_and_safety_problems(analysis, by_id, visit_codes)
    problems += _safety_problems(analysis, ae_terms, ae_grades)
    for a in analyses:
        where = f"analysis.{a.endpoint}"
        if a.endpoint not in by_id:
            problems.append(f"{where}: unknown endpoint")
        for treated, control in a.comparisons:
            for code in [*treated_arms(treated), control]:
                if code not in arm_codes:
                    problems.append(f"{where}.comparisons: unknown arm {code!r}")
    return problems


def _longitudinal_and_safety_problems(
    analysis: AnalysisPlan, endpoints: dict[str, Endpoint], visit_codes: Sequence[str]
) -> list[str]:
    problems = []
    kinds: dict[
        str,
        tuple[list[PrimaryAnalysis] | list[LongitudinalAnalysis] | list[SafetyAnalysis], str],
    ] = {
        "secondary": (analysis.secondary, "continuous"),
        "longitudinal": (analysis.longitudinal, "continuous"),
        "safety": (analysis.safety, "safety"),
    }
    for section, (specs, kind) in kinds.items():
        for spec in specs:
            endpoint = endpoints.get(spec.endpoint)
            if endpoint is not None and endpoint.kind != kind:
                problems.append(
                    f"analysis.{section}.{spec.endpoint}.endpoint: a {endpoint.kind} "
                    f"endpoint; {section} analyses take a {kind} endpoint"
                )
    for spec in analysis.longitudinal:
        where = f"analysis.longitudinal.{spec.endpoint}.visits"
        endpoint = endpoints.get(spec.endpoint)
        baseline = endpoint.baseline_visit if endpoint is not None else None
        for code in spec.visits:
            if code not in visit_codes:
                problems.append(f"{where}: unknown visit {code!r} (visits: {list(visit_codes)})")
            elif code == baseline:
                problems.append(
                    f"{where}: {code!r} is the baseline visit, a covariate of the model; "
                    "list post-baseline visits only"
                )
        problems += duplicates(where, spec.visits)
    return problems


def _safety_problems(
    analysis: AnalysisPlan, ae_terms: Sequence[str], ae_grades: tuple[int, int]
) -> list[str]:
    problems = []
    lowest, highest = ae_grades
    for spec in analysis.safety:
        where = f"analysis.safety.{spec.endpoint}"
        for term in spec.terms:
            if term not in ae_terms:
                problems.append(f"{where}.terms: {term!r} is not a term of forms.AE.terms")
        for grade in spec.any_grade_at_least:
            if not lowest <= grade <= highest:
                problems.append(
                    f"{where}.any_grade_at_least: {grade} lies outside the AE grades "
                    f"{lowest} to {highest}"
                )
        if not spec.terms and not spec.any_grade_at_least:
            problems.append(f"{where}: give terms and/or any_grade_at_least to compare")
    return problems
