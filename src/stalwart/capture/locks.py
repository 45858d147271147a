"""Data lock: the data manager freezes data so that no form of it can change.

A lock covers a **participant**, a **site** (every participant of it) or the whole **trial**,
either all of that data or (``cutoff``) what is dated on or before a cut-off date: the date of
the form (a visit's date, a dose day, an event's onset, an adverse event's start, the
disposition, a randomization). While a lock is active every write that would add to or change
the data it covers is refused with ``DataLockedError`` (HTTP 423) naming the lock, and nothing is
written. Only an unlock that names its reason lifts it; the lock row keeps who locked, who
unlocked, when and why, and both are in the audit trail.

What a lock refuses (each write path calls ``check_unlocked`` inside its own transaction):

* entering or correcting a visit (scheduled, unscheduled, missed), doses, clinical events,
  adverse events, the disposition, and randomizing at a locked site;
* the investigator's signature and the monitor's source verification of a locked visit (both
  attest to data that can no longer be corrected: they belong before the lock);
* raising or answering a query on a locked participant, and reporting a deviation of one: a
  query that cannot lead to a correction, or a new deviation record, would change the data the
  lock froze. Writes with no date of their own (these, and a signature) are refused by a lock
  without a cut-off; a lock up to a cut-off lets them through, as it does new data dated after
  it (follow-up continues after an interim lock);
* it does **not** refuse closing a query, reviewing a deviation or reading anything: those
  record the data manager's review of what is there and change no datum of the analysis.
  Endpoint review is refused (its verdict decides the endpoints).

Screening and consent are not covered: they precede randomization and are not participants'
data yet.

The check reads the active locks in the write's transaction; a lock committed while a write is
in flight (READ COMMITTED on PostgreSQL) may let that one write through, as it would have
committed a moment earlier. The DSMB report and the final analysis name the trial lock they were
run on (``lock_label``), or say that they ran on live data.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from stalwart.capture.access import ActorLike, Permission, require
from stalwart.capture.audit import append_audit
from stalwart.capture.context import CaptureContext, ParticipantRecord, find_participant
from stalwart.capture.tables import DataLock, Participant, Site, TrialInfo
from stalwart.capture.transaction import transaction
from stalwart.capture.writes import add_rows
from stalwart.errors import ConflictError, DataLockedError, NotFoundError, ValidationError

__all__ = [
    "LOCK_SCOPES",
    "NO_LOCK",
    "DataLocks",
    "LockScope",
    "LockView",
    "check_site_unlocked",
    "check_unlocked",
    "lock_label",
    "trial_lock",
    "trial_lock_label",
]

_MAX_REASON = 2000


class LockScope(StrEnum):
    """What a lock covers."""

    PARTICIPANT = "participant"
    SITE = "site"
    TRIAL = "trial"


LOCK_SCOPES = tuple(s.value for s in LockScope)
"""The scopes a lock can have, as the API and the lock page name them."""

NO_LOCK = "no lock: live data"
"""What a report run on data no trial lock covers says of its lock."""


@dataclass(frozen=True)
class LockView:
    """A lock as the lock page and the API show it (``usubjid`` / ``site`` by scope)."""

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

    @property
    def label(self) -> str:
        """The lock in words: ``lock 3: site US01 up to 2006-06-30, by dm at ...``."""
        return lock_label(self)


def _what(view: LockView) -> str:
    target = {
        LockScope.PARTICIPANT.value: f"participant {view.usubjid}",
        LockScope.SITE.value: f"site {view.site}",
    }.get(view.scope, "the whole trial")
    return target + (f" up to {view.cutoff.isoformat()}" if view.cutoff else "")


def lock_label(view: LockView | None) -> str:
    """The lock a report ran on, in words (``NO_LOCK`` for None)."""
    if view is None:
        return NO_LOCK
    when = view.locked_at.replace("T", " ").replace("+00:00", " UTC")
    return f"lock {view.id}: {_what(view)}, by {view.locked_by} at {when}"


def _reason(field: str, reason: str | None, what: str) -> str:
    text = (reason or "").strip()
    if not text:
        raise ValidationError(field, f"give the reason {what}")
    if len(text) > _MAX_REASON:
        raise ValidationError(field, f"the reason is too long: at most {_MAX_REASON} characters")
    return text


_VIEW = (
    sa.select(DataLock, Participant.usubjid, Site.code)
    .outerjoin(Participant, Participant.id == DataLock.participant_id)
    .outerjoin(Site, Site.id == DataLock.site_id)
)


def _view(lock: DataLock, usubjid: str | None, site: str | None) -> LockView:
    return LockView(
        lock.id,
        lock.scope,
        usubjid,
        site,
        lock.cutoff,
        lock.reason,
        lock.locked_by,
        lock.locked_at,
        lock.active,
        lock.unlocked_by,
        lock.unlocked_at,
        lock.unlock_reason,
    )


@functools.cache
def _covering_statement(of_participant: bool, dated: bool) -> sa.Select[DataLock, str, str]:
    """The read of ``_covering``, built once per shape (every form of every participant runs
    it: its construction costs more than its run)."""
    scope = [
        DataLock.scope == LockScope.TRIAL.value,
        sa.and_(
            DataLock.scope == LockScope.SITE.value, DataLock.site_id == sa.bindparam("site_id")
        ),
    ]
    if of_participant:
        scope.append(
            sa.and_(
                DataLock.scope == LockScope.PARTICIPANT.value,
                DataLock.participant_id == sa.bindparam("participant_id"),
            )
        )
    cutoff = (
        sa.or_(DataLock.cutoff.is_(None), DataLock.cutoff >= sa.bindparam("on_date"))
        if dated
        else DataLock.cutoff.is_(None)
    )
    return _VIEW.where(DataLock.active.is_(True), sa.or_(*scope), cutoff).order_by(DataLock.id)


def _covering(
    session: Session, *, participant_id: int | None, site_id: int, on_date: dt.date | None
) -> LockView | None:
    """The first active lock covering a write of ``participant_id`` (None: a new participant)
    at site ``site_id`` dated ``on_date`` (None: an undated write)."""
    params: dict[str, object] = {"site_id": site_id}
    if participant_id is not None:
        params["participant_id"] = participant_id
    if on_date is not None:
        params["on_date"] = on_date
    stmt = _covering_statement(participant_id is not None, on_date is not None)
    row = session.execute(stmt, params).first()
    return None if row is None else _view(*row)


def _refuse(view: LockView, what: str) -> DataLockedError:
    return DataLockedError(
        f"{what} is locked by {lock_label(view)} (reason: {view.reason}); nothing was saved. "
        "Ask the data manager to unlock it, with the reason for the change, if it must change",
        view.id,
        view.scope,
        view.cutoff.isoformat() if view.cutoff else None,
    )


def check_unlocked(
    session: Session, participant: ParticipantRecord, what: str, on_date: dt.date | None = None
) -> None:
    """Refuse (``DataLockedError``) a write of ``participant``'s data dated ``on_date`` that an
    active lock covers; ``what`` names the data in the message (``visit WK04 of ...``)."""
    found = _covering(
        session, participant_id=participant.id, site_id=participant.site_id, on_date=on_date
    )
    if found is not None:
        raise _refuse(found, what)


def check_site_unlocked(session: Session, site_id: int, what: str, on_date: dt.date) -> None:
    """Refuse a new participant's data at site ``site_id`` (a randomization) that a site or
    trial lock covers."""
    found = _covering(session, participant_id=None, site_id=site_id, on_date=on_date)
    if found is not None:
        raise _refuse(found, what)


def trial_lock(session: Session) -> LockView | None:
    """The trial lock in force (the latest active one), if any: what a report ran on."""
    row = session.execute(
        _VIEW.where(DataLock.active.is_(True), DataLock.scope == LockScope.TRIAL.value)
        .order_by(DataLock.id.desc())
        .limit(1)
    ).first()
    return None if row is None else _view(*row)


def trial_lock_label(engine: Engine) -> str:
    """The trial lock in force now, in words, or ``NO_LOCK``: what an analysis ran on."""
    with Session(engine) as session:
        return lock_label(trial_lock(session))


class DataLocks:
    """Locking and unlocking data (data managers), and the list of locks (any reader)."""

    def __init__(self, context: CaptureContext) -> None:
        self.context = context

    def lock(
        self,
        scope: str,
        reason: str,
        actor: ActorLike,
        *,
        usubjid: str | None = None,
        site: str | None = None,
        cutoff: dt.date | None = None,
    ) -> int:
        """Lock a participant's (``usubjid``), a site's (``site``) or the trial's data, all of it
        or up to ``cutoff``; the reason is required. A second active lock of the same target is
        refused (unlock the first)."""
        who = require(actor, Permission.LOCK_DATA, "lock data")
        try:
            kind = LockScope(scope)
        except ValueError:
            raise ValidationError(
                "scope", f"{scope!r} is not a lock scope; one of {', '.join(LOCK_SCOPES)}"
            ) from None
        why = _reason("reason", reason, "for the lock")
        if kind is LockScope.PARTICIPANT and not usubjid:
            raise ValidationError("usubjid", "name the participant to lock")
        if kind is LockScope.SITE and not site:
            raise ValidationError("site", "name the site to lock")
        if cutoff is not None and cutoff > self.context.today():
            raise ValidationError(
                "cutoff",
                f"the cut-off {cutoff.isoformat()} is in the future: data not yet entered "
                "cannot be locked",
            )
        with transaction(self.context.engine) as session:
            # locks are made one at a time (the trial row is their mutex), so two data managers
            # locking the same data at once get one lock and one refusal, never two locks
            session.execute(sa.select(TrialInfo.id).where(TrialInfo.id == 1).with_for_update())
            participant_id = site_id = None
            if kind is LockScope.PARTICIPANT:
                assert usubjid is not None
                participant, _ = find_participant(session, usubjid, who)
                participant_id = participant.id
            elif kind is LockScope.SITE:
                site_id = session.scalar(sa.select(Site.id).where(Site.code == site))
                if site_id is None or not who.sees_site(str(site)):
                    raise NotFoundError(f"no site {site!r}")
            same = session.execute(
                _VIEW.where(
                    DataLock.active.is_(True),
                    DataLock.scope == kind.value,
                    DataLock.participant_id.is_(None)
                    if participant_id is None
                    else DataLock.participant_id == participant_id,
                    DataLock.site_id.is_(None) if site_id is None else DataLock.site_id == site_id,
                )
            ).first()
            if same is not None:
                raise ConflictError(
                    f"already locked by {lock_label(_view(*same))}: unlock it (with the reason) "
                    "before locking it again"
                )
            row = DataLock(
                scope=kind.value,
                participant_id=participant_id,
                site_id=site_id,
                cutoff=cutoff,
                reason=why,
                locked_by=who.label,
                locked_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                active=True,
            )
            add_rows(session, [row], who.label, f"data lock: {why}")
            return row.id

    def unlock(self, lock_id: int, reason: str, actor: ActorLike) -> None:
        """Lift an active lock; the reason is required and recorded with who and when."""
        who = require(actor, Permission.LOCK_DATA, "unlock data")
        why = _reason("reason", reason, "for the unlock (what must change, and why)")
        with transaction(self.context.engine) as session:
            lock = session.scalar(
                sa.select(DataLock).where(DataLock.id == lock_id).with_for_update()
            )
            if lock is None:
                raise NotFoundError(f"no lock {lock_id}")
            if not lock.active:
                raise ConflictError(
                    f"lock {lock_id} was already lifted by {lock.unlocked_by} at {lock.unlocked_at}"
                )
            lock.active = False
            lock.unlocked_by = who.label
            lock.unlocked_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            lock.unlock_reason = why
            append_audit(session, [("UPDATE", lock)], who.label, f"data unlock: {why}")

    def list(self, actor: ActorLike, *, active_only: bool = False) -> list[LockView]:
        """Locks that concern the actor's sites (the trial's, their site's and their
        participants'), newest first."""
        who = require(actor, Permission.READ_RECORDS, "read the data locks")
        stmt = _VIEW.order_by(DataLock.id.desc())
        if active_only:
            stmt = stmt.where(DataLock.active.is_(True))
        if who.site is not None:
            of_site = sa.select(Site.id).where(Site.code == who.site).scalar_subquery()
            stmt = stmt.where(
                sa.or_(
                    DataLock.scope == LockScope.TRIAL.value,
                    DataLock.site_id == of_site,
                    Participant.site_id == of_site,
                )
            )
        with Session(self.context.engine) as session:
            return [_view(*r) for r in session.execute(stmt).all()]

    def of_participant(
        self, usubjid: str, actor: ActorLike, on_date: dt.date | None = None
    ) -> LockView | None:
        """The active lock covering a participant's data dated ``on_date`` (None: all of it,
        whatever its date), if any: what the participant's and visits' pages show."""
        who = require(actor, Permission.READ_RECORDS, "read the data locks")
        with Session(self.context.engine) as session:
            participant, _ = find_participant(session, usubjid, who)
            return _covering(
                session,
                participant_id=participant.id,
                site_id=participant.site_id,
                on_date=on_date,
            )
