"""Account lifecycle: deactivation, role and site, password reset, tokens; each act audited.

Two ``UserStore`` objects over one database stand for two server processes: an act in one is
refused in the other on its very next lookup (no cache to age out).
"""

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
from stalwart.capture.tables import AuditRecord, UserCredential
from stalwart.capture.users import UserStore
from stalwart.errors import (
    AccessDeniedError,
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PasswordChangeRequiredError,
    ValidationError,
)

Counts = Callable[[Engine], dict[str, int]]
PASSWORD = "a long test password"
TEMPORARY = "a temporary password"
CHEAP = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture()
def stores(trial: CaptureService) -> tuple[UserStore, UserStore, Actor]:
    """Two processes' user stores over one database, and a signed-in admin."""
    here, there = UserStore(trial.engine, CHEAP), UserStore(trial.engine, CHEAP)
    here.add_user("boss", PASSWORD, "admin", "setup")
    here.add_user("coord", PASSWORD, "site_coordinator", "setup", site="GB01")
    return here, there, here.authenticate("boss", PASSWORD)


def _reasons(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [
            r or ""
            for r in conn.scalars(
                sa.select(AuditRecord.reason)
                .where(AuditRecord.table_name == "app_user")
                .order_by(AuditRecord.sequence)
            )
        ]


def test_deactivation_kills_every_token_in_every_process(
    stores: tuple[UserStore, UserStore, Actor], engine: Engine
) -> None:
    here, there, admin = stores
    coord = here.authenticate("coord", PASSWORD)
    api, page = here.issue_token(coord, "api"), here.issue_token(coord, "session")
    assert there.actor_for_token(api.token, "api")[0] == coord
    here.admin.set_active("coord", False, "left the study", admin)
    for token, kind in ((api.token, "api"), (page.token, "session")):
        with pytest.raises(AuthenticationError):
            there.actor_for_token(token, kind)
    with pytest.raises(AuthenticationError):
        there.authenticate("coord", PASSWORD)
    here.admin.set_active("coord", True, "came back", admin)
    with pytest.raises(AuthenticationError):  # the old tokens stay dead
        there.actor_for_token(api.token, "api")
    fresh = there.issue_token(there.authenticate("coord", PASSWORD), "api")
    assert here.actor_for_token(fresh.token, "api")[0] == coord
    reasons = _reasons(engine)
    assert any(
        r.startswith("account deactivated (2 tokens revoked): left the study") for r in reasons
    )
    assert any(r.startswith("account reactivated: came back") for r in reasons)
    assert verify_audit(engine).ok


def test_a_revoked_or_expired_token_is_refused_at_once_elsewhere(
    stores: tuple[UserStore, UserStore, Actor], engine: Engine
) -> None:
    here, there, admin = stores
    coord = here.authenticate("coord", PASSWORD)
    first, second = here.issue_token(coord, "api"), here.issue_token(coord, "api")
    there.actor_for_token(first.token, "api")
    listed = here.admin.tokens("coord", admin)
    assert [t.kind for t in listed] == ["api", "api"]
    assert all(first.token not in str(t) for t in listed)
    here.admin.revoke_token_id(listed[0].id, admin)
    with pytest.raises(AuthenticationError):
        there.actor_for_token(first.token, "api")
    assert there.actor_for_token(second.token, "api")[0] == coord  # the other one lives
    with pytest.raises(ConflictError, match="already revoked"):
        here.admin.revoke_token_id(listed[0].id, admin)
    with pytest.raises(NotFoundError, match="no token 99999"):
        here.admin.revoke_token_id(99999, admin)
    later = UserStore(engine, CHEAP, now=lambda: dt.datetime.now(dt.UTC) + dt.timedelta(days=31))
    with pytest.raises(AuthenticationError, match="expired"):
        later.actor_for_token(second.token, "api")
    here.revoke_token(second.token)  # the owner's own withdrawal
    reasons = _reasons(engine)
    assert f"api token {listed[0].id} revoked by boss" in reasons
    assert f"API token withdrawn (token {listed[1].id})" in reasons
    assert sum(r.startswith("API token issued") for r in reasons) == 2
    assert verify_audit(engine).ok


def test_role_and_site_change_apply_on_the_next_request(
    stores: tuple[UserStore, UserStore, Actor], engine: Engine
) -> None:
    here, there, admin = stores
    token = here.issue_token(here.authenticate("coord", PASSWORD), "api")
    account = here.admin.change_role("coord", "investigator", "US01", "promoted", admin)
    assert (account.role, account.site) == ("investigator", "US01")
    actor, _ = there.actor_for_token(token.token, "api")
    assert (actor.role, actor.site) == (Role.INVESTIGATOR, "US01")
    here.admin.change_role("coord", "monitor", None, "moved to monitoring", admin)
    assert there.actor_for_token(token.token, "api")[0].site is None
    assert any(r.startswith("role changed from investigator") for r in _reasons(engine))
    assert verify_audit(engine).ok


def test_a_reset_password_opens_only_the_change_password_step(
    stores: tuple[UserStore, UserStore, Actor], engine: Engine
) -> None:
    here, there, admin = stores
    old = here.issue_token(here.authenticate("coord", PASSWORD), "session")
    here.admin.reset_password("coord", TEMPORARY, admin)
    with pytest.raises(AuthenticationError):  # a reset revokes the sessions it may have leaked to
        there.actor_for_token(old.token, "session")
    with pytest.raises(PasswordChangeRequiredError, match="choose a new password"):
        there.authenticate("coord", TEMPORARY)
    with pytest.raises(AuthenticationError) as wrong:  # a wrong password says nothing more
        there.authenticate("coord", "not the temporary one")
    assert not isinstance(wrong.value, PasswordChangeRequiredError)
    with pytest.raises(ValidationError, match="other than the current"):
        there.change_password("coord", TEMPORARY, TEMPORARY)
    there.change_password("coord", TEMPORARY, "my very own password")
    assert there.authenticate("coord", "my very own password").username == "coord"
    assert [a.must_change_password for a in here.users(admin)] == [False, False]
    reasons = _reasons(engine)
    with engine.connect() as conn:
        audit = " ".join(conn.scalars(sa.select(AuditRecord.data))) + " ".join(reasons)
    assert TEMPORARY not in audit and "argon2" not in audit
    assert any("password reset by boss (credential " in r for r in reasons)
    assert verify_audit(engine).ok


def test_a_reset_gives_a_credential_to_an_account_without_one(
    stores: tuple[UserStore, UserStore, Actor], engine: Engine
) -> None:
    here, _, _ = stores
    with engine.begin() as conn:  # as after a restore: credentials are not in backups
        conn.execute(sa.delete(UserCredential))
    here.admin.reset_password("boss", TEMPORARY, "cli")
    with pytest.raises(PasswordChangeRequiredError):
        here.authenticate("boss", TEMPORARY)
    here.change_password("boss", TEMPORARY, "the admin's new password")
    assert here.authenticate("boss", "the admin's new password").role is Role.ADMIN


def test_the_list_shows_last_login(stores: tuple[UserStore, UserStore, Actor]) -> None:
    here, _, admin = stores
    here.issue_token(admin, "session")
    listed = {a.username: a for a in here.users(admin)}
    assert listed["boss"].last_login is not None and listed["coord"].last_login is None


@pytest.mark.parametrize(
    ("act", "error", "match"),
    [
        (lambda a, s: s.admin.set_active("coord", False, "  ", a), ValidationError, "reason"),
        (lambda a, s: s.admin.set_active("coord", False, "x" * 501, a), ValidationError, "500"),
        (lambda a, s: s.admin.set_active("ghost", False, "gone", a), NotFoundError, "no user"),
        (lambda a, s: s.admin.set_active("boss", False, "me", a), ConflictError, "own account"),
        (lambda a, s: s.admin.change_role("coord", "chief", None, "x", a), ValidationError, "role"),
        (
            lambda a, s: s.admin.change_role("coord", "investigator", None, "x", a),
            ValidationError,
            "site",
        ),
        (
            lambda a, s: s.admin.change_role("coord", "dsmb", "GB01", "x", a),
            ValidationError,
            "site",
        ),
        (
            lambda a, s: s.admin.change_role("coord", "monitor", "XX99", "x", a),
            NotFoundError,
            "XX99",
        ),
        (
            lambda a, s: s.admin.change_role("boss", "monitor", None, "x", a),
            ConflictError,
            "yourself",
        ),
        (lambda a, s: s.admin.reset_password("coord", "short", a), ValidationError, "password"),
        (lambda a, s: s.admin.reset_password("ghost", TEMPORARY, a), NotFoundError, "no user"),
        (lambda a, s: s.admin.tokens("ghost", a), NotFoundError, "no user"),
    ],
)
def test_bad_acts_are_refused_and_change_nothing(
    stores: tuple[UserStore, UserStore, Actor],
    engine: Engine,
    row_counts: Counts,
    act: Callable[[Actor, UserStore], object],
    error: type[Exception],
    match: str,
) -> None:
    here, _, admin = stores
    before = row_counts(engine)
    with pytest.raises(error, match=match):
        act(admin, here)
    assert row_counts(engine) == before


def test_only_an_admin_manages_accounts(stores: tuple[UserStore, UserStore, Actor]) -> None:
    here, _, _ = stores
    coord = here.authenticate("coord", PASSWORD)
    token = here.issue_token(coord, "api")
    token_id = here.admin.tokens("coord", "setup")[0].id
    for act in (
        lambda: here.admin.set_active("boss", False, "coup", coord),
        lambda: here.admin.change_role("coord", "admin", None, "coup", coord),
        lambda: here.admin.reset_password("boss", TEMPORARY, coord),
        lambda: here.admin.tokens(None, coord),
        lambda: here.admin.revoke_token_id(token_id, coord),
        lambda: here.users(coord),
    ):
        with pytest.raises(AccessDeniedError):
            act()
    assert here.actor_for_token(token.token, "api")[0] == coord
