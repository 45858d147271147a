"""A list page's query string read as a ``capture.listing.ListQuery``, and links that change it.

Parameters: ``page`` (from 1), ``q`` (participant id or screening number, any part, any case),
``site``, ``arm``, ``status``, ``sort`` and ``order`` (``asc`` or ``desc``). A page that is not
a whole number, or an order that is neither, is a ValidationError naming the parameter (the page
shows it with status 422); the store refuses the rest (``listing``).
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import Request

from stalwart.capture.listing import ListQuery
from stalwart.errors import ValidationError

__all__ = ["PARAMETERS", "list_query", "page_link"]

PARAMETERS = ("page", "q", "site", "arm", "status", "sort", "order")
"""The query parameters a list page reads (and its links keep)."""


def list_query(request: Request) -> ListQuery:
    """The list query of ``request``'s query string; ValidationError for nonsense."""
    params = request.query_params
    text = params.get("page", "1").strip() or "1"
    if not text.lstrip("-").isdigit() or len(text) > 9:
        raise ValidationError("page", f"page {text!r} is not a page number: use 1, 2, ...")
    order = params.get("order", "asc")
    if order not in ("asc", "desc"):
        raise ValidationError("order", f"order {order!r} is not 'asc' or 'desc'")
    return ListQuery(
        page=int(text),
        search=params.get("q", ""),
        site=params.get("site", ""),
        arm=params.get("arm", ""),
        status=params.get("status", ""),
        sort=params.get("sort", "") or "usubjid",
        descending=order == "desc",
    )


def page_link(request: Request, **changes: object) -> str:
    """The current list's URL with ``changes`` applied (a change of filter or sort goes back to
    page 1); empty values are left out."""
    params = {k: request.query_params.get(k, "") for k in PARAMETERS}
    if "page" not in changes:
        params["page"] = ""
    params.update({k: str(v) for k, v in changes.items()})
    kept = {k: v for k, v in params.items() if v and not (k == "page" and v == "1")}
    return f"{request.url.path}?{urlencode(kept)}" if kept else request.url.path
