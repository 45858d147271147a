"""The DSMB reports over HTTP: the open report (arms pooled) and the closed one (by arm).

Each request takes a fresh snapshot of the store and renders it in memory; the snapshot's hash
comes back in the ``X-Stalwart-Snapshot`` header as well as on every page. The open report is
for the oversight roles (statisticians, the DSMB, data managers); the closed one only for the
unblinded roles, those whose role grants ``results_by_arm`` (the unblinded statistician and the
DSMB). Anyone else gets 403 and no report.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Literal

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from stalwart.capture.access import Permission, require
from stalwart.reports.snapshot import take_snapshot
from stalwart.reports.study_report import render_pdf, render_study_report
from stalwart.web.deps import CurrentActor, Service
from stalwart.web.routes import needs

__all__ = ["router"]

router = APIRouter(prefix="/api/reports", tags=["reports"])

ReportFormat = Literal["pdf", "html"]


_RENDERED: OrderedDict[tuple[str, str, bool, str], bytes | str] = OrderedDict()
_RENDERED_MAX = 8
_RENDER_LOCK = threading.Lock()


def _render(service: Service, closed: bool, fmt: ReportFormat) -> Response:
    """Render the report of a fresh snapshot; the same data renders once (a few kept, LRU).

    A report is a function of the snapshot (named by its data hash) and the protocol, so while
    no data changes every reader gets the page first rendered for it, with the generation time
    it shows; the first write after it makes the next request render anew.
    """
    snapshot = take_snapshot(service.engine)
    version = "closed" if closed else "open"
    key = (snapshot.data_sha256, snapshot.loaded.sha256, closed, fmt)
    with _RENDER_LOCK:
        content = _RENDERED.get(key)
        if content is not None:
            _RENDERED.move_to_end(key)
    if content is None:
        html = render_study_report(snapshot, closed)
        content = html if fmt == "html" else render_pdf(html)[0]
        with _RENDER_LOCK:
            _RENDERED[key] = content
            while len(_RENDERED) > _RENDERED_MAX:
                _RENDERED.popitem(last=False)
    headers = {
        "X-Stalwart-Snapshot": snapshot.data_sha256,
        "Cache-Control": "no-store",
        "Content-Disposition": (f'inline; filename="dsmb-{version}-{snapshot.short_name}.{fmt}"'),
    }
    if fmt == "html":
        return Response(content, media_type="text/html; charset=utf-8", headers=headers)
    return Response(content, media_type="application/pdf", headers=headers)


@router.get("/open", response_class=Response, **needs(Permission.POOLED_SUMMARY))
async def open_report(
    service: Service, actor: CurrentActor, format: ReportFormat = "pdf"
) -> Response:
    """The open DSMB report (arms pooled) of the current data, as PDF or HTML."""
    require(actor, Permission.POOLED_SUMMARY, "read the open DSMB report")
    return await run_in_threadpool(_render, service, False, format)


@router.get("/closed", response_class=Response, **needs(Permission.RESULTS_BY_ARM))
async def closed_report(
    service: Service, actor: CurrentActor, format: ReportFormat = "pdf"
) -> Response:
    """The closed DSMB report (by arm) of the current data: unblinded roles only (403 else)."""
    require(actor, Permission.RESULTS_BY_ARM, "read the closed (by-arm) DSMB report")
    return await run_in_threadpool(_render, service, True, format)
