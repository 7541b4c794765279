"""A local fake of Amazon's LWA token service and the SP-API operations sellerdesk calls.

`serve_fake()` runs it with uvicorn on 127.0.0.1 (a free port) in a background thread and yields
a `FakeSpApi` whose attributes steer it (`throttle`, `fail`, `hang_seconds`, ...) and count calls.
Shapes follow /work/shared/SPAPI.md: bare `Item` bodies, `{"errors": [...]}` on failure,
`{payload, pagination.nextToken}` for inventory summaries.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Form, Request
from fastapi.responses import JSONResponse

CLIENT_ID = "amzn1.application-oa2-client.test"
CLIENT_SECRET = "fake-client-secret"
REFRESH_TOKEN = "Atzr|fake-refresh-token"
US = "ATVPDKIKX0DER"


def _errors(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Any:
    return JSONResponse(
        {"errors": [{"code": code, "message": message, "details": ""}]},
        status_code=status,
        headers={"x-amzn-RequestId": secrets.token_hex(8), **(headers or {})},
    )


@dataclass
class FakeSpApi:
    """The fake's state; tests set the switches and read the counters."""

    base_url: str = ""
    catalog: dict[str, dict[str, Any]] = field(default_factory=dict)
    inventory: list[dict[str, Any]] = field(default_factory=list)
    page_size: int = 2
    throttle: int = 0  # answer 429 this many times before serving again
    fail: int = 0  # answer 500 this many times before serving again
    hang_seconds: float = 0.0  # sleep this long before answering API calls
    rate_limit: str | None = "100.0"  # x-amzn-RateLimit-Limit sent on 200/400/404
    expires_in: int = 3600
    calls: Counter[str] = field(default_factory=Counter)
    issued: set[str] = field(default_factory=set)
    last_params: dict[str, list[str]] = field(default_factory=dict)
    last_headers: dict[str, str] = field(default_factory=dict)

    def reset(self) -> None:
        base_url = self.base_url
        self.__init__()  # type: ignore[misc]
        self.base_url = base_url


def create_fake_app(fake: FakeSpApi) -> FastAPI:
    app = FastAPI()

    def ok_headers() -> dict[str, str]:
        headers = {"x-amzn-RequestId": secrets.token_hex(8)}
        if fake.rate_limit:
            headers["x-amzn-RateLimit-Limit"] = fake.rate_limit
        return headers

    async def gate(request: Request, name: str) -> JSONResponse | None:
        """Counting, auth and the failure switches shared by every API operation."""
        fake.calls[name] += 1
        fake.last_params = {k: request.query_params.getlist(k) for k in request.query_params}
        fake.last_headers = dict(request.headers)
        if fake.hang_seconds:
            await asyncio.sleep(fake.hang_seconds)
        if request.headers.get("x-amz-access-token") not in fake.issued:
            return _errors(403, "Unauthorized", "Access to requested resource is denied.")
        if fake.throttle > 0:
            fake.throttle -= 1
            return _errors(
                429, "QuotaExceeded", "You exceeded your quota for the requested resource."
            )
        if fake.fail > 0:
            fake.fail -= 1
            return _errors(500, "InternalFailure", "We encountered an internal error.")
        return None

    def marketplace_ids(request: Request) -> list[str]:
        return [
            part
            for value in request.query_params.getlist("marketplaceIds")
            for part in value.split(",")
            if part
        ]

    @app.post("/auth/o2/token")
    async def token(
        grant_type: str = Form(""),
        refresh_token: str = Form(""),
        client_id: str = Form(""),
        client_secret: str = Form(""),
    ) -> JSONResponse:
        fake.calls["token"] += 1
        if grant_type != "refresh_token":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        if (client_id, client_secret) != (CLIENT_ID, CLIENT_SECRET):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        if refresh_token != REFRESH_TOKEN:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        access = f"Atza|{secrets.token_urlsafe(32)}"
        fake.issued.add(access)
        return JSONResponse(
            {
                "access_token": access,
                "token_type": "bearer",
                "expires_in": fake.expires_in,
                "refresh_token": refresh_token,
            }
        )

    @app.get("/catalog/2022-04-01/items/{asin}")
    async def catalog_item(asin: str, request: Request) -> JSONResponse:
        refused = await gate(request, "catalog")
        if refused is not None:
            return refused
        ids = marketplace_ids(request)
        if not ids:
            return _errors(400, "InvalidInput", "Missing required 'marketplaceIds'.", ok_headers())
        item = fake.catalog.get(asin)
        if item is None:
            return _errors(
                404,
                "NOT_FOUND",
                f"Requested item, {asin}, not found in marketplace(s) {','.join(ids)}.",
                ok_headers(),
            )
        return JSONResponse(item, headers=ok_headers())

    @app.get("/fba/inventory/v1/summaries")
    async def inventory_summaries(request: Request) -> JSONResponse:
        refused = await gate(request, "inventory")
        if refused is not None:
            return refused
        params = request.query_params
        ids = marketplace_ids(request)
        if (
            params.get("granularityType") != "Marketplace"
            or not params.get("granularityId")
            or not ids
        ):
            return _errors(
                400,
                "InvalidInput",
                "granularityType, granularityId and marketplaceIds are required.",
                ok_headers(),
            )
        start = int(params.get("nextToken") or 0)
        page = fake.inventory[start : start + fake.page_size]
        end = start + len(page)
        body: dict[str, Any] = {
            "payload": {
                "granularity": {"granularityType": "Marketplace", "granularityId": ids[0]},
                "inventorySummaries": page,
            },
            "pagination": {"nextToken": str(end)} if end < len(fake.inventory) else {},
        }
        return JSONResponse(body, headers=ok_headers())

    return app


