"""The SP-API fake refuses what Amazon refuses, with Amazon's bodies: our client is tested
against Amazon's behaviour, not a kinder one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.fakes.spapi import (
    BAD_PARAMETERS,
    CLIENT_ID,
    CLIENT_SECRET,
    DE,
    DENIED,
    EU_REFRESH_TOKEN,
    QUOTA_EXCEEDED,
    REFRESH_TOKEN,
    TOKEN_EXPIRED,
    TOKEN_INVALID,
    TOKEN_MISSING,
    US,
    WRONG_REGION,
    FakeSpApi,
    catalog_item,
    inventory_summary,
)

pytest_plugins = ["tests.spapi_fixtures"]

ITEM = "/catalog/2022-04-01/items/B0EXAMPLE1"
SUMMARIES = "/fba/inventory/v1/summaries"


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


async def access_token(http: httpx.AsyncClient, fake: FakeSpApi, refresh: str) -> str:
    response = await http.post(
        fake.lwa_url,
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def error(response: httpx.Response) -> dict[str, Any]:
    [only] = response.json()["errors"]
    assert set(only) == {"code", "message", "details"}
    assert response.headers["x-amzn-RequestId"]
    return dict(only)


async def test_lwa_refuses_unknown_refresh_tokens_and_clients(
    http: httpx.AsyncClient, spapi: FakeSpApi
) -> None:
    form = {"grant_type": "refresh_token", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    unknown = await http.post(spapi.lwa_url, data={**form, "refresh_token": "Atzr|nobody"})
    assert (unknown.status_code, unknown.json()["error"]) == (400, "invalid_grant")
    wrong_client = await http.post(
        spapi.lwa_url, data={**form, "refresh_token": REFRESH_TOKEN, "client_secret": "no"}
    )
    assert (wrong_client.status_code, wrong_client.json()["error"]) == (401, "invalid_client")


async def test_access_tokens_are_refused_with_amazons_403_bodies(
    http: httpx.AsyncClient, spapi: FakeSpApi
) -> None:
    spapi.catalog["B0EXAMPLE1"] = catalog_item("B0EXAMPLE1")
    url, params = spapi.urls["NA"] + ITEM, {"marketplaceIds": US}
    missing = await http.get(url, params=params)
    assert missing.status_code == 403
    assert error(missing) == {"code": "Unauthorized", "message": DENIED, "details": TOKEN_MISSING}
    forged = await http.get(url, params=params, headers={"x-amz-access-token": "Atza|forged"})
    assert error(forged)["details"] == TOKEN_INVALID
    token = await access_token(http, spapi, REFRESH_TOKEN)
    assert (await http.get(url, params=params, headers={"x-amz-access-token": token})).is_success
    spapi.expire_tokens()
    expired = await http.get(url, params=params, headers={"x-amz-access-token": token})
    assert expired.status_code == 403 and error(expired)["details"] == TOKEN_EXPIRED


async def test_a_region_refuses_other_regions_tokens_and_marketplaces(
    http: httpx.AsyncClient, spapi: FakeSpApi
) -> None:
    spapi.catalog["B0EXAMPLE1"] = catalog_item("B0EXAMPLE1")
    na_token = await access_token(http, spapi, REFRESH_TOKEN)
    eu_token = await access_token(http, spapi, EU_REFRESH_TOKEN)
    # A German marketplace on the North America host.
    foreign = await http.get(
        spapi.urls["NA"] + ITEM,
        params={"marketplaceIds": DE},
        headers={"x-amz-access-token": na_token},
    )
    assert foreign.status_code == 403
    assert error(foreign) == {"code": "Unauthorized", "message": DENIED, "details": WRONG_REGION}
    # The North America seller's token on the European host: not authorised there.
    elsewhere = await http.get(
        spapi.urls["EU"] + ITEM,
        params={"marketplaceIds": DE},
        headers={"x-amz-access-token": na_token},
    )
    assert elsewhere.status_code == 403
    assert error(elsewhere) == {"code": "Unauthorized", "message": DENIED, "details": ""}
    served = await http.get(
        spapi.urls["EU"] + ITEM,
        params={"marketplaceIds": DE},
        headers={"x-amz-access-token": eu_token},
    )
    assert served.status_code == 200
    assert [(c.region, c.token_region) for c in spapi.received] == [
        ("NA", "NA"),
        ("EU", "NA"),
        ("EU", "EU"),
    ]


async def test_catalog_returns_only_the_datasets_asked_for_and_refuses_unknown_ones(
    http: httpx.AsyncClient, spapi: FakeSpApi
) -> None:
    spapi.catalog["B0EXAMPLE1"] = catalog_item("B0EXAMPLE1")
    headers = {"x-amz-access-token": await access_token(http, spapi, REFRESH_TOKEN)}
    url = spapi.urls["NA"] + ITEM
    default = await http.get(url, params={"marketplaceIds": US}, headers=headers)
    assert default.status_code == 200
    assert default.headers["x-amzn-RateLimit-Limit"] == "2.0"
    assert set(default.json()) == {"asin", "summaries"}
    chosen = await http.get(
        url,
        params=[("marketplaceIds", US), ("includedData", "images,salesRanks")],
        headers=headers,
    )
    assert set(chosen.json()) == {"asin", "images", "salesRanks"}
    unknown = await http.get(
        url, params={"marketplaceIds": US, "includedData": "summaries,variations"}, headers=headers
    )
    assert unknown.status_code == 400
    assert unknown.headers["x-amzn-RateLimit-Limit"] == "2.0"
    assert error(unknown) == {"code": "InvalidInput", "message": BAD_PARAMETERS, "details": ""}
    no_marketplace = await http.get(url, headers=headers)
    assert no_marketplace.status_code == 400
    absent = await http.get(
        spapi.urls["NA"] + "/catalog/2022-04-01/items/B0NOTFOUND",
        params={"marketplaceIds": US},
        headers=headers,
    )
    assert absent.status_code == 404
    assert error(absent)["message"] == (
        "Requested item, B0NOTFOUND, not found in marketplace(s) ATVPDKIKX0DER."
    )
    assert absent.headers["x-amzn-RateLimit-Limit"] == "2.0"


async def test_throttling_is_amazons_429_without_a_rate_header(
    http: httpx.AsyncClient, spapi: FakeSpApi
) -> None:
    spapi.catalog["B0EXAMPLE1"] = catalog_item("B0EXAMPLE1")
    spapi.throttle = 1
    headers = {"x-amz-access-token": await access_token(http, spapi, REFRESH_TOKEN)}
    throttled = await http.get(
        spapi.urls["NA"] + ITEM, params={"marketplaceIds": US}, headers=headers
    )
    assert throttled.status_code == 429
    assert error(throttled) == {
        "code": "QuotaExceeded",
        "message": QUOTA_EXCEEDED,
        "details": "",
    }
    assert "x-amzn-RateLimit-Limit" not in throttled.headers


async def test_inventory_pages_with_opaque_next_tokens_that_expire(
    http: httpx.AsyncClient, spapi: FakeSpApi
) -> None:
    spapi.inventory = [
        inventory_summary(f"X0PAGE000{i}", f"B0PAGE000{i}", f"S{i}", f"Item {i}") for i in range(3)
    ]
    spapi.page_size = 2
    headers = {"x-amz-access-token": await access_token(http, spapi, REFRESH_TOKEN)}
    url = spapi.urls["NA"] + SUMMARIES
    params = {"granularityType": "Marketplace", "granularityId": US, "marketplaceIds": US}
    first = await http.get(url, params=params, headers=headers)
    assert first.status_code == 200
    token = first.json()["pagination"]["nextToken"]
    assert len(first.json()["payload"]["inventorySummaries"]) == 2
    assert token not in {"2", "1"} and len(token) > 20  # opaque, not an offset
    second = await http.get(url, params={**params, "nextToken": token}, headers=headers)
    assert second.json()["pagination"] == {}
    assert [s["fnSku"] for s in second.json()["payload"]["inventorySummaries"]] == ["X0PAGE0002"]
    made_up = await http.get(url, params={**params, "nextToken": "2"}, headers=headers)
    assert made_up.status_code == 400 and error(made_up)["code"] == "InvalidInput"
    offset, issued_at = spapi.pages[token]
    spapi.pages[token] = (offset, issued_at - 31)  # Amazon's tokens last 30 seconds
    stale = await http.get(url, params={**params, "nextToken": token}, headers=headers)
    assert stale.status_code == 400
    two = await http.get(
        url, params={**params, "marketplaceIds": f"{US},A2EUQ1WTGCTBG2"}, headers=headers
    )
    assert two.status_code == 400  # one marketplace at a time


async def test_the_default_inventory_repeats_an_fnsku_across_skus_in_one_page(
    http: httpx.AsyncClient, spapi: FakeSpApi
) -> None:
    headers = {"x-amz-access-token": await access_token(http, spapi, REFRESH_TOKEN)}
    page = await http.get(
        spapi.urls["NA"] + SUMMARIES,
        params={"granularityType": "Marketplace", "granularityId": US, "marketplaceIds": US},
        headers=headers,
    )
    rows = page.json()["payload"]["inventorySummaries"]
    skus = [row["sellerSku"] for row in rows if row["fnSku"] == "B0020MLK00"]
    assert skus == ["EMTEC 1 GB", "EMTEC-SdCard-reader"]
