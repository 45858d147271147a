"""Typed errors of stalwart: every failure a user can cause says what is wrong and how to fix it.

The library never prints or exits; the CLI (and later the web layer) map these to an exit code or
an HTTP status. Each class subclasses the built-in it resembles so callers that catch
``ValueError`` or ``LookupError`` keep working.

::

    StalwartError
    ├── ProtocolError (ValueError)          the protocol file is missing, unparsable or invalid
    ├── ConfigurationError (ValueError)     a bad option: database URL, seed, output folder
    │   └── AllocationKeyError              no allocation key, or one that does not open the
    │                                       sealed list: nobody can be randomized (HTTP 503)
    ├── DatabaseError (RuntimeError)        the store cannot be reached or is not a stalwart store
    ├── ValidationError (ValueError)        a submitted value fails an edit check
    │   ├── FieldErrors                     several fields of one form, each with its message
    │   ├── EligibilityError                the participant does not meet eligibility; .reasons
    │   └── VisitWindowError                a visit date lies outside its protocol window
    ├── ConflictError (ValueError)          the write contradicts stored data (duplicate, twice)
    │   ├── AlreadyRandomizedError          the participant already has an allocation
    │   ├── StaleVersionError               a correction made from an older version; .changes
    │   │   └── PreconditionFailedError     the same, named by an HTTP If-Match header
    │   └── DataLockedError                 the data is locked by the data manager; .lock_id
    ├── NotFoundError (LookupError)         a site, participant or visit that does not exist
    ├── AuthenticationError (PermissionError)  no valid credentials: log in or send a token
    │   ├── LoginThrottledError             too many failed logins: wait, then retry
    │   └── PasswordChangeRequiredError     the password was reset: set a new one first
    ├── AccessDeniedError (PermissionError) the user's role or site may not do this
    ├── AllocationExhaustedError (RuntimeError)  no free slot is left in a stratum's list
    ├── AuditChainError (RuntimeError)      ``audit verify`` found a record that does not match
    ├── AnalysisError (ValueError)          the data cannot support the requested analysis
    ├── DatasetError (ValueError)           a CDISC input file, or an option naming its
    │                                       content, is unusable (the CLI exits 2)
    └── ExportError (ValueError)            data cannot be written or read in a CDISC format
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

__all__ = [
    "AccessDeniedError",
    "AllocationExhaustedError",
    "AllocationKeyError",
    "AlreadyRandomizedError",
    "AnalysisError",
    "AuditChainError",
    "AuthenticationError",
    "ConfigurationError",
    "ConflictError",
    "DataLockedError",
    "DatabaseError",
    "DatasetError",
    "DuplicateError",
    "EligibilityError",
    "ExportError",
    "FieldErrors",
    "LoginThrottledError",
    "NotFoundError",
    "PasswordChangeRequiredError",
    "PreconditionFailedError",
    "ProtocolError",
    "StaleVersionError",
    "StalwartError",
    "ValidationError",
    "VisitWindowError",
]


class StalwartError(Exception):
    """Base of every error stalwart raises on purpose; ``exit_code`` is the CLI's status."""

    exit_code: ClassVar[int] = 1


class ProtocolError(StalwartError, ValueError):
    """The protocol file is missing, cannot be parsed, or fails validation.

    ``problems`` lists one ``"location: message"`` string per problem found.
    """

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        listing = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid protocol {source}:\n{listing}")


class ConfigurationError(StalwartError, ValueError):
    """A command-line option, environment variable or setting is unusable."""


class AllocationKeyError(ConfigurationError):
    """The allocation list is sealed and the running server holds no key that opens it: a fault
    of the server's set-up, not of the request, so nobody can be randomized until an operator
    gives the right key (``capture.sealing``); nothing is written."""


class DatabaseError(StalwartError, RuntimeError):
    """The trial database cannot be opened, or is not a stalwart trial database."""


