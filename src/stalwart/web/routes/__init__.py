"""API routers, one per resource; each operation declares in OpenAPI who may call it.

``x-stalwart-access`` of an operation is ``"public"`` (no credentials), ``"signed-in"`` (any
user) or ``{"any_of": [permission, ...]}``: the role must grant one of them (``capture.access``).
Operations on a participant's records are further limited to the sites of the user's scope (a
record of another site answers 404, as one that does not exist). Integrators read it from
``/openapi.json``; the reliability suite checks every operation, role and site against it.

``needs`` also installs the check itself as the operation's first dependency: a role without
the permission gets 403 before the request's path, query or body is validated and before any
record is read, so a refusal never tells whether an id exists or a body was well formed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Depends

from stalwart.capture.access import Permission
from stalwart.errors import AccessDeniedError
from stalwart.web.deps import CurrentActor

__all__ = ["ACCESS_KEY", "PUBLIC", "SIGNED_IN", "needs"]

ACCESS_KEY = "x-stalwart-access"

PUBLIC: dict[str, Any] = {"openapi_extra": {ACCESS_KEY: "public"}}
"""Route keyword arguments of an operation that needs no credentials."""

SIGNED_IN: dict[str, Any] = {"openapi_extra": {ACCESS_KEY: "signed-in"}}
"""Route keyword arguments of an operation open to any signed-in user."""


def _granting(permissions: tuple[Permission, ...]) -> Callable[..., Awaitable[None]]:
    """A dependency that refuses (403) an actor whose role grants none of ``permissions``."""

    async def permitted(actor: CurrentActor) -> None:
        if not any(actor.can(p) for p in permissions):
            raise AccessDeniedError(
                permissions[0].value,
                f"{actor.username} ({actor.role.value}) may not do this: it needs "
                f"{' or '.join(p.value for p in permissions)}; ask a user whose role allows it",
            )

    return permitted


def needs(*permissions: Permission) -> dict[str, Any]:
    """Route keyword arguments declaring that the role must grant one of ``permissions``, and
    checking it before anything else of the request is read."""
    return {
        "openapi_extra": {ACCESS_KEY: {"any_of": [p.value for p in permissions]}},
        "dependencies": [Depends(_granting(permissions))],
    }
