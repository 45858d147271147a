"""Pydantic models of a protocol file: the single source every other part of stalwart reads.

The models validate one study definition: arms and allocation ratio, sites, randomization,
screening items and eligibility rules, treatment (dosing) calendars, visits with windows, case
report forms with units and valid ranges, endpoints and the statistical analysis plan. Cross-field
checks (an arm named in the plan exists, a visit named by an endpoint exists...) live in
``Protocol``'s validators so that an invalid file fails on load, naming the field.
"""

from __future__ import annotations

import datetime as dt
import itertools
import types
import typing
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

__all__ = [
    "AdverseEventForm",
    "AnalysisPlan",
    "Arm",
    "ClinicalEventForm",
    "ClinicalEventTerm",
    "CycleVisit",
    "EligibilityCriterion",
    "Endpoint",
    "FollowUp",
    "FormItem",
    "LabForm",
    "LongitudinalAnalysis",
    "Minimization",
    "MinimizationFactor",
    "PrimaryAnalysis",
    "Protocol",
    "Randomization",
    "Rule",
    "SafetyAnalysis",
    "ScreeningItem",
    "Site",
    "Study",
    "TimeToEventAnalysis",
    "Treatment",
    "Visit",
]

Code = Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]{0,19}$")]
"""An upper-case identifier, as CDISC codes are (ARMCD, VISIT codes, PARAMCD): at most 20 chars."""


def _leaves(annotation: Any) -> set[Any]:
    """The plain types a field admits: unions and ``Annotated`` unwrapped."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _leaves(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return set().union(*(_leaves(a) for a in typing.get_args(annotation)))
    return {annotation}


def _number_problem(annotation: Any, value: Any) -> str | None:
    """Why ``value`` is no number where ``annotation`` asks only for one (None: no objection).

    Pydantic's lax mode reads ``true`` as 1 and ``"3"`` as 3; in a protocol file either is
    almost surely a slip (a value pasted into the wrong key), so it is refused, naming the key.
    """
    leaves = _leaves(annotation)
    numbers = leaves - {type(None)}
    if not numbers or not numbers <= {int, float}:
        if len(numbers) == 1 and typing.get_origin(next(iter(numbers))) is list:
            (inner,) = typing.get_args(next(iter(numbers))) or (Any,)
            if isinstance(value, list):
                for item in value:
                    problem = _number_problem(inner, item)
                    if problem:
                        return problem
        return None
    if isinstance(value, bool):
        return f"must be a number, not {str(value).lower()}"
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return None  # not read as a number anyway: pydantic's own message says so
        return f"must be a number, not the text {value!r} (write it without quotes)"
    return None


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """Refuse true/false or quoted text where a number is asked for."""
        if info.field_name is not None:
            problem = _number_problem(cls.model_fields[info.field_name].annotation, value)
            if problem:
                raise ValueError(problem)
        return value


class Study(_Model):
    """Identity, design and calendar bounds of the study."""

    id: Code
    title: str
    version: str
    registry_ids: list[str] = []
    phase: str
    design: str
    blinding: Literal["open-label", "single-blind", "double-blind"]
    sample_size: int = Field(gt=0)
    accrual_start: dt.date
    accrual_end: dt.date
    follow_up_end: dt.date

    @model_validator(mode="after")
    def _dates_in_order(self) -> Study:
        if not self.accrual_start <= self.accrual_end <= self.follow_up_end:
            raise ValueError(
                "dates must satisfy accrual_start <= accrual_end <= follow_up_end; "
                f"got {self.accrual_start}, {self.accrual_end}, {self.follow_up_end}"
            )
        return self


class Arm(_Model):
    """One randomized arm; ``treatments`` names entries of the protocol's ``treatments`` table."""

    code: Code
    name: str
    ratio: int = Field(ge=1)
    control: bool = False
    treatments: list[Code] = []


class Site(_Model):
    """A participating site; ``country`` is ISO 3166-1 alpha-3 (CDISC DM.COUNTRY)."""

    code: Code
    name: str
    country: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]


