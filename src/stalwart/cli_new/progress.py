"""Progress of a long command, shown as it happens: a live display on a terminal, lines elsewhere.

A long command (``stalwart demo``, ``stalwart simulate``) reports its stages through one callback,
``progress(stage, done, total)``. On a terminal each stage is a rich progress bar that stays on the
screen when done, so the user sees what ran and how long it took. When the output is not a terminal
(a CI log, a pipe, ``nohup``) rich would draw nothing until the end, so each stage is printed
instead as plain lines, at its start, at every tenth of the way and at its end, each flushed at
once with the time since the command started.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

__all__ = ["ProgressCallback", "stage_progress"]

ProgressCallback = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: ``done`` of ``total`` steps of ``stage`` are complete."""


@contextmanager
def stage_progress(console: Console, width: int = 34) -> Iterator[ProgressCallback]:
    """A progress callback drawing on ``console``; see the module docstring."""
    if console.is_terminal:
        with _live(console, width) as callback:
            yield callback
    else:
        yield _lines(console, width)


@contextmanager
def _live(console: Console, width: int) -> Iterator[ProgressCallback]:
    with Progress(
        TextColumn(f"{{task.description:<{width}}}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        tasks: dict[str, object] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            task = tasks[stage]
            bar.update(task, completed=done, total=total)  # type: ignore[arg-type]
            if done >= total:
                bar.stop_task(task)  # type: ignore[arg-type]

        yield progress


def _lines(console: Console, width: int) -> ProgressCallback:
    started = time.perf_counter()
    shown: dict[str, int] = {}
    """Stage -> the last tenth of the way printed (-1: its start)."""

    def progress(stage: str, done: int, total: int) -> None:
        tenth = 10 if total <= 0 or done >= total else (10 * done) // total
        if stage in shown and tenth <= shown[stage]:
            return
        shown[stage] = tenth
        seconds = time.perf_counter() - started
        console.print(
            f"[{seconds:7.1f} s] {stage:<{width}} {done:>7}/{total}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
        console.file.flush()

    return progress
