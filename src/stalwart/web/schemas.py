"""Request and response models of the API: Create models for input, Public models for output.

Requests forbid unknown fields, so a misspelt field is a 422 naming it rather than silently
ignored. Values are checked again by the service's edit checks, which own the protocol rules.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    create_model,
    field_validator,
)
from pydantic import ValidationError as PydanticValidationError

from stalwart.capture.ae_form import AeDetails
from stalwart.capture.text import first_uncarriable
from stalwart.protocol.schema import ScreeningItem

__all__ = [
    "MAX_ID",
    "AccountStatus",
    "AdverseEventCreate",
    "AllocationPublic",
    "AuditEntryPublic",
    "ClinicalEventCreate",
    "ConsentCreate",
    "DeviationCreate",
    "DeviationReview",
    "DispositionCreate",
    "DoseDayIn",
    "DoseLogCreate",
    "FieldChangePublic",
    "LockCreate",
    "LockPublic",
    "LockRelease",
    "MissedVisitCreate",
    "PasswordChange",
    "PasswordReset",
    "QueryAnswer",
    "QueryClose",
    "QueryCreate",
    "RandomizationCreate",
    "RecordId",
    "ReviewCreate",
    "RoleChange",
    "ScreeningCreate",
    "ScreeningPublic",
    "SignatureCreate",
    "SourceVerificationCreate",
    "TokenCreate",
    "TokenPublic",
    "TrailEntryPublic",
    "TrailPublic",
    "UnscheduledVisitCreate",
    "UserCreate",
    "Version",
    "VisitCorrection",
    "VisitCreate",
    "form_answers_that_parse",
]

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
Code = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]


def _not_boolean(value: object) -> object:
    """Refuse true/false where a number is asked for: pydantic would read them as 1 and 0."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not true/false")
    return value


Answer = bool | int | float | str
LabEntry = Annotated[float | int | str, BeforeValidator(_not_boolean)]
Count = Annotated[int, BeforeValidator(_not_boolean)]
"""A whole number of the request (true/false refused)."""

MAX_ID = 2**31 - 1
"""The largest record id the store holds (PostgreSQL's ``integer``)."""

RecordId = Annotated[int, Path(ge=1, le=MAX_ID)]
"""A record id in a URL: 1 to ``MAX_ID`` (a larger one is refused before it reaches the store)."""


