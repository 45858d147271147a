"""Plain helpers of the reliability suite's web tests: a trial with data at two sites, and users.

``build_world`` makes the app over a fresh trial database (``databases.new``) holding
participants at US01 and GB01, each with recorded visits, a dose log, a reported clinical event,
an adverse event and an open query, plus an eligible screened person per site awaiting consent;
then one user account per *actor* (a role, and a site for the site-bound ones) with a bearer
token. The fuzz and the access matrix call it from their own fixtures.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from stalwart.capture.access import Actor, Role
from stalwart.capture.ae_form import AeDetails
from stalwart.capture.db import open_engine
from stalwart.capture.service import CaptureService
from stalwart.capture.tables import Base, ClinicalEvent, LabResult, Visit
from stalwart.capture.users import UserStore
from stalwart.web.app import create_app

W = TypeVar("W")
#: A ``build_world``: (database URL, today, enrol, eligible answers) -> the world, as a context.
Build = Callable[[str, dt.date, Callable[..., Any], Callable[..., Any]], AbstractContextManager[W]]
#: The ``open_world`` fixture of this folder's conftest: (build, backend, folder) -> the world.
OpenWorld = Callable[[Build[W], str, Path], AbstractContextManager[W]]

PASSWORD = "a long reliability password"
OWN, OTHER = "US01", "GB01"
"""The site-bound actors work at ``OWN``; ``OTHER`` is the site they must never see."""

ACTORS: dict[str, tuple[str, str | None]] = {
    "admin": ("admin", None),
    "data_manager": ("data_manager", None),
    "site_coordinator@US01": ("site_coordinator", OWN),
    "investigator@US01": ("investigator", OWN),
    "monitor": ("monitor", None),
    "monitor@US01": ("monitor", OWN),
    "endpoint_reviewer": ("endpoint_reviewer", None),
    "statistician_blinded": ("statistician_blinded", None),
    "statistician_unblinded": ("statistician_unblinded", None),
    "dsmb": ("dsmb", None),
}
"""Every role of ``capture.access`` (the monitor both study-wide and tied to a site)."""

BLINDED = ("endpoint_reviewer", "statistician_blinded")
"""Actors that must never see an arm: the endpoint reviewer and the blinded statistician."""

SITE_BOUND = tuple(name for name, (_, site) in ACTORS.items() if site is not None)

ARM_PATTERN = re.compile(
    r"\b(NOTHER|IL2ART|IL2)\b|No therapy|IL-2 alone|IL-2 with peri-cycle ART", re.IGNORECASE
)
"""The packaged protocol's arm codes and labels."""

LABS = {"CD4": 610, "HIVRNA": 400}


STORED_TABLES = tuple(name for name in sorted(Base.metadata.tables) if name != "login_failure")
"""The tables ``World.stored`` counts: every one but ``login_failure``, where a refused login is
counted by design (``capture.throttle``)."""

_COUNT_ROWS = sa.select(
    *(
        sa.select(sa.func.count()).select_from(Base.metadata.tables[name]).scalar_subquery()
        for name in STORED_TABLES
    )
)
"""Row counts of those tables in one statement (built once: SQLAlchemy then caches it)."""


def cheap_hasher() -> PasswordHasher:
    """argon2id with cheap parameters: the real algorithm, fast enough for tests."""
    return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@dataclass
