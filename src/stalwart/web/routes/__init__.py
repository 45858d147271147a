"""API routers, one per resource; each operation declares in OpenAPI who may call it.

``x-stalwart-access`` of an operation is ``"public"`` (no credentials), ``"signed-in"`` (any
user) or ``{"any_of": [permission, ...]}``: the role must grant one of them (``capture.access``).
Operations on a participant's records are further limited to the sites of the user's scope (a
record of another site answers 404, as one that does not exist). Integrators read it from
``/openapi.json``; the reliability suite checks every operation, role and site against it.
"""

from __future__ import annotations

from typing import Any

from stalwart.capture.access import Permission

__all__ = ["ACCESS_KEY", "PUBLIC", "SIGNED_IN", "needs"]

ACCESS_KEY = "x-stalwart-access"

PUBLIC: dict[str, Any] = {"openapi_extra": {ACCESS_KEY: "public"}}
"""Route keyword arguments of an operation that needs no credentials."""

SIGNED_IN: dict[str, Any] = {"openapi_extra": {ACCESS_KEY: "signed-in"}}
"""Route keyword arguments of an operation open to any signed-in user."""


def needs(*permissions: Permission) -> dict[str, Any]:
    """Route keyword arguments declaring that the role must grant one of ``permissions``."""
    return {"openapi_extra": {ACCESS_KEY: {"any_of": [p.value for p in permissions]}}}
