"""Screening, consent, randomization and each participant's forms: visits, doses, events.

The forms' routes are ``async`` and hand their one blocking call, the capture service's, to a
worker thread themselves (``Run``: in arrival order, as many at once as the database pool has
connections). A plain ``def`` route costs FastAPI two hops to the thread pool per request (the
endpoint, then the validation of its return value); each hop is a thread handoff, and under many
clients those handoffs cost as much CPU as the write itself.
"""

from __future__ import annotations

from dataclasses import asdict
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Header, Response, status

from stalwart.capture.access import Permission as P
from stalwart.capture.enrolment import Allocation
from stalwart.errors import PreconditionFailedError, StaleVersionError, ValidationError
from stalwart.web.calls import parse_if_match, randomize_after_consent
from stalwart.web.deps import CurrentActor, Run, Service, Users
from stalwart.web.routes import needs
from stalwart.web.schemas import (
    AdverseEventCreate,
    AllocationPublic,
    AuditEntryPublic,
    ClinicalEventCreate,
    ConsentCreate,
    DispositionCreate,
    DoseDayPublic,
    DoseLogCreate,
    MissedVisitCreate,
    RandomizationCreate,
    RecordId,
    ScheduledVisitPublic,
    ScreeningCreate,
    ScreeningPublic,
    SignatureCreate,
    UnscheduledVisitCreate,
    VisitCorrection,
    VisitCreate,
)

__all__ = ["allocation_public", "router"]

router = APIRouter(prefix="/api", tags=["participants"])


def allocation_public(allocation: Allocation) -> AllocationPublic:
    """The arm and the calendar of a randomization, without the list position."""
    cal = allocation.calendar
    return AllocationPublic(
        usubjid=allocation.usubjid,
        arm=allocation.arm,
        randomization_date=allocation.randomization_date,
        visits=[
            ScheduledVisitPublic(
                code=v.code,
                name=v.name,
                study_day=v.study_day,
                target=v.target,
                earliest=v.earliest,
                latest=v.latest,
            )
            for v in cal.visits
        ],
        doses=[
            DoseDayPublic(
                treatment=d.treatment,
                cycle=d.cycle,
                date=d.date,
                administrations=d.administrations,
                dose=d.dose,
                dose_unit=d.dose_unit,
            )
            for d in cal.doses
        ],
    )


@router.post("/screenings", status_code=status.HTTP_201_CREATED, **needs(P.SCREEN))
async def screen(
    body: ScreeningCreate, service: Service, actor: CurrentActor, run: Run
) -> ScreeningPublic:
    """Record a screening; the verdict lists the criteria not met when not eligible."""
    screen = partial(service.screen, consent_date=body.consent_date)
    outcome = await run(
        screen, body.site, body.screening_number, body.screening_date, body.answers, actor
    )
    return ScreeningPublic(
        screening_number=outcome.screening_number,
        eligible=outcome.eligible,
        reasons=list(outcome.reasons),
    )


@router.get("/screenings", **needs(P.READ_RECORDS))
def screenings(service: Service, actor: CurrentActor) -> list[dict[str, Any]]:
    """The screening log of the sites in scope."""
    return [asdict(s) for s in service.records.screenings(actor)]


@router.post(
    "/screenings/{screening_number}/consent", status_code=status.HTTP_201_CREATED, **needs(P.SCREEN)
)
async def consent(
    screening_number: str, body: ConsentCreate, service: Service, actor: CurrentActor, run: Run
) -> dict[str, Any]:
    """Record informed consent of an eligible screened person."""
    consent_id = await run(
        partial(service.record_consent, site=body.site), screening_number, body.consent_date, actor
    )
    return {"id": consent_id, "screening_number": screening_number}


@router.post("/randomizations", status_code=status.HTTP_201_CREATED, **needs(P.RANDOMIZE))
async def randomize(
    body: RandomizationCreate, service: Service, actor: CurrentActor, run: Run
) -> AllocationPublic:
    """Randomize: returns the arm and the participant's visit and dosing calendar."""
    allocation = await run(randomize_after_consent, body, service, actor)
    return allocation_public(allocation)


