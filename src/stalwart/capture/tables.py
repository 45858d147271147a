"""SQLAlchemy 2 tables of the trial database.

One table per kind of fact a site records. Rows are written only by capture's workflows, each
write appending to ``audit_record`` in the same transaction (``capture.writes``). A
participant's visit calendar is not stored: it is recomputed from the protocol and the
randomization date.

A lab value below the assay's lower limit is stored as censored: ``value`` is NULL,
``below_limit`` is true and ``limit_value`` holds the limit (the form's ``lower_limit``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "ACCESS_TABLES",
    "AUDITED_TABLES",
    "CHAINED_TABLES",
    "AdverseEvent",
    "AllocationSlot",
    "AppUser",
    "AuditHead",
    "AuditRecord",
    "AuthToken",
    "Base",
    "ClinicalEvent",
    "Consent",
    "DataLock",
    "DataQuery",
    "Disposition",
    "Dose",
    "EndpointReview",
    "LabResult",
    "LoginFailure",
    "MinimizationDraw",
    "MissedVisit",
    "Participant",
    "ProtocolDeviation",
    "Screening",
    "SealedArm",
    "Signature",
    "Site",
    "SourceVerification",
    "TrialInfo",
    "UserCredential",
    "Visit",
]

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with a naming convention so migrations name constraints stably."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[str]: JSON}


class TrialInfo(Base):
    """The one row that says which protocol this database runs."""

    __tablename__ = "trial"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    protocol_id: Mapped[str] = mapped_column(String(40))
    protocol_version: Mapped[str] = mapped_column(String(40))
    protocol_sha256: Mapped[str] = mapped_column(String(64))
    protocol_text: Mapped[str] = mapped_column(Text)
    randomization_seed_sha256: Mapped[str] = mapped_column(String(64))


class Site(Base):
    """A participating site (DM.SITEID)."""

    __tablename__ = "site"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(20), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    country: Mapped[str] = mapped_column(String(3))


class Screening(Base):
    """A screening log entry: the answers to the screening items and the eligibility verdict."""

    __tablename__ = "screening"
    # unique per site: a coordinator must not learn whether another site used a number
    __table_args__ = (UniqueConstraint("site_id", "screening_number"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"))
    screening_number: Mapped[str] = mapped_column(String(40))
    screening_date: Mapped[dt.date] = mapped_column(Date)
    answers: Mapped[dict[str, Any]] = mapped_column(JSON)
    eligible: Mapped[bool] = mapped_column(Boolean)
    reasons: Mapped[list[str]] = mapped_column(JSON)


class Participant(Base):
    """A randomized participant (DM.USUBJID); created by randomization, never before."""

    __tablename__ = "participant"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    usubjid: Mapped[str] = mapped_column(String(40), unique=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"))
    screening_id: Mapped[int] = mapped_column(ForeignKey("screening.id"), unique=True)
    consent_date: Mapped[dt.date] = mapped_column(Date)
    randomization_date: Mapped[dt.date] = mapped_column(Date)


class AllocationSlot(Base):
    """One position of a stratum's concealed allocation list; ``participant_id`` once used.

    Under minimization there is no list: the row of the ``sequence``-th randomization is
    inserted when it happens, in stratum ``minimization`` with block columns 0.
    """

    __tablename__ = "allocation_slot"
    __table_args__ = (UniqueConstraint("stratum", "sequence"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stratum: Mapped[str] = mapped_column(String(200), index=True)
    sequence: Mapped[int] = mapped_column(Integer)
    block: Mapped[int] = mapped_column(Integer)
    block_size: Mapped[int] = mapped_column(Integer)
    arm: Mapped[str] = mapped_column(String(20))
    participant_id: Mapped[int | None] = mapped_column(
        ForeignKey("participant.id"), unique=True, nullable=True
    )


class SealedArm(Base):
    """The encrypted arm of a slot of a sealed allocation list (``capture.sealing``); the slot
    itself shows ``SEALED`` until it is assigned. Not audited: a changed ciphertext does not
    open, so randomization into that slot fails loudly."""

    __tablename__ = "sealed_arm"
    stratum: Mapped[str] = mapped_column(String(200), primary_key=True)
    sequence: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    sealed: Mapped[str] = mapped_column(Text)


class MinimizationDraw(Base):
    """One uniform draw of a minimization trial's concealed stream, made at set-up from the seed.

    The ``sequence``-th randomization uses draw ``sequence``; none is made for permuted blocks.
    """

    __tablename__ = "minimization_draw"
    sequence: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    draw: Mapped[float] = mapped_column(Float)


class Visit(Base):
    """A visit that took place, by its visit code; one per participant and code.

    A scheduled visit has its protocol code; an unscheduled one is numbered per participant
    (``UNS01``, ``UNS02``...: ``protocol.calendar.UNSCHEDULED_PREFIX``) and has no window.
    """

    __tablename__ = "visit"
    __table_args__ = (UniqueConstraint("participant_id", "visit_code"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participant.id"), index=True)
    visit_code: Mapped[str] = mapped_column(String(20))
    visit_date: Mapped[dt.date] = mapped_column(Date)


class MissedVisit(Base):
    """A scheduled visit that did not take place, with the site's reason (recorded once)."""

    __tablename__ = "missed_visit"
    __table_args__ = (UniqueConstraint("participant_id", "visit_code"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participant.id"), index=True)
    visit_code: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(Text)
    recorded_on: Mapped[dt.date] = mapped_column(Date)


class ProtocolDeviation(Base):
    """A departure from the protocol: detected by the system or reported by a user.

    ``source`` is DETECTED or REPORTED; the data manager's review fills ``reviewed_by`` and
    ``review_note``. ``visit_code`` names the visit it concerns, when it concerns one.
    """

    __tablename__ = "protocol_deviation"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    participant_id: Mapped[int | None] = mapped_column(
        ForeignKey("participant.id"), nullable=True, index=True
    )
    screening_id: Mapped[int | None] = mapped_column(
        ForeignKey("screening.id"), nullable=True, index=True
    )
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"), index=True)
    category: Mapped[str] = mapped_column(String(40))
    description: Mapped[str] = mapped_column(Text)
    deviation_date: Mapped[dt.date] = mapped_column(Date)
    visit_code: Mapped[str | None] = mapped_column(String(20), nullable=True)
    source: Mapped[str] = mapped_column(String(10))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    reported_by: Mapped[str] = mapped_column(String(100))
    reviewed_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    review_note: Mapped[str | None] = mapped_column(Text, nullable=True)


class LabResult(Base):
    """One laboratory result of a visit, in the protocol's unit; censored below the assay limit."""

    __tablename__ = "lab_result"
    __table_args__ = (
        UniqueConstraint("visit_id", "test_code"),
        CheckConstraint(
            "(value IS NOT NULL AND NOT below_limit) OR (value IS NULL AND below_limit "
            "AND limit_value IS NOT NULL)",
            name="censored_or_value",
        ),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visit.id"), index=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participant.id"), index=True)
    test_code: Mapped[str] = mapped_column(String(20))
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    unit: Mapped[str] = mapped_column(String(20))
    below_limit: Mapped[bool] = mapped_column(Boolean)
    limit_value: Mapped[float | None] = mapped_column(Float, nullable=True)


class Dose(Base):
    """Doses of one treatment taken on one day (EX): 0..administrations_per_day."""

    __tablename__ = "dose"
    __table_args__ = (UniqueConstraint("participant_id", "treatment", "dose_date"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participant.id"), index=True)
    treatment: Mapped[str] = mapped_column(String(20))
    cycle: Mapped[int] = mapped_column(Integer)
    dose_date: Mapped[dt.date] = mapped_column(Date)
    administrations: Mapped[int] = mapped_column(Integer)
    dose: Mapped[float] = mapped_column(Float)
    dose_unit: Mapped[str] = mapped_column(String(20))


class ClinicalEvent(Base):
    """An opportunistic event or death, coded from the protocol's list."""

    __tablename__ = "clinical_event"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participant.id"), index=True)
    event_code: Mapped[str] = mapped_column(String(20))
    category: Mapped[str] = mapped_column(String(20))
    onset_date: Mapped[dt.date] = mapped_column(Date)


class AdverseEvent(Base):
    """An adverse event: protocol and verbatim term, DAIDS grade, relatedness, outcome, action
    taken, and the seriousness criteria (comma-separated SDTM names) of a serious one."""

    __tablename__ = "adverse_event"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participant.id"), index=True)
    term: Mapped[str] = mapped_column(String(100))
    grade: Mapped[int] = mapped_column(Integer)
    start_date: Mapped[dt.date] = mapped_column(Date)
    end_date: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    related: Mapped[str] = mapped_column(String(20))
    serious: Mapped[bool] = mapped_column(Boolean)
    # added by migration 0008: None on rows entered before it (read as term, UNKNOWN, none)
    verbatim: Mapped[str | None] = mapped_column(String(200), nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(40), nullable=True)
    action: Mapped[str | None] = mapped_column(String(40), nullable=True)
    seriousness: Mapped[str | None] = mapped_column(String(100), nullable=True)
    reported_on: Mapped[dt.date | None] = mapped_column(Date, nullable=True)


class Disposition(Base):
    """How a participant's follow-up ended (DS): completed, lost, withdrew or died."""

    __tablename__ = "disposition"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participant.id"), unique=True)
    status: Mapped[str] = mapped_column(String(40))
    disposition_date: Mapped[dt.date] = mapped_column(Date)


class AuditRecord(Base):
    """One link of the append-only audit chain: what was written, by whom, when and why."""

    __tablename__ = "audit_record"
    # one record's trail (its version, its audit page) without scanning the chain
    __table_args__ = (Index("ix_audit_record_row", "table_name", "record_id"),)
    sequence: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    recorded_at: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(10))
    table_name: Mapped[str] = mapped_column(String(40))
    record_id: Mapped[int] = mapped_column(Integer)
    data: Mapped[str] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditHead(Base):
    """The chain's last link; locked by each writer so appends are serialized."""

    __tablename__ = "audit_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sequence: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


class Consent(Base):
    """Informed consent of a screened person (DS), recorded before randomization."""

    __tablename__ = "consent"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    screening_id: Mapped[int] = mapped_column(ForeignKey("screening.id"), unique=True)
    consent_date: Mapped[dt.date] = mapped_column(Date)


class AppUser(Base):
    """A user account: role and, for site roles, the one site it may see. Audited like data."""

    __tablename__ = "app_user"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(60), unique=True)
    full_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(30))
    site_id: Mapped[int | None] = mapped_column(ForeignKey("site.id"), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean)
    password_changed_at: Mapped[str] = mapped_column(String(40))


