"""Role x site x operation: every cell of the API allowed or denied as the role table says.

The matrix is generated from the app's own ``/openapi.json``: each operation declares who may call
it (``x-stalwart-access``: public, any signed-in user, or the permissions of which the role must
grant one), and ``capture.access``'s role table says which permissions each role holds. For every
actor of ``rel_fixtures.ACTORS`` (each role; the site roles and a site monitor at US01), every
operation is called with a valid request on a record of the actor's own site and, where the
operation names a site's record (a participant, a screening, a query, an event, an audited row)
or takes a site in its body, on one of the other site:

* allowed (the role grants the permission, and the record is in the actor's scope): 2xx;
* denied: 403 for a permission the role lacks, 403 or 404 for a record outside the actor's sites
  (404: a site-bound user cannot even learn that the record exists), with the API's error shape,
  and no row of any table changed;
* without credentials: 401 for everything but the public operations.

Across all responses: no site-bound actor ever reads a record of the other site (its
participants, screening numbers, or its code in a listing), and the blinded roles (endpoint
reviewer, blinded statistician) never see an arm. Each actor works on its own trial database (a
fresh world) so that one actor's writes do not decide another's answers.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from rel_fixtures import (
    ACTORS,
    ARM_PATTERN,
    BLINDED,
    LABS,
    OTHER,
    OWN,
    PASSWORD,
    SITE_BOUND,
    STORED_TABLES,
    OpenWorld,
    World,
    build_world,
    operations,
)

from stalwart.capture.access import Permission, Role, permissions_of
from stalwart.capture.enrolment import Allocation
from stalwart.capture.records import CONCEALED
from stalwart.capture.tables import AllocationSlot, AuthToken
from stalwart.protocol.calendar import participant_calendar
from stalwart.web.routes import ACCESS_KEY

DAY = dt.timedelta(days=1)
TARGETS = (OWN, OTHER)


@dataclass(frozen=True)
class Call:
    """One request of the matrix: an operation on a record of ``site`` (None: no site)."""

    method: str
    path: str  # the OpenAPI path template
    url: str
    site: str | None
    body: dict[str, Any] | None = None
    params: dict[str, str] | None = None
    own_token: bool = False  # send a fresh token of the actor (the request revokes it)


@dataclass
class Trial:
    """What the calls refer to, at each site, beyond ``World``."""

    world: World
    treated: dict[str, Allocation]  # site -> a participant on IL-2 (dose days to log)
    new_screening: dict[str, str]  # site -> an unused screening number
    answers: dict[str, object]  # eligible screening answers


def _treated(world: World, enrol: Callable[..., Any], site: str) -> Allocation:
    """A participant of ``site`` on an IL-2 arm: enrolled until the site's list gives one."""
    for i in range(12):
        allocation: Allocation = enrol(world.service, site, f"{site}-T{i + 1}")
        if allocation.arm != "NOTHER":
            world.service.record_visit(
                allocation.usubjid, "ENTRY", allocation.randomization_date, LABS, "setup"
            )
            return allocation
    raise AssertionError(f"no IL-2 allocation at {site} in 12 randomizations")


