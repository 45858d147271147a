"""Numbers, units and field names as people write them, for every message a user reads.

``number(1e8)`` is ``"100,000,000"`` (not ``1e+08``), ``number(-5.0)`` is ``"-5"``; ``amount``
adds the unit; ``label_of`` names a form field by what its form calls it (``consent_date`` ->
"Date of informed consent", ``LAB.CD4`` -> the LAB item's label), so no message shows an
internal name.
"""

from __future__ import annotations

import math

__all__ = ["FIELD_LABELS", "amount", "label_of", "number", "value_range"]

FIELD_LABELS: dict[str, str] = {
    "screening_number": "Screening number",
    "screening_date": "Screening date",
    "consent_date": "Date of informed consent",
    "randomization_date": "Randomization date",
    "visit_date": "Visit date",
    "onset_date": "Onset date",
    "start_date": "Start date",
    "end_date": "End date",
    "disposition_date": "Date of the end of follow-up",
    "deviation_date": "Date of the deviation",
    "deviation_reason": "Reason the visit is outside its window",
    "event_code": "Event",
    "verbatim": "Event, in the site's words",
    "term": "Protocol term",
    "grade": "DAIDS grade",
    "related": "Relationship to study treatment",
    "outcome": "Outcome",
    "action": "Action taken with study treatment",
    "serious": "Serious",
    "seriousness": "Seriousness criteria",
    "reason": "Reason",
    "site": "Site",
}
"""The form label of each date and text field the forms share."""


def number(value: float) -> str:
    """``value`` as people write it: thousands separated, no exponent, no trailing ``.0``."""
    if not math.isfinite(value):
        return str(value)
    if float(value).is_integer():
        return f"{int(value):,}"
    text = f"{value:,.6f}".rstrip("0").rstrip(".")
    return text if text not in ("-0", "") else "0"


def amount(value: float, unit: str | None) -> str:
    """``value`` with its unit: ``"5,000 cells/mm3"``, ``"22.5 %"``, ``"35"`` (no unit)."""
    return f"{number(value)} {unit}" if unit else number(value)


def value_range(lo: float | None, hi: float | None, unit: str | None) -> str | None:
    """``"0 to 100,000,000 copies/mL"``, ``"at least 0 years"``; None without bounds."""
    if lo is not None and hi is not None:
        return f"{number(lo)} to {amount(hi, unit)}"
    if lo is not None:
        return f"at least {amount(lo, unit)}"
    if hi is not None:
        return f"at most {amount(hi, unit)}"
    return None


def label_of(field: str, labels: dict[str, str] | None = None) -> str:
    """The label of ``field``: from ``labels`` (a form's own items), else ``FIELD_LABELS``, else
    the name with its prefix dropped and underscores as spaces."""
    if labels and field in labels:
        return labels[field]
    if field in FIELD_LABELS:
        return FIELD_LABELS[field]
    name = field.rsplit(".", 1)[-1].replace("_", " ")
    return name[:1].upper() + name[1:]