class UserCredential(Base):
    """A user's password hash (argon2id), kept apart so the audit trail never holds it.

    ``must_change``: the password was set by an administrator (a reset), so it opens only the
    change-password step until its owner chooses a new one."""

    __tablename__ = "user_credential"
    user_id: Mapped[int] = mapped_column(
        ForeignKey("app_user.id"), primary_key=True, autoincrement=False
    )
    password_hash: Mapped[str] = mapped_column(String(200))
    must_change: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class AuthToken(Base):
    """An API bearer token or a browser session, stored as the SHA-256 of the secret."""

    __tablename__ = "auth_token"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"), index=True)
    kind: Mapped[str] = mapped_column(String(10))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_token: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[str] = mapped_column(String(40))
    expires_at: Mapped[str] = mapped_column(String(40))
    revoked: Mapped[bool] = mapped_column(Boolean)


class LoginFailure(Base):
    """A failed (or still unproven) login attempt: username, client address and when (epoch s).

    Shared by every server process so that failed logins are counted together
    (``capture.throttle``); rows older than the counting window are deleted. Not audit data.
    """

    __tablename__ = "login_failure"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[float] = mapped_column(Float, index=True)
    username: Mapped[str] = mapped_column(String(60), index=True)
    client: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)


class DataQuery(Base):
    """A data clarification query on a participant's record: OPEN, ANSWERED, then CLOSED."""

    __tablename__ = "data_query"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participant.id"), index=True)
    table_name: Mapped[str] = mapped_column(String(40))
    record_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    field: Mapped[str] = mapped_column(String(60))
    text: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(10))
    raised_by: Mapped[str] = mapped_column(String(100))
    answer: Mapped[str | None] = mapped_column(Text, nullable=True)
    answered_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    close_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    closed_by: Mapped[str | None] = mapped_column(String(100), nullable=True)


