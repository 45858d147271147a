"""Live consistency: ``audit verify`` and ``backup`` of a trial while many clients write to it.

Each run makes a fresh trial database (a sealed allocation list, a site coordinator per site),
starts ``stalwart serve`` on it, and lets ``--clients`` HTTP clients write through the API for
``--seconds``: each enrols participants at its site (``POST /api/screenings``, then
``POST /api/randomizations``, which opens a sealed slot) and enters unscheduled visits with
laboratory results for them (``POST /api/participants/{id}/unscheduled-visits``), every write
the service's full path (token check, edit checks, rows, audit chain append, commit). The
clients run in a process of their own, so the checks below do not take their CPU.

Meanwhile, in a loop until the writers stop, the check process runs what an operator would:

- ``verify_audit`` (``stalwart audit verify``): any finding is a false alarm, as nobody tampers;
- ``write_backup`` (``stalwart backup``): a refusal is counted; each file written is restored
  (``stalwart restore``) into a fresh SQLite database, and the restored data sha256 must equal
  the sha256 the backup reported for its snapshot.

Prints: runs, writes/s achieved, verifies and their false alarms, backups, backups refused, and
backups whose restore sha256 differs from their snapshot's sha256.

    python benchmarks/live_consistency.py --clients 50 --seconds 30 --runs 10
    python benchmarks/live_consistency.py --database postgresql+psycopg://root@127.0.0.1/test

``--database``: a PostgreSQL server URL whose user may create databases (each run's database is
created there and dropped after), or ``sqlite:///FOLDER`` (each run's database a file there).
``tests/reliability/test_rel_live_consistency.py`` runs a reduced version on both backends.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from stalwart.capture.audit import data_sha256, verify_audit
from stalwart.capture.db import create_schema, open_engine
from stalwart.capture.sealing import generate_allocation_key
from stalwart.capture.service import initialize_trial
from stalwart.capture.users import UserStore
from stalwart.cdisc.odm import write_backup
from stalwart.cdisc.odm_import import read_odm, restore_odm
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
LABS = {"CD4": 512, "CD4PCT": 28.5, "HIVRNA": "<50"}
VISITS_PER_ENROLMENT = 3
"""Unscheduled visits a client enters between two enrolments."""
SRC = Path(__file__).resolve().parents[1] / "src"


@dataclass
class RunFigures:
    """What one run measured."""

    writes: int = 0
    write_errors: int = 0
    seconds: float = 0.0
    verifies: int = 0
    false_alarms: list[str] = field(default_factory=list)
    backups: int = 0
    refused: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    records: list[int] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.writes / self.seconds if self.seconds else 0.0


# -- the writers (a process of their own) ---------------------------------------------------------
async def _send(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: str, body: dict[str, Any]
) -> tuple[int, bytes]:
    """One HTTP/1.1 POST on a kept-alive connection: status and body."""
    data = json.dumps(body).encode()
    writer.write(head.encode() + b"Content-Length: %d\r\n\r\n" % len(data) + data)
    lines = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    return int(lines[0].split(b" ", 2)[1]), await reader.readexactly(length)


async def _client(
    k: int, port: int, site: str, token: str, deadline: float, counts: list[int]
) -> None:
    """Enrol at ``site`` and enter unscheduled visits for its participants until ``deadline``;
    ``counts``: [writes answered 2xx, writes refused]."""
    await asyncio.sleep(k * 0.005)  # arrive over a moment, not in one burst
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    host = f"Host: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
    host += "Content-Type: application/json\r\n"
    mine: list[str] = []
    n = 0
    enrol = True
    try:
        while time.perf_counter() < deadline:
            if enrol or not mine:
                n += 1
                number = f"{site}-C{k:02d}-{n:05d}"
                status, _ = await _send(
                    reader,
                    writer,
                    f"POST /api/screenings HTTP/1.1\r\n{host}",
                    {
                        "site": site,
                        "screening_number": number,
                        "screening_date": "2006-01-02",
                        "answers": ANSWERS,
                    },
                )
                counts[0 if status == 201 else 1] += 1
                status, body = await _send(
                    reader,
                    writer,
                    f"POST /api/randomizations HTTP/1.1\r\n{host}",
                    {
                        "screening_number": number,
                        "consent_date": "2006-01-02",
                        "randomization_date": "2006-01-05",
                        "site": site,
                    },
                )
                counts[0 if status == 201 else 1] += 1
                if status == 201:
                    mine.append(json.loads(body)["usubjid"])
                enrol = status != 201 and not mine  # retry only while it has nobody
                continue
            usubjid = mine[n % len(mine)]
            n += 1
            status, _ = await _send(
                reader,
                writer,
                f"POST /api/participants/{usubjid}/unscheduled-visits HTTP/1.1\r\n{host}",
                {"visit_date": "2006-02-01", "labs": LABS, "reason": "safety check"},
            )
            counts[0 if status == 201 else 1] += 1
            enrol = n % (VISITS_PER_ENROLMENT + 1) == 0
    finally:
        writer.close()


def write_load(config: dict[str, Any]) -> dict[str, Any]:
    """Run the clients of ``config`` (port, sites, tokens, clients, seconds); the counts."""
    counts = [0, 0]
    sites: list[str] = config["sites"]
    tokens: dict[str, str] = config["tokens"]

    async def all_clients() -> float:
        start = time.perf_counter()
        deadline = start + float(config["seconds"])
        await asyncio.gather(
            *(
                _client(
                    k,
                    config["port"],
                    sites[k % len(sites)],
                    tokens[sites[k % len(sites)]],
                    deadline,
                    counts,
                )
                for k in range(int(config["clients"]))
            )
        )
        return time.perf_counter() - start

    seconds = asyncio.run(all_clients())
    return {"writes": counts[0], "errors": counts[1], "seconds": seconds}


# -- one run --------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _prepare(url: str, folder: Path) -> tuple[list[str], Path]:
    """A sealed trial with a coordinator per site: the site codes and the allocation key."""
    engine = open_engine(url)
    try:
        create_schema(engine)
        loaded = load_protocol()
        key_file = folder / "allocation.key"
        key = generate_allocation_key(key_file)
        initialize_trial(engine, loaded, seed=7, actor="benchmark", allocation_key=key)
        store = UserStore(engine, PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
        sites = [s.code for s in loaded.protocol.sites]
        for site in sites:
            store.add_user(f"coord.{site.lower()}", PASSWORD, "site_coordinator", "bench", site)
    finally:
        engine.dispose()
    return sites, key_file


@contextmanager
def _server(url: str, key_file: Path, workers: int, log: Path) -> Iterator[int]:
    """``stalwart serve`` on a free port, with the allocation key, once it answers."""
    import httpx2 as httpx

    port = _free_port()
    env = os.environ | {"PYTHONPATH": str(SRC), "STALWART_ALLOCATION_KEY": str(key_file)}
    with log.open("wb") as out:
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
                str(workers),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        for _ in range(600):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None:
                raise RuntimeError(f"the server stopped:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        else:
            raise RuntimeError("the server did not start")
        yield port
    finally:
        server.terminate()
        server.wait(timeout=30)


def _tokens(port: int, sites: list[str]) -> dict[str, str]:
    import httpx2 as httpx

    tokens = {}
    for site in sites:
        response = httpx.post(
            f"http://127.0.0.1:{port}/api/token",
            json={"username": f"coord.{site.lower()}", "password": PASSWORD},
            timeout=60,
        )
        response.raise_for_status()
        tokens[site] = response.json()["access_token"]
    return tokens


def _check_once(url: str, folder: Path, k: int, figures: RunFigures) -> None:
    """One verify and one backup, the backup restored and its sha256 compared."""
    engine = open_engine(url)
    try:
        report = verify_audit(engine)
        figures.verifies += 1
        if not report.ok:
            assert report.finding is not None
            figures.false_alarms.append(report.finding.message)
        file = folder / f"backup-{k}.odm.xml"
        try:
            backup = write_backup(engine, file)
        except Exception as exc:  # counted and named: a backup must not be refused
            figures.refused.append(f"{type(exc).__name__}: {exc}")
            return
    finally:
        engine.dispose()
    figures.backups += 1
    figures.records.append(backup.records)
    target = open_engine(f"sqlite:///{folder / f'restored-{k}.db'}")
    try:
        restore_odm(read_odm(file), target)
        restored = data_sha256(target)
    finally:
        target.dispose()
    if restored != backup.data_sha256:
        figures.mismatched.append(
            f"backup {k} ({backup.records} records): snapshot {backup.data_sha256[:16]}..., "
            f"restored {restored[:16]}..."
        )
    for suffix in ("", "-wal", "-shm"):
        Path(f"{folder / f'restored-{k}.db'}{suffix}").unlink(missing_ok=True)
    file.unlink()


def run_once(url: str, clients: int, seconds: float, workers: int, folder: Path) -> RunFigures:
    """One run on the empty database ``url``: writers for ``seconds`` while verify and backup
    loop; the figures."""
    sites, key_file = _prepare(url, folder)
    figures = RunFigures()
    with _server(url, key_file, workers, folder / "server.log") as port:
        config = {
            "port": port,
            "sites": sites,
            "tokens": _tokens(port, sites),
            "clients": clients,
            "seconds": seconds,
        }
        writers = subprocess.Popen(
            [sys.executable, __file__, "--write-load", json.dumps(config)],
            stdout=subprocess.PIPE,
            env=os.environ | {"PYTHONPATH": str(SRC)},
        )
        k = 0
        while writers.poll() is None:
            _check_once(url, folder, k, figures)
            k += 1
        out, _ = writers.communicate()
        if writers.returncode != 0:
            raise RuntimeError(f"the writers failed (exit {writers.returncode})")
        load = json.loads(out.decode().strip().splitlines()[-1])
        _check_once(url, folder, k, figures)  # and once more after the writes
    figures.writes, figures.write_errors = load["writes"], load["errors"]
    figures.seconds = load["seconds"]
    return figures


# -- databases ------------------------------------------------------------------------------------
@contextmanager
def fresh_database(base: str, folder: Path) -> Iterator[str]:
    """A new empty database on ``base``'s server (PostgreSQL) or in its folder (SQLite)."""
    parsed = make_url(base)
    name = f"stalwart_live_{uuid.uuid4().hex[:10]}"
    if parsed.get_backend_name() == "sqlite":
        yield f"sqlite:///{Path(parsed.database or folder) / f'{name}.db'}"
        return
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield parsed.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database",
        default=os.environ.get(
            "STALWART_TEST_PG_URL", "postgresql+psycopg://root@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--write-load", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write_load is not None:  # the writers' own process
        print(json.dumps(write_load(json.loads(args.write_load))))
        return

    runs: list[RunFigures] = []
    for run in range(args.runs):
        with (
            tempfile.TemporaryDirectory() as tmp,
            fresh_database(args.database, Path(tmp)) as url,
        ):
            figures = run_once(url, args.clients, args.seconds, args.workers, Path(tmp))
        runs.append(figures)
        print(
            f"run {run + 1}: {figures.writes} writes ({figures.write_errors} refused) in "
            f"{figures.seconds:.1f} s = {figures.rate:.0f} writes/s; {figures.verifies} verifies, "
            f"{len(figures.false_alarms)} false alarms; {figures.backups} backups "
            f"(records {min(figures.records, default=0)}..{max(figures.records, default=0)}), "
            f"{len(figures.refused)} refused, {len(figures.mismatched)} restore sha256 mismatches",
            flush=True,
        )
        for problem in figures.false_alarms + figures.refused + figures.mismatched:
            print(f"  {problem}", flush=True)
    writes = sum(r.writes for r in runs)
    seconds = sum(r.seconds for r in runs)
    backend = make_url(args.database).get_backend_name()
    print(
        f"{backend}, {args.clients} clients x {args.seconds:.0f} s, {args.workers} workers, "
        f"{os.cpu_count()} CPUs: runs {len(runs)}; writes/s achieved {writes / seconds:.0f} "
        f"(write errors {sum(r.write_errors for r in runs)}); verifies "
        f"{sum(r.verifies for r in runs)}, false alarms of verify "
        f"{sum(len(r.false_alarms) for r in runs)}; backups {sum(r.backups for r in runs)}, "
        f"backups refused {sum(len(r.refused) for r in runs)}, backups whose restore sha256 != "
        f"snapshot sha256 {sum(len(r.mismatched) for r in runs)}"
    )


if __name__ == "__main__":
    main()
