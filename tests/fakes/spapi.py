"""A local fake of Amazon's LWA token service and the SP-API operations sellerdesk calls.

`serve_fake()` runs it with uvicorn on 127.0.0.1 in a background thread and yields a `FakeSpApi`
whose attributes steer it (`throttle`, `fail`, `deny`, `hang_seconds`, ...) and record calls.

It behaves like Amazon where our client could get Amazon wrong (bodies as Amazon sends them,
see tests/fixtures/spapi/ and the SP-API reference):
- one fake serves the three selling regions, each on its own port (`urls["NA"|"EU"|"FE"]`; the
  port plays the host): a refresh token is valid in one region only, its access tokens work on
  that region's host only, and a marketplace of another region is refused with Amazon's 403
  "The marketplaces you provided are not valid for region.";
- the token checks answer Amazon's 403 bodies (expired / revoked, malformed or invalid / missing);
- `getCatalogItem` returns only the datasets named in `includedData` (default `summaries`) and
  answers an unknown dataset with Amazon's 400;
- `getInventorySummaries` pages with opaque `nextToken`s that expire after 30 s, and its default
  inventory is Amazon's sandbox page, where one FNSKU is on two SKUs;
- 200/400/404 carry `x-amzn-RateLimit-Limit` (`2.0` by default), 429s (Amazon's body) do not.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Form, Request
from fastapi.responses import JSONResponse, Response

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "spapi"

CLIENT_ID = "amzn1.application-oa2-client.test"
CLIENT_SECRET = "fake-client-secret"
REFRESH_TOKEN = "Atzr|fake-refresh-token"  # the North America seller's
EU_REFRESH_TOKEN = "Atzr|fake-refresh-token-eu"
FE_REFRESH_TOKEN = "Atzr|fake-refresh-token-fe"
REFRESH_TOKENS = {"NA": REFRESH_TOKEN, "EU": EU_REFRESH_TOKEN, "FE": FE_REFRESH_TOKEN}
US = "ATVPDKIKX0DER"
DE = "A1PA6795UKMFR9"
JP = "A1VC38T7YXB528"

REGIONS = ("NA", "EU", "FE")
REGION_MARKETPLACES = {
    "NA": {"A2EUQ1WTGCTBG2", US, "A1AM78C64UM0Y8", "A2Q3Y263D00KWC"},
    "EU": {
        "A28R8C7NBKEWEA", "A1RKKUPIHCS9HS", "A1F83G8C2ARO7P", "A13V1IB3VIYZZH", "AMEN7PMS3EDWL",
        "A1805IZSGTT6HS", DE, "APJ6JRA9NG5V4", "A2NODRKZP88ZB9", "AE08WJ6YKNBMC",
        "A1C3SOZRARQ6R3", "ARBP9OOSHTCHU", "A33AVAJ2PDY3EV", "A17E79C6D8DWNP", "A2VIGQ35RCS4UG",
        "A21TJRUUN4KGV",
    },
    "FE": {"A19VAU5U5O7RUS", "A39IBJ37TRP1C6", JP},
}  # fmt: skip
CATALOG_DATASETS = {
    "attributes", "classifications", "dimensions", "identifiers", "images", "productTypes",
    "relationships", "salesRanks", "summaries", "vendorDetails",
}  # fmt: skip

DENIED = "Access to requested resource is denied."
TOKEN_EXPIRED = "The access token you provided has expired."
TOKEN_INVALID = "The access token you provided is revoked, malformed or invalid."
TOKEN_MISSING = "Access token is missing in the request header."
WRONG_REGION = "The marketplaces you provided are not valid for region."
BAD_PARAMETERS = "Request has missing or invalid parameters and cannot be parsed."
QUOTA_EXCEEDED = "You exceeded your quota for the requested resource."
NEXT_TOKEN_TTL = 30.0


def fixture(name: str) -> Any:
    """One of Amazon's example payloads vendored under tests/fixtures/spapi/."""
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def sandbox_inventory() -> list[dict[str, Any]]:
    """Amazon's sandbox inventory page: FNSKU B0020MLK00 is on two SKUs."""
    response = fixture("inventory_summaries_sandbox_200.json")["response"]
    summaries: list[dict[str, Any]] = response["payload"]["inventorySummaries"]
    return summaries


