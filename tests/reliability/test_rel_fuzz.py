"""Fuzz every API operation as every role: no request, however malformed, gets a 5xx.

schemathesis reads the app's own ``/openapi.json`` and generates requests for every operation,
both schema-conforming ones (``GenerationMode.POSITIVE``) and schema-breaking ones
(``NEGATIVE``: wrong types, out-of-range values, missing fields). Each request is sent without
credentials and as ``ACTORS_PER_CASE`` actors of ``rel_fixtures.ACTORS`` (every role of
``capture.access``, site-bound ones at US01) taken in turn, then as as many more with its path
parameters replaced by ids of real records (participants at US01 and GB01, their visits, queries,
events, screenings, audited rows), so that the bodies reach the service's edit checks and not only
a 404. A request with nothing generated in it goes to every actor. The last test checks that every
operation was sent as every actor.

The cases come from schemathesis's public Python API (``APIOperation.as_strategy`` under
Hypothesis's ``@given``), each operation and mode a pytest subtest; not from schemathesis's pytest
plugin, whose lazy fixture loader rewrites pytest's private node ids and broke with pytest 9.2.

Every response must be below 500 (schemathesis's ``not_a_server_error``); every 4xx must carry
the API's error shape with a message, and leave every table (the audit trail included) as it was.

The trial database has participants enrolled at two sites. SQLite gets the full pass; PostgreSQL a
reduced one. Examples are bounded per operation and derandomized, so a run is reproducible.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
import sqlalchemy as sa
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from rel_fixtures import ACTORS, PASSWORD, OpenWorld, World, build_world
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode

from stalwart.capture.access import Actor, Role
from stalwart.capture.tables import AuthToken, DataLock, ProtocolDeviation

SQLITE_EXAMPLES = 4
POSTGRES_EXAMPLES = 1
ACTORS_PER_CASE = 3
"""Actors each generated case is sent as (besides no credentials), in turn over the cases."""
_SETTINGS: dict[str, Any] = {
    "derandomize": True,
    "database": None,
    "deadline": None,
    "phases": [Phase.explicit, Phase.generate],  # a failure is reported as found, unshrunk
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.filter_too_much],
}


@pytest.fixture(scope="module")
def rel_fuzz_sqlite(
    open_world: OpenWorld[World], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    with open_world(build_world, "sqlite", tmp_path_factory.mktemp("fuzz_sqlite")) as world:
        yield world


@pytest.fixture(scope="module")
def rel_fuzz_postgresql(
    open_world: OpenWorld[World], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    with open_world(build_world, "postgresql", tmp_path_factory.mktemp("fuzz_pg")) as world:
        yield world


def _pick(options: list[Any], generated: object) -> Any:
    """One of ``options``, chosen by the generated value (so the choice is reproducible)."""
    return options[len(repr(generated)) % len(options)]


def _real_path(world: World, generated: dict[str, Any]) -> dict[str, Any]:
    """The generated path parameters with each replaced by the id of a real record."""
    usubjids = [u for site in sorted(world.participants) for u in world.participants[site]]
    visit_codes = [v.code for v in world.service.protocol.visits]
    real: dict[str, Any] = {}
    for name, value in generated.items():
        if name == "usubjid":
            real[name] = _pick(usubjids, value)
        elif name == "visit_code":
            real[name] = _pick(visit_codes, value)
        elif name == "screening_number":
            real[name] = _pick([s for site in world.screenings.values() for s in site], value)
        elif name == "query_id":
            real[name] = _pick(sorted(world.queries.values()), value)
        elif name == "event_id":
            real[name] = _pick(sorted(world.events.values()), value)
        elif name == "deviation_id":  # a deviation of the world's participants, or none
            with world.engine.connect() as conn:
                ids = sorted(conn.scalars(sa.select(ProtocolDeviation.id)).all())
            real[name] = _pick([*ids, 2**31 - 1], value)
        elif name == "lock_id":  # a lock of the world (the fuzz may have made some), or none
            with world.engine.connect() as conn:
                ids = sorted(conn.scalars(sa.select(DataLock.id)).all())
            real[name] = _pick([*ids, 2**31 - 1], value)
        elif name == "kind":
            real[name] = _pick(["participants", "visits", "labs"], value)
        elif name == "username":  # an account no actor is: its acts leave the actors' tokens
            real[name] = _pick([_target(world), "no.such.user"], value)
        elif name == "token_id":  # a live token of that account, or none
            issued = world.users.issue_token(_target_actor(world), "api")
            real[name] = _pick([_token_id(world, issued.token), 2**31 - 1], value)
        elif name in ("table_name", "record_id"):
            rows = sorted(world.record_ids(_pick(usubjids, generated["record_id"])).items())
            table, record = _pick(rows, generated["table_name"])
            real[name] = table if name == "table_name" else record
        else:
            raise AssertionError(f"no real value for path parameter {name!r}: add one")
    return real


TARGET = "fuzz.target"
"""The account the account-lifecycle operations act on (no actor's, so no actor loses its token)."""


def _target(world: World) -> str:
    """``TARGET``, created on first use; active again and with its password, whatever the fuzz
    did to it before."""
    if TARGET not in {a.username for a in world.users.users("setup")}:
        world.users.add_user(TARGET, PASSWORD, "monitor", "setup")
    world.users.admin.set_active(TARGET, True, "fuzz target", "setup")
    return TARGET


def _target_actor(world: World) -> Actor:
    _target(world)
    account = next(a for a in world.users.users("setup") if a.username == TARGET)
    return Actor(account.username, Role(account.role), account.site, account.id)


def _token_id(world: World, token: str) -> int:
    digest = hashlib.sha256(token.encode()).hexdigest()
    with world.engine.connect() as conn:
        found = conn.scalar(sa.select(AuthToken.id).where(AuthToken.token_sha256 == digest))
    assert found is not None
    return int(found)


def _message(status: int, body: object) -> str | None:
    """The error message of a 4xx body: the API's error shape, or the router's own 404/405."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"]).strip() or None
    detail = body.get("detail")  # routing: no such path, or a method the path does not allow
    if status in (404, 405) and isinstance(detail, str) and detail.strip():
        return detail
    return None


def _send(case: schemathesis.Case[Any], world: World, who: str | None) -> None:
    """Send ``case`` as ``who`` (None: no credentials) and check the response."""
    if who is None:
        headers: dict[str, str] = {}
    elif case.method.upper() == "DELETE" and case.path == "/api/token":
        headers = world.fresh_headers(who)  # it revokes the token it is sent with
    else:
        headers = world.headers[who]
    sent = SENT[world.engine.dialect.name]
    sent.setdefault(f"{case.method.upper()} {case.path}", set()).add(who or "")
    before = world.stored()
    response = case.call_and_validate(headers=headers, checks=[not_a_server_error])
    status = response.status_code
    label = f"{case.method} {case.formatted_path} as {who or 'anonymous'}: {status}"
    if 400 <= status < 500:
        assert _message(status, response.json()), f"{label} without a message: {response.text}"
        assert world.stored() == before, f"{label} changed stored data"


_TURN = itertools.count()
SENT: dict[str, dict[str, set[str]]] = {"sqlite": {}, "postgresql": {}}
"""Backend -> operation -> the actors its cases were sent as ("" without credentials)."""


def _actors(n: int) -> list[str]:
    """The next ``n`` actors, round robin: over an operation's cases, every role gets turns."""
    names = list(ACTORS)
    start = next(_TURN) * n
    return [names[(start + i) % len(names)] for i in range(n)]


def _exercise(case: schemathesis.Case[Any], world: World) -> None:
    """Send the case without credentials and as some actors; then again on real records.

    Each case goes to ``ACTORS_PER_CASE`` actors, taken in turn, so that every operation is
    fuzzed as every role (each role gets several of each operation's cases) at a fraction of
    the cost of sending every case as every role.
    """
    op = case.operation  # no parameter and no body: the same request each time
    fixed = not any(True for _ in op.iter_parameters()) and not list(op.body)
    for who in [None, *(list(ACTORS) if fixed else _actors(ACTORS_PER_CASE))]:
        _send(case, world, who)
    if case.path_parameters:
        case.path_parameters = _real_path(world, dict(case.path_parameters))
        for who in _actors(ACTORS_PER_CASE):
            _send(case, world, who)


def _operations(world: World) -> list[schemathesis.APIOperation]:
    """Every operation of the app's OpenAPI document (a schema error fails the test, named)."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", world.app)
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"/openapi.json is not a valid schema: {result.err()}"
        operations.append(result.ok())
    assert operations, "/openapi.json lists no operation"
    return operations


def _fuzz(world: World, examples: int, subtests: pytest.Subtests) -> None:
    """Each operation, in each generation mode, as a subtest of ``examples`` generated cases."""
    for operation in _operations(world):
        fixed = not any(True for _ in operation.iter_parameters()) and not list(operation.body)
        modes = [GenerationMode.POSITIVE] if fixed else list(GenerationMode)
        for mode in modes:
            with subtests.test(operation=operation.label, mode=mode.value):

                @settings(max_examples=examples, **_SETTINGS)
                @given(case=operation.as_strategy(mode))
                def fuzz(case: schemathesis.Case[Any]) -> None:
                    _exercise(case, world)

                try:
                    fuzz()
                except Unsatisfiable:
                    # every value the schema allows is valid here (a path's free string):
                    # there is no schema-breaking request to send
                    assert mode is GenerationMode.NEGATIVE, f"{operation.label}: no valid case"


def test_fuzz_every_operation_as_every_role_sqlite(
    rel_fuzz_sqlite: World, subtests: pytest.Subtests
) -> None:
    _fuzz(rel_fuzz_sqlite, SQLITE_EXAMPLES, subtests)


@pytest.mark.postgres
def test_fuzz_every_operation_as_every_role_postgresql(
    rel_fuzz_postgresql: World, subtests: pytest.Subtests
) -> None:
    _fuzz(rel_fuzz_postgresql, POSTGRES_EXAMPLES, subtests)


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_every_operation_was_sent_as_every_actor(
    backend: str, request: pytest.FixtureRequest
) -> None:
    """After the fuzz of ``backend`` (this module's order): no operation missed a role."""
    world = request.getfixturevalue(f"rel_fuzz_{backend}")
    # from the routes: schemathesis adds methods to the app's cached OpenAPI dict as it fuzzes
    expected = {
        f"{m} {r.path}"
        for r in world.app.routes
        if isinstance(r, APIRoute) and r.include_in_schema
        for m in r.methods or ()
    }
    sent = SENT[backend]
    assert expected <= set(sent), expected - set(sent)
    missed = {op: set(ACTORS) - sent[op] for op in expected if set(ACTORS) - sent[op]}
    assert not missed, missed
