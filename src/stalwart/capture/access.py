"""Who may do what, and at which sites: roles, permissions and the acting user.

Every call of ``capture.service`` names its actor. An ``Actor`` is a logged-in user with a role
and, for site roles, a site; the service checks the role's permission and restricts every query
to the actor's site, so a site's staff never reach another site's records whatever route they
take. A plain string actor is the trusted system (set-up, the simulator, command-line tools): it
may do anything and is recorded under that name.

Roles (ICH E6 / 21 CFR Part 11 vocabulary):

================================  =========  ===================================================
role                              sites      may
================================  =========  ===================================================
admin                             all        manage users; read all data
data_manager                      all        enter and correct data, raise and close queries;
                                             lock and unlock data; pooled summaries (the open
                                             DSMB report)
site_coordinator                  own        screen, consent, randomize, enter data, answer
investigator                      own        as the coordinator, and sign visits
monitor                           all / own  read, raise and close queries, mark forms
                                             source-verified (SDV)
endpoint_reviewer                 all        read clinical events (no arm), confirm or reject
statistician_blinded              none       pooled summaries only; never an arm
statistician_unblinded            none       summaries and results by arm
dsmb                              none       summaries and results by arm
================================  =========  ===================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from stalwart.errors import AccessDeniedError

__all__ = [
    "ROLES",
    "SITE_ROLES",
    "Actor",
    "ActorLike",
    "Permission",
    "Role",
    "as_actor",
    "permissions_of",
    "require",
]


class Role(StrEnum):
    """A user's role; it decides the permissions and whether the user is tied to one site."""

    ADMIN = "admin"
    DATA_MANAGER = "data_manager"
    SITE_COORDINATOR = "site_coordinator"
    INVESTIGATOR = "investigator"
    MONITOR = "monitor"
    ENDPOINT_REVIEWER = "endpoint_reviewer"
    STATISTICIAN_BLINDED = "statistician_blinded"
    STATISTICIAN_UNBLINDED = "statistician_unblinded"
    DSMB = "dsmb"
    SYSTEM = "system"


class Permission(StrEnum):
    """One thing a role may do."""

    MANAGE_USERS = "manage_users"
    READ_RECORDS = "read_records"  # participant-level data of the sites in scope
    SEE_ARM = "see_arm"  # the allocated arm of a participant
    SCREEN = "screen"  # screening and consent
    RANDOMIZE = "randomize"
    ENTER_DATA = "enter_data"  # visits, doses, events, adverse events, disposition
    CORRECT_DATA = "correct_data"  # edits after first save, with a reason
    SIGN = "sign"
    RAISE_QUERY = "raise_query"
    ANSWER_QUERY = "answer_query"
    CLOSE_QUERY = "close_query"
    READ_EVENTS = "read_events"  # clinical events for endpoint review
    REVIEW_ENDPOINT = "review_endpoint"
    EXPORT = "export"
    POOLED_SUMMARY = "pooled_summary"
    RESULTS_BY_ARM = "results_by_arm"
    VERIFY_SOURCE = "verify_source"  # source data verification (SDV) of a form
    LOCK_DATA = "lock_data"  # lock and unlock a participant's, a site's or the trial's data


P = Permission
_SITE_DATA = {
    P.READ_RECORDS,
    P.SEE_ARM,
    P.SCREEN,
    P.RANDOMIZE,
    P.ENTER_DATA,
    P.CORRECT_DATA,
    P.ANSWER_QUERY,
    P.EXPORT,
}
_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset({P.MANAGE_USERS, P.READ_RECORDS, P.SEE_ARM, P.EXPORT}),
    Role.DATA_MANAGER: frozenset(
        {P.READ_RECORDS, P.SEE_ARM, P.ENTER_DATA, P.CORRECT_DATA, P.RAISE_QUERY}
        | {P.CLOSE_QUERY, P.ANSWER_QUERY, P.EXPORT, P.READ_EVENTS, P.POOLED_SUMMARY}
        | {P.LOCK_DATA}
    ),
    Role.SITE_COORDINATOR: frozenset(_SITE_DATA),
    Role.INVESTIGATOR: frozenset(_SITE_DATA | {P.SIGN}),
    Role.MONITOR: frozenset(
        {P.READ_RECORDS, P.SEE_ARM, P.RAISE_QUERY, P.CLOSE_QUERY, P.VERIFY_SOURCE}
    ),
    Role.ENDPOINT_REVIEWER: frozenset({P.READ_EVENTS, P.REVIEW_ENDPOINT}),
    Role.STATISTICIAN_BLINDED: frozenset({P.POOLED_SUMMARY}),
    Role.STATISTICIAN_UNBLINDED: frozenset({P.POOLED_SUMMARY, P.RESULTS_BY_ARM}),
    Role.DSMB: frozenset({P.POOLED_SUMMARY, P.RESULTS_BY_ARM}),
    Role.SYSTEM: frozenset(Permission),
}

ROLES: tuple[str, ...] = tuple(r.value for r in Role if r is not Role.SYSTEM)
"""The roles a user account can hold."""

SITE_ROLES = frozenset({Role.SITE_COORDINATOR, Role.INVESTIGATOR})
"""Roles that must name their site; a monitor may name one (then only that site)."""


def permissions_of(role: Role) -> frozenset[Permission]:
    """The permissions of ``role``."""
    return _PERMISSIONS[role]


@dataclass(frozen=True)
class Actor:
    """The user on whose behalf a service call runs; ``site`` (a site code) limits its scope."""

    username: str
    role: Role
    site: str | None = None
    user_id: int | None = None

    @classmethod
    def system(cls, name: str = "system") -> Actor:
        """The trusted, unrestricted actor of set-up scripts and the simulator."""
        return cls(name, Role.SYSTEM)

    def can(self, permission: Permission) -> bool:
        """Whether the role grants ``permission``."""
        return permission in _PERMISSIONS[self.role]

    def sees_site(self, site: str) -> bool:
        """Whether records of ``site`` are in this actor's scope."""
        return self.site is None or self.site == site

    @property
    def label(self) -> str:
        """The name the audit trail records."""
        return self.username


ActorLike = Actor | str
"""What a service call accepts as its actor: an ``Actor``, or a name for the system actor."""


def as_actor(actor: ActorLike) -> Actor:
    """The ``Actor`` of a service call (a bare name is the unrestricted system actor)."""
    return actor if isinstance(actor, Actor) else Actor.system(actor)


def require(actor: ActorLike, permission: Permission, what: str | None = None) -> Actor:
    """The actor, if its role grants ``permission``; ``AccessDeniedError`` otherwise."""
    who = as_actor(actor)
    if not who.can(permission):
        action = what or permission.value.replace("_", " ")
        raise AccessDeniedError(
            permission.value,
            f"{who.username} ({who.role.value}) may not {action}; ask a user whose role allows it",
        )
    return who