def _errors(
    status: int, code: str, message: str, details: str = "", headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"errors": [{"code": code, "message": message, "details": details}]},
        status_code=status,
        headers={"x-amzn-RequestId": secrets.token_hex(8), **(headers or {})},
    )


@dataclass
class Call:
    """One API call the fake received."""

    region: str
    host: str
    operation: str
    token_region: str | None
    params: dict[str, list[str]]
    at: float  # time.monotonic() on arrival


@dataclass
class FakeSpApi:
    """The fake's state; tests set the switches and read the records."""

    urls: dict[str, str] = field(default_factory=dict)
    catalog: dict[str, dict[str, Any]] = field(default_factory=dict)
    inventory: list[dict[str, Any]] = field(default_factory=sandbox_inventory)
    page_size: int = 50
    throttle: int = 0  # answer 429 this many times before serving again
    fail: int = 0  # answer 500 this many times before serving again
    deny: str | None = None  # "role" or "region": answer that non-token 403 to every call
    hang_seconds: float = 0.0  # sleep this long before answering API calls
    rate_limit: str | None = "2.0"  # x-amzn-RateLimit-Limit sent on 200/400/404
    expires_in: int = 3600
    # Answers served as they are (bytes: byte for byte), in order, after the auth checks.
    replay: list[tuple[int, Any]] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    received: list[Call] = field(default_factory=list)
    tokens_issued: list[str] = field(default_factory=list)  # the region of each token exchange
    issued: dict[str, str] = field(default_factory=dict)  # valid access token → its region
    expired: set[str] = field(default_factory=set)
    pages: dict[str, tuple[int, float]] = field(default_factory=dict)  # nextToken → offset, time
    last_params: dict[str, list[str]] = field(default_factory=dict)
    last_headers: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        """The North America host (what `SPAPI_ENDPOINT`, the NA alias, points at)."""
        return self.urls["NA"]

    @property
    def lwa_url(self) -> str:
        return f"{self.urls['NA']}/auth/o2/token"

    def expire_tokens(self) -> None:
        """Every access token issued so far is now expired (Amazon answers 403 "expired")."""
        self.expired.update(self.issued)
        self.issued.clear()

    def reset(self) -> None:
        urls = self.urls
        self.__init__()  # type: ignore[misc]
        self.urls = urls


