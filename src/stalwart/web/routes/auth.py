"""Tokens and user accounts; a token's issue and withdrawal run in the arrival-order queue
(``Run``), as the login page's do."""

from __future__ import annotations

from dataclasses import asdict
from functools import partial
from typing import Any

from fastapi import APIRouter, Request, status
from starlette.concurrency import run_in_threadpool

from stalwart.capture.access import Permission as P
from stalwart.capture.access import permissions_of
from stalwart.capture.users import UserAccount, UserStore
from stalwart.errors import AuthenticationError
from stalwart.web.deps import CurrentActor, Run, Users
from stalwart.web.routes import PUBLIC, SIGNED_IN, needs
from stalwart.web.schemas import TokenCreate, TokenPublic, UserCreate

__all__ = ["router"]

router = APIRouter(prefix="/api", tags=["auth"])


@router.post("/token", status_code=status.HTTP_201_CREATED, **PUBLIC)
async def create_token(body: TokenCreate, request: Request, users: Users, run: Run) -> TokenPublic:
    """Exchange a username and password for a bearer token (valid 30 days).

    Failed logins are counted across every server process: after a few from one client
    address (or many on one account from many addresses) each next try must wait longer: 429
    with Retry-After. A request that already carries a live token of this same account (the
    owner renewing their own token) never waits.
    """
    client = request.client.host if request.client else None
    trusted = await _signed_in_as(request, users) == body.username.strip().lower()
    actor = await run(
        partial(users.authenticate, trusted=trusted), body.username, body.password, client
    )
    issued = await run(users.issue_token, actor, "api")
    return TokenPublic(
        access_token=issued.token,
        expires_at=issued.expires_at,
        username=actor.username,
        role=actor.role.value,
        site=actor.site,
    )


async def _signed_in_as(request: Request, users: UserStore) -> str | None:
    """The username of the request's own live bearer token, if it carries one."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    try:
        actor, _ = await run_in_threadpool(users.actor_for_token, token.strip(), "api")
    except AuthenticationError:
        return None
    return actor.username


@router.delete("/token", status_code=status.HTTP_204_NO_CONTENT, **SIGNED_IN)
async def revoke_token(request: Request, actor: CurrentActor, users: Users, run: Run) -> None:
    """Withdraw the bearer token of this request."""
    _, _, token = request.headers.get("authorization", "").partition(" ")
    await run(users.revoke_token, token.strip())


@router.get("/me", **SIGNED_IN)
def me(actor: CurrentActor) -> dict[str, Any]:
    """Who the credentials belong to, and what the role may do."""
    return {
        "username": actor.username,
        "role": actor.role.value,
        "site": actor.site,
        "permissions": sorted(p.value for p in permissions_of(actor.role)),
    }


@router.get("/users", **needs(P.MANAGE_USERS))
def list_users(actor: CurrentActor, users: Users) -> list[dict[str, Any]]:
    """Every user account (admins)."""
    return [asdict(u) for u in users.users(actor)]


@router.post("/users", status_code=status.HTTP_201_CREATED, **needs(P.MANAGE_USERS))
def add_user(body: UserCreate, actor: CurrentActor, users: Users) -> dict[str, Any]:
    """Create a user account (admins)."""
    account: UserAccount = users.add_user(
        body.username, body.password, body.role, actor, site=body.site, full_name=body.full_name
    )
    return asdict(account)
