"""The administrator's users page: accounts with their last login, and the account lifecycle.

Each form is read by the API's request schema of the same operation (``AccountStatus``,
``RoleChange``, ``PasswordReset``) and runs the same ``capture.accounts`` call, so a page and the
API refuse alike; a refusal comes back beside its field, nothing changed. Every POST carries the
session's CSRF token (``PageSession``), as every other form.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import pydantic
from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from stalwart.capture.access import ROLES
from stalwart.capture.access import Permission as P
from stalwart.capture.users import UserStore
from stalwart.errors import StalwartError, ValidationError
from stalwart.web.deps import Run
from stalwart.web.errors import status_of
from stalwart.web.pages.common import (
    PageSession,
    filled,
    form_values,
    page_needs,
    read_form,
    refused,
    render,
)
from stalwart.web.schemas import AccountStatus, PasswordReset, RecordId, RoleChange

__all__ = ["router"]

router = APIRouter()

Username = Annotated[str, Path(min_length=1, max_length=60)]

_FORMS: dict[str, tuple[type[pydantic.BaseModel], tuple[str, ...]]] = {
    "active": (AccountStatus, ("active", "reason")),
    "role": (RoleChange, ("role", "site", "reason")),
    "password-reset": (PasswordReset, ("password",)),
}
"""The account forms: the API schema each is read by, and its fields."""


def _users(request: Request) -> UserStore:
    store: UserStore = request.app.state.users
    return store


@router.get("/users")
async def users_page(request: Request, session: PageSession, run: Run) -> HTMLResponse:
    """Every account: role, site, active, last login, a pending password reset."""
    try:
        accounts = await run(_users(request).users, session.actor)
    except StalwartError as exc:
        return refused(request, session, exc)
    return render(request, "users.html.j2", "Users", session, accounts=accounts)


async def _account_page(
    request: Request,
    session: PageSession,
    run: Run,
    username: str,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    users = _users(request)
    try:
        listed = await run(users.users, session.actor)
        tokens = await run(users.admin.tokens, username, session.actor)
    except StalwartError as exc:
        return refused(request, session, exc)
    account = next(a for a in listed if a.username == username.strip().lower())
    return render(
        request,
        "user.html.j2",
        f"User {account.username}",
        session,
        status_code,
        account=account,
        tokens=tokens,
        roles=ROLES,
        **context,
    )


@router.get("/users/{username}")
async def account_page(
    username: Username, request: Request, session: PageSession, run: Run
) -> HTMLResponse:
    """One account: deactivate or reactivate, role and site, password reset, its tokens."""
    return await _account_page(request, session, run, username)


@router.post("/users/{username}/{action}", **page_needs(P.MANAGE_USERS))
async def account_action(
    username: Username, action: str, request: Request, session: PageSession, run: Run
) -> Response:
    """Deactivate or reactivate, change role or site, or reset the password of an account."""
    if action not in _FORMS:
        raise HTTPException(status_code=404)
    schema, fields = _FORMS[action]
    values = await form_values(request)
    body, errors = read_form(schema, filled(values, fields))
    status_code = 422
    if body is not None:
        admin, actor = _users(request).admin, session.actor
        try:
            if isinstance(body, AccountStatus):
                await run(admin.set_active, username, body.active, body.reason, actor)
            elif isinstance(body, RoleChange):
                await run(admin.change_role, username, body.role, body.site, body.reason, actor)
            elif isinstance(body, PasswordReset):
                await run(admin.reset_password, username, body.password, actor)
        except StalwartError as exc:
            if not isinstance(exc, ValidationError) and status_of(exc) in (403, 404):
                return refused(request, session, exc)
            name = exc.field if isinstance(exc, ValidationError) else fields[-1]
            message = exc.message if isinstance(exc, ValidationError) else str(exc)
            errors, status_code = {name: message}, status_of(exc)
    if not errors:
        return RedirectResponse(f"/users/{quote(username.strip().lower(), safe='')}", 303)
    shown = {k: v for k, v in values.items() if k != "password"}
    return await _account_page(
        request, session, run, username, status_code, errors={action: errors}, values=shown
    )


@router.post("/tokens/{token_id}/revoke", **page_needs(P.MANAGE_USERS))
async def revoke_token(
    token_id: RecordId, request: Request, session: PageSession, run: Run
) -> Response:
    """Revoke one token or page session of an account, back to that account's page."""
    values = await form_values(request)
    try:
        await run(_users(request).admin.revoke_token_id, token_id, session.actor)
    except StalwartError as exc:
        return refused(request, session, exc)
    back = values.get("username", "")
    target = f"/users/{quote(back, safe='')}" if back else "/users"  # never off this site
    return RedirectResponse(target, status_code=303)
