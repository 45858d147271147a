"""The bad-input catalogue: every field of every API body and every HTML form, invalid values.

The request bodies come from the app's own OpenAPI document (each POST/PUT/PATCH operation's
schema); ``rel_catalogue`` holds, per body, a valid body and its cases: one field at a time made
invalid (wrong type, missing, empty, too long, not a date, in the future, unknown code, out of the
protocol's range such as CD4 = 50000, negative, below the assay limit, not whole, ...). Each case
must be refused with a 4xx (never 401/403 unless the case says so: that would be the wrong actor,
not the field), a JSON error whose message is non-empty and which names the field, and no row of
any table (the audit trail included) may change. The coverage tests fail when the OpenAPI document
gains a body, a field, or a constraint that the catalogue has no case for, and when a valid body of
the catalogue is itself refused (which would make its cases pass for the wrong reason).

The pages' forms are posted the same way, logged in with a session cookie and the CSRF token: each
invalid value comes back 422 with the message beside its field (``aria-invalid`` and the field's
error text) and nothing saved. The fields are read from the rendered forms, so a new form field
without cases fails too.

SQLite gets every case; PostgreSQL one case of each kind of each field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from rel_catalogue import (
    BODIES,
    PAGE_FORMS,
    PASSWORD,
    REFUSED,
    Body,
    Case,
    PageForm,
    World,
    build_world,
    catalogued_kinds,
    required_kinds,
    resolve,
)
from rel_fixtures import OpenWorld
from sqlalchemy.engine import Engine

from stalwart.protocol.load import LoadedProtocol

Counts = Callable[[Engine], dict[str, int]]
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(scope="module")
def sqlite_world(
    open_world: OpenWorld[World], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    with open_world(build_world, "sqlite", tmp_path_factory.mktemp("bad-input")) as world:
        yield world


@pytest.fixture(scope="module")
def pg_world(
    open_world: OpenWorld[World], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    with open_world(build_world, "postgresql", tmp_path_factory.mktemp("bad-input-pg")) as world:
        yield world


@pytest.fixture()
def fresh_world(open_world: OpenWorld[World], tmp_path: Path) -> Iterator[World]:
    with open_world(build_world, "sqlite", tmp_path) as world:
        yield world


@pytest.fixture(scope="module")
def spec(packaged: LoadedProtocol) -> dict[str, Any]:
    """The OpenAPI document (of an app over any trial database: it depends on no data)."""
    import tempfile

    from stalwart.capture.db import create_schema, open_engine
    from stalwart.capture.service import initialize_trial
    from stalwart.web.app import create_app

    with tempfile.TemporaryDirectory() as folder:
        engine = open_engine(f"sqlite:///{folder}/spec.db")
        try:
            create_schema(engine)
            initialize_trial(engine, packaged, seed=1)
            document: dict[str, Any] = create_app(engine).openapi()
        finally:
            engine.dispose()
    return document


# -- the catalogue covers the API ------------------------------------------------------------------
def _case_id(body: Body, case: Case, n: int) -> str:
    return f"{body.schema}:{case.path}:{case.kind}:{n}"


def _all_cases(protocol: LoadedProtocol) -> list[Any]:
    params = []
    for body in BODIES:
        for n, case in enumerate(body.cases(protocol.protocol)):
            params.append(pytest.param(body, case, id=_case_id(body, case, n)))
    return params


def _one_per_kind(protocol: LoadedProtocol) -> list[Any]:
    """The PostgreSQL subset: the first case of each kind of each field."""
    seen: set[tuple[str, str, str]] = set()
    params = []
    for body in BODIES:
        for n, case in enumerate(body.cases(protocol.protocol)):
            key = (body.schema, case.path.split(".")[0], case.kind)
            if key not in seen:
                seen.add(key)
                params.append(pytest.param(body, case, id=_case_id(body, case, n)))
    return params


def _packaged() -> LoadedProtocol:
    from stalwart.protocol.load import load_protocol

    return load_protocol()


PACKAGED = _packaged()


def test_every_request_body_of_the_api_is_catalogued(spec: dict[str, Any]) -> None:
    bodies = {}
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method not in ("post", "put", "patch"):
                continue
            content = operation.get("requestBody", {}).get("content", {})
            schema = content.get("application/json", {}).get("schema", {})
            if "$ref" in schema:
                bodies[(method.upper(), path)] = schema["$ref"].rsplit("/", 1)[-1]
            elif operation.get("requestBody"):
                bodies[(method.upper(), path)] = repr(schema)  # an inline body: catalogue it too
    catalogue = {(b.method, b.operation): b.schema for b in BODIES}
    assert bodies == catalogue
    assert len({b.schema for b in BODIES}) == len(BODIES)


@pytest.mark.parametrize("body", BODIES, ids=lambda b: b.schema)
def test_every_field_and_constraint_has_cases(
    spec: dict[str, Any], packaged: LoadedProtocol, body: Body
) -> None:
    protocol = packaged.protocol
    required = required_kinds(spec, body.schema, protocol)
    items = {i.name for i in protocol.screening_items} | {i.name for i in protocol.forms.LAB.items}
    catalogued = catalogued_kinds(body.cases(protocol), items)
    missing = {
        path: sorted(kinds - catalogued.get(path, set()))
        for path, kinds in required.items()
        if kinds - catalogued.get(path, set())
    }
    assert not missing, f"{body.schema}: fields or kinds without a case: {missing}"
    stale = set(catalogued) - set(required)
    assert not stale, f"{body.schema}: cases for fields the schema does not have: {stale}"


def test_every_valid_body_is_accepted(fresh_world: World, row_counts: Counts) -> None:
    """The catalogue's valid bodies, one after the other: each succeeds and writes."""
    for body in BODIES:
        before = row_counts(fresh_world.engine)
        headers = fresh_world.headers[body.actor] if body.actor else {}
        r = fresh_world.client.request(
            body.method, body.url(fresh_world), json=body.base(fresh_world), headers=headers
        )
        assert r.status_code == body.ok, (body.schema, r.text)
        if body.schema != "TokenCreate":  # a token is not audited data; the rest is
            assert row_counts(fresh_world.engine)["audit_record"] > before["audit_record"]


