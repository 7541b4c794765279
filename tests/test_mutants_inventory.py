"""Stock listings the mutation run (docs/mutation.md) found unheld: empty lists count 0, the
low-stock list pages in a stable order, and an unknown product's 404 says what was not found."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from tests.orders_factories import make_product, make_user

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
