"""Admin inventory: adjustments (never below 0), movement history, low stock, cache purges."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from tests.orders_factories import make_product, make_user, place_order, stock_of


async def _adjust(
    client: httpx.AsyncClient, headers: dict[str, str], product_id: int, delta: object
) -> httpx.Response:
    return await client.post(
        f"/api/v1/admin/inventory/{product_id}/adjust",
        json={"delta": delta, "reason": "stock count"},
        headers=headers,
    )


async def test_adjust_adds_and_removes_stock_with_a_movement(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await make_user(app, admin=True)
    product = await make_product(app, stock=5, threshold=2)
    added = await _adjust(client, admin.headers, product, 7)
    assert added.status_code == 200
    assert added.json() == {"product_id": product, "stock_quantity": 12, "low_stock_threshold": 2}
    removed = await _adjust(client, admin.headers, product, -12)
    assert removed.json()["stock_quantity"] == 0
    history = (
        await client.get(f"/api/v1/admin/inventory/{product}/movements", headers=admin.headers)
    ).json()
    assert [(m["delta"], m["stock_after"], m["reason"]) for m in history["items"]] == [
        (-12, 0, "adjustment"),
        (7, 12, "adjustment"),
    ]
    assert history["items"][0]["note"] == "stock count"
    assert history["items"][0]["user_id"] == admin.id


async def test_adjusting_below_zero_is_409_and_changes_nothing(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await make_user(app, admin=True)
    product = await make_product(app, stock=3)
    response = await _adjust(client, admin.headers, product, -4)
    assert response.status_code == 409
    assert response.json()["error"] == "conflict"
    assert response.json()["details"]["available"] == 3
    assert await stock_of(app, product) == 3


@pytest.mark.parametrize("delta", [0, "x", 1.5, None, 10**10])
async def test_a_zero_or_malformed_delta_is_422(
    app: FastAPI, client: httpx.AsyncClient, delta: object
) -> None:
    admin = await make_user(app, admin=True)
    product = await make_product(app)
    response = await _adjust(client, admin.headers, product, delta)
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"


async def test_a_reason_is_required(app: FastAPI, client: httpx.AsyncClient) -> None:
    admin = await make_user(app, admin=True)
    product = await make_product(app)
    for body in ({"delta": 1}, {"delta": 1, "reason": ""}):
        response = await client.post(
            f"/api/v1/admin/inventory/{product}/adjust", json=body, headers=admin.headers
        )
        assert response.status_code == 422


async def test_unknown_product_is_404(app: FastAPI, client: httpx.AsyncClient) -> None:
    admin = await make_user(app, admin=True)
    assert (await _adjust(client, admin.headers, 99999999, 1)).status_code == 404
    movements = await client.get(
        "/api/v1/admin/inventory/99999999/movements", headers=admin.headers
    )
    assert movements.status_code == 404


async def test_movements_are_paginated_newest_first_and_include_orders(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin, buyer = await make_user(app, admin=True), await make_user(app)
    product = await make_product(app, stock=10)
    await _adjust(client, admin.headers, product, 5)
    order = await place_order(client, buyer, product, 4)
    await client.post(f"/api/v1/orders/{order['id']}/cancel", headers=buyer.headers)
    url = f"/api/v1/admin/inventory/{product}/movements?page_size=2"
    first = (await client.get(url, headers=admin.headers)).json()
    assert first["total"] == 3
    assert [(m["reason"], m["delta"], m["order_id"]) for m in first["items"]] == [
        ("cancel", 4, order["id"]),
        ("order", -4, order["id"]),
    ]
    assert first["items"][1]["user_id"] == buyer.id  # who placed the order
    second = (await client.get(url + "&page=2", headers=admin.headers)).json()
    assert [m["reason"] for m in second["items"]] == ["adjustment"]


async def test_low_stock_lists_active_products_at_or_below_their_threshold(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await make_user(app, admin=True)
    at = await make_product(app, stock=3, threshold=3)
    below = await make_product(app, stock=0, threshold=3)
    await make_product(app, stock=4, threshold=3)
    await make_product(app, stock=0, threshold=3, active=False)
    response = await client.get("/api/v1/admin/inventory/low-stock", headers=admin.headers)
    assert response.status_code == 200
    body = response.json()
    assert [p["id"] for p in body["items"]] == [below, at]
    assert body["total"] == 2
    assert body["items"][0]["stock_quantity"] == 0


async def test_inventory_routes_are_admin_only(app: FastAPI, client: httpx.AsyncClient) -> None:
    buyer = await make_user(app)
    product = await make_product(app)
    assert (await _adjust(client, buyer.headers, product, 1)).status_code == 403
    for path in (
        f"/api/v1/admin/inventory/{product}/movements",
        "/api/v1/admin/inventory/low-stock",
    ):
        assert (await client.get(path, headers=buyer.headers)).status_code == 403
        assert (await client.get(path)).status_code == 401


async def test_every_stock_change_purges_the_catalog_cache(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin, buyer = await make_user(app, admin=True), await make_user(app)
    product = await make_product(app, stock=10)
    cache = app.state.cache
    seen = [await cache.namespace("catalog")]
    await _adjust(client, admin.headers, product, 1)
    seen.append(await cache.namespace("catalog"))
    order = await place_order(client, buyer, product)
    seen.append(await cache.namespace("catalog"))
    await client.post(f"/api/v1/orders/{order['id']}/cancel", headers=buyer.headers)
    seen.append(await cache.namespace("catalog"))
    assert len(set(seen)) == 4
    # A refused change purges nothing.
    await _adjust(client, admin.headers, product, -1000)
    assert await cache.namespace("catalog") == seen[-1]


async def test_adjusting_above_the_integer_range_is_409_not_500(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await make_user(app, admin=True)
    product = await make_product(app, stock=2_000_000_000)
    response = await _adjust(client, admin.headers, product, 1_000_000_000)
    assert response.status_code == 409
    assert await stock_of(app, product) == 2_000_000_000


async def test_a_retried_adjustment_with_the_same_idempotency_key_applies_once(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await make_user(app, admin=True)
    product = await make_product(app, stock=5)
    headers = {**admin.headers, "Idempotency-Key": "recount-1"}
    first = await _adjust(client, headers, product, 3)
    again = await _adjust(client, headers, product, 3)
    assert first.status_code == again.status_code == 200
    assert (
        again.json()
        == first.json()
        == {
            "product_id": product,
            "stock_quantity": 8,
            "low_stock_threshold": 2,
        }
    )
    assert await stock_of(app, product) == 8
