"""The password policy, after NIST SP 800-63B (section 5.1.1.2): length and a list, no recipes.

A password is accepted when it has at least ``MIN_PASSWORD_LENGTH`` characters (Unicode code
points) and at most ``MAX_PASSWORD_LENGTH``, is not all whitespace, holds no control character
(C0, DEL, C1: NUL included) and no lone surrogate (neither can be typed, and they break the
text's encoding), is not one character repeated, does not contain the username, and is not on
the list of common passwords that ships with the package
(``common-passwords.txt.gz``, from Django: see ``common-passwords.LICENSE``), compared
case-insensitively and with surrounding whitespace ignored. There are no composition rules
(no "one digit, one symbol"): SP 800-63B advises against them. Each refusal says why, so the
person can choose another.

``check_password`` is applied wherever a password is set (an account's creation, a change, a
reset); it never sees a login attempt (an old password that predates the policy still opens
its account).
"""

from __future__ import annotations

import gzip
import unicodedata
from functools import cache
from importlib.resources import files

from stalwart.errors import ValidationError

__all__ = ["MAX_PASSWORD_LENGTH", "MIN_PASSWORD_LENGTH", "check_password", "common_passwords"]

MIN_PASSWORD_LENGTH = 12
"""Shortest password accepted, in characters."""

MAX_PASSWORD_LENGTH = 200
"""Longest password accepted (the API's schemas allow the same): a passphrase fits."""

_FIELD = "password"


@cache
def common_passwords() -> frozenset[str]:
    """The shipped list of common and breached passwords (19,640), lower case (read once)."""
    data = files("stalwart.capture").joinpath("common-passwords.txt.gz").read_bytes()
    text = gzip.decompress(data).decode("utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip())


def _forbidden_character(password: str) -> str | None:
    for position, char in enumerate(password, start=1):
        category = unicodedata.category(char)
        if category == "Cc":
            return f"a control character (U+{ord(char):04X}) at position {position}"
        if category == "Cs":
            return f"a lone surrogate (U+{ord(char):04X}) at position {position}"
    return None


def check_password(password: str, username: str | None = None) -> None:
    """Refuse a password the policy does not allow: ``ValidationError`` saying why."""
    if not isinstance(password, str):
        raise ValidationError(_FIELD, "give the password as text")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationError(
            _FIELD,
            f"the password has {len(password)} characters: use at least {MIN_PASSWORD_LENGTH} "
            "characters (a passphrase of a few unrelated words is easy to remember)",
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValidationError(_FIELD, f"use at most {MAX_PASSWORD_LENGTH} characters")
    bad = _forbidden_character(password)
    if bad is not None:
        raise ValidationError(_FIELD, f"the password holds {bad}: use characters that can be typed")
    if not password.strip():
        raise ValidationError(_FIELD, "the password is all whitespace: use words or characters")
    folded = password.strip().lower()
    if len(set(folded)) == 1:
        raise ValidationError(
            _FIELD, "the password is one character repeated: it is guessed at once"
        )
    name = (username or "").strip().lower()
    if len(name) >= 3 and name in folded:
        raise ValidationError(_FIELD, "the password contains the username: choose another")
    if folded in common_passwords():
        raise ValidationError(
            _FIELD,
            f"the password is on the list of {len(common_passwords()):,} common passwords, "
            "which attackers try first: choose another",
        )
