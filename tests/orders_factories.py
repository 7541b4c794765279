"""Fast factories for the cart/order/inventory tests: rows written directly, tokens minted."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select

from sellerdesk.auth.tokens import create_access_token
from sellerdesk.models import Product, StockMovement, User

_seq = itertools.count(1)

ADDRESS = {
    "name": "Ada Lovelace",
    "line1": "12 St James's Square",
    "city": "London",
    "postal_code": "SW1Y 4JH",
    "country": "GB",
}


@dataclass
class Buyer:
    id: int
    headers: dict[str, str]


async def make_users(app: FastAPI, count: int, *, admin: bool = False) -> list[Buyer]:
    """`count` active users with access tokens, inserted in one transaction."""
    async with app.state.sessionmaker() as session:
        users = [
            User(email=f"buyer{next(_seq)}-{id(app)}@example.com", is_superuser=admin)
            for _ in range(count)
        ]
        session.add_all(users)
        await session.commit()
    settings = app.state.settings
    return [
        Buyer(u.id, {"Authorization": f"Bearer {create_access_token(settings, u.id)}"})
        for u in users
    ]


async def make_user(app: FastAPI, *, admin: bool = False) -> Buyer:
    return (await make_users(app, 1, admin=admin))[0]


async def make_product(
    app: FastAPI,
    *,
    stock: int = 10,
    price: str = "10.00",
    threshold: int = 2,
    active: bool = True,
    name: str | None = None,
) -> int:
    n = next(_seq)
    async with app.state.sessionmaker() as session:
        product = Product(
            name=name or f"Product {n}",
            price=Decimal(price),
            currency="usd",
            stock_quantity=stock,
            low_stock_threshold=threshold,
            sku=f"SKU-{n}-{id(app)}",
            images=[],
            is_active=active,
        )
        session.add(product)
        await session.commit()
        return product.id


async def stock_of(app: FastAPI, product_id: int) -> int:
    async with app.state.sessionmaker() as session:
        value = await session.scalar(select(Product.stock_quantity).where(Product.id == product_id))
        assert value is not None
        return value


async def movements_of(app: FastAPI, product_id: int, reason: str | None = None) -> int:
    async with app.state.sessionmaker() as session:
        stmt = select(func.count()).where(StockMovement.product_id == product_id)
        if reason is not None:
            stmt = stmt.where(StockMovement.reason == reason)
        return (await session.scalar(stmt)) or 0


async def put_in_cart(
    client: httpx.AsyncClient, buyer: Buyer, product_id: int, quantity: int = 1
) -> None:
    response = await client.put(
        f"/api/v1/cart/items/{product_id}", json={"quantity": quantity}, headers=buyer.headers
    )
    assert response.status_code == 200, response.text


async def checkout(client: httpx.AsyncClient, buyer: Buyer, **extra_headers: str) -> httpx.Response:
    return await client.post(
        "/api/v1/orders",
        json={"shipping_address": ADDRESS},
        headers={**buyer.headers, **extra_headers},
    )


async def place_order(
    client: httpx.AsyncClient, buyer: Buyer, product_id: int, quantity: int = 1
) -> dict[str, Any]:
    await put_in_cart(client, buyer, product_id, quantity)
    response = await checkout(client, buyer)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body