@router.get("/participants", **needs(P.READ_RECORDS))
def participants(service: Service, actor: CurrentActor) -> list[dict[str, Any]]:
    """Randomized participants of the sites in scope."""
    return [asdict(p) for p in service.records.participants(actor)]


@router.get("/participants/{usubjid}", **needs(P.READ_RECORDS))
def participant(usubjid: str, service: Service, actor: CurrentActor) -> dict[str, Any]:
    """A participant's record: visit calendar with status, dosing, events."""
    return asdict(service.records.participant(usubjid, actor))


@router.post(
    "/participants/{usubjid}/visits/{visit_code}",
    status_code=status.HTTP_201_CREATED,
    **needs(P.ENTER_DATA),
)
async def record_visit(
    usubjid: str,
    visit_code: str,
    body: VisitCreate,
    service: Service,
    actor: CurrentActor,
    run: Run,
) -> dict[str, Any]:
    """Enter a visit's laboratory form (first save). Outside the visit's window it needs
    ``deviation_reason``: the visit is saved and logged as a protocol deviation."""
    visit_id = await run(
        partial(service.record_visit, deviation_reason=body.deviation_reason),
        usubjid,
        visit_code,
        body.visit_date,
        body.labs,
        actor,
    )
    return {"id": visit_id, "usubjid": usubjid, "visit_code": visit_code}


@router.post(
    "/participants/{usubjid}/unscheduled-visits",
    status_code=status.HTTP_201_CREATED,
    **needs(P.ENTER_DATA),
)
async def record_unscheduled_visit(
    usubjid: str,
    body: UnscheduledVisitCreate,
    service: Service,
    actor: CurrentActor,
    run: Run,
) -> dict[str, Any]:
    """Enter an unscheduled visit (any date from randomization, any LAB results); it is
    numbered UNS01, UNS02... and read and corrected under that code as any visit."""
    code = await run(
        service.record_unscheduled_visit, usubjid, body.visit_date, body.labs, body.reason, actor
    )
    return {"usubjid": usubjid, "visit_code": code}


@router.post(
    "/participants/{usubjid}/visits/{visit_code}/missed",
    status_code=status.HTTP_201_CREATED,
    **needs(P.ENTER_DATA),
)
async def record_missed_visit(
    usubjid: str,
    visit_code: str,
    body: MissedVisitCreate,
    service: Service,
    actor: CurrentActor,
    run: Run,
) -> dict[str, Any]:
    """Record that a scheduled visit did not take place (once its window has closed)."""
    missed_id = await run(service.record_missed_visit, usubjid, visit_code, body.reason, actor)
    return {"id": missed_id, "usubjid": usubjid, "visit_code": visit_code}


@router.put(
    "/participants/{usubjid}/visits/{visit_code}",
    responses={
        409: {"description": "no version sent, or a stale one in the body: what changed since"},
        412: {"description": "the If-Match version is stale: what changed since"},
    },
    **needs(P.CORRECT_DATA),
)
async def correct_visit(
    usubjid: str,
    visit_code: str,
    body: VisitCorrection,
    service: Service,
    actor: CurrentActor,
    run: Run,
    if_match: Annotated[str | None, Header(max_length=200)] = None,
) -> dict[str, Any]:
    """Correct a saved visit from the version read (the GET's ETag as If-Match, or ``version``
    in the body); the reason for change is required; voids its signature. A stale version is
    refused (409; 412 for If-Match) with each field changed since, its value seen and now; GET
    the visit again for its new version."""
    version = body.version
    tagged = parse_if_match(if_match)
    if tagged is not None:
        if version is not None and version != tagged:
            raise ValidationError(
                "version", f"the body's version {version} differs from If-Match {if_match}"
            )
        version = tagged
    try:
        visit_id = await run(
            partial(service.correct_visit, version=version),
            usubjid,
            visit_code,
            body.visit_date,
            body.labs,
            body.reason,
            actor,
        )
    except StaleVersionError as exc:
        if tagged is None:
            raise
        raise PreconditionFailedError(str(exc), exc.version, exc.current, exc.changes) from None
    # no new version here: the one a GET returns now may already hold a later change
    return {"id": visit_id, "usubjid": usubjid, "visit_code": visit_code}


