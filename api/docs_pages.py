"""The docs pages, `/docs` (Swagger UI) and `/redoc`, that work with no internet.

FastAPI's own pages load Swagger UI and Redoc from a public CDN: offline they render blank.
Here their scripts and styles come from the ``fastapi-offline`` wheel, served under
``DOCS_ASSETS``, and each page carries a Content-Security-Policy that keeps the browser on this
server: Redoc's bundle shows Redocly's logo from ``cdn.redoc.ly`` in its menu whatever its
options, and under the policy the browser never asks for it (the logo is left out).
tests/e2e/test_browser_docs.py opens both pages in Chromium with every other host blocked.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi_offline import FastAPIOffline

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
#: Where the pages' scripts, styles and icon are served from (the ``fastapi-offline`` wheel).
DOCS_ASSETS = "/docs/assets"
#: Everything a docs page loads or calls comes from this server (inline scripts and styles,
#: ``data:`` images and ``blob:`` workers are the pages' own).
CONTENT_SECURITY_POLICY = "default-src 'self' 'unsafe-inline' data: blob:"
#: Swagger UI's settings: no online validator badge (an image from validator.swagger.io).
SWAGGER_UI_PARAMETERS: dict[str, Any] = {"validatorUrl": None}


def _policed(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return page


def create_docs_app(**kwargs: Any) -> FastAPI:
    """``FastAPI(**kwargs)`` with the assets mounted at ``DOCS_ASSETS`` and the pages
    ``/docs`` (with ``/docs/oauth2-redirect``) and ``/redoc`` using them."""
    app = FastAPIOffline(
        docs_url=None,  # the pages are below, with the policy
        redoc_url=None,
        static_url=DOCS_ASSETS,
        swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        **kwargs,
    )
    openapi_url = app.openapi_url or "/openapi.json"
    redirect_url = app.swagger_ui_oauth2_redirect_url or f"{DOCS_URL}/oauth2-redirect"

    @app.get(DOCS_URL, include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _policed(
            get_swagger_ui_html(
                openapi_url=f"{root}{openapi_url}",
                title=f"{app.title} - Swagger UI",
                oauth2_redirect_url=f"{root}{redirect_url}",
                swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
                swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
                swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
                swagger_ui_parameters=app.swagger_ui_parameters,
            )
        )

    @app.get(redirect_url, include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return _policed(get_swagger_ui_oauth2_redirect_html())

    @app.get(REDOC_URL, include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _policed(
            get_redoc_html(
                openapi_url=f"{root}{openapi_url}",
                title=f"{app.title} - ReDoc",
                redoc_js_url=f"{root}{DOCS_ASSETS}/redoc.standalone.js",
                redoc_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
                with_google_fonts=False,
            )
        )

    return app