# -- every case is refused, naming the field, and changes nothing ----------------------------------
def _named(error: dict[str, Any]) -> set[str]:
    fields = [error.get("field"), *(p.get("field") for p in error.get("problems", []))]
    return {f.split(".")[-1] for f in fields if f}


def _send(world: World, body: Body, case: Case, row_counts: Counts) -> None:
    base = body.base(world)
    sent = case.apply(base)
    sent = resolve(sent, world)
    assert json.dumps(sent) != json.dumps(base), "the case does not change the body"
    headers = world.headers[body.actor] if body.actor else {}
    before = row_counts(world.engine)
    r = world.client.request(body.method, body.url(world), json=sent, headers=headers)
    expected = {case.status} if case.status else REFUSED
    assert r.status_code in expected, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    error = r.json()["error"]
    assert isinstance(error["message"], str) and error["message"].strip()
    name = case.expected_name
    named = _named(error)
    if named:  # the error says which field: it must be this one
        assert name in named, (name, error)
    else:  # a not-found or a conflict: its message names what was not found
        message = error["message"].lower()
        assert name.lower() in message or name.replace("_", " ").lower() in message, error
    after = row_counts(world.engine)
    counted = after.pop("login_failure") - before.pop("login_failure")
    assert after == before
    assert counted == (1 if r.status_code == 401 else 0)  # a wrong password counts (throttle)


@pytest.mark.parametrize(("body", "case"), _all_cases(PACKAGED))
def test_bad_value_is_refused_naming_the_field_sqlite(
    sqlite_world: World, row_counts: Counts, body: Body, case: Case
) -> None:
    _send(sqlite_world, body, case, row_counts)


@pytest.mark.postgres
@pytest.mark.parametrize(("body", "case"), _one_per_kind(PACKAGED))
def test_bad_value_is_refused_naming_the_field_postgresql(
    pg_world: World, row_counts: Counts, body: Body, case: Case
) -> None:
    _send(pg_world, body, case, row_counts)


