"""API load: N concurrent clients posting visit forms to ``stalwart serve`` on PostgreSQL.

Prints writes/s and p50/p99 latency of ``POST /api/participants/{id}/visits/{code}`` (each one
a full service write: token check, edit checks, visit + results, audit chain append, commit),
and checks afterwards that the audit chain written by the concurrent clients verifies, beside,
on the same PostgreSQL server in the same run:

- ``pgbench`` TPS and p50/p99 (TPC-B-like, same client count): the reference of the target,
  at 50 clients >= 30% of pgbench TPS and p99 < 50 ms;
- ``pgbench`` running the visit write's own SQL (``VISIT_WRITE_SQL``: the statements
  ``CaptureService.record_visit`` sends, audit append and COMMIT included) from C at the same
  client count: what the database alone allows this transaction, whose audit-chain lock
  serializes every commit, whatever the layer above it does.

The clients form a closed loop (each posts its next form once answered), so p99 is at least
clients / writes per second (Little's law). ``--rate R`` adds an open-loop run: forms arrive at R
per second on the same connections and latency counts from each form's due time (no
coordinated omission), which says how fast a write is answered at a given load.

    python benchmarks/api_load.py --clients 50 --seconds 10
    python benchmarks/api_load.py --clients 50 --seconds 10 --rate 600 --pool-size 4
    python benchmarks/api_load.py --pg-url postgresql+psycopg://root@127.0.0.1:5432/test
    python benchmarks/api_load.py --clients 50 --checkpoint-records 100 --randomizations

``--checkpoint-records N`` adds the closed-loop run again on a server that signs an audit
checkpoint every N records, and ``--randomizations`` randomizations/s on a plain and on a sealed
allocation list: the cost of the signed checkpoints and of the encrypted slots, before and
after, in the same run.

Needs a PostgreSQL server whose user may create databases, and ``pgbench`` on PATH. The
benchmark's databases are dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
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
RAMP_SECONDS = 0.25
"""The clients open their connections over this time (see ``_load``)."""
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


def _d(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _post(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes, body: bytes
) -> int:
    """One HTTP/1.1 request on a kept-alive connection; the response's status code."""
    writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    lines = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
    fields = (line.partition(b":") for line in lines[1:])
    length = next((int(v) for k, _, v in fields if k.lower() == b"content-length"), None)
    if length is None:
        raise RuntimeError(f"a response without Content-Length: {lines[0]!r}")
    await reader.readexactly(length)
    return int(lines[0].split(b" ", 2)[1])


def _request(token: str, host: str, form: tuple[str, str, str]) -> tuple[bytes, bytes]:
    """The head (without Content-Length) and body of one visit form's POST."""
    usubjid, code, day = form
    head = (
        f"POST /api/participants/{usubjid}/visits/{code} HTTP/1.1\r\n"
        f"Host: {host}\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\n"
    ).encode()
    body = {"visit_date": day, "labs": {"CD4": 512, "CD4PCT": 28.5, "HIVRNA": "<50"}}
    return head, json.dumps(body).encode()


async def _load(
    base: str, token: str, forms: list[tuple[str, str, str]], clients: int, seconds: float
) -> Figures:
    """``clients`` keep-alive connections, each posting its next form as soon as the last one
    is answered (a closed loop), until ``seconds`` pass or the forms run out.

    The client writes raw HTTP/1.1 (a few microseconds a request) rather than through an HTTP
    library, whose per-request cost (about 1.5 ms of CPU with httpx) would take CPU from the
    server it measures on the same cores.
    """
    url = httpx.URL(base)
    queue: asyncio.Queue[tuple[str, str, str]] = asyncio.Queue()
    for f in forms:
        queue.put_nowait(f)
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def client(k: int) -> None:
        nonlocal errors
        # clients arrive over a quarter of a second, as people do, rather than in one burst
        # that the first worker to wake up would accept whole
        await asyncio.sleep(k * RAMP_SECONDS / clients)
        reader, writer = await asyncio.open_connection(url.host, url.port)
        try:
            while time.perf_counter() < deadline and not queue.empty():
                head, body = _request(token, f"{url.host}:{url.port}", queue.get_nowait())
                t0 = time.perf_counter()
                status = await _post(reader, writer, head, body)
                latencies.append((time.perf_counter() - t0) * 1000)
                if status != 201:
                    errors += 1
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    elapsed = time.perf_counter() - start
    return Figures(len(latencies) - errors, elapsed, latencies, errors)


