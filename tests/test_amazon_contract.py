"""The client's parsing against Amazon's own published payloads (tests/fixtures/spapi/, taken
verbatim from amzn/selling-partner-api-models), not against our fake's idea of them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from sellerdesk.amazon.spapi_source import (
    inventory_table,
    parse_catalog_item,
    parse_inventory_page,
)
from tests.factories import register
from tests.fakes.spapi import FIXTURES, FakeSpApi, catalog_item
from tests.spapi_helpers import ASIN, FNSKU

pytest_plugins = ["tests.spapi_fixtures"]
pytestmark = pytest.mark.usefixtures("free_data_calls")

NOW = datetime(2026, 12, 1, tzinfo=UTC)
SAMSUNG_TV = (
    "Samsung QN82Q60RAFXZA Flat 82-Inch QLED 4K Q60 Series (2019) Ultra HD Smart TV with HDR "
    "and Alexa Compatibility"
)
IMAGES = "https://m.media-amazon.com/images/I/"


def amazon_json(name: str) -> Any:
    """A vendored payload parsed as the client parses Amazon's bytes (decimals exact)."""
    return json.loads((FIXTURES / name).read_bytes(), parse_float=Decimal)


def test_catalog_item_example_gives_every_contract_field() -> None:
    body = amazon_json("catalog_item_200_example.json")
    product = parse_catalog_item(body, "B07N4M94X4", "US", "ATVPDKIKX0DER", NOW)
    assert product.title == SAMSUNG_TV
    assert product.brand == "SAMSUNG"
    assert product.category == "QLED TVs"  # summaries[].browseClassification.displayName
    # MAIN first, then PT01..PT08; each variant once, at its largest size.
    assert product.images == [
        IMAGES + name
        for name in (
            "91uohwV+k3L.jpg",
            "81w2rTVShlL.jpg",
            "51NTNhdhPyL.jpg",
            "51o4zpL+A3L.jpg",
            "71ux2k9GAZL.jpg",
            "61LwHkljX-L.jpg",
            "61uvoB4VvoL.jpg",
            "7121MGd2ncL.jpg",
            "61ECcGlG4IL.jpg",
        )
    ]
    assert len(product.bullet_points) == 6
    assert product.bullet_points[0].startswith("SMART TV WITH UNIVERSAL GUIDE:")
    assert "décor" in product.bullet_points[4]
    assert (product.price, product.currency) == ("3799.99", "usd")
    dimensions = product.model_dump()["dimensions"]
    assert dimensions["item"] == {
        "height": {"value": "41.4", "unit": "inches"},
        "length": {"value": "2.4", "unit": "inches"},
        "width": {"value": "72.4", "unit": "inches"},
        "weight": {"value": "107.6", "unit": "pounds"},
    }
    # Amazon's own digits, never through a float.
    assert dimensions["package"]["height"] == {"value": "10.49999998929", "unit": "inches"}
    assert dimensions["package"]["weight"] == {"value": "62.142", "unit": "kilograms"}
    assert product.sales_rank is not None
    assert (product.sales_rank.title, product.sales_rank.rank) == ("Electronics", 72855)
    assert [(r.title, r.rank, r.category_id) for r in product.sales_ranks] == [
        ("Electronics", 72855, "ce_display_on_website"),
        ("QLED TVs", 113, "21489946011"),
    ]


def test_catalog_item_sandbox_answer_without_attributes_parses_to_the_same_item() -> None:
    example = amazon_json("catalog_item_sandbox_200.json")
    parameters = example["request"]["parameters"]
    asin = parameters["asin"]["value"]
    [marketplace_id] = parameters["marketplaceIds"]["value"]
    product = parse_catalog_item(example["response"], asin, "US", marketplace_id, NOW)
    assert (product.asin, product.title, product.brand) == ("B07N4M94X4", SAMSUNG_TV, "SAMSUNG")
    assert product.images[0] == IMAGES + "91uohwV+k3L.jpg"
    assert product.dimensions is not None and product.sales_rank is not None
    # The sandbox request did not ask for `attributes`: no bullets, no list price, no guessing.
    assert product.bullet_points == []
    assert (product.price, product.currency) == (None, None)