class MinimizationFactor(_Model):
    """A prognostic factor balanced by minimization: ``site`` or an item of the screening form.

    A choice or boolean item is balanced on its values; a number or integer item on the
    categories its ``cuts`` make (``cd4`` with ``cuts = [500]``: ``<500`` and ``>=500``).
    ``weight`` scales the factor's imbalance in the total (Pocock & Simon's ``w_i``).
    """

    name: str
    weight: float = Field(default=1.0, ge=0, allow_inf_nan=False)
    cuts: list[float] | None = None

    @field_validator("cuts")
    @classmethod
    def _increasing(cls, cuts: list[float] | None) -> list[float] | None:
        if cuts is not None and (not cuts or any(b <= a for a, b in itertools.pairwise(cuts))):
            raise ValueError(f"cuts must be a non-empty, strictly increasing list, got {cuts}")
        return cuts


class Minimization(_Model):
    """Pocock-Simon minimization (Pocock & Simon 1975, Biometrics 31:103-115).

    For each arm ``k``, the new participant's total imbalance ``G_k = sum_i weight_i * D_i(k)``
    is computed as if they were allocated to ``k``: ``D_i`` is the ``imbalance`` measure
    (``range``: max minus min; ``variance``: population variance) of the arms' counts divided by
    their ratios, among earlier participants sharing the new one's level of factor ``i``. The
    arms with the smallest ``G`` share ``probability``, the others the rest, in proportion to
    their ratios (see ``stalwart.randomization.minimization``).
    ``list_length`` random draws are generated at trial set-up: the most participants it can take.
    """

    factors: list[MinimizationFactor] = Field(min_length=1)
    imbalance: Literal["range", "variance"] = "range"
    probability: float = Field(gt=0, le=1)
    list_length: int = Field(gt=0)


class Randomization(_Model):
    """Allocation method: stratified permuted blocks with random block sizes, or minimization.

    ``permuted_blocks`` needs ``block_sizes`` and ``list_length_per_stratum`` and stratifies on
    ``strata``; ``minimization`` needs the ``[randomization.minimization]`` table instead.
    """

    method: Literal["permuted_blocks", "minimization"]
    block_sizes: list[int] | None = Field(default=None, min_length=1)
    strata: list[str] = ["site"]
    list_length_per_stratum: int | None = Field(default=None, gt=0)
    minimization: Minimization | None = None

    @field_validator("block_sizes")
    @classmethod
    def _positive(cls, sizes: list[int] | None) -> list[int] | None:
        if sizes is not None and any(s <= 0 for s in sizes):
            raise ValueError(f"block sizes must be positive, got {sizes}")
        return sizes

    @model_validator(mode="after")
    def _fields_for_method(self) -> Randomization:
        blocks = {
            "block_sizes": self.block_sizes,
            "list_length_per_stratum": self.list_length_per_stratum,
        }
        if self.method == "permuted_blocks":
            missing = [name for name, value in blocks.items() if value is None]
            if missing:
                raise ValueError(f"method 'permuted_blocks' needs {' and '.join(missing)}")
            if self.minimization is not None:
                raise ValueError(
                    "the [randomization.minimization] table applies to method 'minimization' "
                    "only: remove it or set method = 'minimization'"
                )
        else:
            if self.minimization is None:
                raise ValueError(
                    "method 'minimization' needs a [randomization.minimization] table with "
                    "factors, probability and list_length"
                )
            extra = [name for name, value in blocks.items() if value is not None]
            if "strata" in self.model_fields_set:
                extra.append("strata")
            if extra:
                raise ValueError(
                    f"{', '.join(extra)} apply to method 'permuted_blocks' only; minimization "
                    "balances randomization.minimization.factors: remove them"
                )
        return self

    @property
    def permuted_blocks(self) -> tuple[list[int], int]:
        """``(block_sizes, list_length_per_stratum)`` of a permuted-blocks design."""
        if self.block_sizes is None or self.list_length_per_stratum is None:
            raise ValueError(f"method {self.method!r} has no permuted blocks")
        return self.block_sizes, self.list_length_per_stratum


