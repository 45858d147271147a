"""Pydantic models of a protocol file: the single source every other part of stalwart reads.

The models validate one study definition: arms and allocation ratio, sites, randomization,
screening items and eligibility rules, treatment (dosing) calendars, visits with windows, case
report forms with units and valid ranges (LAB items with their ADaM parameter codes), and the
endpoints and statistical analysis plan (their models in :mod:`~.analysis_plan`). Cross-field
checks (an arm named in the plan exists, a visit named by an endpoint exists...) live in
``Protocol``'s validators so that an invalid file fails on load, naming the field.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from stalwart.protocol import fields
from stalwart.protocol.analysis_plan import AnalysisPlan, Endpoint, plan_problems
from stalwart.protocol.fields import Code, ProtocolModel, check_item_bounds, duplicates
from stalwart.protocol.soft_checks import SoftCheck, soft_check_problems
from stalwart.protocol.study import Arm, ProtocolProblems, Site, Study
from stalwart.protocol.submission import AdverseEventForm, Submission, submission_problems

__all__ = [
    "AdverseEventForm",
    "Arm",
    "ClinicalEventForm",
    "ClinicalEventTerm",
    "CycleVisit",
    "EligibilityCriterion",
    "FollowUp",
    "FormItem",
    "LabForm",
    "Minimization",
    "MinimizationFactor",
    "Protocol",
    "ProtocolProblems",
    "Randomization",
    "Rule",
    "ScreeningItem",
    "Site",
    "Study",
    "Treatment",
    "Visit",
]


class MinimizationFactor(ProtocolModel):
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


class Minimization(ProtocolModel):
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


class Randomization(ProtocolModel):
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


class ScreeningItem(ProtocolModel):
    """An item of the screening form, the input of the eligibility rules."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    label: str
    type: ItemType
    unit: str | None = None
    min: float | None = None
    max: float | None = None
    choices: list[str] | None = None
    required: bool = True  # false: may be left blank (e.g. race, where a country bars asking)

    @model_validator(mode="after")
    def _consistent(self) -> ScreeningItem:
        check_item_bounds(self.name, self.type, self.min, self.max, self.choices)
        return self


class Rule(ProtocolModel):
    """``item op value``: the comparison an eligibility criterion tests."""

    item: str
    op: Literal["==", "!=", ">=", ">", "<=", "<", "in"]
    value: bool | int | float | str | list[str]


class EligibilityCriterion(ProtocolModel):
    """Inclusion criteria must hold; exclusion criteria must not."""

    id: Code
    kind: Literal["inclusion", "exclusion"]
    text: str
    rule: Rule


class Treatment(ProtocolModel):
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


class Visit(ProtocolModel):
    """A scheduled visit at study ``day`` with an allowed window [day - before, day + after]."""

    code: Code
    name: str
    day: int = Field(ge=0)
    window_before: int = Field(ge=0)
    window_after: int = Field(ge=0)
    forms: list[Code] = []


class CycleVisit(ProtocolModel):
    """A visit tied to each cycle of a treatment (pre-cycle labs, end-of-cycle assessment)."""

    code: Code
    name: str
    treatment: Code
    cycle_day: int
    window_before: int = Field(ge=0)
    window_after: int = Field(ge=0)
    forms: list[Code] = []


class FollowUp(ProtocolModel):
    """Visits after the last scheduled visit, until the study's ``follow_up_end``."""

    extended_visit_interval_weeks: int = Field(gt=0)
    window_days: int = Field(default=14, ge=0)


_PARAMCD = re.compile(r"^[A-Z][A-Z0-9_]{0,7}$")


