"""Commands on the database itself: its schema revision, and upgrading an older one in place.

A trial database outlives stalwart releases. Every command refuses a database of an older
schema, naming ``stalwart db upgrade``; that command applies the missing migrations in one
transaction and records the upgrade in the audit trail. Back the database up first.
"""

from __future__ import annotations

from stalwart.cli.common import DatabaseOption, opened_engine, out_console

__all__ = ["db_status", "db_upgrade"]


def db_status(database: DatabaseOption = None) -> None:
    """Show the database's schema revision and this release's; exit 1 if they differ.

    Example: stalwart db status --database sqlite:///trial.db
    """
    import typer

    from stalwart.capture.upgrade import schema_state

    with opened_engine(database) as engine:
        state = schema_state(engine)
    heads = ", ".join(sorted(state.heads))
    out_console.print(f"database schema revision: {state.describe()}", highlight=False)
    out_console.print(f"this release's revision:  {heads}", highlight=False)
    if state.current:
        out_console.print("up to date", highlight=False)
        return
    if not state.found:
        out_console.print("no trial schema: run `stalwart init` or `stalwart restore`")
    elif state.newer:
        out_console.print("written by a newer stalwart: install that release to open it")
    else:
        out_console.print("older: back it up, then run `stalwart db upgrade --database URL`")
    raise typer.Exit(1)


def db_upgrade(database: DatabaseOption = None) -> None:
    """Upgrade an older trial database to this release's schema, in one transaction.

    Back it up first (`stalwart backup`). The upgrade is recorded in the audit trail; a
    database already at this release's schema is left as it is.

    Example: stalwart db upgrade --database postgresql://trial@db/stalwart
    """
    from stalwart.capture.upgrade import upgrade_schema

    with opened_engine(database) as engine:
        done = upgrade_schema(engine, "cli")
    after = ", ".join(sorted(done.after))
    if done.changed:
        before = ", ".join(sorted(done.before))
        out_console.print(f"schema upgraded from revision {before} to {after}", highlight=False)
    else:
        out_console.print(f"already at this release's schema (revision {after})", highlight=False)