class World:
    """The app over one trial database, with its users and the ids of its records."""

    app: FastAPI
    engine: Engine
    service: CaptureService
    users: UserStore
    client: TestClient
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    actors: dict[str, Actor] = field(default_factory=dict)
    participants: dict[str, list[str]] = field(default_factory=dict)  # site -> usubjids
    screenings: dict[str, list[str]] = field(default_factory=dict)  # site -> awaiting consent
    visits: dict[str, int] = field(default_factory=dict)  # usubjid -> id of its WK04 visit
    events: dict[str, int] = field(default_factory=dict)  # usubjid -> clinical event id
    queries: dict[str, int] = field(default_factory=dict)  # usubjid -> open query id
    _counter: int = 0

    def fresh_headers(self, name: str) -> dict[str, str]:
        """A new bearer token of actor ``name`` (for requests that revoke their own token)."""
        issued = self.users.issue_token(self.actors[name], "api")
        return {"Authorization": f"Bearer {issued.token}"}

    def unique(self, prefix: str) -> str:
        """A new name, unique within this world."""
        self._counter += 1
        return f"{prefix}{self._counter:05d}"

    def stored(self) -> tuple[int, ...]:
        """The number of rows of each of ``STORED_TABLES`` (audit trail included), in one round
        trip."""
        with self.engine.connect() as conn:
            return tuple(int(v) for v in conn.execute(_COUNT_ROWS).one())

    def record_ids(self, usubjid: str) -> dict[str, int]:
        """Ids of some rows of a participant, by table (for the audit endpoint)."""
        with self.engine.connect() as conn:
            lab = conn.scalar(
                sa.select(LabResult.id)
                .join(Visit, Visit.id == LabResult.visit_id)
                .where(Visit.id == self.visits[usubjid])
                .limit(1)
            )
        assert lab is not None
        return {
            "visit": self.visits[usubjid],
            "lab_result": int(lab),
            "clinical_event": self.events[usubjid],
            "data_query": self.queries[usubjid],
        }


def _populate(world: World, enrol: Callable[..., Any], eligible: Callable[..., Any]) -> None:
    service = world.service
    for site in (OWN, OTHER):
        world.participants[site] = []
        for i in range(2):
            allocation = enrol(service, site, f"{site}-R{i + 1}")
            u = allocation.usubjid
            world.participants[site].append(u)
            service.record_visit(u, "ENTRY", dt.date(2006, 1, 5), LABS, "setup")
            world.visits[u] = service.record_visit(u, "WK04", dt.date(2006, 2, 2), LABS, "setup")
            if allocation.arm != "NOTHER":  # the first IL-2 day: a week after randomization
                service.record_doses(u, "IL2", 1, [(dt.date(2006, 1, 12), 2)], "setup")
            world.events[u] = service.report_clinical_event(u, "TB", dt.date(2006, 2, 10), "setup")
            service.report_adverse_event(
                u,
                "Fever",
                2,
                dt.date(2006, 1, 13),
                None,
                "PROBABLE",
                False,
                "setup",
                AeDetails("fever", "RECOVERED/RESOLVED", "DOSE NOT CHANGED"),
            )
            world.queries[u] = service.queries.raise_query(u, "CD4", "please confirm", "setup")
        world.screenings[site] = []
        for i in range(2):
            number = f"{site}-S{i + 1}"
            outcome = service.screen(site, number, dt.date(2006, 1, 2), eligible(), "setup")
            assert outcome.eligible
            world.screenings[site].append(number)
    with world.engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(ClinicalEvent)) == 4


@contextmanager
def build_world(
    url: str,
    today: dt.date,
    enrol: Callable[..., Any],
    eligible: Callable[..., Any],
) -> Iterator[World]:
    """The app over the trial database at ``url``, populated, with a token per actor."""
    engine = open_engine(url)
    service = CaptureService.open(engine, today=lambda: today)
    app = create_app(engine, today=lambda: today, hasher=cheap_hasher())
    try:
        with TestClient(app) as client:
            world = World(app, engine, service, app.state.users, client)
            _populate(world, enrol, eligible)
            for name, (role, site) in ACTORS.items():
                username = name.replace("@", ".").lower()
                account = world.users.add_user(username, PASSWORD, role, "setup", site=site)
                world.actors[name] = Actor(username, Role(role), site, account.id)
                r = client.post("/api/token", json={"username": username, "password": PASSWORD})
                assert r.status_code == 201, r.text
                world.headers[name] = {"Authorization": f"Bearer {r.json()['access_token']}"}
            yield world
    finally:
        engine.dispose()


def operations(app: FastAPI) -> list[tuple[str, str]]:
    """Every (METHOD, path) of the app's OpenAPI document."""
    return [
        (method.upper(), path)
        for path, item in app.openapi()["paths"].items()
        for method in item
        if method in {"get", "put", "post", "delete", "patch", "head", "options"}
    ]
