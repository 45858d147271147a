"""Queries, endpoint review, the worklist, exports and summaries.

The writes (a query raised, answered or closed; a verdict) run in the forms' arrival-order queue
(``Run``), as the participants' writes and the pages' do.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, status
from fastapi.responses import StreamingResponse

from stalwart.capture.access import Permission as P
from stalwart.web.deps import CurrentActor, Run, Service
from stalwart.web.routes import needs
from stalwart.web.schemas import (
    QueryAnswer,
    QueryClose,
    QueryCreate,
    QueryReopen,
    RecordId,
    ReviewCreate,
)

__all__ = ["router"]

router = APIRouter(prefix="/api", tags=["oversight"])


@router.post(
    "/participants/{usubjid}/queries", status_code=status.HTTP_201_CREATED, **needs(P.RAISE_QUERY)
)
async def raise_query(
    usubjid: str, body: QueryCreate, service: Service, actor: CurrentActor, run: Run
) -> dict[str, Any]:
    """Open a query on a participant's record (monitors, data managers).

    With ``visit``, ``field`` names the data as users see it (``LAB.CD4``, ``visit_date``) and
    the service finds the stored row; without it, ``table_name`` and ``record_id`` do.
    """
    if body.visit is not None:
        query_id = await run(
            service.queries.raise_on_field, usubjid, body.visit, body.field, body.text, actor
        )
        return {"id": query_id, "status": "OPEN"}
    query_id = await run(
        service.queries.raise_query,
        usubjid,
        body.field,
        body.text,
        actor,
        body.table_name,
        body.record_id,
    )
    return {"id": query_id, "status": "OPEN"}


@router.get("/queries", **needs(P.READ_RECORDS))
def list_queries(
    service: Service, actor: CurrentActor, status: str | None = None, usubjid: str | None = None
) -> list[dict[str, Any]]:
    """Queries of the sites in scope."""
    return [asdict(q) for q in service.queries.list(actor, status, usubjid)]


@router.get("/queries/{query_id}/history", **needs(P.READ_RECORDS))
def query_history(
    query_id: RecordId, service: Service, actor: CurrentActor
) -> list[dict[str, Any]]:
    """Each step of a query (raised, answered, closed, re-opened): status, who, when, note."""
    return [asdict(step) for step in service.queries.history(query_id, actor)]


@router.post("/queries/{query_id}/answer", **needs(P.ANSWER_QUERY))
async def answer_query(
    query_id: RecordId, body: QueryAnswer, service: Service, actor: CurrentActor, run: Run
) -> dict[str, Any]:
    """The site answers an open query."""
    await run(service.queries.answer, query_id, body.answer, actor)
    return {"id": query_id, "status": "ANSWERED"}


@router.post("/queries/{query_id}/close", **needs(P.CLOSE_QUERY))
async def close_query(
    query_id: RecordId, body: QueryClose, service: Service, actor: CurrentActor, run: Run
) -> dict[str, Any]:
    """Close a query."""
    await run(service.queries.close, query_id, body.note, actor)
    return {"id": query_id, "status": "CLOSED"}


@router.post("/queries/{query_id}/reopen", **needs(P.RAISE_QUERY))
async def reopen_query(
    query_id: RecordId, body: QueryReopen, service: Service, actor: CurrentActor, run: Run
) -> dict[str, Any]:
    """Re-open an answered or closed query, with a note (monitors, data managers)."""
    await run(service.queries.reopen, query_id, body.note, actor)
    return {"id": query_id, "status": "OPEN"}


@router.get("/endpoint-reviews", **needs(P.READ_EVENTS))
def review_events(
    service: Service, actor: CurrentActor, pending_only: bool = False
) -> list[dict[str, Any]]:
    """Reported opportunistic events and deaths with their verdicts (no arm)."""
    return [asdict(e) for e in service.reviews.events(actor, pending_only)]


@router.get("/endpoint-reviews/status", **needs(P.READ_EVENTS, P.POOLED_SUMMARY))
def review_status(service: Service, actor: CurrentActor) -> dict[str, Any]:
    """How many events are confirmed, rejected and awaiting review."""
    return asdict(service.reviews.status(actor))


@router.post(
    "/endpoint-reviews/{event_id}", status_code=status.HTTP_201_CREATED, **needs(P.REVIEW_ENDPOINT)
)
async def review_event(
    event_id: RecordId, body: ReviewCreate, service: Service, actor: CurrentActor, run: Run
) -> dict[str, Any]:
    """Confirm or reject a reported event, with the reason."""
    review_id = await run(service.reviews.review, event_id, body.decision, body.reason, actor)
    return {"id": review_id, "decision": body.decision}


@router.get("/worklist", **needs(P.READ_RECORDS))
def worklist(
    service: Service, actor: CurrentActor, site: str | None = None
) -> list[dict[str, Any]]:
    """Visits due, overdue, out of window or upcoming at the sites in scope."""
    return [asdict(i) for i in service.records.worklist(actor, site)]


@router.get("/summary", **needs(P.POOLED_SUMMARY))
def summary(service: Service, actor: CurrentActor) -> dict[str, Any]:
    """Pooled summaries (no arm): counts, CD4 by visit, events, adverse events by grade."""
    return service.records.summary(actor, by_arm=False)


@router.get("/results-by-arm", **needs(P.RESULTS_BY_ARM))
def results_by_arm(service: Service, actor: CurrentActor) -> dict[str, Any]:
    """The same summaries by arm (unblinded statistician, DSMB)."""
    return service.records.summary(actor, by_arm=True)


def _csv_lines(header: list[str], rows: Iterator[tuple[Any, ...]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for count, row in enumerate(rows, start=1):
        writer.writerow(["" if v is None else v for v in row])
        if count % 500 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


@router.get("/exports/{kind}.csv", response_class=StreamingResponse, **needs(P.EXPORT))
def export(kind: str, service: Service, actor: CurrentActor) -> StreamingResponse:
    """Participants, visits or labs as CSV, streamed from the database cursor."""
    header, rows = service.records.export(kind, actor)
    return StreamingResponse(
        _csv_lines(header, rows),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{kind}.csv"'},
    )
