"""What the capture workflows share: the store, its protocol, today's date, and who may see whom.

Every workflow (enrolment, follow-up, records, queries, signatures, reviews) is built on one
``CaptureContext`` and imports this module, never ``capture.service``: the service is the facade
above the workflows, this is the floor below them, so the imports run one way only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Protocol as Interface

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from stalwart.capture.access import Actor
from stalwart.capture.db import core_connection
from stalwart.capture.sealing import AllocationKey
from stalwart.capture.tables import AllocationSlot, Participant, Site
from stalwart.errors import NotFoundError
from stalwart.protocol.calendar import Calendar, participant_calendar
from stalwart.protocol.load import LoadedProtocol
from stalwart.protocol.schema import Protocol

__all__ = [
    "CaptureContext",
    "ParticipantRecord",
    "find_participant",
    "read_participant",
    "utc_today",
]


def utc_today() -> dt.date:
    """Today's date in UTC: the date no entered date may be after (the default clock)."""
    return dt.datetime.now(dt.UTC).date()


class CaptureContext:
    """One trial database under the protocol stored in it, with the clock its checks use."""

    def __init__(
        self,
        engine: Engine,
        loaded: LoadedProtocol,
        today: Callable[[], dt.date] = utc_today,
        allocation_key: AllocationKey | None = None,
    ) -> None:
        self.engine = engine
        self.allocation_key = allocation_key  # opens a sealed list's slots (capture.sealing)
        self.loaded = loaded
        self.protocol: Protocol = loaded.protocol
        self.today = today
        self._calendars: dict[tuple[str, dt.date], Calendar] = {}

    def calendar(self, arm: str, randomization_date: dt.date) -> Calendar:
        """The visit and dosing calendar of a participant, planned once per arm and date.

        Every form of a participant is checked against it, so it is kept (a few hundred
        calendars for a whole trial: arms times randomization dates).
        """
        key = (arm, randomization_date)
        cal = self._calendars.get(key)
        if cal is None:
            cal = participant_calendar(self.protocol, arm, randomization_date)
            self._calendars[key] = cal
        return cal


_FIND_PARTICIPANT = (
    sa.select(Participant, AllocationSlot.arm, Site.code)
    .join(AllocationSlot, AllocationSlot.participant_id == Participant.id)
    .join(Site, Site.id == Participant.site_id)
    .where(Participant.usubjid == sa.bindparam("usubjid"))
)
"""Built once: every form of every participant starts with this read (the statement's
construction costs several times its execution on SQLite)."""


def find_participant(
    session: Session, usubjid: str, who: Actor | None = None
) -> tuple[Participant, str]:
    """The participant and arm; another site's participant is "not found" to a site user."""
    row = session.execute(_FIND_PARTICIPANT, {"usubjid": usubjid}).one_or_none()
    if row is None or (who is not None and not who.sees_site(row[2])):
        raise NotFoundError(f"no randomized participant {usubjid!r}")
    return row[0], row[1]


class ParticipantRecord(Interface):
    """What a form that only reads the participant needs of it: an ORM ``Participant`` or the
    row ``read_participant`` gives."""

    @property
    def id(self) -> int: ...
    @property
    def usubjid(self) -> str: ...
    @property
    def site_id(self) -> int: ...
    @property
    def consent_date(self) -> dt.date: ...
    @property
    def randomization_date(self) -> dt.date: ...


_READ_PARTICIPANT = (
    sa.select(Participant.__table__, AllocationSlot.arm, Site.code.label("site_code"))
    .join(AllocationSlot, AllocationSlot.participant_id == Participant.id)
    .join(Site, Site.id == Participant.site_id)
    .where(Participant.usubjid == sa.bindparam("usubjid"))
)


def read_participant(
    session: Session, usubjid: str, who: Actor | None = None
) -> tuple[ParticipantRecord, str]:
    """``find_participant`` for a form that does not change the participant: the participant's
    row read as columns (no ORM object), and the arm; the same refusal."""
    row = core_connection(session).execute(_READ_PARTICIPANT, {"usubjid": usubjid}).one_or_none()
    if row is None or (who is not None and not who.sees_site(row.site_code)):
        raise NotFoundError(f"no randomized participant {usubjid!r}")
    return row, row.arm
