"""The public product listing: pagination, filters, search and sort."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.catalog_factories import create_category, create_product
from tests.factories import Account, register_admin

API = "/api/v1"


@pytest.fixture
async def admin(client: httpx.AsyncClient, app: FastAPI) -> Account:
    return await register_admin(client, app)


async def _skus(client: httpx.AsyncClient, query: str = "") -> list[str]:
    response = await client.get(f"{API}/products?page_size=100&{query}")
    assert response.status_code == 200, response.text
    return [p["sku"] for p in response.json()["items"]]


async def test_pagination_envelope_and_page_past_the_end(
    client: httpx.AsyncClient, admin: Account
) -> None:
    for n in range(5):
        await create_product(client, admin, sku=f"P-{n}")
    first = (await client.get(f"{API}/products?page=1&page_size=2&sort=name")).json()
    assert first["total"] == 5 and first["page"] == 1 and first["page_size"] == 2
    assert len(first["items"]) == 2
    pages = [
        (await client.get(f"{API}/products?page={n}&page_size=2&sort=created_at")).json()
        for n in (1, 2, 3)
    ]
    ids = [p["id"] for page in pages for p in page["items"]]
    assert len(ids) == len(set(ids)) == 5
    past = await client.get(f"{API}/products?page=4&page_size=2")
    assert past.status_code == 200
    assert past.json() == {"items": [], "total": 5, "page": 4, "page_size": 2}
    far = await client.get(f"{API}/products?page=1000000&page_size=100")
    assert far.status_code == 200 and far.json()["items"] == []
    empty = (await client.get(f"{API}/products?q=nothing-matches")).json()
    assert empty["items"] == [] and empty["total"] == 0


@pytest.mark.parametrize(
    "query",
    ["page=0", "page=1000001", "page_size=0", "page_size=101", "page=abc", "sort=id",
     "sort=-stock_quantity", "sort=name;drop", "min_price=1.234", "min_price=-1",
     "max_price=NaN", "in_stock=maybe", "q=a%00b", f"q={'x' * 201}"],
)  # fmt: skip
async def test_bad_query_parameters_are_422(client: httpx.AsyncClient, query: str) -> None:
    response = await client.get(f"{API}/products?{query}")
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_error"


async def test_sorts_are_stable_and_tie_break_by_id(
    client: httpx.AsyncClient, admin: Account
) -> None:
    specs = [("b", "3.00"), ("a", "1.00"), ("c", "1.00"), ("a", "2.00")]
    made = [
        await create_product(client, admin, name=name, price=price, sku=f"S-{i}")
        for i, (name, price) in enumerate(specs)
    ]
    assert await _skus(client, "sort=name") == ["S-1", "S-3", "S-0", "S-2"]
    assert await _skus(client, "sort=-name") == ["S-2", "S-0", "S-3", "S-1"]
    assert await _skus(client, "sort=price") == ["S-1", "S-2", "S-3", "S-0"]
    assert await _skus(client, "sort=-price") == ["S-0", "S-3", "S-2", "S-1"]
    by_created = await _skus(client, "sort=created_at")
    assert by_created == [p["sku"] for p in made]
    assert await _skus(client, "sort=-created_at") == list(reversed(by_created))
    assert await _skus(client) == list(reversed(by_created))  # the default: newest first


async def test_price_bounds_are_inclusive(client: httpx.AsyncClient, admin: Account) -> None:
    for i, price in enumerate(["9.99", "10.00", "12.50", "20.00", "20.01"]):
        await create_product(client, admin, price=price, sku=f"M-{i}")
    assert await _skus(client, "sort=price&min_price=10&max_price=20") == ["M-1", "M-2", "M-3"]
    assert await _skus(client, "sort=price&min_price=12.5") == ["M-2", "M-3", "M-4"]
    assert await _skus(client, "sort=price&max_price=10.00") == ["M-0", "M-1"]
    assert await _skus(client, "min_price=30") == []


async def test_in_stock_filter(client: httpx.AsyncClient, admin: Account) -> None:
    await create_product(client, admin, sku="OUT", stock_quantity=0)
    await create_product(client, admin, sku="IN", stock_quantity=1)
    assert await _skus(client, "in_stock=true") == ["IN"]
    assert await _skus(client, "in_stock=false") == ["OUT"]
    assert sorted(await _skus(client)) == ["IN", "OUT"]


async def test_category_filter_includes_every_descendant(
    client: httpx.AsyncClient, admin: Account
) -> None:
    top = await create_category(client, admin, slug="electronics")
    mid = await create_category(client, admin, slug="audio", parent_id=top["id"])
    leaf = await create_category(client, admin, slug="headphones", parent_id=mid["id"])
    other = await create_category(client, admin, slug="garden")
    await create_product(client, admin, sku="TOP", category_id=top["id"])
    await create_product(client, admin, sku="MID", category_id=mid["id"])
    await create_product(client, admin, sku="LEAF", category_id=leaf["id"])
    await create_product(client, admin, sku="OTHER", category_id=other["id"])
    await create_product(client, admin, sku="NONE")
    assert sorted(await _skus(client, "category=electronics")) == ["LEAF", "MID", "TOP"]
    assert sorted(await _skus(client, "category=audio")) == ["LEAF", "MID"]
    assert await _skus(client, "category=headphones") == ["LEAF"]
    unknown = await client.get(f"{API}/products?category=no-such-slug")
    assert unknown.status_code == 200 and unknown.json()["total"] == 0


async def test_q_is_a_case_insensitive_substring_of_name_description_or_sku(
    client: httpx.AsyncClient, admin: Account
) -> None:
    await create_product(client, admin, sku="N-1", name="Wireless Mouse")
    await create_product(client, admin, sku="D-1", name="Pad", description="fits a MOUSE well")
    await create_product(client, admin, sku="MOUSE-99", name="Cable")
    await create_product(client, admin, sku="X-1", name="Keyboard")
    await create_product(client, admin, sku="F-1", name="Mice trap")  # no stemming
    assert await _skus(client, "q=mouse&sort=name") == ["MOUSE-99", "D-1", "N-1"]
    assert await _skus(client, "q=IRELESS") == ["N-1"]
    assert await _skus(client, "q=mouze") == []  # no fuzzy matches
    assert await _skus(client, "q=") == await _skus(client)


@pytest.mark.parametrize(
    ("q", "expected"),
    [("%", ["PCT"]), ("50%", ["PCT"]), ("_", ["UND"]), ("a_b", ["UND"]), ("\\", ["BSL"]),
     ("c\\d", ["BSL"]), ("%_", [])],
)  # fmt: skip
async def test_q_wildcards_match_only_themselves(
    client: httpx.AsyncClient, admin: Account, q: str, expected: list[str]
) -> None:
    await create_product(client, admin, sku="PCT", name="Save 50% now")
    await create_product(client, admin, sku="UND", name="a_b")
    await create_product(client, admin, sku="BSL", name="c\\d")
    await create_product(client, admin, sku="PLAIN", name="axb cd")
    response = await client.get(f"{API}/products", params={"q": q})
    assert [p["sku"] for p in response.json()["items"]] == expected


async def test_filters_combine(client: httpx.AsyncClient, admin: Account) -> None:
    shoes = await create_category(client, admin, slug="shoes")
    await create_product(client, admin, sku="A", name="Red shoe", price="50", stock_quantity=1,
                         category_id=shoes["id"])  # fmt: skip
    await create_product(client, admin, sku="B", name="Red shoe", price="50", stock_quantity=0,
                         category_id=shoes["id"])  # fmt: skip
    await create_product(client, admin, sku="C", name="Red shoe", price="90", stock_quantity=1,
                         category_id=shoes["id"])  # fmt: skip
    await create_product(client, admin, sku="D", name="Red shoe", price="50", stock_quantity=1)
    query = "category=shoes&q=red&in_stock=true&max_price=60"
    body: dict[str, Any] = (await client.get(f"{API}/products?{query}")).json()
    assert [p["sku"] for p in body["items"]] == ["A"] and body["total"] == 1


async def test_public_reads_need_no_token_but_refuse_a_bad_one(client: httpx.AsyncClient) -> None:
    assert (await client.get(f"{API}/products")).status_code == 200
    bad = await client.get(f"{API}/products", headers={"Authorization": "Bearer not-a-jwt"})
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_token"
