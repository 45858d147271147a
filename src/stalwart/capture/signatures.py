"""Investigator e-signatures of visits (21 CFR 11.50, 11.200).

A signature names the signer, the time and the meaning the signer states, and is given by
re-entering the signer's password. Correcting a signed visit voids its signature in the same
transaction, with the correction's reason; the visit must then be signed again.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import Session

from stalwart.capture.access import Actor, ActorLike, Permission, require
from stalwart.capture.context import CaptureContext, find_participant
from stalwart.capture.locks import check_unlocked
from stalwart.capture.tables import Signature, Visit
from stalwart.capture.transaction import transaction
from stalwart.capture.writes import add_rows
from stalwart.errors import AccessDeniedError, ConflictError, NotFoundError, ValidationError

if TYPE_CHECKING:
    from stalwart.capture.users import UserStore

__all__ = ["SignatureView", "Signatures", "void_signatures"]


@dataclass(frozen=True)
class SignatureView:
    """A signature as shown beside its visit."""

    id: int
    visit_code: str
    signer: str
    meaning: str
    signed_at: str
    valid: bool
    void_reason: str | None


def void_signatures(session: Session, visit_id: int, reason: str) -> list[Signature]:
    """Void the valid signatures of a visit (inside the caller's transaction); returns them."""
    rows = list(
        session.scalars(
            sa.select(Signature).where(Signature.visit_id == visit_id, Signature.valid.is_(True))
        )
    )
    for row in rows:
        row.valid = False
        row.void_reason = reason
    return rows


class Signatures:
    """Signing visits, for investigators of the visit's site."""

    def __init__(self, context: CaptureContext) -> None:
        self.context = context

    def sign_visit(
        self,
        usubjid: str,
        visit_code: str,
        password: str,
        meaning: str,
        actor: ActorLike,
        users: UserStore,
    ) -> int:
        """Sign a recorded visit; the password is checked again and the meaning is required."""
        who = require(actor, Permission.SIGN, "sign visits")
        if not isinstance(actor, Actor) or who.user_id is None:
            raise AccessDeniedError("sign", "only a user account can sign: log in to sign")
        if not meaning.strip():
            raise ValidationError(
                "meaning", "state what the signature means, e.g. 'I approve these data'"
            )
        users.verify_password(who, password)
        with transaction(self.context.engine) as session:
            participant, _ = find_participant(session, usubjid, who)
            visit = session.scalar(
                sa.select(Visit).where(
                    Visit.participant_id == participant.id, Visit.visit_code == visit_code
                )
            )
            if visit is None:
                raise NotFoundError(f"visit {visit_code} of {usubjid} is not recorded")
            check_unlocked(
                session, participant, f"visit {visit_code} of {usubjid}", visit.visit_date
            )
            signed = session.scalar(
                sa.select(Signature.signer).where(
                    Signature.visit_id == visit.id, Signature.valid.is_(True)
                )
            )
            if signed is not None:
                raise ConflictError(
                    f"visit {visit_code} of {usubjid} is already signed by {signed}"
                )
            row = Signature(
                visit_id=visit.id,
                participant_id=participant.id,
                signer=who.username,
                meaning=meaning.strip(),
                signed_at=dt.datetime.now(dt.UTC).isoformat(),
                valid=True,
            )
            add_rows(session, [row], who.label, "e-signature")
            return row.id

    def of_participant(self, usubjid: str, actor: ActorLike) -> list[SignatureView]:
        """Every signature of the participant's visits, valid and voided."""
        who = require(actor, Permission.READ_RECORDS, "read records")
        with Session(self.context.engine) as session:
            participant, _ = find_participant(session, usubjid, who)
            rows = session.execute(
                sa.select(Signature, Visit.visit_code)
                .join(Visit, Visit.id == Signature.visit_id)
                .where(Signature.participant_id == participant.id)
                .order_by(Signature.id)
            ).all()
        return [
            SignatureView(s.id, code, s.signer, s.meaning, s.signed_at, s.valid, s.void_reason)
            for s, code in rows
        ]
