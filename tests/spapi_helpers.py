"""Helpers for tests of the `sp-api` source against the local fake (fixtures: spapi_fixtures)."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI

from tests.fakes.spapi import (
    CLIENT_ID,
    CLIENT_SECRET,
    EU_REFRESH_TOKEN,
    FE_REFRESH_TOKEN,
    REFRESH_TOKEN,
    FakeSpApi,
)

ASIN = "/api/v1/product/asin"
FNSKU = "/api/v1/conversion/fnsku"
BATCH = "/api/v1/conversion/fnsku/batch"
REPORT = "/api/v1/conversion/inventory-report"

REGION_TOKENS = {"NA": REFRESH_TOKEN, "EU": EU_REFRESH_TOKEN, "FE": FE_REFRESH_TOKEN}


def spapi_settings(
    fake: FakeSpApi, *, regions: tuple[str, ...] = ("NA", "EU"), **overrides: Any
) -> dict[str, Any]:
    """Settings of an app whose `sp-api` source talks to the fake, with credentials for
    `regions` (North America through the old names `SPAPI_REFRESH_TOKEN`/`SPAPI_ENDPOINT`)."""
    settings: dict[str, Any] = {
        "AMAZON_PROVIDER": "sp-api",
        "SPAPI_LWA_URL": fake.lwa_url,
        "SPAPI_ENDPOINT": fake.urls["NA"],
        "SPAPI_EU_ENDPOINT": fake.urls["EU"],
        "SPAPI_FE_ENDPOINT": fake.urls["FE"],
        "SPAPI_CLIENT_ID": CLIENT_ID,
        "SPAPI_CLIENT_SECRET": CLIENT_SECRET,
        "SPAPI_TIMEOUT_SECONDS": 2.0,
        "SPAPI_MAX_RETRIES": 3,
        "SPAPI_BACKOFF_SECONDS": 0.005,
    }
    for region in regions:
        name = "SPAPI_REFRESH_TOKEN" if region == "NA" else f"SPAPI_{region}_REFRESH_TOKEN"
        settings[name] = REGION_TOKENS[region]
    settings.update(overrides)
    return settings


def asgi_client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
