"""Play the simulated sites through a server's HTTP API (``stalwart demo --via-http``).

``HttpPort`` is the capture port of ``simulate.sites`` over the JSON API: each actor of the play
(a coordinator per site, the endpoint reviewer) is a real user account that logged in with its
password and sends its bearer token, so the server's authentication, role and site-scope checks,
request validation and error mapping all run on every form. An API error comes back as the
typed stalwart error the server raised.

``LocalServer`` runs uvicorn in a background thread on a free port, over one engine.
"""

from __future__ import annotations

import datetime as dt
import secrets
import socket
import threading
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import httpx2 as httpx
import uvicorn
from sqlalchemy.engine import Engine

from stalwart.capture.ae_form import AeDetails
from stalwart.capture.edit_checks import LabValue
from stalwart.capture.sealing import AllocationKey
from stalwart.capture.users import UserStore
from stalwart.errors import (
    AccessDeniedError,
    AuthenticationError,
    ConflictError,
    DatabaseError,
    NotFoundError,
    StalwartError,
    ValidationError,
)
from stalwart.play.sites import REVIEWER, Enrolment, LabEntry, coordinator_of
from stalwart.protocol.calendar import participant_calendar
from stalwart.protocol.schema import Protocol

__all__ = ["HttpPort", "LocalServer", "create_play_users"]


def create_play_users(engine: Engine, protocol: Protocol, actor: str = "demo") -> dict[str, str]:
    """Accounts for the play: a site coordinator per site and an endpoint reviewer.

    Returns username -> password (random, never stored in clear).
    """
    users = UserStore(engine)
    credentials: dict[str, str] = {}
    for site in protocol.sites:
        name = coordinator_of(site.code)
        credentials[name] = secrets.token_urlsafe(18)
        users.add_user(
            name, credentials[name], "site_coordinator", actor, site=site.code,
            full_name=f"Site coordinator, {site.name}",
        )  # fmt: skip
    credentials[REVIEWER] = secrets.token_urlsafe(18)
    users.add_user(
        REVIEWER, credentials[REVIEWER], "endpoint_reviewer", actor, full_name="Endpoint reviewer"
    )
    return credentials


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class LocalServer:
    """``stalwart serve``'s app over ``engine``, run by uvicorn in a thread (a context manager).

    ``url`` is its base URL once entered. SQLite engines already run in WAL mode with a busy
    timeout and ``BEGIN IMMEDIATE`` (``capture.db``), so the server's threads and other readers
    of the file queue rather than fail.
    """

    def __init__(
        self,
        engine: Engine,
        host: str = "127.0.0.1",
        start_timeout: float = 30.0,
        allocation_key: AllocationKey | None = None,
    ):
        from stalwart.web.app import create_app

        self.host = host
        self.port = _free_port(host)
        self.url = f"http://{host}:{self.port}"
        config = uvicorn.Config(
            create_app(engine, allocation_key=allocation_key),
            host=host,
            port=self.port,
            log_level="warning",
            lifespan="on",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="stalwart-serve", daemon=True)
        self._start_timeout = start_timeout

    def __enter__(self) -> LocalServer:
        self._thread.start()
        deadline = time.monotonic() + self._start_timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._server.should_exit = True
                raise DatabaseError(
                    f"the local server on {self.url} did not start; is the port free?"
                )
            time.sleep(0.02)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)


_ERRORS: dict[int, type[StalwartError]] = {
    401: AuthenticationError,
    403: AccessDeniedError,
    404: NotFoundError,
    409: ConflictError,
}


def _raise_for(response: httpx.Response) -> None:
    """The stalwart error of an API error response."""
    if response.status_code < 400:
        return
    try:
        body = response.json().get("error", {})
    except ValueError:
        body = {}
    message = body.get("message") or f"HTTP {response.status_code}: {response.text[:200]}"
    where = f"{response.request.method} {response.request.url.path}"
    if response.status_code in (400, 422):
        field = str(body.get("field", "body"))
        raise ValidationError(field, f"{message.removeprefix(field + ': ')} ({where})")
    if response.status_code == 403:
        raise AccessDeniedError(str(body.get("field", "permission")), f"{message} ({where})")
    cls = _ERRORS.get(response.status_code, DatabaseError)
    raise cls(f"{message} ({where})")


def _lab_json(value: LabEntry, lower_limit: float | None) -> float | int | str | None:
    """A lab entry as the API takes it: a number, or ``"<limit"`` below the assay limit."""
    if not isinstance(value, LabValue):
        return value
    if value.below_limit:
        limit = value.limit if value.limit is not None else lower_limit
        return f"<{limit:g}"
    return value.value


