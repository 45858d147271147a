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

__all__ = ["Forked", "fork_call"]

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
    if not fork or not hasattr(os, "fork") or threading.active_count() > 1:
        return Forked(None, None, _outcome(fn))
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child process (coverage does not follow os._exit)
        try:
            os.close(read_end)
            ok, value = _outcome(fn)
            try:
                data = pickle.dumps((ok, value), protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as exc:
                failure = RuntimeError(f"cannot hand back {value!r}: {exc}")
                data = pickle.dumps((False, failure))
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(data)
        finally:
            os._exit(0)
    os.close(write_end)
    return Forked(pid, read_end, (False, None))
