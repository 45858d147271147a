"""No lost update over HTTP: 30 concurrent writes of one visit against ``stalwart serve`` with 2
workers, on both backends.

First entry: 30 ``POST``s of the same visit at once give exactly one 201 and 29 x 409. Then 30
``PUT``s, each a different CD4 value, all from the one version the same GET returned: exactly one
200 and 29 x 409 (``StaleVersionError``, naming the winner's change); the stored value is the
winner's, and the audit trail shows that one change.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import sqlalchemy as sa
from live_server import Databases, LiveServer, add_coordinators, bearer

from stalwart.capture.audit import verify_audit
from stalwart.capture.db import open_engine
from stalwart.capture.enrolment import Allocation
from stalwart.capture.service import CaptureService
from stalwart.capture.tables import AuditRecord, LabResult
from stalwart.protocol.load import LoadedProtocol

WRITERS = 30
CASES = [
    pytest.param("sqlite", id="sqlite-2workers"),
    pytest.param("postgresql", id="postgresql-2workers", marks=pytest.mark.postgres),
]


async def _at_once(
    base_url: str, method: str, path: str, bodies: list[dict[str, Any]], headers: dict[str, str]
) -> list[tuple[int, dict[str, Any]]]:
    """Every request sent at the same moment, each on its own connection."""
    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=len(bodies))
    gate = asyncio.Event()
    async with httpx.AsyncClient(
        base_url=base_url, limits=limits, timeout=httpx.Timeout(120.0)
    ) as client:

        async def send(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            await gate.wait()
            r = await client.request(method, path, json=body, headers=headers)
            try:
                return r.status_code, r.json()
            except ValueError:
                return r.status_code, {"text": r.text[:500]}

        tasks = [asyncio.create_task(send(b)) for b in bodies]
        await asyncio.sleep(0)
        gate.set()
        return list(await asyncio.gather(*tasks))


@pytest.mark.parametrize("backend", CASES)
def test_30_concurrent_writes_of_one_visit_let_exactly_one_through(
    backend: str,
    databases: Databases,
    packaged: LoadedProtocol,
    enrol: Callable[..., Allocation],
    tmp_path: Path,
) -> None:
    url = databases.new(backend, packaged, folder=tmp_path)
    server = LiveServer(url, workers=2, log_dir=tmp_path)
    try:
        engine = open_engine(url)
        try:
            a = enrol(CaptureService.open(engine, today=lambda: dt.date(2006, 12, 31)), "US01")
        finally:
            engine.dispose()
        user = add_coordinators(url, ["US01"])["US01"]
        server.start()
        headers = bearer(server.url, user)
        path = f"/api/participants/{a.usubjid}/visits/ENTRY"
        day = a.randomization_date.isoformat()
        first = [{"visit_date": day, "labs": {"CD4": 500 + i, "HIVRNA": 400}} for i in range(30)]
        entered = asyncio.run(_at_once(server.url, "POST", path, first, headers))
        log = server.log_text()
        assert Counter(s for s, _ in entered) == {201: 1, 409: WRITERS - 1}, (entered, log[-3000:])

        read = httpx.get(server.url + path, headers=headers)
        assert read.status_code == 200
        version = read.json()["version"]
        assert read.headers["ETag"] == f'"{version}"'
        bodies = [
            {
                "visit_date": day,
                "labs": {"CD4": 700 + i, "HIVRNA": 400},
                "reason": f"writer {i}",
                "version": version,
            }
            for i in range(WRITERS)
        ]
        replies = asyncio.run(_at_once(server.url, "PUT", path, bodies, headers))
        log = server.log_text()
        server.stop()
    finally:
        server.close()

    statuses = Counter(s for s, _ in replies)
    assert statuses == {200: 1, 409: WRITERS - 1}, (statuses, replies[:3], log[-3000:])
    [winner] = [i for i, (s, _) in enumerate(replies) if s == 200]
    for status, body in replies:
        if status == 409:
            error = body["error"]
            assert error["type"] == "StaleVersionError" and error["version"] == version, body
            [change] = error["changes"]
            assert change["field"] == "LAB.CD4" and change["now"] == str(700 + winner), change

    engine = open_engine(url)
    try:
        with engine.connect() as conn:
            stored = conn.scalar(
                sa.select(LabResult.value).where(LabResult.test_code == "CD4")
            )  # fmt: skip
            updates = conn.execute(
                sa.select(AuditRecord.data, AuditRecord.reason).where(
                    AuditRecord.action == "UPDATE", AuditRecord.table_name == "lab_result"
                )
            ).all()
        report = verify_audit(engine)
    finally:
        engine.dispose()
        databases.drop(url)
    assert stored == 700 + winner
    assert [(json.loads(d)["value"], r) for d, r in updates] == [(700 + winner, f"writer {winner}")]
    assert report.ok, report.finding
