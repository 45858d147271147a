"""Screening numbers are unique per site: two sites may use one number, a site learns nothing
about another site's numbers, and USUBJIDs are derived as before (capture.enrolment); the
migration that made them so keeps an existing database's data and chain."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

from stalwart.capture.access import Actor, Role
from stalwart.capture.audit import data_sha256, verify_audit
from stalwart.capture.enrolment import Allocation
from stalwart.capture.service import CaptureService
from stalwart.errors import ConflictError, NotFoundError, ValidationError

D = dt.date
Answers = Callable[..., dict[str, object]]
Counts = Callable[[Engine], dict[str, int]]
US = Actor("nurse.us", Role.SITE_COORDINATOR, "US01", 61)
GB = Actor("nurse.gb", Role.SITE_COORDINATOR, "GB01", 62)


def test_two_sites_may_use_one_number_each_for_its_own_person(
    trial: CaptureService, eligible_answers: Answers
) -> None:
    trial.screen("US01", "S-1", D(2006, 1, 2), eligible_answers(), US)
    trial.screen("GB01", "S-1", D(2006, 1, 2), eligible_answers(), GB)
    trial.record_consent("S-1", D(2006, 1, 3), US)
    trial.record_consent("S-1", D(2006, 1, 4), GB)
    us = trial.randomize("S-1", D(2006, 1, 3), D(2006, 1, 5), US)
    gb = trial.randomize("S-1", D(2006, 1, 4), D(2006, 1, 5), GB)
    assert (us.usubjid, gb.usubjid) == ("STALWART-US01-0001", "STALWART-GB01-0001")
    assert [(s.site, s.usubjid) for s in trial.records.screenings(US)] == [("US01", us.usubjid)]
    with pytest.raises(ConflictError, match="already recorded at US01"):
        trial.screen("US01", "S-1", D(2006, 1, 2), eligible_answers(), US)


def test_another_sites_number_is_not_found_as_a_number_never_used(
    trial: CaptureService, engine: Engine, eligible_answers: Answers, row_counts: Counts
) -> None:
    trial.screen("GB01", "ONLY-GB", D(2006, 1, 2), eligible_answers(), GB)
    trial.record_consent("ONLY-GB", D(2006, 1, 3), GB)
    before = row_counts(engine)
    messages = []
    for number in ("ONLY-GB", "NEVER"):
        with pytest.raises(NotFoundError) as consent:
            trial.record_consent(number, D(2006, 1, 3), US)
        with pytest.raises(NotFoundError) as randomize:
            trial.randomize(number, D(2006, 1, 3), D(2006, 1, 5), US)
        messages.append((str(consent.value), str(randomize.value)))
        with pytest.raises(NotFoundError):
            trial.record_consent(number, D(2006, 1, 3), US, site="GB01")
    assert [m.replace("ONLY-GB", "X") for m in messages[0]] == [
        m.replace("NEVER", "X") for m in messages[1]
    ]
    assert row_counts(engine) == before
    # and it may screen that number itself
    assert trial.screen("US01", "ONLY-GB", D(2006, 1, 2), eligible_answers(), US).eligible


def test_an_all_sites_actor_names_the_site_of_a_number_two_sites_use(
    trial: CaptureService, engine: Engine, eligible_answers: Answers, row_counts: Counts
) -> None:
    trial.screen("US01", "S-2", D(2006, 1, 2), eligible_answers(), "system")
    trial.screen("GB01", "S-2", D(2006, 1, 2), eligible_answers(), "system")
    before = row_counts(engine)
    with pytest.raises(ValidationError, match="S-2 is used at GB01, US01: name the site") as e:
        trial.record_consent("S-2", D(2006, 1, 3), "system")
    assert e.value.field == "site"
    with pytest.raises(ValidationError, match="name the site"):
        trial.randomize("S-2", D(2006, 1, 3), D(2006, 1, 5), "system")
    assert row_counts(engine) == before
    trial.record_consent("S-2", D(2006, 1, 3), "system", site="GB01")
    a = trial.randomize("S-2", D(2006, 1, 3), D(2006, 1, 5), "system", site="GB01")
    assert a.usubjid.startswith("STALWART-GB01-")
    with pytest.raises(NotFoundError, match="no screening numbered S-2 at site DE01"):
        trial.record_consent("S-2", D(2006, 1, 3), "system", site="DE01")


def test_the_migration_keeps_an_existing_trial(
    trial: CaptureService,
    engine: Engine,
    enrol: Callable[..., Allocation],
    row_counts: Counts,
    eligible_answers: Answers,
) -> None:
    for site in ("US01", "GB01", "US01"):
        a = enrol(trial, site)
        trial.record_visit(a.usubjid, "WK04", D(2006, 2, 2), {"CD4": 500, "HIVRNA": 400}, "n")
    counts, digest = row_counts(engine), data_sha256(engine)
    with engine.begin() as conn:
        cfg = Config()
        cfg.set_main_option("script_location", "stalwart.capture:migrations")
        cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0004")
        command.upgrade(cfg, "head")
    assert row_counts(engine) == counts and data_sha256(engine) == digest
    assert verify_audit(engine).ok
    assert trial.screen("GB01", "US01-0001", D(2006, 1, 2), eligible_answers(), GB).eligible
