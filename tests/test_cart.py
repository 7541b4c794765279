"""Cart routes: live prices, quantities 1..999, unknown or inactive products 404, no stock check."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from sellerdesk.models import Product
from tests.orders_factories import ADDRESS, make_product, make_user, put_in_cart, stock_of


async def test_an_empty_cart(app: FastAPI, client: httpx.AsyncClient) -> None:
    buyer = await make_user(app)
    response = await client.get("/api/v1/cart", headers=buyer.headers)
    assert response.status_code == 200
    assert response.json() == {"items": [], "subtotal": "0.00", "currency": "usd"}


async def test_put_sets_the_quantity_and_the_cart_shows_live_prices(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    buyer = await make_user(app)
    pen = await make_product(app, price="2.50", name="Pen")
    ink = await make_product(app, price="10.00", name="Ink")
    first = await client.put(
        f"/api/v1/cart/items/{pen}", json={"quantity": 3}, headers=buyer.headers
    )
    assert first.status_code == 200
    assert first.json()["items"] == [
        {
            "product_id": pen,
            "name": "Pen",
            "unit_price": "2.50",
            "quantity": 3,
            "line_total": "7.50",
            "available": True,
        }
    ]
    await put_in_cart(client, buyer, ink, 1)
    await put_in_cart(client, buyer, pen, 4)  # sets, not adds
    async with app.state.sessionmaker() as session:
        await session.execute(
            update(Product).where(Product.id == ink).values(price=Decimal("12.00"))
        )
        await session.commit()
    cart = (await client.get("/api/v1/cart", headers=buyer.headers)).json()
    assert [(i["product_id"], i["quantity"], i["line_total"]) for i in cart["items"]] == [
        (pen, 4, "10.00"),
        (ink, 1, "12.00"),
    ]
    assert cart["subtotal"] == "22.00"


async def test_putting_more_than_the_stock_is_allowed(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    buyer = await make_user(app)
    product = await make_product(app, stock=0)
    await put_in_cart(client, buyer, product, 999)


@pytest.mark.parametrize("quantity", [0, -1, 1000, "many", 1.5, None])
async def test_quantity_outside_1_to_999_is_422(
    app: FastAPI, client: httpx.AsyncClient, quantity: object
) -> None:
    buyer = await make_user(app)
    product = await make_product(app)
    response = await client.put(
        f"/api/v1/cart/items/{product}", json={"quantity": quantity}, headers=buyer.headers
    )
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"


async def test_unknown_or_inactive_product_is_404(app: FastAPI, client: httpx.AsyncClient) -> None:
    buyer = await make_user(app)
    hidden = await make_product(app, active=False)
    for product_id in (hidden, 987654321):
        response = await client.put(
            f"/api/v1/cart/items/{product_id}", json={"quantity": 1}, headers=buyer.headers
        )
        assert response.status_code == 404
        assert response.json()["error"] == "not_found"
    too_big = await client.put(
        f"/api/v1/cart/items/{2**63}", json={"quantity": 1}, headers=buyer.headers
    )
    assert too_big.status_code in (404, 422)


async def test_a_product_withdrawn_after_carting_is_shown_unavailable(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    buyer = await make_user(app)
    product = await make_product(app, price="5.00")
    await put_in_cart(client, buyer, product, 2)
    async with app.state.sessionmaker() as session:
        await session.execute(update(Product).where(Product.id == product).values(is_active=False))
        await session.commit()
    cart = (await client.get("/api/v1/cart", headers=buyer.headers)).json()
    assert cart["items"][0]["available"] is False
    assert cart["subtotal"] == "0.00"


async def test_a_withdrawn_products_line_cannot_be_changed_and_keeps_its_quantity(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """The on-sale check and the upsert are one statement: a withdrawn product's line is
    neither updated nor re-created, and the user's other lines and other users' are untouched."""
    buyer, other = await make_user(app), await make_user(app)
    product, kept = await make_product(app, price="5.00"), await make_product(app)
    await put_in_cart(client, buyer, product, 2)
    await put_in_cart(client, buyer, kept, 1)
    await put_in_cart(client, other, product, 7)
    async with app.state.sessionmaker() as session:
        await session.execute(update(Product).where(Product.id == product).values(is_active=False))
        await session.commit()
    refused = await client.put(
        f"/api/v1/cart/items/{product}", json={"quantity": 5}, headers=buyer.headers
    )
    assert refused.status_code == 404 and refused.json()["error"] == "not_found"
    cart = (await client.get("/api/v1/cart", headers=buyer.headers)).json()
    assert [(i["product_id"], i["quantity"]) for i in cart["items"]] == [(product, 2), (kept, 1)]
    others = (await client.get("/api/v1/cart", headers=other.headers)).json()
    assert [(i["product_id"], i["quantity"]) for i in others["items"]] == [(product, 7)]


async def test_delete_an_item_and_empty_the_cart(app: FastAPI, client: httpx.AsyncClient) -> None:
    buyer = await make_user(app)
    a, b = await make_product(app), await make_product(app)
    await put_in_cart(client, buyer, a)
    await put_in_cart(client, buyer, b)
    removed = await client.delete(f"/api/v1/cart/items/{a}", headers=buyer.headers)
    assert removed.status_code == 204
    assert removed.content == b""
    items = (await client.get("/api/v1/cart", headers=buyer.headers)).json()["items"]
    assert [i["product_id"] for i in items] == [b]
    again = await client.delete(f"/api/v1/cart/items/{a}", headers=buyer.headers)
    assert again.status_code == 204
    emptied = await client.delete("/api/v1/cart", headers=buyer.headers)
    assert emptied.status_code == 204
    assert (await client.get("/api/v1/cart", headers=buyer.headers)).json()["items"] == []


async def test_carts_are_private(app: FastAPI, client: httpx.AsyncClient) -> None:
    alice, bob = await make_user(app), await make_user(app)
    product = await make_product(app)
    await put_in_cart(client, alice, product)
    assert (await client.get("/api/v1/cart", headers=bob.headers)).json()["items"] == []


async def test_cart_needs_a_login(client: httpx.AsyncClient) -> None:
    for method, path in (
        ("GET", "/api/v1/cart"),
        ("PUT", "/api/v1/cart/items/1"),
        ("DELETE", "/api/v1/cart/items/1"),
        ("DELETE", "/api/v1/cart"),
    ):
        response = await client.request(method, path, json={"quantity": 1})
        assert response.status_code == 401, (method, path)
        assert response.json()["error"] == "not_authenticated"


async def test_extra_fields_are_refused(app: FastAPI, client: httpx.AsyncClient) -> None:
    buyer = await make_user(app)
    product = await make_product(app)
    response = await client.put(
        f"/api/v1/cart/items/{product}",
        json={"quantity": 1, "unit_price": "0.01"},
        headers=buyer.headers,
    )
    assert response.status_code == 422


async def test_a_cart_of_the_dearest_product_renders_and_its_checkout_is_422(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    buyer = await make_user(app)
    product = await make_product(app, price="9999999999.99", stock=999)
    await put_in_cart(client, buyer, product, 999)
    cart = await client.get("/api/v1/cart", headers=buyer.headers)
    assert cart.status_code == 200
    assert cart.json()["subtotal"] == "9989999999990.01"
    response = await client.post(
        "/api/v1/orders", json={"shipping_address": ADDRESS}, headers=buyer.headers
    )
    assert response.status_code == 422
    assert await stock_of(app, product) == 999
