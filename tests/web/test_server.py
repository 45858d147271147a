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
