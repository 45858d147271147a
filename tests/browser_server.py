"""The browser tests' server: the app under a real uvicorn on a free loopback port.

Shared by the Playwright tests of ``tests/web`` (each builds its own trial and app), so that
starting, waiting for and stopping the server is written once.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn

CHROMIUM = os.environ.get("STALWART_CHROMIUM", "/usr/bin/chromium")
"""Debian's Chromium (never a downloaded one); another with ``STALWART_CHROMIUM``."""


def require_browser() -> None:
    """Skip without Playwright or Chromium; in CI (``CI=true``) fail instead: it must run there."""
    problem = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problem = "the playwright package is not installed (pip install -e '.[test]')"
    if problem is None and not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        problem = f"Chromium not found at {CHROMIUM}: apt-get install -y chromium"
    if problem:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(problem, pytrace=False)
        pytest.skip(problem)


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(app: Any, start_seconds: float = 20) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread; yields its base URL, stops it afterwards."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_seconds
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def artifact_folder(tmp_path: Path, name: str) -> Path:
    """Where a browser test's screenshots go: ``$STALWART_ARTIFACTS/<name>`` or ``tmp_path``."""
    root = os.environ.get("STALWART_ARTIFACTS")
    folder = (Path(root) if root else tmp_path) / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder
