"""Reliability fixtures shared by the suite's modules.

``open_world(build, backend, folder)``
    A context manager: a fresh trial database of ``backend`` (``"sqlite"`` or ``"postgresql"``)
    from the packaged protocol, handed to ``build`` (``rel_fixtures.build_world`` or
    ``rel_catalogue.build_world``) with the session's ``today``, ``enrol`` and
    ``eligible_answers``; the database is dropped on exit, whatever happened inside.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from rel_fixtures import Build, OpenWorld

from stalwart.protocol.load import LoadedProtocol

W = TypeVar("W")


@pytest.fixture(scope="session")
def open_world(
    databases: Any,
    packaged: LoadedProtocol,
    today: dt.date,
    enrol: Callable[..., Any],
    eligible_answers: Callable[..., dict[str, object]],
) -> OpenWorld[Any]:
    """See the module docstring."""

    @contextmanager
    def opened(build: Build[W], backend: str, folder: Path) -> Iterator[W]:
        url = databases.new(backend, packaged, folder=folder)
        try:
            with build(url, today, enrol, eligible_answers) as world:
                yield world
        finally:
            databases.drop(url)

    return opened
