"""Account administration: deactivate, reactivate, change role or site, reset a password, tokens.

The acts of an administrator (``Permission.MANAGE_USERS``) on other people's accounts, each in
one audited transaction (``capture.writes``). A change of the account row (active, role, site)
is an ``UPDATE`` audit record of the row with its new content. An act on a credential or a
token changes no audited row, so it is recorded as an audit record of the account's unchanged
row whose reason names the act: a password set (with the SHA-256 of its argon2 hash, never the
password), a token issued or revoked (by its id, never the secret). The chain thus tells, per
account, who did what and when, and a backup restores it as it is.

Deactivating an account revokes every token and page session it holds; because every request
reads its token from the database (``users.UserStore.actor_for_token``), they die in every
server process on the next request. A password reset revokes them too, and the new password
opens only the change-password step (``UserCredential.must_change``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from argon2 import PasswordHasher
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from stalwart.capture.access import SITE_ROLES, ActorLike, Permission, Role, require
from stalwart.capture.audit import append_audit, secret_digest
from stalwart.capture.passwords import check_password
from stalwart.capture.tables import AppUser, AuthToken, Base, Site, UserCredential
from stalwart.capture.transaction import transaction
from stalwart.errors import ConflictError, NotFoundError, ValidationError

__all__ = [
    "AccountAdmin",
    "TokenInfo",
    "UserAccount",
    "check_site_for_role",
    "credential_digest",
    "find_user",
    "parse_role",
    "record_account_event",
    "site_id_of",
]


@dataclass(frozen=True)
class UserAccount:
    """A user account as shown to administrators (never the password hash)."""

    id: int
    username: str
    full_name: str
    role: str
    site: str | None
    active: bool
    last_login: str | None = None
    must_change_password: bool = False


@dataclass(frozen=True)
class TokenInfo:
    """A token as its list shows it: the id to revoke it by, never the secret nor its hash."""

    id: int
    username: str
    kind: str
    created_at: str
    expires_at: str
    revoked: bool


def credential_digest(password_hash: str) -> str:
    """A short digest of a stored (salted) password hash: which credential, not the secret (the
    audit record of the credential row holds the same digest)."""
    return secret_digest(password_hash)


def parse_role(role: str) -> Role:
    """The role named ``role``; ``ValidationError`` listing the roles otherwise."""
    try:
        parsed = Role(role)
    except ValueError:
        parsed = Role.SYSTEM
    if parsed is Role.SYSTEM:
        roles = ", ".join(r.value for r in Role if r is not Role.SYSTEM)
        raise ValidationError("role", f"{role!r} is not a role; use one of {roles}")
    return parsed


def check_site_for_role(role: Role, site: str | None) -> None:
    """Refuses a site role without a site, and a study-wide role with one."""
    if role in SITE_ROLES and not site:
        raise ValidationError("site", f"a {role.value} must be given a site (--site)")
    if site and role not in SITE_ROLES | {Role.MONITOR}:
        raise ValidationError("site", f"a {role.value} works across sites: give no site")


def site_id_of(session: Session, role: Role, site: str | None) -> int | None:
    """The id of ``site`` for an account of ``role``; refuses a site the role may not have."""
    check_site_for_role(role, site)
    if not site:
        return None
    site_id = session.scalar(sa.select(Site.id).where(Site.code == site))
    if site_id is None:
        known = ", ".join(session.scalars(sa.select(Site.code).order_by(Site.code)))
        raise NotFoundError(f"no site {site!r}; sites are {known or 'none yet'}")
    return site_id


def find_user(session: Session, username: str) -> AppUser:
    """The account named ``username`` (any case); ``NotFoundError`` otherwise."""
    user = session.scalar(sa.select(AppUser).where(AppUser.username == username.strip().lower()))
    if user is None:
        raise NotFoundError(f"no user {username!r}: 'stalwart user list' shows the accounts")
    return user


def record_account_event(
    session: Session,
    user: AppUser,
    actor: str,
    event: str,
    rows: Sequence[tuple[str, Base]] = (),
) -> None:
    """Audit an act on ``user``'s credential or tokens: the account, and the credential and
    token ``rows`` written (``(action, row)``; their secrets as digests, see ``audit.row_data``),
    so that a credential or token written any other way is a finding of audit verify."""
    append_audit(session, [("UPDATE", user), *rows], actor, event)


def _reason(reason: str) -> str:
    text = reason.strip()
    if not text:
        raise ValidationError("reason", "give the reason for the change")
    if len(text) > 500:
        raise ValidationError("reason", "use at most 500 characters")
    return text


class AccountAdmin:
    """What an administrator does to accounts, each act audited (``UserStore.admin``)."""

    def __init__(
        self,
        engine: Engine,
        hasher: PasswordHasher,
        now: Callable[[], dt.datetime],
    ) -> None:
        self.engine = engine
        self.hasher = hasher
        self._now = now

    def users(self, actor: ActorLike) -> list[UserAccount]:
        """Every account with its last login (its newest token) and whether a reset is pending."""
        require(actor, Permission.MANAGE_USERS, "list user accounts")
        last = (
            sa.select(AuthToken.user_id, sa.func.max(AuthToken.created_at).label("at"))
            .group_by(AuthToken.user_id)
            .subquery()
        )
        with Session(self.engine) as session:
            rows = session.execute(
                sa.select(AppUser, Site.code, last.c.at, UserCredential.must_change)
                .outerjoin(Site, Site.id == AppUser.site_id)
                .outerjoin(last, last.c.user_id == AppUser.id)
                .outerjoin(UserCredential, UserCredential.user_id == AppUser.id)
                .order_by(AppUser.username)
            ).all()
        return [
            UserAccount(
                u.id, u.username, u.full_name, u.role, code, u.active, at, bool(must_change)
            )
            for u, code, at, must_change in rows
        ]

    def set_active(self, username: str, active: bool, reason: str, actor: ActorLike) -> None:
        """Deactivate (or reactivate) an account; deactivation revokes all its tokens at once."""
        who = require(actor, Permission.MANAGE_USERS, "manage user accounts")
        why = _reason(reason)
        with transaction(self.engine) as session:
            user = find_user(session, username)
            if user.username == who.username and not active:
                raise ConflictError("you cannot deactivate your own account: ask another admin")
            user.active = active
            revoked = [] if active else self._revoke_all(session, user.id)
            what = "account reactivated" if active else "account deactivated"
            if revoked:
                what += f" ({len(revoked)} tokens revoked)"
            append_audit(
                session,
                [("UPDATE", user), *(("UPDATE", t) for t in revoked)],
                who.label,
                f"{what}: {why}",
            )

    def change_role(
        self, username: str, role: str, site: str | None, reason: str, actor: ActorLike
    ) -> UserAccount:
        """Give an account a new role and site (None: no site); effective on its next request."""
        who = require(actor, Permission.MANAGE_USERS, "manage user accounts")
        why = _reason(reason)
        new_role = parse_role(role)
        with transaction(self.engine) as session:
            user = find_user(session, username)
            if user.username == who.username and new_role is not Role.ADMIN:
                raise ConflictError("you cannot take the admin role from yourself")
            site_id = site_id_of(session, new_role, site)
            before = f"{user.role}" + (f" at site id {user.site_id}" if user.site_id else "")
            user.role = new_role.value
            user.site_id = site_id
            after = new_role.value + (f" at {site}" if site else "")
            append_audit(
                session,
                [("UPDATE", user)],
                who.label,
                f"role changed from {before} to {after}: {why}",
            )
            return UserAccount(user.id, user.username, user.full_name, user.role, site, user.active)

    def reset_password(self, username: str, password: str, actor: ActorLike) -> None:
        """Set a temporary password its owner must change at next login; revokes their tokens.

        Works on an account without a credential too (a restored database: credentials are not
        in backups), which is how a restored trial is reopened by its own accounts.
        """
        who = require(actor, Permission.MANAGE_USERS, "reset passwords")
        check_password(password, username)
        digest = self.hasher.hash(password)
        with transaction(self.engine) as session:
            user = find_user(session, username)
            cred = session.get(UserCredential, user.id)
            action = "INSERT" if cred is None else "UPDATE"
            if cred is None:
                cred = UserCredential(user_id=user.id, password_hash=digest, must_change=True)
                session.add(cred)
            else:
                cred.password_hash = digest
                cred.must_change = True
            revoked = self._revoke_all(session, user.id)
            record_account_event(
                session,
                user,
                who.label,
                f"password reset by {who.label} (credential {credential_digest(digest)}); "
                f"to be changed at next login; {len(revoked)} tokens revoked",
                [(action, cred), *(("UPDATE", t) for t in revoked)],
            )

    def tokens(self, username: str | None, actor: ActorLike) -> list[TokenInfo]:
        """The live tokens of one account (or of all): id, kind, issued, expiry; never secrets."""
        require(actor, Permission.MANAGE_USERS, "list tokens")
        stamp = self._now().isoformat()
        with Session(self.engine) as session:
            stmt = (
                sa.select(AuthToken, AppUser.username)
                .join(AppUser, AppUser.id == AuthToken.user_id)
                .where(AuthToken.revoked.is_(False), AuthToken.expires_at > stamp)
                .order_by(AuthToken.id)
            )
            if username is not None:
                stmt = stmt.where(AppUser.id == find_user(session, username).id)
            rows = session.execute(stmt).all()
        return [
            TokenInfo(t.id, name, t.kind, t.created_at, t.expires_at, t.revoked) for t, name in rows
        ]

    def revoke_token_id(self, token_id: int, actor: ActorLike) -> None:
        """Revoke one token (an API token or a page session) by its id, as ``tokens`` shows it."""
        who = require(actor, Permission.MANAGE_USERS, "revoke tokens")
        with transaction(self.engine) as session:
            token = session.get(AuthToken, token_id)
            if token is None:
                raise NotFoundError(f"no token {token_id}: the user's token list shows the ids")
            if token.revoked:
                raise ConflictError(f"token {token_id} is already revoked")
            token.revoked = True
            user = session.get(AppUser, token.user_id)
            assert user is not None
            record_account_event(
                session,
                user,
                who.label,
                f"{token.kind} token {token.id} revoked by {who.label}",
                [("UPDATE", token)],
            )

    @staticmethod
    def _revoke_all(session: Session, user_id: int) -> list[AuthToken]:
        """Revoke every live token of the account; returns them (each is audited)."""
        tokens = list(
            session.scalars(
                sa.select(AuthToken)
                .where(AuthToken.user_id == user_id, AuthToken.revoked.is_(False))
                .order_by(AuthToken.id)
            )
        )
        for token in tokens:
            token.revoked = True
        return tokens
