"""Stock listings the mutation run (docs/mutation.md) found unheld: empty lists count 0, the
low-stock list pages in a stable order, and an unknown product's 404 says what was not found."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from sellerdesk.inventory.movements import record_movement
from sellerdesk.models import DomainEvent
from tests.orders_factories import (
    checkout,
    make_product,
    make_user,
    place_order,
    put_in_cart,
    stock_of,
)

LOW = "/api/v1/admin/inventory/low-stock"


async def test_empty_lists_count_zero(app: FastAPI, client: httpx.AsyncClient) -> None:
    admin = await make_user(app, admin=True)
    product = await make_product(app, stock=10, threshold=2)  # not low, and never moved
    low = (await client.get(LOW, headers=admin.headers)).json()
    assert low["items"] == [] and low["total"] == 0
    url = f"/api/v1/admin/inventory/{product}/movements"
    movements = (await client.get(url, headers=admin.headers)).json()
    assert movements["items"] == [] and movements["total"] == 0


async def test_the_low_stock_list_pages_by_stock_then_id(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await make_user(app, admin=True)
    # Created out of order, two of them with the same stock: id breaks the tie.
    one = await make_product(app, stock=1, threshold=5)
    zero = await make_product(app, stock=0, threshold=5)
    one_later = await make_product(app, stock=1, threshold=5)
    three = await make_product(app, stock=3, threshold=5)
    pages = []
    for page in (1, 2, 3):
        answer = await client.get(f"{LOW}?page={page}&page_size=2", headers=admin.headers)
        assert answer.status_code == 200
        assert answer.json()["total"] == 4
        pages.append([p["id"] for p in answer.json()["items"]])
    assert pages == [[zero, one], [one_later, three], []]


async def test_an_unknown_product_is_named_in_the_404(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await make_user(app, admin=True)
    answers = [
        await client.post(
            "/api/v1/admin/inventory/99999999/adjust",
            json={"delta": 1, "reason": "count"},
            headers=admin.headers,
        ),
        await client.get("/api/v1/admin/inventory/99999999/movements", headers=admin.headers),
    ]
    for answer in answers:
        assert answer.status_code == 404
        assert answer.json() == {"error": "not_found", "message": "Product not found."}


async def test_a_refused_adjustment_says_which_bound_it_hit(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await make_user(app, admin=True)
    for stock, delta, message in (
        (10, -11, "Stock cannot go below 0."),
        (2**31 - 100, 1000, "Stock cannot exceed 2147483647."),
    ):
        product = await make_product(app, stock=stock)
        answer = await client.post(
            f"/api/v1/admin/inventory/{product}/adjust",
            json={"delta": delta, "reason": "count"},
            headers=admin.headers,
        )
        assert answer.status_code == 409
        assert answer.json()["message"] == message
        details = {"product_id": product, "delta": delta, "available": stock}
        assert answer.json()["details"] == details


async def test_stock_can_be_raised_to_the_column_maximum(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await make_user(app, admin=True)
    product = await make_product(app, stock=2**31 - 11)
    answer = await client.post(
        f"/api/v1/admin/inventory/{product}/adjust",
        json={"delta": 10, "reason": "count"},
        headers=admin.headers,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["stock_quantity"] == 2**31 - 1


async def test_order_and_cancel_movements_name_the_buyer(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin, buyer = await make_user(app, admin=True), await make_user(app)
    product = await make_product(app, stock=5)
    order = await place_order(client, buyer, product, 2)
    cancel = await client.post(f"/api/v1/orders/{order['id']}/cancel", headers=buyer.headers)
    assert cancel.status_code == 200, cancel.text
    url = f"/api/v1/admin/inventory/{product}/movements"
    items = (await client.get(url, headers=admin.headers)).json()["items"]
    assert [(m["reason"], m["user_id"]) for m in items] == [
        ("cancel", buyer.id),
        ("order", buyer.id),
    ]


async def test_a_cancel_returns_every_line_it_can(app: FastAPI, client: httpx.AsyncClient) -> None:
    admin, buyer = await make_user(app, admin=True), await make_user(app)
    full = await make_product(app, stock=2**31 - 1 - 500)
    other = await make_product(app, stock=10)
    await put_in_cart(client, buyer, full, 2)
    await put_in_cart(client, buyer, other, 3)
    placed = await checkout(client, buyer)
    assert placed.status_code == 201, placed.text
    order = placed.json()
    # Meanwhile the first product was restocked to the column's maximum: its 2 cannot go back.
    await client.post(
        f"/api/v1/admin/inventory/{full}/adjust",
        json={"delta": 502, "reason": "count"},
        headers=admin.headers,
    )
    cancel = await client.post(f"/api/v1/orders/{order['id']}/cancel", headers=buyer.headers)
    assert cancel.status_code == 200, cancel.text
    assert await stock_of(app, full) == 2**31 - 1
    assert await stock_of(app, other) == 10


async def test_an_order_from_exactly_the_threshold_does_not_warn_again(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    buyer = await make_user(app)
    product = await make_product(app, stock=2, threshold=2)  # already at the threshold
    await place_order(client, buyer, product, 1)
    async with app.state.sessionmaker() as session:
        kinds = list(await session.scalars(select(DomainEvent.kind)))
    assert "low_stock" not in kinds


async def test_a_movement_with_a_reason_not_on_the_list_is_refused_naming_it(app: FastAPI) -> None:
    product = await make_product(app, stock=3)
    async with app.state.sessionmaker() as session:
        with pytest.raises(ValueError, match="unknown stock movement reason 'gift'"):
            await record_movement(
                session,
                product_id=product,
                delta=-1,
                stock_after=2,
                low_stock_threshold=0,
                reason="gift",
            )