ItemType = Literal["integer", "number", "boolean", "choice", "text", "date"]


class ScreeningItem(_Model):
    """An item of the screening form, the input of the eligibility rules."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    label: str
    type: ItemType
    unit: str | None = None
    min: float | None = None
    max: float | None = None
    choices: list[str] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ScreeningItem:
        _check_item_bounds(self.name, self.type, self.min, self.max, self.choices)
        return self


class Rule(_Model):
    """``item op value``: the comparison an eligibility criterion tests."""

    item: str
    op: Literal["==", "!=", ">=", ">", "<=", "<", "in"]
    value: bool | int | float | str | list[str]


class EligibilityCriterion(_Model):
    """Inclusion criteria must hold; exclusion criteria must not."""

    id: Code
    kind: Literal["inclusion", "exclusion"]
    text: str
    rule: Rule


class Treatment(_Model):
    """A dosing calendar: doses on ``cycle_days`` of each cycle.

    An anchored treatment (``anchor``) has no cycles of its own: it is given on ``cycle_days``
    relative to day 0 of each cycle of the anchor treatment (peri-cycle ART around IL-2).
    """

    name: str
    route: str
    dose: float = Field(gt=0)
    dose_unit: str
    administrations_per_day: int = Field(ge=1)
    cycle_days: list[int] = Field(min_length=1)
    cycle_interval_weeks: int | None = Field(default=None, gt=0)
    cycles: int | None = Field(default=None, gt=0)
    first_cycle_day: int | None = Field(default=None, ge=0)
    anchor: Code | None = None

    @model_validator(mode="after")
    def _own_or_anchored(self) -> Treatment:
        own = (self.cycle_interval_weeks, self.cycles, self.first_cycle_day)
        if self.anchor is None and any(v is None for v in own):
            raise ValueError(
                "a treatment without 'anchor' needs cycle_interval_weeks, cycles and "
                "first_cycle_day"
            )
        if self.anchor is not None and any(v is not None for v in own):
            raise ValueError(
                "an anchored treatment takes its cycles from its anchor: remove "
                "cycle_interval_weeks, cycles and first_cycle_day"
            )
        if len(set(self.cycle_days)) != len(self.cycle_days):
            raise ValueError(f"cycle_days repeats a day: {self.cycle_days}")
        return self


class Visit(_Model):
    """A scheduled visit at study ``day`` with an allowed window [day - before, day + after]."""

    code: Code
    name: str
    day: int = Field(ge=0)
    window_before: int = Field(ge=0)
    window_after: int = Field(ge=0)
    forms: list[Code] = []


class CycleVisit(_Model):
    """A visit tied to each cycle of a treatment (pre-cycle labs, end-of-cycle assessment)."""

    code: Code
    name: str
    treatment: Code
    cycle_day: int
    window_before: int = Field(ge=0)
    window_after: int = Field(ge=0)
    forms: list[Code] = []


class FollowUp(_Model):
    """Visits after the last scheduled visit, until the study's ``follow_up_end``."""

    extended_visit_interval_weeks: int = Field(gt=0)
    window_days: int = Field(default=14, ge=0)


class FormItem(_Model):
    """A case report form item; numbers carry a unit and a valid range."""

    name: Code
    label: str
    type: ItemType
    unit: str | None = None
    min: float | None = None
    max: float | None = None
    lower_limit: float | None = Field(default=None, gt=0)
    required: bool = False
    choices: list[str] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> FormItem:
        _check_item_bounds(self.name, self.type, self.min, self.max, self.choices)
        if self.type in ("number", "integer") and self.unit is None:
            raise ValueError(f"numeric item {self.name} needs a unit")
        return self


class LabForm(_Model):
    """Laboratory results collected at a visit."""

    name: str
    items: list[FormItem] = Field(min_length=1)


class AdverseEventForm(_Model):
    """Adverse event log: term from a list, DAIDS grade, relatedness."""

    name: str
    grading: str
    terms: list[str] = Field(min_length=1)
    relatedness: list[str] = Field(min_length=1)
    min_grade: int = 1
    max_grade: int = 5


