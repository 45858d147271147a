"""The plan's comparisons, read once: which arms against which control, by which methods.

The protocol writes a comparison as ``[treated, control]``, where the treated side may pool arms
(``"IL2+IL2ART"``: those arms' participants together, as one group). :class:`Comparison` is that
pair read, with its plan section, endpoint and methods. The single-trial plan
(:mod:`~stalwart.analysis.plan` and its longitudinal and safety sections), the Monte Carlo engine
(:mod:`~stalwart.montecarlo.engine`) and its summary take their comparisons from here, so the
treated side is labelled and keyed in one place (and split by the protocol's
:func:`~stalwart.protocol.analysis_plan.treated_arms`).
"""

from __future__ import annotations

from dataclasses import dataclass

from stalwart.protocol.analysis_plan import (
    POOLED,
    LongitudinalAnalysis,
    PrimaryAnalysis,
    SafetyAnalysis,
    TimeToEventAnalysis,
    treated_arms,
)
from stalwart.protocol.schema import Protocol

__all__ = [
    "Comparison",
    "analysis_comparisons",
    "comparison_key",
    "plan_comparisons",
]


@dataclass(frozen=True)
class Comparison:
    """One comparison of the plan: ``treated`` arms (pooled when several) vs ``control``.

    ``kind`` is the plan section it comes from (``primary``, ``secondary``, ``time_to_event``,
    ``longitudinal`` or ``safety``); ``methods`` are the protocol's method names
    (:data:`~stalwart.analysis.methods.METHODS` for the two-arm tests).
    """

    kind: str
    endpoint: str
    treated: tuple[str, ...]
    control: str
    methods: tuple[str, ...]

    @property
    def arm(self) -> str:
        """The treated side as the protocol writes it (``IL2``, ``IL2+IL2ART``)."""
        return POOLED.join(self.treated)

    @property
    def pooled(self) -> bool:
        """Whether the treated side pools several arms."""
        return len(self.treated) > 1

    @property
    def label(self) -> str:
        """``IL2 vs NOTHER``, ``IL2+IL2ART vs NOTHER``."""
        return f"{self.arm} vs {self.control}"

    def key(self, method: str | None = None) -> str:
        """Column prefix of this comparison (and method) in the Monte Carlo results."""
        return comparison_key(self.endpoint, self.label, method)


def comparison_key(endpoint: str, label: str, method: str | None = None) -> str:
    """``"CD4 IL2 vs NOTHER ancova"``: the prefix of a comparison's Monte Carlo columns."""
    return f"{endpoint} {label}" + (f" {method}" if method else "")


def analysis_comparisons(
    kind: str,
    spec: PrimaryAnalysis | TimeToEventAnalysis | LongitudinalAnalysis | SafetyAnalysis,
) -> tuple[Comparison, ...]:
    """The comparisons of one analysis of the plan's section ``kind``, in the plan's order."""
    methods = (
        tuple(spec.methods)
        if isinstance(spec, PrimaryAnalysis | TimeToEventAnalysis)
        else (spec.method,)
    )
    return tuple(
        Comparison(kind, spec.endpoint, treated_arms(treated), control, methods)
        for treated, control in spec.comparisons
    )


def plan_comparisons(protocol: Protocol) -> list[Comparison]:
    """The primary and time-to-event comparisons of the plan (what the Monte Carlo runs), primary
    first."""
    return [
        comparison
        for kind, specs in (
            ("primary", protocol.analysis.primary),
            ("time_to_event", protocol.analysis.time_to_event),
        )
        for spec in specs
        for comparison in analysis_comparisons(kind, spec)
    ]