async def _open_loop(
    base: str,
    token: str,
    forms: list[tuple[str, str, str]],
    clients: int,
    rate: float,
    seconds: float,
) -> Figures:
    """Forms due at ``rate`` per second for ``seconds``, each sent on the first free one of
    ``clients`` connections; a form's latency counts from when it was due, so time spent
    waiting for a free connection (the server being behind) is in it."""
    url = httpx.URL(base)
    idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(clients):
        idle.put_nowait(await asyncio.open_connection(url.host, url.port))
        await asyncio.sleep(RAMP_SECONDS / clients)
    latencies: list[float] = []
    errors = 0

    async def send(form: tuple[str, str, str], due: float) -> None:
        nonlocal errors
        head, body = _request(token, f"{url.host}:{url.port}", form)
        reader, writer = await idle.get()
        try:
            status = await _post(reader, writer, head, body)
        finally:
            idle.put_nowait((reader, writer))
        latencies.append((time.perf_counter() - due) * 1000)
        if status != 201:
            errors += 1

    count = min(len(forms), int(rate * seconds))
    start = time.perf_counter()
    tasks = []
    for i in range(count):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(forms[i], due)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    while not idle.empty():
        idle.get_nowait()[1].close()
    return Figures(len(latencies) - errors, elapsed, latencies, errors)


VISIT_WRITE_SQL = r"""
\set p random(1, :participants)
\set v random(1, 1000000000)
BEGIN;
SELECT participant.id, participant.randomization_date, allocation_slot.arm, site.code AS site,
  disposition.disposition_date AS ended, visit.id AS visit_id FROM participant
  JOIN allocation_slot ON allocation_slot.participant_id = participant.id
  JOIN site ON site.id = participant.site_id
  LEFT OUTER JOIN disposition ON disposition.participant_id = participant.id
  LEFT OUTER JOIN visit ON visit.participant_id = participant.id AND visit.visit_code = 'WK04'
  WHERE participant.id = :p;
INSERT INTO visit (participant_id, visit_code, visit_date) VALUES (:p, 'R' || :v, '2006-02-01')
  RETURNING visit.id, visit.participant_id, visit.visit_code, visit.visit_date \gset
INSERT INTO lab_result (visit_id, participant_id, test_code, value, unit, below_limit, limit_value)
  VALUES (:id, :p, 'CD4', 512, 'cells/mm3', false, NULL),
  (:id, :p, 'CD4PCT', 28.5, '%', false, NULL), (:id, :p, 'HIVRNA', NULL, 'copies/mL', true, 50)
  RETURNING id, visit_id, participant_id, test_code, value, unit, below_limit, limit_value;
SET LOCAL synchronous_commit TO off;
SELECT stalwart_audit_append('2026-12-06T12:00:00.000000+00:00', 'bench.dm', NULL, :items);
COMMIT;
BEGIN;
SELECT pg_logical_emit_message(true, 'stalwart.flush', '');
COMMIT;
"""
"""The SQL of one visit form as ``CaptureService.record_visit`` sends it (statement for
statement, the early release of the chain's lock and the wait for the flush included; the audit
payload has the same shape and size), for pgbench. pgbench reads one
statement a line, so the lines of each statement are joined before use."""


def _audit_items() -> str:
    """A payload of ``stalwart_audit_append``: a visit and three results, as the service sends."""
    items = []
    for table, rid, data in [
        ("visit", 1, {"id": 1, "participant_id": 1, "visit_code": "WK04", "visit_date": "x"}),
        *[
            (
                "lab_result",
                k,
                {
                    "id": k,
                    "visit_id": 1,
                    "participant_id": 1,
                    "test_code": "CD4",
                    "value": 512.0,
                    "unit": "cells/mm3",
                    "below_limit": False,
                    "limit_value": None,
                },
            )
            for k in (1, 2, 3)
        ],
    ]:
        text = json.dumps(data, sort_keys=True, separators=(",", ":"))
        middle = json.dumps(
            ["2026-12-06T12:00:00.000000+00:00", "bench.dm", "INSERT", table, rid, text, None],
            separators=(",", ":"),
        )[1:-1]
        items.append(["INSERT", table, rid, text, middle])
    return json.dumps(items)


