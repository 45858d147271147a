"""Shared fixtures: a fresh database per test on SQLite and on PostgreSQL, and trial helpers.

Database fixtures
-----------------
``db_url``
    Parametrized over ``sqlite`` and ``postgresql`` (the latter marked ``postgres``): the URL of a
    fresh, migrated database holding no data. SQLite is a file in ``tmp_path`` copied from a
    migrated template file; PostgreSQL is ``CREATE DATABASE ... TEMPLATE`` of a migrated template
    database made once per session, dropped ``WITH (FORCE)`` at teardown; the next copy is made in
    the background while a test runs.
    When the test also uses ``trial``, the database is a copy of a template that already holds the
    packaged STALWART protocol initialized with ``SEED``, so ``engine`` and ``trial`` are one
    database.
``engine``
    An engine on ``db_url`` (disposed at teardown).
``trial``
    A ``CaptureService`` on that engine, with ``today`` fixed at ``TODAY``.
``make_engine``
    ``make_engine(backend, protocol=None, migrated=True)``: engines on more fresh databases
    (disposed and dropped at teardown): two backends in one test, an unmigrated database, a trial
    under a protocol variant.
``databases``
    The session's ``DatabaseFactory`` behind all of these; hypothesis tests use it directly since
    it is session-scoped (``new(backend, protocol)`` then ``drop(url)``).

Helpers are fixtures too (session-scoped, so hypothesis tests may use them), so that test modules
never import this file: ``eligible_answers(**overrides)``, ``row_counts(engine)`` (rows of every
table, for "bad input changes nothing"), ``packaged`` (the packaged protocol), ``packaged_text``,
``seed`` and ``today`` (the values the ``trial`` fixture uses), ``enrol(service, ...)`` (screen and
randomize an eligible person, into a given arm if asked).

The PostgreSQL server is ``$STALWART_TEST_PG_URL`` (default
``postgresql+psycopg://root@127.0.0.1:5432/test``, the maintenance database). When it cannot be
reached the PostgreSQL tests skip, except under ``CI=true`` where they fail.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import NullPool

from screening_answers import eligible_answers_of
from stalwart.capture.db import create_schema, open_engine
from stalwart.capture.enrolment import Allocation
from stalwart.capture.service import CaptureService, initialize_trial
from stalwart.capture.tables import AllocationSlot, Base, Screening
from stalwart.protocol.load import LoadedProtocol, default_protocol_path, load_protocol

SEED = 20051201
"""Randomization seed of the ``trial`` fixture."""

TODAY = dt.date(2009, 3, 1)
"""``today`` of the ``trial`` fixture: simulated 2006-2009 dates are in the past."""

PG_URL = os.environ.get("STALWART_TEST_PG_URL", "postgresql+psycopg://root@127.0.0.1:5432/test")
PG_START_HINT = (
    "start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start "
    "(or point STALWART_TEST_PG_URL at a server)"
)

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]
"""Parametrize a test over both backends (``databases.new(backend)`` inside it)."""


# -- helpers ---------------------------------------------------------------------------------------
def _row_counts(engine: Engine) -> dict[str, int]:
    """The number of rows of every table of the schema (audit tables included)."""
    with engine.connect() as conn:
        return {
            name: int(conn.scalar(sa.select(sa.func.count()).select_from(table)) or 0)
            for name, table in sorted(Base.metadata.tables.items())
        }


def _fixed_today() -> dt.date:
    return TODAY


def _next_site_for_arm(engine: Engine, arm: str) -> str:
    """The first site (protocol order) whose next free allocation slot is ``arm``."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(AllocationSlot.stratum, AllocationSlot.arm)
            .where(AllocationSlot.participant_id.is_(None))
            .order_by(AllocationSlot.id)
        ).all()
    nexts: dict[str, str] = {}
    for stratum, slot_arm in rows:
        nexts.setdefault(stratum, slot_arm)
    for stratum, slot_arm in nexts.items():
        if slot_arm == arm:
            return stratum.removeprefix("site=")
    raise AssertionError(f"no site's next slot is {arm}: {nexts}")


def _enrol(
    service: CaptureService,
    site: str | None = None,
    number: str | None = None,
    *,
    arm: str | None = None,
    screened: dt.date = dt.date(2006, 1, 2),
    consented: dt.date | None = None,
    randomized: dt.date = dt.date(2006, 1, 5),
    actor: str = "tester",
    **answers: object,
) -> Allocation:
    """Screen an eligible person and randomize them; ``arm``: at a site whose next slot is it."""
    if site is None:
        site = "US01" if arm is None else _next_site_for_arm(service.engine, arm)
    if number is None:
        with service.engine.connect() as conn:
            n = conn.scalar(sa.select(sa.func.count()).select_from(Screening)) or 0
        number = f"{site}-{n + 1:04d}"
    outcome = service.screen(site, number, screened, eligible_answers_of(**answers), actor)
    assert outcome.eligible, outcome.reasons
    allocation = service.randomize(number, consented or screened, randomized, actor)
    if arm is not None:
        assert allocation.arm == arm
    return allocation


