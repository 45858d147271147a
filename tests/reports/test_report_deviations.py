"""The DSMB report's protocol deviations, read from capture's deviations log in the report's
one snapshot: a late visit, a missed visit recorded by the site, a reported deviation and a late
consent (one of a person never randomized), checked against SQL counts; SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from stalwart.capture.enrolment import Allocation
from stalwart.capture.service import CaptureService
from stalwart.reports.report_monitoring import (
    NOT_LOGGED,
    deviation_listing,
    deviation_table,
    protocol_deviations,
)
from stalwart.reports.report_tables import Arms, Table
from stalwart.reports.snapshot import take_snapshot
from stalwart.reports.study_report import render_study_report

D = dt.date
DAY = dt.timedelta(days=1)
RAND = D(2008, 6, 2)
LABS = {"CD4": 450, "CD4PCT": 22.5, "HIVRNA": "<50"}


def _sql(trial: CaptureService, query: str) -> list[Any]:
    with trial.engine.connect() as conn:
        return list(conn.execute(sa.text(query)))


def _cell(table: Table, label: str, column: int = 0) -> tuple[int, int]:
    (row,) = [r for r in table.rows if r.label == label]
    deviations, people = row.cells[column].split(" / ")
    return int(deviations), int(people.split(" ")[0])


def _small_trial(
    trial: CaptureService, enrol: Callable[..., Allocation], answers: Callable[..., Any]
) -> dict[str, str]:
    """Three participants and one person screened only; returns each usubjid's arm."""
    a = enrol(trial, arm="IL2", screened=RAND - 5 * DAY, randomized=RAND)
    b = enrol(trial, arm="NOTHER", screened=RAND - 5 * DAY, randomized=RAND)
    # week 8 two weeks late: saved and logged as out of window
    trial.record_visit(a.usubjid, "WK08", RAND + 70 * DAY, LABS, "nurse", deviation_reason="away")
    trial.record_visit(a.usubjid, "WK16", RAND + 112 * DAY, LABS, "nurse")  # in its window
    trial.record_missed_visit(a.usubjid, "WK12", "participant in hospital", "nurse")
    trial.deviations.report(b.usubjid, "STUDY TREATMENT", "IL-2 on day 6", RAND, "coord")
    # consent after the screening procedures, then randomized: a late-consent deviation
    trial.screen("US01", "C1", RAND - 3 * DAY, answers(), "nurse")
    trial.record_consent("C1", RAND - DAY, "nurse")
    c = trial.randomize("C1", RAND - DAY, RAND, "nurse")
    # the same, never randomized: logged but in no arm
    trial.screen("US01", "C2", RAND, answers(), "nurse")
    trial.record_consent("C2", RAND + DAY, "nurse")
    return {x.usubjid: x.arm for x in (a, b, c)}


def test_deviations_come_from_the_log_once_each(
    trial: CaptureService, enrol: Callable[..., Allocation], eligible_answers: Callable[..., Any]
) -> None:
    arm_of = _small_trial(trial, enrol, eligible_answers)
    snapshot = take_snapshot(trial.engine)
    protocol = snapshot.loaded.protocol
    cutoff = snapshot.cutoff
    assert cutoff == RAND + 112 * DAY  # the week-16 visit
    # the log by category and arm, straight from SQL (participant directly or via screening)
    logged = _sql(
        trial,
        "select p.usubjid, d.category, d.visit_code from protocol_deviation d "
        "left join participant p on p.id = d.participant_id or p.screening_id = d.screening_id",
    )
    assert len(logged) == 5 and sum(u is None for u, _, _ in logged) == 1
    # scheduled visits due by the cut-off, not received, not logged as missed
    randomized = dict(_sql(trial, "select usubjid, randomization_date from participant"))
    held = set(
        _sql(
            trial,
            "select p.usubjid, v.visit_code from visit v join participant p "
            "on p.id = v.participant_id",
        )
    )
    missed = {(u, v) for u, c, v in logged if c == "MISSED VISIT"}
    open_ = [
        (u, v.code)
        for u, start in randomized.items()
        for v in protocol.visits
        if D.fromisoformat(str(start)[:10]) + (v.day + v.window_after) * DAY <= cutoff
        and (u, v.code) not in held
        and (u, v.code) not in missed
    ]
    expected = Counter((c, arm_of[u]) for u, c, _ in logged if u is not None)
    expected.update(("MISSED VISIT", arm_of[u]) for u, _ in open_)

    deviations = protocol_deviations(protocol, snapshot.extract, cutoff)
    assert Counter(zip(deviations["category"], deviations["arm"], strict=True)) == expected
    assert (deviations["source"] == NOT_LOGGED).sum() == len(open_)
    a = next(u for u, arm in arm_of.items() if arm == "IL2")
    # WK12 is due and not received, but logged as missed: counted once, from the log
    assert ((deviations["usubjid"] == a) & (deviations["visit"] == "WK12")).sum() == 1

    arms = Arms.of(protocol)
    table = deviation_table(protocol, snapshot.extract, cutoff, arms)
    il2 = arms.codes.index("IL2")
    assert _cell(table, "Visit out of window", il2) == (1, 1)
    assert _cell(
        table,
        "Informed consent",
        arms.codes.index(
            arm_of[next(u for u, c, _ in logged if c == "INFORMED CONSENT" and u is not None)]
        ),
    ) == (1, 1)
    assert _cell(table, "Study treatment", arms.codes.index("NOTHER")) == (1, 1)
    missed_il2 = expected[("MISSED VISIT", "IL2")]
    assert _cell(table, "Missed visit", il2) == (missed_il2, 1)
    assert _cell(table, "of which not yet logged", il2)[0] == missed_il2 - 1
    assert "1 deviation(s) logged for people screened and not randomized" in table.note
    total = sum(expected.values())
    pooled = deviation_table(protocol, snapshot.extract, cutoff, Arms.pooled())
    assert pooled.columns == ("All participants",)
    assert _cell(pooled, "All deviations") == (total, 3)

    listing = deviation_listing(protocol, snapshot.extract, cutoff, arms)
    assert len(listing.rows) == total
    late = [r for r in listing.rows if r.cells[2] == "Visit out of window"]
    assert [(r.label, r.cells[0], r.cells[1], r.cells[3]) for r in late] == [
        (a, arms.label("IL2"), (RAND + 70 * DAY).isoformat(), "WK08")
    ]


def test_the_closed_report_lists_deviations_and_the_open_one_only_counts(
    trial: CaptureService, enrol: Callable[..., Allocation], eligible_answers: Callable[..., Any]
) -> None:
    _small_trial(trial, enrol, eligible_answers)
    snapshot = take_snapshot(trial.engine)
    closed = render_study_report(snapshot, closed=True)
    opened = render_study_report(snapshot, closed=False)
    assert 'id="table-deviations"' in closed and 'id="table-deviations"' in opened
    assert 'id="listing-deviations"' in closed and 'id="listing-deviations"' not in opened
    assert "IL-2 on day 6" in closed and "IL-2 on day 6" not in opened
