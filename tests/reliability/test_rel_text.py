"""Text that every format can carry: the one rule (``capture.text``) and its doors.

Every character class the rule refuses, and the ones it must keep; a control character or NUL
in a URL's path or query (which PostgreSQL cannot even compare) and a lone surrogate in a JSON
body (which no UTF-8 client can send but a raw one can): 422 naming the field, no row changed,
no 5xx, on SQLite and PostgreSQL. Every body field's cases are in ``test_rel_bad_input``
(``control_char``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rel_fixtures import OWN, OpenWorld, World, build_world

from stalwart.capture.text import check_text, first_uncarriable
from stalwart.errors import ValidationError

REFUSED = [
    "\x00", "\x01", "\x07", "\x08", "\x0b", "\x0c", "\x0e", "\x1b", "\x1f", "\x7f", "\x80",
    "\x85", "\x9f", "\ud800", "\udfff", "\ufdd0", "\ufdef", "\ufffe", "\uffff",
    "\U0001fffe", "\U0010ffff",
]  # fmt: skip
KEPT = ["\t", "\n", "\r", " ", "é", "ß", "中", "\u00a0", "\u200b", "\ue000", "\U0001f600", "\ufffd"]


@pytest.mark.parametrize("char", REFUSED, ids=lambda c: f"U+{ord(c):04X}")
def test_the_rule_refuses(char: str) -> None:
    assert first_uncarriable(f"ok{char}ok") == (2, char)
    with pytest.raises(ValidationError) as info:
        check_text("answer", f"ok{char}")
    assert info.value.field == "answer" and f"U+{ord(char):04X}" in info.value.message


@pytest.mark.parametrize("char", KEPT, ids=lambda c: f"U+{ord(c):04X}")
def test_the_rule_keeps(char: str) -> None:
    check_text("answer", f"line one{char}line two")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def world(open_world: OpenWorld[World], tmp_path: Path, request: Any) -> Iterator[World]:
    with open_world(build_world, request.param, tmp_path) as w:
        yield w


def test_urls_and_raw_bodies_with_uncarriable_text_are_422(world: World) -> None:
    w = world
    headers = w.headers["admin"]
    usubjid = w.participants[OWN][0]
    before = w.stored()
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", f"/api/participants/{usubjid}%00", {}),
        ("GET", "/api/participants/STALWART%1B", {}),
        ("GET", "/api/screenings", {"params": {"site": "US01\x00"}}),
        ("GET", f"/api/participants/{usubjid}/visits/WK04%07/audit", {}),
    ]
    query = w.queries[usubjid]
    raw = b'{"answer": "checked \\ud800 twice"}'
    cases.append(("POST", f"/api/queries/{query}/answer", {"content": raw}))
    wrong = []
    for method, url, extra in cases:
        if "content" in extra:
            coordinator = w.headers["site_coordinator@US01"]  # who may answer a query
            extra = {**extra, "headers": {**coordinator, "Content-Type": "application/json"}}
        else:
            extra = {**extra, "headers": headers}
        r = w.client.request(method, url, **extra)
        error = (
            r.json().get("error", {})
            if r.headers.get("content-type", "").startswith("application/json")
            else {}
        )
        if r.status_code != 422 or not error.get("field") or "U+" not in error.get("message", ""):
            wrong.append(f"{method} {url}: {r.status_code} {r.text[:300]}")
    assert not wrong, "\n".join(wrong)
    assert w.stored() == before
