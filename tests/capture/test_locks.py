"""Data locks in the store (SQLite and PostgreSQL): what a lock covers (scope, cut-off, dated
and undated writes), who may lock and unlock, double locks (also two at once), and the lock a
report names."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable

import pytest
from sqlalchemy.engine import Engine

from stalwart.capture.access import Actor, Role
from stalwart.capture.enrolment import Allocation
from stalwart.capture.locks import NO_LOCK, trial_lock_label
from stalwart.capture.service import CaptureService
from stalwart.errors import (
    AccessDeniedError,
    ConflictError,
    DataLockedError,
    NotFoundError,
    ValidationError,
)

Enrol = Callable[..., Allocation]
Counts = Callable[[Engine], dict[str, int]]
LABS = {"CD4": 610, "HIVRNA": 400}
DM = Actor("dm", Role.DATA_MANAGER)


def _with_visits(trial: CaptureService, enrol: Enrol, site: str = "US01") -> str:
    a = enrol(trial, site)
    trial.record_visit(a.usubjid, "ENTRY", a.randomization_date, LABS, "nurse")
    trial.record_visit(a.usubjid, "WK04", dt.date(2006, 2, 2), LABS, "nurse")
    return a.usubjid


def test_a_cutoff_lock_covers_dated_writes_up_to_it_and_no_undated_ones(
    trial: CaptureService, enrol: Enrol, engine: Engine, row_counts: Counts
) -> None:
    u = _with_visits(trial, enrol)
    lock = trial.locks.lock("participant", "interim", DM, usubjid=u, cutoff=dt.date(2006, 2, 10))
    before = row_counts(engine)
    with pytest.raises(DataLockedError) as refused:
        trial.report_clinical_event(u, "TB", dt.date(2006, 2, 10), "nurse")  # on the cut-off
    assert refused.value.lock_id == lock and refused.value.cutoff == "2006-02-10"
    assert row_counts(engine) == before
    trial.report_clinical_event(u, "TB", dt.date(2006, 2, 11), "nurse")  # the day after: open
    trial.queries.raise_on_field(u, "WK04", "LAB.CD4", "confirm", "monitor")  # undated: open


def test_a_lock_without_cutoff_covers_undated_writes_too(
    trial: CaptureService, enrol: Enrol
) -> None:
    u = _with_visits(trial, enrol)
    query = trial.queries.raise_on_field(u, "WK04", "LAB.CD4", "confirm", "monitor")
    trial.locks.lock("participant", "final", DM, usubjid=u)
    for write in (
        lambda: trial.queries.raise_on_field(u, "WK04", "LAB.HIVRNA", "units?", "monitor"),
        lambda: trial.queries.answer(query, "confirmed", "nurse"),
        lambda: trial.verifications.verify_visit(u, "WK04", "monitor"),
        lambda: trial.deviations.report(u, "OTHER", "late", dt.date(2006, 2, 2), "nurse"),
    ):
        with pytest.raises(DataLockedError, match=f"participant {u}"):
            write()
    trial.queries.close(query, "no change needed", "dm")  # a review, not a change of data


def test_only_the_data_manager_locks_and_unlocks_and_an_unlock_needs_a_reason(
    trial: CaptureService, enrol: Enrol
) -> None:
    u = _with_visits(trial, enrol)
    for role, site in ((Role.SITE_COORDINATOR, "US01"), (Role.MONITOR, None), (Role.ADMIN, None)):
        with pytest.raises(AccessDeniedError):
            trial.locks.lock("trial", "x", Actor("someone", role, site))
    lock = trial.locks.lock("site", "site closed", DM, site="US01")
    with pytest.raises(AccessDeniedError):
        trial.locks.unlock(lock, "reopen", Actor("mon", Role.MONITOR))
    for reason in ("", "   "):
        with pytest.raises(ValidationError, match="reason"):
            trial.locks.unlock(lock, reason, DM)
    with pytest.raises(ConflictError, match="already locked by lock"):
        trial.locks.lock("site", "again", DM, site="US01")
    trial.locks.unlock(lock, "a result must be corrected", DM)
    with pytest.raises(ConflictError, match="already lifted"):
        trial.locks.unlock(lock, "twice", DM)
    with pytest.raises(NotFoundError):
        trial.locks.unlock(9999, "none", DM)
    with pytest.raises(NotFoundError):
        trial.locks.lock("site", "x", DM, site="ZZ99")
    trial.record_visit(u, "WK08", dt.date(2006, 3, 2), LABS, "nurse")  # open again


def test_a_site_user_sees_the_trial_locks_and_their_own_sites_only(
    trial: CaptureService, enrol: Enrol
) -> None:
    us, gb = _with_visits(trial, enrol, "US01"), _with_visits(trial, enrol, "GB01")
    trial.locks.lock("participant", "us", DM, usubjid=us)
    trial.locks.lock("participant", "gb", DM, usubjid=gb)
    trial.locks.lock("site", "gb site", DM, site="GB01")
    trial.locks.lock("trial", "interim", DM, cutoff=dt.date(2006, 1, 1))
    seen = trial.locks.list(Actor("coord", Role.SITE_COORDINATOR, "US01"))
    assert sorted(v.reason for v in seen) == ["interim", "us"]
    assert len(trial.locks.list(DM)) == 4


def test_two_data_managers_locking_the_same_data_at_once_make_one_lock(
    trial: CaptureService, enrol: Enrol
) -> None:
    u = _with_visits(trial, enrol)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def lock() -> None:
        barrier.wait()
        try:
            trial.locks.lock("participant", "race", DM, usubjid=u)
            outcomes.append("locked")
        except ConflictError:
            outcomes.append("refused")

    threads = [threading.Thread(target=lock) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcomes) == ["locked", "refused"]
    assert len(trial.locks.list(DM, active_only=True)) == 1


def test_reports_name_the_latest_trial_lock_in_force(trial: CaptureService, enrol: Enrol) -> None:
    _with_visits(trial, enrol)
    assert trial_lock_label(trial.engine) == NO_LOCK
    trial.locks.lock("site", "site only", DM, site="US01")
    assert trial_lock_label(trial.engine) == NO_LOCK  # a site lock is not the trial's
    first = trial.locks.lock("trial", "interim 1", DM, cutoff=dt.date(2006, 6, 30))
    trial.locks.unlock(first, "interim done", DM)
    second = trial.locks.lock("trial", "final", DM)
    label = trial_lock_label(trial.engine)
    assert label.startswith(f"lock {second}: the whole trial, by dm at ") and label.endswith("UTC")
