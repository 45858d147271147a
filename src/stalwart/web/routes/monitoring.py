"""Monitoring and lock: readable audit trails, source data verification, data locks.

``/audit-trail`` reads a participant's or a visit's audit trail as people read it
(``capture.audit_trail``); ``/sdv`` is a monitor's source verification of a visit's form
(``capture.verification``); ``/locks`` the data manager's locks (``capture.locks``). A write to
locked data answers 423 with the lock named in ``error.lock``.
"""

from __future__ import annotations

from dataclasses import asdict
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Query, status

from stalwart.capture.access import Permission as P
from stalwart.capture.audit_trail import TrailEntry
from stalwart.capture.locks import LockView
from stalwart.web.deps import CurrentActor, Run, Service
from stalwart.web.routes import needs
from stalwart.web.schemas import (
    LockCreate,
    LockPublic,
    LockRelease,
    RecordId,
    SourceVerificationCreate,
    TrailEntryPublic,
    TrailPublic,
)

__all__ = ["lock_public", "router"]

router = APIRouter(prefix="/api", tags=["monitoring"])

_LOCKED: dict[int | str, dict[str, Any]] = {
    423: {"description": "the data is locked: the lock is named in error.lock"}
}


def _entries(entries: list[TrailEntry]) -> list[TrailEntryPublic]:
    return [TrailEntryPublic.model_validate(asdict(e)) for e in entries]


def lock_public(view: LockView) -> LockPublic:
    """A lock as the API shows it, with its label in words."""
    return LockPublic(**asdict(view), label=view.label)


@router.get("/participants/{usubjid}/audit-trail", **needs(P.READ_RECORDS))
def participant_trail(usubjid: str, service: Service, actor: CurrentActor) -> TrailPublic:
    """Every write of the participant's data, oldest first: form, fields with their labels,
    old and new values, who, when and why."""
    entries = service.trails.participant(usubjid, actor)
    return TrailPublic(usubjid=usubjid, entries=_entries(entries))


@router.get("/participants/{usubjid}/visits/{visit_code}/audit-trail", **needs(P.READ_RECORDS))
def visit_trail(
    usubjid: str, visit_code: str, service: Service, actor: CurrentActor
) -> TrailPublic:
    """Every write of a visit's form (date, results, signatures, verifications, queries), with
    when it was first saved and last changed, and by whom."""
    entries = service.trails.visit(usubjid, visit_code, actor)
    saved = service.trails.saved(usubjid, visit_code, actor)
    return TrailPublic(
        usubjid=usubjid,
        visit_code=visit_code,
        saved_at=saved.saved_at,
        saved_by=saved.saved_by,
        changed_at=saved.changed_at,
        changed_by=saved.changed_by,
        entries=_entries(entries),
    )


@router.post(
    "/participants/{usubjid}/visits/{visit_code}/sdv",
    status_code=status.HTTP_201_CREATED,
    responses=_LOCKED,
    **needs(P.VERIFY_SOURCE),
)
async def verify_visit(
    usubjid: str,
    visit_code: str,
    body: SourceVerificationCreate,
    service: Service,
    actor: CurrentActor,
    run: Run,
) -> dict[str, object]:
    """A monitor marks the visit's form source-verified (once; a correction voids it)."""
    verification_id = await run(
        service.verifications.verify_visit, usubjid, visit_code, actor, body.note
    )
    return {"id": verification_id, "usubjid": usubjid, "visit_code": visit_code}


@router.get("/locks", **needs(P.READ_RECORDS))
def list_locks(
    service: Service,
    actor: CurrentActor,
    active: Annotated[bool, Query(description="only the locks in force")] = False,
) -> list[LockPublic]:
    """Locks that concern the caller's sites, newest first, in force and lifted."""
    return [lock_public(v) for v in service.locks.list(actor, active_only=active)]


@router.post("/locks", status_code=status.HTTP_201_CREATED, **needs(P.LOCK_DATA))
async def create_lock(
    body: LockCreate, service: Service, actor: CurrentActor, run: Run
) -> dict[str, object]:
    """Lock a participant's, a site's or the whole trial's data (all of it, or up to a cut-off
    date): no form of it can change until an unlock that names its reason."""
    lock_id = await run(
        partial(service.locks.lock, usubjid=body.usubjid, site=body.site, cutoff=body.cutoff),
        body.scope,
        body.reason,
        actor,
    )
    return {"id": lock_id, "scope": body.scope}


@router.post("/locks/{lock_id}/unlock", **needs(P.LOCK_DATA))
async def unlock(
    lock_id: RecordId, body: LockRelease, service: Service, actor: CurrentActor, run: Run
) -> dict[str, object]:
    """Lift a lock in force; the reason is required and kept with who and when."""
    await run(service.locks.unlock, lock_id, body.reason, actor)
    return {"id": lock_id, "active": False}
