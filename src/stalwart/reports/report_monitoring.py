"""What a DSMB looks at besides the results: accrual, data quality, protocol deviations,
exposure, and listings of serious adverse events and deaths, all from one snapshot's extract.

Each builder takes the :class:`~stalwart.analysis.datasets.source.StoreExtract` of the snapshot,
its data cut-off and the ``Arms`` to show (one pooled group in the open report: the arm of each
participant is replaced by it before anything is counted). A section the data cannot support yet
(no visit due, no dose given) says so in its table's note instead of showing empty numbers.

Protocol deviations come from capture's deviations log, read in the same snapshot (every
deviation the system detected or a user reported), plus the scheduled visits due and not received
that no one has logged as missed yet, so nothing is counted twice: :func:`protocol_deviations`.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from stalwart.analysis.datasets.source import StoreExtract, unrandomized_deviations
from stalwart.capture.deviations import DEVIATION_CATEGORIES, MISSED_VISIT
from stalwart.protocol.schema import Protocol
from stalwart.reports.report_tables import DASH, Arms, Row, Table, fmt_num, in_words, n_pct

__all__ = [
    "NOT_LOGGED",
    "accrual_by_site",
    "accrual_table",
    "data_quality_table",
    "death_listing",
    "deviation_listing",
    "deviation_table",
    "exposure_table",
    "protocol_deviations",
    "sae_listing",
    "scheduled_visits",
]


def _arm_of(extract: StoreExtract, arms: Arms) -> dict[str, str]:
    """Each participant's arm code, or the pooled group's when ``arms`` is pooled."""
    codes = extract.participants["arm"].astype(str)
    if arms.is_pooled:
        codes = codes.map(lambda _: arms.codes[0])
    return dict(zip(extract.participants["usubjid"], codes, strict=True))


def _day(value: object) -> dt.date:
    stamp = pd.Timestamp(str(value))
    return dt.date(stamp.year, stamp.month, stamp.day)


# -- accrual ---------------------------------------------------------------------------------------


def accrual_table(protocol: Protocol, extract: StoreExtract, cutoff: dt.date) -> Table:
    """Cumulative enrolment by quarter against the target: the protocol's sample size reached
    evenly over its accrual period."""
    study = protocol.study
    target = study.sample_size
    start = _day(study.accrual_start)
    end = _day(study.accrual_end)
    dates = sorted(_day(d) for d in extract.participants["randomization_date"])
    rows: list[Row] = []
    quarter = pd.Period(start, freq="Q")
    last = pd.Period(min(cutoff, max(end, dates[-1] if dates else end)), freq="Q")
    span = max((end - start).days, 1)
    while quarter <= last:
        closes = quarter.end_time.date()
        enrolled = sum(d <= closes for d in dates)
        planned = round(target * min(max((closes - start).days / span, 0.0), 1.0))
        rows.append(
            Row(
                f"{quarter.year} Q{quarter.quarter}",
                (str(enrolled), str(planned), n_pct(enrolled, target)),
            )
        )
        quarter += 1
    return Table(
        id="table-accrual",
        caption=f"Accrual: {len(dates)} of {target} participants randomized by {cutoff}",
        stub="Quarter",
        columns=("Randomized (cumulative)", "Target (cumulative)", "% of the sample size"),
        rows=tuple(rows),
        note=f"Target: {target} participants enrolled evenly from {start} to {end} (the "
        "protocol's accrual period).",
    )


def accrual_by_site(protocol: Protocol, extract: StoreExtract) -> Table:
    """Participants randomized at each of the protocol's sites, with the first and latest
    randomization dates."""
    by_site = extract.participants.groupby("site")["randomization_date"]
    rows = []
    for site in protocol.sites:
        if site.code not in by_site.groups:
            rows.append(Row(f"{site.code} ({site.country})", ("0", DASH, DASH)))
            continue
        group = by_site.get_group(site.code)
        first, latest = min(_day(d) for d in group), max(_day(d) for d in group)
        rows.append(
            Row(
                f"{site.code} ({site.country})",
                (str(len(group)), first.isoformat(), latest.isoformat()),
            )
        )
    return Table(
        id="table-accrual-site",
        caption="Accrual by site",
        stub="Site",
        columns=("Randomized", "First", "Latest"),
        rows=tuple(rows),
    )


# -- scheduled visits, data quality and deviations -------------------------------------------------


def scheduled_visits(protocol: Protocol, extract: StoreExtract, cutoff: dt.date) -> pd.DataFrame:
    """Every scheduled visit of every participant: due (its window closed by the cut-off, and
    the participant not off study before it opened), received, and held in its window.

    Columns ``usubjid, site, arm, visit, closes, due, received, in_window`` (``closes``: the
    date the visit's window closes).
    """
    people = extract.participants[["usubjid", "site", "arm", "randomization_date"]]
    schedule = pd.DataFrame(
        {
            "visit": [v.code for v in protocol.visits],
            "opens_day": [v.day - v.window_before for v in protocol.visits],
            "closes_day": [v.day + v.window_after for v in protocol.visits],
        }
    )
    grid = people.merge(schedule, how="cross")
    start = pd.to_datetime(grid["randomization_date"])
    opens = start + pd.to_timedelta(grid["opens_day"], unit="D")
    closes = start + pd.to_timedelta(grid["closes_day"], unit="D")
    stopped = extract.dispositions[extract.dispositions["status"].astype(str) != "COMPLETED"]
    off = pd.to_datetime(
        grid["usubjid"].map(dict(zip(stopped["usubjid"], stopped["disposition_date"], strict=True)))
    )
    held = (
        extract.labs.groupby(["usubjid", "visit_code"], as_index=False)["visit_date"].first()
        if len(extract.labs)
        else pd.DataFrame(columns=["usubjid", "visit_code", "visit_date"])
    )
    grid = grid.merge(
        held.rename(columns={"visit_code": "visit"}), on=["usubjid", "visit"], how="left"
    )
    date = pd.to_datetime(grid["visit_date"])
    received = date.notna()
    return pd.DataFrame(
        {
            "usubjid": grid["usubjid"],
            "site": grid["site"],
            "arm": grid["arm"].astype(str),
            "visit": grid["visit"],
            "closes": closes.dt.date,
            "due": (closes <= pd.Timestamp(cutoff)) & (off.isna() | (off >= opens)),
            "received": received,
            "in_window": received & (date >= opens) & (date <= closes),
        }
    )


def _query_cells(queries: pd.DataFrame | None, taken: dt.datetime) -> tuple[str, str]:
    """Open queries among ``queries`` and the age in days of the oldest (by its audit time)."""
    if queries is None:
        return DASH, DASH
    open_ = queries[queries["status"] == "OPEN"]
    raised = pd.to_datetime(open_["raised_at"], utc=True, errors="coerce").dropna()
    oldest = DASH if raised.empty else str(max((taken - raised.min()).days, 0))
    return str(len(open_)), oldest


def data_quality_table(
    protocol: Protocol,
    extract: StoreExtract,
    cutoff: dt.date,
    queries: pd.DataFrame | None = None,
    taken: dt.datetime | None = None,
    visits: pd.DataFrame | None = None,
) -> Table:
    """By site: scheduled visit forms due by the cut-off, received, overdue (due and missing),
    open data queries and the age of the oldest. ``queries`` has columns ``site, status,
    raised_at`` (None: not read); ages count to ``taken`` (the snapshot's time). ``visits`` is
    :func:`scheduled_visits` when the caller has it already."""
    when = taken or dt.datetime.now(dt.UTC)
    if visits is None:
        visits = scheduled_visits(protocol, extract, cutoff)
    due = visits[visits["due"]]
    rows = []
    for site in [s.code for s in protocol.sites]:
        at = due[due["site"] == site]
        received = int(at["received"].sum())
        of_site = None if queries is None else queries[queries["site"] == site]
        rows.append(
            Row(
                site,
                (
                    str(len(at)),
                    n_pct(received, len(at)) if len(at) else DASH,
                    str(len(at) - received),
                    *_query_cells(of_site, when),
                ),
            )
        )
    total = int(due["received"].sum())
    rows.append(
        Row(
            "All sites",
            (
                str(len(due)),
                n_pct(total, len(due)) if len(due) else DASH,
                str(len(due) - total),
                *_query_cells(queries, when),
            ),
        )
    )
    note = (
        "Due: scheduled visits (laboratory form) whose window closed by the data cut-off, of "
        "participants not off study before the window opened. Overdue: due and not received. "
        "Query age: days from the query's audit record to the snapshot."
    )
    if due.empty:
        note = "No scheduled visit is due yet by the data cut-off. " + note
    return Table(
        id="table-data-quality",
        caption=f"Data quality by site: visit forms due, received and overdue by {cutoff}",
        stub="Site",
        columns=("Forms due", "Received", "Overdue", "Open queries", "Oldest open (days)"),
        rows=tuple(rows),
        note=note,
    )


NOT_LOGGED = "NOT LOGGED"
"""``source`` of a scheduled visit due and not received that the log does not hold yet."""

_DEVIATION_FRAME = ("usubjid", "arm", "category", "date", "visit", "description", "source")


def protocol_deviations(
    protocol: Protocol,
    extract: StoreExtract,
    cutoff: dt.date,
    visits: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Protocol deviations of randomized participants, one row each: ``usubjid, arm, category,
    date, visit, description, source``.

    The extract's deviations log (read in the snapshot's transaction) holds every deviation
    detected or reported, whatever its category. To it are added the scheduled visits due by
    the cut-off and not received that are not logged as missed (``source`` NOT LOGGED): the log
    holds a missed visit only once the site records why, and a visit both logged and derived
    would count twice.
    Deviations logged before randomization (no USUBJID) have no arm and are left out (the
    table's note counts them). ``visits`` is :func:`scheduled_visits` when the caller has it.
    """
    if visits is None:
        visits = scheduled_visits(protocol, extract, cutoff)
    logged = extract.deviations
    arm_of = dict(
        zip(extract.participants["usubjid"], extract.participants["arm"].astype(str), strict=True)
    )
    of_people = logged[logged["USUBJID"].astype(str) != ""]
    log = pd.DataFrame(
        {
            "usubjid": of_people["USUBJID"].astype(str),
            "arm": of_people["USUBJID"].map(arm_of),
            "category": of_people["DVCAT"].astype(str),
            "date": [dt.date.fromisoformat(str(d)) for d in of_people["DVSTDTC"]],
            "visit": of_people["VISIT"].astype(str),
            "description": of_people["DVTERM"].astype(str),
            "source": of_people["SOURCE"].astype(str),
        }
    )
    missed_logged = {
        (u, v)
        for u, v, c in zip(log["usubjid"], log["visit"], log["category"], strict=True)
        if c == MISSED_VISIT
    }
    open_ = visits[visits["due"] & ~visits["received"]]
    not_logged = pd.Series(
        [
            (u, v) not in missed_logged
            for u, v in zip(open_["usubjid"], open_["visit"], strict=True)
        ],
        index=open_.index,
        dtype=bool,
    )
    open_ = open_[not_logged]
    derived = pd.DataFrame(
        {
            "usubjid": open_["usubjid"],
            "arm": open_["arm"].astype(str),
            "category": MISSED_VISIT,
            "date": open_["closes"],
            "visit": open_["visit"],
            "description": [
                f"{v} due by {d} and not received"
                for v, d in zip(open_["visit"], open_["closes"], strict=True)
            ],
            "source": NOT_LOGGED,
        }
    )
    frames = [f for f in (log, derived) if len(f)]
    if not frames:
        return pd.DataFrame(columns=list(_DEVIATION_FRAME))
    both = pd.concat(frames, ignore_index=True)[list(_DEVIATION_FRAME)]
    return both.sort_values(["usubjid", "date", "category"], kind="stable", ignore_index=True)


def deviation_table(
    protocol: Protocol,
    extract: StoreExtract,
    cutoff: dt.date,
    arms: Arms,
    visits: pd.DataFrame | None = None,
) -> Table:
    """Protocol deviations by category and arm (pooled in the open report): deviations, and
    participants with one (n (%)); missed visits not yet logged in their own indented row."""
    arm_of = _arm_of(extract, arms)
    deviations = protocol_deviations(protocol, extract, cutoff, visits)
    deviations = deviations.assign(arm=deviations["usubjid"].map(arm_of))
    sizes = pd.Series(list(arm_of.values())).value_counts()
    codes = list(arms.codes)

    def cells(of: pd.DataFrame) -> tuple[str, ...]:
        out = []
        for code in codes:
            at = of[of["arm"] == code]
            out.append(f"{len(at)} / {n_pct(at['usubjid'].nunique(), int(sizes.get(code, 0)))}")
        return tuple(out)

    extra = sorted(set(deviations["category"]) - set(DEVIATION_CATEGORIES))
    rows = [Row("All deviations", cells(deviations))]
    for category in (*DEVIATION_CATEGORIES, *extra):
        of = deviations[deviations["category"] == category]
        rows.append(Row(in_words(category), cells(of), 1))
        if category == MISSED_VISIT:
            rows.append(Row("of which not yet logged", cells(of[of["source"] == NOT_LOGGED]), 1))
    note = (
        "Each cell: deviations / participants with at least one (% of the group). From the "
        "deviations log (detected by the system or reported by sites and monitors), plus the "
        "scheduled visits due by the data cut-off and not received that the log does not hold "
        "as missed yet."
    )
    unrandomized = unrandomized_deviations(extract)
    if unrandomized:
        note += (
            f" Not shown: {unrandomized} deviation(s) logged for people screened and not "
            "randomized (no arm)."
        )
    return Table(
        id="table-deviations",
        caption=f"Protocol deviations by category, {arms.by}",
        stub="Category",
        columns=tuple(arms.labels),
        rows=tuple(rows),
        note=note,
    )


def deviation_listing(
    protocol: Protocol,
    extract: StoreExtract,
    cutoff: dt.date,
    arms: Arms,
    visits: pd.DataFrame | None = None,
) -> Table:
    """Listing of protocol deviations (closed report): participant, arm, date, category,
    visit, description and whether it is logged (detected, reported) or a missed visit not
    logged yet."""
    deviations = protocol_deviations(protocol, extract, cutoff, visits)
    rows = [
        Row(
            str(r.usubjid),
            (
                arms.label(str(r.arm)),
                r.date.isoformat(),
                in_words(str(r.category)),
                str(r.visit) or DASH,
                str(r.description),
                in_words(str(r.source)),
            ),
        )
        for r in deviations.itertuples(index=False)
    ]
    return Table(
        id="listing-deviations",
        caption="Listing: protocol deviations",
        stub="Participant",
        columns=("Arm", "Date", "Category", "Visit", "Description", "Source"),
        rows=tuple(rows),
        note="Source: detected by the system, reported by a site or monitor, or a scheduled "
        "visit due by the data cut-off and not received that the log does not hold yet."
        + ("" if rows else " No protocol deviation by the data cut-off."),
        text_columns=(0, 2, 3, 4, 5),
    )


# -- exposure --------------------------------------------------------------------------------------


def exposure_table(protocol: Protocol, extract: StoreExtract, arms: Arms) -> Table:
    """Study treatment given, by arm: IL-2 cycles started and completed (every planned
    administration given), administrations and dose, and days of peri-cycle ART."""
    arm_of = _arm_of(extract, arms)
    doses = extract.doses.assign(arm=extract.doses["usubjid"].map(arm_of))
    sizes = pd.Series(list(arm_of.values())).value_counts()
    rows: list[Row] = []
    for code, treatment in protocol.treatments.items():
        given = doses[doses["treatment"] == code]
        per_cycle = len(treatment.cycle_days) * treatment.administrations_per_day
        cycles = given.groupby(["usubjid", "cycle"])["administrations"].sum().reset_index()
        cycles["arm"] = cycles["usubjid"].map(arm_of)
        rows.append(Row(f"{treatment.name}", ("",) * len(arms.codes)))
        started, completed, administrations, amount, days, takers = [], [], [], [], [], []
        for arm in arms.codes:
            at = cycles[cycles["arm"] == arm]
            on = given[given["arm"] == arm]
            started.append(str(len(at)))
            completed.append(str(int((at["administrations"] >= per_cycle).sum())))
            administrations.append(str(int(on["administrations"].sum())))
            total = float((on["administrations"] * on["dose"]).sum())
            amount.append(f"{fmt_num(total, 0)} {treatment.dose_unit}" if len(on) else DASH)
            days.append(str(len(on.drop_duplicates(["usubjid", "dose_date"]))))
            takers.append(n_pct(on["usubjid"].nunique(), int(sizes.get(arm, 0))))
        rows += [
            Row("Participants treated", tuple(takers), 1),
            Row("Cycles started", tuple(started), 1),
            Row(f"Cycles completed (all {per_cycle} administrations)", tuple(completed), 1),
            Row("Days dosed", tuple(days), 1),
            Row("Administrations", tuple(administrations), 1),
            Row("Total dose", tuple(amount), 1),
        ]
    note = "From the dosing forms recorded by the data cut-off."
    if extract.doses.empty:
        note = "No dose recorded yet by the data cut-off. " + note
    return Table(
        id="table-exposure",
        caption=f"Exposure to study treatment, {arms.by}",
        stub="Treatment",
        columns=tuple(
            f"{label} (n\u00a0=\u00a0{int(sizes.get(code, 0))})" for code, label in arms.pairs()
        ),
        rows=tuple(rows),
        note=note,
    )


# -- listings --------------------------------------------------------------------------------------


def sae_listing(extract: StoreExtract, arms: Arms | None) -> Table:
    """Listing of serious adverse events: participant, (arm), term, grade, study day of onset,
    relatedness. ``arms`` None leaves the arm out (open report)."""
    ae = extract.adverse_events
    serious = ae[ae["serious"].astype(bool)] if len(ae) else ae
    start = dict(
        zip(
            extract.participants["usubjid"], extract.participants["randomization_date"], strict=True
        )
    )
    arm_of = dict(zip(extract.participants["usubjid"], extract.participants["arm"], strict=True))
    rows = []
    for r in serious.sort_values(["usubjid", "start_date"]).itertuples(index=False):
        day = (_day(r.start_date) - _day(start[r.usubjid])).days
        cells: tuple[str, ...] = (
            str(r.term),
            str(r.grade),
            str(day),
            in_words(str(r.related)),
        )
        if arms is not None:
            cells = (arms.label(str(arm_of.get(r.usubjid, DASH))), *cells)
        rows.append(Row(str(r.usubjid), cells))
    columns: tuple[str, ...] = ("Term", "Grade", "Study day", "Related")
    text: tuple[int, ...] = (0,)
    if arms is not None:
        columns, text = ("Arm", *columns), (0, 1)
    return Table(
        id="listing-sae",
        caption="Listing: serious adverse events",
        stub="Participant",
        columns=columns,
        rows=tuple(rows),
        note="Study day: days from randomization to onset. Related: the investigator's "
        "assessment of relatedness to study treatment."
        + ("" if rows else " No serious adverse event reported by the data cut-off."),
        text_columns=text,
    )


def death_listing(extract: StoreExtract, arms: Arms | None) -> Table:
    """Listing of deaths: participants whose disposition is death, or with a reported death
    event; the date and study day. ``arms`` None leaves the arm out (open report)."""
    start = dict(
        zip(
            extract.participants["usubjid"], extract.participants["randomization_date"], strict=True
        )
    )
    arm_of = dict(zip(extract.participants["usubjid"], extract.participants["arm"], strict=True))
    deaths: dict[str, tuple[dt.date, str]] = {}
    events = extract.clinical_events
    for r in events[events["category"].astype(str).str.upper() == "DEATH"].itertuples(index=False):
        deaths[str(r.usubjid)] = (_day(r.onset_date), f"Death event ({r.event_code})")
    for r in extract.dispositions.itertuples(index=False):
        if str(r.status) == "DEATH" and str(r.usubjid) not in deaths:
            deaths[str(r.usubjid)] = (
                _day(r.disposition_date),
                in_words("DEATH") + " (disposition)",
            )
    rows = []
    for usubjid, (date, source) in sorted(deaths.items()):
        cells: tuple[str, ...] = (date.isoformat(), str((date - _day(start[usubjid])).days), source)
        if arms is not None:
            cells = (arms.label(str(arm_of.get(usubjid, DASH))), *cells)
        rows.append(Row(usubjid, cells))
    columns: tuple[str, ...] = ("Date", "Study day", "Recorded as")
    text: tuple[int, ...] = (0, 2)
    if arms is not None:
        columns, text = ("Arm", *columns), (0, 1, 3)
    return Table(
        id="listing-deaths",
        caption="Listing: deaths",
        stub="Participant",
        columns=columns,
        rows=tuple(rows),
        note="" if rows else "No death reported by the data cut-off.",
        text_columns=text,
    )
