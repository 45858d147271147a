"""Roles and site scope, enforced by the capture service itself (not only by web routes)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from stalwart.capture import access
from stalwart.capture.access import Actor, Permission, Role, as_actor, permissions_of, require
from stalwart.capture.audit import verify_audit
from stalwart.capture.enrolment import Allocation
from stalwart.capture.service import CaptureService
from stalwart.capture.tables import AuditRecord
from stalwart.errors import AccessDeniedError, NotFoundError

D = dt.date
Counts = Callable[[Engine], dict[str, int]]
Enrol = Callable[..., Allocation]

GB_COORD = Actor("coord.gb", Role.SITE_COORDINATOR, "GB01", 1)
US_COORD = Actor("coord.us", Role.SITE_COORDINATOR, "US01", 2)
MONITOR = Actor("mon", Role.MONITOR, None, 3)
BLINDED = Actor("stat.b", Role.STATISTICIAN_BLINDED, None, 4)
LABS = {"CD4": 510, "HIVRNA": 12000}


def test_exported_names() -> None:
    assert set(access.__all__) == {
        "ROLES",
        "SITE_ROLES",
        "Actor",
        "ActorLike",
        "Permission",
        "Role",
        "as_actor",
        "permissions_of",
        "require",
    }


def test_a_bare_name_is_the_unrestricted_system_actor() -> None:
    system = as_actor("demo")
    assert system.role is Role.SYSTEM and system.site is None
    assert all(system.can(p) for p in Permission)
    assert "system" not in access.ROLES


def test_role_table() -> None:
    assert Permission.SIGN in permissions_of(Role.INVESTIGATOR)
    assert Permission.SIGN not in permissions_of(Role.SITE_COORDINATOR)
    assert permissions_of(Role.STATISTICIAN_BLINDED) == {Permission.POOLED_SUMMARY}
    assert Permission.RESULTS_BY_ARM in permissions_of(Role.DSMB)
    assert Permission.ENTER_DATA not in permissions_of(Role.MONITOR)
    for role in Role:
        if Permission.READ_RECORDS in permissions_of(role):
            assert Permission.SEE_ARM in permissions_of(role)  # open-label: readers see arms
    with pytest.raises(AccessDeniedError, match=r"stat\.b \(statistician_blinded\) may not sign"):
        require(BLINDED, Permission.SIGN, "sign")


def test_site_user_cannot_reach_another_sites_participant(
    trial: CaptureService, engine: Engine, enrol: Enrol, row_counts: Counts
) -> None:
    us = enrol(trial, "US01")
    before = row_counts(engine)
    with pytest.raises(NotFoundError, match="no randomized participant"):
        trial.record_visit(us.usubjid, "WK04", D(2006, 2, 2), LABS, GB_COORD)
    with pytest.raises(NotFoundError):
        trial.records.participant(us.usubjid, GB_COORD)
    with pytest.raises(NotFoundError):
        trial.report_clinical_event(us.usubjid, "PCP", D(2006, 2, 2), GB_COORD)
    with pytest.raises(
        AccessDeniedError, match="works at site GB01 and may not enter data at US01"
    ):
        trial.screen("US01", "X-1", D(2006, 1, 2), {}, GB_COORD)
    assert row_counts(engine) == before
    assert [p.usubjid for p in trial.records.participants(GB_COORD)] == []
    assert [p.usubjid for p in trial.records.participants(US_COORD)] == [us.usubjid]
    assert [p.usubjid for p in trial.records.participants(MONITOR)] == [us.usubjid]


def test_site_user_cannot_randomize_another_sites_screening(
    trial: CaptureService, eligible_answers: Callable[..., dict[str, object]]
) -> None:
    trial.screen("US01", "US-9", D(2006, 1, 2), eligible_answers(), US_COORD)
    with pytest.raises(NotFoundError, match="no screening numbered US-9"):
        trial.randomize("US-9", D(2006, 1, 2), D(2006, 1, 5), GB_COORD)
    with pytest.raises(NotFoundError):
        trial.record_consent("US-9", D(2006, 1, 3), GB_COORD)


def test_roles_without_the_permission_are_refused(
    trial: CaptureService, engine: Engine, enrol: Enrol, row_counts: Counts
) -> None:
    us = enrol(trial, "US01")
    before = row_counts(engine)
    for actor in (MONITOR, BLINDED, Actor("rev", Role.ENDPOINT_REVIEWER)):
        with pytest.raises(AccessDeniedError):
            trial.record_visit(us.usubjid, "WK04", D(2006, 2, 2), LABS, actor)
    with pytest.raises(AccessDeniedError):
        trial.records.participants(BLINDED)
    with pytest.raises(AccessDeniedError):
        trial.records.summary(BLINDED, by_arm=True)
    assert row_counts(engine) == before


def test_every_write_records_the_acting_user(
    trial: CaptureService, engine: Engine, eligible_answers: Callable[..., dict[str, object]]
) -> None:
    trial.screen("GB01", "GB-1", D(2006, 1, 2), eligible_answers(), GB_COORD)
    trial.record_consent("GB-1", D(2006, 1, 2), GB_COORD)  # consent first, the same day
    allocation = trial.randomize("GB-1", D(2006, 1, 2), D(2006, 1, 5), GB_COORD)
    trial.record_visit(allocation.usubjid, "WK04", D(2006, 2, 2), LABS, GB_COORD)
    with engine.connect() as conn:
        actors = conn.execute(
            sa.select(AuditRecord.table_name, AuditRecord.actor).where(
                AuditRecord.actor != "test-setup"
            )
        ).all()
    assert {t for t, _ in actors} == {
        "screening",
        "consent",
        "participant",
        "allocation_slot",
        "visit",
        "lab_result",
    }
    assert {a for _, a in actors} == {"coord.gb"}
    assert verify_audit(engine).ok