def create_fake_app(fake: FakeSpApi, ports: dict[int, str]) -> FastAPI:
    app = FastAPI()

    def ok_headers() -> dict[str, str]:
        headers = {"x-amzn-RequestId": secrets.token_hex(8)}
        if fake.rate_limit:
            headers["x-amzn-RateLimit-Limit"] = fake.rate_limit
        return headers

    def listed(request: Request, name: str) -> list[str]:
        """A comma-delimited list parameter, also accepted as repeated keys."""
        return [
            part
            for value in request.query_params.getlist(name)
            for part in value.split(",")
            if part
        ]

    async def gate(request: Request, operation: str) -> Response | None:
        """Recording, auth, region and the failure switches shared by every API operation."""
        region = ports[request.scope["server"][1]]
        token = request.headers.get("x-amz-access-token")
        fake.calls[operation] += 1
        fake.last_params = {k: request.query_params.getlist(k) for k in request.query_params}
        fake.last_headers = dict(request.headers)
        fake.received.append(
            Call(
                region=region,
                host=request.headers.get("host", ""),
                operation=operation,
                token_region=fake.issued.get(token or ""),
                params=fake.last_params,
                at=time.monotonic(),
            )
        )
        if fake.hang_seconds:
            await asyncio.sleep(fake.hang_seconds)
        if not token:
            return _errors(403, "Unauthorized", DENIED, TOKEN_MISSING)
        if token in fake.expired:
            return _errors(403, "Unauthorized", DENIED, TOKEN_EXPIRED)
        if token not in fake.issued:
            return _errors(403, "Unauthorized", DENIED, TOKEN_INVALID)
        if fake.issued[token] != region or fake.deny == "role":
            # The seller did not authorise this application here, or it lacks the role.
            return _errors(403, "Unauthorized", DENIED)
        if fake.deny == "region" or any(
            marketplace not in REGION_MARKETPLACES[region]
            for marketplace in listed(request, "marketplaceIds")
        ):
            return _errors(403, "Unauthorized", DENIED, WRONG_REGION)
        if fake.throttle > 0:
            fake.throttle -= 1
            return _errors(429, "QuotaExceeded", QUOTA_EXCEEDED)
        if fake.fail > 0:
            fake.fail -= 1
            return _errors(500, "InternalFailure", "We encountered an internal error.")
        if fake.replay:
            status, body = fake.replay.pop(0)
            if isinstance(body, bytes):  # an Amazon payload, byte for byte
                return Response(
                    body, status_code=status, media_type="application/json", headers=ok_headers()
                )
            return JSONResponse(body, status_code=status, headers=ok_headers())
        return None

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
        region = next((r for r, t in REFRESH_TOKENS.items() if t == refresh_token), None)
        if region is None:
            return JSONResponse(
                {
                    "error": "invalid_grant",
                    "error_description": "The request has an invalid grant parameter : "
                    "refresh_token. User may have revoked or didn't grant the permission.",
                },
                status_code=400,
            )
        access = f"Atza|{secrets.token_urlsafe(32)}"
        fake.issued[access] = region
        fake.tokens_issued.append(region)
        return JSONResponse(
            {
                "access_token": access,
                "token_type": "bearer",
                "expires_in": fake.expires_in,
                "refresh_token": refresh_token,
            }
        )

    @app.get("/catalog/2022-04-01/items/{asin}")
    async def catalog_item(asin: str, request: Request) -> Response:
        refused = await gate(request, "catalog")
        if refused is not None:
            return refused
        ids = listed(request, "marketplaceIds")
        datasets = listed(request, "includedData") or ["summaries"]
        if not ids or not set(datasets) <= CATALOG_DATASETS:
            return _errors(400, "InvalidInput", BAD_PARAMETERS, headers=ok_headers())
        item = fake.catalog.get(asin)
        if item is None:
            return _errors(
                404,
                "NOT_FOUND",
                f"Requested item, {asin}, not found in marketplace(s) {','.join(ids)}.",
                headers=ok_headers(),
            )
        body = {"asin": item["asin"], **{k: v for k, v in item.items() if k in datasets}}
        return JSONResponse(body, headers=ok_headers())

    @app.get("/fba/inventory/v1/summaries")
    async def inventory_summaries(request: Request) -> Response:
        refused = await gate(request, "inventory")
        if refused is not None:
            return refused
        params = request.query_params
        ids = listed(request, "marketplaceIds")
        if (
            params.get("granularityType") != "Marketplace"
            or not params.get("granularityId")
            or len(ids) != 1
        ):
            return _errors(400, "InvalidInput", BAD_PARAMETERS, headers=ok_headers())
        start = 0
        if (next_token := params.get("nextToken")) is not None:
            page = fake.pages.get(next_token)
            if page is None or time.monotonic() - page[1] > NEXT_TOKEN_TTL:
                return _errors(400, "InvalidInput", "Invalid nextToken.", headers=ok_headers())
            start = page[0]
        page_rows = fake.inventory[start : start + fake.page_size]
        end = start + len(page_rows)
        pagination: dict[str, str] = {}
        if end < len(fake.inventory):
            opaque = secrets.token_urlsafe(24)
            fake.pages[opaque] = (end, time.monotonic())
            pagination["nextToken"] = opaque
        body: dict[str, Any] = {
            "payload": {
                "granularity": {"granularityType": "Marketplace", "granularityId": ids[0]},
                "inventorySummaries": page_rows,
            },
            "pagination": pagination,
        }
        return JSONResponse(body, headers=ok_headers())

    return app


@contextmanager
def serve_fake() -> Iterator[FakeSpApi]:
    """Run the fake on 127.0.0.1 (one port per region) in a background thread."""
    fake = FakeSpApi()
    sockets: list[socket.socket] = []
    ports: dict[int, str] = {}
    for region in REGIONS:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        ports[port] = region
        fake.urls[region] = f"http://127.0.0.1:{port}"
        sockets.append(sock)
    config = uvicorn.Config(
        create_fake_app(fake, ports),
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": sockets}, daemon=True)
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
        for sock in sockets:
            sock.close()


def catalog_item(asin: str, **overrides: Any) -> dict[str, Any]:
    """A Catalog Items 2022-04-01 `Item` with every dataset our client reads, for US (and DE
    bullet points)."""
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
                    "marketplace_id": DE,
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
        "identifiers": [
            {
                "marketplaceId": US,
                "identifiers": [{"identifier": "0887276302195", "identifierType": "EAN"}],
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
