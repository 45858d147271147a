"""A real ``stalwart serve`` process for the reliability tests, and helpers to talk to it.

``LiveServer(database_url, workers=K)`` runs ``python -m stalwart.cli serve`` (this checkout's
``src`` first on ``PYTHONPATH``) in its own process group on a free port, waits until every
worker has started and ``/healthz`` answers, and stops it (``stop``: SIGTERM, then SIGKILL) or
crashes it (``kill``: SIGKILL to the whole group, the uvicorn supervisor and its workers, and
waits until none of them runs). Use it as a context manager, or call ``close`` in a ``finally``:
no server outlives its test. The server's output goes to a log file whose tail is shown when it
fails to start.

``add_users(url, [(username, role, site), ...])`` creates accounts through
``capture.users.UserStore`` (real argon2id, cheap parameters; the server verifies any argon2
hash with the parameters stored in it) and ``token(base_url, username)`` logs in with
``POST /api/token``. All accounts share ``PASSWORD``.

This module is imported by test modules (it is not a conftest): plain functions and classes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Protocol

import httpx2 as httpx
from argon2 import PasswordHasher

from stalwart.capture.db import open_engine
from stalwart.capture.users import UserStore
from stalwart.protocol.load import LoadedProtocol

__all__ = [
    "PASSWORD",
    "SRC",
    "Databases",
    "LiveServer",
    "ServerError",
    "add_coordinators",
    "add_users",
    "bearer",
    "cli",
    "coordinator",
    "free_port",
    "subprocess_env",
    "token",
]

PASSWORD = "a long reliability password"
"""The password of every account ``add_users`` creates."""

SRC = Path(__file__).resolve().parents[2] / "src"
"""This checkout's sources: the server subprocess imports stalwart from here."""

_STARTED = "Application startup complete."
"""What each uvicorn worker logs once its app is up."""


class Databases(Protocol):
    """What the tests use of ``tests/conftest.py``'s ``databases`` fixture (a DatabaseFactory)."""

    def new(
        self, backend: str, protocol: LoadedProtocol | None = None, *, folder: Path | None = None
    ) -> str: ...

    def drop(self, url: str) -> None: ...


