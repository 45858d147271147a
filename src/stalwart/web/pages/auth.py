"""Logging in and out, and each role's start page.

The login form is read by the API token's schema (``TokenCreate``) and carries its own CSRF token
(double submit: a cookie that the form's hidden field must echo). The session cookie is HttpOnly,
SameSite=Strict, and Secure over HTTPS.
"""

from __future__ import annotations

import secrets
from functools import partial

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from stalwart.capture.access import Actor, Permission
from stalwart.capture.users import UserStore
from stalwart.errors import (
    AuthenticationError,
    LoginThrottledError,
    PasswordChangeRequiredError,
    StalwartError,
    ValidationError,
)
from stalwart.web.deps import SESSION_COOKIE, Run
from stalwart.web.errors import status_of
from stalwart.web.pages.common import PageSession, filled, form_values, read_form, render
from stalwart.web.schemas import PasswordChange, TokenCreate

__all__ = ["LOGIN_CSRF_COOKIE", "router"]

router = APIRouter()

LOGIN_CSRF_COOKIE = "stalwart_login_csrf"
"""The login form's CSRF token (double submit): a cookie that the form's hidden field must echo."""


def _secure(request: Request) -> bool:
    """Cookies are Secure when the app says so or the request came over HTTPS."""
    return bool(request.app.state.secure_cookies) or request.url.scheme == "https"


def _login_form(
    request: Request,
    status_code: int = 200,
    errors: dict[str, str] | None = None,
    username: str = "",
    template: str = "login.html.j2",
    title: str = "Log in",
    message: str | None = None,
) -> HTMLResponse:
    """The login form (or the change-password step) with a fresh CSRF token, set in a cookie
    too (SameSite=Strict; its path /login covers /login/password)."""
    token = secrets.token_urlsafe(24)
    response = render(
        request,
        template,
        title,
        None,
        status_code,
        errors=errors or {},
        values={"username": username},
        login_csrf=token,
        message=message,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        max_age=3600,
        path="/login",
    )
    return response


def _home(actor: Actor) -> str:
    if actor.can(Permission.READ_EVENTS):
        return "/reviews"
    if actor.can(Permission.POOLED_SUMMARY):
        return "/summary"
    return "/worklist"


@router.get("/login")
def login_page(request: Request) -> HTMLResponse:
    """The login form."""
    return _login_form(request)


@router.post("/login")
async def login(request: Request, run: Run) -> Response:
    """Check the form's CSRF token and the password, start a session, go to the worklist.

    Failed logins are counted across every server process: after a few from one client
    address (or many on one account from many addresses) each next try must wait longer (429
    with Retry-After, said beside the password field). A browser that still holds a live
    session of this same account (the owner logging in again) never waits.
    """
    form = await request.form()
    given = form.get("csrf_token")
    values = await form_values(request)
    username = values.get("username", "")
    if not UserStore.csrf_matches(
        request.cookies.get(LOGIN_CSRF_COOKIE), given if isinstance(given, str) else None
    ):
        message = "the login form has expired or did not come from this site: log in again"
        return _login_form(request, 403, {"password": message}, username)
    body, errors = read_form(TokenCreate, filled(values, ("username", "password")))
    if body is None:
        return _login_form(request, 422, errors, username)
    users: UserStore = request.app.state.users
    client = request.client.host if request.client else None
    trusted = await _signed_in_as(request, users) == body.username.strip().lower()
    try:
        actor = await run(
            partial(users.authenticate, trusted=trusted), body.username, body.password, client
        )
        issued = await run(users.issue_token, actor, "session")
    except PasswordChangeRequiredError as exc:
        return _password_form(request, 200, {}, body.username, str(exc))
    except AuthenticationError as exc:
        status_code = 429 if isinstance(exc, LoginThrottledError) else 401
        refusal = _login_form(request, status_code, {"password": str(exc)}, username)
        if isinstance(exc, LoginThrottledError):
            refusal.headers["Retry-After"] = str(exc.retry_after)
        return refusal
    home = "/worklist" if actor.can(Permission.READ_RECORDS) else _home(actor)
    response = RedirectResponse(home, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        issued.token,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        max_age=12 * 3600,
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


async def _signed_in_as(request: Request, users: UserStore) -> str | None:
    """The username of the browser's own live session, if it holds one."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    try:
        actor, _ = await run_in_threadpool(users.actor_for_token, token, "session")
    except AuthenticationError:
        return None
    return actor.username


def _password_form(
    request: Request,
    status_code: int,
    errors: dict[str, str],
    username: str,
    message: str | None = None,
) -> HTMLResponse:
    return _login_form(
        request, status_code, errors, username, "password.html.j2", "Choose a new password", message
    )


@router.post("/login/password")
async def change_password(request: Request, run: Run) -> Response:
    """The change-password step (after a reset): prove the current password, set a new one."""
    form = await request.form()
    given = form.get("csrf_token")
    values = await form_values(request)
    username = values.get("username", "")
    if not UserStore.csrf_matches(
        request.cookies.get(LOGIN_CSRF_COOKIE), given if isinstance(given, str) else None
    ):
        message = "the form has expired or did not come from this site: log in again"
        return _password_form(request, 403, {"password": message}, username)
    fields = ("username", "password", "new_password")
    body, errors = read_form(PasswordChange, filled(values, fields))
    if body is None:
        return _password_form(request, 422, errors, username)
    if body.new_password != values.get("new_password_again"):
        return _password_form(
            request, 422, {"new_password_again": "the two new passwords differ"}, username
        )
    users: UserStore = request.app.state.users
    client = request.client.host if request.client else None
    try:
        await run(users.change_password, body.username, body.password, body.new_password, client)
    except StalwartError as exc:
        name = exc.field if isinstance(exc, ValidationError) else "password"
        refusal = _password_form(request, status_of(exc), {name: str(exc)}, username)
        if isinstance(exc, LoginThrottledError):
            refusal.headers["Retry-After"] = str(exc.retry_after)
        return refusal
    return _login_form(
        request, 200, {}, body.username, message="password changed: log in with the new one"
    )


@router.post("/logout")
async def logout(request: Request, session: PageSession, run: Run) -> Response:
    """End the session."""
    users: UserStore = request.app.state.users
    await run(users.revoke_token, request.cookies.get(SESSION_COOKIE, ""))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.get("/")
def home(session: PageSession) -> Response:
    """The start page of the role."""
    return RedirectResponse(_home(session.actor), status_code=303)
