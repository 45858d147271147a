"""Endpoint review: each reported opportunistic event or death is confirmed or rejected.

The reviewer sees the event, its participant and site, never the arm (blinded adjudication).
A verdict is given once, with a reason; ``status`` counts confirmed, rejected and awaiting
events, which the analysis reports beside the events it counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from stalwart.capture.access import ActorLike, Permission, as_actor, require
from stalwart.capture.context import CaptureContext
from stalwart.capture.locks import check_unlocked
from stalwart.capture.tables import ClinicalEvent, EndpointReview, Participant, Site
from stalwart.capture.transaction import transaction
from stalwart.capture.writes import add_rows
from stalwart.errors import ConflictError, NotFoundError, ValidationError

__all__ = ["DECISIONS", "EndpointReviews", "EventForReview", "ReviewStatus"]

DECISIONS = ("CONFIRMED", "REJECTED")
"""The verdicts a reviewer can give."""

Decision = Literal["CONFIRMED", "REJECTED"]


@dataclass(frozen=True)
class EventForReview:
    """A reported event as the reviewer sees it (no arm)."""

    id: int
    usubjid: str
    site: str
    event_code: str
    term: str
    category: str
    onset_date: str
    decision: str | None
    reason: str | None
    reviewer: str | None


@dataclass(frozen=True)
class ReviewStatus:
    """How many reported events are confirmed, rejected and awaiting review."""

    confirmed: int
    rejected: int
    awaiting: int


class EndpointReviews:
    """The endpoint reviewer's work list and verdicts."""

    def __init__(self, context: CaptureContext) -> None:
        self.context = context

    def events(self, actor: ActorLike, pending_only: bool = False) -> list[EventForReview]:
        """Reported clinical events with their verdicts (``pending_only``: those awaiting one)."""
        who = require(actor, Permission.READ_EVENTS, "read clinical events for review")
        terms = {e.code: e.term for e in self.context.protocol.forms.CE.events}
        stmt = (
            sa.select(ClinicalEvent, Participant.usubjid, Site.code, EndpointReview)
            .join(Participant, Participant.id == ClinicalEvent.participant_id)
            .join(Site, Site.id == Participant.site_id)
            .outerjoin(EndpointReview, EndpointReview.clinical_event_id == ClinicalEvent.id)
            .order_by(ClinicalEvent.id)
        )
        if who.site is not None:
            stmt = stmt.where(Site.code == who.site)
        if pending_only:
            stmt = stmt.where(EndpointReview.id.is_(None))
        with Session(self.context.engine) as session:
            rows = session.execute(stmt).all()
        return [
            EventForReview(
                e.id,
                usubjid,
                site,
                e.event_code,
                terms.get(e.event_code, e.event_code),
                e.category,
                e.onset_date.isoformat(),
                r.decision if r else None,
                r.reason if r else None,
                r.reviewer if r else None,
            )
            for e, usubjid, site, r in rows
        ]

    def review(self, event_id: int, decision: str, reason: str, actor: ActorLike) -> int:
        """Confirm or reject a reported event, with the reason; one verdict per event."""
        who = require(actor, Permission.REVIEW_ENDPOINT, "review endpoints")
        if decision not in DECISIONS:
            raise ValidationError("decision", f"{decision!r} is not one of {DECISIONS}")
        if not reason.strip():
            raise ValidationError("reason", "give the reason for the verdict")
        with transaction(self.context.engine) as session:
            row = session.execute(
                sa.select(ClinicalEvent.id, Site.code, Participant, ClinicalEvent.onset_date)
                .join(Participant, Participant.id == ClinicalEvent.participant_id)
                .join(Site, Site.id == Participant.site_id)
                .where(ClinicalEvent.id == event_id)
            ).one_or_none()
            if row is None or not who.sees_site(row[1]):
                raise NotFoundError(f"no reported clinical event {event_id}")
            check_unlocked(session, row[2], f"clinical event {event_id}", row[3])
            done = session.scalar(
                sa.select(EndpointReview.decision).where(
                    EndpointReview.clinical_event_id == event_id
                )
            )
            if done is not None:
                raise ConflictError(f"event {event_id} is already reviewed ({done})")
            review = EndpointReview(
                clinical_event_id=event_id,
                decision=decision,
                reason=reason.strip(),
                reviewer=who.username,
            )
            add_rows(session, [review], who.label, "endpoint review")
            return review.id

    def status(self, actor: ActorLike) -> ReviewStatus:
        """Counts of confirmed, rejected and awaiting events (no arm: any summary reader)."""
        if not as_actor(actor).can(Permission.READ_EVENTS):
            require(actor, Permission.POOLED_SUMMARY, "read the endpoint review status")
        with Session(self.context.engine) as session:
            total = session.scalar(sa.select(sa.func.count(ClinicalEvent.id))) or 0
            counts = dict(
                session.execute(
                    sa.select(EndpointReview.decision, sa.func.count(EndpointReview.id)).group_by(
                        EndpointReview.decision
                    )
                ).all()
            )
        confirmed, rejected = int(counts.get("CONFIRMED", 0)), int(counts.get("REJECTED", 0))
        return ReviewStatus(confirmed, rejected, int(total) - confirmed - rejected)