def _visit_write_script(participants: int) -> str:
    """``VISIT_WRITE_SQL`` as pgbench reads it: one statement a line (``:items``, the audit
    payload, comes with ``-D``, a bound parameter as in the service)."""
    lines: list[str] = []
    for raw in VISIT_WRITE_SQL.strip().splitlines():
        if raw.startswith((" ", "\t")) and lines:
            lines[-1] += " " + raw.strip()
        else:
            lines.append(raw)
    return "\n".join(lines).replace(":participants", str(participants)) + "\n"


@dataclass
class Pgbench:
    tps: float
    p50_ms: float
    p99_ms: float


def _run_pgbench(
    pg_url: str, database: str, args: list[str], clients: int, seconds: int
) -> Pgbench:
    """One pgbench run with a per-transaction log, from which the latency quantiles come."""
    u = make_url(pg_url)
    conn = ["-h", u.host or "127.0.0.1", "-p", str(u.port or 5432), "-U", u.username or "root"]
    env = os.environ | ({"PGPASSWORD": u.password} if u.password else {})
    with tempfile.TemporaryDirectory() as folder:
        out = subprocess.run(
            [
                "pgbench",
                *args,
                "-c",
                str(clients),
                "-j",
                str(min(clients, os.cpu_count() or 2)),
                "-T",
                str(seconds),
                "-l",
                "--log-prefix",
                str(Path(folder) / "txn"),
                *conn,
                database,
            ],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        ).stdout
        # each log line: client_id transaction_no time_us script_no time_epoch time_us
        latencies = sorted(
            int(line.split()[2]) / 1000
            for log in Path(folder).glob("txn*")
            for line in log.read_text().splitlines()
        )
    match = re.search(r"tps = ([0-9.]+)", out)
    if match is None or not latencies:
        raise RuntimeError(f"no TPS in pgbench output:\n{out}")

    def q(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))]

    return Pgbench(float(match.group(1)), q(0.5), q(0.99))


def _pgbench(pg_url: str, clients: int, seconds: int, scale: int) -> Pgbench:
    """pgbench's TPC-B-like transaction in a database of its own."""
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
        return _run_pgbench(pg_url, name, [], clients, seconds)
    finally:
        _drop_db(pg_url, name)


