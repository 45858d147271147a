"""The AE form's submission fields: the messy and contradictory entries a site can make."""

from __future__ import annotations

import datetime as dt

import pytest

from stalwart.capture.ae_form import (
    AeDetails,
    check_adverse_event,
    check_ae_details,
    sae_report_note,
    sae_reported_late,
)
from stalwart.errors import FieldErrors, ValidationError
from stalwart.protocol.load import default_protocol_path, load_protocol

FORM = load_protocol(default_protocol_path()).protocol.forms.AE
OK = AeDetails("  fever after injection ", "RECOVERED/RESOLVED", "DOSE NOT CHANGED")


def test_a_complete_entry_is_cleaned() -> None:
    got = check_ae_details(FORM, False, OK)
    assert got.verbatim == "fever after injection"
    serious = AeDetails(
        "collapse", "RECOVERING/RESOLVING", "DRUG INTERRUPTED", ("AESHOSP", "AESLIFE")
    )
    assert check_ae_details(FORM, True, serious).seriousness == ("AESLIFE", "AESHOSP")  # form order


@pytest.mark.parametrize(
    ("serious", "details", "field"),
    [
        (False, AeDetails("", "RECOVERED/RESOLVED", "DOSE NOT CHANGED"), "verbatim"),
        (False, AeDetails("   ", "RECOVERED/RESOLVED", "DOSE NOT CHANGED"), "verbatim"),
        (False, AeDetails("x" * 201, "RECOVERED/RESOLVED", "DOSE NOT CHANGED"), "verbatim"),
        (False, AeDetails("fever", "BETTER", "DOSE NOT CHANGED"), "outcome"),
        (False, AeDetails("fever", "recovered/resolved", "DOSE NOT CHANGED"), "outcome"),
        (False, AeDetails("fever", "RECOVERED/RESOLVED", "STOPPED"), "action"),
        (True, AeDetails("fever", "RECOVERED/RESOLVED", "DRUG INTERRUPTED"), "seriousness"),
        (
            False,
            AeDetails("fever", "RECOVERED/RESOLVED", "NOT APPLICABLE", ("AESHOSP",)),
            "seriousness",
        ),
        (
            True,
            AeDetails("fever", "RECOVERED/RESOLVED", "NOT APPLICABLE", ("AESICK",)),
            "seriousness",
        ),
        (True, AeDetails("death", "FATAL", "NOT APPLICABLE", ("AESHOSP",)), "outcome"),
        (True, AeDetails("sepsis", "RECOVERED/RESOLVED", "NOT APPLICABLE", ("AESDTH",)), "outcome"),
    ],
)
def test_an_incomplete_or_contradictory_entry_is_refused(
    serious: bool, details: AeDetails, field: str
) -> None:
    with pytest.raises(ValidationError) as err:
        check_ae_details(FORM, serious, details)
    assert err.value.field == field


def test_a_serious_event_reported_after_the_deadline_is_flagged() -> None:
    start = dt.date(2006, 3, 1)
    days = FORM.sae_report_days
    assert not sae_reported_late(FORM, True, start, start + dt.timedelta(days=days))
    assert sae_reported_late(FORM, True, start, start + dt.timedelta(days=days + 1))
    assert not sae_reported_late(FORM, False, start, start + dt.timedelta(days=30))
    assert not sae_reported_late(FORM, True, start, None)  # entered before the date was kept


def test_the_site_reads_when_a_serious_event_was_due_and_whether_it_was_late() -> None:
    start = dt.date(2006, 3, 1)
    days = FORM.sae_report_days
    due = start + dt.timedelta(days=days)
    assert sae_report_note(FORM, False, start, start) is None
    on_time = sae_report_note(FORM, True, start, due)
    assert on_time == f"SAE: report to the sponsor by {due.isoformat()} ({days} day(s) from onset)"
    late = sae_report_note(FORM, True, start, due + dt.timedelta(days=3))
    assert late is not None and late.startswith("SAE reported late:")
    assert f"3 day(s) after the {days}-day deadline of {due.isoformat()}" in late


def test_every_wrong_ae_field_at_once() -> None:
    with pytest.raises(FieldErrors) as info:
        check_adverse_event(
            FORM,
            dt.date(2009, 3, 1),
            term="NOT A TERM",
            grade=7,
            start_date=dt.date(2009, 3, 5),
            end_date=dt.date(2009, 3, 2),
            related="MAYBE",
            serious=True,
            details=AeDetails(" ", "RECOVERED/RESOLVED", "DOSE NOT CHANGED"),
        )
    assert set(info.value.errors) == {
        "verbatim",
        "seriousness",
        "term",
        "grade",
        "related",
        "start_date",
        "end_date",
    }
    assert info.value.errors["end_date"].startswith("End date 2009-03-02 is")
