"""Products: admin create/patch/delete, validation, visibility and stock movements."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import insert, select

from sellerdesk.catalog.identifiers import normalize_asin
from sellerdesk.kit.identifiers import isbn10_check_ok
from sellerdesk.models import Order, OrderItem, Product, StockMovement
from tests.catalog_factories import create_category, create_product
from tests.factories import Account, register, register_admin

API = "/api/v1"
PRODUCT_FIELDS = {
    "id", "name", "description", "price", "currency", "stock_quantity", "in_stock",
    "category_id", "sku", "asin", "images", "is_active", "created_at", "updated_at",
    "low_stock_threshold",
}  # fmt: skip


@pytest.fixture
async def admin(client: httpx.AsyncClient, app: FastAPI) -> Account:
    return await register_admin(client, app)


async def _movements(app: FastAPI, product_id: int) -> list[tuple[int, int, str]]:
    async with app.state.sessionmaker() as session:
        rows = await session.execute(
            select(StockMovement.delta, StockMovement.stock_after, StockMovement.reason)
            .where(StockMovement.product_id == product_id)
            .order_by(StockMovement.id)
        )
        return [(d, s, r) for d, s, r in rows.all()]


async def test_create_product_returns_201_with_the_contract_fields(
    client: httpx.AsyncClient, app: FastAPI, admin: Account
) -> None:
    category = await create_category(client, admin)
    created = await client.post(
        f"{API}/products",
        json={
            "name": "Desk lamp",
            "description": "Warm light",
            "price": "12.5",
            "stock_quantity": 7,
            "category_id": category["id"],
            "sku": "LAMP-1",
            "asin": " b08n5wrwnw ",
            "images": ["https://img.example.com/lamp.jpg", "http://cdn.example.com/a.png"],
            "low_stock_threshold": 2,
        },
        headers=admin.headers,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert set(body) == PRODUCT_FIELDS
    assert body["price"] == "12.50"
    assert body["currency"] == "usd"
    assert body["asin"] == "B08N5WRWNW"
    assert body["in_stock"] is True and body["is_active"] is True
    assert body["low_stock_threshold"] == 2
    assert await _movements(app, body["id"]) == [(7, 7, "initial")]
    public = await client.get(f"{API}/products/{body['id']}")
    assert public.status_code == 200 and public.json() == body


async def test_product_without_stock_records_no_movement_and_is_not_in_stock(
    client: httpx.AsyncClient, app: FastAPI, admin: Account
) -> None:
    product = await create_product(client, admin, currency="EUR")
    assert product["stock_quantity"] == 0 and product["in_stock"] is False
    assert product["currency"] == "eur"
    assert await _movements(app, product["id"]) == []


@pytest.mark.parametrize(
    ("price", "expected"),
    [("12.5", "12.50"), ("0", "0.00"), (3, "3.00"), (19.99, "19.99"), ("1e1", "10.00")],
)
async def test_price_is_stored_and_shown_with_two_places(
    client: httpx.AsyncClient, admin: Account, price: object, expected: str
) -> None:
    product = await create_product(client, admin, price=price)
    assert product["price"] == expected


@pytest.mark.parametrize(
    "price", ["1.234", "NaN", "Infinity", "-1", "-0.01", "abc", "", True, None]
)
async def test_bad_prices_are_422(client: httpx.AsyncClient, admin: Account, price: object) -> None:
    response = await client.post(
        f"{API}/products", json={"name": "x", "sku": "X-1", "price": price}, headers=admin.headers
    )
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"


@pytest.mark.parametrize(
    "fields",
    [
        {"images": ["ftp://example.com/a.png"]},
        {"images": ["javascript:alert(1)"]},
        {"images": ["file:///etc/passwd"]},
        {"images": ["data:image/png;base64,AAAA"]},
        {"images": ["//example.com/a.png"]},
        {"images": ["https://"]},
        {"images": ["https://exa mple.com/a.png"]},
        {"images": "https://example.com/a.png"},
        {"asin": "B0123"},
        {"asin": "X012345678"},
        {"asin": "0306406153"},
        {"stock_quantity": -1},
        {"stock_quantity": 2**31},
        {"low_stock_threshold": -1},
        {"currency": "dollars"},
        {"name": ""},
        {"name": "a\x00b"},
        {"sku": "   "},
        {"category_id": 0},
        {"category_id": 2**63},
        {"is_superuser": True},
    ],
)
async def test_invalid_product_input_is_422(
    client: httpx.AsyncClient, admin: Account, fields: dict[str, object]
) -> None:
    body = {"name": "x", "sku": "VALID-1", "price": "1.00", **fields}
    response = await client.post(f"{API}/products", json=body, headers=admin.headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_error"


def test_asin_rule_accepts_b0_asins_and_isbn10_with_a_valid_check_digit() -> None:
    assert normalize_asin(" b0abcdefgh ") == "B0ABCDEFGH"
    assert normalize_asin("0306406152") == "0306406152"
    assert normalize_asin("080442957x") == "080442957X"
    assert isbn10_check_ok("0306406152") and not isbn10_check_ok("0306406153")
    for bad in ("B1ABCDEFGH", "B0ABCDEFG", "B0ABCDEFGHI", "030640615", "03064061XX", "B0ABCDEFG!"):
        with pytest.raises(ValueError):
            normalize_asin(bad)


async def test_unknown_category_is_422(client: httpx.AsyncClient, admin: Account) -> None:
    body = {"name": "x", "sku": "C-1", "price": "1.00", "category_id": 999999}
    response = await client.post(f"{API}/products", json=body, headers=admin.headers)
    assert response.status_code == 422 and response.json()["error"] == "validation_error"


async def test_duplicate_sku_is_409_conflict(client: httpx.AsyncClient, admin: Account) -> None:
    await create_product(client, admin, sku="DUP-1")
    again = await client.post(
        f"{API}/products", json={"name": "x", "sku": "DUP-1", "price": "1"}, headers=admin.headers
    )
    assert again.status_code == 409 and again.json()["error"] == "conflict"


async def test_concurrent_creates_of_one_sku_make_one_product(
    client: httpx.AsyncClient, admin: Account
) -> None:
    body = {"name": "x", "sku": "RACE-1", "price": "1"}
    responses = await asyncio.gather(
        *(client.post(f"{API}/products", json=body, headers=admin.headers) for _ in range(8))
    )
    assert sorted(r.status_code for r in responses) == [201] + [409] * 7


async def test_product_writes_are_admin_only(client: httpx.AsyncClient, admin: Account) -> None:
    user = await register(client)
    body = {"name": "x", "sku": "A-1", "price": "1"}
    assert (await client.post(f"{API}/products", json=body)).status_code == 401
    assert (
        await client.post(f"{API}/products", json=body, headers=user.headers)
    ).status_code == 403
    product = await create_product(client, admin)
    path = f"{API}/products/{product['id']}"
    assert (await client.patch(path, json={"name": "y"}, headers=user.headers)).status_code == 403
    assert (await client.delete(path, headers=user.headers)).status_code == 403
    files = {"file": ("p.csv", b"sku,name,price,stock_quantity\n", "text/csv")}
    imported = await client.post(f"{API}/products/import", files=files, headers=user.headers)
    assert imported.status_code == 403


async def test_patch_is_partial_and_returns_the_updated_product(
    client: httpx.AsyncClient, app: FastAPI, admin: Account
) -> None:
    product = await create_product(client, admin, stock_quantity=10, description="old")
    path = f"{API}/products/{product['id']}"
    patched = await client.patch(
        path, json={"price": "99.9", "stock_quantity": 4, "asin": None}, headers=admin.headers
    )
    assert patched.status_code == 200
    body = patched.json()
    assert body["price"] == "99.90" and body["stock_quantity"] == 4
    assert body["description"] == "old" and body["name"] == product["name"]
    assert body["updated_at"] >= product["updated_at"]
    assert await _movements(app, product["id"]) == [(10, 10, "initial"), (-6, 4, "adjustment")]
    for bad in ({"price": None}, {"sku": None}, {"price": "1.001"}, {"images": ["ftp://x/y"]}):
        assert (await client.patch(path, json=bad, headers=admin.headers)).status_code == 422
    assert (
        await client.patch(f"{API}/products/999999", json={"name": "x"}, headers=admin.headers)
    ).status_code == 404


async def test_patch_to_a_taken_sku_is_409(client: httpx.AsyncClient, admin: Account) -> None:
    await create_product(client, admin, sku="TAKEN")
    other = await create_product(client, admin)
    clash = await client.patch(
        f"{API}/products/{other['id']}", json={"sku": "TAKEN"}, headers=admin.headers
    )
    assert clash.status_code == 409 and clash.json()["error"] == "conflict"
    same = await client.patch(
        f"{API}/products/{other['id']}", json={"sku": other["sku"]}, headers=admin.headers
    )
    assert same.status_code == 200


async def test_inactive_product_is_404_to_the_public_and_visible_to_admins(
    client: httpx.AsyncClient, admin: Account
) -> None:
    product = await create_product(client, admin, is_active=False)
    user = await register(client)
    for headers in ({}, user.headers):
        hidden = await client.get(f"{API}/products/{product['id']}", headers=headers)
        assert hidden.status_code == 404 and hidden.json()["error"] == "not_found"
        listed = await client.get(f"{API}/products", headers=headers)
        assert listed.json()["total"] == 0
    seen = await client.get(f"{API}/products/{product['id']}", headers=admin.headers)
    assert seen.status_code == 200 and seen.json()["is_active"] is False
    listed = await client.get(f"{API}/products?include_inactive=true", headers=admin.headers)
    assert [p["id"] for p in listed.json()["items"]] == [product["id"]]
    ignored = await client.get(f"{API}/products?include_inactive=true", headers=user.headers)
    assert ignored.json()["total"] == 0


async def test_bad_ids_in_path_are_404_or_422_never_500(client: httpx.AsyncClient) -> None:
    for raw in ("0", "-1", str(2**63), "abc", "1.5"):
        response = await client.get(f"{API}/products/{raw}")
        assert response.status_code in (404, 422), raw


async def test_delete_without_orders_removes_the_product(
    client: httpx.AsyncClient, app: FastAPI, admin: Account
) -> None:
    product = await create_product(client, admin, stock_quantity=3)
    deleted = await client.delete(f"{API}/products/{product['id']}", headers=admin.headers)
    assert deleted.status_code == 204
    async with app.state.sessionmaker() as session:
        assert await session.get(Product, product["id"]) is None
    assert (
        await client.get(f"{API}/products/{product['id']}", headers=admin.headers)
    ).status_code == 404
    again = await client.delete(f"{API}/products/{product['id']}", headers=admin.headers)
    assert again.status_code == 404


async def test_delete_of_an_ordered_product_only_deactivates_it(
    client: httpx.AsyncClient, app: FastAPI, admin: Account
) -> None:
    product = await create_product(client, admin, stock_quantity=3)
    async with app.state.sessionmaker() as session:
        order_id = await session.scalar(
            insert(Order)
            .values(
                user_id=admin.id,
                total_amount="10.00",
                currency="usd",
                shipping_address={"name": "A"},
            )
            .returning(Order.id)
        )
        await session.execute(
            insert(OrderItem).values(
                order_id=order_id,
                product_id=product["id"],
                name=product["name"],
                sku=product["sku"],
                quantity=1,
                unit_price="10.00",
                line_total="10.00",
            )
        )
        await session.commit()
    deleted = await client.delete(f"{API}/products/{product['id']}", headers=admin.headers)
    assert deleted.status_code == 204
    assert (await client.get(f"{API}/products/{product['id']}")).status_code == 404
    kept = await client.get(f"{API}/products/{product['id']}", headers=admin.headers)
    assert kept.status_code == 200 and kept.json()["is_active"] is False


async def test_openapi_documents_the_catalog(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    paths = schema["paths"]
    assert {"get", "post"} <= set(paths["/api/v1/products"])
    assert {"get", "patch", "delete"} <= set(paths["/api/v1/products/{product_id}"])
    assert (
        "multipart/form-data" in paths["/api/v1/products/import"]["post"]["requestBody"]["content"]
    )
    listing = paths["/api/v1/products"]["get"]["responses"]["200"]["content"]["application/json"]
    assert "Page" in listing["schema"]["$ref"]


async def test_concurrent_stock_patches_keep_movements_equal_to_the_stock(
    client: httpx.AsyncClient, app: FastAPI, admin: Account
) -> None:
    product = await create_product(client, admin, stock_quantity=5)
    path = f"{API}/products/{product['id']}"
    responses = await asyncio.gather(
        *(
            client.patch(path, json={"stock_quantity": level}, headers=admin.headers)
            for level in range(10, 30)
        )
    )
    assert all(r.status_code == 200 for r in responses)
    final = (await client.get(path)).json()["stock_quantity"]
    movements = await _movements(app, product["id"])
    assert sum(delta for delta, _, _ in movements) == final
    assert movements[-1][1] == final
