"""The bad-input catalogue of the API: for every request body, every field, the invalid values.

``BODIES`` has one ``Body`` per request-body schema of the OpenAPI document: the operation that
takes it, the actor who sends it, a valid body (``base``, over a ``World``), and ``Case``s, each
one field of that body made invalid in one way (``kind``). ``required_kinds`` derives from the
OpenAPI schema of a field the kinds it must have (wrong type always; missing when required; empty
and too long for bounded strings; a bad date for dates; an unknown code for enums; below the
minimum for bounded integers) and, for the free-form ``answers`` and ``labs``, from the protocol's
screening items and LAB items (each missing, of the wrong type, out of range, negative, ...): the
test module fails when a body, a field or a kind has no case, so a new schema cannot slip in
unchecked.

``build_world`` makes the app over a trial database with what the bodies need: a participant at a
site (IL-2 with ART, so it has dose days) with saved visits, a clinical event and an open query;
a screened person awaiting consent and one consented awaiting randomization; one user per actor.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from screening_answers import eligible_answers_of
from stalwart.capture.db import open_engine
from stalwart.capture.service import CaptureService
from stalwart.protocol.schema import FormItem, Protocol, ScreeningItem
from stalwart.web.app import create_app

PASSWORD = "a long catalogue password"
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING"})()
"""A case value: the field is left out of the body."""

REFUSED = frozenset({400, 404, 409, 422})
"""The statuses of a refused body (401, 403 would mean the wrong actor, not the bad field)."""

ACTORS: dict[str, tuple[str, bool]] = {
    "admin": ("admin", False),
    "coordinator": ("site_coordinator", True),
    "investigator": ("investigator", True),
    "monitor": ("monitor", False),
    "reviewer": ("endpoint_reviewer", False),
    "manager": ("data_manager", False),
}
"""username -> (role, bound to the world's site)."""


@dataclass
class World:
    """The app over one trial database, its tokens, and the ids the bodies refer to."""

    engine: Engine
    service: CaptureService
    app: FastAPI
    client: TestClient
    site: str
    other_site: str
    usubjid: str
    awaiting: str  # eligible, screened, no consent yet
    consented: str  # eligible, consented, not randomized
    event: int
    query: int
    wk04: int
    rand: dt.date
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    deviation: int = 0  # a reported protocol deviation, awaiting review
    lock: int = 0  # a lock in force that covers none of the data (cut-off before it)

    def day(self, offset: int) -> str:
        """The ISO date ``offset`` days after the participant's randomization."""
        return (self.rand + dt.timedelta(days=offset)).isoformat()


@contextmanager
def build_world(
    url: str, today: dt.date, enrol: Callable[..., Any], eligible: Callable[..., Any]
) -> Iterator[World]:
    """The app over the trial database at ``url`` (the packaged protocol, set up), populated."""
    engine = open_engine(url)
    try:
        service = CaptureService.open(engine, today=lambda: today)
        p = enrol(service, arm="IL2ART")
        site = p.usubjid.split("-")[1]
        rand = p.randomization_date
        d = dt.timedelta(days=1)
        service.record_visit(p.usubjid, "ENTRY", rand, {"CD4": 500, "HIVRNA": 400}, "setup")
        wk04 = service.record_visit(
            p.usubjid, "WK04", rand + 28 * d, {"CD4": 520, "CD4PCT": 25, "HIVRNA": 400}, "setup"
        )
        event = service.report_clinical_event(p.usubjid, "TB", rand + 36 * d, "setup")
        query = service.queries.raise_query(p.usubjid, "CD4", "please confirm", "setup")
        deviation = service.deviations.report(p.usubjid, "OTHER", "late draw", rand + d, "setup")
        screened = rand - 3 * d
        awaiting, consented = f"{site}-AWAIT", f"{site}-CONS"
        for number in (awaiting, consented):
            assert service.screen(site, number, screened, eligible(), "setup").eligible
        service.record_consent(consented, screened + d, "setup")
        other = next(s.code for s in service.protocol.sites if s.code != site)
        hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
        app = create_app(engine, today=lambda: today, hasher=hasher)
        with TestClient(app) as client:
            world = World(
                engine,
                service,
                app,
                client,
                site,
                other,
                p.usubjid,
                awaiting,
                consented,
                event,
                query,
                wk04,
                rand,
            )
            world.deviation = deviation
            # a lock in force up to a day no case's date reaches: it refuses none of them
            world.lock = service.locks.lock(
                "participant", "harmless", "setup", usubjid=p.usubjid, cutoff=dt.date(1900, 1, 2)
            )
            for username, (role, bound) in ACTORS.items():
                app.state.users.add_user(
                    username, PASSWORD, role, "setup", site=site if bound else None
                )
                r = client.post("/api/token", json={"username": username, "password": PASSWORD})
                assert r.status_code == 201, r.text
                world.headers[username] = {"Authorization": f"Bearer {r.json()['access_token']}"}
            yield world
    finally:
        engine.dispose()


# -- cases -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """One field of a body made invalid: ``value`` (``MISSING``: left out) at ``path``.

    ``names``: what the error must name, the field's last segment unless given (the service
    names some fields its own way, e.g. ``dose_date`` for ``days.0.date``). ``status``: an exact
    status, else any of ``REFUSED``. ``extra``: other fields set (or left out) with it.
    """

    path: str
    kind: str
    value: Any
    names: str | None = None
    status: int | None = None
    extra: tuple[tuple[str, Any], ...] = ()

    @property
    def expected_name(self) -> str:
        return self.names or self.path.split(".")[-1]

    def apply(self, base: dict[str, Any]) -> dict[str, Any]:
        body = copy.deepcopy(base)
        for path, value in ((self.path, self.value), *self.extra):
            *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
            node: Any = body
            for p in parents:
                node = node[p]
            if value is MISSING:
                del node[last]
            else:
                node[last] = value
        return body


def text(path: str, max_length: int, *, required: bool = True, strips: bool = True) -> list[Case]:
    """Missing, empty, blank (when stripped), too long, not a string, a character no format
    can carry (NUL first: PostgreSQL's subset runs the first case of each kind)."""
    cases = [
        Case(path, "control_char", "ok\x00"),
        Case(path, "control_char", "ok\x07"),
        Case(path, "control_char", "\x1b[31mred"),
        Case(path, "control_char", "a\x85b"),
        Case(path, "control_char", "no\ufffe"),
        Case(path, "empty", ""),
        Case(path, "too_long", "x" * (max_length + 1)),
        Case(path, "wrong_type", 12345),
        Case(path, "wrong_type", ["a list"]),
    ]
    if strips:
        cases.append(Case(path, "empty", "   "))
    if required:
        cases.append(Case(path, "missing", MISSING))
    return cases


def date(path: str, *, required: bool = True, names: str | None = None) -> list[Case]:
    """Missing, impossible and malformed dates, empty, not a string."""
    cases = [
        Case(path, "bad_date", "2006-02-30", names),
        Case(path, "bad_date", "03/02/2006", names),
        Case(path, "bad_date", "yesterday", names),
        Case(path, "empty", "", names),
        Case(path, "wrong_type", ["2006-01-05"], names),
        Case(path, "wrong_type", True, names),
    ]
    if required:
        cases.append(Case(path, "missing", MISSING, names))
    return cases


def count(path: str, *, required: bool = True, names: str | None = None) -> list[Case]:
    """Missing, not a number, true/false, not whole."""
    cases = [
        Case(path, "wrong_type", "two", names),
        Case(path, "wrong_type", True, names),
        Case(path, "wrong_type", [1], names),
        Case(path, "not_whole", 1.5, names),
    ]
    if required:
        cases.append(Case(path, "missing", MISSING, names))
    return cases


def _screening_item_cases(item: ScreeningItem) -> list[Case]:
    path = f"answers.{item.name}"
    cases = [Case(path, "wrong_type", [1])]
    if item.required:  # an optional item (race, ethnicity) may be left out
        cases.append(Case(path, "missing", MISSING))
    if item.type in ("integer", "number"):
        top = item.max if item.max is not None else 1e9
        cases += [
            Case(path, "wrong_type", "abc"),
            Case(path, "wrong_type", True),
            Case(path, "out_of_range", top * 10),
            Case(path, "negative", -1),
            Case(path, "empty", ""),
        ]
        if item.type == "integer":
            cases.append(Case(path, "not_whole", 35.5))
    elif item.type == "choice":
        cases += [
            Case(path, "unknown_code", "X"),
            Case(path, "empty", ""),
            Case(path, "wrong_type", 1),
        ]
    else:  # boolean
        cases += [Case(path, "wrong_type", "yes"), Case(path, "wrong_type", 1)]
    return cases


def _lab_item_cases(item: FormItem, *, saved: bool) -> list[Case]:
    path = f"labs.{item.name}"
    top = item.max if item.max is not None else 1e9
    cases = [
        Case(path, "wrong_type", "abc"),
        Case(path, "wrong_type", True),
        Case(path, "wrong_type", [500]),
        Case(path, "out_of_range", top * 10),
        Case(path, "out_of_range", "1e400"),
        Case(path, "not_a_number", "nan"),
        Case(path, "negative", -1),
        Case(path, "empty", ""),
    ]
    if item.required or saved:  # a saved result can be corrected, not removed
        cases.append(Case(path, "missing", MISSING))
    if item.lower_limit is not None:
        cases += [
            Case(path, "below_limit", item.lower_limit / 5),
            Case(path, "below_limit", f"<{item.lower_limit * 8:g}"),
        ]
    else:
        cases.append(Case(path, "below_limit", "<50"))
    return cases


def _labs_cases(protocol: Protocol, *, saved: set[str]) -> list[Case]:
    cases = [
        Case("labs", "missing", MISSING),
        Case("labs", "wrong_type", [500, 400]),
        Case("labs.FERRITIN", "unknown_item", 120, names="FERRITIN"),
    ]
    for item in protocol.forms.LAB.items:
        cases += _lab_item_cases(item, saved=item.name in saved)
    return cases


# -- bodies ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Body:
    """A request-body schema: where it is sent, by whom, a valid body, and its bad cases."""

    schema: str
    method: str
    operation: str  # the OpenAPI path
    path: str  # the URL sent, formatted with the World's attributes
    actor: str | None
    base: Callable[[World], dict[str, Any]]
    cases: Callable[[Protocol], list[Case]]
    ok: int = 201

    def url(self, world: World) -> str:
        return self.path.format(**vars(world))


def _token(w: World) -> dict[str, Any]:
    return {"username": "coordinator", "password": PASSWORD}


def _user(w: World) -> dict[str, Any]:
    return {
        "username": "new.user",
        "password": "a long new password",
        "role": "site_coordinator",
        "site": w.site,
        "full_name": "New User",
    }


def _screening(w: World) -> dict[str, Any]:
    answers = eligible_answers_of()
    return {
        "site": w.site,
        "screening_number": f"{w.site}-NEW",
        "screening_date": w.day(-3),
        "answers": answers,
    }


def _screening_cases(protocol: Protocol) -> list[Case]:
    cases = [
        *text("site", 40),
        # a site-bound coordinator may enter data at their own site only: any other, known or
        # not, is refused as a site they may not use
        Case("site", "unknown_code", "ZZ01", status=403),
        Case("site", "other_site", "{other_site}", status=403),
        *text("screening_number", 40, required=False),  # left out: the next number is given
        Case("screening_number", "duplicate", "{awaiting}", status=409),
        *date("screening_date"),
        Case("screening_date", "future", "2010-01-04"),
        *date("consent_date", required=False),
        Case("consent_date", "future", "2010-01-04"),
        Case("answers", "missing", MISSING),
        Case("answers", "wrong_type", ["age", 35]),
        Case("answers.shoe_size", "unknown_item", 42, names="shoe_size"),
    ]
    for item in protocol.screening_items:
        cases += _screening_item_cases(item)
    return cases


def _visit(w: World) -> dict[str, Any]:
    return {"visit_date": w.day(56), "labs": {"CD4": 500, "CD4PCT": 25, "HIVRNA": 400}}


def _visit_cases(protocol: Protocol) -> list[Case]:
    return [
        *date("visit_date"),
        Case("visit_date", "future", "2010-01-04"),
        # outside its window a visit needs the reason: without it the reason is what is asked
        Case("visit_date", "out_of_window", "2006-04-20", names="deviation_reason"),
        *_labs_cases(protocol, saved=set()),
        *text("deviation_reason", 2000, required=False),
    ]


def _unscheduled(w: World) -> dict[str, Any]:
    return {"visit_date": w.day(20), "labs": {"CD4": 500, "HIVRNA": 400}, "reason": "fever"}


def _unscheduled_cases(protocol: Protocol) -> list[Case]:
    """Any results may be left out, but not all of them."""
    cases = [
        *date("visit_date"),
        Case("visit_date", "future", "2010-01-04"),
        Case("visit_date", "before_randomization", "2005-12-01"),
        *text("reason", 2000),
        Case("labs", "missing", MISSING),
        Case("labs", "wrong_type", [500, 400]),
        Case("labs", "empty", {}),
        Case("labs.FERRITIN", "unknown_item", 120, names="FERRITIN"),
    ]
    given = ("CD4", "HIVRNA")  # the base's results: all of them left out is refused
    for item in protocol.forms.LAB.items:
        cases += [c for c in _lab_item_cases(item, saved=False) if c.kind != "missing"]
        if item.required:
            rest = tuple((f"labs.{n}", MISSING) for n in given if n != item.name)
            cases.append(Case(f"labs.{item.name}", "missing", MISSING, "labs", None, rest))
    return cases


def _wk04_version(w: World) -> int:
    """The saved WK04 visit's version now, as a correction must send it."""
    return w.service.records.visit(w.usubjid, "WK04", "setup").version


def _correction(w: World) -> dict[str, Any]:
    return {
        "visit_date": w.day(28),
        "labs": {"CD4": 530, "CD4PCT": 25, "HIVRNA": 400},
        "reason": "transcription error",
        "version": _wk04_version(w),
    }


def _correction_cases(protocol: Protocol) -> list[Case]:
    return [
        *date("visit_date"),
        Case("visit_date", "future", "2010-01-04"),
        # a correction out of the window is saved (the reason for change is its reason)
        *_labs_cases(protocol, saved={"CD4", "CD4PCT", "HIVRNA"}),
        *text("reason", 2000),
        Case("version", "wrong_type", "v1"),
        Case("version", "wrong_type", True),
        Case("version", "wrong_type", [1]),
        Case("version", "negative", -1),
        Case("version", "too_large", 2**31),
        Case("version", "missing", MISSING, status=409),
        Case("version", "stale", 1, status=409),
    ]


def _doses(w: World) -> dict[str, Any]:
    return {"treatment": "IL2", "cycle": 1, "days": [{"date": w.day(7), "administrations": 2}]}


def _doses_cases(protocol: Protocol) -> list[Case]:
    return [
        *text("treatment", 40),
        Case("treatment", "unknown_code", "IL7"),
        *count("cycle"),
        Case("cycle", "below_minimum", 0),
        Case("cycle", "negative", -1),
        Case("cycle", "out_of_range", 4, names="treatment"),  # "has no IL2 cycle 4"
        Case("days", "missing", MISSING),
        Case("days", "empty", []),
        Case("days", "wrong_type", "2006-01-12"),
        Case("days", "duplicate", [{"date": "{day7}", "administrations": 2}] * 2, "dose_date"),
        *date("days.0.date", names="date"),
        # off the dosing calendar without a reason: refused, asking for the reason
        Case("days.0.date", "not_a_dose_day", "2006-01-20", names="deviation_reason"),
        *text("deviation_reason", 2000, required=False),
        *count("days.0.administrations"),
        Case("days.0.administrations", "negative", -1),
        Case("days.0.administrations", "out_of_range", 3),
    ]


def _clinical_event(w: World) -> dict[str, Any]:
    return {"event_code": "PCP", "onset_date": w.day(41)}


def _clinical_event_cases(protocol: Protocol) -> list[Case]:
    return [
        *text("event_code", 40),
        Case("event_code", "unknown_code", "FLU"),
        *date("onset_date"),
        Case("onset_date", "future", "2010-01-04"),
        Case("onset_date", "before_randomization", "2005-12-20"),
    ]


def _adverse_event(w: World) -> dict[str, Any]:
    return {
        "term": "Fever",
        "grade": 2,
        "start_date": w.day(8),
        "end_date": w.day(10),
        "related": "POSSIBLE",
        "verbatim": "fever",
        "outcome": "RECOVERED/RESOLVED",
        "action": "DOSE NOT CHANGED",
        "serious": False,
    }


def _adverse_event_cases(protocol: Protocol) -> list[Case]:
    return [
        *text("term", 40),
        Case("term", "unknown_code", "Sneezing"),
        *count("grade"),
        Case("grade", "below_minimum", 0),
        Case("grade", "negative", -1),
        Case("grade", "out_of_range", 6),
        *date("start_date"),
        Case("start_date", "future", "2010-01-04", extra=(("end_date", MISSING),)),
        Case("start_date", "before_randomization", "2005-12-20"),
        *date("end_date", required=False),
        Case("end_date", "before_start", "2006-01-12"),
        Case("end_date", "future", "2010-01-04"),
        *text("related", 40),
        Case("related", "unknown_code", "MAYBE"),
        Case("serious", "wrong_type", "maybe"),
        Case("serious", "wrong_type", [True]),
        Case("serious", "wrong_type", 2),
        *text("verbatim", 200),
        *text("outcome", 40),
        Case("outcome", "unknown_code", "BETTER"),
        Case("outcome", "fatal_without_death", "FATAL"),
        *text("action", 40),
        Case("action", "unknown_code", "DOUBLED"),
        Case("seriousness", "wrong_type", "AESHOSP"),
        Case("seriousness", "unknown_code", ["AESXYZ"]),
        Case("seriousness", "not_serious", ["AESHOSP"]),
    ]


def _disposition(w: World) -> dict[str, Any]:
    return {"status": "WITHDREW", "disposition_date": w.day(70)}


def _disposition_cases(protocol: Protocol) -> list[Case]:
    return [
        *text("status", 40),
        Case("status", "unknown_code", "GONE"),
        Case("status", "death_without_event", "DEATH"),
        *date("disposition_date"),
        Case("disposition_date", "future", "2010-01-04"),
        Case("disposition_date", "before_last_data", "2006-01-10"),
    ]


def _consent(w: World) -> dict[str, Any]:
    return {"consent_date": w.day(-2)}


def _consent_cases(protocol: Protocol) -> list[Case]:
    return [
        *date("consent_date"),
        Case("consent_date", "future", "2010-01-04"),
        *text("site", 40, required=False),
        Case("site", "other_site", "{other_site}", status=404),
    ]


def _randomization(w: World) -> dict[str, Any]:
    return {
        "screening_number": w.consented,
        "randomization_date": w.day(0),
        "consent_date": w.day(-2),
    }


def _randomization_cases(protocol: Protocol) -> list[Case]:
    return [
        *text("screening_number", 40),
        Case("screening_number", "unknown_code", "NOPE-0001", names="screening"),
        Case(
            "screening_number",
            "not_consented",
            "{awaiting}",
            extra=(("consent_date", MISSING),),
            names="consent_date",
        ),
        *date("randomization_date"),
        Case("randomization_date", "future", "2010-01-04"),
        Case("randomization_date", "before_consent", "2006-01-01"),
        *date("consent_date", required=False),
        Case("consent_date", "differs", "2006-01-04"),
        Case("entry_labs", "wrong_type", ["CD4"]),
        *text("site", 40, required=False),
        Case("site", "other_site", "{other_site}", status=404),
    ]


def _signature(w: World) -> dict[str, Any]:
    return {"password": PASSWORD, "meaning": "I approve these data"}


def _signature_cases(protocol: Protocol) -> list[Case]:
    return [
        *text("password", 200, strips=False),
        Case("password", "wrong", "not the password", status=401),
        *text("meaning", 2000),
    ]


def _query(w: World) -> dict[str, Any]:
    return {"field": "CD4", "text": "please check", "table_name": "visit", "record_id": w.wk04}


def _query_cases(protocol: Protocol) -> list[Case]:
    return [
        *text("field", 40),
        *text("text", 2000),
        *text("visit", 40, required=False),
        *text("table_name", 40, required=False),
        Case("table_name", "unknown_code", "audit_record"),
        *count("record_id", required=False),
        Case("record_id", "unknown", 99999, names="record"),
        Case("record_id", "negative", -1),
        Case("record_id", "beyond_the_store", 2**31),  # PostgreSQL's integer ends below it
    ]


def _one_text(name: str) -> Callable[[Protocol], list[Case]]:
    return lambda protocol: text(name, 2000)


def _review_cases(protocol: Protocol) -> list[Case]:
    return [
        Case("decision", "missing", MISSING),
        Case("decision", "unknown_code", "MAYBE"),
        Case("decision", "unknown_code", "confirmed"),
        Case("decision", "empty", ""),
        Case("decision", "wrong_type", True),
        *text("reason", 2000),
    ]


PARTICIPANT = "/api/participants/{usubjid}"
OPERATION = PARTICIPANT  # the OpenAPI path parameter has the same name
VISIT = OPERATION + "/visits/{visit_code}"
BODIES: list[Body] = [
    Body(
        "TokenCreate",
        "POST",
        "/api/token",
        "/api/token",
        None,
        _token,
        lambda p: text("username", 40) + text("password", 200, strips=False),
    ),
    Body(
        "UserCreate",
        "POST",
        "/api/users",
        "/api/users",
        "admin",
        _user,
        lambda p: [
            *text("username", 40),
            Case("username", "invalid_chars", "new user!"),
            Case("username", "duplicate", "coordinator", names="user", status=409),
            *text("password", 200, strips=False),
            Case("password", "too_short", "short"),
            *text("role", 40),
            Case("role", "unknown_code", "wizard"),
            *text("site", 40, required=False),
            Case("site", "missing", MISSING),  # a site role needs its site
            Case("site", "unknown_code", "ZZ01"),
            Case("full_name", "too_long", "x" * 201),
            Case("full_name", "wrong_type", 12345),
            Case("full_name", "control_char", "New\x00User"),
            Case("full_name", "control_char", "New\x1bUser"),
        ],
    ),
    Body(
        "ScreeningCreate",
        "POST",
        "/api/screenings",
        "/api/screenings",
        "coordinator",
        _screening,
        _screening_cases,
    ),
    Body(
        "ConsentCreate",
        "POST",
        "/api/screenings/{screening_number}/consent",
        "/api/screenings/{awaiting}/consent",
        "coordinator",
        _consent,
        _consent_cases,
    ),
    Body(
        "RandomizationCreate",
        "POST",
        "/api/randomizations",
        "/api/randomizations",
        "coordinator",
        _randomization,
        _randomization_cases,
    ),
    Body(
        "VisitCreate",
        "POST",
        VISIT,
        PARTICIPANT + "/visits/WK08",
        "coordinator",
        _visit,
        _visit_cases,
    ),
    Body(
        "VisitCorrection",
        "PUT",
        VISIT,
        PARTICIPANT + "/visits/WK04",
        "coordinator",
        _correction,
        _correction_cases,
        ok=200,
    ),
    Body(
        "SignatureCreate",
        "POST",
        VISIT + "/signature",
        PARTICIPANT + "/visits/WK04/signature",
        "investigator",
        _signature,
        _signature_cases,
    ),
    Body(
        "DoseLogCreate",
        "POST",
        OPERATION + "/doses",
        PARTICIPANT + "/doses",
        "coordinator",
        _doses,
        _doses_cases,
    ),
    Body(
        "ClinicalEventCreate",
        "POST",
        OPERATION + "/clinical-events",
        PARTICIPANT + "/clinical-events",
        "coordinator",
        _clinical_event,
        _clinical_event_cases,
    ),
    Body(
        "AdverseEventCreate",
        "POST",
        OPERATION + "/adverse-events",
        PARTICIPANT + "/adverse-events",
        "coordinator",
        _adverse_event,
        _adverse_event_cases,
    ),
    Body(
        "QueryCreate",
        "POST",
        OPERATION + "/queries",
        PARTICIPANT + "/queries",
        "monitor",
        _query,
        _query_cases,
    ),
    Body(
        "QueryAnswer",
        "POST",
        "/api/queries/{query_id}/answer",
        "/api/queries/{query}/answer",
        "coordinator",
        lambda w: {"answer": "checked: correct"},
        _one_text("answer"),
        ok=200,
    ),
    Body(
        "QueryClose",
        "POST",
        "/api/queries/{query_id}/close",
        "/api/queries/{query}/close",
        "monitor",
        lambda w: {"note": "resolved"},
        _one_text("note"),
        ok=200,
    ),
    Body(
        "QueryReopen",
        "POST",
        "/api/queries/{query_id}/reopen",
        "/api/queries/{query}/reopen",
        "monitor",
        lambda w: {"note": "the value still looks wrong"},
        _one_text("note"),
        ok=200,
    ),
    Body(
        "ReviewCreate",
        "POST",
        "/api/endpoint-reviews/{event_id}",
        "/api/endpoint-reviews/{event}",
        "reviewer",
        lambda w: {"decision": "CONFIRMED", "reason": "meets the criteria"},
        _review_cases,
    ),
    Body(
        "UnscheduledVisitCreate",
        "POST",
        OPERATION + "/unscheduled-visits",
        PARTICIPANT + "/unscheduled-visits",
        "coordinator",
        _unscheduled,
        _unscheduled_cases,
    ),
    Body(
        "MissedVisitCreate",
        "POST",
        VISIT + "/missed",
        PARTICIPANT + "/visits/WK12/missed",
        "coordinator",
        lambda w: {"reason": "in hospital"},
        lambda p: text("reason", 2000),
    ),
    Body(
        "DeviationCreate",
        "POST",
        OPERATION + "/deviations",
        PARTICIPANT + "/deviations",
        "coordinator",
        lambda w: {"category": "OTHER", "description": "late draw", "deviation_date": w.day(9)},
        lambda p: [
            *text("category", 40),
            Case("category", "unknown_code", "BAD"),
            *text("description", 2000),
            *date("deviation_date"),
            Case("deviation_date", "future", "2010-01-04"),
        ],
    ),
    Body(
        "DeviationReview",
        "POST",
        "/api/deviations/{deviation_id}/review",
        "/api/deviations/{deviation}/review",
        "monitor",
        lambda w: {"note": "minor"},
        _one_text("note"),
        ok=200,
    ),
    Body(
        "DispositionCreate",
        "POST",
        OPERATION + "/disposition",
        PARTICIPANT + "/disposition",
        "coordinator",
        _disposition,
        _disposition_cases,
    ),
    Body(
        "SourceVerificationCreate",
        "POST",
        VISIT + "/sdv",
        PARTICIPANT + "/visits/WK04/sdv",
        "monitor",
        lambda w: {"note": "checked against the lab report"},
        lambda p: [
            c
            for c in text("note", 2000, required=False)
            if c.kind != "empty"  # an empty note is no note: verified without one
        ],
    ),
    Body(
        "LockRelease",
        "POST",
        "/api/locks/{lock_id}/unlock",
        "/api/locks/{lock}/unlock",
        "manager",
        lambda w: {"reason": "the cut-off was wrong"},
        lambda p: text("reason", 2000),
        ok=200,
    ),
    Body(
        "LockCreate",
        "POST",
        "/api/locks",
        "/api/locks",
        "manager",
        # a site lock up to a day before anyone's data: the bodies after it are not refused
        lambda w: {"scope": "site", "site": w.site, "cutoff": "1900-01-02", "reason": "interim"},
        lambda p: [
            Case("scope", "unknown_code", "country"),
            Case("scope", "wrong_type", 3),
            Case("scope", "missing", MISSING),
            *text("usubjid", 40, required=False),
            *text("site", 40, required=False),
            Case("site", "unknown_code", "ZZ01", status=404),
            *date("cutoff", required=False),
            Case("cutoff", "future", "2099-01-04"),
            *text("reason", 2000),
        ],
    ),
    # the account lifecycle, last: the password reset revokes the reviewer's token
    Body(
        "AccountStatus",
        "PUT",
        "/api/users/{username}/active",
        "/api/users/reviewer/active",
        "admin",
        lambda w: {"active": True, "reason": "back from leave"},
        lambda p: [
            Case("active", "wrong_type", "maybe"),
            Case("active", "wrong_type", [True]),
            Case("active", "missing", MISSING),
            *text("reason", 500),
        ],
        ok=200,
    ),
    Body(
        "RoleChange",
        "PUT",
        "/api/users/{username}/role",
        "/api/users/reviewer/role",
        "admin",
        lambda w: {"role": "endpoint_reviewer", "reason": "confirmed in the role"},
        lambda p: [
            *text("role", 40),
            Case("role", "unknown_code", "wizard"),
            *text("site", 40, required=False),
            Case("site", "unknown_code", "ZZ01"),
            *text("reason", 500),
        ],
        ok=200,
    ),
    Body(
        "PasswordChange",
        "POST",
        "/api/password",
        "/api/password",
        None,
        lambda w: {"username": "monitor", "password": PASSWORD, "new_password": "a new password!"},
        lambda p: [
            *text("username", 40),
            *text("password", 200, strips=False),
            *text("new_password", 200, strips=False),
            Case("new_password", "too_short", "short"),
        ],
        ok=204,
    ),
    Body(
        "PasswordReset",
        "POST",
        "/api/users/{username}/password-reset",
        "/api/users/reviewer/password-reset",
        "admin",
        lambda w: {"password": "a temporary password"},
        lambda p: [*text("password", 200, strips=False), Case("password", "too_short", "short")],
        ok=204,
    ),
]
"""In an order in which every base body succeeds, one after the other, on a fresh world."""


def resolve(value: Any, world: World) -> Any:
    """A case value with ``{attribute}`` placeholders of the world filled in (``{day7}``: the
    first IL-2 day)."""
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        name = value[1:-1]
        return world.day(7) if name == "day7" else getattr(world, name)
    if isinstance(value, list):
        return [resolve(v, world) for v in value]
    if isinstance(value, dict):
        return {k: resolve(v, world) for k, v in value.items()}
    return value


# -- coverage --------------------------------------------------------------------------------------
def _variants(prop: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for v in prop.get("anyOf", [prop]) if v.get("type") != "null"]


def required_kinds(
    spec: dict[str, Any], schema: str, protocol: Protocol, prefix: str = ""
) -> dict[str, set[str]]:
    """field path -> the case kinds the catalogue must hold for it, from the OpenAPI schema."""
    components = spec["components"]["schemas"]
    component = components[schema]
    required = set(component.get("required", []))
    out: dict[str, set[str]] = {}
    for name, prop in component["properties"].items():
        path = prefix + name
        kinds = {"wrong_type"} | ({"missing"} if name in required else set())
        for v in _variants(prop):
            ref = v.get("$ref") or v.get("items", {}).get("$ref")
            if ref:
                nested = ref.rsplit("/", 1)[-1]
                inner = f"{path}.0." if v.get("type") == "array" else f"{path}."
                out |= required_kinds(spec, nested, protocol, inner)
            if v.get("type") == "string" and v.get("format") == "date":
                kinds.add("bad_date")
            elif v.get("type") == "string" and "enum" in v:
                kinds.add("unknown_code")
            elif v.get("type") == "string":
                if v.get("minLength"):
                    kinds.add("empty")
                if "maxLength" in v:
                    kinds.add("too_long")
                    kinds.add("control_char")
            if v.get("type") == "integer" and "minimum" in v:
                kinds.add("below_minimum")
            if v.get("type") == "array" and v.get("minItems"):
                kinds.add("empty")
        out[path] = kinds
        if name == "answers":
            out[f"{path}.<unknown>"] = {"unknown_item"}
            for item in protocol.screening_items:
                out[f"{path}.{item.name}"] = _item_kinds(item)
        if name == "labs":
            out[f"{path}.<unknown>"] = {"unknown_item"}
            for lab in protocol.forms.LAB.items:
                out[f"{path}.{lab.name}"] = _item_kinds(lab) | (
                    {"missing"} if lab.required else set()
                )
    return out


def _item_kinds(item: FormItem | ScreeningItem) -> set[str]:
    kinds = {"wrong_type"}
    if isinstance(item, ScreeningItem) and item.required:
        kinds.add("missing")
    if item.type in ("integer", "number"):
        kinds |= {"out_of_range", "empty"}
        if item.min is not None and item.min >= 0:
            kinds.add("negative")
        if item.type == "integer":
            kinds.add("not_whole")
    if item.type == "choice":
        kinds.add("unknown_code")
    if isinstance(item, FormItem) and item.lower_limit is not None:
        kinds.add("below_limit")
    return kinds


def catalogued_kinds(cases: list[Case], known_items: set[str]) -> dict[str, set[str]]:
    """field path -> the kinds the cases cover (unknown answers/labs items under ``<unknown>``)."""
    out: dict[str, set[str]] = {}
    for case in cases:
        path = case.path
        head, _, last = path.rpartition(".")
        if head in ("answers", "labs") and last not in known_items:
            path = f"{head}.<unknown>"
        out.setdefault(path, set()).add(case.kind)
    return out


# -- the HTML forms --------------------------------------------------------------------------------
@dataclass(frozen=True)
class PageForm:
    """A form of the pages: the page that shows it, where it posts, a valid filling (strings,
    as a browser sends them), and per field the invalid values to post."""

    name: str
    page: str  # formatted with the World's attributes
    action: str
    base: Callable[[World], dict[str, str]]
    cases: dict[str, tuple[str, ...]]
    ok: int = 303
    hidden: tuple[str, ...] = ()
    """Hidden fields the page fills in itself (a record's version): not the user's to fill."""

    def url(self, template: str, world: World) -> str:
        return template.format(**vars(world))


DATES = ("", "2006-02-30", "soon", "2010-01-04")
"""Empty, impossible, not a date, in the future."""


def _screening_form(w: World) -> dict[str, str]:
    body = _screening(w)
    answers = {
        k: ("true" if v is True else "false" if v is False else str(v))
        for k, v in body["answers"].items()
    }
    return {
        "site": w.site,
        "screening_number": f"{w.site}-PAGE",
        "consent_date": body["screening_date"],
        "screening_date": body["screening_date"],
        **answers,
    }


def _visit_form(w: World) -> dict[str, str]:
    return {"visit_date": w.day(56), "LAB.CD4": "500", "LAB.CD4PCT": "25", "LAB.HIVRNA": "<50"}


def _correction_form(w: World) -> dict[str, str]:
    return {
        "visit_date": w.day(28),
        "LAB.CD4": "530",
        "LAB.CD4PCT": "25",
        "LAB.HIVRNA": "400",
        "reason": "transcription error",
        "version": str(_wk04_version(w)),
    }


def _dose_form(w: World) -> dict[str, str]:
    return {f"day.{w.day(7 + k)}": "2" for k in range(5)}


SERIOUSNESS_BOXES = ("AESDTH", "AESLIFE", "AESHOSP", "AESDISAB", "AESCONG", "AESMIE")
"""The AE form's seriousness criteria (ICH E2A), one checkbox each."""

LAB_CASES = {
    "LAB.CD4": ("", "50000", "-1", "abc", "<50", "nan", "1e400"),
    "LAB.CD4PCT": ("101", "-1", "abc"),
    "LAB.HIVRNA": ("", "10", "<400", "abc", "-5"),
}
BOOLEAN = ("", "maybe")

PAGE_FORMS: list[PageForm] = [
    PageForm(
        "screening",
        "/screening",
        "/screening",
        _screening_form,
        {
            "site": ("",),
            "screening_number": ("x" * 41,),  # blank is not wrong: the next number is given
            "consent_date": DATES,  # consent first: the form requires it
            "screening_date": DATES,
            "age": ("", "abc", "200", "-1", "35.5"),
            "sex": ("", "X"),
            "hiv_positive": BOOLEAN,
            "cd4": ("", "50000", "abc", "-1"),
            "hiv_rna": ("", "-5", "abc"),
            "on_continuous_art": BOOLEAN,
            "arv_within_12_months": BOOLEAN,
            "prior_il2": BOOLEAN,
            "haart_access": BOOLEAN,
            "prior_aids": BOOLEAN,
            "immunomodulator_8_weeks": BOOLEAN,
            "race": ("X",),  # optional: left empty is an answer, an unknown choice is not
            "ethnicity": ("X",),
        },
        ok=200,
    ),
    PageForm(
        "consent",
        "/randomize/{awaiting}",
        "/randomize/{awaiting}/consent?site={site}",
        lambda w: {"consent_date": w.day(-2)},
        {"consent_date": DATES},  # consent may come before screening (GCP: it should)
    ),
    PageForm(
        "randomization",
        "/randomize/{consented}",
        "/randomize/{consented}?site={site}",
        lambda w: {"randomization_date": w.day(0)},
        {
            "randomization_date": (*DATES, "2006-01-01"),
            # the optional entry results: one wrong result refuses the randomization
            "LAB.CD4": ("50000", "abc", "-1"),
            "LAB.CD4PCT": ("101", "-1", "abc"),
            "LAB.HIVRNA": ("<400", "abc", "-5"),
        },
    ),
    PageForm(
        "visit",
        "/participants/{usubjid}/visits/WK08",
        "/participants/{usubjid}/visits/WK08",
        _visit_form,
        {"visit_date": DATES, **LAB_CASES, "deviation_reason": ("x" * 2001,)},
    ),
    PageForm(
        "correction",
        "/participants/{usubjid}/visits/WK04",
        "/participants/{usubjid}/visits/WK04",
        _correction_form,
        {
            "visit_date": DATES,
            **LAB_CASES,
            "LAB.CD4PCT": ("", "101", "-1", "abc"),  # a saved result cannot be removed
            "reason": ("", "   "),
        },
        hidden=("version",),
    ),
    PageForm(
        "doses",
        "/participants/{usubjid}/doses/IL2/1",
        "/participants/{usubjid}/doses/IL2/1",
        _dose_form,
        {f"day.2006-01-{12 + k}": ("", "3", "two", "-1") for k in range(5)}
        | {
            # a dose off the calendar: a bad date, one without a reason, a count without a date
            "other_date": ("soon", "2006-01-20", "2010-01-04"),
            "other_administrations": ("two",),
            "deviation_reason": ("x" * 2001,),
        },
    ),
    PageForm(
        "clinical-event",
        "/participants/{usubjid}/events",
        "/participants/{usubjid}/events/clinical",
        lambda w: {"event_code": "PCP", "onset_date": w.day(41)},
        {"event_code": ("", "FLU"), "onset_date": (*DATES, "2005-12-20")},
    ),
    PageForm(
        "adverse-event",
        "/participants/{usubjid}/events",
        "/participants/{usubjid}/events/adverse",
        lambda w: {
            "term": "Fever",
            "grade": "2",
            "start_date": w.day(8),
            "end_date": w.day(10),
            "related": "POSSIBLE",
            "verbatim": "fever",
            "outcome": "RECOVERED/RESOLVED",
            "action": "DOSE NOT CHANGED",
            "serious": "false",
        },
        {
            "term": ("", "Sneezing"),
            "grade": ("", "0", "6", "two", "-1"),
            "start_date": (*DATES, "2005-12-20"),
            "end_date": ("2006-02-30", "soon", "2010-01-04", "2006-01-12"),
            "related": ("", "MAYBE"),
            "serious": BOOLEAN,
            "verbatim": ("", "   ", "x" * 201),
            "outcome": ("", "BETTER", "FATAL"),
            "action": ("", "DOUBLED"),
        },
        # the seriousness criteria boxes are refused as a group (beside the fieldset): the API
        # cases cover them (a criterion of a non-serious event, an unknown one)
        hidden=tuple(f"seriousness_{c}" for c in SERIOUSNESS_BOXES),
    ),
    PageForm(
        "disposition",
        "/participants/{usubjid}/events",
        "/participants/{usubjid}/events/disposition",
        lambda w: {"status": "WITHDREW", "disposition_date": w.day(70)},
        {"status": ("", "GONE", "DEATH"), "disposition_date": (*DATES, "2006-01-10")},
    ),
]
"""In an order in which every base form succeeds, one after the other, on a fresh world."""