class FormItem(ProtocolModel):
    """A case report form item; numbers carry a unit and a valid range.

    A LAB item is also a parameter of the ADLB analysis dataset: ``paramcd`` is its PARAMCD (1
    to 8 upper-case letters, digits or underscores, starting with a letter, as CDISC ADaM asks;
    default: the item's ``name``) and ``param`` its PARAM, the parameter's description with the
    unit of the analysed value (default: ``"label (unit)"``). The analysis and the Monte Carlo
    engine read both from here.
    """

    name: Code
    label: str
    type: ItemType
    unit: str | None = None
    min: float | None = None
    max: float | None = None
    lower_limit: float | None = Field(default=None, gt=0)
    required: bool = False
    choices: list[str] | None = None
    paramcd: str
    param: str

    @model_validator(mode="before")
    @classmethod
    def _parameter_defaults(cls, data: Any) -> Any:
        """``paramcd`` defaults to the name, ``param`` to the label with the unit."""
        if isinstance(data, dict):
            data = dict(data)
            if "paramcd" not in data and "name" in data:
                data["paramcd"] = data["name"]
            if "param" not in data and "label" in data:
                unit = data.get("unit")
                data["param"] = f"{data['label']} ({unit})" if unit else data["label"]
        return data

    @field_validator("paramcd")
    @classmethod
    def _cdisc_paramcd(cls, value: str) -> str:
        if not _PARAMCD.match(value):
            raise ValueError(
                f"PARAMCD {value!r} must be 1 to 8 upper-case letters, digits or underscores "
                "starting with a letter (CDISC ADaM); give the item a paramcd that is"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> FormItem:
        check_item_bounds(self.name, self.type, self.min, self.max, self.choices)
        if self.type in ("number", "integer") and self.unit is None:
            raise ValueError(f"numeric item {self.name} needs a unit")
        return self


class LabForm(ProtocolModel):
    """Laboratory results collected at a visit."""

    name: str
    items: list[FormItem] = Field(min_length=1)


class ClinicalEventTerm(ProtocolModel):
    """A coded clinical event (an opportunistic event or death)."""

    code: Code
    term: str
    category: Literal["OPPORTUNISTIC", "DEATH", "OTHER"]


class ClinicalEventForm(ProtocolModel):
    """Clinical event log: events from the protocol's coded list."""

    name: str
    events: list[ClinicalEventTerm] = Field(min_length=1)


class Forms(ProtocolModel):
    """The case report forms the protocol defines."""

    LAB: LabForm
    AE: AdverseEventForm
    CE: ClinicalEventForm


class Protocol(ProtocolModel):
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
    submission: Submission | None = None
    soft_checks: list[SoftCheck] = []

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
        problems = self.cross_reference_problems()
        if problems:
            raise ProtocolProblems(problems)
        return self

    def cross_reference_problems(self, *, partial: bool = False) -> list[str]:
        """Every problem across the protocol's parts (a duplicate code, a rule on an unknown
        item, ...). ``partial``: the protocol was built from the parts that are valid on their
        own (``load.parse_protocol`` does, so a file's field errors and these show together);
        a check needing a missing part is skipped."""
        problems: list[str] = []
        for check in self._cross_checks():
            try:
                problems += check()
            except (AttributeError, KeyError, TypeError, ValueError, StopIteration):
                if not partial:
                    raise
        return problems

    def _cross_checks(self) -> list[Callable[[], list[str]]]:
        def arms() -> list[str]:
            found = duplicates("arms", [a.code for a in self.arms])
            if sum(a.control for a in self.arms) != 1:
                found.append("arms: exactly one arm must have control = true")
            return found

        def arm_treatments() -> list[str]:
            return [
                f"arms.{arm.code}.treatments: unknown treatment {t!r}"
                for arm in self.arms
                for t in arm.treatments
                if t not in self.treatments
            ]

        def labs() -> list[str]:
            return [i.name for i in self.forms.LAB.items]

        return [
            arms,
            lambda: duplicates("sites", [s.code for s in self.sites]),
            lambda: fields.visit_codes(
                [v.code for v in self.visits] + [c.code for c in self.cycle_visits]
            ),
            lambda: duplicates("eligibility", [c.id for c in self.eligibility]),
            lambda: duplicates("screening_items", [i.name for i in self.screening_items]),
            arm_treatments,
            self._check_randomization,
            self._check_eligibility,
            self._check_treatments,
            self._check_visits,
            lambda: plan_problems(
                self.analysis,
                self.endpoints,
                [v.code for v in self.visits],
                labs(),
                self.arm_codes,
                self.forms.AE.terms,
                (self.forms.AE.min_grade, self.forms.AE.max_grade),
            ),
            lambda: submission_problems(self.submission, labs(), self.treatments),
            lambda: soft_check_problems(self.soft_checks, labs()),
        ]

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
        problems = duplicates(f"{where}.factors", [f.name for f in m.factors])
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
            elif not item.required:
                problems.append(f"eligibility.{crit.id}.rule.item: {item.name} is optional")
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