class ServerError(RuntimeError):
    """The server did not start, or did not stop."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on now (the server binds it shortly after)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def subprocess_env(database_url: str | None = None) -> dict[str, str]:
    """The environment of a stalwart subprocess: this checkout's ``src`` first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(SRC), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
    )
    env.pop("STALWART_DATABASE_URL", None)
    env.pop("STALWART_PASSWORD", None)
    if database_url is not None:
        env["STALWART_DATABASE_URL"] = database_url
    return env


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``python -m stalwart.cli ARGS`` from this checkout; output captured."""
    return subprocess.run(
        [sys.executable, "-m", "stalwart.cli", *args],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid`` (Linux ``/proc``)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def _signal(pgid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to the process group, gone or not."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class LiveServer:
    """``stalwart serve --database URL --port P --workers K`` as a child process group."""

    def __init__(
        self,
        database_url: str,
        workers: int = 1,
        host: str = "127.0.0.1",
        log_dir: Path | None = None,
        start_timeout: float = 90.0,
        options: Sequence[str] = (),
    ) -> None:
        self.database_url = database_url
        self.options = tuple(options)  # more ``stalwart serve`` options (--secure-cookies, ...)
        self.workers = workers
        self.host = host
        self.start_timeout = start_timeout
        self._log_dir = log_dir
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None
        self.starts = 0

    # -- properties ------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Base URL of the running server."""
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        """The pid of the supervisor (also the process group id)."""
        assert self.process is not None, "the server is not running"
        return self.process.pid

    def log_text(self) -> str:
        """Everything the current (or last) server process wrote."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def members(self) -> list[int]:
        """The live processes of the server's group: supervisor and workers."""
        return _group_members(self.pid) if self.process is not None else []

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> LiveServer:
        """Start on a free port; returns once every worker is up and ``/healthz`` says ok."""
        assert self.process is None, "already running"
        last = ""
        for _attempt in range(3):  # a free port can be taken before the server binds it
            try:
                self._start_once()
                return self
            except ServerError as exc:
                last = str(exc)
                self.close()
                if "address already in use" not in last.lower():
                    break
        raise ServerError(last)

    def _start_once(self) -> None:
        self.port = free_port(self.host)
        self.starts += 1
        folder = self._log_dir or Path(tempfile.gettempdir())
        self.log_path = folder / f"stalwart-serve-{os.getpid()}-{id(self)}-{self.starts}.log"
        command = [
            sys.executable,
            "-m",
            "stalwart.cli",
            "serve",
            "--database",
            self.database_url,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            *self.options,
        ]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=subprocess_env(),
                start_new_session=True,  # its own process group: one signal reaches every worker
            )
        deadline = time.monotonic() + self.start_timeout
        with httpx.Client(base_url=self.url, timeout=5) as client:
            while True:
                if self.process.poll() is not None:
                    raise ServerError(
                        f"stalwart serve exited with {self.process.returncode}:\n"
                        f"{self.log_text()[-3000:]}"
                    )
                if self.log_text().count(_STARTED) >= self.workers:
                    try:
                        if client.get("/healthz").status_code == 200:
                            return
                    except httpx.TransportError:
                        pass
                if time.monotonic() > deadline:
                    raise ServerError(
                        f"stalwart serve did not come up in {self.start_timeout:.0f} s:\n"
                        f"{self.log_text()[-3000:]}"
                    )
                time.sleep(0.05)

    def kill(self, timeout: float = 30.0) -> int:
        """SIGKILL the whole process group (a crash); waits until none of it runs.

        Returns the number of processes that were running when the signal was sent.
        """
        if self.process is None:
            return 0
        pgid = self.process.pid
        running = len(_group_members(pgid))
        _signal(pgid, signal.SIGKILL)
        self._reap(pgid, timeout)
        return running

    def stop(self, timeout: float = 15.0) -> None:
        """Graceful stop (SIGTERM to the group), then SIGKILL whatever is left."""
        if self.process is None:
            return
        pgid = self.process.pid
        _signal(pgid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=timeout)
        deadline = time.monotonic() + timeout
        while _group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _group_members(pgid):
            _signal(pgid, signal.SIGKILL)
        self._reap(pgid, timeout)

    def close(self) -> None:
        """Make sure nothing of the server runs (for ``finally`` blocks); never raises."""
        if self.process is None:
            return
        _signal(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(ServerError):
            self._reap(self.process.pid, 30.0)
        self.process = None

    def _reap(self, pgid: int, timeout: float) -> None:
        assert self.process is not None
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ServerError(f"stalwart serve (pid {pgid}) did not die") from None
        deadline = time.monotonic() + timeout
        while _group_members(pgid):
            if time.monotonic() > deadline:
                raise ServerError(
                    f"processes {_group_members(pgid)} of stalwart serve outlived the kill"
                )
            time.sleep(0.02)
        self.process = None

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.stop()
        finally:
            self.close()


# -- accounts -------------------------------------------------------------------------------------
def add_users(database_url: str, accounts: Iterable[tuple[str, str, str | None]]) -> list[str]:
    """Create ``(username, role, site)`` accounts with password ``PASSWORD``; their usernames."""
    engine = open_engine(database_url)
    try:
        store = UserStore(engine, PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
        return [
            store.add_user(name, PASSWORD, role, "test-setup", site=site).username
            for name, role, site in accounts
        ]
    finally:
        engine.dispose()


def coordinator(site: str) -> str:
    """The username ``add_coordinators`` gives the coordinator of ``site``."""
    return f"coord.{site.lower()}"


def add_coordinators(database_url: str, sites: Sequence[str]) -> dict[str, str]:
    """A site coordinator per site: site code -> username."""
    add_users(database_url, [(coordinator(s), "site_coordinator", s) for s in sites])
    return {s: coordinator(s) for s in sites}


def token(base_url: str, username: str, password: str = PASSWORD) -> str:
    """A bearer token of ``username`` from ``POST /api/token``."""
    with httpx.Client(base_url=base_url, timeout=60) as client:
        response = client.post("/api/token", json={"username": username, "password": password})
    if response.status_code != 201:
        raise ServerError(f"login of {username} failed: {response.status_code} {response.text}")
    return str(response.json()["access_token"])


def bearer(base_url: str, username: str) -> dict[str, str]:
    """The ``Authorization`` header of a fresh token of ``username``."""
    return {"Authorization": f"Bearer {token(base_url, username)}"}
