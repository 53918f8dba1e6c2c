"""Swagger UI served from the ``fastapi-offline`` package, so ``/docs`` works offline.

FastAPI's own ``/docs`` page loads Swagger UI's script and stylesheet from a CDN: on a machine
without internet it is a blank page. The example app therefore serves those assets itself, from the
``fastapi-offline`` package (in the ``[example]`` extra; it ships Swagger UI 5, which reads the
OpenAPI 3.1 documents FastAPI writes — ``swagger-ui-bundle`` still ships 4.x, which cannot) under
``/docs/assets``. When that package is missing, or ``EXAMPLE_SWAGGER_CDN=1`` asks for the CDN,
FastAPI's default page stays, which is what users of fastapi_authgate get in their own apps unless
they do the same.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

__all__ = ["ASSETS_PATH", "bundled_swagger_ui", "serve_docs_offline"]

ASSETS_PATH = "/docs/assets"


def bundled_swagger_ui() -> Path | None:
    """The folder holding Swagger UI's files from ``fastapi-offline``, if it is installed."""
    if os.environ.get("EXAMPLE_SWAGGER_CDN", "").strip() in ("1", "true", "yes"):
        return None
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "static"
    return folder if (folder / "swagger-ui-bundle.js").is_file() else None


def serve_docs_offline(app: FastAPI, assets: Path) -> None:
    """Serve ``/docs`` with Swagger UI's files from ``assets`` instead of the CDN.

    The app must have been built with ``docs_url=None`` so this route is the only ``/docs``.
    ``persistAuthorization`` keeps what a person typed into the Authorize dialog across reloads.
    """
    app.mount(ASSETS_PATH, StaticFiles(directory=assets), name="swagger-ui-assets")
    openapi_url = app.openapi_url or "/openapi.json"
    redirect_url = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")  # behind a proxy prefix or a mount
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}{redirect_url}",
            swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
            swagger_ui_parameters={"persistAuthorization": True},
        )

    @app.get(redirect_url, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