class ClinicalEventTerm(_Model):
    """A coded clinical event (an opportunistic event or death)."""

    code: Code
    term: str
    category: Literal["OPPORTUNISTIC", "DEATH", "OTHER"]


class ClinicalEventForm(_Model):
    """Clinical event log: events from the protocol's coded list."""

    name: str
    events: list[ClinicalEventTerm] = Field(min_length=1)


class Forms(_Model):
    """The case report forms the protocol defines."""

    LAB: LabForm
    AE: AdverseEventForm
    CE: ClinicalEventForm


class Endpoint(_Model):
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


Comparison = Annotated[list[str], Field(min_length=2, max_length=2)]
"""[treatment, control]; a treatment may pool arms as ``"IL2+IL2ART"``."""


class PrimaryAnalysis(_Model):
    """A continuous endpoint compared between arms at its visit (primary or secondary)."""

    endpoint: Code
    comparisons: list[Comparison] = Field(min_length=1)
    methods: list[Literal["ancova", "ttest"]] = Field(min_length=1)
    covariates: list[Literal["baseline"]] = []


class TimeToEventAnalysis(_Model):
    """A time-to-event endpoint compared between arms (or pooled arms)."""

    endpoint: Code
    comparisons: list[Comparison] = Field(min_length=1)
    methods: list[Literal["cox_efron", "cox_breslow", "logrank"]] = Field(min_length=1)


class LongitudinalAnalysis(_Model):
    """A continuous endpoint compared between arms at each of ``visits`` by one MMRM.

    ``covariance`` is fitted first; when it cannot be fitted (no convergence, or a visit with too
    few participants for an unstructured matrix) the plan refits with ``fallback_covariance``
    and says so in the results (``null``: no fallback, the error stands).
    """

    endpoint: Code
    method: Literal["mmrm"] = "mmrm"
    visits: list[Code] = Field(min_length=1)
    comparisons: list[Comparison] = Field(min_length=1)
    covariance: Literal["unstructured", "compound_symmetry"] = "unstructured"
    fallback_covariance: Literal["compound_symmetry"] | None = "compound_symmetry"
    baseline: Literal["by_visit", "common", "none"] = "by_visit"
    df_method: Literal["residual", "satterthwaite"] = "residual"


class SafetyAnalysis(_Model):
    """Proportions of participants with an adverse event, compared between arms.

    One test per AE term of ``terms`` and per threshold of ``any_grade_at_least`` (participants
    with any AE of that grade or worse); ``treatment_emergent`` counts only AEs starting on or
    after randomization. Denominators are the randomized participants of each arm.
    """

    endpoint: Code
    method: Literal["fisher"] = "fisher"
    comparisons: list[Comparison] = Field(min_length=1)
    terms: list[str] = []
    any_grade_at_least: list[int] = []
    treatment_emergent: bool = True


class AnalysisPlan(_Model):
    """The statistical analysis plan."""

    alpha: float = Field(gt=0, lt=1)
    population: Literal["ITT"]
    missing_data: Literal["complete_case"]
    multiplicity: Literal["none"]
    hiv_rna_below_limit: Literal["half_limit", "limit"]
    primary: list[PrimaryAnalysis] = Field(min_length=1)
    time_to_event: list[TimeToEventAnalysis] = []
    secondary: list[PrimaryAnalysis] = []
    longitudinal: list[LongitudinalAnalysis] = []
    safety: list[SafetyAnalysis] = []
    event_review: Literal["confirmed_only", "all_reported"] = "confirmed_only"  # endpoint events


