"""Commands of the account lifecycle: user list, reset-password, deactivate, reactivate.

Run by whoever runs the database (the trusted ``cli`` actor), so that a trial whose accounts
cannot log in (after ``stalwart restore``: credentials are not in backups) is reopened by its
own accounts, keeping who did what continuous in the audit trail. Each act is audited.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from stalwart.cli.common import DatabaseOption, opened_engine, out_console

__all__ = ["user_deactivate", "user_list", "user_reactivate", "user_reset_password"]

UsernameOption = Annotated[str, typer.Option("--username", "-u", help="Login name.")]
ReasonOption = Annotated[
    str, typer.Option("--reason", help="Why (recorded in the audit trail).", show_default=False)
]


def user_list(database: DatabaseOption = None) -> None:
    """List the user accounts: role, site, active, last login, a pending password reset.

    Example: stalwart user list --database sqlite:///trial.db
    """
    from stalwart.capture.service import CaptureService
    from stalwart.capture.users import UserStore

    with opened_engine(database) as engine:
        CaptureService.open(engine)
        accounts = UserStore(engine).users("cli")
    rows = [("username", "role", "site", "active", "last login (UTC)", "note")]
    for a in accounts:
        login = (a.last_login or "never")[:16].replace("T", " ")
        note = "must change password" if a.must_change_password else ""
        rows.append((a.username, a.role, a.site or "-", "yes" if a.active else "no", login, note))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        out_console.print(line.rstrip(), highlight=False, markup=False, soft_wrap=True)


def user_reset_password(username: UsernameOption, database: DatabaseOption = None) -> None:
    """Set a temporary password (from STALWART_PASSWORD or a prompt) to be changed at login.

    Every token of the account is revoked. This is how a restored database, whose credentials
    were not in the backup, is reopened by its own accounts.

    Example: stalwart user reset-password --database sqlite:///trial.db --username alice
    """
    from stalwart.capture.service import CaptureService
    from stalwart.capture.users import UserStore

    password = os.environ.get("STALWART_PASSWORD") or typer.prompt(
        f"temporary password for {username}", hide_input=True, confirmation_prompt=True
    )
    with opened_engine(database) as engine:
        CaptureService.open(engine)
        UserStore(engine).admin.reset_password(username, password, "cli")
    out_console.print(
        f"password of {username.strip().lower()} reset: it must be changed at the next login"
    )


def _set_active(database: str | None, username: str, active: bool, reason: str) -> None:
    from stalwart.capture.service import CaptureService
    from stalwart.capture.users import UserStore

    with opened_engine(database) as engine:
        CaptureService.open(engine)
        UserStore(engine).admin.set_active(username, active, reason, "cli")


def user_deactivate(
    username: UsernameOption,
    database: DatabaseOption = None,
    reason: ReasonOption = "deactivated from the command line",
) -> None:
    """Deactivate an account: every token and page session it holds is refused at once.

    Example: stalwart user deactivate --database sqlite:///trial.db --username bob --reason "left"
    """
    _set_active(database, username, False, reason)
    out_console.print(f"{username.strip().lower()} deactivated; its tokens are revoked")


def user_reactivate(
    username: UsernameOption,
    database: DatabaseOption = None,
    reason: ReasonOption = "reactivated from the command line",
) -> None:
    """Reactivate an account (it logs in again; its old tokens stay revoked).

    Example: stalwart user reactivate --database sqlite:///trial.db --username bob
    """
    _set_active(database, username, True, reason)
    out_console.print(f"{username.strip().lower()} reactivated")