# -- PostgreSQL server -----------------------------------------------------------------------------
class _PgServer:
    """Admin connection to the PostgreSQL server, checked once per session."""

    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        self.admin: Engine | None = None
        self.problem: str | None = None
        try:
            admin = sa.create_engine(
                self.url,
                isolation_level="AUTOCOMMIT",
                poolclass=NullPool,
                connect_args={"connect_timeout": 3},
            )
            with admin.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            self.admin = admin
        except Exception as exc:  # any failure means: no usable server
            self.problem = (
                f"PostgreSQL at {self.url.render_as_string(hide_password=True)} is unreachable "
                f"({type(exc).__name__}: {str(exc).strip().splitlines()[0]}); {PG_START_HINT}"
            )

    def require(self) -> Engine:
        """The admin engine, or skip (fail under CI=true) when the server is unreachable."""
        if self.admin is None:
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(self.problem or "PostgreSQL unreachable", pytrace=False)
            pytest.skip(self.problem or "PostgreSQL unreachable")
        return self.admin

    def url_of(self, database: str) -> str:
        return self.url.set(database=database).render_as_string(hide_password=False)

    def create(self, name: str, template: str | None = None) -> str:
        admin = self.require()
        clause = f" TEMPLATE {template}" if template else ""
        with admin.connect() as conn:
            # throwaway databases need no durable commits: faster creation and writes
            conn.exec_driver_sql("SET synchronous_commit = off")
            conn.exec_driver_sql(f"CREATE DATABASE {name}{clause}")
            conn.exec_driver_sql(f"ALTER DATABASE {name} SET synchronous_commit = off")
        return self.url_of(name)

    def drop(self, name: str) -> None:
        if self.admin is None:
            return
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _token() -> str:
    return uuid.uuid4().hex[:12]


