"""Checkout, the caller's orders, cancel, the admin view and status moves, and order expiry."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from sellerdesk.models import CartItem, DomainEvent, Order, Product
from sellerdesk.models.base import utcnow
from sellerdesk.orders import service
from tests.conftest import AppFactory
from tests.orders_factories import (
    ADDRESS,
    Buyer,
    checkout,
    make_product,
    make_user,
    make_users,
    movements_of,
    place_order,
    put_in_cart,
    stock_of,
)


async def _pay(app: FastAPI, order_id: int) -> None:
    async with app.state.sessionmaker() as session:
        await service.apply_payment_succeeded(session, order_id)
        await session.commit()


async def _patch(
    client: httpx.AsyncClient, admin: Buyer, order_id: int, status: str
) -> httpx.Response:
    return await client.patch(
        f"/api/v1/admin/orders/{order_id}", json={"status": status}, headers=admin.headers
    )


# --------------------------------------------------------------------------- checkout


async def test_checkout_creates_a_pending_order_with_snapshots_and_empties_the_cart(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    buyer = await make_user(app)
    pen = await make_product(app, price="2.50", stock=10, name="Pen")
    ink = await make_product(app, price="10.00", stock=3, name="Ink")
    await put_in_cart(client, buyer, ink, 3)
    await put_in_cart(client, buyer, pen, 4)
    billing = {**ADDRESS, "line2": "Flat 1", "state": "Greater London"}
    response = await client.post(
        "/api/v1/orders",
        json={"shipping_address": ADDRESS, "billing_address": billing},
        headers=buyer.headers,
    )
    assert response.status_code == 201, response.text
    order = response.json()
    assert order["status"] == "pending"
    assert order["payment_status"] == "pending"
    assert order["user_id"] == buyer.id
    assert order["total_amount"] == "40.00"
    assert order["currency"] == "usd"
    assert order["payment_intent_id"] is None
    assert order["shipping_address"] == {**ADDRESS, "line2": None, "state": None}
    assert order["billing_address"] == billing
    assert [
        (i["product_id"], i["quantity"], i["unit_price"], i["line_total"]) for i in order["items"]
    ] == [
        (pen, 4, "2.50", "10.00"),
        (ink, 3, "10.00", "30.00"),
    ]
    assert order["items"][0]["name"] == "Pen"
    assert order["items"][0]["sku"]
    assert {"created_at", "updated_at"} <= order.keys()
    assert await stock_of(app, pen) == 6
    assert await stock_of(app, ink) == 0
    assert await movements_of(app, pen, "order") == 1
    assert (await client.get("/api/v1/cart", headers=buyer.headers)).json()["items"] == []
    # The snapshot does not follow later price changes.
    await client.post(
        f"/api/v1/admin/inventory/{pen}/adjust",
        json={"delta": 1, "reason": "found one"},
        headers=(await make_user(app, admin=True)).headers,
    )
    detail = (await client.get(f"/api/v1/orders/{order['id']}", headers=buyer.headers)).json()
    assert detail == order


async def test_every_short_line_is_reported_and_nothing_is_taken(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    buyer = await make_user(app)
    plenty = await make_product(app, stock=50)
    few = await make_product(app, stock=2)
    none = await make_product(app, stock=0)
    for product, quantity in ((plenty, 5), (few, 3), (none, 1)):
        await put_in_cart(client, buyer, product, quantity)
    response = await checkout(client, buyer)
    assert response.status_code == 409
    body = response.json()
    assert body["error"] == "insufficient_stock"
    assert body["details"] == [
        {"product_id": few, "requested": 3, "available": 2},
        {"product_id": none, "requested": 1, "available": 0},
    ]
    assert [await stock_of(app, p) for p in (plenty, few, none)] == [50, 2, 0]
    assert await movements_of(app, plenty) == 0
    assert len((await client.get("/api/v1/cart", headers=buyer.headers)).json()["items"]) == 3


async def test_a_withdrawn_product_in_the_cart_is_short(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    buyer = await make_user(app)
    product = await make_product(app, stock=9)
    await put_in_cart(client, buyer, product, 2)
    async with app.state.sessionmaker() as session:
        await session.execute(update(Product).where(Product.id == product).values(is_active=False))
        await session.commit()
    response = await checkout(client, buyer)
    assert response.status_code == 409
    assert response.json()["details"] == [{"product_id": product, "requested": 2, "available": 0}]


async def test_checkout_of_an_empty_cart_is_422(app: FastAPI, client: httpx.AsyncClient) -> None:
    buyer = await make_user(app)
    response = await checkout(client, buyer)
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"


@pytest.mark.parametrize(
    "address",
    [
        {**ADDRESS, "country": "XX"},
        {**ADDRESS, "country": "GBR"},
        {k: v for k, v in ADDRESS.items() if k != "city"},
        {**ADDRESS, "name": ""},
        {**ADDRESS, "line1": "a\x00b"},
        {**ADDRESS, "phone": "123"},
        "12 Main St",
    ],
)
async def test_a_bad_address_is_422(app: FastAPI, client: httpx.AsyncClient, address: Any) -> None:
    buyer = await make_user(app)
    product = await make_product(app)
    await put_in_cart(client, buyer, product)
    response = await client.post(
        "/api/v1/orders", json={"shipping_address": address}, headers=buyer.headers
    )
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"
    assert await stock_of(app, product) == 10


async def test_a_lower_case_country_is_accepted_as_upper_case(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    buyer = await make_user(app)
    await put_in_cart(client, buyer, await make_product(app))
    response = await client.post(
        "/api/v1/orders",
        json={"shipping_address": {**ADDRESS, "country": "de"}},
        headers=buyer.headers,
    )
    assert response.status_code == 201
    assert response.json()["shipping_address"]["country"] == "DE"


async def test_checkout_crossing_the_threshold_records_a_low_stock_event(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    buyer = await make_user(app)
    product = await make_product(app, stock=5, threshold=2)
    await place_order(client, buyer, product, 3)
    async with app.state.sessionmaker() as session:
        events = list(
            await session.scalars(select(DomainEvent).where(DomainEvent.kind == "low_stock"))
        )
    shown = (await client.get(f"/api/v1/products/{product}")).json()
    assert [e.payload for e in events] == [
        {
            "product_id": product,
            "sku": shown["sku"],
            "name": shown["name"],
            "stock": 2,
            "threshold": 2,
        }
    ]


async def test_checkout_needs_a_login(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/orders", json={"shipping_address": ADDRESS})
    assert response.status_code == 401


# --------------------------------------------------------------------------- reading


async def test_orders_are_listed_newest_first_and_paginated(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    buyer, other = await make_user(app), await make_user(app)
    product = await make_product(app, stock=100)
    ids = [(await place_order(client, buyer, product))["id"] for _ in range(3)]
    await place_order(client, other, product)
    page = (await client.get("/api/v1/orders?page_size=2", headers=buyer.headers)).json()
    assert [o["id"] for o in page["items"]] == [ids[2], ids[1]]
    assert (page["total"], page["page"], page["page_size"]) == (3, 1, 2)
    second = (await client.get("/api/v1/orders?page=2&page_size=2", headers=buyer.headers)).json()
    assert [o["id"] for o in second["items"]] == [ids[0]]
    past = (await client.get("/api/v1/orders?page=9", headers=buyer.headers)).json()
    assert past["items"] == [] and past["total"] == 3


async def test_another_users_order_is_404(app: FastAPI, client: httpx.AsyncClient) -> None:
    buyer, other = await make_user(app), await make_user(app)
    order = await place_order(client, buyer, await make_product(app))
    for path in (f"/api/v1/orders/{order['id']}", "/api/v1/orders/99999999"):
        response = await client.get(path, headers=other.headers)
        assert response.status_code == 404
        assert response.json()["error"] == "not_found"
    cancel = await client.post(f"/api/v1/orders/{order['id']}/cancel", headers=other.headers)
    assert cancel.status_code == 404
    assert (await client.get("/api/v1/orders/0", headers=other.headers)).status_code in (404, 422)


# --------------------------------------------------------------------------- cancel


async def test_owner_cancels_a_pending_order_and_the_stock_returns(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    buyer = await make_user(app)
    product = await make_product(app, stock=10)
    order = await place_order(client, buyer, product, 4)
    response = await client.post(f"/api/v1/orders/{order['id']}/cancel", headers=buyer.headers)
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert await stock_of(app, product) == 10
    assert await movements_of(app, product, "cancel") == 1
    again = await client.post(f"/api/v1/orders/{order['id']}/cancel", headers=buyer.headers)
    assert again.status_code == 409
    assert again.json()["error"] == "conflict"


async def test_an_admin_may_cancel_anyones_pending_order(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    buyer, admin = await make_user(app), await make_user(app, admin=True)
    product = await make_product(app, stock=5)
    order = await place_order(client, buyer, product, 5)
    response = await client.post(f"/api/v1/orders/{order['id']}/cancel", headers=admin.headers)
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert await stock_of(app, product) == 5


@pytest.mark.parametrize("reached", ["shipped", "delivered", "refunded"])
async def test_shipped_delivered_or_refunded_orders_cannot_be_cancelled(
    app: FastAPI, client: httpx.AsyncClient, reached: str
) -> None:
    buyer, admin = await make_user(app), await make_user(app, admin=True)
    product = await make_product(app, stock=5)
    order = await place_order(client, buyer, product, 2)
    await _pay(app, order["id"])
    if reached == "refunded":
        async with app.state.sessionmaker() as session:
            await service.apply_refund(session, order["id"], Decimal("20.00"), Decimal("20.00"))
            await session.commit()
    else:
        for status in ("shipped", "delivered")[: 1 if reached == "shipped" else 2]:
            assert (await _patch(client, admin, order["id"], status)).status_code == 200
    response = await client.post(f"/api/v1/orders/{order['id']}/cancel", headers=buyer.headers)
    assert response.status_code == 409
    assert response.json()["error"] == "conflict"
    assert await stock_of(app, product) == 3


# --------------------------------------------------------------------------- admin


async def test_admin_lists_every_order_with_a_status_filter(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await make_user(app, admin=True)
    product = await make_product(app, stock=50)
    a, b = await make_user(app), await make_user(app)
    first = await place_order(client, a, product)
    second = await place_order(client, b, product)
    await _pay(app, second["id"])
    every = (await client.get("/api/v1/admin/orders", headers=admin.headers)).json()
    assert [o["id"] for o in every["items"]] == [second["id"], first["id"]]
    paid = (await client.get("/api/v1/admin/orders?status=paid", headers=admin.headers)).json()
    assert [o["id"] for o in paid["items"]] == [second["id"]] and paid["total"] == 1
    bad = await client.get("/api/v1/admin/orders?status=lost", headers=admin.headers)
    assert bad.status_code == 422
    one = await client.get(f"/api/v1/admin/orders/{first['id']}", headers=admin.headers)
    assert one.json()["user_id"] == a.id


async def test_admin_routes_are_403_for_non_admins(app: FastAPI, client: httpx.AsyncClient) -> None:
    buyer = await make_user(app)
    order = await place_order(client, buyer, await make_product(app))
    assert (await client.get("/api/v1/admin/orders", headers=buyer.headers)).status_code == 403
    assert (await _patch(client, buyer, order["id"], "shipped")).status_code == 403
    assert (await client.get("/api/v1/admin/orders")).status_code == 401


async def test_admin_moves_a_paid_order_to_shipped_then_delivered(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    buyer, admin = await make_user(app), await make_user(app, admin=True)
    order = await place_order(client, buyer, await make_product(app))
    early = await _patch(client, admin, order["id"], "shipped")
    assert early.status_code == 409 and early.json()["error"] == "conflict"
    await _pay(app, order["id"])
    shipped = await _patch(client, admin, order["id"], "shipped")
    assert shipped.status_code == 200 and shipped.json()["status"] == "shipped"
    assert (await _patch(client, admin, order["id"], "shipped")).json()["status"] == "shipped"
    delivered = await _patch(client, admin, order["id"], "delivered")
    assert delivered.status_code == 200 and delivered.json()["status"] == "delivered"
    for illegal in ("shipped", "paid", "pending", "cancelled"):
        response = await _patch(client, admin, order["id"], illegal)
        assert response.status_code == 409, illegal


@pytest.mark.parametrize("target", ["paid", "refunded", "delivered"])
async def test_admin_cannot_pay_refund_or_skip_by_patch(
    app: FastAPI, client: httpx.AsyncClient, target: str
) -> None:
    buyer, admin = await make_user(app), await make_user(app, admin=True)
    order = await place_order(client, buyer, await make_product(app))
    response = await _patch(client, admin, order["id"], target)
    assert response.status_code == 409
    assert response.json()["details"] == {"status": "pending", "requested": target}


async def test_admin_patch_to_cancelled_cancels_a_pending_order(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    buyer, admin = await make_user(app), await make_user(app, admin=True)
    product = await make_product(app, stock=4)
    order = await place_order(client, buyer, product, 4)
    response = await _patch(client, admin, order["id"], "cancelled")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert await stock_of(app, product) == 4
    assert (await _patch(client, admin, 99999999, "shipped")).status_code == 404
    bad = await _patch(client, admin, order["id"], "teleported")
    assert bad.status_code == 422


# --------------------------------------------------------------------------- expiry


async def _age(app: FastAPI, order_id: int, minutes: int) -> None:
    async with app.state.sessionmaker() as session:
        await session.execute(
            update(Order)
            .where(Order.id == order_id)
            .values(created_at=utcnow() - timedelta(minutes=minutes))
        )
        await session.commit()


async def test_unpaid_orders_past_the_timeout_expire_and_return_their_stock(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    product = await make_product(app, stock=10)
    old, fresh, paid = await make_users(app, 3)
    old_order = await place_order(client, old, product, 2)
    fresh_order = await place_order(client, fresh, product, 3)
    paid_order = await place_order(client, paid, product, 1)
    await _pay(app, paid_order["id"])
    timeout = app.state.settings.ORDER_PAYMENT_TIMEOUT_MINUTES
    await _age(app, old_order["id"], timeout + 1)
    await _age(app, paid_order["id"], timeout + 1)
    expired = await service.expire_unpaid_orders(
        app.state.sessionmaker, app.state.settings, app.state.cache
    )
    assert expired == 1
    statuses = {
        o["id"]: o["status"]
        for o in (
            await client.get(
                "/api/v1/admin/orders", headers=(await make_user(app, admin=True)).headers
            )
        ).json()["items"]
    }
    assert statuses == {
        old_order["id"]: "cancelled",
        fresh_order["id"]: "pending",
        paid_order["id"]: "paid",
    }
    assert await stock_of(app, product) == 6
    assert await movements_of(app, product, "expired") == 1


async def test_the_in_process_scheduler_runs_the_expiry_job(
    make_app: AppFactory, app: FastAPI, client: httpx.AsyncClient
) -> None:
    product = await make_product(app, stock=3)
    buyer = await make_user(app)
    order = await place_order(client, buyer, product, 3)
    await _age(app, order["id"], 120)
    scheduled = await make_app(JOBS_ENABLED=True, JOBS_INTERVAL_SECONDS=1)
    assert scheduled.state.scheduler.running
    for _ in range(50):
        if await stock_of(app, product) == 3:
            break
        await asyncio.sleep(0.1)
    assert await stock_of(app, product) == 3
    async with app.state.sessionmaker() as session:
        assert (
            await session.scalar(select(Order.status).where(Order.id == order["id"])) == "cancelled"
        )
        assert (
            await session.scalar(select(CartItem.user_id).where(CartItem.user_id == buyer.id))
            is None
        )


async def test_shipping_records_carrier_and_tracking_number_on_the_order(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    buyer, admin = await make_user(app), await make_user(app, admin=True)
    order = await place_order(client, buyer, await make_product(app))
    assert (order["carrier"], order["tracking_number"]) == (None, None)
    await _pay(app, order["id"])
    early = await client.patch(
        f"/api/v1/admin/orders/{order['id']}",
        json={"status": "delivered", "carrier": "DHL"},
        headers=admin.headers,
    )
    assert early.status_code == 422 and early.json()["error"] == "validation_error"
    shipped = await client.patch(
        f"/api/v1/admin/orders/{order['id']}",
        json={"status": "shipped", "carrier": "DHL"},
        headers=admin.headers,
    )
    assert shipped.status_code == 200
    assert (shipped.json()["carrier"], shipped.json()["tracking_number"]) == ("DHL", None)
    added = await client.patch(
        f"/api/v1/admin/orders/{order['id']}",
        json={"status": "shipped", "tracking_number": "JD0146000034"},
        headers=admin.headers,
    )
    assert (added.json()["carrier"], added.json()["tracking_number"]) == ("DHL", "JD0146000034")
    seen = (await client.get(f"/api/v1/orders/{order['id']}", headers=buyer.headers)).json()
    assert (seen["status"], seen["carrier"], seen["tracking_number"]) == (
        "shipped",
        "DHL",
        "JD0146000034",
    )
