"""Checkout under real concurrency: never oversell, never deadlock, never a 5xx.

Requests go through one httpx client to the app with `asyncio.gather`, so each runs on its own
database connection. SQLite serialises writers; the same numbers still pass there.
"""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select

from sellerdesk.models import Order
from sellerdesk.orders.service import expire_unpaid_orders
from tests.orders_factories import (
    checkout,
    make_product,
    make_user,
    make_users,
    movements_of,
    place_order,
    put_in_cart,
    stock_of,
)

BUYERS = 200


async def test_checkout_of_5_units_by_many_buyers_sells_exactly_5(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    product = await make_product(app, stock=5)
    buyers = await make_users(app, BUYERS)
    await asyncio.gather(*(put_in_cart(client, b, product) for b in buyers))
    responses = await asyncio.gather(*(checkout(client, b) for b in buyers))
    statuses = [r.status_code for r in responses]
    assert statuses.count(201) == 5
    assert statuses.count(409) == BUYERS - 5, sorted(set(statuses))
    for response in responses:
        if response.status_code == 409:
            assert response.json()["error"] == "insufficient_stock"
            assert response.json()["details"] == [
                {"product_id": product, "requested": 1, "available": 0}
            ]
    assert await stock_of(app, product) == 0
    assert await movements_of(app, product, "order") == 5
    async with app.state.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Order)) == 5


async def test_carts_holding_two_products_in_opposite_order_never_deadlock(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    rounds = 50
    first, second = await make_product(app, stock=1000), await make_product(app, stock=1000)
    forward = await make_users(app, rounds)
    backward = await make_users(app, rounds)
    for buyer in forward:
        await put_in_cart(client, buyer, first, 2)
        await put_in_cart(client, buyer, second, 1)
    for buyer in backward:
        await put_in_cart(client, buyer, second, 3)
        await put_in_cart(client, buyer, first, 1)
    responses = await asyncio.gather(*(checkout(client, b) for b in forward + backward))
    assert [r.status_code for r in responses] == [201] * (2 * rounds), {
        r.status_code: r.text for r in responses if r.status_code != 201
    }
    assert await stock_of(app, first) == 1000 - 3 * rounds
    assert await stock_of(app, second) == 1000 - 4 * rounds
    assert await movements_of(app, first, "order") == 2 * rounds


async def test_two_checkouts_of_one_cart_at_once_make_one_order(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    buyer = await make_user(app)
    product = await make_product(app, stock=10)
    await put_in_cart(client, buyer, product, 4)
    responses = await asyncio.gather(*(checkout(client, buyer) for _ in range(5)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201, 422, 422, 422, 422]  # the others find the cart already empty
    assert await stock_of(app, product) == 6


async def test_concurrent_cancels_return_the_stock_once(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    buyer = await make_user(app)
    product = await make_product(app, stock=10)
    order = await place_order(client, buyer, product, 4)
    responses = await asyncio.gather(
        *(
            client.post(f"/api/v1/orders/{order['id']}/cancel", headers=buyer.headers)
            for _ in range(10)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [409] * 9
    assert await stock_of(app, product) == 10
    assert await movements_of(app, product, "cancel") == 1


async def test_two_expiry_jobs_at_once_cancel_each_order_once(
    make_app: object, app: FastAPI, client: httpx.AsyncClient
) -> None:
    product = await make_product(app, stock=20)
    buyers = await make_users(app, 5)
    for buyer in buyers:
        await place_order(client, buyer, product, 2)
    settings = app.state.settings.model_copy(update={"ORDER_PAYMENT_TIMEOUT_MINUTES": 0})
    counts = await asyncio.gather(
        expire_unpaid_orders(app.state.sessionmaker, settings, app.state.cache),
        expire_unpaid_orders(app.state.sessionmaker, settings, app.state.cache),
    )
    assert sum(counts) == 5
    assert await stock_of(app, product) == 20
    assert await movements_of(app, product, "expired") == 5


async def test_concurrent_adjustments_never_take_stock_below_zero(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await make_user(app, admin=True)
    product = await make_product(app, stock=10)
    responses = await asyncio.gather(
        *(
            client.post(
                f"/api/v1/admin/inventory/{product}/adjust",
                json={"delta": -1, "reason": "damaged"},
                headers=admin.headers,
            )
            for _ in range(25)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 10 + [409] * 15
    assert await stock_of(app, product) == 0
    assert await movements_of(app, product, "adjustment") == 10
