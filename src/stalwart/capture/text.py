"""Text that every format can carry: the one rule for every text value the store accepts.

A control character (C0 but tab, line feed and carriage return; DEL; C1), NUL, a lone surrogate
or a Unicode non-character cannot be written to XML 1.0 (ODM backups and exports), NUL cannot be
stored by PostgreSQL at all, and none of them is anything a person meant to type. The store
refuses them in every text column of every table the audit chain covers, at the one place every
write passes (``check_row_text``, called by the session's ``before_flush`` hook and by the Core
insert path), so the API, the pages and the command line refuse them alike: a
``ValidationError`` naming the field, a 422 over HTTP, and no row changed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Any

from stalwart.errors import ValidationError

__all__ = ["UNCARRIABLE", "check_text", "check_values", "first_uncarriable"]

_NONCHARACTERS = "".join(
    re.escape(chr(plane * 0x10000 + low)) for plane in range(17) for low in (0xFFFE, 0xFFFF)
)
UNCARRIABLE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef" + _NONCHARACTERS + "]"
)
"""The characters no stored text may hold (tab, line feed and carriage return are allowed)."""


def first_uncarriable(value: str) -> tuple[int, str] | None:
    """The position and character of the first character ``UNCARRIABLE`` refuses, or None."""
    found = UNCARRIABLE.search(value)
    return None if found is None else (found.start(), found.group(0))


def _describe(char: str) -> str:
    code = ord(char)
    if code == 0:
        return "U+0000 (NUL)"
    if 0xD800 <= code <= 0xDFFF:
        return f"U+{code:04X} (a lone surrogate: half of a character)"
    if code <= 0x9F:
        name = unicodedata.name(char, "") or "a control character"
        return f"U+{code:04X} ({name.lower() if name != 'a control character' else name})"
    return f"U+{code:04X} (a Unicode non-character)"


def check_text(field: str, value: str) -> None:
    """Refuse ``value`` for ``field`` if it holds a character no stored text may hold."""
    found = first_uncarriable(value)
    if found is not None:
        position, char = found
        raise ValidationError(
            field,
            f"contains {_describe(char)} at character {position + 1}: remove it (text may "
            "hold letters, digits, punctuation, spaces, tabs and new lines, not control "
            "characters)",
        )


def check_values(values: Iterable[tuple[str, Any]]) -> None:
    """``check_text`` on every ``(field, value)`` whose value is text."""
    for field, value in values:
        if isinstance(value, str):
            check_text(field, value)
