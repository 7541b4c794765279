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


# --------------------------------------------------------------------------- the listing's rows
# The listing reads plain rows with one statement kept per filter shape (values bound per
# request) and constructs its models from them; public reads run in autocommit on PostgreSQL.


async def test_listing_items_are_the_products_field_for_field(
    client: httpx.AsyncClient, admin: Account
) -> None:
    shoes = await create_category(client, admin, slug="boots")
    made = [
        await create_product(
            client, admin, sku="F-1", name="Field boot", description="Waxed LEATHER",
            price="12.5", stock_quantity=3, low_stock_threshold=7, category_id=shoes["id"],
            asin="b08n5wrwnw", images=["https://img.example.com/a.png"], currency="eur",
        ),
        await create_product(client, admin, sku="F-2", name="Plain boot", price="99.99"),
        await create_product(client, admin, sku="F-3", name="Sold-out boot", stock_quantity=0),
    ]  # fmt: skip
    expected = sorted(made, key=lambda p: (p["name"], p["id"]))
    public = (await client.get(f"{API}/products?q=BOOT&sort=name")).json()
    assert public == {"items": expected, "total": 3, "page": 1, "page_size": 20}
    assert public["items"][0]["price"] == "12.50" and public["items"][0]["in_stock"] is True
    assert public["items"][2]["in_stock"] is False and public["items"][0]["asin"] == "B08N5WRWNW"
    # An admin's read runs inside the request's transaction (its token read began it).
    admin_view = await client.get(f"{API}/products?q=BOOT&sort=name", headers=admin.headers)
    assert admin_view.json() == public
    # Each item is the product as its own detail route shows it.
    for item in public["items"]:
        assert (await client.get(f"{API}/products/{item['id']}")).json() == item


async def test_one_filter_shape_answers_each_requests_own_values(
    client: httpx.AsyncClient, admin: Account
) -> None:
    """The statement of a shape is kept; its values must come from each request."""
    hats = await create_category(client, admin, slug="hats")
    caps = await create_category(client, admin, slug="caps")
    await create_product(
        client, admin, sku="H-1", name="Wool hat", price="20", category_id=hats["id"]
    )
    await create_product(
        client, admin, sku="H-2", name="Straw hat", price="40", category_id=hats["id"]
    )
    await create_product(
        client, admin, sku="C-1", name="Wool cap", price="30", category_id=caps["id"]
    )
    await create_product(
        client, admin, sku="C-2", name="Straw cap", price="50", category_id=caps["id"]
    )
    cases = {
        "category=hats&q=wool&min_price=10&max_price=100&sort=price": (["H-1"], 1),
        "category=caps&q=straw&min_price=10&max_price=100&sort=price": (["C-2"], 1),
        "category=caps&q=a&min_price=35&max_price=100&sort=price": (["C-2"], 1),
        "category=hats&q=a&min_price=0&max_price=30&sort=price": (["H-1"], 1),
        "q=straw&sort=-price&page_size=1": (["C-2"], 2),
        "q=wool&sort=-price&page_size=1": (["C-1"], 2),
        "q=wool&sort=-price&page_size=1&page=2": (["H-1"], 2),
    }  # fmt: skip
    for _ in range(2):  # the second round reuses every kept statement
        for query, (skus, total) in cases.items():
            body = (await client.get(f"{API}/products?{query}")).json()
            assert ([p["sku"] for p in body["items"]], body["total"]) == (skus, total), query
    past = (await client.get(f"{API}/products?q=straw&page=5&page_size=1")).json()
    assert past["items"] == [] and past["total"] == 2
    past = (await client.get(f"{API}/products?q=wool&category=hats&page=5")).json()
    assert past["items"] == [] and past["total"] == 1


async def test_listing_rows_match_the_orm_listing(
    client: httpx.AsyncClient, admin: Account, app: FastAPI
) -> None:
    """The JSON listing and the ORM one (the dashboard's) agree for combined filters."""
    import itertools
    from decimal import Decimal

    from sellerdesk.catalog import service
    from sellerdesk.catalog.schemas import ProductFilters, ProductPublic
    from sellerdesk.kit.pagination import Page, PageParams

    tops = await create_category(client, admin, slug="tops")
    for n, (name, price, stock) in enumerate(
        [("Red top", "10", 0), ("red TOP", "10", 2), ("Blue top", "25.5", 1), ("Sock", "3", 9)]
    ):
        category = tops["id"] if n < 3 else None
        await create_product(client, admin, sku=f"T-{n}", name=name, price=price,
                             stock_quantity=stock, category_id=category)  # fmt: skip
    await create_product(client, admin, sku="T-OFF", name="Red top", is_active=False)
    combos = itertools.product(
        [None, "tops"], [None, "red"], [None, Decimal("10")], [None, Decimal("20")],
        [None, True], ["name", "-price"], [False, True],
    )  # fmt: skip
    async with app.state.sessionmaker() as session:
        for category, q, low, high, in_stock, sort, inactive in combos:
            filters = ProductFilters(
                category=category, q=q, min_price=low, max_price=high, in_stock=in_stock,
                sort=sort, include_inactive=inactive,
            )  # fmt: skip
            for params in (PageParams(1, 2), PageParams(9, 2)):
                products, total = await service.list_products(session, filters, params)
                orm = Page[ProductPublic].of(
                    [ProductPublic.model_validate(p) for p in products], total, params
                )
                rows = await service.list_products_json(session, filters, params)
                assert rows == orm.model_dump_json().encode(), (filters, params)


async def test_an_autocommit_read_leaves_the_pooled_connection_transactional(
    client: httpx.AsyncClient, admin: Account, app: FastAPI
) -> None:
    """A public read in autocommit must not hand autocommit on to the next user of its
    connection: the next request's writes must still be one transaction."""
    from sqlalchemy import text

    await create_product(client, admin, sku="AC-1")
    for _ in range(3):
        assert (await client.get(f"{API}/products?q=AC-")).json()["total"] == 1
    engine = app.state.sessionmaker.kw["bind"]
    for _ in range(engine.pool.size() + 2):  # every pooled connection at least once
        async with app.state.sessionmaker() as session:
            await session.execute(text("SELECT 1"))
            raw = await (await session.connection()).get_raw_connection()
            if engine.dialect.name == "postgresql":
                assert raw.driver_connection.is_in_transaction()
            await session.rollback()
