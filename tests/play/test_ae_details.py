"""What a simulated site writes on the AE form and the screening form's race and ethnicity."""

from __future__ import annotations

import datetime as dt

import numpy as np

from stalwart.capture.ae_form import check_ae_details
from stalwart.play.ae_details import death_report, site_ae_details
from stalwart.play.demographics import reported_answers
from stalwart.protocol.load import default_protocol_path, load_protocol
from stalwart.simulate.model import AdverseEventDraw

PROTOCOL = load_protocol(default_protocol_path()).protocol
FORM = PROTOCOL.forms.AE
DAY = dt.date(2006, 3, 1)


def _ae(grade: int, serious: bool, end: dt.date | None = DAY) -> AdverseEventDraw:
    return AdverseEventDraw("Fever", grade, DAY, end, "POSSIBLE", serious)


def test_every_simulated_entry_passes_the_forms_checks() -> None:
    for grade in range(1, 6):
        for serious in (False, True):
            for last in (None, DAY, DAY - dt.timedelta(days=1)):
                for end in (None, DAY):
                    details = site_ae_details(FORM, _ae(grade, serious, end), last)
                    assert check_ae_details(FORM, serious, details) == details
    death = death_report(FORM, "Death, any cause")
    assert check_ae_details(FORM, True, death.details).outcome == "FATAL"
    assert death.term in FORM.terms and death.grade == FORM.max_grade


def test_the_action_follows_the_treatment() -> None:
    assert site_ae_details(FORM, _ae(3, True), DAY).action == "DRUG INTERRUPTED"
    assert site_ae_details(FORM, _ae(2, False), DAY).action == "DOSE NOT CHANGED"
    assert site_ae_details(FORM, _ae(2, False), None).action == "NOT APPLICABLE"
    after = DAY - dt.timedelta(days=1)  # the event starts after the last dose
    assert site_ae_details(FORM, _ae(3, True), after).action == "NOT APPLICABLE"
    assert site_ae_details(FORM, _ae(4, True), DAY).seriousness == ("AESLIFE", "AESHOSP")
    assert site_ae_details(FORM, _ae(2, False, None), DAY).outcome == "NOT RECOVERED/NOT RESOLVED"


def test_race_and_ethnicity_are_drawn_from_the_offered_choices() -> None:
    rng = np.random.default_rng(3)
    race = next(i for i in PROTOCOL.screening_items if i.name == "race")
    seen = [reported_answers(PROTOCOL, {"age": 40}, rng) for _ in range(400)]
    races = {a["race"] for a in seen}
    assert races <= set(race.choices or []) and len(races) >= 3
    assert {a["ethnicity"] for a in seen} == {"HISPANIC OR LATINO", "NOT HISPANIC OR LATINO"}
    assert all(a["age"] == 40 for a in seen)  # the other answers are left as they were