def _calls(trial: Trial) -> list[Call]:
    """Every operation of the API, on each site where it names a site's record."""
    w = trial.world
    protocol = w.service.protocol
    calls: list[Call] = [
        Call("GET", "/healthz", "/healthz", None),
        Call("GET", "/readyz", "/readyz", None),
        Call("POST", "/api/token", "/api/token", None, {"username": "", "password": PASSWORD}),
        Call("DELETE", "/api/token", "/api/token", None, own_token=True),
        Call("GET", "/api/me", "/api/me", None),
        Call("GET", "/api/users", "/api/users", None),
        Call(
            "POST",
            "/api/users",
            "/api/users",
            None,
            {"username": "matrix.user", "password": "a long new password", "role": "monitor"},
        ),
        Call("GET", "/api/screenings", "/api/screenings", None),
        Call("GET", "/api/participants", "/api/participants", None),
        Call("GET", "/api/queries", "/api/queries", None),
        Call("GET", "/api/endpoint-reviews", "/api/endpoint-reviews", None),
        Call("GET", "/api/endpoint-reviews/status", "/api/endpoint-reviews/status", None),
        Call("GET", "/api/worklist", "/api/worklist", None),
        Call("GET", "/api/deviations", "/api/deviations", None),
        Call("GET", "/api/locks", "/api/locks", None),
        Call("GET", "/api/summary", "/api/summary", None),
        Call("GET", "/api/results-by-arm", "/api/results-by-arm", None),
        Call("GET", "/api/exports/{kind}.csv", "/api/exports/participants.csv", None),
        Call("GET", "/api/reports/open", "/api/reports/open", None, params={"format": "html"}),
        Call("GET", "/api/reports/closed", "/api/reports/closed", None, params={"format": "html"}),
    ]
    for site in TARGETS:
        first, second = w.participants[site]
        treated = trial.treated[site]
        rand = dt.date(2006, 1, 5)
        wk04 = f"/api/participants/{first}/visits/WK04"
        cycle1 = [
            d
            for d in participant_calendar(protocol, treated.arm, treated.randomization_date).doses
            if d.treatment == "IL2" and d.cycle == 1
        ]
        p = "/api/participants/{usubjid}"
        visit = p + "/visits/{visit_code}"
        ids = w.record_ids(first)
        deviation = w.service.deviations.report(
            second, "OTHER", "matrix deviation", dt.date(2006, 1, 20), "matrix"
        )
        # locks up to a day before any data of the matrix: in force, refusing none of its calls
        lock = w.service.locks.lock(
            "participant", "matrix", "matrix", usubjid=first, cutoff=dt.date(2005, 12, 1)
        )
        calls += [
            Call(
                "POST",
                p + "/unscheduled-visits",
                f"/api/participants/{first}/unscheduled-visits",
                site,
                {"visit_date": "2006-01-20", "labs": {"CD4": 500}, "reason": "matrix"},
            ),
            Call(
                "POST",
                visit + "/missed",
                f"/api/participants/{first}/visits/WK16/missed",
                site,
                {"reason": "matrix: not done"},
            ),
            Call(
                "POST",
                p + "/deviations",
                f"/api/participants/{first}/deviations",
                site,
                {"category": "OTHER", "description": "matrix", "deviation_date": "2006-01-20"},
            ),
            Call(
                "POST",
                "/api/deviations/{deviation_id}/review",
                f"/api/deviations/{deviation}/review",
                site,
                {"note": "matrix review"},
            ),
            Call(
                "POST",
                "/api/screenings",
                "/api/screenings",
                site,
                {
                    "site": site,
                    "screening_number": trial.new_screening[site],
                    "screening_date": "2006-01-02",
                    "answers": trial.answers,
                },
            ),
            Call(
                "POST",
                "/api/screenings/{screening_number}/consent",
                f"/api/screenings/{w.screenings[site][0]}/consent",
                site,
                {"consent_date": "2006-01-03"},
            ),
            Call(
                "POST",
                "/api/randomizations",
                "/api/randomizations",
                site,
                {
                    "screening_number": w.screenings[site][1],
                    "randomization_date": "2006-01-05",
                    "consent_date": "2006-01-03",
                },
            ),
            Call("GET", p, f"/api/participants/{first}", site),
            Call(
                "POST",
                visit,
                f"/api/participants/{first}/visits/WK08",
                site,
                {"visit_date": (rand + 56 * DAY).isoformat(), "labs": LABS},
            ),
            Call(
                "PUT",
                visit,
                wk04,
                site,
                {"visit_date": "2006-02-02", "labs": {**LABS, "CD4": 620}, "reason": "typo"},
            ),
            Call("GET", visit, wk04, site),
            Call(
                "POST",
                visit + "/signature",
                wk04 + "/signature",
                site,
                {"password": PASSWORD, "meaning": "I approve these data"},
            ),
            Call("GET", visit + "/audit", wk04 + "/audit", site),
            Call("GET", visit + "/audit-trail", wk04 + "/audit-trail", site),
            Call("GET", p + "/audit-trail", f"/api/participants/{first}/audit-trail", site),
            Call("POST", visit + "/sdv", wk04 + "/sdv", site, {"note": "matrix"}),
            Call(
                "POST",
                "/api/locks",
                "/api/locks",
                site,
                {"scope": "site", "site": site, "cutoff": "2005-12-01", "reason": "matrix"},
            ),
            Call(
                "POST",
                "/api/locks/{lock_id}/unlock",
                f"/api/locks/{lock}/unlock",
                site,
                {"reason": "matrix"},
            ),
            Call(
                "GET",
                "/api/audit/{table_name}/{record_id}",
                f"/api/audit/lab_result/{ids['lab_result']}",
                site,
            ),
            Call(
                "POST",
                p + "/doses",
                f"/api/participants/{treated.usubjid}/doses",
                site,
                {
                    "treatment": "IL2",
                    "cycle": 1,
                    "days": [{"date": d.date.isoformat(), "administrations": 2} for d in cycle1],
                },
            ),
            Call(
                "POST",
                p + "/clinical-events",
                f"/api/participants/{first}/clinical-events",
                site,
                {"event_code": "PCP", "onset_date": "2006-02-20"},
            ),
            Call(
                "POST",
                p + "/adverse-events",
                f"/api/participants/{first}/adverse-events",
                site,
                {
                    "term": "Nausea",
                    "grade": 1,
                    "start_date": "2006-01-14",
                    "end_date": "2006-01-15",
                    "related": "POSSIBLE",
                    "verbatim": "fever",
                    "outcome": "RECOVERED/RESOLVED",
                    "action": "DOSE NOT CHANGED",
                    "serious": False,
                },
            ),
            Call(
                "POST",
                p + "/queries",
                f"/api/participants/{first}/queries",
                site,
                {"field": "CD4", "text": "please check the units"},
            ),
            Call(
                "POST",
                "/api/queries/{query_id}/answer",
                f"/api/queries/{w.queries[first]}/answer",
                site,
                {"answer": "checked: cells/mm3"},
            ),
            Call(
                "POST",
                "/api/queries/{query_id}/close",
                f"/api/queries/{w.queries[second]}/close",
                site,
                {"note": "resolved"},
            ),
            Call(
                "POST",
                "/api/queries/{query_id}/reopen",
                f"/api/queries/{w.queries[second]}/reopen",
                site,
                {"note": "please look again"},
            ),
            Call(
                "GET",
                "/api/queries/{query_id}/history",
                f"/api/queries/{w.queries[first]}/history",
                site,
                None,
            ),
            Call(
                "POST",
                "/api/endpoint-reviews/{event_id}",
                f"/api/endpoint-reviews/{w.events[first]}",
                site,
                {"decision": "CONFIRMED", "reason": "culture positive"},
            ),
            Call(
                "POST",
                p + "/disposition",
                f"/api/participants/{second}/disposition",
                site,
                {"status": "WITHDREW", "disposition_date": "2006-03-10"},
            ),
        ]
    # the account lifecycle (admins), on accounts no later call of the actor depends on
    target = w.actors["dsmb"].username
    other = w.actors["statistician_blinded"]
    with w.engine.connect() as conn:
        token_id = conn.scalar(
            sa.select(sa.func.max(AuthToken.id)).where(AuthToken.user_id == other.user_id)
        )
    users = f"/api/users/{target}"
    calls += [
        Call("GET", "/api/users/{username}/tokens", users + "/tokens", None),
        Call("DELETE", "/api/tokens/{token_id}", f"/api/tokens/{token_id}", None),
        Call(
            "PUT",
            "/api/users/{username}/active",
            users + "/active",
            None,
            {"active": True, "reason": "matrix"},
        ),
        Call(
            "PUT",
            "/api/users/{username}/role",
            users + "/role",
            None,
            {"role": "dsmb", "reason": "matrix"},
        ),
        Call(
            "POST",
            "/api/users/{username}/password-reset",
            users + "/password-reset",
            None,
            {"password": "a matrix temporary password"},
        ),
        # last: the actor's own password change (its body is filled in per actor)
        Call("POST", "/api/password", "/api/password", None, {}),
    ]
    return calls


