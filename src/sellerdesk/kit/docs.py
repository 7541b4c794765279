"""`/docs`: Swagger UI with its assets served by the app itself, so it works offline.

The assets are npm's `swagger-ui-dist` (version in `static/swagger-ui/VERSION`), vendored by
`make swagger-ui`. The page names no other host: no CDN, no online validator.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse

from sellerdesk.errors import NotFound

ASSETS = Path(__file__).resolve().parent.parent / "static" / "swagger-ui"
ASSET_TYPES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
DOCS_URL = "/docs"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"


def install_docs(app: FastAPI) -> None:
    """Serve `/docs` (create the app with `docs_url=None`), its OAuth2 redirect and assets."""
    assets = f"{DOCS_URL}/assets"

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - API docs",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon-32x32.png",
            oauth2_redirect_url=OAUTH2_REDIRECT_URL,
            init_oauth=app.swagger_ui_init_oauth,
            # No badge fetched from the online validator.
            swagger_ui_parameters={**(app.swagger_ui_parameters or {}), "validatorUrl": None},
        )

    @app.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(f"{assets}/{{name}}", include_in_schema=False)
    async def swagger_ui_asset(name: str) -> FileResponse:
        media_type = ASSET_TYPES.get(name)
        if media_type is None:
            raise NotFound("No such asset.")
        return FileResponse(
            ASSETS / name, media_type=media_type, headers={"Cache-Control": "public, max-age=86400"}
        )
