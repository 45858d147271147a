"""Read the trial database into plain DataFrames, one per table: the input of every derivation.

Reading is separate from deriving so that the ADaM derivations are pure functions of frames and
can be tested on small inline tables, and so that another source (a CDISC import) can feed them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from stalwart.capture.db import snapshot_connection
from stalwart.capture.deviations import DEVIATION_COLUMNS, deviation_rows
from stalwart.capture.tables import (
    AdverseEvent,
    AllocationSlot,
    ClinicalEvent,
    Disposition,
    Dose,
    EndpointReview,
    LabResult,
    Participant,
    Screening,
    Site,
    Visit,
)
from stalwart.protocol.calendar import UNSCHEDULED_PREFIX

__all__ = ["StoreExtract", "read_store", "unrandomized_deviations"]


@dataclass(frozen=True)
class StoreExtract:
    """The captured data as DataFrames keyed by USUBJID (screening keyed by its number).

    ``clinical_events`` carries each event's endpoint review verdict in ``review``
    (``CONFIRMED``, ``REJECTED``, or None while it awaits review). ``deviations`` is the
    protocol deviations log, one row per deviation with the columns of
    :func:`stalwart.capture.deviations.deviation_rows` (``USUBJID`` empty for one logged before
    randomization); a source without a log (a CDISC import) leaves it empty.
    """

    screening: pd.DataFrame
    participants: pd.DataFrame
    labs: pd.DataFrame
    doses: pd.DataFrame
    clinical_events: pd.DataFrame
    adverse_events: pd.DataFrame
    dispositions: pd.DataFrame
    deviations: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=list(DEVIATION_COLUMNS))
    )


def unrandomized_deviations(extract: StoreExtract) -> int:
    """Deviations logged for people screened and never randomized: no USUBJID, so no arm (the
    DSMB report) and no SDTM record (DV)."""
    return int((extract.deviations["USUBJID"].astype(str) == "").sum())


def _frame(session: Session, stmt: sa.Executable) -> pd.DataFrame:
    result = session.execute(stmt)
    return pd.DataFrame.from_records(list(result), columns=list(result.keys()))


def read_store(engine: Engine | Connection) -> StoreExtract:
    """Read every captured fact needed by the analysis, in a stable order, from one snapshot of
    the store (``snapshot_connection``: writes may go on meanwhile; given a connection, its
    transaction is the snapshot)."""
    with snapshot_connection(engine) as conn, Session(bind=conn) as s:
        screening = _frame(
            s,
            sa.select(
                Screening.screening_number,
                Site.code.label("site"),
                Screening.screening_date,
                Screening.eligible,
                Screening.reasons,
                Screening.answers,
            )
            .join(Site, Site.id == Screening.site_id)
            .order_by(Screening.id),
        )
        participants = _frame(
            s,
            sa.select(
                Participant.usubjid,
                Site.code.label("site"),
                Site.country,
                Screening.screening_number,
                Screening.answers,
                Participant.consent_date,
                Participant.randomization_date,
                AllocationSlot.arm,
            )
            .join(Site, Site.id == Participant.site_id)
            .join(Screening, Screening.id == Participant.screening_id)
            .join(AllocationSlot, AllocationSlot.participant_id == Participant.id)
            .order_by(Participant.usubjid),
        )
        labs = _frame(
            s,
            sa.select(
                Participant.usubjid,
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
            # the visits of the schedule: unscheduled ones belong to no analysis visit (and
            # the SDTM visit numbering of unscheduled visits is left to the tabulations)
            .where(~Visit.visit_code.startswith(UNSCHEDULED_PREFIX))
            .order_by(Participant.usubjid, Visit.visit_date, LabResult.test_code),
        )
        doses = _frame(
            s,
            sa.select(
                Participant.usubjid,
                Dose.treatment,
                Dose.cycle,
                Dose.dose_date,
                Dose.administrations,
                Dose.dose,
                Dose.dose_unit,
            )
            .join(Participant, Participant.id == Dose.participant_id)
            .order_by(Participant.usubjid, Dose.dose_date, Dose.treatment),
        )
        clinical_events = _frame(
            s,
            sa.select(
                Participant.usubjid,
                ClinicalEvent.event_code,
                ClinicalEvent.category,
                ClinicalEvent.onset_date,
                EndpointReview.decision.label("review"),
            )
            .join(Participant, Participant.id == ClinicalEvent.participant_id)
            .outerjoin(EndpointReview, EndpointReview.clinical_event_id == ClinicalEvent.id)
            .order_by(Participant.usubjid, ClinicalEvent.onset_date, ClinicalEvent.id),
        )
        adverse_events = _frame(
            s,
            sa.select(
                Participant.usubjid,
                AdverseEvent.term,
                AdverseEvent.grade,
                AdverseEvent.start_date,
                AdverseEvent.end_date,
                AdverseEvent.related,
                AdverseEvent.serious,
                sa.func.coalesce(AdverseEvent.verbatim, AdverseEvent.term).label("verbatim"),
                sa.func.coalesce(AdverseEvent.outcome, "UNKNOWN").label("outcome"),
                sa.func.coalesce(AdverseEvent.action, "UNKNOWN").label("action"),
                sa.func.coalesce(AdverseEvent.seriousness, "").label("seriousness"),
                AdverseEvent.reported_on,
            )
            .join(Participant, Participant.id == AdverseEvent.participant_id)
            .order_by(Participant.usubjid, AdverseEvent.start_date, AdverseEvent.id),
        )
        dispositions = _frame(
            s,
            sa.select(
                Participant.usubjid,
                Disposition.status,
                Disposition.disposition_date,
            )
            .join(Participant, Participant.id == Disposition.participant_id)
            .order_by(Participant.usubjid),
        )
        # deviation_rows opens a Session on the connection: it joins the same snapshot
        deviations = pd.DataFrame.from_records(
            deviation_rows(conn), columns=list(DEVIATION_COLUMNS)
        )
    return StoreExtract(
        screening,
        participants,
        labs,
        doses,
        clinical_events,
        adverse_events,
        dispositions,
        deviations,
    )
