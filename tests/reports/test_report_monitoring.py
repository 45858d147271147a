"""The DSMB's monitoring sections (accrual, data quality, deviations, exposure, listings) and the
interim monitoring display, checked against the store read directly with SQL.

One small demo (STALWART with 24 participants) serves the module; an early trial (two
participants, no visit due, no dose given) shows what the sections say when the data cannot
support them yet.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from stalwart.analysis.datasets.bundle import derive_datasets
from stalwart.analysis.plan import analyze_available
from stalwart.capture.db import create_schema, open_engine
from stalwart.capture.service import CaptureService, initialize_trial
from stalwart.play.demo import run_demo
from stalwart.protocol.load import default_protocol_path, load_protocol
from stalwart.reports.report_interim import interim_section
from stalwart.reports.report_monitoring import (
    NOT_LOGGED,
    accrual_by_site,
    accrual_table,
    data_quality_table,
    death_listing,
    deviation_table,
    exposure_table,
    protocol_deviations,
    sae_listing,
)
from stalwart.reports.report_tables import Arms, Table, in_words
from stalwart.reports.snapshot import Snapshot, take_snapshot


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Snapshot]:
    folder = tmp_path_factory.mktemp("demo")
    text = default_protocol_path().read_text(encoding="utf-8")
    protocol = folder / "small.toml"
    protocol.write_text(text.replace("sample_size = 267", "sample_size = 24"), encoding="utf-8")
    run_demo(folder / "out", seed=5, protocol=protocol)
    db = folder / "out" / "stalwart.db"
    engine = open_engine(f"sqlite:///{db}")
    try:
        return db, take_snapshot(engine)
    finally:
        engine.dispose()


def _sql(db: Path, query: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(query).fetchall()


def _row(table: Table, label: str) -> tuple[str, ...]:
    hits = [r.cells for r in table.rows if r.label == label]
    assert hits, f"{table.id}: no row {label!r}"
    return hits[-1]


def test_in_words_turns_cdisc_terms_into_words() -> None:
    assert in_words("LOST TO FOLLOW-UP") == "Lost to follow-up"
    assert in_words("WITHDREW") == "Withdrew consent"
    assert in_words("NOT RELATED") == "Not related"
    assert in_words("Already words") == "Already words"


def test_accrual_matches_the_randomization_dates(demo) -> None:
    db, snapshot = demo
    protocol = snapshot.loaded.protocol
    table = accrual_table(protocol, snapshot.extract, snapshot.cutoff)
    dates = [
        dt.date.fromisoformat(d) for (d,) in _sql(db, "select randomization_date from participant")
    ]
    assert table.rows
    for row in table.rows:
        year, quarter = row.label.split(" Q")
        end = pd.Period(f"{year}Q{quarter}", freq="Q").end_time.date()
        assert row.cells[0] == str(sum(d <= end for d in dates))
    assert table.rows[-1].cells[0] == str(len(dates))
    sites = accrual_by_site(protocol, snapshot.extract)
    for code, count in _sql(
        db, "select s.code, count(*) from participant p join site s on s.id = p.site_id group by 1"
    ):
        label = next(r.label for r in sites.rows if r.label.startswith(f"{code} ("))
        assert _row(sites, label)[0] == str(count)
    assert table.caption.startswith(f"Accrual: {len(dates)} of 24 participants")


def test_data_quality_counts_due_received_and_overdue_visits(demo) -> None:
    db, snapshot = demo
    protocol = snapshot.loaded.protocol
    cutoff = snapshot.cutoff
    people = _sql(db, "select p.id, p.randomization_date from participant p")
    held = {(pid, code) for pid, code in _sql(db, "select participant_id, visit_code from visit")}
    off = dict(
        _sql(
            db,
            "select participant_id, disposition_date from disposition where status != 'COMPLETED'",
        )
    )
    due = received = 0
    for pid, randomized in people:
        start = dt.date.fromisoformat(randomized)
        for visit in protocol.visits:
            opens = start + dt.timedelta(days=visit.day - visit.window_before)
            closes = start + dt.timedelta(days=visit.day + visit.window_after)
            stopped = off.get(pid)
            if closes <= cutoff and (stopped is None or dt.date.fromisoformat(stopped) >= opens):
                due += 1
                received += (pid, visit.code) in held
    table = data_quality_table(
        protocol, snapshot.extract, cutoff, snapshot.queries, snapshot.taken_at
    )
    cells = _row(table, "All sites")
    assert cells[0] == str(due)
    assert cells[1].startswith(f"{received} (")
    assert cells[2] == str(due - received)
    (open_queries,) = _sql(db, "select count(*) from data_query where status = 'OPEN'")[0]
    assert cells[3] == str(open_queries)
    logged_missed = set(
        _sql(
            db,
            "select participant_id, visit_code from protocol_deviation "
            "where category = 'MISSED VISIT'",
        )
    )
    not_logged = sum(
        1
        for pid, randomized in people
        for visit in protocol.visits
        if (pid, visit.code) not in held
        and (pid, visit.code) not in logged_missed
        and dt.date.fromisoformat(randomized) + dt.timedelta(days=visit.day + visit.window_after)
        <= cutoff
        and (
            off.get(pid) is None
            or dt.date.fromisoformat(off[pid])
            >= dt.date.fromisoformat(randomized)
            + dt.timedelta(days=visit.day - visit.window_before)
        )
    )
    deviations = protocol_deviations(protocol, snapshot.extract, cutoff)
    assert (deviations["source"] == NOT_LOGGED).sum() == not_logged


def test_deviations_by_arm_add_up_to_the_pooled_count(demo) -> None:
    _, snapshot = demo
    protocol = snapshot.loaded.protocol
    by_arm = deviation_table(protocol, snapshot.extract, snapshot.cutoff, Arms.of(protocol))
    pooled = deviation_table(protocol, snapshot.extract, snapshot.cutoff, Arms.pooled())
    assert pooled.columns == ("All participants",)
    for row in by_arm.rows:
        total = sum(int(cell.split(" / ")[0]) for cell in row.cells)
        assert _row(pooled, row.label)[0].startswith(f"{total} / ")


def test_exposure_matches_the_dosing_forms(demo) -> None:
    db, snapshot = demo
    protocol = snapshot.loaded.protocol
    arms = Arms.of(protocol)
    table = exposure_table(protocol, snapshot.extract, arms)
    rows = _sql(
        db,
        "select a.arm, d.treatment, sum(d.administrations), count(distinct d.participant_id || ':' "
        "|| d.cycle), count(*) from dose d join allocation_slot a on a.participant_id = "
        "d.participant_id group by 1, 2",
    )
    sums = {(arm, treatment): (adm, cycles, days) for arm, treatment, adm, cycles, days in rows}
    labels = [r.label for r in table.rows]
    for treatment_code, treatment in protocol.treatments.items():
        start = labels.index(treatment.name)
        administrations = table.rows[start + 5].cells
        started = table.rows[start + 2].cells
        days = table.rows[start + 4].cells
        for i, code in enumerate(arms.codes):
            adm, cycles, n_days = sums.get((code, treatment_code), (0, 0, 0))
            assert administrations[i] == str(adm)
            assert started[i] == str(cycles)
            assert days[i] == str(n_days)
    assert table.columns[0].startswith(f"{arms.labels[0]} (n\u00a0=\u00a0")


def test_sae_and_death_listings_hold_every_record(demo) -> None:
    db, snapshot = demo
    arms = Arms.of(snapshot.loaded.protocol)
    serious = _sql(db, "select count(*) from adverse_event where serious")[0][0]
    closed = sae_listing(snapshot.extract, arms)
    assert len(closed.rows) == serious
    assert closed.columns[0] == "Arm"
    assert sae_listing(snapshot.extract, None).columns[0] == "Term"  # the open report: no arm
    deaths = {
        u
        for (u,) in _sql(
            db,
            "select p.usubjid from disposition d join participant p on p.id = d.participant_id "
            "where d.status = 'DEATH' union select p.usubjid from clinical_event c join "
            "participant p on p.id = c.participant_id where upper(c.category) = 'DEATH'",
        )
    }
    assert {r.label for r in death_listing(snapshot.extract, arms).rows} == deaths


def test_interim_monitoring_puts_the_primary_z_against_the_boundary(demo) -> None:
    _, snapshot = demo
    protocol = snapshot.loaded.protocol
    datasets = derive_datasets(protocol, snapshot.extract)
    plan, _ = analyze_available(protocol, datasets)
    section = interim_section(protocol, plan, Arms.of(protocol))
    assert section.figure is not None and section.table is not None
    from scipy import stats

    for record in plan.primary:
        if record.method != "ancova" or record.p_value is None:
            continue
        arms = Arms.of(protocol)
        label = f"Efficacy: {arms.label(record.arm)} vs {arms.label(record.control)}"
        z = float(_row(section.table, label)[0])
        assert abs(abs(z) - stats.norm.isf(record.p_value / 2)) < 0.006
    analysed = max(sum(r.n.values()) for r in plan.primary if r.method == "ancova")
    assert 0 < section.information <= 1
    assert f"{section.information:.2f}" in section.table.caption
    assert analysed <= 24
    none = interim_section(protocol, None, Arms.of(protocol))
    assert none.figure is None and "No primary-endpoint comparison" in none.reason


def test_an_early_trial_says_what_it_cannot_show_yet(
    tmp_path: Path, enrol: Callable[..., Any]
) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'early.db'}")
    create_schema(engine)
    initialize_trial(engine, load_protocol(), seed=3, actor="test")
    trial = CaptureService.open(engine, today=lambda: dt.date(2006, 1, 10))
    for i in range(2):
        allocation = enrol(trial, "US01", f"US01-X{i}")
        labs = {"CD4": 600, "HIVRNA": 500}
        trial.record_visit(allocation.usubjid, "ENTRY", dt.date(2006, 1, 5), labs, "t")
    snapshot = take_snapshot(engine)
    engine.dispose()
    protocol = snapshot.loaded.protocol
    arms = Arms.of(protocol)
    quality = data_quality_table(protocol, snapshot.extract, snapshot.cutoff)
    assert not quality.note.startswith("No scheduled visit is due yet")  # ENTRY is due
    assert _row(quality, "All sites")[0] == "2"
    assert exposure_table(protocol, snapshot.extract, arms).note.startswith("No dose recorded yet")
    assert "No serious adverse event" in sae_listing(snapshot.extract, arms).note
    assert death_listing(snapshot.extract, arms).note == "No death reported by the data cut-off."
    assert snapshot.cutoff == dt.date(2006, 1, 5)