def _pgbench_visit_writes(
    pg_url: str, database: str, participants: int, clients: int, seconds: int
) -> Pgbench:
    """pgbench sending the visit write's own SQL to the trial database (prepared statements)."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
        script.write(_visit_write_script(participants))
    try:
        options = ["-n", "-M", "prepared", "-f", script.name, "-D", f"items={_audit_items()}"]
        return _run_pgbench(pg_url, database, options, clients, seconds)
    finally:
        os.unlink(script.name)


def _serve(
    url: str, workers: int, pool_size: int | None, extra: tuple[str, ...] = ()
) -> tuple[subprocess.Popen[bytes], str]:
    """``stalwart serve`` on a free port, once it answers /healthz."""
    port = _free_port()
    command = [sys.executable, "-m", "stalwart", "serve", "--database", url, *extra]
    command += ["--port", str(port), "--workers", str(workers)]
    if pool_size is not None:
        command += ["--pool-size", str(pool_size)]
    server = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ | {"PYTHONPATH": str(Path(__file__).parents[1] / "src")},
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return server, base
        except httpx.HTTPError:
            time.sleep(0.1)
    server.terminate()
    raise RuntimeError("the server did not start")


def _connections_per_worker(base: str) -> str:
    """How the clients' connections are spread over the server's worker processes (``ss``)."""
    port = httpx.URL(base).port
    try:
        out = subprocess.run(
            ["ss", "-tnpH", "state", "established", f"( sport = :{port} )"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no ss)"
    pids = sorted(
        (line.split("pid=")[1].split(",")[0] for line in out.splitlines() if "pid=" in line),
    )
    counts = {pid: pids.count(pid) for pid in dict.fromkeys(pids)}
    return " / ".join(str(n) for n in sorted(counts.values(), reverse=True)) or "none"


async def _sample_spread(base: str, after: float) -> str:
    await asyncio.sleep(after)
    return await asyncio.to_thread(_connections_per_worker, base)


def _figures(label: str, f: Figures) -> str:
    return (
        f"{label}: {f.writes} written ({f.errors} errors), {f.rate:.0f} writes/s, "
        f"p50 {f.quantile(0.5):.1f} ms, p99 {f.quantile(0.99):.1f} ms, "
        f"mean {statistics.fmean(f.latencies_ms):.1f} ms"
    )


def _with_checkpoints(
    url: str, args: argparse.Namespace, forms: list[tuple[str, str, str]]
) -> tuple[tuple[Figures, int], list[tuple[str, str, str]]]:
    """The closed-loop run again, on a server that signs checkpoints as it goes."""
    from stalwart.capture.anchor import generate_keys

    with tempfile.TemporaryDirectory() as folder:
        key, cps = Path(folder) / "cp.key", Path(folder) / "cps"
        generate_keys(key, Path(folder) / "cp.pub")
        extra: tuple[str, ...] = ("--checkpoint-key", str(key), "--checkpoint-dir", str(cps))
        extra += ("--checkpoint-records", str(args.checkpoint_records))
        server, base = _serve(url, args.workers, args.pool_size, extra)
        try:
            token = httpx.post(
                f"{base}/api/token", json={"username": "bench.dm", "password": PASSWORD}
            ).json()["access_token"]
            warm, forms = forms[: 2 * args.clients], forms[2 * args.clients :]
            asyncio.run(_load(base, token, warm, args.clients, 30))
            figures = asyncio.run(_load(base, token, forms, args.clients, args.seconds))
        finally:
            server.terminate()
            server.wait(timeout=20)
        written = len(list(cps.glob("*.json")))
    return (figures, written), forms[figures.writes + figures.errors :]


async def _randomize_load(
    base: str, tokens: dict[str, str], clients: int, seconds: float
) -> tuple[Figures, int]:
    """``clients`` site coordinators, each screening and randomizing people at its site in a
    closed loop for ``seconds``; the randomizations (latency of the randomization POST only)
    and the screenings written."""
    url = httpx.URL(base)
    host = f"{url.host}:{url.port}"
    sites = sorted(tokens)
    latencies: list[float] = []
    refusals: Counter[str] = Counter()
    tag = uuid.uuid4().hex[:4].upper()  # screening numbers new in every call
    screenings = 0
    deadline = time.perf_counter() + seconds

    async def client(k: int) -> None:
        nonlocal screenings
        await asyncio.sleep(k * RAMP_SECONDS / clients)
        site = sites[k % len(sites)]
        auth = f"Host: {host}\r\nAuthorization: Bearer {tokens[site]}\r\n"
        auth += "Content-Type: application/json\r\n"
        reader, writer = await asyncio.open_connection(url.host, url.port)
        n = 0
        try:
            while time.perf_counter() < deadline:
                n += 1
                number = f"{site}-{tag}{k:02d}-{n:05d}"
                screening = {
                    "site": site,
                    "screening_number": number,
                    "screening_date": "2006-01-02",
                    "answers": ANSWERS,
                }
                head = f"POST /api/screenings HTTP/1.1\r\n{auth}".encode()
                status = await _post(reader, writer, head, json.dumps(screening).encode())
                if status != 201:
                    refusals[f"screening {status}"] += 1
                    continue
                screenings += 1
                body = {
                    "screening_number": number,
                    "consent_date": "2006-01-02",
                    "randomization_date": "2006-01-05",
                    "site": site,
                }
                head = f"POST /api/randomizations HTTP/1.1\r\n{auth}".encode()
                t0 = time.perf_counter()
                status = await _post(reader, writer, head, json.dumps(body).encode())
                latencies.append((time.perf_counter() - t0) * 1000)
                if status != 201:
                    refusals[f"randomization {status}"] += 1
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    elapsed = time.perf_counter() - start
    if refusals:
        print(f"refused: {dict(refusals)}", flush=True)
    errors = sum(n for what, n in refusals.items() if what.startswith("randomization"))
    return Figures(len(latencies) - errors, elapsed, latencies, errors), screenings


def _randomizations(pg_url: str, args: argparse.Namespace, sealed: bool) -> tuple[Figures, int]:
    """Randomizations through the API of a fresh trial, its allocation list sealed under an
    allocation key (each randomization decrypts its slot, AES-GCM) or plain."""
    from argon2 import PasswordHasher

    from stalwart.capture.sealing import generate_allocation_key

    name = f"stalwart_bench_{uuid.uuid4().hex[:8]}"
    url = _create_db(pg_url, name)
    try:
        with tempfile.TemporaryDirectory() as folder:
            engine = open_engine(url)
            try:
                create_schema(engine)
                loaded = load_protocol()
                key_file = Path(folder) / "allocation.key"
                key = generate_allocation_key(key_file) if sealed else None
                initialize_trial(engine, loaded, seed=7, actor="benchmark", allocation_key=key)
                store = UserStore(engine, PasswordHasher(time_cost=1, memory_cost=1024))
                sites = [s.code for s in loaded.protocol.sites]
                for site in sites:
                    store.add_user(f"coord.{site.lower()}", PASSWORD, "site_coordinator", "b", site)
            finally:
                engine.dispose()
            extra = ("--allocation-key", str(key_file)) if sealed else ()
            server, base = _serve(url, args.workers, args.pool_size, extra)
            try:
                tokens = {
                    site: httpx.post(
                        f"{base}/api/token",
                        json={"username": f"coord.{site.lower()}", "password": PASSWORD},
                    ).json()["access_token"]
                    for site in sites
                }
                asyncio.run(_randomize_load(base, tokens, args.clients, 2))  # warm-up
                return asyncio.run(_randomize_load(base, tokens, args.clients, args.seconds))
            finally:
                server.terminate()
                server.wait(timeout=20)
    finally:
        _drop_db(pg_url, name)


def _pooled(runs: list[tuple[Figures, int]]) -> tuple[Figures, int]:
    """Several runs' figures as one: writes, time and latencies added up."""
    return (
        Figures(
            sum(f.writes for f, _ in runs),
            sum(f.seconds for f, _ in runs),
            [x for f, _ in runs for x in f.latencies_ms],
            sum(f.errors for f, _ in runs),
        ),
        sum(n for _, n in runs),
    )


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
    parser.add_argument(
        "--pool-size", type=int, default=None, help="stalwart serve --pool-size (its default)"
    )
    parser.add_argument(
        "--rate", type=float, default=None, help="also an open-loop run at this many forms/s"
    )
    parser.add_argument(
        "--checkpoint-records",
        type=int,
        default=None,
        help="also a closed-loop run of a server that signs an audit checkpoint every this "
        "many records (serve --checkpoint-key): writes/s before and after, same run",
    )
    parser.add_argument(
        "--randomizations",
        action="store_true",
        help="also randomizations/s through the API on a plain and on a sealed allocation list "
        "(each randomization decrypts its slot), two runs of each in ABBA order: before and "
        "after, same run",
    )
    parser.add_argument("--participants", type=int, default=1000)
    parser.add_argument("--pgbench-scale", type=int, default=10)
    args = parser.parse_args()

    name = f"stalwart_bench_{uuid.uuid4().hex[:8]}"
    url = _create_db(args.pg_url, name)
    server = None
    seconds = max(1, round(args.seconds))
    opened: Figures | None = None
    signed: tuple[Figures, int] | None = None
    plain: tuple[Figures, int] | None = None
    sealed: tuple[Figures, int] | None = None
    try:
        t0 = time.perf_counter()
        forms = _prepare_trial(url, args.participants)
        print(
            f"set-up: {args.participants} randomized participants, {len(forms)} visit forms "
            f"to post ({time.perf_counter() - t0:.1f} s)"
        )
        server, base = _serve(url, args.workers, args.pool_size)
        token = httpx.post(
            f"{base}/api/token", json={"username": "bench.dm", "password": PASSWORD}
        ).json()["access_token"]
        # warm-up: every worker's pool and caches
        warm, forms = forms[: 2 * args.clients], forms[2 * args.clients :]
        asyncio.run(_load(base, token, warm, args.clients, 30))

        async def measured() -> tuple[Figures, str]:
            spread = asyncio.create_task(_sample_spread(base, min(2.0, args.seconds / 2)))
            figures = await _load(base, token, forms, args.clients, args.seconds)
            return figures, await spread

        api, spread = asyncio.run(measured())
        forms = forms[api.writes + api.errors :]
        if args.rate is not None:
            opened = asyncio.run(
                _open_loop(base, token, forms, args.clients, args.rate, args.seconds)
            )
        server.terminate()
        server.wait(timeout=20)
        server = None
        if args.checkpoint_records is not None:
            signed, forms = _with_checkpoints(url, args, forms)
        engine = open_engine(url)
        try:
            chain = verify_audit(engine)
        finally:
            engine.dispose()
        if args.randomizations:  # in ABBA order, so that drift of the host cancels
            runs: dict[bool, list[tuple[Figures, int]]] = {False: [], True: []}
            for is_sealed in (False, True, True, False):
                runs[is_sealed].append(_randomizations(args.pg_url, args, sealed=is_sealed))
            plain, sealed = _pooled(runs[False]), _pooled(runs[True])
        tpcb = _pgbench(args.pg_url, args.clients, seconds, args.pgbench_scale)
        replay = _pgbench_visit_writes(args.pg_url, name, args.participants, args.clients, seconds)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=20)
        _drop_db(args.pg_url, name)

    pool = args.pool_size if args.pool_size is not None else "default"
    print(
        f"clients {args.clients}, uvicorn workers {args.workers}, pool size {pool}, "
        f"{os.cpu_count()} CPUs, {api.seconds:.1f} s; connections per worker: {spread}"
    )
    print(_figures("API visit forms, closed loop", api))
    if signed is not None:
        figures, written = signed
        print(
            _figures(
                f"API visit forms, closed loop, checkpoint every {args.checkpoint_records} "
                f"records ({written} signed)",
                figures,
            )
        )
        print(f"writes/s with signed checkpoints / without: {figures.rate / api.rate:.1%}")
    if plain is not None and sealed is not None:
        for label, (figures, screened) in (("plain", plain), ("sealed", sealed)):
            print(
                _figures(f"API randomizations, {label} allocation list", figures)
                + f" (+ {screened / figures.seconds:.0f} screenings/s)"
            )
        print(f"randomizations/s sealed / plain: {sealed[0].rate / plain[0].rate:.1%}")
    if opened is not None:
        print(_figures(f"API visit forms, open loop at {args.rate:.0f}/s", opened))
    print(
        f"pgbench TPC-B-like (scale {args.pgbench_scale}, {args.clients} clients): "
        f"{tpcb.tps:.0f} TPS, p50 {tpcb.p50_ms:.1f} ms, p99 {tpcb.p99_ms:.1f} ms"
    )
    print(
        f"pgbench sending the visit write's SQL ({args.clients} clients): {replay.tps:.0f} TPS, "
        f"p50 {replay.p50_ms:.1f} ms, p99 {replay.p99_ms:.1f} ms"
    )
    print(
        f"ratio API writes/s / pgbench TPC-B TPS: {api.rate / tpcb.tps:.1%} (target >= 30%); "
        f"/ the visit write's SQL from pgbench: {api.rate / replay.tps:.1%}"
    )
    print(
        f"p99 (closed loop) {api.quantile(0.99):.1f} ms: "
        f"{'<' if api.quantile(0.99) < 50 else '>='} 50 ms; Little's law floor at "
        f"{api.rate:.0f} writes/s: {1000 * args.clients / api.rate:.0f} ms mean"
    )
    print(
        f"audit chain after the concurrent writes: {chain.records} records, "
        f"{'verifies' if chain.ok else f'BROKEN: {chain.finding}'}"
    )


if __name__ == "__main__":
    main()
