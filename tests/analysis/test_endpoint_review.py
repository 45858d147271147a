"""The analysis counts confirmed opportunistic events and deaths, and says how many await review.

Three participants each report an event; the reviewer confirms one and rejects one, and one
awaits review. ADTTE must show one event (the other two are followed on to last contact), the
counts must say 1 / 1 / 1, and ``analysis.event_review = "all_reported"`` (or an extract with no
verdicts at all, as from an imported source) must count all three.
Runs on SQLite and PostgreSQL (the ``trial`` fixture).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest

from stalwart.analysis.datasets.bundle import derive_datasets, load_datasets
from stalwart.analysis.datasets.source import StoreExtract, read_store
from stalwart.capture.enrolment import Allocation
from stalwart.capture.service import CaptureService

EVENT_DAY = dt.date(2006, 3, 1)


@pytest.fixture()
def reviewed(trial: CaptureService, enrol: Callable[..., Allocation]) -> dict[str, str]:
    """usubjid -> what happened to its event (confirmed, rejected, awaiting)."""
    fates: dict[str, str] = {}
    for fate in ("confirmed", "rejected", "awaiting"):
        who = enrol(trial).usubjid
        trial.record_visit(who, "WK04", dt.date(2006, 2, 2), {"CD4": 500, "HIVRNA": 400}, "site")
        event = trial.report_clinical_event(who, "PCP", EVENT_DAY, "site")
        if fate != "awaiting":
            decision = "CONFIRMED" if fate == "confirmed" else "REJECTED"
            trial.reviews.review(event, decision, f"{fate} on source review", "reviewer")
        fates[who] = fate
    return fates


def test_only_confirmed_events_are_events(trial: CaptureService, reviewed: dict[str, str]) -> None:
    datasets, _ = load_datasets(trial.protocol, trial.engine)
    adtte = datasets.adtte.set_index("USUBJID")
    for usubjid, fate in reviewed.items():
        row = adtte.loc[usubjid]
        if fate == "confirmed":
            assert row["CNSR"] == 0 and row["ADT"].date() == EVENT_DAY
            assert row["EVNTDESC"] != "LAST CONTACT"
        else:
            # not an event: censored at the last contact, which is the (unconfirmed) report
            assert row["CNSR"] == 1 and row["EVNTDESC"] == "LAST CONTACT"
    counts = datasets.endpoint_review
    assert counts is not None
    assert counts.as_json() == {
        "rule": "confirmed_only",
        "reported": 3,
        "confirmed": 1,
        "rejected": 1,
        "awaiting_review": 1,
        "counted": 1,
    }


def test_all_reported_counts_every_event(trial: CaptureService, reviewed: dict[str, str]) -> None:
    analysis = trial.protocol.analysis.model_copy(update={"event_review": "all_reported"})
    protocol = trial.protocol.model_copy(update={"analysis": analysis})
    datasets = derive_datasets(protocol, read_store(trial.engine))
    assert (datasets.adtte["CNSR"] == 0).sum() == 3
    assert datasets.endpoint_review is not None
    assert datasets.endpoint_review.as_json()["counted"] == 3
    assert datasets.endpoint_review.as_json()["awaiting_review"] == 1


def test_an_extract_without_verdicts_counts_events_as_reported(
    trial: CaptureService, reviewed: dict[str, str]
) -> None:
    """An imported source has no endpoint review: its events count, and the counts say so."""
    extract = read_store(trial.engine)
    bare = StoreExtract(
        **{
            **extract.__dict__,
            "clinical_events": extract.clinical_events.drop(columns=["review"]),
        }
    )
    datasets = derive_datasets(trial.protocol, bare)
    assert (datasets.adtte["CNSR"] == 0).sum() == 3
    assert datasets.endpoint_review is not None
    assert datasets.endpoint_review.as_json() == {
        "rule": "not_reviewed",
        "reported": 3,
        "confirmed": 0,
        "rejected": 0,
        "awaiting_review": 3,
        "counted": 3,
    }
