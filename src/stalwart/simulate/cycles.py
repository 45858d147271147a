"""Treatment cycles: a participant's dose days grouped as the model reads them.

The protocol calendar lists dose days per treatment; the model treats a cycle as a unit (started
or declined, withheld after toxicity, stopped after an event), with any treatment anchored to
another (ART given with IL-2) joining its anchor's cycle. Treatment effects follow the treatment
codes below, never arm codes.
"""

from __future__ import annotations

from dataclasses import dataclass

from stalwart.protocol.calendar import Calendar, DoseDay
from stalwart.protocol.schema import Protocol

__all__ = ["ART_TREATMENT", "IL2_TREATMENT", "TreatmentCycle", "treatment_cycles"]

IL2_TREATMENT = "IL2"
"""Protocol treatment code whose doses raise CD4, HIV RNA and the event hazard."""

ART_TREATMENT = "ART"
"""Protocol treatment code whose doses suppress HIV RNA."""


@dataclass(frozen=True)
class TreatmentCycle:
    """The dose days of one cycle: a treatment's cycle with the treatments anchored to it."""

    anchor: str
    number: int
    doses: tuple[DoseDay, ...]

    @property
    def key(self) -> tuple[str, int]:
        """``(anchor treatment, cycle number)``."""
        return (self.anchor, self.number)

    @property
    def first_day(self) -> int:
        """Study day of the cycle's first dose of any treatment."""
        return self.doses[0].study_day

    def days(self, treatment: str) -> tuple[int, ...]:
        """Study days on which ``treatment`` is planned in this cycle."""
        return tuple(d.study_day for d in self.doses if d.treatment == treatment)


def treatment_cycles(protocol: Protocol, calendar: Calendar) -> tuple[TreatmentCycle, ...]:
    """Group a calendar's dose days into cycles (anchored treatments join their anchor's cycle)."""
    groups: dict[tuple[str, int], list[DoseDay]] = {}
    for dose in calendar.doses:
        treatment = protocol.treatments[dose.treatment]
        anchor = treatment.anchor or dose.treatment
        groups.setdefault((anchor, dose.cycle), []).append(dose)
    cycles = [
        TreatmentCycle(anchor, number, tuple(sorted(doses, key=lambda d: d.study_day)))
        for (anchor, number), doses in groups.items()
    ]
    cycles.sort(key=lambda c: (c.first_day, c.anchor))
    return tuple(cycles)
