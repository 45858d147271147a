"""The account commands: list, reset-password, deactivate, reactivate, each audited.

They act as the trusted ``cli`` actor on both backends; a bad name is one message and exit 1,
never a traceback, and changes no row.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from argon2 import PasswordHasher
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from stalwart.capture.audit import verify_audit
from stalwart.capture.service import CaptureService
from stalwart.capture.users import UserStore
from stalwart.cli import app
from stalwart.errors import AuthenticationError, PasswordChangeRequiredError

runner = CliRunner()
PASSWORD = "the original password"
TEMPORARY = "a temporary password"


def _users(engine: Engine) -> UserStore:
    return UserStore(engine, PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


def test_reset_password_list_deactivate_reactivate(
    trial: CaptureService, engine: Engine, db_url: str
) -> None:
    users = _users(engine)
    users.add_user("alice", PASSWORD, "admin", "setup")
    users.add_user("bob", PASSWORD, "monitor", "setup")
    token = users.issue_token(users.authenticate("bob", PASSWORD), "api")

    env = {"STALWART_PASSWORD": TEMPORARY}
    reset = runner.invoke(
        app, ["user", "reset-password", "-d", db_url, "--username", "Alice"], env=env
    )
    assert reset.exit_code == 0, reset.output
    assert "must be changed at the next login" in reset.output
    with pytest.raises(PasswordChangeRequiredError):
        users.authenticate("alice", TEMPORARY)

    listed = runner.invoke(app, ["user", "list", "-d", db_url])
    assert listed.exit_code == 0, listed.output
    assert "must change password" in listed.output and "bob" in listed.output

    off = runner.invoke(app, ["user", "deactivate", "-d", db_url, "-u", "bob", "--reason", "left"])
    assert off.exit_code == 0, off.output
    with pytest.raises(AuthenticationError):
        users.actor_for_token(token.token, "api")
    on = runner.invoke(app, ["user", "reactivate", "-d", db_url, "-u", "bob"])
    assert on.exit_code == 0, on.output
    assert users.authenticate("bob", PASSWORD).username == "bob"
    assert verify_audit(engine).ok


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["user", "deactivate", "-u", "ghost"], "no user 'ghost'"),
        (["user", "reactivate", "-u", "ghost"], "no user 'ghost'"),
        (["user", "reset-password", "-u", "alice"], "use at least 12 characters"),
        (["user", "deactivate", "-u", "alice", "--reason", " "], "reason"),
    ],
)
def test_bad_input_is_one_message_and_changes_nothing(
    trial: CaptureService,
    engine: Engine,
    db_url: str,
    row_counts: Callable[[Engine], dict[str, int]],
    args: list[str],
    message: str,
) -> None:
    _users(engine).add_user("alice", PASSWORD, "admin", "setup")
    before = row_counts(engine)
    result = runner.invoke(app, [*args, "-d", db_url], env={"STALWART_PASSWORD": "short"})
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output
    assert row_counts(engine) == before
