"""The `sp-api` source against a local fake of LWA and the SP-API (on 127.0.0.1)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.conftest import AppFactory
from tests.factories import register
from tests.fakes.spapi import (
    DE,
    US,
    FakeSpApi,
    catalog_item,
    inventory_summary,
)
from tests.spapi_helpers import (
    ASIN,
    BATCH,
    FNSKU,
    REPORT,
    asgi_client,
    spapi_settings,
)

pytest_plugins = ["tests.spapi_fixtures"]

# These tests are about the data; the charge is covered by test_credits_amazon.py.
pytestmark = pytest.mark.usefixtures("free_data_calls")


@pytest.fixture
async def sp_client(make_app: AppFactory, spapi: FakeSpApi) -> AsyncIterator[httpx.AsyncClient]:
    app = await make_app(**spapi_settings(spapi))
    async with asgi_client(app) as client:
        yield client


async def test_catalog_item_is_parsed_into_the_contract_fields(
    sp_client: httpx.AsyncClient, spapi: FakeSpApi
) -> None:
    spapi.catalog["B0EXAMPLE1"] = catalog_item("B0EXAMPLE1")
    account = await register(sp_client)
    response = await sp_client.post(ASIN, headers=account.headers, json={"asin": "b0example1"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["asin"] == "B0EXAMPLE1" and body["marketplace"] == "US"
    assert body["title"] == "Acme Bottle 750 ml"
    assert body["brand"] == "Acme"
    assert body["category"] == "Water Bottles"
    # MAIN first, the largest size of each variant, each link once.
    assert body["images"] == [
        "https://m.media-amazon.com/images/I/main-l.jpg",
        "https://m.media-amazon.com/images/I/pt01-l.jpg",
    ]
    assert body["bullet_points"] == ["Keeps drinks cold for 24 hours", "Dishwasher safe"]
    assert (body["price"], body["currency"]) == ("3799.99", "usd")
    assert body["dimensions"] == {
        "item": {
            "height": {"value": "10.2", "unit": "inches"},
            "weight": {"value": "0.85", "unit": "pounds"},
        },
        "package": {"length": {"value": "11", "unit": "inches"}},
    }
    assert body["sales_rank"]["title"] == "Kitchen & Dining" and body["sales_rank"]["rank"] == 4210
    assert [r["rank"] for r in body["sales_ranks"]] == [4210, 57]
    assert body["source"] == "sp-api" and body["fetched_at"]

    assert spapi.last_params["marketplaceIds"] == [US]
    assert spapi.last_params["includedData"] == [
        "summaries,images,attributes,salesRanks,dimensions"
    ]
    assert spapi.last_headers["user-agent"].startswith("sellerdesk/")
    assert "authorization" not in spapi.last_headers
    assert (spapi.received[-1].region, spapi.received[-1].token_region) == ("NA", "NA")


async def test_a_de_lookup_goes_to_the_eu_host_with_the_eu_credentials(
    sp_client: httpx.AsyncClient, spapi: FakeSpApi
) -> None:
    spapi.catalog["B0EXAMPLE1"] = catalog_item("B0EXAMPLE1")
    account = await register(sp_client)
    response = await sp_client.post(
        ASIN, headers=account.headers, json={"asin": "B0EXAMPLE1", "marketplace": "de"}
    )
    assert response.status_code == 200, response.text
    call = spapi.received[-1]
    assert (call.region, call.token_region) == ("EU", "EU")
    assert call.params["marketplaceIds"] == [DE]
    assert spapi.tokens_issued == ["EU"]  # the EU refresh token, exchanged once
    # No German entry: the first marketplace's data is used, German bullets are kept.
    assert response.json()["bullet_points"][-1] == "Spülmaschinenfest"
    assert response.json()["marketplace"] == "DE"

    us = await sp_client.post(ASIN, headers=account.headers, json={"asin": "B0EXAMPLE1"})
    assert us.status_code == 200
    assert (spapi.received[-1].region, spapi.received[-1].token_region) == ("NA", "NA")
    assert spapi.tokens_issued == ["EU", "NA"]


async def test_token_is_exchanged_once_and_reused_across_concurrent_calls(
    make_app: AppFactory, spapi: FakeSpApi
) -> None:
    codes = [f"B0CONC{i:04d}" for i in range(20)]
    for code in codes:
        spapi.catalog[code] = catalog_item(code)
    # A seller whose quota allows the burst: this test is about the token, not the pacing.
    spapi.rate_limit = "100.0"
    app = await make_app(**spapi_settings(spapi, SPAPI_DEFAULT_RATE=100.0, SPAPI_DEFAULT_BURST=20))
    async with asgi_client(app) as sp_client:
        account = await register(sp_client)
        responses = await asyncio.gather(
            *(sp_client.post(ASIN, headers=account.headers, json={"asin": c}) for c in codes)
        )
    assert [r.status_code for r in responses] == [200] * 20
    assert spapi.calls["token"] == 1
    assert spapi.calls["catalog"] == 20
    assert {r.json()["asin"] for r in responses} == set(codes)


async def test_second_lookup_is_served_from_the_cache(
    sp_client: httpx.AsyncClient, spapi: FakeSpApi
) -> None:
    spapi.catalog["B0EXAMPLE1"] = catalog_item("B0EXAMPLE1")
    account = await register(sp_client)
    first = await sp_client.post(ASIN, headers=account.headers, json={"asin": "B0EXAMPLE1"})
    second = await sp_client.post(ASIN, headers=account.headers, json={"asin": "B0EXAMPLE1"})
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert spapi.calls["catalog"] == 1


async def test_unknown_asin_is_404_and_briefly_remembered(
    sp_client: httpx.AsyncClient, spapi: FakeSpApi
) -> None:
    account = await register(sp_client)
    for _ in range(2):
        response = await sp_client.post(ASIN, headers=account.headers, json={"asin": "B0NOTFOUND"})
        assert response.status_code == 404
        assert response.json()["error"] == "not_found"
    assert spapi.calls["catalog"] == 1


async def test_throttled_twice_then_served(
    fast_client: httpx.AsyncClient, spapi: FakeSpApi
) -> None:
    spapi.catalog["B0EXAMPLE1"] = catalog_item("B0EXAMPLE1")
    spapi.throttle = 2
    account = await register(fast_client)
    response = await fast_client.post(ASIN, headers=account.headers, json={"asin": "B0EXAMPLE1"})
    assert response.status_code == 200, response.text
    assert spapi.calls["catalog"] == 3


async def test_throttled_beyond_the_retries_is_503_with_retry_after(
    fast_client: httpx.AsyncClient, spapi: FakeSpApi
) -> None:
    spapi.catalog["B0EXAMPLE1"] = catalog_item("B0EXAMPLE1")
    spapi.throttle = 100
    account = await register(fast_client)
    response = await fast_client.post(ASIN, headers=account.headers, json={"asin": "B0EXAMPLE1"})
    assert response.status_code == 503
    assert response.json()["error"] == "upstream_unavailable"
    assert int(response.headers["Retry-After"]) >= 1
    assert spapi.calls["catalog"] == 4  # the first try and SPAPI_MAX_RETRIES=3 retries


async def test_server_errors_exhausting_the_retries_are_502_and_not_cached(
    fast_client: httpx.AsyncClient, spapi: FakeSpApi
) -> None:
    spapi.catalog["B0EXAMPLE1"] = catalog_item("B0EXAMPLE1")
    spapi.fail = 4
    account = await register(fast_client)
    failed = await fast_client.post(ASIN, headers=account.headers, json={"asin": "B0EXAMPLE1"})
    assert failed.status_code == 502
    assert failed.json()["error"] == "upstream_unavailable"
    assert "InternalFailure" in failed.json()["message"]  # Amazon's reason is passed on
    assert spapi.calls["catalog"] == 4
    # The failure was not cached: the next call asks Amazon again and gets the item.
    again = await fast_client.post(ASIN, headers=account.headers, json={"asin": "B0EXAMPLE1"})
    assert again.status_code == 200
    assert spapi.calls["catalog"] == 5


async def test_a_server_error_then_success_is_served(
    fast_client: httpx.AsyncClient, spapi: FakeSpApi
) -> None:
    spapi.catalog["B0EXAMPLE1"] = catalog_item("B0EXAMPLE1")
    spapi.fail = 1
    account = await register(fast_client)
    response = await fast_client.post(ASIN, headers=account.headers, json={"asin": "B0EXAMPLE1"})
    assert response.status_code == 200
    assert spapi.calls["catalog"] == 2


async def test_hanging_upstream_is_504(make_app: AppFactory, spapi: FakeSpApi) -> None:
    spapi.catalog["B0EXAMPLE1"] = catalog_item("B0EXAMPLE1")
    app = await make_app(**spapi_settings(spapi, SPAPI_TIMEOUT_SECONDS=0.3))
    async with asgi_client(app) as client:
        account = await register(client)
        spapi.hang_seconds = 3
        response = await client.post(ASIN, headers=account.headers, json={"asin": "B0EXAMPLE1"})
    assert response.status_code == 504
    assert response.json()["error"] == "upstream_unavailable"
    assert spapi.calls["catalog"] == 1  # a timeout is not retried


async def test_refused_credentials_are_502(make_app: AppFactory, spapi: FakeSpApi) -> None:
    app = await make_app(**spapi_settings(spapi, SPAPI_CLIENT_SECRET="wrong"))
    async with asgi_client(app) as client:
        account = await register(client)
        response = await client.post(ASIN, headers=account.headers, json={"asin": "B0EXAMPLE1"})
    assert response.status_code == 502
    assert response.json()["error"] == "upstream_unavailable"
    assert "wrong" not in response.text
    assert "invalid_client" in response.json()["message"]
    assert spapi.calls["catalog"] == 0


async def test_revoked_access_token_is_refreshed_once(
    sp_client: httpx.AsyncClient, spapi: FakeSpApi
) -> None:
    spapi.catalog["B0EXAMPLE1"] = catalog_item("B0EXAMPLE1")
    spapi.catalog["B0EXAMPLE2"] = catalog_item("B0EXAMPLE2")
    account = await register(sp_client)
    assert (
        await sp_client.post(ASIN, headers=account.headers, json={"asin": "B0EXAMPLE1"})
    ).status_code == 200
    spapi.issued.clear()  # Amazon no longer accepts the cached token
    response = await sp_client.post(ASIN, headers=account.headers, json={"asin": "B0EXAMPLE2"})
    assert response.status_code == 200
    assert spapi.calls["token"] == 2


async def test_expired_access_token_is_exchanged_again_once(
    sp_client: httpx.AsyncClient, spapi: FakeSpApi
) -> None:
    spapi.catalog["B0EXAMPLE1"] = catalog_item("B0EXAMPLE1")
    spapi.catalog["B0EXAMPLE2"] = catalog_item("B0EXAMPLE2")
    account = await register(sp_client)
    first = await sp_client.post(ASIN, headers=account.headers, json={"asin": "B0EXAMPLE1"})
    assert first.status_code == 200
    spapi.expire_tokens()  # Amazon: 403 "The access token you provided has expired."
    response = await sp_client.post(ASIN, headers=account.headers, json={"asin": "B0EXAMPLE2"})
    assert response.status_code == 200, response.text
    assert spapi.tokens_issued == ["NA", "NA"]
    assert spapi.calls["catalog"] == 3  # served, refused as expired, served again


@pytest.mark.parametrize(
    ("deny", "reason"),
    [
        ("role", "Access to requested resource is denied."),
        ("region", "The marketplaces you provided are not valid for region."),
    ],
)
async def test_a_403_that_is_not_about_the_token_fails_at_once_without_a_token_exchange(
    sp_client: httpx.AsyncClient, spapi: FakeSpApi, deny: str, reason: str
) -> None:
    spapi.catalog["B0EXAMPLE1"] = catalog_item("B0EXAMPLE1")
    spapi.deny = deny
    account = await register(sp_client)
    response = await sp_client.post(ASIN, headers=account.headers, json={"asin": "B0EXAMPLE1"})
    assert response.status_code == 502
    body = response.json()
    assert body["error"] == "upstream_unavailable"
    assert reason in body["message"] and "North America" in body["message"]
    assert spapi.calls["token"] == 1  # the first exchange only: a new token would not help
    assert spapi.calls["catalog"] == 1  # and no retry
    again = await sp_client.post(ASIN, headers=account.headers, json={"asin": "B0EXAMPLE1"})
    assert again.status_code == 502
    assert spapi.calls["token"] == 1


async def test_fnsku_resolves_through_paginated_inventory_summaries(
    sp_client: httpx.AsyncClient, spapi: FakeSpApi
) -> None:
    spapi.inventory = [
        inventory_summary(f"X0INV0000{i}", f"B0INV0000{i}", f"SKU-{i}", f"Item {i}")
        for i in range(5)
    ]
    spapi.page_size = 2
    account = await register(sp_client)
    response = await sp_client.post(FNSKU, headers=account.headers, json={"fnsku": "x0inv00004"})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "fnsku": "X0INV00004",
        "asin": "B0INV00004",
        "sku": "SKU-4",
        "skus": ["SKU-4"],
        "title": "Item 4",
        "source": "sp-api",
    }
    assert spapi.calls["inventory"] == 3  # pages of 2, 2 and 1
    assert spapi.last_params["granularityType"] == ["Marketplace"]
    assert spapi.last_params["granularityId"] == [US]
    # The client sends back Amazon's opaque token as it came.
    [token] = spapi.last_params["nextToken"]
    assert len(token) > 20

    batch = await sp_client.post(
        BATCH,
        headers=account.headers,
        json={"fnskus": ["X0INV00000", "X0INV00009", "bad", "X0INV00000"]},
    )
    assert batch.json()["results"] == [
        {"fnsku": "X0INV00000", "asin": "B0INV00000", "status": "found"},
        {"fnsku": "X0INV00009", "asin": None, "status": "not_found"},
        {"fnsku": "BAD", "asin": None, "status": "invalid"},
        {"fnsku": "X0INV00000", "asin": "B0INV00000", "status": "found"},
    ]
    missing = await sp_client.post(FNSKU, headers=account.headers, json={"fnsku": "X0INV00009"})
    assert missing.status_code == 404
    assert spapi.calls["inventory"] == 3  # the inventory table is cached


async def test_users_own_mapping_answers_before_amazon(
    sp_client: httpx.AsyncClient, spapi: FakeSpApi
) -> None:
    account = await register(sp_client)
    report = await sp_client.post(
        REPORT,
        headers=account.headers,
        files={
            "file": ("r.tsv", b"sku\tfnsku\tasin\tproduct-name\nS\tX0MINE0001\tB0MINE0001\tMine\n")
        },
    )
    assert report.status_code == 200
    response = await sp_client.post(FNSKU, headers=account.headers, json={"fnsku": "X0MINE0001"})
    assert response.json()["source"] == "inventory_report"
    assert spapi.calls["inventory"] == 0


async def test_inventory_failure_is_502_for_a_batch(
    fast_client: httpx.AsyncClient, spapi: FakeSpApi
) -> None:
    spapi.fail = 100
    account = await register(fast_client)
    response = await fast_client.post(
        BATCH, headers=account.headers, json={"fnskus": ["X0INV00001"]}
    )
    assert response.status_code == 502
    assert response.json()["error"] == "upstream_unavailable"


async def test_sp_api_provider_refuses_to_start_without_credentials(
    make_app: AppFactory, spapi: FakeSpApi
) -> None:
    with pytest.raises(RuntimeError, match=r"SPAPI_NA_REFRESH_TOKEN.*SPAPI_REFRESH_TOKEN"):
        await make_app(**spapi_settings(spapi, SPAPI_REFRESH_TOKEN=None))


async def test_calls_are_paced_to_the_rate_amazon_reports(
    make_app: AppFactory, spapi: FakeSpApi
) -> None:
    spapi.rate_limit = "10.0"  # x-amzn-RateLimit-Limit: 10 requests per second
    codes = [f"B0PACE{i:04d}" for i in range(6)]
    for code in codes:
        spapi.catalog[code] = catalog_item(code)
    app = await make_app(**spapi_settings(spapi, SPAPI_MAX_WAIT_SECONDS=1.0))
    async with asgi_client(app) as client:
        account = await register(client)
        first = await client.post(ASIN, headers=account.headers, json={"asin": codes[0]})
        assert first.status_code == 200
        # Amazon said 10/s: five more at once fit in the 1 s wait (0.1 s apart). At the default
        # 2/s the last ones would have to wait 1.5 s and more, and would be refused.
        burst = await asyncio.gather(
            *(client.post(ASIN, headers=account.headers, json={"asin": c}) for c in codes[1:])
        )
    assert [r.status_code for r in burst] == [200] * 5
    arrivals = sorted(call.at for call in spapi.received[1:])
    assert arrivals[-1] - arrivals[0] >= 0.1  # paced, not all at once


async def test_token_is_refreshed_30_seconds_before_it_expires(
    sp_client: httpx.AsyncClient, spapi: FakeSpApi
) -> None:
    spapi.expires_in = 30  # already inside the 30 s margin: never reused
    spapi.catalog["B0EXAMPLE1"] = catalog_item("B0EXAMPLE1")
    spapi.catalog["B0EXAMPLE2"] = catalog_item("B0EXAMPLE2")
    account = await register(sp_client)
    for code in ("B0EXAMPLE1", "B0EXAMPLE2"):
        response = await sp_client.post(ASIN, headers=account.headers, json={"asin": code})
        assert response.status_code == 200
    assert spapi.calls["token"] == 2


async def test_one_fnsku_on_several_skus_answers_the_first_sku_in_code_point_order(
    sp_client: httpx.AsyncClient, spapi: FakeSpApi
) -> None:
    # As in Amazon's sandbox data: one FNSKU stocked under several SKUs, in one page and across
    # pages, listed in an order where "the last row wins" would answer ZZ-3.
    spapi.inventory = [
        inventory_summary("X0REPEAT01", "B0REPEAT01", "MM-2", "Bottle, blue"),
        inventory_summary("X0REPEAT01", "B0REPEAT01", "AA-1", "Bottle"),
        inventory_summary("X0OTHER001", "B0OTHER001", "OTHER", "Other"),
        inventory_summary("X0REPEAT01", "B0REPEAT01", "ZZ-3", "Bottle, red"),
    ]
    spapi.page_size = 3
    account = await register(sp_client)
    response = await sp_client.post(FNSKU, headers=account.headers, json={"fnsku": "X0REPEAT01"})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "fnsku": "X0REPEAT01",
        "asin": "B0REPEAT01",
        "sku": "AA-1",
        "skus": ["AA-1", "MM-2", "ZZ-3"],
        "title": "Bottle",
        "source": "sp-api",
    }
    assert spapi.calls["inventory"] == 2
