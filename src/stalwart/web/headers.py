"""Security headers on every response of the app, pages and API alike.

* ``X-Frame-Options: DENY`` and CSP ``frame-ancestors 'none'``: no page can be framed
  (clickjacking of the forms, the e-signature's included);
* ``X-Content-Type-Options: nosniff``: a response is only what its type says;
* ``Referrer-Policy: no-referrer``: participant ids in URLs never leave in a Referer;
* ``Content-Security-Policy``: the pages load scripts and styles from ``/static`` only (htmx is
  vendored there; no inline script or style), the API's responses (JSON, CSV, the HTML reports
  with their inline styles and images) run no script at all; the interactive docs (``/docs``
  and its ``/docs-assets``: Swagger UI's inline start-up script) are only kept out of frames;
* ``Strict-Transport-Security`` when the session cookie is Secure (``--secure-cookies``: the
  site is served over HTTPS, so browsers should never try plain HTTP).

Every 503 also gets ``Retry-After`` when a route did not set one. A plain ASGI middleware: it
adds headers to the response start and leaves the body stream alone.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["API_CSP", "PAGE_CSP", "SecurityHeaders", "content_security_policy"]

PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)
"""The pages': everything from this origin, nothing inline, never framed."""

API_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'none'"
)
"""The API's: no script; the self-contained HTML reports keep their inline styles and images."""

_DOCS_CSP = "frame-ancestors 'none'"
_DOCS = ("/docs",)  # /docs-assets too
_HSTS = "max-age=31536000"


def content_security_policy(path: str) -> str:
    """The Content-Security-Policy of a response to ``path``."""
    if path.startswith(_DOCS):
        return _DOCS_CSP
    if path.startswith("/api/") or path == "/openapi.json":
        return API_CSP
    return PAGE_CSP


class SecurityHeaders:
    """ASGI middleware: the security headers above on every HTTP response."""

    def __init__(self, app: ASGIApp, hsts: bool = False, retry_after_s: int = 5) -> None:
        self.app = app
        self.hsts = hsts
        self.retry_after = str(retry_after_s)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = content_security_policy(str(scope.get("path", "")))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Frame-Options"] = "DENY"
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "no-referrer"
                headers.setdefault("Content-Security-Policy", csp)
                if self.hsts:
                    headers["Strict-Transport-Security"] = _HSTS
                if message["status"] == 503 and "retry-after" not in headers:
                    headers["Retry-After"] = self.retry_after
            await send(message)

        await self.app(scope, receive, send_with_headers)