class Protocol(_Model):
    """A whole study definition, validated across its parts."""

    study: Study
    arms: list[Arm] = Field(min_length=2)
    sites: list[Site] = Field(min_length=1)
    randomization: Randomization
    screening_items: list[ScreeningItem] = Field(min_length=1)
    eligibility: list[EligibilityCriterion] = Field(min_length=1)
    treatments: dict[Code, Treatment] = {}
    visits: list[Visit] = Field(min_length=1)
    cycle_visits: list[CycleVisit] = []
    follow_up: FollowUp
    forms: Forms
    endpoints: list[Endpoint] = Field(min_length=1)
    analysis: AnalysisPlan

    # -- lookups -------------------------------------------------------------------------------
    def arm(self, code: str) -> Arm:
        """The arm with this code; ``KeyError`` if none."""
        for arm in self.arms:
            if arm.code == code:
                return arm
        raise KeyError(code)

    def endpoint(self, endpoint_id: str) -> Endpoint:
        """The endpoint with this id; ``KeyError`` if none."""
        for endpoint in self.endpoints:
            if endpoint.id == endpoint_id:
                return endpoint
        raise KeyError(endpoint_id)

    def visit(self, code: str) -> Visit:
        """The scheduled visit with this code; ``KeyError`` if none."""
        for visit in self.visits:
            if visit.code == code:
                return visit
        raise KeyError(code)

    @property
    def arm_codes(self) -> list[str]:
        """Arm codes in protocol order."""
        return [a.code for a in self.arms]

    @property
    def control_arm(self) -> str:
        """The code of the control arm."""
        return next(a.code for a in self.arms if a.control)

    def lab_item(self, name: str) -> FormItem:
        """The LAB form item ``name``; ``KeyError`` if none."""
        for item in self.forms.LAB.items:
            if item.name == name:
                return item
        raise KeyError(name)

    # -- cross-field validation ----------------------------------------------------------------
    @model_validator(mode="after")
    def _cross_references(self) -> Protocol:
        problems: list[str] = []
        problems += _unique("arms", [a.code for a in self.arms])
        problems += _unique("sites", [s.code for s in self.sites])
        problems += _unique(
            "visits", [v.code for v in self.visits] + [v.code for v in self.cycle_visits]
        )
        problems += _unique("eligibility", [c.id for c in self.eligibility])
        problems += _unique("screening_items", [i.name for i in self.screening_items])
        if sum(a.control for a in self.arms) != 1:
            problems.append("arms: exactly one arm must have control = true")
        for arm in self.arms:
            for t in arm.treatments:
                if t not in self.treatments:
                    problems.append(f"arms.{arm.code}.treatments: unknown treatment {t!r}")
        problems += self._check_randomization()
        problems += self._check_eligibility()
        problems += self._check_treatments()
        problems += self._check_visits()
        problems += self._check_endpoints_and_plan()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _check_randomization(self) -> list[str]:
        total = sum(a.ratio for a in self.arms)
        problems = [
            f"randomization.block_sizes: {size} is not a multiple of the allocation ratio "
            f"sum {total}"
            for size in self.randomization.block_sizes or []
            if size % total
        ]
        names = {i.name for i in self.screening_items}
        if self.randomization.method == "permuted_blocks":
            for stratum in self.randomization.strata:
                if stratum != "site" and stratum not in names:
                    problems.append(
                        f"randomization.strata: {stratum!r} is neither 'site' nor a screening item"
                    )
        if self.randomization.minimization is not None:
            problems += self._check_minimization(self.randomization.minimization)
        return problems

    def _check_minimization(self, m: Minimization) -> list[str]:
        where = "randomization.minimization"
        items = {i.name: i for i in self.screening_items}
        problems = _unique(f"{where}.factors", [f.name for f in m.factors])
        for index, factor in enumerate(m.factors):
            at = f"{where}.factors.{index}"
            item = items.get(factor.name)
            if factor.name == "site" or (item is not None and item.type in ("choice", "boolean")):
                if factor.cuts is not None:
                    problems.append(
                        f"{at}.cuts: {factor.name!r} has levels of its own; remove cuts "
                        "(they categorise number and integer items)"
                    )
            elif item is None:
                problems.append(
                    f"{at}.name: {factor.name!r} is neither 'site' nor an item of the screening "
                    f"form ({', '.join(sorted(items))})"
                )
            elif item.type in ("number", "integer"):
                if factor.cuts is None:
                    problems.append(
                        f"{at}.cuts: {factor.name!r} is a {item.type} item; give cuts that "
                        "categorise it, e.g. cuts = [500]"
                    )
                else:
                    lo = -float("inf") if item.min is None else item.min
                    hi = float("inf") if item.max is None else item.max
                    outside = [c for c in factor.cuts if not lo < c <= hi]
                    if outside:
                        problems.append(
                            f"{at}.cuts: {outside} lie outside the range of {factor.name!r} "
                            f"({item.min} to {item.max}), leaving a category empty"
                        )
            else:
                problems.append(
                    f"{at}.name: {factor.name!r} is a {item.type} item; minimize on 'site', a "
                    "choice or boolean item, or a number item with cuts"
                )
        k = len(self.arms)
        if not 1 / k < m.probability <= 1:
            problems.append(
                f"{where}.probability: {m.probability} must be greater than 1/{k} = {1 / k:.4g} "
                f"(the chance of an arm among {k} at random) and at most 1"
            )
        return problems

    def _check_eligibility(self) -> list[str]:
        items = {i.name: i for i in self.screening_items}
        problems = []
        for crit in self.eligibility:
            item = items.get(crit.rule.item)
            if item is None:
                problems.append(
                    f"eligibility.{crit.id}.rule.item: {crit.rule.item!r} is not a screening item"
                )
            elif item.type == "boolean" and not isinstance(crit.rule.value, bool):
                problems.append(f"eligibility.{crit.id}.rule.value: {item.name} needs true/false")
        return problems

    def _check_treatments(self) -> list[str]:
        problems = []
        for code, treatment in self.treatments.items():
            if treatment.anchor is not None:
                anchor = self.treatments.get(treatment.anchor)
                if anchor is None:
                    problems.append(f"treatments.{code}.anchor: unknown treatment")
                elif anchor.anchor is not None:
                    problems.append(f"treatments.{code}.anchor: an anchor cannot be anchored")
        for cv in self.cycle_visits:
            if cv.treatment not in self.treatments:
                problems.append(f"cycle_visits.{cv.code}.treatment: unknown treatment")
        return problems

    def _check_visits(self) -> list[str]:
        problems = []
        days = [v.day for v in self.visits]
        if days != sorted(days) or len(set(days)) != len(days):
            problems.append("visits: days must be strictly increasing")
        if self.visits[0].day != 0:
            problems.append("visits: the first visit must be on day 0 (randomization)")
        for earlier, later in zip(self.visits, self.visits[1:], strict=False):
            if earlier.day + earlier.window_after >= later.day - later.window_before:
                problems.append(f"visits: windows of {earlier.code} and {later.code} overlap")
        # follow-up visits every `step` days, each +/- window_days: a date must belong to one
        step = 7 * self.follow_up.extended_visit_interval_weeks
        w = self.follow_up.window_days
        if 2 * w >= step:
            problems.append(
                f"follow_up.window_days: windows of {w} days either side of visits every {step} "
                f"days overlap: make window_days at most {(step - 1) // 2}"
            )
        last = self.visits[-1]
        if last.day + last.window_after >= last.day + step - w:
            problems.append(
                f"follow_up.window_days: the first follow-up visit's window overlaps the window "
                f"of {last.code}: shorten window_days or {last.code}'s window_after"
            )
        known_forms = {"LAB", "AE", "CE"}
        scheduled: list[Visit | CycleVisit] = [*self.visits, *self.cycle_visits]
        for v in scheduled:
            for f in v.forms:
                if f not in known_forms:
                    problems.append(f"visits.{v.code}.forms: unknown form {f!r}")
        return problems

    def _check_endpoints_and_plan(self) -> list[str]:
        problems = []
        visit_codes = {v.code for v in self.visits}
        lab_items = {i.name for i in self.forms.LAB.items}
        endpoints = {e.id: e for e in self.endpoints}
        for e in self.endpoints:
            if e.visit is not None and e.visit not in visit_codes:
                problems.append(f"endpoints.{e.id}.visit: unknown visit {e.visit!r}")
            if e.baseline_visit is not None and e.baseline_visit not in visit_codes:
                problems.append(f"endpoints.{e.id}.baseline_visit: unknown visit")
            if e.test is not None and e.test not in lab_items:
                problems.append(f"endpoints.{e.id}.test: {e.test!r} is not a LAB item")
        arms = set(self.arm_codes)
        analyses: list[
            PrimaryAnalysis | TimeToEventAnalysis | LongitudinalAnalysis | SafetyAnalysis
        ] = [
            *self.analysis.primary,
            *self.analysis.time_to_event,
            *self.analysis.secondary,
            *self.analysis.longitudinal,
            *self.analysis.safety,
        ]
        problems += self._check_longitudinal_and_safety(endpoints)
        for a in analyses:
            where = f"analysis.{a.endpoint}"
            if a.endpoint not in endpoints:
                problems.append(f"{where}: unknown endpoint")
            for treated, control in a.comparisons:
                for code in [*treated.split("+"), control]:
                    if code not in arms:
                        problems.append(f"{where}.comparisons: unknown arm {code!r}")
        return problems

    def _check_longitudinal_and_safety(self, endpoints: dict[str, Endpoint]) -> list[str]:
        problems = []
        kinds: dict[
            str,
            tuple[list[PrimaryAnalysis] | list[LongitudinalAnalysis] | list[SafetyAnalysis], str],
        ] = {
            "secondary": (self.analysis.secondary, "continuous"),
            "longitudinal": (self.analysis.longitudinal, "continuous"),
            "safety": (self.analysis.safety, "safety"),
        }
        for section, (specs, kind) in kinds.items():
            for spec in specs:
                endpoint = endpoints.get(spec.endpoint)
                if endpoint is not None and endpoint.kind != kind:
                    problems.append(
                        f"analysis.{section}.{spec.endpoint}.endpoint: a {endpoint.kind} "
                        f"endpoint; {section} analyses take a {kind} endpoint"
                    )
        visit_codes = [v.code for v in self.visits]
        for spec in self.analysis.longitudinal:
            where = f"analysis.longitudinal.{spec.endpoint}.visits"
            endpoint = endpoints.get(spec.endpoint)
            baseline = endpoint.baseline_visit if endpoint is not None else None
            for code in spec.visits:
                if code not in visit_codes:
                    problems.append(f"{where}: unknown visit {code!r} (visits: {visit_codes})")
                elif code == baseline:
                    problems.append(
                        f"{where}: {code!r} is the baseline visit, a covariate of the model; "
                        "list post-baseline visits only"
                    )
            problems += _unique(where, spec.visits)
        return problems + self._check_safety()

    def _check_safety(self) -> list[str]:
        problems = []
        ae = self.forms.AE
        for spec in self.analysis.safety:
            where = f"analysis.safety.{spec.endpoint}"
            for term in spec.terms:
                if term not in ae.terms:
                    problems.append(f"{where}.terms: {term!r} is not a term of forms.AE.terms")
            for grade in spec.any_grade_at_least:
                if not ae.min_grade <= grade <= ae.max_grade:
                    problems.append(
                        f"{where}.any_grade_at_least: {grade} lies outside the AE grades "
                        f"{ae.min_grade} to {ae.max_grade}"
                    )
            if not spec.terms and not spec.any_grade_at_least:
                problems.append(f"{where}: give terms and/or any_grade_at_least to compare")
        return problems


def _unique(where: str, values: list[str]) -> list[str]:
    seen: set[str] = set()
    dup = sorted({v for v in values if v in seen or seen.add(v)})  # type: ignore[func-returns-value]
    return [f"{where}: duplicate code {d!r}" for d in dup]


def _check_item_bounds(
    name: str, type_: str, lo: float | None, hi: float | None, choices: list[Any] | None
) -> None:
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"{name}: min {lo} is greater than max {hi}")
    if type_ == "choice" and not choices:
        raise ValueError(f"{name}: a choice item needs choices")