def _own_body(call: Call, username: str) -> dict[str, Any] | None:
    """The body of the public calls that prove the actor's own password."""
    if call.path == "/api/token" and call.method == "POST":
        return {"username": username, "password": PASSWORD}
    if call.path == "/api/password":
        return {"username": username, "password": PASSWORD, "new_password": "a new matrix password"}
    return call.body


def _expected(
    access: Any, role: Role, actor_site: str | None, call: Call
) -> tuple[bool, frozenset[int]]:
    """Whether the cell is allowed, and the statuses of its denial."""
    if access == "public" or access == "signed-in":
        granted = True
    else:
        granted = bool({Permission(p) for p in access["any_of"]} & permissions_of(role))
    if not granted:
        return False, frozenset({403, 404} if call.site not in (None, actor_site) else {403})
    if actor_site is not None and call.site not in (None, actor_site):
        return False, frozenset({403, 404})
    return True, frozenset()


def _leaks(text: str, trial: Trial) -> list[str]:
    """What of the other site a response shows."""
    w = trial.world
    other = [*w.participants[OTHER], *w.screenings[OTHER], trial.treated[OTHER].usubjid]
    found = [v for v in other if v in text]
    if f'"{OTHER}"' in text or f",{OTHER}," in text:
        found.append(OTHER)
    return found