@router.get("/participants/{usubjid}/visits/{visit_code}", **needs(P.READ_RECORDS))
def visit(
    usubjid: str, visit_code: str, service: Service, actor: CurrentActor, response: Response
) -> dict[str, Any]:
    """A recorded visit, its results and signature; its version also as the ETag header."""
    record = service.records.visit(usubjid, visit_code, actor)
    response.headers["ETag"] = f'"{record.version}"'
    return asdict(record)


@router.post(
    "/participants/{usubjid}/visits/{visit_code}/signature",
    status_code=status.HTTP_201_CREATED,
    **needs(P.SIGN),
)
async def sign_visit(
    usubjid: str,
    visit_code: str,
    body: SignatureCreate,
    service: Service,
    users: Users,
    actor: CurrentActor,
    run: Run,
) -> dict[str, Any]:
    """Investigator e-signature: password re-entered, meaning stated."""
    signature_id = await run(
        service.signatures.sign_visit,
        usubjid,
        visit_code,
        body.password,
        body.meaning,
        actor,
        users,
    )
    return {"id": signature_id}


@router.get("/participants/{usubjid}/visits/{visit_code}/audit", **needs(P.READ_RECORDS))
def visit_audit(
    usubjid: str, visit_code: str, service: Service, actor: CurrentActor
) -> list[AuditEntryPublic]:
    """The audit trail of a visit, its results and signatures."""
    entries = service.records.visit_audit_trail(usubjid, visit_code, actor)
    return [AuditEntryPublic(**asdict(e)) for e in entries]


@router.get("/audit/{table_name}/{record_id}", **needs(P.READ_RECORDS))
def record_audit(
    table_name: str, record_id: RecordId, service: Service, actor: CurrentActor
) -> list[AuditEntryPublic]:
    """The audit trail of any record in the caller's scope."""
    entries = service.records.audit_trail(table_name, record_id, actor)
    return [AuditEntryPublic(**asdict(e)) for e in entries]


@router.post(
    "/participants/{usubjid}/doses", status_code=status.HTTP_201_CREATED, **needs(P.ENTER_DATA)
)
async def record_doses(
    usubjid: str, body: DoseLogCreate, service: Service, actor: CurrentActor, run: Run
) -> dict[str, Any]:
    """The dose log of one IL-2 or ART cycle: administrations taken per day."""
    days = [(d.date, d.administrations) for d in body.days]
    record = partial(service.record_doses, deviation_reason=body.deviation_reason)
    await run(record, usubjid, body.treatment, body.cycle, days, actor)
    return {"usubjid": usubjid, "treatment": body.treatment, "cycle": body.cycle}


@router.post(
    "/participants/{usubjid}/clinical-events",
    status_code=status.HTTP_201_CREATED,
    **needs(P.ENTER_DATA),
)
async def report_clinical_event(
    usubjid: str, body: ClinicalEventCreate, service: Service, actor: CurrentActor, run: Run
) -> dict[str, Any]:
    """Report an opportunistic event or death (it then awaits endpoint review)."""
    event_id = await run(
        service.report_clinical_event, usubjid, body.event_code, body.onset_date, actor
    )
    return {"id": event_id}


@router.post(
    "/participants/{usubjid}/adverse-events",
    status_code=status.HTTP_201_CREATED,
    **needs(P.ENTER_DATA),
)
async def report_adverse_event(
    usubjid: str, body: AdverseEventCreate, service: Service, actor: CurrentActor, run: Run
) -> dict[str, Any]:
    """Report an adverse event with its DAIDS grade."""
    ae_id = await run(
        service.report_adverse_event,
        usubjid,
        body.term,
        body.grade,
        body.start_date,
        body.end_date,
        body.related,
        body.serious,
        actor,
        body.details(),
    )
    return {"id": ae_id}


@router.post(
    "/participants/{usubjid}/disposition",
    status_code=status.HTTP_201_CREATED,
    **needs(P.ENTER_DATA),
)
async def record_disposition(
    usubjid: str, body: DispositionCreate, service: Service, actor: CurrentActor, run: Run
) -> dict[str, Any]:
    """Record how follow-up ended."""
    await run(service.record_disposition, usubjid, body.status, body.disposition_date, actor)
    return {"usubjid": usubjid, "status": body.status}
