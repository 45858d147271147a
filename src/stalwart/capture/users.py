"""User accounts, passwords and tokens: who is acting, proven by a password or a token.

Passwords are hashed with argon2id (argon2-cffi); the hash lives in ``user_credential`` and never
enters the audit trail. Every password set must pass ``capture.passwords``' policy (NIST SP
800-63B: length, a list of common passwords, no control characters); failed logins are counted
in the database and delay the next try (``capture.throttle``). API bearer tokens and browser
sessions are random secrets of which only the SHA-256 is stored; a session also carries the
CSRF token its pages must send back. Account changes (creation, role, activation, password
change) are audited like any data.

A token's lookup is cached in memory for ``token_cache_seconds`` (default 10 s) by its SHA-256,
so a busy API client costs one database read per token per period rather than one per request.
Revoking a token or deactivating an account clears the cache of this process at once; another
server process (uvicorn worker) may honour the old token until its cached entry ages out.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from stalwart.capture.access import SITE_ROLES, Actor, ActorLike, Permission, Role, require
from stalwart.capture.audit import append_audit
from stalwart.capture.passwords import MIN_PASSWORD_LENGTH, check_password
from stalwart.capture.tables import AppUser, AuthToken, Site, UserCredential
from stalwart.capture.throttle import LoginThrottle
from stalwart.capture.transaction import transaction
from stalwart.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    ValidationError,
)

__all__ = [
    "MIN_PASSWORD_LENGTH",
    "TOKEN_KINDS",
    "IssuedToken",
    "UserAccount",
    "UserStore",
    "default_hasher",
]

TOKEN_KINDS = {"api": dt.timedelta(days=30), "session": dt.timedelta(hours=12)}
"""Token kinds and how long each lives."""

_USERNAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789._-@")


def default_hasher() -> PasswordHasher:
    """argon2id with argon2-cffi's defaults (RFC 9106 low-memory profile)."""
    return PasswordHasher()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class UserAccount:
    """A user account as shown to administrators (never the password hash)."""

    id: int
    username: str
    full_name: str
    role: str
    site: str | None
    active: bool


@dataclass(frozen=True)
class IssuedToken:
    """A new token: the secret (shown once), its CSRF companion for sessions, and expiry."""

    token: str
    csrf_token: str | None
    expires_at: dt.datetime
    actor: Actor