class Signature(Base):
    """An investigator's e-signature of a visit (21 CFR 11.50); an edit of the visit voids it."""

    __tablename__ = "signature"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visit.id"), index=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participant.id"), index=True)
    signer: Mapped[str] = mapped_column(String(100))
    meaning: Mapped[str] = mapped_column(Text)
    signed_at: Mapped[str] = mapped_column(String(40))
    valid: Mapped[bool] = mapped_column(Boolean)
    void_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class EndpointReview(Base):
    """The endpoint reviewer's verdict on a reported opportunistic event or death."""

    __tablename__ = "endpoint_review"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    clinical_event_id: Mapped[int] = mapped_column(ForeignKey("clinical_event.id"), unique=True)
    decision: Mapped[str] = mapped_column(String(10))
    reason: Mapped[str] = mapped_column(Text)
    reviewer: Mapped[str] = mapped_column(String(100))


class SourceVerification(Base):
    """A monitor's source data verification (SDV) of a visit's form: the values were checked
    against the site's source documents. A correction of the visit voids it (the values it
    verified are gone), with the correction's reason; the form must then be verified again."""

    __tablename__ = "source_verification"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visit.id"), index=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participant.id"), index=True)
    verified_by: Mapped[str] = mapped_column(String(100))
    verified_at: Mapped[str] = mapped_column(String(40))
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    valid: Mapped[bool] = mapped_column(Boolean)
    void_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class DataLock(Base):
    """A data manager's lock: a participant's, a site's or the whole trial's data, all of it or
    (``cutoff``) what is dated on or before a cut-off date, can no longer change while the lock
    is ``active``. An unlock keeps the row, with who, when and why (``capture.locks``)."""

    __tablename__ = "data_lock"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scope: Mapped[str] = mapped_column(String(20))
    participant_id: Mapped[int | None] = mapped_column(
        ForeignKey("participant.id"), nullable=True, index=True
    )
    site_id: Mapped[int | None] = mapped_column(ForeignKey("site.id"), nullable=True, index=True)
    cutoff: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    reason: Mapped[str] = mapped_column(Text)
    locked_by: Mapped[str] = mapped_column(String(100))
    locked_at: Mapped[str] = mapped_column(String(40))
    active: Mapped[bool] = mapped_column(Boolean)
    unlocked_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    unlocked_at: Mapped[str | None] = mapped_column(String(40), nullable=True)
    unlock_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


AUDITED_TABLES: tuple[type[Base], ...] = (
    TrialInfo,
    Site,
    Screening,
    Participant,
    AllocationSlot,
    MinimizationDraw,
    Visit,
    LabResult,
    Dose,
    ClinicalEvent,
    AdverseEvent,
    Disposition,
    Consent,
    AppUser,
    DataQuery,
    Signature,
    EndpointReview,
    MissedVisit,
    ProtocolDeviation,
    SourceVerification,
    DataLock,
)
"""Every data table; each of their rows must be covered by the audit chain."""

ACCESS_TABLES: tuple[type[Base], ...] = (UserCredential, AuthToken)
"""Who may act: password hashes and tokens. Covered by the audit chain through digests
(``audit.row_data``: never the secret), so a planted token or a replaced password hash is a
finding of audit verify; not part of the data snapshot's hash, and a backup holds only the
digests (a restored account's password is reset before use)."""

CHAINED_TABLES: tuple[type[Base], ...] = AUDITED_TABLES + ACCESS_TABLES
"""Every table whose rows the audit chain records."""