class HttpPort:
    """The capture port over a server's API; actors are usernames with bearer tokens.

    Create it with ``HttpPort.login``; use it as a context manager (it holds a connection pool).
    """

    def __init__(self, client: httpx.Client, protocol: Protocol, tokens: Mapping[str, str]):
        self._client = client
        self._protocol = protocol
        self._headers = {name: {"Authorization": f"Bearer {t}"} for name, t in tokens.items()}

    @classmethod
    def login(
        cls, base_url: str, protocol: Protocol, credentials: Mapping[str, str], timeout: float = 60
    ) -> HttpPort:
        """Log every user in (``POST /api/token``) and keep their tokens."""
        client = httpx.Client(base_url=base_url, timeout=timeout)
        tokens: dict[str, str] = {}
        try:
            for username, password in credentials.items():
                r = client.post("/api/token", json={"username": username, "password": password})
                _raise_for(r)
                tokens[username] = str(r.json()["access_token"])
        except BaseException:
            client.close()
            raise
        return cls(client, protocol, tokens)

    def __enter__(self) -> HttpPort:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    @property
    def protocol(self) -> Protocol:
        """The trial's protocol (the same file the server holds)."""
        return self._protocol

    def _send(self, method: str, path: str, actor: str, body: object | None = None) -> Any:
        headers = self._headers.get(actor)
        if headers is None:
            raise AuthenticationError(f"{actor} has not logged in; give its credentials to login")
        r = self._client.request(method, path, json=body, headers=headers)
        _raise_for(r)
        return r.json() if r.content else None

    def screen(
        self,
        site: str,
        screening_number: str,
        screening_date: dt.date,
        answers: dict[str, object],
        actor: str,
    ) -> bool:
        """``POST /api/screenings``."""
        body = {
            "site": site,
            "screening_number": screening_number,
            "screening_date": screening_date.isoformat(),
            "answers": answers,
        }
        return bool(self._send("POST", "/api/screenings", actor, body)["eligible"])

    def randomize(
        self, screening_number: str, consent_date: dt.date, randomization_date: dt.date, actor: str
    ) -> Enrolment:
        """``POST /api/randomizations``; the calendar is the protocol's for the arm returned."""
        body = {
            "screening_number": screening_number,
            "consent_date": consent_date.isoformat(),
            "randomization_date": randomization_date.isoformat(),
        }
        out = self._send("POST", "/api/randomizations", actor, body)
        day = dt.date.fromisoformat(out["randomization_date"])
        calendar = participant_calendar(self._protocol, out["arm"], day)
        return Enrolment(out["usubjid"], out["arm"], calendar)

    def record_visit(
        self,
        usubjid: str,
        visit_code: str,
        visit_date: dt.date,
        labs: dict[str, LabEntry],
        actor: str,
    ) -> object:
        """``POST /api/participants/{usubjid}/visits/{visit_code}``."""
        limits = {i.name: i.lower_limit for i in self._protocol.forms.LAB.items}
        body = {
            "visit_date": visit_date.isoformat(),
            "labs": {k: _lab_json(v, limits.get(k)) for k, v in labs.items() if v is not None},
        }
        return self._send("POST", f"/api/participants/{usubjid}/visits/{visit_code}", actor, body)

    def record_doses(
        self,
        usubjid: str,
        treatment: str,
        cycle: int,
        days: list[tuple[dt.date, int]],
        actor: str,
    ) -> object:
        """``POST /api/participants/{usubjid}/doses``."""
        body = {
            "treatment": treatment,
            "cycle": cycle,
            "days": [{"date": d.isoformat(), "administrations": n} for d, n in days],
        }
        return self._send("POST", f"/api/participants/{usubjid}/doses", actor, body)

    def report_adverse_event(
        self,
        usubjid: str,
        term: str,
        grade: int,
        start_date: dt.date,
        end_date: dt.date | None,
        related: str,
        serious: bool,
        actor: str,
        details: AeDetails,
    ) -> object:
        """``POST /api/participants/{usubjid}/adverse-events``."""
        body = {
            "term": term,
            "grade": grade,
            "start_date": start_date.isoformat(),
            "end_date": None if end_date is None else end_date.isoformat(),
            "related": related,
            "serious": serious,
            "verbatim": details.verbatim,
            "outcome": details.outcome,
            "action": details.action,
            "seriousness": list(details.seriousness),
        }
        return self._send("POST", f"/api/participants/{usubjid}/adverse-events", actor, body)

    def report_clinical_event(
        self, usubjid: str, event_code: str, onset_date: dt.date, actor: str
    ) -> object:
        """``POST /api/participants/{usubjid}/clinical-events``."""
        body = {"event_code": event_code, "onset_date": onset_date.isoformat()}
        return self._send("POST", f"/api/participants/{usubjid}/clinical-events", actor, body)

    def record_disposition(
        self, usubjid: str, status: str, disposition_date: dt.date, actor: str
    ) -> object:
        """``POST /api/participants/{usubjid}/disposition``."""
        body = {"status": status, "disposition_date": disposition_date.isoformat()}
        return self._send("POST", f"/api/participants/{usubjid}/disposition", actor, body)

    def pending_events(self, actor: str) -> list[int]:
        """``GET /api/endpoint-reviews?pending_only=true``."""
        rows = self._send("GET", "/api/endpoint-reviews?pending_only=true", actor)
        return [int(r["id"]) for r in rows]

    def review_event(self, event_id: int, decision: str, reason: str, actor: str) -> object:
        """``POST /api/endpoint-reviews/{event_id}``."""
        body = {"decision": decision, "reason": reason}
        return self._send("POST", f"/api/endpoint-reviews/{event_id}", actor, body)
