"""Service calls the API routes and the pages share, each run in a worker thread by ``Run``.

Small functions over ``CaptureService``'s public methods, for what the service has no single
call for: randomizing with the recorded consent, one screening of the log, and whether a visit is
saved (which decides between its first save and a correction) without reading the whole record.
"""

from __future__ import annotations

from stalwart.capture.access import Actor, Permission, require
from stalwart.capture.enrolment import Allocation
from stalwart.capture.records import ScreeningView, VisitRecord
from stalwart.capture.service import CaptureService
from stalwart.errors import NotFoundError, ValidationError
from stalwart.web.schemas import RandomizationCreate

__all__ = ["parse_if_match", "randomize_after_consent", "saved_visit", "screening_view"]


def parse_if_match(header: str | None) -> int | None:
    """The version an ``If-Match`` header names (``"123"``, ``W/"123"`` or ``123``), or None.

    ``*`` and lists of tags are refused: a correction names the one version it was made from.
    """
    if header is None:
        return None
    tag = header.strip().removeprefix("W/").strip('"').strip()
    if not tag.isascii() or not tag.isdigit() or len(tag) > 10:
        raise ValidationError(
            "If-Match",
            f"{header[:40]!r} is not a version: send the ETag the GET of the record returned, "
            'e.g. If-Match: "1234"',
        )
    return int(tag)


def screening_view(
    service: CaptureService, actor: Actor, number: str, site: str | None = None
) -> ScreeningView:
    """The screening numbered ``number`` in the actor's screening log (at ``site`` if given).

    Numbers are unique per site: an all-sites user must name the site when two sites use one.
    """
    found = [
        s
        for s in service.records.screenings(actor)
        if s.screening_number == number and site in (None, s.site)
    ]
    if not found:
        raise NotFoundError(
            f"no screening numbered {number}" + (f" at site {site}" if site else "")
        )
    if len(found) > 1:
        sites = ", ".join(sorted(s.site for s in found))
        raise ValidationError(
            "site", f"screening number {number} is used at {sites}: name the site"
        )
    return found[0]


def randomize_after_consent(
    body: RandomizationCreate, service: CaptureService, actor: Actor
) -> Allocation:
    """Randomize; without ``consent_date`` in the body, the recorded consent's date is used.

    The permission is checked before the screening is read: a user who may not randomize is
    refused (403) whatever the screening number, never told whether it exists.
    """
    require(actor, Permission.RANDOMIZE, "randomize participants")
    consent_date = body.consent_date
    if consent_date is None:
        try:
            screening = screening_view(service, actor, body.screening_number, body.site)
        except NotFoundError:
            screening = None
        if screening is None or screening.consent_date is None:
            raise ValidationError(
                "consent_date",
                "no consent is recorded: record the informed consent before randomizing, "
                "or give its date",
            )
        consent_date = screening.consent_date
    return service.randomize(
        body.screening_number,
        consent_date,
        body.randomization_date,
        actor,
        site=body.site,
        entry_labs=body.entry_labs,
    )


def saved_visit(
    service: CaptureService, actor: Actor, usubjid: str, visit_code: str
) -> VisitRecord | None:
    """The saved visit, or None when it is not saved yet (or there is no such participant: the
    write that follows says so). One participant's row, the visit and its results are read."""
    try:
        return service.records.visit(usubjid, visit_code, actor)
    except NotFoundError:
        return None
