"""The DSMB reports over HTTP: the open report (arms pooled) and the closed one (by arm).

Each request takes a fresh snapshot of the store and renders it in memory; the snapshot's hash
comes back in the ``X-Stalwart-Snapshot`` header as well as on every page. The open report is
for the oversight roles (statisticians, the DSMB, data managers); the closed one only for the
unblinded roles, those whose role grants ``results_by_arm`` (the unblinded statistician and the
DSMB). Anyone else gets 403 and no report.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from stalwart.capture.access import Actor, Permission, Role, require
from stalwart.errors import AccessDeniedError
from stalwart.outputs.snapshot import take_snapshot
from stalwart.outputs.study_report import render_pdf, render_study_report
from stalwart.web.deps import CurrentActor, Service

__all__ = ["router"]

router = APIRouter(prefix="/api/reports", tags=["reports"])

ReportFormat = Literal["pdf", "html"]


def _may_read_open(actor: Actor) -> None:
    if actor.can(Permission.POOLED_SUMMARY) or actor.role is Role.DATA_MANAGER:
        return
    raise AccessDeniedError(
        Permission.POOLED_SUMMARY.value,
        f"{actor.username} ({actor.role.value}) may not read the DSMB report: it is for "
        "statisticians, the DSMB and data managers",
    )


def _render(service: Service, closed: bool, fmt: ReportFormat) -> Response:
    snapshot = take_snapshot(service.engine)
    html = render_study_report(snapshot, closed)
    version = "closed" if closed else "open"
    headers = {
        "X-Stalwart-Snapshot": snapshot.data_sha256,
        "Cache-Control": "no-store",
        "Content-Disposition": (f'inline; filename="dsmb-{version}-{snapshot.short_name}.{fmt}"'),
    }
    if fmt == "html":
        return Response(html, media_type="text/html; charset=utf-8", headers=headers)
    pdf, _ = render_pdf(html)
    return Response(pdf, media_type="application/pdf", headers=headers)


@router.get("/open", response_class=Response)
async def open_report(
    service: Service, actor: CurrentActor, format: ReportFormat = "pdf"
) -> Response:
    """The open DSMB report (arms pooled) of the current data, as PDF or HTML."""
    _may_read_open(actor)
    return await run_in_threadpool(_render, service, False, format)


@router.get("/closed", response_class=Response)
async def closed_report(
    service: Service, actor: CurrentActor, format: ReportFormat = "pdf"
) -> Response:
    """The closed DSMB report (by arm) of the current data: unblinded roles only (403 else)."""
    require(actor, Permission.RESULTS_BY_ARM, "read the closed (by-arm) DSMB report")
    return await run_in_threadpool(_render, service, True, format)
