"""User accounts: argon2 password hashes kept out of the audit trail, tokens stored hashed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from sqlalchemy.engine import Engine

from stalwart.capture.access import Actor, Role
from stalwart.capture.audit import verify_audit
from stalwart.capture.service import CaptureService
from stalwart.capture.tables import AuditRecord, AuthToken, UserCredential
from stalwart.capture.users import UserStore
from stalwart.errors import (
    AccessDeniedError,
    AuthenticationError,
    ConflictError,
    NotFoundError,
    ValidationError,
)

Counts = Callable[[Engine], dict[str, int]]
PASSWORD = "correct horse battery"


@pytest.fixture()
def users(trial: CaptureService) -> UserStore:
    # real argon2id, cheap parameters so that tests stay fast
    return UserStore(trial.engine, PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


def test_add_and_authenticate(users: UserStore, engine: Engine) -> None:
    account = users.add_user("Coord.GB", PASSWORD, "site_coordinator", "cli", site="GB01")
    assert (account.username, account.role, account.site) == (
        "coord.gb",
        "site_coordinator",
        "GB01",
    )
    actor = users.authenticate("coord.gb", PASSWORD)
    assert actor == Actor("coord.gb", Role.SITE_COORDINATOR, "GB01", account.id)
    with engine.connect() as conn:
        digest = conn.scalar(sa.select(UserCredential.password_hash))
        audit = conn.execute(
            sa.select(AuditRecord.data).where(AuditRecord.table_name == "app_user")
        ).scalar_one()
    assert digest is not None and digest.startswith("$argon2id$") and PASSWORD not in digest
    assert "argon2" not in audit and PASSWORD not in audit
    assert verify_audit(engine).ok


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"role": "coordinator", "site": "GB01"}, "role"),
        ({"role": "site_coordinator"}, "site"),
        ({"role": "data_manager", "site": "GB01"}, "site"),
        ({"role": "admin", "password": "short"}, "password"),
        ({"role": "admin", "username": "Bad Name!"}, "username"),
    ],
)
def test_bad_accounts_are_refused(
    users: UserStore, engine: Engine, row_counts: Counts, kwargs: dict[str, str], field: str
) -> None:
    before = row_counts(engine)
    args = {"username": "someone", "password": PASSWORD} | kwargs
    with pytest.raises(ValidationError) as info:
        users.add_user(args.pop("username"), args.pop("password"), args.pop("role"), "cli", **args)
    assert info.value.field == field
    assert row_counts(engine) == before


def test_unknown_site_duplicate_user_and_permission(users: UserStore) -> None:
    with pytest.raises(NotFoundError, match="no site 'XX01'"):
        users.add_user("a", PASSWORD, "investigator", "cli", site="XX01")
    users.add_user("a", PASSWORD, "admin", "cli")
    with pytest.raises(ConflictError, match="already exists"):
        users.add_user("A", PASSWORD, "admin", "cli")
    coord = Actor("c", Role.SITE_COORDINATOR, "GB01", 9)
    with pytest.raises(AccessDeniedError):
        users.add_user("b", PASSWORD, "admin", coord)


def test_wrong_password_and_inactive_user(users: UserStore) -> None:
    users.add_user("mon", PASSWORD, "monitor", "cli")
    for name, password in (("mon", "wrong password"), ("nobody", PASSWORD)):
        with pytest.raises(AuthenticationError, match="unknown user or wrong password"):
            users.authenticate(name, password)
    token = users.issue_token(users.authenticate("mon", PASSWORD), "api")
    users.set_active("mon", False, "left the study", "cli")
    with pytest.raises(AuthenticationError):
        users.authenticate("mon", PASSWORD)
    with pytest.raises(AuthenticationError):
        users.actor_for_token(token.token, "api")


def test_tokens_are_stored_hashed_and_expire(users: UserStore, engine: Engine) -> None:
    users.add_user("dm", PASSWORD, "data_manager", "cli")
    actor = users.authenticate("dm", PASSWORD)
    session = users.issue_token(actor, "session")
    api = users.issue_token(actor, "api")
    assert session.csrf_token and api.csrf_token is None
    assert users.actor_for_token(session.token, "session") == (actor, session.csrf_token)
    assert users.actor_for_token(api.token, "api") == (actor, None)
    with pytest.raises(AuthenticationError):  # a session is not an API token
        users.actor_for_token(session.token, "api")
    with engine.connect() as conn:
        stored = set(conn.scalars(sa.select(AuthToken.token_sha256)))
    assert session.token not in stored and api.token not in stored
    users.revoke_token(api.token)
    with pytest.raises(AuthenticationError):
        users.actor_for_token(api.token, "api")
    later = UserStore(
        engine, users.hasher, now=lambda: dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    )
    with pytest.raises(AuthenticationError, match="expired"):
        later.actor_for_token(session.token, "session")
    assert UserStore.csrf_matches(session.csrf_token, session.csrf_token)
    assert not UserStore.csrf_matches(session.csrf_token, "forged")
    assert not UserStore.csrf_matches(None, None)


def test_change_password(users: UserStore, engine: Engine) -> None:
    users.add_user("inv", PASSWORD, "investigator", "cli", site="US01")
    with pytest.raises(AuthenticationError):
        users.change_password("inv", "not it at all", "another password 1")
    users.change_password("inv", PASSWORD, "another password 1")
    users.authenticate("inv", "another password 1")
    assert verify_audit(engine).ok
