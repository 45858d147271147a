"""Trial-wide reads: the CSV exports, streamed, and the pooled or by-arm summary.

``Records.export`` and ``Records.summary`` check the actor's permission and call these; an export
is limited to the actor's site, a summary is by arm only for roles that may see arms. Exports
stream rows from the database cursor (``yield_per``), never the whole table in memory.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from stalwart.capture.context import CaptureContext
from stalwart.capture.db import snapshot_session
from stalwart.capture.tables import (
    AdverseEvent,
    AllocationSlot,
    ClinicalEvent,
    DataQuery,
    Disposition,
    EndpointReview,
    LabResult,
    Participant,
    Screening,
    Site,
    Visit,
)

__all__ = ["EXPORTS", "AnySelect", "export_select", "stream_rows", "trial_summary"]

EXPORTS = ("participants", "visits", "labs")
"""The CSV exports."""

AnySelect = sa.Select[*tuple[Any, ...]]
"""A select statement of any row shape."""


def export_select(kind: str, site: str | None) -> tuple[list[str], AnySelect]:
    """The header and the statement of export ``kind`` (one of ``EXPORTS``), of ``site`` only
    when one is given."""
    site_filter = (Site.code == site) if site is not None else sa.true()
    if kind == "participants":
        header = [
            "USUBJID",
            "SITEID",
            "SCREENING_NUMBER",
            "RFICDTC",
            "RANDDT",
            "ARMCD",
            "DSDECOD",
            "DSSTDTC",
        ]
        stmt: AnySelect = (
            sa.select(
                Participant.usubjid,
                Site.code,
                Screening.screening_number,
                Participant.consent_date,
                Participant.randomization_date,
                AllocationSlot.arm,
                Disposition.status,
                Disposition.disposition_date,
            )
            .join(Site, Site.id == Participant.site_id)
            .join(Screening, Screening.id == Participant.screening_id)
            .join(AllocationSlot, AllocationSlot.participant_id == Participant.id)
            .outerjoin(Disposition, Disposition.participant_id == Participant.id)
            .where(site_filter)
            .order_by(Participant.id)
        )
    elif kind == "visits":
        header = ["USUBJID", "SITEID", "VISIT", "SVSTDTC"]
        stmt = (
            sa.select(Participant.usubjid, Site.code, Visit.visit_code, Visit.visit_date)
            .join(Participant, Participant.id == Visit.participant_id)
            .join(Site, Site.id == Participant.site_id)
            .where(site_filter)
            .order_by(Visit.id)
        )
    else:
        header = [
            "USUBJID",
            "SITEID",
            "VISIT",
            "LBDTC",
            "LBTESTCD",
            "LBSTRESN",
            "LBSTRESU",
            "BELOW_LIMIT",
            "LIMIT",
        ]
        stmt = (
            sa.select(
                Participant.usubjid,
                Site.code,
                Visit.visit_code,
                Visit.visit_date,
                LabResult.test_code,
                LabResult.value,
                LabResult.unit,
                LabResult.below_limit,
                LabResult.limit_value,
            )
            .join(Visit, Visit.id == LabResult.visit_id)
            .join(Participant, Participant.id == LabResult.participant_id)
            .join(Site, Site.id == Participant.site_id)
            .where(site_filter)
            .order_by(LabResult.id)
        )
    return header, stmt


def stream_rows(engine: Engine, stmt: AnySelect) -> Iterator[tuple[Any, ...]]:
    """The rows of ``stmt``, fetched from the cursor as they are consumed."""
    with Session(engine) as session:
        result = session.execute(stmt.execution_options(yield_per=1000))
        try:
            for row in result:
                yield tuple(row)
        finally:
            result.close()


def trial_summary(context: CaptureContext, by_arm: bool) -> dict[str, Any]:
    """Counts and CD4 by visit, pooled, or split by arm when ``by_arm`` (the caller checks that
    the actor may see arms)."""
    with snapshot_session(context.engine) as session:  # one state for every count
        arms = dict(
            session.execute(
                sa.select(AllocationSlot.participant_id, AllocationSlot.arm).where(
                    AllocationSlot.participant_id.is_not(None)
                )
            ).all()
        )
        screened = session.scalar(sa.select(sa.func.count(Screening.id))) or 0
        eligible = (
            session.scalar(
                sa.select(sa.func.count(Screening.id)).where(Screening.eligible.is_(True))
            )
            or 0
        )
        cd4 = session.execute(
            sa.select(LabResult.participant_id, Visit.visit_code, LabResult.value)
            .join(Visit, Visit.id == LabResult.visit_id)
            .where(LabResult.test_code == "CD4", LabResult.value.is_not(None))
        ).all()
        events = session.execute(
            sa.select(
                ClinicalEvent.participant_id, ClinicalEvent.category, EndpointReview.decision
            ).outerjoin(EndpointReview, EndpointReview.clinical_event_id == ClinicalEvent.id)
        ).all()
        aes = session.execute(sa.select(AdverseEvent.participant_id, AdverseEvent.grade)).all()
        open_queries = (
            session.scalar(
                sa.select(sa.func.count(DataQuery.id)).where(DataQuery.status != "CLOSED")
            )
            or 0
        )
    groups = sorted(set(arms.values())) if by_arm else ["ALL"]

    def group(pid: int) -> str:
        return arms.get(pid, "?") if by_arm else "ALL"

    randomized = Counter(group(pid) for pid in arms if pid is not None)
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    for pid, code, value in cd4:
        if value is not None:
            values[(group(pid), code)].append(float(value))
    visit_codes = [v.code for v in context.protocol.visits]
    event_counts: Counter[tuple[str, str, str]] = Counter(
        (group(pid), category, decision or "AWAITING") for pid, category, decision in events
    )
    ae_counts: Counter[tuple[str, int]] = Counter((group(pid), grade) for pid, grade in aes)
    return {
        "by_arm": by_arm,
        "screened": int(screened),
        "eligible": int(eligible),
        "open_queries": int(open_queries),
        "groups": {
            g: {
                "randomized": randomized.get(g, 0),
                "cd4_by_visit": {
                    code: {
                        "n": len(values[(g, code)]),
                        "mean": statistics.fmean(values[(g, code)]),
                        "median": statistics.median(values[(g, code)]),
                    }
                    for code in visit_codes
                    if values.get((g, code))
                },
                "clinical_events": {
                    f"{category}:{decision}": n
                    for (gg, category, decision), n in sorted(event_counts.items())
                    if gg == g
                },
                "adverse_events_by_grade": {
                    str(grade): n for (gg, grade), n in sorted(ae_counts.items()) if gg == g
                },
            }
            for g in groups
        },
    }
