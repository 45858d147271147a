"""User accounts, passwords and tokens: who is acting, proven by a password or a token.

Passwords are hashed with argon2id (argon2-cffi); the hash lives in ``user_credential`` and never
enters the audit trail. Every password set must pass ``capture.passwords``' policy (NIST SP
800-63B: length, a list of common passwords, no control characters); failed logins are counted
in the database and delay the next try (``capture.throttle``). API bearer tokens and browser
sessions are random secrets of which only the SHA-256 is stored; a session also carries the
CSRF token its pages must send back. Account changes (creation, role, activation, password set
or changed, a token issued or revoked) are audited like any data; an administrator's acts on
accounts are in ``capture.accounts`` (``UserStore.admin``).

Every request reads its token from the database (one indexed query joining the token, its
account and site): a revoked token, a deactivated account or a passed expiry is refused on the
next request in every server process, with no cache to age out.
``benchmarks/token_lookup.py`` measures what the read costs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from stalwart.capture.access import Actor, ActorLike, Permission, Role, require
from stalwart.capture.accounts import (
    AccountAdmin,
    UserAccount,
    check_site_for_role,
    credential_digest,
    find_user,
    parse_role,
    record_account_event,
    site_id_of,
)
from stalwart.capture.audit import append_audit
from stalwart.capture.passwords import MIN_PASSWORD_LENGTH, check_password
from stalwart.capture.tables import AppUser, AuthToken, Site, UserCredential
from stalwart.capture.throttle import LoginThrottle
from stalwart.capture.transaction import transaction
from stalwart.errors import (
    AuthenticationError,
    ConflictError,
    PasswordChangeRequiredError,
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

_TOKEN_LOOKUP = (
    sa.select(
        AppUser.username,
        AppUser.role,
        AppUser.active,
        AppUser.id,
        Site.code,
        AuthToken.expires_at,
        AuthToken.csrf_token,
    )
    .join(AuthToken, AuthToken.user_id == AppUser.id)
    .outerjoin(Site, Site.id == AppUser.site_id)
    .where(
        AuthToken.token_sha256 == sa.bindparam("digest"),
        AuthToken.kind == sa.bindparam("kind"),
        AuthToken.revoked.is_(False),
    )
)
"""A live token's account and site: the one read every authenticated request makes."""

_USERNAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789._-@")


