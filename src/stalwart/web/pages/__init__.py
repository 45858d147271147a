"""Server-rendered pages (Jinja2 + htmx): the API's operations as forms, one module per family.

Forms are rendered from the protocol (screening items, the LAB case report form, the AE and CE
lists) and read by the API's request schema of the same operation; their writes run in the API's
arrival-order queue (``deps.Run``). A refused form comes back with status 422 and each error
beside its field; nothing is saved. Pages authenticate with a session cookie; every POST carries
the session's CSRF token. ``common`` holds what the families share.
"""

from __future__ import annotations

from fastapi import APIRouter

from stalwart.web.pages import (
    accounts,
    auth,
    doses,
    events,
    lists,
    monitoring,
    queries,
    reviews,
    screening,
    visit_forms,
    visits,
)

__all__ = ["FAMILIES", "router"]

FAMILIES = (
    auth,
    accounts,
    lists,
    screening,
    visits,
    visit_forms,
    doses,
    events,
    queries,
    reviews,
    monitoring,
)
"""The page modules, each with its own ``router`` (the access tests walk their routes)."""

router = APIRouter(include_in_schema=False)
for family in FAMILIES:
    router.include_router(family.router)
