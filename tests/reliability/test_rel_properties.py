"""Properties, checked by Hypothesis over many inputs (bounded examples, no deadline).

What already exists elsewhere and is not repeated here: screening answers accepted or refused
naming the item (tests/protocol/test_eligibility.py), the packaged calendar's arithmetic
(tests/protocol/test_calendar.py), "an accepted lab value is in range" (tests/capture/
test_edit_checks.py) and random service writes on SQLite verifying with any byte of an audit
record's ``data`` found (tests/capture/test_audit.py). Added here:

* protocol files: any line of the packaged protocol dropped, renamed or given another value either
  loads (and then its calendars, allocation lists and eligibility work) or raises ProtocolError
  whose problems name the field changed; never another exception;
* edit checks: for any CRF item (range, assay limit, integer or not) and any entry, the value is
  accepted exactly when the range says so, both ways;
* calendars: for any visit schedule and follow-up design the loader accepts and any randomization
  date, the scheduled and follow-up visits' dates increase and their windows never overlap;
* the audit chain: the same random sequence of valid service writes verifies on SQLite and on
  PostgreSQL and gives the same data sha256; any single change to any column of any audit record
  or any audited data row (raw SQL) is found, naming that record or row.
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import math
import re
import tomllib
from collections.abc import Callable, Iterator
from typing import Any

import pydantic
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, assume, given, reject, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from screening_answers import eligible_answers_of
from stalwart.capture.ae_form import AeDetails
from stalwart.capture.audit import data_sha256, verify_audit
from stalwart.capture.db import open_engine
from stalwart.capture.edit_checks import LabValue, check_lab_value, parse_lab_value
from stalwart.capture.enrolment import Allocation
from stalwart.capture.service import CaptureService
from stalwart.capture.tables import AUDITED_TABLES, AuditRecord
from stalwart.errors import ProtocolError, ValidationError
from stalwart.protocol.calendar import participant_calendar
from stalwart.protocol.eligibility import evaluate_eligibility
from stalwart.protocol.load import LoadedProtocol, default_protocol_path, parse_protocol
from stalwart.protocol.schema import FormItem, Protocol
from stalwart.randomization.allocation import allocation_lists, concealed_draws

DAY = dt.timedelta(days=1)
TODAY = dt.date(2009, 3, 1)
Enrol = Callable[..., Allocation]
TEXT = default_protocol_path().read_text(encoding="utf-8")
DATA = tomllib.loads(TEXT)


# -- protocol files ----------------------------------------------------------------
def _sites() -> list[tuple[int, tuple[str | int, ...], str]]:
    """Every single-line ``key = value`` of the packaged file: (line number, path, key)."""
    sites = []
    header: tuple[str | int, ...] = ()
    counters: dict[tuple[str, ...], int] = {}
    for n, line in enumerate(TEXT.splitlines()):
        table = re.match(r"^\[\[([\w.]+)\]\]", line)
        plain = re.match(r"^\[([\w.]+)\]", line)
        if table:
            name = tuple(table.group(1).split("."))
            counters[name] = counters.get(name, -1) + 1
            # an inner array of tables restarts for each parent: count within the parent
            parent = name[:-1]
            for other in list(counters):
                if len(other) > len(name) and other[: len(name)] == name:
                    del counters[other]
            header = (*_resolve(parent, counters), name[-1], counters[name])
            continue
        if plain:
            header = _resolve(tuple(plain.group(1).split(".")), counters)
            continue
        key = re.match(r"^([A-Za-z_][\w]*)\s*=", line)
        if key is None:
            continue
        try:
            tomllib.loads(line)
        except tomllib.TOMLDecodeError:
            continue  # the first line of a multi-line value
        sites.append((n, (*header, key.group(1)), key.group(1)))
    return sites


def _resolve(name: tuple[str, ...], counters: dict[tuple[str, ...], int]) -> tuple[str | int, ...]:
    """A dotted table name as a path, with the index of each enclosing array of tables."""
    path: list[str | int] = []
    for i, part in enumerate(name):
        path.append(part)
        if name[: i + 1] in counters and i + 1 < len(name):
            path.append(counters[name[: i + 1]])
    return tuple(path)


SITES = _sites()
LITERALS = [
    '"x"',
    '""',
    '"' + "x" * 300 + '"',
    "0",
    "-1",
    "1e300",
    "3.5",
    "-0.5",
    "true",
    "false",
    "[]",
    '["a", 1]',
    "{}",
    "{ x = 1 }",
    "1979-05-27",
    "nan",
    "inf",
]


def _value_at(path: tuple[str | int, ...]) -> Any:
    node: Any = DATA
    for step in path:
        node = node[step]
    return node


def _literal_type(text: str) -> type:
    value = tomllib.loads(f"v = {text}")["v"]
    return bool if isinstance(value, bool) else type(value)


def _problem_location(problem: str) -> tuple[str, ...]:
    """The dotted location a problem names (a file-level check names it in its message)."""
    loc, _, rest = problem.partition(": ")
    if loc == "(file)":
        loc = rest.partition(":")[0]
    return tuple(loc.split("."))


def _related(loc: tuple[str, ...], path: tuple[str | int, ...]) -> bool:
    """One is a prefix of the other: the problem is at the field, inside it, or around it."""
    steps = tuple(str(p) for p in path)
    n = min(len(loc), len(steps))
    return n > 0 and loc[:n] == steps[:n]


def _still_usable(loaded: LoadedProtocol) -> None:
    """A protocol the loader accepts works downstream: calendars, lists, eligibility."""
    p = loaded.protocol
    for arm in p.arm_codes:
        cal = participant_calendar(p, arm, p.study.accrual_start)
        assert [v.target for v in cal.visits] == sorted(v.target for v in cal.visits)
    allocation_lists(p, 1)
    concealed_draws(p, 1)
    answers = {i.name: (i.choices[0] if i.choices else i.min or 0) for i in p.screening_items}
    answers |= {i.name: True for i in p.screening_items if i.type == "boolean"}
    evaluate_eligibility(p, answers)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(
    site=st.sampled_from(SITES),
    how=st.sampled_from(["drop", "rename", "alter"]),
    literal=st.sampled_from(LITERALS),
)
def test_a_mutated_protocol_loads_or_names_the_field(
    site: tuple[int, tuple[str | int, ...], str], how: str, literal: str
) -> None:
    n, path, key = site
    lines = TEXT.splitlines()
    line = lines[n]
    if how == "drop":
        lines[n] = ""
        renamed: tuple[str | int, ...] | None = None
    elif how == "rename":
        lines[n] = line.replace(key, f"{key}_typo", 1)
        renamed = (*path[:-1], f"{key}_typo")
    else:
        lines[n] = f"{key} = {literal}"
        renamed = None
    try:
        loaded = parse_protocol("\n".join(lines), "mutated")
    except ProtocolError as exc:
        assert exc.problems and all(": " in p for p in exc.problems), exc.problems
        if exc.problems[0].startswith("not valid TOML"):
            return
        locations = [_problem_location(p) for p in exc.problems]
        old = _value_at(path)
        type_broken = how == "alter" and not (
            _literal_type(literal) is type(old)
            or (isinstance(old, float) and _literal_type(literal) is int)
        )
        if how in ("drop", "rename") or type_broken:
            targets = [path] + ([renamed] if renamed else [])
            assert any(_related(loc, t) for loc in locations for t in targets), (
                how,
                path,
                literal,
                exc.problems,
            )
        return
    _still_usable(loaded)


# -- edit checks ----------------------------------------------------------------
@st.composite
def crf_items(draw: st.DrawFn) -> FormItem:
    lo = draw(st.one_of(st.none(), st.floats(-1e6, 1e6)))
    hi = draw(st.one_of(st.none(), st.floats(-1e6, 1e6)))
    limit = draw(st.one_of(st.none(), st.floats(1e-3, 1e6)))
    kind = draw(st.sampled_from(["number", "integer"]))
    try:
        return FormItem(name="X", label="X", type=kind, unit="u", min=lo, max=hi, lower_limit=limit)
    except pydantic.ValidationError:
        assume(False)
        raise AssertionError("unreachable") from None


entries = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**7), 10**7),
    st.floats(-1e6, 1e6).map(lambda v: f"{v}"),
    st.floats(1e-3, 1e6).map(lambda v: f"<{v:g}"),
    st.text(max_size=6),
)


@settings(max_examples=500, deadline=None)
@given(item=crf_items(), raw=entries)
def test_a_crf_value_is_accepted_exactly_when_its_range_allows(item: FormItem, raw: Any) -> None:
    try:
        entered = parse_lab_value(raw, "LAB.X")
    except ValidationError as exc:
        assert exc.field == "LAB.X"
        assert isinstance(raw, str)  # numbers always parse; only text can fail to
        return
    if entered.below_limit:
        ok = item.lower_limit is not None and (
            entered.limit is None or entered.limit <= item.lower_limit
        )
    else:
        v = entered.value
        assert v is not None
        lo = -math.inf if item.min is None else item.min
        hi = math.inf if item.max is None else item.max
        ok = (
            math.isfinite(v)
            and lo <= v <= hi
            and (item.lower_limit is None or v >= item.lower_limit)
            and (item.type != "integer" or v == int(v))
        )
    try:
        value, below, limit = check_lab_value(item, entered)
    except ValidationError as exc:
        assert not ok, f"{raw!r} refused by {item}: {exc}"
        assert exc.field == "LAB.X" and exc.message
        return
    assert ok, f"{raw!r} accepted by {item}"
    if below:
        assert value is None and limit == item.lower_limit
    else:
        assert value == entered.value and limit is None


def test_the_packaged_items_agree_with_their_ranges_at_the_edges(packaged: LoadedProtocol) -> None:
    """The boundaries themselves, which random floats rarely hit."""
    for item in packaged.protocol.forms.LAB.items:
        assert item.min is not None and item.max is not None
        lowest = item.min if item.lower_limit is None else item.lower_limit
        for v in (lowest, item.max):
            assert check_lab_value(item, LabValue(v)) == (v, False, None)
        for v in (math.nextafter(lowest, -math.inf), math.nextafter(item.max, math.inf)):
            with pytest.raises(ValidationError):
                check_lab_value(item, LabValue(v))


# -- calendars ----------------------------------------------------------------
@st.composite
def schedules(draw: st.DrawFn) -> Protocol:
    """The packaged protocol with another visit schedule and follow-up design."""
    data = copy.deepcopy(DATA)
    # windows first, then each gap from the windows either side of it: mostly schedules the
    # loader accepts (a slack below 0 makes an overlapping one, which it must refuse)
    day, after = 0, 0
    for i, visit in enumerate(data["visits"]):
        before = 0 if i == 0 else draw(st.integers(0, 20))
        if i:
            day += after + before + 1 + draw(st.integers(-2, 40))
        after = draw(st.integers(0, 20))
        visit.update(day=day, window_before=before, window_after=after)
    weeks = draw(st.integers(1, 20))
    data["follow_up"]["extended_visit_interval_weeks"] = weeks
    data["follow_up"]["window_days"] = draw(st.integers(0, (7 * weeks) // 2 + 1))
    try:
        return Protocol.model_validate(data)
    except pydantic.ValidationError:
        assume(False)
        raise AssertionError("unreachable") from None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(
    protocol=schedules(),
    rand=st.dates(dt.date(2005, 12, 1), dt.date(2009, 2, 28)),
    arm=st.sampled_from(["NOTHER", "IL2", "IL2ART"]),
)
def test_visit_windows_never_overlap_and_dates_increase(
    protocol: Protocol, rand: dt.date, arm: str
) -> None:
    cal = participant_calendar(protocol, arm, rand)
    for v in cal.visits:
        assert v.earliest <= v.target <= v.latest
        assert v.target == rand + v.study_day * DAY
    timeline = [v for v in cal.visits if v.kind in ("scheduled", "extended")]
    assert [v.code for v in timeline][: len(protocol.visits)] == [v.code for v in protocol.visits]
    for earlier, later in itertools.pairwise(timeline):
        assert earlier.target < later.target
        assert earlier.latest < later.earliest, f"{earlier} overlaps {later}"
    assert all(v.target <= protocol.study.follow_up_end for v in timeline if v.kind == "extended")
    dose_days = [(d.date, d.study_day) for d in cal.doses]
    assert dose_days == sorted(dose_days)
    assert len({v.code for v in cal.visits}) == len(cal.visits)


# -- the audit chain ----------------------------------------------------------------
writes = st.lists(
    st.one_of(
        st.tuples(st.just("enrol"), st.sampled_from(["US01", "GB01"]), st.floats(300, 5000)),
        st.tuples(st.just("screen_out"), st.sampled_from(["US01", "GB01"]), st.integers(0, 17)),
        st.tuples(
            st.just("visit"),
            st.integers(0, 9),
            st.floats(0, 5000),
            st.one_of(st.just("<50"), st.floats(50, 1e8)),
        ),
        st.tuples(
            st.just("ae"),
            st.integers(0, 9),
            st.sampled_from(["Fever", "Rash", "Other"]),
            st.integers(1, 5),
            st.integers(0, 300),
        ),
        st.tuples(st.just("correct"), st.integers(0, 9), st.floats(0, 5000)),
    ),
    min_size=1,
    max_size=10,
)


def _play(svc: CaptureService, steps: list[tuple[Any, ...]], enrol: Enrol) -> None:
    """Valid writes only: each step is skipped when it would not be valid."""
    people: list[tuple[Allocation, int]] = []  # allocation, visits recorded
    for i, step in enumerate(steps):
        kind = step[0]
        if kind == "enrol":
            rand = dt.date(2006, 1, 5) + i * DAY
            a = enrol(svc, step[1], f"P{i:03d}", screened=rand - DAY, randomized=rand, cd4=step[2])
            people.append((a, 0))
        elif kind == "screen_out":
            under_age = eligible_answers_of(age=step[2])
            svc.screen(step[1], f"X{i:03d}", dt.date(2006, 1, 2), under_age, "n")
        elif people:
            k = step[1] % len(people)
            a, done = people[k]
            if kind == "visit" and done < len(svc.protocol.visits):
                planned = svc.protocol.visits[done]
                day = a.randomization_date + planned.day * DAY
                svc.record_visit(
                    a.usubjid, planned.code, day, {"CD4": step[2], "HIVRNA": step[3]}, "n"
                )
                people[k] = (a, done + 1)
            elif kind == "ae":
                start = a.randomization_date + step[4] * DAY
                svc.report_adverse_event(
                    a.usubjid,
                    step[2],
                    step[3],
                    start,
                    None,
                    "UNLIKELY",
                    False,
                    "n",
                    AeDetails("fever", "RECOVERED/RESOLVED", "DOSE NOT CHANGED"),
                )
            elif kind == "correct" and done:
                code = svc.protocol.visits[0].code
                labs = {"CD4": step[2], "HIVRNA": 400}
                try:
                    v = svc.records.visit(a.usubjid, code, "n").version
                    svc.correct_visit(
                        a.usubjid, code, a.randomization_date, labs, "typo", "n", version=v
                    )
                except ValidationError as exc:
                    assert exc.field == "visit"  # nothing changed: not a write


@pytest.mark.postgres
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])  # fmt: skip
@given(steps=writes)
def test_the_same_writes_verify_and_hash_alike_on_both_backends(
    databases: Any, packaged: LoadedProtocol, enrol: Enrol, steps: list[tuple[Any, ...]]
) -> None:
    digests = []
    for backend in ("sqlite", "postgresql"):
        url = databases.new(backend, packaged)
        engine = open_engine(url)
        try:
            _play(CaptureService.open(engine, today=lambda: TODAY), steps, enrol)
            report = verify_audit(engine)
            assert report.ok, report.finding
            digests.append((data_sha256(engine), report.records, report.rows))
        finally:
            engine.dispose()
            databases.drop(url)
    assert digests[0] == digests[1]


# any single change, to any column of any audit record or audited row, is found
def _unlock(engine: Engine) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS audit_record_no_update")
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS audit_record_no_delete")
        else:
            conn.exec_driver_sql(
                "ALTER TABLE audit_record DISABLE TRIGGER audit_record_append_only"
            )


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def small_trial(
    request: pytest.FixtureRequest, databases: Any, packaged: LoadedProtocol, enrol: Enrol
) -> Iterator[Engine]:
    """A small trial (audit guard removed), restored after each change by the test itself."""
    url = databases.new(request.param, packaged)
    engine = open_engine(url)
    svc = CaptureService.open(engine, today=lambda: TODAY)
    _play(
        svc,
        [("enrol", "US01", 510.5), ("enrol", "GB01", 420.0), ("visit", 0, 510.0, "<50"),
         ("visit", 1, 0.1 + 0.2, 123456.7), ("ae", 0, "Rash", 3, 20), ("correct", 0, 99.5)],
        enrol,
    )  # fmt: skip
    _unlock(engine)
    assert verify_audit(engine).ok
    yield engine
    engine.dispose()
    databases.drop(url)


def _changed(value: Any, pos: int, char: str) -> Any:
    """``value`` with one change: a character of a text, or a number, a date, a flag nudged."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1 + pos % 7
    if isinstance(value, float):
        return value + 1.0 if math.isfinite(value) else 0.0
    if isinstance(value, dt.datetime | dt.date):
        return value + DAY
    if isinstance(value, str):
        i = pos % len(value) if value else 0
        if not value:
            return char
        assume(value[i] != char)
        return value[:i] + char + value[i + 1 :]
    if isinstance(value, dict | list):
        return {"changed": True} if value != {"changed": True} else {}
    raise AssertionError(type(value))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])  # fmt: skip