def test_inventory_sandbox_page_parses_and_its_repeated_fnsku_answers_one_sku() -> None:
    example = amazon_json("inventory_summaries_sandbox_200.json")
    rows, next_token = parse_inventory_page(example["response"])
    assert next_token == "seed"
    assert [(row.fnsku, row.asin, row.sku) for row in rows] == [
        ("B0020MLK00", "B0020MLK00", "EMTEC 1 GB"),
        ("B0020MLK00", "B0020MLK00", "EMTEC-SdCard-reader"),
        ("B00T9QONN6", "B00T9QONN6", "Silicon Power 32GB"),
    ]
    table = inventory_table(rows)
    assert table["B0020MLK00"] == {
        "asin": "B0020MLK00",
        "sku": "EMTEC 1 GB",
        "skus": ["EMTEC 1 GB", "EMTEC-SdCard-reader"],
        "title": "EMTEC 1 GB 60x SD Flash Memory Card with USB 2.0 Card Reader",
    }
    # Whatever order Amazon lists the rows in, the answer is the same.
    assert inventory_table(reversed(rows)) == table
    assert table["B00T9QONN6"]["skus"] == ["Silicon Power 32GB"]


async def test_amazons_catalog_example_served_verbatim_answers_the_lookup(
    fast_client: httpx.AsyncClient, spapi: FakeSpApi
) -> None:
    spapi.replay = [(200, (FIXTURES / "catalog_item_200_example.json").read_bytes())]
    account = await register(fast_client)
    response = await fast_client.post(ASIN, headers=account.headers, json={"asin": "B07N4M94X4"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["title"], body["brand"], body["price"]) == (SAMSUNG_TV, "SAMSUNG", "3799.99")
    assert body["dimensions"]["package"]["height"]["value"] == "10.49999998929"


async def test_amazons_catalog_400_is_a_502_with_amazons_reason_and_is_not_cached(
    fast_client: httpx.AsyncClient, spapi: FakeSpApi
) -> None:
    spapi.catalog["B07N4M94X4"] = catalog_item("B07N4M94X4")
    spapi.replay = [(400, amazon_json("catalog_item_sandbox_400.json")["response"])]
    account = await register(fast_client)
    refused = await fast_client.post(ASIN, headers=account.headers, json={"asin": "B07N4M94X4"})
    assert refused.status_code == 502
    assert refused.json()["error"] == "upstream_unavailable"
    assert "missing or invalid parameters" in refused.json()["message"]
    assert spapi.calls["catalog"] == 1  # a 400 is not retried
    served = await fast_client.post(ASIN, headers=account.headers, json={"asin": "B07N4M94X4"})
    assert served.status_code == 200


async def test_amazons_inventory_page_served_verbatim_resolves_its_fnskus(
    fast_client: httpx.AsyncClient, spapi: FakeSpApi
) -> None:
    page = json.loads((FIXTURES / "inventory_summaries_sandbox_200.json").read_text())
    last_page = {"payload": {"inventorySummaries": []}, "pagination": {}}
    spapi.replay = [(200, page["response"]), (200, last_page)]
    account = await register(fast_client)
    response = await fast_client.post(FNSKU, headers=account.headers, json={"fnsku": "b0020mlk00"})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "fnsku": "B0020MLK00",
        "asin": "B0020MLK00",
        "sku": "EMTEC 1 GB",
        "skus": ["EMTEC 1 GB", "EMTEC-SdCard-reader"],
        "title": "EMTEC 1 GB 60x SD Flash Memory Card with USB 2.0 Card Reader",
        "source": "sp-api",
    }
    assert spapi.received[-1].params["nextToken"] == ["seed"]  # Amazon's token, sent back as is


async def test_amazons_inventory_500_exhausting_the_retries_is_a_502(
    fast_client: httpx.AsyncClient, spapi: FakeSpApi
) -> None:
    failure = amazon_json("inventory_summaries_sandbox_500.json")["response"]
    spapi.replay = [(500, failure)] * 4  # the first try and SPAPI_MAX_RETRIES=3 retries
    account = await register(fast_client)
    response = await fast_client.post(FNSKU, headers=account.headers, json={"fnsku": "B0020MLK00"})
    assert response.status_code == 502
    assert "InternalFailure" in response.json()["message"]
    assert spapi.calls["inventory"] == 4