class ValidationError(StalwartError, ValueError):
    """A value fails an edit check; ``field`` names it, the message says the allowed values."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class FieldErrors(ValidationError):
    """Several fields of one form fail their edit checks: ``errors`` maps each to its message.

    ``field`` and ``message`` are the first one's, so a caller reading one error still works.
    """

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(errors)
        first = next(iter(self.errors))
        super().__init__(first, self.errors[first])
        self.args = ("; ".join(f"{f}: {m}" for f, m in self.errors.items()),)

    @classmethod
    def collect(cls, errors: Sequence[ValidationError]) -> ValidationError | None:
        """None for no error, the error itself for one, else one ``FieldErrors`` of them all."""
        if len(errors) <= 1:
            return errors[0] if errors else None
        found: dict[str, str] = {}
        for e in errors:
            for f, m in (e.errors if isinstance(e, FieldErrors) else {e.field: e.message}).items():
                found.setdefault(f, m)
        return cls(found)


class EligibilityError(ValidationError):
    """The participant fails one or more eligibility criteria, listed in ``reasons``."""

    def __init__(self, screening_number: str, reasons: Sequence[str]) -> None:
        self.screening_number = screening_number
        self.reasons = list(reasons)
        super().__init__(
            "eligibility",
            f"{screening_number} is not eligible: " + "; ".join(self.reasons),
        )


class VisitWindowError(ValidationError):
    """A visit date lies outside the window the protocol allows for that visit."""


class ConflictError(StalwartError, ValueError):
    """The write contradicts what is stored (a duplicate visit, a second record of one fact)."""


class DuplicateError(ConflictError):
    """A value one field must hold uniquely is taken (a screening number used at the site):
    ``field`` names it, so a form shows the refusal beside it."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(message)


class AlreadyRandomizedError(ConflictError):
    """The participant already holds an allocation; randomization happens once."""


class StaleVersionError(ConflictError):
    """A correction was made from an older version of the record than the one stored.

    ``version`` is the version the correction named, ``current`` the stored one, and
    ``changes`` lists each field changed since: ``field``, ``seen`` (the value at ``version``),
    ``now``, ``changed_by`` and ``changed_at``.
    """

    def __init__(
        self, message: str, version: int, current: int, changes: Sequence[dict[str, object]]
    ) -> None:
        self.version = version
        self.current = current
        self.changes = [dict(c) for c in changes]
        super().__init__(message)


class PreconditionFailedError(StaleVersionError):
    """A stale version named by an HTTP ``If-Match`` header (the API answers 412)."""


class DataLockedError(ConflictError):
    """The write would change data a data manager has locked (the API answers 423 Locked).

    ``lock_id`` names the lock in force; ``scope`` says what it covers (participant, site,
    trial) and ``cutoff`` the date up to which it does (None: all of it)."""

    def __init__(self, message: str, lock_id: int, scope: str, cutoff: str | None) -> None:
        self.lock_id = lock_id
        self.scope = scope
        self.cutoff = cutoff
        super().__init__(message)


class NotFoundError(StalwartError, LookupError):
    """A site, participant, visit or record that the request names does not exist."""


class AuthenticationError(StalwartError, PermissionError):
    """The request carries no valid credentials: log in, or send a valid bearer token."""


class LoginThrottledError(AuthenticationError):
    """Too many failed logins for an account or from a client; ``retry_after`` in seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PasswordChangeRequiredError(AuthenticationError):
    """The password is right but was set by an administrator: the owner must choose a new one."""


class AccessDeniedError(StalwartError, PermissionError):
    """The acting user's role (or site) does not allow the request; ``permission`` names why."""

    def __init__(self, permission: str, message: str) -> None:
        self.permission = permission
        super().__init__(message)


class AllocationExhaustedError(StalwartError, RuntimeError):
    """No free slot remains in the stratum's allocation list; extend the list before enrolling."""


class AuditChainError(StalwartError, RuntimeError):
    """The audit chain or the data it covers does not verify; ``sequence`` is the first bad one."""

    def __init__(self, sequence: int | None, message: str) -> None:
        self.sequence = sequence
        super().__init__(message)


class AnalysisError(StalwartError, ValueError):
    """The data cannot support the requested analysis (no events, a missing arm, a bad column)."""


class DatasetError(StalwartError, ValueError):
    """A CDISC input dataset (ADaM XPT or CSV) is missing, unreadable or lacks what is needed.

    Also raised when an option names something the data does not hold (an arm, a population
    flag). ``dataset`` and ``variable`` name the culprit where there is one. Bad input, like a
    bad flag, so the CLI exits 2.
    """

    exit_code: ClassVar[int] = 2

    def __init__(self, message: str, dataset: str = "", variable: str = "") -> None:
        self.dataset = dataset
        self.variable = variable
        super().__init__(message)


class ExportError(StalwartError, ValueError):
    """A CDISC export or import cannot proceed (unknown format, empty trial, a bad ODM file)."""
