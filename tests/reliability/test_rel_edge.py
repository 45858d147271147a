"""``stalwart serve``'s edge, end to end: proxy headers trusted only from --forwarded-allow-ips,
--secure-cookies, and the security headers, on a real server process.

A client that sends ``X-Forwarded-Proto: https`` and ``X-Forwarded-For`` itself is not a proxy:
by default no proxy is trusted (uvicorn alone would trust 127.0.0.1, where these tests and many
reverse proxies sit), so the request stays plain HTTP and the login cookie is not marked Secure.
Named with ``--forwarded-allow-ips``, the proxy's headers are honoured. ``--secure-cookies``
marks the cookie Secure and sends HSTS whatever the headers say.
"""

from __future__ import annotations

from pathlib import Path

import httpx2 as httpx
import pytest
from live_server import Databases, LiveServer

from stalwart.protocol.load import LoadedProtocol

FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}


def _login_page(options: tuple[str, ...], url: str, folder: Path) -> httpx.Response:
    with (
        LiveServer(url, options=options, log_dir=folder) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        return client.get("/login", headers=FORWARDED)


@pytest.mark.parametrize(
    ("options", "secure", "hsts"),
    [
        ((), False, False),
        (("--forwarded-allow-ips", "127.0.0.1"), True, False),
        (("--forwarded-allow-ips", "10.0.0.5"), False, False),
        (("--secure-cookies",), True, True),
    ],
    ids=["default", "trusted-proxy", "other-proxy", "secure-cookies"],
)
def test_forwarded_headers_count_only_from_named_proxies(
    databases: Databases,
    packaged: LoadedProtocol,
    tmp_path: Path,
    options: tuple[str, ...],
    secure: bool,
    hsts: bool,
) -> None:
    url = databases.new("sqlite", packaged, folder=tmp_path)
    try:
        page = _login_page(options, url, tmp_path)
    finally:
        databases.drop(url)
    assert page.status_code == 200, page.text
    cookie = page.headers["set-cookie"]
    assert ("secure" in cookie.lower().split("; ")) is secure, cookie
    assert ("Strict-Transport-Security" in page.headers) is hsts
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