@pytest.fixture(scope="module")
def openapi_access(
    open_world: OpenWorld[World], tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, str], Any]:
    """``x-stalwart-access`` of every operation of the OpenAPI document."""
    with open_world(build_world, "sqlite", tmp_path_factory.mktemp("matrix_spec")) as world:
        spec = world.client.get("/openapi.json").json()
        assert {op for op in operations(world.app)} == {
            (m.upper(), p) for p, item in spec["paths"].items() for m in item
        }
    return {
        (m.upper(), path): op.get(ACCESS_KEY)
        for path, item in spec["paths"].items()
        for m, op in item.items()
    }


@pytest.fixture()
def trial_of(
    open_world: OpenWorld[World],
    enrol: Callable[..., Any],
    eligible_answers: Callable[..., dict[str, object]],
    tmp_path: Path,
) -> Iterator[Callable[[], Trial]]:
    """A fresh populated trial (SQLite), for one actor's row of the matrix."""
    made = itertools.count()
    with ExitStack() as stack:

        def make() -> Trial:
            folder = tmp_path / f"t{next(made)}"
            folder.mkdir()
            world = stack.enter_context(open_world(build_world, "sqlite", folder))
            treated = {site: _treated(world, enrol, site) for site in TARGETS}
            new = {site: f"{site}-NEW1" for site in TARGETS}
            return Trial(world, treated, new, eligible_answers())

        yield make


def test_every_operation_declares_who_may_call_it(
    openapi_access: dict[tuple[str, str], Any],
) -> None:
    """The spec is the matrix's source: an operation without a declaration fails here."""
    permissions = {p.value for p in Permission}
    for op, access in openapi_access.items():
        assert access in ("public", "signed-in") or (
            isinstance(access, dict)
            and access.get("any_of")
            and set(access["any_of"]) <= permissions
        ), (op, access)


@pytest.mark.parametrize("name", list(ACTORS))
def test_each_cell_is_allowed_or_denied_as_the_role_table_says(
    name: str, openapi_access: dict[tuple[str, str], Any], trial_of: Callable[[], Trial]
) -> None:
    role_name, actor_site = ACTORS[name]
    role = Role(role_name)
    trial = trial_of()
    w = trial.world
    calls = _calls(trial)
    covered = {(c.method, c.path) for c in calls}
    assert covered == set(openapi_access), (
        "operations without a call in the matrix:",
        set(openapi_access) - covered,
    )
    wrong: list[str] = []
    for call in calls:
        access = openapi_access[(call.method, call.path)]
        allowed, denial = _expected(access, role, actor_site, call)
        headers = w.fresh_headers(name) if call.own_token else w.headers[name]
        body = _own_body(call, w.actors[name].username)
        if call.method == "PUT" and call.path.endswith("/visits/{visit_code}"):
            # a correction names the version it was made from: the visit's as read now
            usubjid, code = call.url.split("/")[3], call.url.split("/")[5]
            version = w.service.records.visit(usubjid, code, "matrix").version
            body = {**(body or {}), "version": version}
        before = None if allowed else w.stored()
        r = w.client.request(call.method, call.url, json=body, params=call.params, headers=headers)
        cell = f"{name} {call.method} {call.url} (site {call.site}): {r.status_code}"
        if allowed and not 200 <= r.status_code < 300:
            wrong.append(f"{cell}, expected 2xx: {r.text[:300]}")
        if not allowed:
            if r.status_code not in denial:
                wrong.append(f"{cell}, expected {sorted(denial)}: {r.text[:300]}")
            else:
                error = r.json().get("error", {})
                if not error.get("message"):
                    wrong.append(f"{cell}: a denial without a message: {r.text[:300]}")
            if w.stored() != before:
                wrong.append(f"{cell}: a denied request changed stored rows")
        if 200 <= r.status_code < 300:
            text = r.text
            if name in SITE_BOUND and (leaked := _leaks(text, trial)):
                wrong.append(f"{cell}: a site-bound user read the other site's {leaked}")
            if name in BLINDED and (arm := ARM_PATTERN.search(text)):
                wrong.append(f"{cell}: a blinded user saw the arm {arm.group(0)!r}")
    assert not wrong, "\n".join(wrong)


