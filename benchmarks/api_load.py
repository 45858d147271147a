"""API load: N concurrent clients posting visit forms to ``stalwart serve`` on PostgreSQL.

Prints writes/s and p50/p99 latency of ``POST /api/participants/{id}/visits/{code}`` (each one
a full service write: token check, edit checks, visit + results, audit chain append, commit),
and checks afterwards that the audit chain written by the concurrent clients verifies,
beside ``pgbench`` TPS (TPC-B-like, same client count) on the same PostgreSQL server in the same
run, and the ratio. Target at 50 clients: >= 30% of pgbench TPS and p99 < 50 ms.

    python benchmarks/api_load.py --clients 50 --seconds 10
    python benchmarks/api_load.py --pg-url postgresql+psycopg://root@127.0.0.1:5432/test

Needs a PostgreSQL server whose user may create databases, and ``pgbench`` on PATH. The
benchmark's databases are dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from stalwart.capture.audit import verify_audit
from stalwart.capture.db import create_schema, open_engine
from stalwart.capture.service import CaptureService, initialize_trial
from stalwart.capture.users import UserStore
from stalwart.protocol.calendar import participant_calendar
from stalwart.protocol.load import load_protocol

PASSWORD = "benchmark password"
ANSWERS = {
    "age": 35,
    "sex": "M",
    "hiv_positive": True,
    "cd4": 520.0,
    "hiv_rna": 20000.0,
    "on_continuous_art": False,
    "arv_within_12_months": False,
    "prior_il2": False,
    "haart_access": True,
    "prior_aids": False,
    "immunomodulator_8_weeks": False,
}
VISITS = ("ENTRY", "WK04", "WK08", "WK12", "WK16", "WK20", "WK24", "WK28", "WK32")


@dataclass
class Figures:
    writes: int
    seconds: float
    latencies_ms: list[float]
    errors: int

    @property
    def rate(self) -> float:
        return self.writes / self.seconds

    def quantile(self, q: float) -> float:
        data = sorted(self.latencies_ms)
        return data[min(len(data) - 1, int(q * len(data)))]


def _admin(pg_url: str) -> sa.Engine:
    return sa.create_engine(pg_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)


def _create_db(pg_url: str, name: str) -> str:
    with _admin(pg_url).connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    return make_url(pg_url).set(database=name).render_as_string(hide_password=False)


def _drop_db(pg_url: str, name: str) -> None:
    with _admin(pg_url).connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _prepare_trial(url: str, participants: int) -> list[tuple[str, str, str]]:
    """A trial with ``participants`` randomized and a data manager; the visit forms to post."""
    engine = open_engine(url)
    create_schema(engine)
    loaded = load_protocol()
    initialize_trial(engine, loaded, seed=7, actor="benchmark")
    service = CaptureService.open(engine)
    UserStore(engine).add_user("bench.dm", PASSWORD, "data_manager", "benchmark")
    sites = [s.code for s in loaded.protocol.sites]
    forms: list[tuple[str, str, str]] = []
    for i in range(participants):
        site = sites[i % len(sites)]
        number = f"B-{i:05d}"
        service.screen(site, number, _d("2006-01-02"), ANSWERS, "benchmark")
        a = service.randomize(number, _d("2006-01-02"), _d("2006-01-05"), "benchmark")
        calendar = participant_calendar(loaded.protocol, a.arm, a.randomization_date)
        for code in VISITS:
            forms.append((a.usubjid, code, calendar.visit(code).target.isoformat()))
    engine.dispose()
    # interleave participants so that concurrent clients write different participants
    forms.sort(key=lambda f: (VISITS.index(f[1]), f[0]))
    return forms


def _d(text: str) -> object:
    import datetime as dt

    return dt.date.fromisoformat(text)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _load(
    base: str, token: str, forms: list[tuple[str, str, str]], clients: int, seconds: float
) -> Figures:
    queue: asyncio.Queue[tuple[str, str, str]] = asyncio.Queue()
    for f in forms:
        queue.put_nowait(f)
    latencies: list[float] = []
    errors = 0
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors
        while time.perf_counter() < deadline and not queue.empty():
            usubjid, code, day = queue.get_nowait()
            body = {"visit_date": day, "labs": {"CD4": 512, "CD4PCT": 28.5, "HIVRNA": "<50"}}
            t0 = time.perf_counter()
            r = await http.post(
                f"/api/participants/{usubjid}/visits/{code}", json=body, headers=headers
            )
            latencies.append((time.perf_counter() - t0) * 1000)
            if r.status_code != 201:
                errors += 1

    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        elapsed = time.perf_counter() - start
    return Figures(len(latencies) - errors, elapsed, latencies, errors)


def _pgbench(pg_url: str, clients: int, seconds: int, scale: int) -> float:
    name = f"stalwart_pgbench_{uuid.uuid4().hex[:8]}"
    _create_db(pg_url, name)
    u = make_url(pg_url)
    conn = ["-h", u.host or "127.0.0.1", "-p", str(u.port or 5432), "-U", u.username or "root"]
    env = os.environ | ({"PGPASSWORD": u.password} if u.password else {})
    try:
        subprocess.run(
            ["pgbench", "-i", "-q", "-s", str(scale), *conn, name],
            check=True,
            capture_output=True,
            env=env,
        )
        out = subprocess.run(
            [
                "pgbench",
                "-c",
                str(clients),
                "-j",
                str(min(clients, os.cpu_count() or 2)),
                "-T",
                str(seconds),
                *conn,
                name,
            ],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        ).stdout
    finally:
        _drop_db(pg_url, name)
    match = re.search(r"tps = ([0-9.]+)", out)
    if match is None:
        raise RuntimeError(f"no TPS in pgbench output:\n{out}")
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--pg-url",
        default=os.environ.get(
            "STALWART_TEST_PG_URL", "postgresql+psycopg://root@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--participants", type=int, default=400)
    parser.add_argument("--pgbench-scale", type=int, default=10)
    args = parser.parse_args()

    name = f"stalwart_bench_{uuid.uuid4().hex[:8]}"
    url = _create_db(args.pg_url, name)
    server = None
    try:
        t0 = time.perf_counter()
        forms = _prepare_trial(url, args.participants)
        print(
            f"set-up: {args.participants} randomized participants, {len(forms)} visit forms "
            f"to post ({time.perf_counter() - t0:.1f} s)"
        )
        port = _free_port()
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "stalwart",
                "serve",
                "--database",
                url,
                "--port",
                str(port),
                "--workers",
                str(args.workers),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=os.environ | {"PYTHONPATH": str(Path(__file__).parents[1] / "src")},
        )
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise RuntimeError("the server did not start")
        token = httpx.post(
            f"{base}/api/token", json={"username": "bench.dm", "password": PASSWORD}
        ).json()["access_token"]
        # warm-up: every worker's pool and caches
        warm, forms = forms[: 2 * args.clients], forms[2 * args.clients :]
        asyncio.run(_load(base, token, warm, args.clients, 30))
        api = asyncio.run(_load(base, token, forms, args.clients, args.seconds))
        tps = _pgbench(args.pg_url, args.clients, max(1, round(args.seconds)), args.pgbench_scale)
        server.terminate()
        server.wait(timeout=20)
        server = None
        engine = open_engine(url)
        try:
            chain = verify_audit(engine)
        finally:
            engine.dispose()
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=20)
        _drop_db(args.pg_url, name)

    print(
        f"clients {args.clients}, uvicorn workers {args.workers}, {os.cpu_count()} CPUs, "
        f"{api.seconds:.1f} s"
    )
    print(
        f"API visit forms: {api.writes} written ({api.errors} errors), {api.rate:.0f} writes/s, "
        f"p50 {api.quantile(0.5):.1f} ms, p99 {api.quantile(0.99):.1f} ms, "
        f"mean {statistics.fmean(api.latencies_ms):.1f} ms"
    )
    print(
        f"pgbench (TPC-B-like, scale {args.pgbench_scale}, {args.clients} clients): {tps:.0f} TPS"
    )
    print(
        f"ratio API writes/s / pgbench TPS: {api.rate / tps:.1%} (target >= 30%); "
        f"p99 {'<' if api.quantile(0.99) < 50 else '>='} 50 ms"
    )
    print(
        f"audit chain after the concurrent writes: {chain.records} records, "
        f"{'verifies' if chain.ok else f'BROKEN: {chain.finding}'}"
    )


if __name__ == "__main__":
    main()