def _carriable(value: Any) -> None:
    """Refuse text (at any depth of a field's value) that a stored record could not carry."""
    if isinstance(value, str):
        found = first_uncarriable(value)
        if found is not None:
            raise ValueError(
                f"contains U+{ord(found[1]):04X} at character {found[0] + 1}, a control "
                "character, NUL, lone surrogate or non-character: remove it (text may hold "
                "letters, digits, punctuation, spaces, tabs and new lines)"
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            _carriable(key)
            _carriable(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _carriable(item)


class _In(BaseModel):
    """Every request body: no unknown fields, no text a record cannot carry (``capture.text``:
    the store refuses it too, this names the field of the request)."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _text_every_format_can_carry(cls, value: Any) -> Any:
        _carriable(value)
        return value


class TokenCreate(_In):
    """Credentials for an API token."""

    username: Code
    password: str = Field(min_length=1, max_length=200)


class TokenPublic(BaseModel):
    """A bearer token (shown once)."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_at: dt.datetime
    username: str
    role: str
    site: str | None


class UserCreate(_In):
    """A new user account (admins only)."""

    username: Code
    password: str = Field(min_length=1, max_length=200)
    role: Code
    site: Code | None = None
    full_name: str | None = Field(default=None, max_length=200)


Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class AccountStatus(_In):
    """Deactivate (``active`` false: every token and session dies at once) or reactivate."""

    active: bool
    reason: Reason


class RoleChange(_In):
    """A new role and site of an account (``site`` for site roles and an optional monitor's)."""

    role: Code
    site: Code | None = None
    reason: Reason


class PasswordReset(_In):
    """A temporary password its owner must change at the next login."""

    password: str = Field(min_length=1, max_length=200)


class PasswordChange(_In):
    """One's own new password, proving the current (or temporary) one."""

    username: Code
    password: str = Field(min_length=1, max_length=200)
    new_password: str = Field(min_length=1, max_length=200)


_FORM_ANSWER_TYPES: dict[str, type] = {"boolean": bool, "integer": int, "number": float}
"""The Python type a form's text answer is read as, by screening item type (else text)."""


@functools.cache
def _form_answers(items: tuple[tuple[str, str, bool], ...]) -> type[BaseModel]:
    """A model of the screening items ``(name, type, required)``, each of its type; an optional
    one left blank is absent (None, dropped)."""
    fields: dict[str, Any] = {
        name: (_FORM_ANSWER_TYPES.get(kind, str), ...)
        if required
        else (_FORM_ANSWER_TYPES.get(kind, str) | None, None)
        for name, kind, required in items
    }
    return create_model("ScreeningFormAnswers", __config__=ConfigDict(extra="forbid"), **fields)


def form_answers_that_parse(
    items: Sequence[ScreeningItem], answers: Mapping[str, object]
) -> dict[str, object]:
    """The form's text answers each read as its item's type, those that are one (the others
    are the form's own errors), so the service checks these beside them."""
    found: dict[str, object] = {}
    for item in items:
        if item.name in answers:
            kind = _FORM_ANSWER_TYPES.get(item.type, str)
            try:
                found[item.name] = TypeAdapter(kind).validate_python(answers[item.name])
            except PydanticValidationError:
                continue
    return found


class ScreeningCreate(_In):
    """A screening: the site, the date, and every screening item; ``screening_number`` left out
    is assigned (the protocol's ``study.screening_number_format``); ``consent_date``, the
    informed consent given before the screening procedures, is recorded with it."""

    site: Code
    screening_number: Code | None = None
    screening_date: dt.date
    answers: dict[str, Answer]
    consent_date: dt.date | None = None

    @field_validator("answers", mode="wrap")
    @classmethod
    def _form_answers_typed(
        cls, value: object, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> object:
        """A form posts every answer as text: given the protocol's items as the validation
        context's ``screening_items`` (the pages do), each is first read as its item's type, and
        a text that is not one is refused under ``answers.<item>``. JSON answers are typed as
        sent (the API gives no context)."""
        items: Sequence[ScreeningItem] | None = (info.context or {}).get("screening_items")
        if items is not None:
            model = _form_answers(tuple((i.name, i.type, i.required) for i in items))
            value = model.model_validate(value).model_dump(exclude_none=True)
        return handler(value)


class ScreeningPublic(BaseModel):
    """The eligibility verdict; ``reasons`` lists the criteria not met."""

    screening_number: str
    eligible: bool
    reasons: list[str]


class ConsentCreate(_In):
    """Informed consent of a screened, eligible person; ``site``: where the screening number is
    used (screening numbers are unique per site; needed only by an all-sites user when two
    sites use the number)."""

    consent_date: dt.date
    site: Code | None = None


class RandomizationCreate(_In):
    """Randomize a consented person; ``consent_date`` defaults to the recorded consent;
    ``site`` as in ``ConsentCreate``."""

    screening_number: Code
    randomization_date: dt.date
    consent_date: dt.date | None = None
    site: Code | None = None
    entry_labs: dict[str, LabEntry] | None = None


class ScheduledVisitPublic(BaseModel):
    """A planned visit and its window."""

    code: str
    name: str
    study_day: int
    target: dt.date
    earliest: dt.date
    latest: dt.date


class DoseDayPublic(BaseModel):
    """A planned dosing day."""

    treatment: str
    cycle: int
    date: dt.date
    administrations: int
    dose: float
    dose_unit: str


class AllocationPublic(BaseModel):
    """The arm, and the participant's visit and dosing calendar from the protocol."""

    usubjid: str
    arm: str
    randomization_date: dt.date
    visits: list[ScheduledVisitPublic]
    doses: list[DoseDayPublic]


class _VisitForm(_In):
    """A visit's date and laboratory results (``"<50"`` below the assay limit)."""

    visit_date: dt.date
    labs: dict[str, LabEntry]


class VisitCreate(_VisitForm):
    """A visit's first save; a date outside the visit's window needs ``deviation_reason`` (the
    visit is saved and logged as a protocol deviation)."""

    deviation_reason: Text | None = None


class UnscheduledVisitCreate(_In):
    """An unscheduled visit: its date, why it happened, and any of the LAB results."""

    visit_date: dt.date
    labs: dict[str, LabEntry]
    reason: Text


class MissedVisitCreate(_In):
    """Why a scheduled visit did not take place (after its window has closed)."""

    reason: Text


class DeviationCreate(_In):
    """A protocol deviation reported by a user."""

    category: Code
    description: Text
    deviation_date: dt.date


class DeviationReview(_In):
    """The data manager's review note of a deviation."""

    note: Text


Version = Annotated[int, BeforeValidator(_not_boolean), Field(ge=0, le=MAX_ID)]
"""A record's version as read (its ``version``, or the ETag of its GET)."""


class VisitCorrection(_VisitForm):
    """A correction of a saved visit: the reason for change is required, and the version it was
    made from, here or as the ``If-Match`` header (without either it is refused with 409)."""

    reason: Text
    version: Version | None = None


class DoseDayIn(_In):
    """Administrations taken on one dose day."""

    date: dt.date
    administrations: Count


class DoseLogCreate(_In):
    """The dose log of one cycle of one treatment."""

    treatment: Code
    cycle: Count = Field(ge=1)
    days: list[DoseDayIn] = Field(min_length=1)
    deviation_reason: Text | None = None
    """Why a dose was given on a day outside the dosing calendar (saved as a deviation)."""


class ClinicalEventCreate(_In):
    """An opportunistic event or death, by its protocol code."""

    event_code: Code
    onset_date: dt.date


class AdverseEventCreate(_In):
    """An adverse event: protocol term, the site's verbatim term, DAIDS grade, relatedness,
    outcome, action taken, and the seriousness criteria of a serious event."""

    term: Code
    verbatim: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    grade: Count
    start_date: dt.date
    end_date: dt.date | None = None
    related: Code
    outcome: Code
    action: Code
    serious: bool = False
    seriousness: list[Code] = []

    def details(self) -> AeDetails:
        """The form's details as the capture service takes them."""
        return AeDetails(self.verbatim, self.outcome, self.action, tuple(self.seriousness))


class DispositionCreate(_In):
    """How follow-up ended."""

    status: Code
    disposition_date: dt.date


class SignatureCreate(_In):
    """An e-signature: the signer's password again, and what the signature means."""

    password: str = Field(min_length=1, max_length=200)
    meaning: Text


class QueryCreate(_In):
    """A query on a participant's record: by ``visit`` and ``field`` (``LAB.CD4``), or by
    ``table_name`` and ``record_id`` (the older form)."""

    field: Code
    text: Text
    visit: Code | None = None
    table_name: Code = "participant"
    record_id: Annotated[Count, Field(ge=1, le=MAX_ID)] | None = None


class QueryReopen(_In):
    """Why a query answered or closed is opened again."""

    note: Text


class QueryAnswer(_In):
    """The site's answer."""

    answer: Text


class QueryClose(_In):
    """Closing note (also the note of a re-opening)."""

    note: Text


class ReviewCreate(_In):
    """An endpoint reviewer's verdict."""

    decision: Literal["CONFIRMED", "REJECTED"]
    reason: Text


class AuditEntryPublic(BaseModel):
    """One audit record."""

    sequence: int
    recorded_at: str
    actor: str
    action: str
    table_name: str
    record_id: int
    data: dict[str, object]
    reason: str | None


class SourceVerificationCreate(_In):
    """A monitor's source data verification of a visit's form, with an optional note."""

    note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)] | None = None


class LockCreate(_In):
    """A data lock: its scope (``participant`` names ``usubjid``, ``site`` names ``site``,
    ``trial`` neither), an optional cut-off date (only data dated on or before it is locked),
    and the reason."""

    scope: Literal["participant", "site", "trial"]
    usubjid: Code | None = None
    site: Code | None = None
    cutoff: dt.date | None = None
    reason: Text


class LockRelease(_In):
    """Why a lock is lifted (required: what must change, and why)."""

    reason: Text


class LockPublic(BaseModel):
    """A data lock, in force or lifted, with who, when and why."""

    id: int
    scope: str
    usubjid: str | None
    site: str | None
    cutoff: dt.date | None
    reason: str
    locked_by: str
    locked_at: str
    active: bool
    unlocked_by: str | None
    unlocked_at: str | None
    unlock_reason: str | None
    label: str


class FieldChangePublic(BaseModel):
    """One field of a write: its label, the value before (null: none) and after."""

    field: str
    old: str | None
    new: str | None


class TrailEntryPublic(BaseModel):
    """One write of a record as people read it."""

    when: str
    who: str
    form: str
    action: str
    changes: list[FieldChangePublic]
    reason: str | None


class TrailPublic(BaseModel):
    """The readable audit trail of a participant or of a visit's form (``visit_code`` set),
    with when the form was first saved and last changed, and by whom."""

    usubjid: str
    visit_code: str | None = None
    saved_at: str | None = None
    saved_by: str | None = None
    changed_at: str | None = None
    changed_by: str | None = None
    entries: list[TrailEntryPublic]
