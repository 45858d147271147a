"""The capture service: the only way data enters the trial database.

``initialize_trial`` records a new trial in an empty database; ``CaptureService`` opens data
entry on it. Each public method is one transaction: it runs the edit checks, writes the rows,
and appends the audit records of those rows before committing (``capture.writes``). When a check
fails nothing is written. Sites' data entry, the web layer and the simulator all call these same
methods.

The service is a facade: the work is done by the workflows it composes, each built on one
``CaptureContext`` (``capture.context``): enrolment (``capture.enrolment``), follow-up
(``capture.followup``), and the companions ``records``, ``queries``, ``signatures`` and
``reviews``. No workflow imports this module.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session

from stalwart.capture.access import ActorLike
from stalwart.capture.ae_form import AeDetails
from stalwart.capture.audit import AuditEntry, append_audit_entries
from stalwart.capture.audit_trail import AuditTrails
from stalwart.capture.context import CaptureContext, utc_today
from stalwart.capture.deviations import Deviations
from stalwart.capture.edit_checks import LabValue
from stalwart.capture.enrolment import Allocation, Enrolment, ScreeningOutcome
from stalwart.capture.followup import FollowUp
from stalwart.capture.listing import Listing
from stalwart.capture.locks import DataLocks
from stalwart.capture.queries import DataQueries
from stalwart.capture.records import Records
from stalwart.capture.reviews import EndpointReviews
from stalwart.capture.sealing import SEALED, AllocationKey
from stalwart.capture.signatures import Signatures
from stalwart.capture.tables import (
    AllocationSlot,
    Base,
    MinimizationDraw,
    SealedArm,
    Site,
    TrialInfo,
)
from stalwart.capture.transaction import transaction
from stalwart.capture.upgrade import require_current_schema
from stalwart.capture.verification import SourceVerifications
from stalwart.capture.visits import LabEntries, VisitForms
from stalwart.capture.writes import insert_rows
from stalwart.errors import ConflictError, DatabaseError
from stalwart.protocol.calendar import Calendar
from stalwart.protocol.load import LoadedProtocol, parse_protocol
from stalwart.protocol.schema import Protocol
from stalwart.randomization.allocation import (
    SEED_SALT_BYTES,
    allocation_lists,
    concealed_draws,
    seed_fingerprint,
)

__all__ = ["CaptureService", "initialize_trial"]


def initialize_trial(
    engine: Engine,
    loaded: LoadedProtocol,
    seed: int,
    actor: str = "system",
    salt: bytes | None = None,
    allocation_key: AllocationKey | None = None,
) -> None:
    """Record the protocol, its sites and every stratum's allocation list in an empty database.

    The allocation lists (or, under minimization, the stream of draws) are generated from
    ``seed``; only a salted, slow fingerprint of the seed is stored (``salt``: random unless
    given, as the demo does for its public seed so that its data hash is reproducible). With
    an ``allocation_key`` the block lists are sealed: each slot shows ``SEALED`` and its arm is
    stored encrypted (``capture.sealing``).
    """
    protocol = loaded.protocol
    lists = allocation_lists(protocol, seed)
    draws = concealed_draws(protocol, seed)
    with transaction(engine) as session:
        if session.get(TrialInfo, 1) is not None:
            raise ConflictError("this database already holds a trial; use a new database")
        # a few thousand rows (the lists): written as Core inserts, audited in one append
        groups: list[tuple[type[Base], list[dict[str, Any]]]] = [
            (
                TrialInfo,
                [
                    {
                        "id": 1,
                        "protocol_id": protocol.study.id,
                        "protocol_version": protocol.study.version,
                        "protocol_sha256": loaded.sha256,
                        "protocol_text": loaded.text,
                        "randomization_seed_sha256": seed_fingerprint(
                            seed, secrets.token_bytes(SEED_SALT_BYTES) if salt is None else salt
                        ),
                    }
                ],
            ),
            (
                Site,
                [{"code": s.code, "name": s.name, "country": s.country} for s in protocol.sites],
            ),
            (
                AllocationSlot,
                [
                    {
                        "stratum": stratum,
                        "sequence": slot.sequence,
                        "block": slot.block,
                        "block_size": slot.block_size,
                        "arm": slot.arm if allocation_key is None else SEALED,
                    }
                    for stratum, slots in lists.items()
                    for slot in slots
                ],
            ),
        ]
        entries: list[AuditEntry] = []
        for model, values in groups:
            entries += _insert_entries(session, model, values)
        if allocation_key is not None:  # not audited: the audit trail must not hold the arms
            insert_rows(
                session,
                SealedArm,
                [
                    {
                        "stratum": stratum,
                        "sequence": slot.sequence,
                        "sealed": allocation_key.seal(stratum, slot.sequence, slot.arm),
                    }
                    for stratum, slots in lists.items()
                    for slot in slots
                ],
            )
        entries += _insert_entries(
            session,
            MinimizationDraw,
            [{"sequence": i, "draw": u} for i, u in enumerate(draws, start=1)],
        )
        append_audit_entries(session, entries, actor, "trial set-up")


def _insert_entries(
    session: Session, model: type[Base], values: list[dict[str, Any]]
) -> list[AuditEntry]:
    """Insert rows of ``model``; their audit entries (the record id is the primary key's)."""
    key = sa.inspect(model).primary_key[0].name
    return [
        ("INSERT", model.__tablename__, int(row[key]), row)
        for row in insert_rows(session, model, values)
    ]


class CaptureService:
    """Data entry for one trial database, under the protocol stored in it."""

    def __init__(
        self,
        engine: Engine,
        loaded: LoadedProtocol,
        today: Callable[[], dt.date] = utc_today,
        allocation_key: AllocationKey | None = None,
    ) -> None:
        self.context = CaptureContext(engine, loaded, today, allocation_key)
        self.engine = engine
        self.loaded = loaded
        self.protocol: Protocol = loaded.protocol
        self._today = today
        self._enrolment = Enrolment(self.context)
        self._follow_up = FollowUp(self.context)
        self._visits = VisitForms(self.context)

    def calendar(self, arm: str, randomization_date: dt.date) -> Calendar:
        """The visit and dosing calendar of a participant, planned once per arm and date.

        Every form of a participant is checked against it, so it is kept (a few hundred
        calendars for a whole trial: arms times randomization dates).
        """
        return self.context.calendar(arm, randomization_date)

    @classmethod
    def open(
        cls,
        engine: Engine,
        today: Callable[[], dt.date] = utc_today,
        allocation_key: AllocationKey | None = None,
    ) -> CaptureService:
        """The service of an initialized database, under the protocol stored in it
        (``allocation_key``: the key of its sealed allocation lists, if they are sealed).

        A database of an older or newer schema revision is refused, saying how to upgrade it.
        """
        require_current_schema(engine)
        try:
            with Session(engine) as session:
                info = session.get(TrialInfo, 1)
        except (OperationalError, ProgrammingError):
            # no trial table: SQLite says OperationalError, PostgreSQL ProgrammingError
            info = None
        if info is None:
            raise DatabaseError(
                "this database holds no trial: run `stalwart init` (or `stalwart demo`) first"
            )
        loaded = parse_protocol(info.protocol_text, source="protocol stored in the database")
        if loaded.sha256 != info.protocol_sha256:
            raise DatabaseError("the stored protocol does not match its recorded hash")
        return cls(engine, loaded, today, allocation_key)

    # -- companions: the same store, seen through the other workflows --------------------------
    @cached_property
    def records(self) -> Records:
        """Site-scoped reads: participants, visits, worklist, audit trail, exports, summaries."""
        return Records(self.context)

    @cached_property
    def trails(self) -> AuditTrails:
        """Readable audit trails of a participant and of a visit's form."""
        return AuditTrails(self.context)

    @cached_property
    def lists(self) -> Listing:
        """The participant list and status grid: paged, searched, filtered, sorted."""
        return Listing(self.context)

    @cached_property
    def deviations(self) -> Deviations:
        """The protocol deviations log: list, report, review."""
        return Deviations(self.context)

    @cached_property
    def queries(self) -> DataQueries:
        """Data clarification queries."""
        return DataQueries(self.context)

    @cached_property
    def signatures(self) -> Signatures:
        """Investigator e-signatures of visits."""
        return Signatures(self.context)

    @cached_property
    def verifications(self) -> SourceVerifications:
        """Monitors' source data verification (SDV) of visits' forms."""
        return SourceVerifications(self.context)

    @cached_property
    def locks(self) -> DataLocks:
        """The data manager's data locks: lock, unlock, list."""
        return DataLocks(self.context)

    @cached_property
    def reviews(self) -> EndpointReviews:
        """Endpoint review of reported opportunistic events and deaths."""
        return EndpointReviews(self.context)

    # -- screening and randomization (capture.enrolment) --------------------------------------
    def screen(
        self,
        site: str,
        screening_number: str | None,
        screening_date: dt.date,
        answers: Mapping[str, object],
        actor: ActorLike,
        *,
        consent_date: dt.date | None = None,
    ) -> ScreeningOutcome:
        """Record a screening (its number assigned when None) and its eligibility verdict; with
        ``consent_date`` the informed consent too (``Enrolment.screen``)."""
        return self._enrolment.screen(
            site, screening_number, screening_date, answers, actor, consent_date=consent_date
        )

    def record_consent(
        self,
        screening_number: str,
        consent_date: dt.date,
        actor: ActorLike,
        *,
        site: str | None = None,
    ) -> int:
        """Record the informed consent of an eligible screened person (before randomization).

        Screening numbers are unique per site: the number is looked up at the actor's site, or
        at ``site`` for an all-sites actor (needed only when two sites use the number).
        """
        return self._enrolment.record_consent(screening_number, consent_date, actor, site=site)

    def randomize(
        self,
        screening_number: str,
        consent_date: dt.date,
        randomization_date: dt.date,
        actor: ActorLike,
        *,
        site: str | None = None,
        entry_labs: LabEntries | None = None,
    ) -> Allocation:
        """Enroll an eligible screened person and assign the next slot of their stratum's list.

        One transaction: the site row and the slot are locked, so no slot goes to two people and
        nobody is randomized twice (also enforced by unique constraints). Under minimization the
        trial row is locked too, so the allocation counts read and the allocation written belong
        to one serial order of randomizations, the order a replay of the stored draws follows.
        The screening is looked up as by ``record_consent``. ``entry_labs`` are the study-entry
        visit's results, saved with the randomization.
        """
        return self._enrolment.randomize(
            screening_number,
            consent_date,
            randomization_date,
            actor,
            site=site,
            entry_labs=entry_labs,
        )

    # -- follow-up data (capture.followup) ----------------------------------------------------
    def record_visit(
        self,
        usubjid: str,
        visit_code: str,
        visit_date: dt.date,
        labs: LabEntries,
        actor: ActorLike,
        *,
        deviation_reason: str | None = None,
    ) -> int:
        """Record a visit of the participant's schedule with its laboratory results.

        Outside its window the visit needs ``deviation_reason``: it is saved and logged as a
        protocol deviation.
        """
        return self._visits.record_visit(
            usubjid, visit_code, visit_date, labs, actor, deviation_reason=deviation_reason
        )

    def record_unscheduled_visit(
        self, usubjid: str, visit_date: dt.date, labs: LabEntries, reason: str, actor: ActorLike
    ) -> str:
        """Record an unscheduled visit (any date from randomization, any LAB items); its code."""
        return self._visits.record_unscheduled_visit(usubjid, visit_date, labs, reason, actor)

    def record_missed_visit(
        self, usubjid: str, visit_code: str, reason: str, actor: ActorLike
    ) -> int:
        """Record that a scheduled visit did not happen (after its window closed), with why."""
        return self._visits.record_missed_visit(usubjid, visit_code, reason, actor)

    def correct_visit(
        self,
        usubjid: str,
        visit_code: str,
        visit_date: dt.date,
        labs: Mapping[str, LabValue | float | int | str | None],
        reason: str,
        actor: ActorLike,
        *,
        version: int | None,
    ) -> int:
        """Correct a saved visit (its date and results) with a reason; voids its signature.

        ``version`` is the visit's version as read (``records.visit(...).version``): a
        correction from a stale version raises ``StaleVersionError`` naming what changed since,
        and one without a version is refused (``capture.versions``). The same edit checks as
        first entry apply. A saved result can be changed, not removed.
        """
        return self._visits.correct_visit(
            usubjid, visit_code, visit_date, labs, reason, actor, version=version
        )

    def record_doses(
        self,
        usubjid: str,
        treatment: str,
        cycle: int,
        days: Sequence[tuple[dt.date, int]],
        actor: ActorLike,
        *,
        deviation_reason: str | None = None,
    ) -> None:
        """Record the doses of one cycle: ``(date, administrations taken)`` per dose day; a
        day outside the dosing calendar needs ``deviation_reason`` (logged as a deviation)."""
        self._follow_up.record_doses(
            usubjid, treatment, cycle, days, actor, deviation_reason=deviation_reason
        )

    def report_clinical_event(
        self, usubjid: str, event_code: str, onset_date: dt.date, actor: ActorLike
    ) -> int:
        """Report an opportunistic event or death from the protocol's coded list."""
        return self._follow_up.report_clinical_event(usubjid, event_code, onset_date, actor)

    def report_adverse_event(
        self,
        usubjid: str,
        term: str,
        grade: int,
        start_date: dt.date,
        end_date: dt.date | None,
        related: str,
        serious: bool,
        actor: ActorLike,
        details: AeDetails,
    ) -> int:
        """Report an adverse event: grade, relatedness and the form's details (verbatim term,
        outcome, action taken, seriousness criteria)."""
        return self._follow_up.report_adverse_event(
            usubjid, term, grade, start_date, end_date, related, serious, actor, details
        )

    def record_disposition(
        self, usubjid: str, status: str, disposition_date: dt.date, actor: ActorLike
    ) -> None:
        """Record how follow-up ended; no data may be dated after it, and it is recorded once."""
        self._follow_up.record_disposition(usubjid, status, disposition_date, actor)
