"""The protocol deviations log: list, report, review (``capture.deviations``)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Query, status

from stalwart.capture.access import Permission as P
from stalwart.web.deps import CurrentActor, Run, Service
from stalwart.web.routes import needs
from stalwart.web.schemas import DeviationCreate, DeviationReview, RecordId

__all__ = ["router"]

router = APIRouter(prefix="/api", tags=["deviations"])

_Filter = Annotated[str | None, Query(max_length=40)]


@router.get("/deviations", **needs(P.READ_RECORDS))
def list_deviations(
    service: Service, actor: CurrentActor, usubjid: _Filter = None, site: _Filter = None
) -> list[dict[str, Any]]:
    """Deviations of the sites in scope (of one participant or one site if asked), oldest
    first: detected ones (visit out of window, missed visit, late consent) and reported ones."""
    return [asdict(d) for d in service.deviations.list(actor, usubjid=usubjid, site=site)]


@router.post(
    "/participants/{usubjid}/deviations",
    status_code=status.HTTP_201_CREATED,
    **needs(P.ENTER_DATA, P.RAISE_QUERY),
)
async def report_deviation(
    usubjid: str, body: DeviationCreate, service: Service, actor: CurrentActor, run: Run
) -> dict[str, Any]:
    """Report a protocol deviation of a participant (site staff, monitors, data managers)."""
    deviation_id = await run(
        service.deviations.report,
        usubjid,
        body.category,
        body.description,
        body.deviation_date,
        actor,
    )
    return {"id": deviation_id, "usubjid": usubjid}


@router.post("/deviations/{deviation_id}/review", **needs(P.CLOSE_QUERY))
async def review_deviation(
    deviation_id: RecordId, body: DeviationReview, service: Service, actor: CurrentActor, run: Run
) -> dict[str, Any]:
    """The data manager (or a monitor) reviews a deviation, once, with a note."""
    await run(service.deviations.review, deviation_id, body.note, actor)
    return {"id": deviation_id, "reviewed": True}