class UserStore:
    """User accounts and credentials of one trial database."""

    def __init__(
        self,
        engine: Engine,
        hasher: PasswordHasher | None = None,
        now: Callable[[], dt.datetime] = _now,
        throttle: LoginThrottle | None = None,
        token_cache_seconds: float = 10.0,
    ) -> None:
        self.engine = engine
        self.hasher = hasher or default_hasher()
        self._now = now
        self.throttle = throttle or LoginThrottle()
        self.token_cache_seconds = token_cache_seconds
        self._tokens: dict[tuple[str, str], tuple[float, Actor, str | None, dt.datetime]] = {}
        self._tokens_lock = threading.Lock()
        # a hash to verify against when the username is unknown: the same work either way
        self._dummy_hash = self.hasher.hash(secrets.token_hex(8))

    # -- accounts ------------------------------------------------------------------------------
    def add_user(
        self,
        username: str,
        password: str,
        role: str,
        actor: ActorLike,
        site: str | None = None,
        full_name: str | None = None,
    ) -> UserAccount:
        """Create an account; a site role must name its site, a study-wide role must not."""
        who = require(actor, Permission.MANAGE_USERS, "manage user accounts")
        username = username.strip().lower()
        if not username or not set(username) <= _USERNAME_CHARS or len(username) > 60:
            raise ValidationError(
                "username", "use 1 to 60 characters: lower-case letters, digits, . _ - @"
            )
        user_role = self._role(role)
        if user_role in SITE_ROLES and not site:
            raise ValidationError("site", f"a {user_role.value} must be given a site (--site)")
        if site and user_role not in SITE_ROLES | {Role.MONITOR}:
            raise ValidationError("site", f"a {user_role.value} works across sites: give no site")
        check_password(password, username)
        digest = self.hasher.hash(password)
        with transaction(self.engine) as session:
            site_id = None
            if site:
                site_id = session.scalar(sa.select(Site.id).where(Site.code == site))
                if site_id is None:
                    known = ", ".join(session.scalars(sa.select(Site.code).order_by(Site.code)))
                    raise NotFoundError(f"no site {site!r}; sites are {known or 'none yet'}")
            if session.scalar(sa.select(AppUser.id).where(AppUser.username == username)):
                raise ConflictError(f"user {username} already exists")
            user = AppUser(
                username=username,
                full_name=(full_name or username).strip(),
                role=user_role.value,
                site_id=site_id,
                active=True,
                password_changed_at=self._now().isoformat(),
            )
            session.add(user)
            session.flush()
            session.add(UserCredential(user_id=user.id, password_hash=digest))
            append_audit(session, [("INSERT", user)], who.label, "user account created")
            return UserAccount(user.id, username, user.full_name, user.role, site, True)

    def users(self, actor: ActorLike) -> list[UserAccount]:
        """Every account, for administrators."""
        require(actor, Permission.MANAGE_USERS, "list user accounts")
        with Session(self.engine) as session:
            rows = session.execute(
                sa.select(AppUser, Site.code)
                .outerjoin(Site, Site.id == AppUser.site_id)
                .order_by(AppUser.username)
            ).all()
        return [
            UserAccount(u.id, u.username, u.full_name, u.role, code, u.active) for u, code in rows
        ]

    def set_active(self, username: str, active: bool, reason: str, actor: ActorLike) -> None:
        """Deactivate (or reactivate) an account; its tokens stop working at once."""
        who = require(actor, Permission.MANAGE_USERS, "manage user accounts")
        if not reason.strip():
            raise ValidationError("reason", "give the reason for the change")
        with transaction(self.engine) as session:
            user = self._user(session, username)
            user.active = active
            if not active:
                session.execute(
                    sa.update(AuthToken).where(AuthToken.user_id == user.id).values(revoked=True)
                )
            append_audit(session, [("UPDATE", user)], who.label, reason.strip())
        with self._tokens_lock:
            self._tokens.clear()

    def change_password(self, username: str, old: str, new: str) -> None:
        """Change one's own password, proving the old one."""
        self.authenticate(username, old)
        check_password(new, username)
        digest = self.hasher.hash(new)
        with transaction(self.engine) as session:
            user = self._user(session, username)
            cred = session.get(UserCredential, user.id)
            assert cred is not None
            cred.password_hash = digest
            user.password_changed_at = self._now().isoformat()
            append_audit(session, [("UPDATE", user)], user.username, "password changed")

    # -- proving identity ----------------------------------------------------------------------
    def authenticate(
        self, username: str, password: str, client: str | None = None, *, trusted: bool = False
    ) -> Actor:
        """The actor of a username and password; one message for every failure (no hints).

        Failures are counted in the database for every server process (``capture.throttle``):
        the ``client`` address, and an account failing from many addresses, must then wait a
        little longer before each next try (``LoginThrottledError`` says how long). ``trusted``
        marks the attempt of someone already signed in as this account (their own session, an
        e-signature): it never waits.
        """
        failure = AuthenticationError("unknown user or wrong password")
        key = username.strip().lower()
        if not trusted:
            self.throttle.check(self.engine, key, client)
        attempt = self.throttle.begin(self.engine, key, client, trusted)
        actor = self._authenticate(key, password, failure)  # a failure leaves its row counted
        self.throttle.succeeded(self.engine, attempt, key, None if trusted else client)
        return actor

    def _authenticate(self, username: str, password: str, failure: AuthenticationError) -> Actor:
        with Session(self.engine) as session:
            row = session.execute(
                sa.select(AppUser, UserCredential.password_hash, Site.code)
                .join(UserCredential, UserCredential.user_id == AppUser.id)
                .outerjoin(Site, Site.id == AppUser.site_id)
                .where(AppUser.username == username)
            ).one_or_none()
        if row is None:
            self._verify(self._dummy_hash, password)
            raise failure
        user, digest, site = row
        if not self._verify(digest, password) or not user.active:
            raise failure
        return Actor(user.username, Role(user.role), site, user.id)

    def verify_password(self, actor: Actor, password: str) -> None:
        """Re-prove the password of a logged-in user (an e-signature needs it).

        Never throttled: failed logins by others must not block a signed-in user's signature.
        """
        try:
            self.authenticate(actor.username, password, trusted=True)
        except AuthenticationError:
            raise AuthenticationError(
                "the password is not correct: a signature needs the signer's own password"
            ) from None

    def issue_token(self, actor: Actor, kind: str = "api") -> IssuedToken:
        """A new bearer token (``api``) or browser session (``session``, with a CSRF token)."""
        if kind not in TOKEN_KINDS:
            raise ValidationError("kind", f"{kind!r} is not one of {sorted(TOKEN_KINDS)}")
        if actor.user_id is None:
            raise ValidationError("actor", "tokens are issued to user accounts only")
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(24) if kind == "session" else None
        now = self._now()
        expires = now + TOKEN_KINDS[kind]
        with transaction(self.engine) as session:
            session.add(
                AuthToken(
                    user_id=actor.user_id,
                    kind=kind,
                    token_sha256=_sha256(token),
                    csrf_token=csrf,
                    created_at=now.isoformat(),
                    expires_at=expires.isoformat(),
                    revoked=False,
                )
            )
        return IssuedToken(token, csrf, expires, actor)

    def cached_actor(self, token: str, kind: str) -> tuple[Actor, str | None] | None:
        """``actor_for_token`` from the cache alone (no database read); None when not cached."""
        cached = self._tokens.get((_sha256(token), kind))
        if cached is None or time.monotonic() - cached[0] >= self.token_cache_seconds:
            return None
        _, actor, csrf, expires_at = cached
        if expires_at <= self._now():
            raise AuthenticationError("the token has expired or the account is inactive")
        return actor, csrf

    def actor_for_token(self, token: str, kind: str) -> tuple[Actor, str | None]:
        """The actor and CSRF token of a live token of ``kind``; AuthenticationError otherwise."""
        hit = self.cached_actor(token, kind)
        if hit is not None:
            return hit
        key = (_sha256(token), kind)
        actor, csrf, expires_at = self._lookup_token(key[0], kind)
        with self._tokens_lock:
            if len(self._tokens) >= 10_000:
                self._tokens.clear()
            self._tokens[key] = (time.monotonic(), actor, csrf, expires_at)
        return actor, csrf

    def _lookup_token(self, digest: str, kind: str) -> tuple[Actor, str | None, dt.datetime]:
        with Session(self.engine) as session:
            row = session.execute(
                sa.select(AppUser, AuthToken.expires_at, AuthToken.csrf_token, Site.code)
                .join(AuthToken, AuthToken.user_id == AppUser.id)
                .outerjoin(Site, Site.id == AppUser.site_id)
                .where(
                    AuthToken.token_sha256 == digest,
                    AuthToken.kind == kind,
                    AuthToken.revoked.is_(False),
                )
            ).one_or_none()
        if row is None:
            raise AuthenticationError("the token is not valid: log in again")
        user, expires, csrf, site = row
        expires_at = dt.datetime.fromisoformat(expires)
        if not user.active or expires_at <= self._now():
            raise AuthenticationError("the token has expired or the account is inactive")
        return Actor(user.username, Role(user.role), site, user.id), csrf, expires_at

    def revoke_token(self, token: str) -> None:
        """End a session or withdraw an API token."""
        digest = _sha256(token)
        with transaction(self.engine) as session:
            session.execute(
                sa.update(AuthToken).where(AuthToken.token_sha256 == digest).values(revoked=True)
            )
        with self._tokens_lock:  # after the commit: a lookup racing it cannot re-cache the token
            for key in [k for k in self._tokens if k[0] == digest]:
                del self._tokens[key]

    @staticmethod
    def csrf_matches(expected: str | None, given: str | None) -> bool:
        """Constant-time comparison of a session's CSRF token with the one a form sent."""
        return expected is not None and given is not None and hmac.compare_digest(expected, given)

    # -- helpers -------------------------------------------------------------------------------
    def _verify(self, digest: str, password: str) -> bool:
        try:
            return bool(self.hasher.verify(digest, password))
        except (VerificationError, InvalidHashError):
            return False

    @staticmethod
    def _role(role: str) -> Role:
        try:
            parsed = Role(role)
        except ValueError:
            parsed = Role.SYSTEM
        if parsed is Role.SYSTEM:
            roles = ", ".join(r.value for r in Role if r is not Role.SYSTEM)
            raise ValidationError("role", f"{role!r} is not a role; use one of {roles}")
        return parsed

    @staticmethod
    def _user(session: Session, username: str) -> AppUser:
        user = session.scalar(
            sa.select(AppUser).where(AppUser.username == username.strip().lower())
        )
        if user is None:
            raise NotFoundError(f"no user {username!r}")
        return user
