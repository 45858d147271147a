"""What the commands share: the consoles, the ``--database`` and ``--protocol`` options, the
translation of library errors into one message and an exit code, and opening a database."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

from stalwart.errors import StalwartError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = [
    "DatabaseOption",
    "ProtocolOption",
    "err_console",
    "friendly",
    "opened_engine",
    "out_console",
]

out_console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--database",
        "-d",
        envvar="STALWART_DATABASE_URL",
        help="SQLAlchemy URL, e.g. sqlite:///trial.db or postgresql+psycopg://user@host/db.",
    ),
]

ProtocolOption = Annotated[
    Path | None, typer.Option(help="Protocol .toml (default: the packaged STALWART protocol).")
]


def friendly(func: F) -> F:
    """Print a StalwartError as one message and exit with its code, instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except StalwartError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


@contextmanager
def opened_engine(database: str | None) -> Iterator[Engine]:
    """An engine on ``--database`` (or ``STALWART_DATABASE_URL``), disposed when done."""
    from stalwart.capture.db import open_engine, resolve_database_url

    engine = open_engine(resolve_database_url(database))
    try:
        yield engine
    finally:
        engine.dispose()