# -- the HTML forms --------------------------------------------------------------------------------
def _page_client(world: World) -> tuple[TestClient, str]:
    """A browser session of the site coordinator: (client, the session's CSRF token)."""
    client = TestClient(world.app)
    login = CSRF.search(client.get("/login").text)
    assert login
    form = {"username": "coordinator", "password": PASSWORD, "csrf_token": login.group(1)}
    r = client.post("/login", data=form, follow_redirects=False)
    assert r.status_code == 303, r.text
    token = CSRF.search(client.get("/screening").text)
    assert token
    return client, token.group(1)


@pytest.fixture(scope="module")
def pages(sqlite_world: World) -> Iterator[tuple[TestClient, str]]:
    client, csrf = _page_client(sqlite_world)
    with client:
        yield client, csrf


def _form_fields(html: str, action: str) -> set[str]:
    match = re.search(
        rf'<form method="post" action="{re.escape(action)}"[^>]*>(.*?)</form>', html, re.S
    )
    assert match, f"no form posting to {action}"
    return set(re.findall(r'name="([^"]+)"', match.group(1))) - {"csrf_token"}


@pytest.mark.parametrize("form", PAGE_FORMS, ids=lambda f: f.name)
def test_every_form_field_has_cases(
    sqlite_world: World, pages: tuple[TestClient, str], form: PageForm
) -> None:
    client, _ = pages
    page = client.get(form.url(form.page, sqlite_world))
    assert page.status_code == 200
    fields = _form_fields(page.text, form.url(form.action, sqlite_world))
    cases = set(form.cases) | set(form.hidden)
    assert fields == cases, f"{form.name}: fields {fields} vs cases {cases}"
    assert set(form.base(sqlite_world)) <= fields


def _form_params() -> list[Any]:
    return [
        pytest.param(form, name, value, id=f"{form.name}:{name}:{value!r}")
        for form in PAGE_FORMS
        for name, values in form.cases.items()
        for value in values
    ]


@pytest.mark.parametrize(("form", "name", "value"), _form_params())
def test_bad_form_value_is_shown_beside_its_field_and_nothing_is_saved(
    sqlite_world: World,
    pages: tuple[TestClient, str],
    row_counts: Counts,
    form: PageForm,
    name: str,
    value: str,
) -> None:
    client, csrf = pages
    data = form.base(sqlite_world) | {name: value, "csrf_token": csrf}
    before = row_counts(sqlite_world.engine)
    r = client.post(form.url(form.action, sqlite_world), data=data, follow_redirects=False)
    assert r.status_code == 422, (r.status_code, r.text[:600])
    fid = "f-" + name.replace(".", "-")
    error = re.search(rf'id="{re.escape(fid)}-error" role="alert">([^<]*)<', r.text)
    assert error and error.group(1).strip(), f"no message beside {name}"
    assert re.search(rf'id="{re.escape(fid)}"[^>]*aria-invalid="true"', r.text)
    assert row_counts(sqlite_world.engine) == before


def test_every_valid_form_is_accepted(fresh_world: World, row_counts: Counts) -> None:
    """The catalogue's valid fillings, one after the other: each is saved."""
    client, csrf = _page_client(fresh_world)
    with client:
        for form in PAGE_FORMS:
            before = row_counts(fresh_world.engine)["audit_record"]
            data = form.base(fresh_world) | {"csrf_token": csrf}
            r = client.post(form.url(form.action, fresh_world), data=data, follow_redirects=False)
            assert r.status_code == form.ok, (form.name, r.text[:600])
            assert row_counts(fresh_world.engine)["audit_record"] > before, form.name


def test_randomizing_before_consent_shows_the_consent_form_with_its_error(
    sqlite_world: World, pages: tuple[TestClient, str], row_counts: Counts
) -> None:
    """The randomization form posted for a person whose consent is not recorded (a stale page,
    or a crafted post): refused beside the consent date, not a server error."""
    client, csrf = pages
    before = row_counts(sqlite_world.engine)
    r = client.post(
        f"/randomize/{sqlite_world.awaiting}",
        data={"randomization_date": sqlite_world.day(0), "csrf_token": csrf},
        follow_redirects=False,
    )
    assert r.status_code == 422
    error = re.search(r'id="f-consent_date-error" role="alert">([^<]*)<', r.text)
    assert error and "record the informed consent" in error.group(1)
    assert row_counts(sqlite_world.engine) == before