def default_hasher() -> PasswordHasher:
    """argon2id with argon2-cffi's defaults (RFC 9106 low-memory profile)."""
    return PasswordHasher()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


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
    ) -> None:
        self.engine = engine
        self.hasher = hasher or default_hasher()
        self._now = now
        self.throttle = throttle or LoginThrottle()
        # the token read needs no transaction: on PostgreSQL, autocommit saves the BEGIN and
        # ROLLBACK round trips (SQLite's transactions are local calls)
        self._reader = (
            engine.execution_options(isolation_level="AUTOCOMMIT")
            if engine.dialect.name == "postgresql"
            else engine
        )
        self.admin = AccountAdmin(engine, self.hasher, now)
        """Deactivate, reactivate, change role or site, reset a password, list and revoke tokens."""
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
        user_role = parse_role(role)
        check_site_for_role(user_role, site)
        check_password(password, username)
        digest = self.hasher.hash(password)
        with transaction(self.engine) as session:
            site_id = site_id_of(session, user_role, site)
            if session.scalar(sa.select(AppUser.id).where(AppUser.username == username)):
                raise ConflictError(
                    f"user {username} already exists: to let its owner in again (after a "
                    "restore, or a lost password) use 'stalwart user reset-password'"
                )
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
            cred = UserCredential(user_id=user.id, password_hash=digest)
            session.add(cred)
            append_audit(
                session, [("INSERT", user), ("INSERT", cred)], who.label, "user account created"
            )
            return UserAccount(user.id, username, user.full_name, user.role, site, True)

    def users(self, actor: ActorLike) -> list[UserAccount]:
        """Every account with its last login, for administrators."""
        return self.admin.users(actor)

    def set_active(self, username: str, active: bool, reason: str, actor: ActorLike) -> None:
        """Deactivate (or reactivate) an account; its tokens stop working at once."""
        self.admin.set_active(username, active, reason, actor)

    def change_password(self, username: str, old: str, new: str, client: str | None = None) -> None:
        """Change one's own password, proving the old one (a reset's temporary one included)."""
        self.authenticate(username, old, client, changing_password=True)
        try:
            check_password(new, username)
        except ValidationError as exc:  # the form's and the API's field is the new password
            raise ValidationError("new_password", exc.message) from None
        if new == old:
            raise ValidationError("new_password", "choose a password other than the current one")
        digest = self.hasher.hash(new)
        with transaction(self.engine) as session:
            user = find_user(session, username)
            cred = session.get(UserCredential, user.id)
            assert cred is not None
            cred.password_hash = digest
            cred.must_change = False
            user.password_changed_at = self._now().isoformat()
            append_audit(
                session,
                [("UPDATE", user), ("UPDATE", cred)],
                user.username,
                f"password changed by its owner (credential {credential_digest(digest)})",
            )

    # -- proving identity ----------------------------------------------------------------------
    def authenticate(
        self,
        username: str,
        password: str,
        client: str | None = None,
        *,
        trusted: bool = False,
        changing_password: bool = False,
    ) -> Actor:
        """The actor of a username and password; one message for every failure (no hints).

        Failures are counted in the database for every server process (``capture.throttle``):
        the ``client`` address, and an account failing from many addresses, must then wait a
        little longer before each next try (``LoginThrottledError`` says how long). ``trusted``
        marks the attempt of someone already signed in as this account (their own session, an
        e-signature): it never waits. A right password set by an administrator's reset raises
        ``PasswordChangeRequiredError`` (it opens only ``change_password``, which passes
        ``changing_password``).
        """
        failure = AuthenticationError("unknown user or wrong password")
        key = username.strip().lower()
        if not trusted:
            self.throttle.check(self.engine, key, client)
        attempt = self.throttle.begin(self.engine, key, client, trusted)
        actor, must_change = self._authenticate(key, password, failure)  # a failure stays counted
        self.throttle.succeeded(self.engine, attempt, key, None if trusted else client)
        if must_change and not changing_password:
            raise PasswordChangeRequiredError(
                "your password was reset by an administrator: choose a new password "
                "(the login page asks for it; the API: POST /api/password)"
            )
        return actor

    def _authenticate(
        self, username: str, password: str, failure: AuthenticationError
    ) -> tuple[Actor, bool]:
        with Session(self.engine) as session:
            row = session.execute(
                sa.select(
                    AppUser, UserCredential.password_hash, UserCredential.must_change, Site.code
                )
                .join(UserCredential, UserCredential.user_id == AppUser.id)
                .outerjoin(Site, Site.id == AppUser.site_id)
                .where(AppUser.username == username)
            ).one_or_none()
        if row is None:
            self._verify(self._dummy_hash, password)
            raise failure
        user, digest, must_change, site = row
        if not self._verify(digest, password) or not user.active:
            raise failure
        return Actor(user.username, Role(user.role), site, user.id), bool(must_change)

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
            user = session.get(AppUser, actor.user_id)
            if user is None or not user.active:
                raise AuthenticationError("the account is inactive: ask an administrator")
            row = AuthToken(
                user_id=actor.user_id,
                kind=kind,
                token_sha256=_sha256(token),
                csrf_token=csrf,
                created_at=now.isoformat(),
                expires_at=expires.isoformat(),
                revoked=False,
            )
            session.add(row)
            session.flush()
            what = "page session started" if kind == "session" else "API token issued"
            record_account_event(
                session,
                user,
                actor.label,
                f"{what} (token {row.id}, expires {expires:%Y-%m-%d %H:%M} UTC)",
                [("INSERT", row)],
            )
        return IssuedToken(token, csrf, expires, actor)

    def actor_for_token(self, token: str, kind: str) -> tuple[Actor, str | None]:
        """The actor and CSRF token of a live token of ``kind``; AuthenticationError otherwise.

        Read from the database on every call: revocation, deactivation, a role change and
        expiry apply on the next request in every process.
        """
        actor, csrf, _ = self._lookup_token(_sha256(token), kind)
        return actor, csrf

    def _lookup_token(self, digest: str, kind: str) -> tuple[Actor, str | None, dt.datetime]:
        # one Core statement (no ORM unit of work): this runs on every request
        with self._reader.connect() as conn:
            row = conn.execute(_TOKEN_LOOKUP, {"digest": digest, "kind": kind}).one_or_none()
        if row is None:
            raise AuthenticationError("the token is not valid: log in again")
        username, role, active, user_id, site, expires, csrf = row
        expires_at = dt.datetime.fromisoformat(expires)
        if not active or expires_at <= self._now():
            raise AuthenticationError("the token has expired or the account is inactive")
        return Actor(username, Role(role), site, user_id), csrf, expires_at

    def revoke_token(self, token: str) -> None:
        """End a session or withdraw an API token (by its secret: the owner's logout)."""
        digest = _sha256(token)
        with transaction(self.engine) as session:
            row = session.scalar(
                sa.select(AuthToken).where(
                    AuthToken.token_sha256 == digest, AuthToken.revoked.is_(False)
                )
            )
            if row is None:
                return
            row.revoked = True
            user = session.get(AppUser, row.user_id)
            assert user is not None
            what = "page session ended (logout)" if row.kind == "session" else "API token withdrawn"
            record_account_event(
                session, user, user.username, f"{what} (token {row.id})", [("UPDATE", row)]
            )

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
