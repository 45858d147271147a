"""Typed results of the analysis plan: what :func:`stalwart.analysis.plan.analyze` returns.

Frozen records, one class per section of results.json. ``PlanResult.to_dict()`` is the
results.json body (provenance aside) and ``PlanResult.from_dict`` reads it back, so that
``from_dict(r.to_dict()) == r``. Floats are JSON-safe: ``None`` where a value is not finite or
not estimable. Optional keys (``_OMIT_IF_NONE``) are left out of a record when they are ``None``,
which keeps the records of the first results.json version (an ANCOVA record has
``adjusted_mean``, a t-test record has none; a log-rank record has ``chi2``, a Cox record
``test``, ``lr_p_value`` and ``score_p_value``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Self

from stalwart.errors import AnalysisError

__all__ = [
    "ContinuousComparison",
    "KmSummary",
    "LongitudinalComparison",
    "PlanResult",
    "Randomized",
    "SafetyComparison",
    "TimeToEventComparison",
]


class _Record:
    """``to_dict``/``from_dict`` for the frozen records below."""

    _OMIT_IF_NONE: ClassVar[frozenset[str]] = frozenset()

    def to_dict(self) -> dict[str, Any]:
        """The record as a JSON-ready dict (``dict`` fields copied)."""
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is None and f.name in self._OMIT_IF_NONE:
                continue
            out[f.name] = dict(value) if isinstance(value, Mapping) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Read a record back from its ``to_dict`` form; unknown or missing keys are an error."""
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        if unknown:
            raise AnalysisError(f"{cls.__name__}: unknown keys {unknown}; expected {sorted(names)}")
        try:
            return cls(**dict(data))
        except TypeError as exc:
            raise AnalysisError(f"{cls.__name__}: {exc}") from exc


@dataclass(frozen=True)
class Randomized(_Record):
    """Participants randomized, in total and by arm (protocol order)."""

    total: int
    by_arm: dict[str, int]


@dataclass(frozen=True)
class ContinuousComparison(_Record):
    """A continuous endpoint at its visit, treated (maybe pooled arms) vs control, one method."""

    _OMIT_IF_NONE: ClassVar[frozenset[str]] = frozenset({"adjusted_mean"})

    endpoint: str
    week: int
    arm: str
    control: str
    n: dict[str, int]
    mean: dict[str, float]
    method: str
    difference: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    se: float | None
    df: float | None
    test: str
    adjusted_mean: dict[str, float] | None = None


@dataclass(frozen=True)
class TimeToEventComparison(_Record):
    """Hazard ratio (Cox) or log-rank test of a time-to-event endpoint, treated vs control."""

    _OMIT_IF_NONE: ClassVar[frozenset[str]] = frozenset(
        {"test", "note", "chi2", "lr_p_value", "score_p_value"}
    )

    parameter: str
    arm: str
    control: str
    events: dict[str, int]
    n: dict[str, int]
    method: str
    hazard_ratio: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    test: str | None = None
    note: str | None = None
    chi2: float | None = None
    lr_p_value: float | None = None
    score_p_value: float | None = None


@dataclass(frozen=True)
class KmSummary(_Record):
    """Kaplan-Meier median (and its confidence limits) of one arm."""

    parameter: str
    arm: str
    n: int
    events: int
    median: float | None
    ci_low: float | None
    ci_high: float | None


@dataclass(frozen=True)
class LongitudinalComparison(_Record):
    """One visit's MMRM contrast, treated minus control LS mean.

    ``covariance`` is the structure fitted, ``covariance_planned`` the plan's first choice;
    ``note`` says why they differ. ``log_likelihood`` is the REML log-likelihood of the fit
    (shared by every record of one model). ``kenward_roger`` holds the contrast's Kenward-Roger
    inference (``se``, ``df``, ``ci_low``, ``ci_high``, ``p_value``) beside the plan's
    ``df_method`` results, when the fit computed it.
    """

    _OMIT_IF_NONE: ClassVar[frozenset[str]] = frozenset({"kenward_roger"})

    endpoint: str
    visit: str
    week: int
    arm: str
    control: str
    method: str
    covariance: str
    covariance_planned: str
    baseline: str
    df_method: str
    n: dict[str, int]
    ls_mean: dict[str, float | None]
    ls_mean_se: dict[str, float | None]
    difference: float | None
    se: float | None
    df: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    log_likelihood: float | None
    note: str | None = None
    kenward_roger: dict[str, float | None] | None = None


@dataclass(frozen=True)
class SafetyComparison(_Record):
    """Participants with an adverse event (a term, or any AE of a grade or worse) by arm.

    ``difference`` is the difference in proportions, treated minus control; ``odds_ratio`` with
    ``ci_low``/``ci_high`` and ``p_value`` are Fisher's exact test (R ``fisher.test``).
    """

    endpoint: str
    term: str
    arm: str
    control: str
    n: dict[str, int]
    events: dict[str, int]
    proportion: dict[str, float | None]
    difference: float | None
    odds_ratio: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    method: str = "fisher"
    test: str = "Fisher's exact test"


_SECTIONS: dict[str, type[_Record]] = {
    "primary": ContinuousComparison,
    "secondary": ContinuousComparison,
    "longitudinal": LongitudinalComparison,
    "time_to_event": TimeToEventComparison,
    "km": KmSummary,
    "safety": SafetyComparison,
}


@dataclass(frozen=True)
class PlanResult:
    """Every result of the analysis plan, by section of the protocol's ``[analysis]``."""

    randomized: Randomized
    primary: tuple[ContinuousComparison, ...]
    time_to_event: tuple[TimeToEventComparison, ...]
    km: tuple[KmSummary, ...]
    secondary: tuple[ContinuousComparison, ...] = field(default=())
    longitudinal: tuple[LongitudinalComparison, ...] = field(default=())
    safety: tuple[SafetyComparison, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """The results.json body: ``randomized`` and a list of records per section."""
        out: dict[str, Any] = {"randomized": self.randomized.to_dict()}
        for name in _SECTIONS:
            out[name] = [record.to_dict() for record in getattr(self, name)]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PlanResult:
        """Read a results.json body back (extra top-level keys such as provenance are ignored).

        A body written before the secondary, longitudinal and safety sections existed reads
        with those sections empty.
        """
        for name in ("randomized", "primary", "time_to_event", "km"):
            if name not in data:
                raise AnalysisError(f"results: the {name!r} section is missing")
        sections: dict[str, Any] = {
            name: tuple(kind.from_dict(r) for r in data.get(name, []))
            for name, kind in _SECTIONS.items()
        }
        return cls(randomized=Randomized.from_dict(data["randomized"]), **sections)
