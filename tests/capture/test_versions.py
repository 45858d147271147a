"""Record versions: a correction names the version it was made from; a stale one is refused with
what changed since, and nothing is written (capture.versions)."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from sqlalchemy.engine import Engine

from stalwart.capture.access import Actor, Role
from stalwart.capture.audit import verify_audit
from stalwart.capture.enrolment import Allocation
from stalwart.capture.service import CaptureService
from stalwart.capture.tables import AuditRecord
from stalwart.capture.users import UserStore
from stalwart.errors import ConflictError, StaleVersionError, StalwartError

D = dt.date
Counts = Callable[[Engine], dict[str, int]]
Enrol = Callable[..., Allocation]
LABS = {"CD4": 510, "HIVRNA": 12000}
DM = Actor("dm", Role.DATA_MANAGER, None, 51)
NURSE = Actor("nurse", Role.SITE_COORDINATOR, "US01", 52)


def _entered(trial: CaptureService, enrol: Enrol) -> str:
    a = enrol(trial, "US01")
    trial.record_visit(a.usubjid, "WK04", D(2006, 2, 2), LABS, NURSE)
    return a.usubjid


def test_a_visit_is_read_with_its_version_and_each_correction_moves_it(
    trial: CaptureService, enrol: Enrol
) -> None:
    u = _entered(trial, enrol)
    first = trial.records.visit(u, "WK04", DM).version
    assert first > 0
    trial.correct_visit(u, "WK04", D(2006, 2, 2), LABS | {"CD4": 520}, "typo", DM, version=first)
    second = trial.records.visit(u, "WK04", DM).version
    assert second > first
    trial.correct_visit(
        u, "WK04", D(2006, 2, 3), LABS | {"CD4": 520}, "date", NURSE, version=second
    )
    assert trial.records.visit(u, "WK04", NURSE).version > second


def test_a_correction_from_a_stale_read_is_refused_naming_what_changed_since(
    trial: CaptureService, engine: Engine, enrol: Enrol, row_counts: Counts
) -> None:
    u = _entered(trial, enrol)
    stale = trial.records.visit(u, "WK04", DM).version
    trial.correct_visit(
        u, "WK04", D(2006, 2, 3), {"CD4": 520, "HIVRNA": "<50"}, "re-issued", NURSE, version=stale
    )
    before = row_counts(engine)
    with pytest.raises(StaleVersionError) as caught:
        trial.correct_visit(
            u, "WK04", D(2006, 2, 2), LABS | {"CD4": 600}, "mine", DM, version=stale
        )
    exc = caught.value
    assert row_counts(engine) == before
    assert exc.version == stale and exc.current == trial.records.visit(u, "WK04", DM).version
    changes = {c["field"]: c for c in exc.changes}
    assert set(changes) == {"visit_date", "LAB.CD4", "LAB.HIVRNA"}
    assert (changes["LAB.CD4"]["seen"], changes["LAB.CD4"]["now"]) == ("510", "520")
    assert (changes["LAB.HIVRNA"]["seen"], changes["LAB.HIVRNA"]["now"]) == ("12000", "<50")
    assert (changes["visit_date"]["seen"], changes["visit_date"]["now"]) == (
        "2006-02-02",
        "2006-02-03",
    )
    assert all(c["changed_by"] == "nurse" and c["changed_at"] for c in exc.changes)
    assert "LAB.CD4 510 -> 520 by nurse" in str(exc) and "read it again" in str(exc)
    # from the current version the same correction goes through
    trial.correct_visit(
        u, "WK04", D(2006, 2, 2), LABS | {"CD4": 600}, "mine", DM, version=exc.current
    )
    assert trial.records.visit(u, "WK04", DM).labs["CD4"] == "600"


def test_a_correction_without_a_version_is_refused_asking_for_it(
    trial: CaptureService, engine: Engine, enrol: Enrol, row_counts: Counts
) -> None:
    u = _entered(trial, enrol)
    before = row_counts(engine)
    with pytest.raises(ConflictError, match="must name the version it was made from") as caught:
        trial.correct_visit(u, "WK04", D(2006, 2, 2), LABS | {"CD4": 600}, "x", DM, version=None)
    assert not isinstance(caught.value, StaleVersionError)
    assert row_counts(engine) == before


@pytest.mark.parametrize("version", [0, -1, 10**9])
def test_a_version_the_visit_never_had_is_stale(
    trial: CaptureService, engine: Engine, enrol: Enrol, row_counts: Counts, version: int
) -> None:
    u = _entered(trial, enrol)
    before = row_counts(engine)
    with pytest.raises(StaleVersionError):
        trial.correct_visit(u, "WK04", D(2006, 2, 2), LABS | {"CD4": 600}, "x", DM, version=version)
    assert row_counts(engine) == before


def test_a_signature_leaves_the_version_as_it_was(trial: CaptureService, enrol: Enrol) -> None:
    u = _entered(trial, enrol)
    users = UserStore(trial.engine, PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    users.add_user("inv.us", "investigator secret", "investigator", "cli", site="US01")
    inv = users.authenticate("inv.us", "investigator secret")
    version = trial.records.visit(u, "WK04", DM).version
    trial.signatures.sign_visit(u, "WK04", "investigator secret", "I approve", inv, users)
    assert trial.records.visit(u, "WK04", DM).version == version


def test_concurrent_corrections_from_one_read_let_exactly_one_through(
    trial: CaptureService, engine: Engine, enrol: Enrol
) -> None:
    u = _entered(trial, enrol)
    version = trial.records.visit(u, "WK04", DM).version
    outcomes: list[str] = []
    start = threading.Barrier(8)

    def correct(cd4: int) -> None:
        start.wait()
        try:
            trial.correct_visit(
                u, "WK04", D(2006, 2, 2), LABS | {"CD4": cd4}, "race", DM, version=version
            )
            outcomes.append(f"ok {cd4}")
        except StaleVersionError:
            outcomes.append("stale")
        except StalwartError as exc:
            outcomes.append(f"other {exc}")

    threads = [threading.Thread(target=correct, args=(600 + i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o in outcomes if o.startswith("ok")]
    assert len(winners) == 1 and outcomes.count("stale") == 7, outcomes
    assert trial.records.visit(u, "WK04", DM).labs["CD4"] == winners[0].split()[1]
    with engine.connect() as conn:
        updates = conn.scalar(
            sa.select(sa.func.count()).where(
                AuditRecord.action == "UPDATE", AuditRecord.table_name == "lab_result"
            )
        )
    assert updates == 1
    assert verify_audit(engine).ok
