"""``/docs`` without the internet: Swagger UI's files served by the app, and the bearer scheme.

FastAPI's own ``/docs`` loads Swagger UI from a CDN, so a site's air-gapped server showed a blank
page. Swagger UI 5 (it renders the OpenAPI 3.1 FastAPI writes; the ``swagger-ui-bundle`` package
on PyPI ships 4.15, which refuses 3.1) is vendored unchanged in ``static/swagger-ui`` (Apache-2.0,
see ``static/VENDORED.md``) and served at ``/docs-assets``; ``/redoc`` (CDN only) is not served.
The OpenAPI document declares the ``bearer`` security scheme (``POST /api/token`` issues the
token) on every operation that is not public, so Swagger UI shows its Authorize button.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from stalwart.web.routes import ACCESS_KEY

__all__ = ["ASSETS", "BEARER", "SWAGGER_UI", "install_docs"]

ASSETS = "/docs-assets"
"""Where Swagger UI's JavaScript, CSS and icons are served."""

SWAGGER_UI = Path(__file__).parent / "static" / "swagger-ui"
"""Swagger UI's vendored files."""

BEARER = "bearer"
"""The security scheme's name in the OpenAPI document."""

_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "description": "A token from POST /api/token (username and password as JSON).",
}
_METHODS = ("get", "put", "post", "delete", "patch")


def _with_bearer(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` declaring the bearer scheme, required by each operation that is not public."""
    spec.setdefault("components", {}).setdefault("securitySchemes", {})[BEARER] = _SCHEME
    for operations in spec.get("paths", {}).values():
        for method in _METHODS:
            operation = operations.get(method)
            if operation is not None and operation.get(ACCESS_KEY) != "public":
                operation["security"] = [{BEARER: []}]
    return spec


def install_docs(app: FastAPI) -> None:
    """Serve ``/docs`` from the app's own files and declare the bearer scheme in its OpenAPI.

    The app must be built with ``docs_url=None, redoc_url=None``.
    """

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _with_bearer(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    description=app.description,
                    routes=app.routes,
                )
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        """Swagger UI over /openapi.json, every file from this site."""
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title}: API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
            oauth2_redirect_url=None,
        )

    app.mount(ASSETS, StaticFiles(directory=SWAGGER_UI), name="docs-assets")
