"""Account lifecycle (admins): deactivate, reactivate, role and site, password reset, tokens.

Every act is audited by ``capture.accounts`` and runs in the arrival-order queue (``Run``). A
deactivation or a revoked token is refused on the very next request in every worker (tokens are
read from the database on each request). ``POST /api/password`` is the owner's own change of
password, the one step a reset password opens; it proves the current password, so it needs no
token.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, status

from stalwart.capture.access import Permission as P
from stalwart.web.deps import CurrentActor, Run, Users
from stalwart.web.routes import PUBLIC, needs
from stalwart.web.schemas import AccountStatus, PasswordChange, PasswordReset, RecordId, RoleChange

__all__ = ["router"]

router = APIRouter(prefix="/api", tags=["accounts"])

Username = Annotated[str, Path(min_length=1, max_length=60)]
"""A username in a URL."""


@router.put("/users/{username}/active", **needs(P.MANAGE_USERS))
async def set_active(
    username: Username, body: AccountStatus, actor: CurrentActor, users: Users, run: Run
) -> dict[str, Any]:
    """Deactivate (every token and session of the account dies at once) or reactivate it."""
    await run(users.admin.set_active, username, body.active, body.reason, actor)
    return {"username": username.strip().lower(), "active": body.active}


@router.put("/users/{username}/role", **needs(P.MANAGE_USERS))
async def change_role(
    username: Username, body: RoleChange, actor: CurrentActor, users: Users, run: Run
) -> dict[str, Any]:
    """Give the account a new role and site; its next request acts with them."""
    account = await run(users.admin.change_role, username, body.role, body.site, body.reason, actor)
    return asdict(account)


@router.post(
    "/users/{username}/password-reset",
    status_code=status.HTTP_204_NO_CONTENT,
    **needs(P.MANAGE_USERS),
)
async def reset_password(
    username: Username, body: PasswordReset, actor: CurrentActor, users: Users, run: Run
) -> None:
    """Set a temporary password (its owner must change it at next login); revokes their tokens."""
    await run(users.admin.reset_password, username, body.password, actor)


@router.get("/users/{username}/tokens", **needs(P.MANAGE_USERS))
async def list_tokens(
    username: Username, actor: CurrentActor, users: Users, run: Run
) -> list[dict[str, Any]]:
    """The account's live tokens and page sessions: id, kind, issued, expiry (never secrets)."""
    return [asdict(t) for t in await run(users.admin.tokens, username, actor)]


@router.delete(
    "/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT, **needs(P.MANAGE_USERS)
)
async def revoke_token(token_id: RecordId, actor: CurrentActor, users: Users, run: Run) -> None:
    """Revoke one token or page session by the id its list shows."""
    await run(users.admin.revoke_token_id, token_id, actor)


@router.post("/password", status_code=status.HTTP_204_NO_CONTENT, **PUBLIC)
async def change_password(body: PasswordChange, request: Request, users: Users, run: Run) -> None:
    """Change one's own password, proving the current one (a reset's temporary one included)."""
    client = request.client.host if request.client else None
    await run(users.change_password, body.username, body.password, body.new_password, client)