@given(data=st.data())
def test_any_single_change_is_found_naming_the_record(
    small_trial: Engine, data: st.DataObject
) -> None:
    engine = small_trial
    audited = {t.__tablename__: t.__table__ for t in AUDITED_TABLES}
    target = data.draw(st.sampled_from(["audit_record", *sorted(audited)]), label="table")
    table = AuditRecord.__table__ if target == "audit_record" else audited[target]
    with engine.connect() as conn:
        rows = [
            dict(r._mapping) for r in conn.execute(sa.select(table).order_by(*table.primary_key))
        ]
    assume(rows)
    row = data.draw(st.sampled_from(rows), label="row")
    pk = table.primary_key.columns.values()[0].name
    columns = [c.name for c in table.columns if c.name != pk and row[c.name] is not None]
    if target == "audit_record":
        columns = [c for c in columns if c != "sequence"]
    column = data.draw(st.sampled_from(columns), label="column")
    new = _changed(
        row[column],
        data.draw(st.integers(0, 10_000), label="position"),
        data.draw(st.characters(min_codepoint=32, max_codepoint=126), label="character"),
    )
    column_obj = table.c[column]
    key = table.c[pk] == row[pk]
    try:
        with engine.begin() as conn:
            conn.execute(sa.update(table).where(key).values({column_obj: new}))
    except (sa.exc.IntegrityError, sa.exc.DataError):
        reject()  # the database itself refused the change (a foreign key, a unique key)
    try:
        finding = verify_audit(engine).finding
    finally:
        with engine.begin() as conn:
            conn.execute(sa.update(table).where(key).values({column_obj: row[column]}))
    assert verify_audit(engine).ok
    assert finding is not None, (target, column, row[column], new)
    if target == "audit_record":
        assert finding.sequence == row["sequence"], (column, finding)
    else:
        assert (finding.table, finding.record_id) == (target, row[pk]), (column, finding)
