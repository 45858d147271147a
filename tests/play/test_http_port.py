"""The HTTP capture port: the play's users log in to a live server and their refused writes come
back as the typed errors the server raised, with nothing written. Both backends."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from sqlalchemy.engine import Engine

from stalwart.capture.service import CaptureService
from stalwart.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    ValidationError,
)
from stalwart.play.http_port import HttpPort, LocalServer, create_play_users
from stalwart.play.sites import REVIEWER, coordinator_of

Answers = Callable[..., dict[str, object]]
Counts = Callable[[Engine], dict[str, int]]
D = dt.date


def test_http_port_writes_as_site_users_and_maps_errors(
    trial: CaptureService, engine: Engine, eligible_answers: Answers, row_counts: Counts
) -> None:
    protocol = trial.protocol
    credentials = create_play_users(engine, protocol)
    us, gb = coordinator_of("US01"), coordinator_of("GB01")
    assert {us, gb, REVIEWER} <= set(credentials)
    with LocalServer(engine) as server, HttpPort.login(server.url, protocol, credentials) as port:
        assert port.screen("US01", "US01-S1", D(2006, 1, 2), eligible_answers(), us)
        assert not port.screen("US01", "US01-S2", D(2006, 1, 2), eligible_answers(cd4=100.0), us)
        enrolled = port.randomize("US01-S1", D(2006, 1, 2), D(2006, 1, 5), us)
        assert enrolled.calendar.arm == enrolled.arm
        wk04 = enrolled.calendar.visit("WK04").target
        labs = {"CD4": 500, "CD4PCT": 30.0, "HIVRNA": "<50"}
        u = enrolled.usubjid
        port.record_visit(u, "WK04", wk04, labs, us)
        event = port.report_clinical_event(u, "PCP", D(2006, 3, 1), us)
        event_id = int(event["id"])  # type: ignore[index]
        assert port.pending_events(REVIEWER) == [event_id]

        before = row_counts(engine)
        refused: list[tuple[type[Exception], str, Callable[[], object]]] = [
            (ValidationError, "not met", lambda: port.randomize("US01-S2", wk04, wk04, us)),
            (ValidationError, "visit_code", lambda: port.record_visit(u, "WK99", wk04, labs, us)),
            (NotFoundError, "no randomized", lambda: port.record_visit(u, "WK08", wk04, labs, gb)),
            (ConflictError, "already", lambda: port.record_visit(u, "WK04", wk04, labs, us)),
            (ValidationError, "decision", lambda: port.review_event(event_id, "NO", "x", REVIEWER)),
            (AuthenticationError, "not logged in", lambda: port.pending_events("nobody")),
        ]  # fmt: skip
        for error, message, call in refused:
            with pytest.raises(error, match=message):
                call()
        assert row_counts(engine) == before
        port.review_event(event_id, "CONFIRMED", "source verified", REVIEWER)
        assert port.pending_events(REVIEWER) == []
    assert trial.reviews.status("test").confirmed == 1
