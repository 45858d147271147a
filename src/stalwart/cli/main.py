"""The ``stalwart`` command line: the Typer app, its command groups, and the entry point.

The commands live in ``trial`` (make, check and serve a database), ``design`` (before go-live)
and ``data`` (read data out or back in); each is one library call, wrapped by
``common.friendly`` so that errors raised on purpose by the library (``StalwartError``) print as
one clear message and exit with the error's ``exit_code``: 1, or 2 for unusable input datasets
(``DatasetError``), like usage errors (Typer's own, 2); a failed audit verification also exits 1.
"""

from __future__ import annotations

from typing import Annotated

import typer

from stalwart.cli import accounts, audit, data, database, design, trial
from stalwart.cli.common import friendly, out_console

__all__ = ["app", "main"]

app = typer.Typer(
    name="stalwart",
    help="Run the STALWART randomized trial end to end from one protocol file.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
audit_app = typer.Typer(
    help="The audit trail: verify its hash chain and the data it covers; sign checkpoints.",
    no_args_is_help=True,
)
randomization_app = typer.Typer(
    help="The randomization design: simulate it before go-live.", no_args_is_help=True
)
user_app = typer.Typer(help="User accounts of a trial database.", no_args_is_help=True)
db_app = typer.Typer(
    help="The database's schema: its revision, and upgrading an older one.", no_args_is_help=True
)
app.add_typer(audit_app, name="audit")
app.add_typer(randomization_app, name="randomization")
app.add_typer(user_app, name="user")
app.add_typer(db_app, name="db")

app.command("demo")(friendly(trial.demo))
app.command("init")(friendly(trial.init))
app.command("validate")(friendly(trial.validate_protocol))
audit_app.command("verify")(friendly(audit.audit_verify))
audit_app.command("checkpoint")(friendly(audit.audit_checkpoint))
audit_app.command("keygen")(friendly(audit.audit_keygen))
user_app.command("add")(friendly(trial.user_add))
user_app.command("list")(friendly(accounts.user_list))
user_app.command("reset-password")(friendly(accounts.user_reset_password))
user_app.command("deactivate")(friendly(accounts.user_deactivate))
user_app.command("reactivate")(friendly(accounts.user_reactivate))
app.command("serve")(friendly(trial.serve))
randomization_app.command("check")(friendly(design.randomization_check))
app.command("simulate")(friendly(design.simulate))
app.command("analyze")(friendly(data.analyze))
app.command("report")(friendly(data.report))
app.command("export")(friendly(data.export_))
app.command("import")(friendly(data.import_))
app.command("backup")(friendly(data.backup))
app.command("restore")(friendly(data.restore))
db_app.command("status")(friendly(database.db_status))
db_app.command("upgrade")(friendly(database.db_upgrade))


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Show the version.")] = False,
) -> None:
    if version:
        from stalwart import __version__

        out_console.print(f"stalwart {__version__}")
        raise typer.Exit(0)


def main() -> None:
    """Entry point of the ``stalwart`` script."""
    app(prog_name="stalwart")
