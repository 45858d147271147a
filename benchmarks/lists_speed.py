"""Server time of the participant list and the status grid pages with 10,000 participants.

The rows are inserted directly with SQL in bulk (screening, participant, allocation slot, the
visits whose windows have passed, a signature on every other visit, a missed-visit form now and
then): the lists only read them, and going through the service would take an hour of audit
writes. The database is a throwaway (its audit trail does not cover these rows). Each page is
requested in process through the app (ASGI: routing, session check, the store's query,
rendering, no network) by a logged-in data manager; the figure is that request's wall time,
mean / p50 / max in milliseconds over ``--calls`` requests, target < 300 ms.

    python benchmarks/lists_speed.py                       # SQLite file, 10,000 participants
    python benchmarks/lists_speed.py --participants 10000 \\
        --pg-url postgresql+psycopg://root@127.0.0.1:5432/test

The PostgreSQL database is created and dropped by the script.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import re
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine, make_url

from stalwart.capture.db import create_schema, open_engine
from stalwart.capture.service import initialize_trial
from stalwart.capture.tables import (
    AllocationSlot,
    MissedVisit,
    Participant,
    Screening,
    Signature,
    Site,
    Visit,
)
from stalwart.capture.users import UserStore
from stalwart.protocol.load import load_protocol
from stalwart.web.app import create_app

PASSWORD = "a long benchmark password"
CHEAP = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
TODAY = dt.date(2009, 3, 1)
PAGES = (
    "/participants",
    "/participants?page=100",
    "/participants?sort=randomization_date&order=desc&page=150",
    "/participants?q=0042",
    "/participants?site=GB01&status=in+follow-up&sort=screening_number",
    "/participants-grid",
    "/participants-grid?page=150&sort=site",
    "/participants-grid?q=us01",
)


def _fill(engine: Engine, count: int, seed: int = 1) -> None:
    """``count`` randomized participants spread over 2006-2008 at the protocol's sites."""
    protocol = load_protocol().protocol
    draw = random.Random(seed)
    with engine.begin() as conn:
        sites = dict(conn.execute(sa.select(Site.code, Site.id)).all())
        codes = sorted(sites)
        screenings, participants, slots = [], [], []
        for i in range(1, count + 1):
            site = codes[i % len(codes)]
            day = dt.date(2006, 1, 2) + dt.timedelta(days=draw.randrange(3 * 365))
            screenings.append(
                {
                    "id": i,
                    "site_id": sites[site],
                    "screening_number": f"{site}-{i:05d}",
                    "screening_date": day,
                    "answers": {},
                    "eligible": True,
                    "reasons": [],
                }
            )
            participants.append(
                {
                    "id": i,
                    "usubjid": f"{protocol.study.id}-{site}-{i:05d}",
                    "site_id": sites[site],
                    "screening_id": i,
                    "consent_date": day,
                    "randomization_date": day,
                }
            )
            slots.append(
                {
                    "stratum": "benchmark",
                    "sequence": i,
                    "block": i // 4,
                    "block_size": 4,
                    "arm": protocol.arms[i % len(protocol.arms)].code,
                    "participant_id": i,
                }
            )
        conn.execute(sa.insert(Screening), screenings)
        conn.execute(sa.insert(Participant), participants)
        conn.execute(sa.insert(AllocationSlot), slots)
        visits, signatures, missed = [], [], []
        for p in participants:
            for v in protocol.visits:
                day = p["randomization_date"] + dt.timedelta(days=v.day)
                if day > TODAY:
                    break
                if draw.random() < 0.05:
                    missed.append(
                        {
                            "participant_id": p["id"],
                            "visit_code": v.code,
                            "reason": "did not come",
                            "recorded_on": TODAY,
                        }
                    )
                    continue
                visits.append({"participant_id": p["id"], "visit_code": v.code, "visit_date": day})
        conn.execute(sa.insert(Visit), visits)
        conn.execute(sa.insert(MissedVisit), missed)
        ids = conn.execute(sa.select(Visit.id, Visit.participant_id)).all()
        for visit_id, pid in ids[::2]:
            signatures.append(
                {
                    "visit_id": visit_id,
                    "participant_id": pid,
                    "signer": "inv",
                    "meaning": "I approve",
                    "signed_at": "2009-03-01T00:00:00Z",
                    "valid": True,
                }
            )
        conn.execute(sa.insert(Signature), signatures)
        print(f"  filled: {count} participants, {len(visits)} visits, {len(missed)} missed")


def _measure(url: str, count: int, calls: int) -> None:
    engine = open_engine(url)
    try:
        create_schema(engine)
        initialize_trial(engine, load_protocol(), seed=7, actor="benchmark")
        start = time.perf_counter()
        _fill(engine, count)
        print(f"  fill time: {time.perf_counter() - start:.1f} s")
        UserStore(engine, CHEAP).add_user("bench.dm", PASSWORD, "data_manager", "benchmark")
        with TestClient(create_app(engine, today=lambda: TODAY, hasher=CHEAP)) as client:
            match = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
            assert match is not None
            form = {"username": "bench.dm", "password": PASSWORD, "csrf_token": match.group(1)}
            assert client.post("/login", data=form, follow_redirects=False).status_code == 303
            print(f"  {'page':<66} {'mean':>7} {'p50':>7} {'max':>7}  (ms; target < 300)")
            for page in PAGES:
                response = client.get(page)  # warm-up; and it must be a real page
                assert response.status_code == 200, (page, response.text[-300:])
                assert "page " in response.text
                samples = []
                for _ in range(calls):
                    start = time.perf_counter()
                    client.get(page)
                    samples.append((time.perf_counter() - start) * 1000)
                samples.sort()
                print(
                    f"  {page:<66} {statistics.fmean(samples):7.1f} "
                    f"{samples[len(samples) // 2]:7.1f} {samples[-1]:7.1f}"
                )
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--pg-url", default="", help="PostgreSQL server (a database is made)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        print(f"SQLite, {args.participants} participants")
        _measure(f"sqlite:///{Path(folder) / 'lists.db'}", args.participants, args.calls)
    if args.pg_url:
        name = f"lists_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(args.pg_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            print(f"PostgreSQL, {args.participants} participants")
            url = make_url(args.pg_url).set(database=name)
            _measure(url.render_as_string(hide_password=False), args.participants, args.calls)
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
            admin.dispose()


if __name__ == "__main__":
    main()