@contextmanager
def serve_fake() -> Iterator[FakeSpApi]:
    """Run the fake on 127.0.0.1 in a background thread for the duration of the block."""
    fake = FakeSpApi()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    fake.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = uvicorn.Config(
        create_fake_app(fake), log_level="warning", lifespan="off", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the SP-API fake did not start")
        time.sleep(0.01)
    try:
        yield fake
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def catalog_item(asin: str, **overrides: Any) -> dict[str, Any]:
    """A Catalog Items 2022-04-01 `Item` as Amazon returns it for US."""
    item: dict[str, Any] = {
        "asin": asin,
        "summaries": [
            {
                "marketplaceId": US,
                "brand": "Acme",
                "itemName": "Acme Bottle 750 ml",
                "manufacturer": "Acme Corp",
                "itemClassification": "BASE_PRODUCT",
                "browseClassification": {
                    "displayName": "Water Bottles",
                    "classificationId": "3741331",
                },
                "websiteDisplayGroupName": "Kitchen",
            }
        ],
        "images": [
            {
                "marketplaceId": US,
                "images": [
                    {
                        "variant": "PT01",
                        "link": "https://m.media-amazon.com/images/I/pt01-s.jpg",
                        "height": 75,
                        "width": 75,
                    },
                    {
                        "variant": "MAIN",
                        "link": "https://m.media-amazon.com/images/I/main-s.jpg",
                        "height": 75,
                        "width": 75,
                    },
                    {
                        "variant": "MAIN",
                        "link": "https://m.media-amazon.com/images/I/main-l.jpg",
                        "height": 1500,
                        "width": 1500,
                    },
                    {
                        "variant": "PT01",
                        "link": "https://m.media-amazon.com/images/I/pt01-l.jpg",
                        "height": 1000,
                        "width": 1000,
                    },
                    {
                        "variant": "PT02",
                        "link": "https://m.media-amazon.com/images/I/main-l.jpg",
                        "height": 1500,
                        "width": 1500,
                    },
                ],
            }
        ],
        "attributes": {
            "bullet_point": [
                {
                    "value": "Keeps drinks cold for 24 hours",
                    "language_tag": "en_US",
                    "marketplace_id": US,
                },
                {"value": "Dishwasher safe", "language_tag": "en_US", "marketplace_id": US},
                {
                    "value": "Spülmaschinenfest",
                    "language_tag": "de_DE",
                    "marketplace_id": "A1PA6795UKMFR9",
                },
            ],
            "list_price": [{"value": 3799.99, "currency": "USD", "marketplace_id": US}],
        },
        "salesRanks": [
            {
                "marketplaceId": US,
                "classificationRanks": [
                    {
                        "classificationId": "3741331",
                        "title": "Water Bottles",
                        "link": "http://www.amazon.com/gp/bestsellers/kitchen/3741331",
                        "rank": 57,
                    }
                ],
                "displayGroupRanks": [
                    {
                        "websiteDisplayGroup": "kitchen_display_on_website",
                        "title": "Kitchen & Dining",
                        "rank": 4210,
                    }
                ],
            }
        ],
        "dimensions": [
            {
                "marketplaceId": US,
                "item": {
                    "height": {"unit": "inches", "value": 10.2},
                    "weight": {"unit": "pounds", "value": 0.85},
                },
                "package": {"length": {"unit": "inches", "value": 11}},
            }
        ],
    }
    item.update(overrides)
    return item


def inventory_summary(fnsku: str, asin: str, sku: str, name: str) -> dict[str, Any]:
    return {
        "asin": asin,
        "fnSku": fnsku,
        "sellerSku": sku,
        "condition": "NewItem",
        "productName": name,
        "totalQuantity": 5,
        "lastUpdatedTime": "2026-11-23T10:00:00Z",
    }
