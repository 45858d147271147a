"""Source data verification (SDV): a monitor marks a visit's form verified against the source.

Only a monitor may verify (``Permission.VERIFY_SOURCE``), and a site monitor only at their site
(another site's participant is "not found"). A form is verified once: verifying it again while
the verification stands is refused. A correction of the visit voids its verification in the
correction's transaction, with the correction's reason (the values verified are gone), so the
status grid shows it unverified until the monitor verifies it again. A locked form cannot be
verified (``capture.locks``). Each verification and each void is in the audit trail.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from stalwart.capture.access import ActorLike, Permission, require
from stalwart.capture.context import CaptureContext, find_participant
from stalwart.capture.locks import check_unlocked
from stalwart.capture.tables import SourceVerification, Visit
from stalwart.capture.transaction import transaction
from stalwart.capture.writes import add_rows
from stalwart.errors import ConflictError, NotFoundError, ValidationError

__all__ = ["SourceVerifications", "VerificationView", "void_verifications"]

_MAX_NOTE = 2000


@dataclass(frozen=True)
class VerificationView:
    """A verification as shown beside its visit."""

    id: int
    visit_code: str
    verified_by: str
    verified_at: str
    note: str | None
    valid: bool
    void_reason: str | None


def void_verifications(session: Session, visit_id: int, reason: str) -> list[SourceVerification]:
    """Void the standing verification of a visit (inside the caller's transaction)."""
    rows = list(
        session.scalars(
            sa.select(SourceVerification).where(
                SourceVerification.visit_id == visit_id, SourceVerification.valid.is_(True)
            )
        )
    )
    for row in rows:
        row.valid = False
        row.void_reason = reason
    return rows


class SourceVerifications:
    """Monitors' source data verification of visits' forms."""

    def __init__(self, context: CaptureContext) -> None:
        self.context = context

    def verify_visit(
        self, usubjid: str, visit_code: str, actor: ActorLike, note: str | None = None
    ) -> int:
        """Mark a recorded visit's form source-verified; returns the verification's id."""
        who = require(actor, Permission.VERIFY_SOURCE, "mark forms source-verified")
        text = (note or "").strip() or None
        if text is not None and len(text) > _MAX_NOTE:
            raise ValidationError("note", f"the note is too long: at most {_MAX_NOTE} characters")
        with transaction(self.context.engine) as session:
            participant, _ = find_participant(session, usubjid, who)
            visit = session.scalar(
                sa.select(Visit)
                .where(Visit.participant_id == participant.id, Visit.visit_code == visit_code)
                .with_for_update()
            )
            if visit is None:
                raise NotFoundError(f"visit {visit_code} of {usubjid} is not recorded")
            check_unlocked(
                session, participant, f"visit {visit_code} of {usubjid}", visit.visit_date
            )
            done = session.execute(
                sa.select(SourceVerification.verified_by, SourceVerification.verified_at).where(
                    SourceVerification.visit_id == visit.id, SourceVerification.valid.is_(True)
                )
            ).first()
            if done is not None:
                raise ConflictError(
                    f"visit {visit_code} of {usubjid} is already source-verified by {done[0]} "
                    f"at {done[1]}"
                )
            row = SourceVerification(
                visit_id=visit.id,
                participant_id=participant.id,
                verified_by=who.label,
                verified_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                note=text,
                valid=True,
            )
            add_rows(session, [row], who.label, "source data verified")
            return row.id

    def of_participant(self, usubjid: str, actor: ActorLike) -> list[VerificationView]:
        """Every verification of the participant's visits, standing and voided, oldest first."""
        who = require(actor, Permission.READ_RECORDS, "read records")
        with Session(self.context.engine) as session:
            participant, _ = find_participant(session, usubjid, who)
            rows = session.execute(
                sa.select(SourceVerification, Visit.visit_code)
                .join(Visit, Visit.id == SourceVerification.visit_id)
                .where(SourceVerification.participant_id == participant.id)
                .order_by(SourceVerification.id)
            ).all()
        return [
            VerificationView(
                v.id, code, v.verified_by, v.verified_at, v.note, v.valid, v.void_reason
            )
            for v, code in rows
        ]
