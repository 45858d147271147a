"""How ``stalwart serve`` sizes each worker's PostgreSQL pool, and refuses a bad size."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from stalwart.cli import app
from stalwart.errors import ConfigurationError
from stalwart.web.server import POOL_SIZE, POOL_SIZE_ENV, pool_size


def test_pool_size_defaults_and_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(POOL_SIZE_ENV, raising=False)
    assert pool_size() == POOL_SIZE
    monkeypatch.setenv(POOL_SIZE_ENV, "9")
    assert pool_size() == 9


@pytest.mark.parametrize("text", ["0", "-1", "four", "2.5"])
def test_a_bad_pool_size_in_the_environment_is_refused(
    monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    monkeypatch.setenv(POOL_SIZE_ENV, text)
    with pytest.raises(ConfigurationError, match=POOL_SIZE_ENV):
        pool_size()


def test_serve_refuses_a_pool_size_below_one() -> None:
    result = CliRunner().invoke(
        app, ["serve", "--database", "sqlite:///nowhere.db", "--pool-size", "0"]
    )
    assert result.exit_code != 0
    assert "--pool-size must be at least 1" in result.output


def test_serve_help_names_the_default_pool_size() -> None:
    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    words = " ".join(result.output.replace("│", " ").split())
    assert f"{POOL_SIZE} unless given" in words


def test_blocking_calls_run_at_most_capacity_at_once_in_arrival_order() -> None:
    """The forms' service calls: no more at once than the pool has connections, first come
    first served (the pool itself serves its waiters in no order)."""
    import asyncio
    import threading
    import time

    from stalwart.web.deps import Blocking

    lock = threading.Lock()
    running = 0
    peak = 0
    started: list[int] = []

    def work(k: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
            started.append(k)
        time.sleep(0.02)
        with lock:
            running -= 1
        return k * k

    async def main(blocking: Blocking) -> list[int]:
        tasks = []
        for k in range(8):
            tasks.append(asyncio.create_task(blocking(work, k)))
            await asyncio.sleep(0)  # each call arrives after the one before
        return list(await asyncio.gather(*tasks))

    one_at_a_time = Blocking(1)
    assert asyncio.run(main(one_at_a_time)) == [k * k for k in range(8)]
    assert peak == 1 and started == list(range(8))
    # a second event loop (another test client, a restarted server) gets a limiter of its own
    started.clear()
    assert asyncio.run(main(one_at_a_time)) == [k * k for k in range(8)]
    assert started == list(range(8))
    assert asyncio.run(main(Blocking(2))) == [k * k for k in range(8)]
    assert peak == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, []),
        ("", []),
        ("127.0.0.1", ["127.0.0.1"]),
        (" 10.0.0.5 , 10.1.0.0/16,::1", ["10.0.0.5", "10.1.0.0/16", "::1"]),
        ("*", ["*"]),
    ],
)
def test_trusted_proxies_are_addresses_or_networks(text: str | None, expected: list[str]) -> None:
    from stalwart.web.server import trusted_proxies

    assert trusted_proxies(text) == expected


@pytest.mark.parametrize("text", ["proxy.example.org", "10.0.0.300", "10.0.0.5;rm", "1.2.3.4/99"])
def test_serve_refuses_a_forwarded_allow_ips_entry_that_is_no_address(text: str) -> None:
    result = CliRunner().invoke(
        app, ["serve", "--database", "sqlite:///nowhere.db", "--forwarded-allow-ips", text]
    )
    assert result.exit_code == 2
    words = " ".join(result.output.replace("│", " ").split())
    assert "--forwarded-allow-ips" in words and "is not an IP address or network" in words


def test_serve_passes_the_edge_options_to_uvicorn(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    """No proxy trusted unless named (uvicorn would trust 127.0.0.1 by default); Secure cookies
    reach each worker through the environment."""
    import uvicorn

    import stalwart.web.server as server
    from stalwart.web.server import SECURE_COOKIES_ENV

    seen: list[dict[str, object]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: seen.append(kw))
    monkeypatch.setattr(server, "check_database", lambda url: None)
    # serve sets these for its workers: restored after the test
    monkeypatch.setenv(SECURE_COOKIES_ENV, "")
    monkeypatch.setenv("STALWART_DATABASE_URL", "")
    runner = CliRunner()
    assert runner.invoke(app, ["serve", "--database", "sqlite:///x.db"]).exit_code == 0
    assert seen[-1]["proxy_headers"] is False
    import os

    assert os.environ[SECURE_COOKIES_ENV] == ""
    args = ["serve", "--database", "sqlite:///x.db", "--secure-cookies"]
    args += ["--forwarded-allow-ips", "10.0.0.5,10.1.0.0/16"]
    assert runner.invoke(app, args).exit_code == 0
    assert seen[-1]["proxy_headers"] is True
    assert seen[-1]["forwarded_allow_ips"] == ["10.0.0.5", "10.1.0.0/16"]
    assert os.environ[SECURE_COOKIES_ENV] == "1"
