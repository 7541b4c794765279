"""`/docs` works offline: Swagger UI's assets come from the app itself, the page names no host."""

from __future__ import annotations

import re

import httpx
import pytest

from sellerdesk.kit.docs import ASSETS
from tests.auth_helpers import assert_error


async def test_the_docs_page_loads_everything_from_the_app_itself(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "http://" not in html and "https://" not in html and "//cdn" not in html
    assert "SwaggerUIBundle" in html and "'/openapi.json'" in html
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert {a.rsplit("/", 1)[-1] for a in assets} == {
        "swagger-ui-bundle.js",
        "swagger-ui.css",
        "favicon-32x32.png",
    }
    for url in assets:
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 500, url
        assert "max-age" in asset.headers["cache-control"]
    script = await client.get(next(a for a in assets if a.endswith(".js")))
    assert script.headers["content-type"].startswith("text/javascript")
    assert b"SwaggerUIBundle" in script.content
    assert b"sourceMappingURL" not in script.content  # no request for a missing map


async def test_the_served_swagger_ui_reads_the_served_openapi_version(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/openapi.json")).json()
    major = int((ASSETS / "VERSION").read_text().split(".")[0])
    # Swagger UI renders OpenAPI 3.1 documents from version 5 on.
    assert document["openapi"].startswith("3.1") and major >= 5


async def test_the_oauth2_redirect_page_is_served_without_other_hosts(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/docs/oauth2-redirect")
    assert page.status_code == 200
    assert "https://" not in page.text and "http://" not in page.text


@pytest.mark.parametrize(
    "name", ["swagger-ui.js", "index.html", "..%2F..%2F..%2Fpyproject.toml", "VERSION", "LICENSE"]
)
async def test_only_the_docs_assets_are_served(client: httpx.AsyncClient, name: str) -> None:
    assert_error(await client.get(f"/docs/assets/{name}"), 404, "not_found")


async def test_the_docs_routes_are_not_in_the_api_document(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert not [path for path in paths if path.startswith("/docs")]
