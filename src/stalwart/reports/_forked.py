"""Work for a report on the machine's second core: a function called in a forked child process.

A report's sections are pure functions of one snapshot read into memory, so a child forked after
the read computes some of them while the parent computes the others, and hands its results back
pickled through a pipe. Fork shares the snapshot without copying it and starts in milliseconds;
where there is no fork (Windows) or the process runs threads (a web server: forking copies no
thread, but may copy a lock another thread holds), the function is called in place instead.
"""

from __future__ import annotations

import os
import pickle
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Forked", "Worker", "fork_call", "fork_worker"]

T = TypeVar("T")


class Forked(Generic[T]):
    """A call under way in a child process (or already made, where forking is not safe)."""

    def __init__(self, pid: int | None, pipe: int | None, done: tuple[bool, object]) -> None:
        self._pid, self._pipe, self._done = pid, pipe, done

    def result(self) -> T:
        """The call's return value; its exception is raised here."""
        if self._pipe is not None:
            with os.fdopen(self._pipe, "rb") as pipe:
                data = pipe.read()
            self._pipe = None
            self._wait()
            if not data:
                raise RuntimeError("the report's second process ended without a result")
            self._done = pickle.loads(data)
        ok, value = self._done
        if not ok:
            raise value  # type: ignore[misc]
        return value  # type: ignore[return-value]

    def cancel(self) -> None:
        """Drop the call: the child stops at its next write, and is reaped."""
        if self._pipe is not None:
            os.close(self._pipe)
            self._pipe = None
            self._wait()

    def _wait(self) -> None:
        if self._pid is not None:
            os.waitpid(self._pid, 0)
            self._pid = None


class Worker(Generic[T]):
    """A child process that prepares, then waits for one text and hands back what ``fn`` makes
    of it (or, where forking is not safe, ``fn`` called here)."""

    def __init__(
        self, fn: Callable[[str], T], pid: int | None, send: int | None, receive: int | None
    ) -> None:
        self._fn, self._send = fn, send
        self._result: Forked[T] = Forked(pid, receive, (False, None))

    def call(self, text: str) -> T:
        """``fn(text)``, made in the child."""
        if self._send is None:
            return self._fn(text)
        with os.fdopen(self._send, "wb") as pipe:
            self._send = None
            pipe.write(text.encode("utf-8"))
        return self._result.result()

    def cancel(self) -> None:
        """Let the child go without work (it sees an empty input), and reap it."""
        if self._send is not None:
            os.close(self._send)
            self._send = None
            self._result.cancel()


def _outcome(fn: Callable[[], T]) -> tuple[bool, object]:
    try:
        return True, fn()
    except Exception as exc:  # handed to the caller, raised by Forked.result
        return False, exc


def fork_call(fn: Callable[[], T], fork: bool = True) -> Forked[T]:
    """Start ``fn()`` in a forked child; :meth:`Forked.result` waits for it. With ``fork``
    false, or where forking is not safe, ``fn()`` is called here and now.

    The child shares the parent's memory as it was at the fork, changes nothing the parent sees,
    and leaves with ``os._exit`` (no ``atexit`` handler, no buffered output flushed twice).
    """
    if not _can_fork(fork):
        return Forked(None, None, _outcome(fn))
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child process (coverage does not follow os._exit)
        try:
            os.close(read_end)
            _hand_back(write_end, _outcome(fn))
        finally:
            os._exit(0)
    os.close(write_end)
    return Forked(pid, read_end, (False, None))


def fork_worker(
    prepare: Callable[[], object], fn: Callable[[str], T], fork: bool = True
) -> Worker[T]:
    """Start a child that calls ``prepare()`` (say, imports what ``fn`` needs) at once, then
    waits for :meth:`Worker.call`'s text. With ``fork`` false, or where forking is not safe,
    nothing starts and :meth:`Worker.call` calls ``fn`` here."""
    if not _can_fork(fork):
        return Worker(fn, None, None, None)
    text_read, text_write = os.pipe()
    result_read, result_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child process (coverage does not follow os._exit)
        try:
            os.close(text_write)
            os.close(result_read)
            prepare()
            with os.fdopen(text_read, "rb") as pipe:
                data = pipe.read()
            if data:
                text = data.decode("utf-8")
                _hand_back(result_write, _outcome(lambda: fn(text)))
        finally:
            os._exit(0)
    os.close(text_read)
    os.close(result_write)
    return Worker(fn, pid, text_write, result_read)


def _can_fork(fork: bool) -> bool:
    return fork and hasattr(os, "fork") and threading.active_count() == 1


def _hand_back(pipe_end: int, outcome: tuple[bool, object]) -> None:
    """Write the pickled ``(ok, value)`` to the parent (the child side)."""
    try:
        data = pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        failure = RuntimeError(f"cannot hand back {outcome[1]!r}: {exc}")
        data = pickle.dumps((False, failure))
    with os.fdopen(pipe_end, "wb") as pipe:
        pipe.write(data)
