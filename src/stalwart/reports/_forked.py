"""Work for a report on the machine's second core: a function called in a forked child process.

A report's sections are pure functions of one snapshot read into memory, so a child computes
some of them while the parent computes the others, and the PDF's child imports WeasyPrint while
the parent reads the store. A :func:`fork_worker` child starts at once, runs ``prepare`` (the
imports its work needs), waits for one input, pickled through a pipe, and hands back ``fn`` of
it the same way. Fork starts a child in milliseconds with the parent's modules already loaded.
Where there is no fork (Windows), the process runs threads (a web server: forking copies no
thread, but may copy a lock another thread holds) or has one core only, nothing starts: ``fn``
is called in place, when the result is asked for.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Worker", "fork_worker"]

In = TypeVar("In")
Out = TypeVar("Out")

_PARENT_ENDS: set[int] = set()
"""The pipe ends this process holds to its workers; a new child closes its copies, so that
each worker sees the end of its input when the parent alone closes it."""


class Worker(Generic[In, Out]):
    """A child process that waits for one input and hands back ``fn`` of it (or, where forking
    is not safe, ``fn`` called here)."""

    def __init__(
        self, fn: Callable[[In], Out], pid: int | None, send: int | None, receive: int | None
    ) -> None:
        self._fn = fn
        self._pid, self._send, self._receive = pid, send, receive
        self._input: tuple[In] | None = None

    def send(self, value: In) -> None:
        """Hand ``value`` to the child (pickled), which starts on it."""
        if self._pid is None:
            self._input = (value,)
            return
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        with os.fdopen(self._take_send(), "wb") as pipe:
            pipe.write(data)

    def result(self) -> Out:
        """``fn`` of the value sent, made in the child; its exception is raised here."""
        if self._pid is None:
            if self._input is None:
                raise RuntimeError("Worker.result before Worker.send")
            return self._fn(self._input[0])
        if self._send is not None:
            raise RuntimeError("Worker.result before Worker.send")
        receive, self._receive = self._receive, None
        if receive is None:
            raise RuntimeError("Worker.result asked for twice, or after Worker.cancel")
        _PARENT_ENDS.discard(receive)
        with os.fdopen(receive, "rb") as pipe:
            data = pipe.read()
        self._reap()
        if not data:
            raise RuntimeError("the report's worker process ended without a result")
        ok, value = pickle.loads(data)
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    def call(self, value: In) -> Out:
        """:meth:`send`, then :meth:`result`."""
        self.send(value)
        return self.result()

    def cancel(self) -> None:
        """Drop the work: the child sees no input (or cannot hand back its result) and ends;
        it is reaped. Safe to call at any time, and more than once."""
        for end in (self._send, self._receive):
            if end is not None:
                _PARENT_ENDS.discard(end)
                os.close(end)
        self._send = self._receive = None
        self._reap()

    def _take_send(self) -> int:
        send, self._send = self._send, None
        if send is None:
            raise RuntimeError("Worker.send called twice, or after Worker.cancel")
        _PARENT_ENDS.discard(send)
        return send

    def _reap(self) -> None:
        if self._pid is not None and self._pid > 0:
            os.waitpid(self._pid, 0)
            self._pid = -1  # reaped: never waited for again, never computed in place


def _outcome(fn: Callable[[], Out]) -> tuple[bool, object]:
    try:
        return True, fn()
    except Exception as exc:  # handed to the parent, raised by Worker.result
        return False, exc


def fork_worker(
    prepare: Callable[[], object], fn: Callable[[In], Out], fork: bool = True
) -> Worker[In, Out]:
    """Start a child that calls ``prepare()`` (say, imports what ``fn`` needs) at once, then
    waits for :meth:`Worker.send`'s value. With ``fork`` false, or where forking is not safe,
    nothing starts and :meth:`Worker.result` calls ``fn`` here.

    The child shares the parent's memory as it was at the fork, changes nothing the parent sees,
    and leaves with ``os._exit`` (no ``atexit`` handler, no buffered output flushed twice).
    """
    if not (fork and hasattr(os, "fork") and threading.active_count() == 1 and _cores() > 1):
        return Worker(fn, None, None, None)
    input_read, input_write = os.pipe()
    output_read, output_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child process (coverage does not follow os._exit)
        try:
            for end in (input_write, output_read, *_PARENT_ENDS):
                os.close(end)
            _PARENT_ENDS.clear()
            with contextlib.suppress(Exception):  # a head start only: fn meets any failure
                prepare()
            with os.fdopen(input_read, "rb") as pipe:
                data = pipe.read()
            if data:
                _hand_back(output_write, _outcome(lambda: fn(pickle.loads(data))))
        finally:
            os._exit(0)
    os.close(input_read)
    os.close(output_write)
    _PARENT_ENDS.update((input_write, output_read))
    return Worker(fn, pid, input_write, output_read)


def _cores() -> int:
    """The cores this process may run on (a second process gains nothing on one)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


def _hand_back(end: int, outcome: tuple[bool, object]) -> None:
    """Write the pickled ``(ok, value)`` to the parent (the child side)."""
    try:
        data = pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        failure = RuntimeError(f"cannot hand back {outcome[1]!r}: {exc}")
        data = pickle.dumps((False, failure))
    with os.fdopen(end, "wb") as pipe:
        pipe.write(data)
