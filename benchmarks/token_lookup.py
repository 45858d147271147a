"""What reading the token from the database on every request costs (no per-process cache).

Before, ``UserStore`` kept each token's lookup in process memory for 10 s, so a revoked token,
a deactivated account or a passed expiry could be honoured by another worker for up to 10 s.
Now every request reads its token (one indexed query joining the token, its account and site).
This prints, on SQLite (a file) and on PostgreSQL:

- ``lookup``: ``UserStore.actor_for_token`` alone, the database read each request now makes;
- ``cache``: what a cache hit cost (SHA-256 of the token and a dict lookup), the old fast path;
- ``GET /api/me``: a whole authenticated request through the app (ASGI, in process), the
  smallest route there is, so the read's share of a request is seen in proportion.

Each as mean, p50 and p99 in microseconds over ``--calls`` calls, single client.

    python benchmarks/token_lookup.py --calls 2000
    python benchmarks/token_lookup.py --pg-url postgresql+psycopg://root@127.0.0.1:5432/test

The PostgreSQL database is created and dropped by the script (skipped with ``--pg-url ''``).
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from stalwart.capture.db import create_schema, open_engine
from stalwart.capture.service import initialize_trial
from stalwart.capture.users import UserStore
from stalwart.protocol.load import load_protocol
from stalwart.web.app import create_app

PASSWORD = "a long benchmark password"
CHEAP = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def _timed(call: Callable[[], object], calls: int) -> tuple[float, float, float]:
    """Mean, p50, p99 of ``call`` in microseconds (after 50 warm-up calls)."""
    for _ in range(50):
        call()
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1e6)
    samples.sort()
    return statistics.fmean(samples), samples[len(samples) // 2], samples[int(len(samples) * 0.99)]


def _measure(url: str, calls: int) -> dict[str, tuple[float, float, float]]:
    engine = open_engine(url)
    try:
        create_schema(engine)
        initialize_trial(engine, load_protocol(), seed=7, actor="benchmark")
        users = UserStore(engine, CHEAP)
        users.add_user("bench.dm", PASSWORD, "data_manager", "benchmark")
        for i in range(200):  # other accounts' tokens, so the index has something to search
            users.add_user(f"other{i}", PASSWORD, "monitor", "benchmark")
        actor = users.authenticate("bench.dm", PASSWORD)
        token = users.issue_token(actor, "api").token
        cache = {(hashlib.sha256(token.encode()).hexdigest(), "api"): actor}
        results = {
            "lookup": _timed(lambda: users.actor_for_token(token, "api"), calls),
            "cache": _timed(
                lambda: cache[(hashlib.sha256(token.encode()).hexdigest(), "api")], calls
            ),
        }
        with TestClient(create_app(engine, hasher=CHEAP)) as client:
            headers = {"Authorization": f"Bearer {token}"}
            results["GET /api/me"] = _timed(lambda: client.get("/api/me", headers=headers), calls)
        return results
    finally:
        engine.dispose()


def main() -> None:
    """Run the measurements and print one line per backend and measure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--pg-url", default="postgresql+psycopg://root@127.0.0.1:5432/test")
    args = parser.parse_args()
    backends: list[tuple[str, str, Callable[[], None]]] = []
    folder = tempfile.TemporaryDirectory()
    backends.append(("sqlite", f"sqlite:///{Path(folder.name) / 'bench.db'}", lambda: None))
    if args.pg_url:
        name = f"bench_token_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(args.pg_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")

        def drop() -> None:
            with admin.connect() as conn:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            admin.dispose()

        url = make_url(args.pg_url).set(database=name).render_as_string(hide_password=False)
        backends.append(("postgresql", url, drop))
    print(f"{'backend':<12}{'measure':<14}{'mean us':>10}{'p50 us':>10}{'p99 us':>10}")
    try:
        for backend, url, _ in backends:
            for measure, (mean, p50, p99) in _measure(url, args.calls).items():
                print(f"{backend:<12}{measure:<14}{mean:>10.1f}{p50:>10.1f}{p99:>10.1f}")
    finally:
        for _, _, drop in backends:
            drop()
        folder.cleanup()


if __name__ == "__main__":
    main()