def test_without_credentials_only_the_public_operations_answer(
    openapi_access: dict[tuple[str, str], Any], trial_of: Callable[[], Trial]
) -> None:
    trial = trial_of()
    w = trial.world
    calls = _calls(trial)  # sets up a deviation per site to review
    before = w.stored()
    wrong = []
    for call in calls:
        body = _own_body(call, w.actors["admin"].username)
        r = w.client.request(call.method, call.url, json=body, params=call.params)
        public = openapi_access[(call.method, call.path)] == "public"
        if public != (r.status_code != 401):
            wrong.append(f"{call.method} {call.url}: {r.status_code} {r.text[:200]}")
        elif not public and not json.loads(r.text).get("error", {}).get("message"):
            wrong.append(f"{call.method} {call.url}: 401 without a message")
    assert not wrong, "\n".join(wrong)
    changed = {t for t, a, b in zip(STORED_TABLES, before, w.stored(), strict=True) if a != b}
    # the public POST /api/token issued one token, POST /api/password changed a password: each
    # with its audit record
    assert changed <= {"auth_token", "user_credential", "audit_record", "audit_head"}, changed


def test_no_role_reads_the_arm_of_a_slot_nobody_was_given(
    trial_of: Callable[[], Trial],
) -> None:
    """Allocation concealment: every actor asks for the audit trail of the next free slot of
    every stratum (and of a used one); the arm of a free slot is never in an answer, and the
    other reads of the API (participants, exports, summaries) never name a free slot's id."""
    trial = trial_of()
    w = trial.world
    with w.engine.connect() as conn:
        free = conn.execute(
            sa.select(AllocationSlot.id, AllocationSlot.arm)
            .where(AllocationSlot.participant_id.is_(None))
            .order_by(AllocationSlot.stratum, AllocationSlot.sequence)
        ).all()
        used = conn.scalar(
            sa.select(AllocationSlot.id).where(AllocationSlot.participant_id.is_not(None))
        )
    firsts = {slot_id: arm for slot_id, arm in free[:: max(1, len(free) // 30)]}
    assert len(firsts) >= 25 and used is not None
    wrong: list[str] = []
    for name in ACTORS:
        for slot_id, arm in firsts.items():
            r = w.client.get(f"/api/audit/allocation_slot/{slot_id}", headers=w.headers[name])
            if r.status_code == 200:
                arms = {e["data"].get("arm") for e in r.json()}
                if arms != {CONCEALED}:
                    wrong.append(f"{name} read slot {slot_id}'s arm: {sorted(map(str, arms))}")
            elif r.status_code not in (403, 404):
                wrong.append(f"{name} slot {slot_id}: {r.status_code} {r.text[:200]}")
            elif arm in r.text:
                wrong.append(f"{name} slot {slot_id}: a refusal naming the arm")
        r = w.client.get(f"/api/audit/allocation_slot/{used}", headers=w.headers[name])
        if r.status_code == 200 and name not in BLINDED:
            assert CONCEALED not in r.text, "a used slot's arm is shown"
    assert not wrong, "\n".join(wrong)
