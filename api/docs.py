"""API documentation that works offline: Swagger UI at /docs and ReDoc at /redoc from local assets.

FastAPI's default pages load Swagger UI, ReDoc and their fonts from a CDN, so `/docs` is blank on
a machine without internet. The same pages here load the assets installed with the project (the
`fastapi-offline` wheel ships Swagger UI's and ReDoc's release files) from `/docs-assets/`. The
security schemes below put an "Authorize" button on the page and the API-key schemes in the
OpenAPI document; `api.auth.authenticate` reads them.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.security import APIKeyHeader, HTTPBearer
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs-assets"

API_KEY_SCHEME = APIKeyHeader(
    name="X-API-Key",
    scheme_name="ApiKey",
    description="An API key from `escalations api-key NAME ROLE...` (the embedded default accepts `dev-only-key`).",
    auto_error=False,
)
BEARER_SCHEME = HTTPBearer(
    scheme_name="Bearer",
    description="The same API key as `Authorization: Bearer <key>`.",
    auto_error=False,
)


# The pages may load only what this server serves: ReDoc's sidebar would fetch its logo from a CDN
# (it hides the image when that fails), Swagger UI would send the document to a validator.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'"
)


def _offline(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return page


def assets_dir() -> Path:
    """Swagger UI's and ReDoc's files, as installed with the project (never fetched at run time)."""
    return Path(str(resources.files("fastapi_offline") / "static"))


def mount_docs(app: FastAPI, title: str) -> None:
    """Serve /docs (Swagger UI) and /redoc (ReDoc) from local assets (the app has docs_url=None, redoc_url=None)."""
    app.mount(ASSETS_URL, StaticFiles(directory=assets_dir()), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return _offline(
            get_swagger_ui_html(
                openapi_url=openapi_url,
                title=f"{title} - Swagger UI",
                swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
                swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
                swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
                swagger_ui_parameters={
                    "persistAuthorization": True,
                    "displayRequestDuration": True,
                    "validatorUrl": None,  # Swagger UI would send the document to validator.swagger.io
                },
            )
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return _offline(
            get_redoc_html(
                openapi_url=openapi_url,
                title=f"{title} - ReDoc",
                redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
                redoc_favicon_url=f"{ASSETS_URL}/favicon.png",
                with_google_fonts=False,
            )
        )
