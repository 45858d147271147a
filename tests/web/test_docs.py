"""``web.docs``: /docs served with no network, and the bearer scheme in the OpenAPI document."""

from __future__ import annotations

import re
from collections.abc import Callable

from fastapi.testclient import TestClient

from stalwart.web.docs import ASSETS, BEARER


def _urls(html: str) -> list[str]:
    """Every URL the page loads or links: src/href attributes and quoted url strings."""
    found = re.findall(r'(?:src|href)="([^"]+)"', html)
    found += re.findall(r"""(?:url|href)['"]?\s*[:=]\s*['"]([^'"]+)['"]""", html)
    return found


def test_docs_load_only_this_sites_files(client: TestClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    urls = _urls(response.text)
    assert f"{ASSETS}/swagger-ui-bundle.js" in urls and f"{ASSETS}/swagger-ui.css" in urls
    assert "/openapi.json" in urls
    offsite = [u for u in urls if not u.startswith("/")]
    assert offsite == [], f"/docs loads files from elsewhere: {offsite}"
    assert "cdn" not in response.text.lower()
    for url in urls:
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert asset.content, url
    assert client.get("/redoc").status_code == 404  # CDN only: not served


def test_openapi_declares_bearer_on_every_operation_but_the_public_ones(
    client: TestClient, login: Callable[..., dict[str, str]]
) -> None:
    spec = client.get("/openapi.json").json()
    scheme = spec["components"]["securitySchemes"][BEARER]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    assert "/api/token" in scheme["description"]
    operations = {
        (path, method): op for path, ops in spec["paths"].items() for method, op in ops.items()
    }
    token_op = operations[("/api/token", "post")]
    assert "security" not in token_op  # issuing a token needs none
    participants = operations[("/api/participants", "get")]
    assert participants["security"] == [{BEARER: []}]
    secured = [k for k, op in operations.items() if op.get("x-stalwart-access") != "public"]
    assert all(operations[k].get("security") == [{BEARER: []}] for k in secured)
    # the scheme is the one the API takes: the header Swagger UI sends works
    headers = login("data_manager")
    assert client.get("/api/participants", headers=headers).status_code == 200
    assert client.get("/api/participants").status_code == 401


def test_docs_assets_refuse_paths_outside_the_bundle(client: TestClient) -> None:
    assert client.get(f"{ASSETS}/../__init__.py").status_code == 404
    assert client.get(f"{ASSETS}/nothing.js").status_code == 404