class DatabaseFactory:
    """Makes fresh databases on either backend, from templates made once per session.

    ``CREATE DATABASE`` is the slow part of a PostgreSQL test, so after each copy of a template
    the next copy is made in a background thread while the test runs.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._pg: _PgServer | None = None
        self._templates: dict[tuple[str, str], str] = {}
        self._pg_databases: list[str] = []
        self._pg_templates: list[str] = []
        self._lock = threading.Lock()
        self._prefetch: ThreadPoolExecutor | None = None
        self._ready: dict[str, Future[str]] = {}

    @property
    def pg(self) -> _PgServer:
        if self._pg is None:
            self._pg = _PgServer(PG_URL)
        return self._pg

    # -- public ---------------------------------------------------------------------------------
    def new(
        self,
        backend: str,
        protocol: LoadedProtocol | None = None,
        *,
        migrated: bool = True,
        seed: int = SEED,
        folder: Path | None = None,
    ) -> str:
        """URL of a new database: empty, migrated, or holding a trial of ``protocol``.

        A SQLite file is made in ``folder`` (the factory's own folder by default).
        """
        if backend == "sqlite":
            path = (folder or self.folder) / f"t_{_token()}.db"
            if migrated:
                shutil.copyfile(self._template("sqlite", protocol, seed), path)
            return f"sqlite:///{path}"
        if backend == "postgresql":
            self.pg.require()
            if not migrated:
                return self.pg.create(self._pg_name(), None)
            return self.pg.url_of(self._pg_copy(self._template("postgresql", protocol, seed)))
        raise ValueError(backend)

    def drop(self, url: str) -> None:
        """Remove a database made by ``new`` (engines on it must be disposed)."""
        parsed = make_url(url)
        if parsed.get_backend_name() == "postgresql":
            assert parsed.database is not None
            self.pg.drop(parsed.database)
            with self._lock:
                if parsed.database in self._pg_databases:
                    self._pg_databases.remove(parsed.database)
        elif parsed.database and Path(parsed.database).parent == self.folder:
            # files elsewhere (a test's tmp_path) are left for pytest to clean up
            for suffix in ("", "-wal", "-shm"):
                Path(parsed.database + suffix).unlink(missing_ok=True)

    def close(self) -> None:
        if self._prefetch is not None:
            self._prefetch.shutdown(wait=True)
        if self._pg is None or self._pg.admin is None:
            return
        for name in [*self._pg_databases, *self._pg_templates]:
            self._pg.drop(name)
        self._pg.admin.dispose()

    # -- PostgreSQL copies ------------------------------------------------------------------------
    def _pg_name(self) -> str:
        """A new database name, recorded so that ``close`` drops it whatever happens."""
        name = f"stalwart_t_{_token()}"
        with self._lock:
            self._pg_databases.append(name)
        return name

    def _pg_copy(self, template: str) -> str:
        """A fresh copy of ``template`` (made ahead when possible); starts making the next."""
        name: str | None = None
        ahead = self._ready.pop(template, None)
        if ahead is not None:
            try:
                name = ahead.result()
            except Exception:  # made again below, where a failure is reported
                name = None
        if name is None:
            name = self._pg_name()
            self.pg.create(name, template)
        if self._prefetch is None:
            self._prefetch = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pg-prefetch")
        following = self._pg_name()
        self._ready[template] = self._prefetch.submit(self._make_copy, following, template)
        return name

    def _make_copy(self, name: str, template: str) -> str:
        self.pg.create(name, template)
        return name

    # -- templates -------------------------------------------------------------------------------
    def _template(self, backend: str, protocol: LoadedProtocol | None, seed: int) -> str:
        key = (backend, "migrated" if protocol is None else f"{protocol.sha256}:{seed}")
        if key in self._templates:
            return self._templates[key]
        if backend == "sqlite":
            path = self.folder / f"tmpl_{_token()}.db"
            url = f"sqlite:///{path}"
            made = str(path)
        else:
            made = f"stalwart_tmpl_{_token()}"
            url = self.pg.create(made)
            self._pg_templates.append(made)
        engine = open_engine(url)
        try:
            create_schema(engine)
            if protocol is not None:
                # one salt for every template, so that SQLite and PostgreSQL trials hold the
                # same seed fingerprint (and the same data sha256)
                initialize_trial(
                    engine, protocol, seed=seed, actor="test-setup", salt=b"stalwart-tests-1"
                )
        finally:
            engine.dispose()
        if backend == "sqlite":
            assert not Path(made + "-wal").exists(), "WAL not checkpointed"
        self._templates[key] = made
        return made


# -- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseFactory]:
    factory = DatabaseFactory(tmp_path_factory.mktemp("databases"))
    yield factory
    factory.close()


@pytest.fixture(scope="session")
def packaged() -> LoadedProtocol:
    """The packaged STALWART protocol."""
    return load_protocol()


@pytest.fixture(scope="session")
def packaged_text() -> str:
    """The text of the packaged STALWART protocol file."""
    return default_protocol_path().read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def eligible_answers() -> Callable[..., dict[str, object]]:
    """``eligible_answers(**overrides)``: answers meeting every criterion, some items replaced."""
    return eligible_answers_of


@pytest.fixture(scope="session")
def row_counts() -> Callable[[Engine], dict[str, int]]:
    """``row_counts(engine)``: the number of rows of every table of the schema."""
    return _row_counts


@pytest.fixture(scope="session")
def enrol() -> Callable[..., Allocation]:
    """``enrol(service, site=None, number=None, *, arm=None, screened, consented, randomized,
    **answers)``: screen an eligible person and randomize them (into ``arm`` when given)."""
    return _enrol


@pytest.fixture(scope="session")
def seed() -> int:
    """The randomization seed of ``trial``."""
    return SEED


@pytest.fixture(scope="session")
def today() -> dt.date:
    """The ``today`` of ``trial``."""
    return TODAY


@pytest.fixture(params=BACKENDS)
def db_url(
    request: pytest.FixtureRequest,
    databases: DatabaseFactory,
    packaged: LoadedProtocol,
    tmp_path: Path,
) -> Iterator[str]:
    """A fresh migrated database without data (with the trial set up when ``trial`` is used)."""
    protocol = packaged if "trial" in request.fixturenames else None
    url = databases.new(request.param, protocol, folder=tmp_path)
    yield url
    databases.drop(url)


@pytest.fixture()
def backend(db_url: str) -> str:
    """``sqlite`` or ``postgresql``: the backend of ``db_url``."""
    return make_url(db_url).get_backend_name()


@pytest.fixture()
def engine(db_url: str) -> Iterator[Engine]:
    eng = open_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture()
def trial(engine: Engine) -> CaptureService:
    """The packaged protocol initialized with ``SEED``; ``today`` is ``TODAY``."""
    return CaptureService.open(engine, today=_fixed_today)


@pytest.fixture()
def make_engine(databases: DatabaseFactory) -> Iterator[Callable[..., Engine]]:
    """``make_engine(backend, protocol=None, migrated=True)``: engines on extra fresh databases."""
    made: list[tuple[Engine, str]] = []

    def make(backend: str, protocol: LoadedProtocol | None = None, **kw: object) -> Engine:
        url = databases.new(backend, protocol, **kw)  # type: ignore[arg-type]
        eng = open_engine(url)
        made.append((eng, url))
        return eng

    yield make
    for eng, url in made:
        eng.dispose()
        databases.drop(url)
