"""`GET /api/v1/credits/usage` and `GET /api/v1/admin/stats`: per-day figures, as the contract
says them (days, ranges, whose data, what counts on which day)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import insert, select, update

from sellerdesk.models import CreditUsage, Order, Payment, Refund
from sellerdesk.payments import service as payments_service
from sellerdesk.payments.providers import IntentInfo
from tests.auth_helpers import assert_error
from tests.conftest import AppFactory
from tests.credits_factories import create_key, funded_with_mappings, mount_paid_test_routes
from tests.factories import Account, register, register_admin
from tests.orders_factories import ADDRESS

USAGE = "/api/v1/credits/usage"
STATS = "/api/v1/admin/stats"


def today() -> date:
    return datetime.now(UTC).date()


def items_of(body: dict[str, Any]) -> dict[tuple[str, str], tuple[int, int]]:
    return {(i["date"], i["endpoint"]): (i["calls"], i["credits"]) for i in body["items"]}


async def convert(client: httpx.AsyncClient, account: Account, code: str) -> httpx.Response:
    return await client.post(
        "/api/v1/conversion/fnsku", json={"fnsku": code}, headers=account.headers
    )


async def create_product(
    client: httpx.AsyncClient, admin: Account, price: str, *, stock: int = 50, **extra: Any
) -> dict[str, Any]:
    sku = f"AN-{price}-{extra.get('asin', '')}-{id(extra)}"
    response = await client.post(
        "/api/v1/products",
        json={"name": f"Thing {sku}", "price": price, "stock_quantity": stock, "sku": sku, **extra},
        headers=admin.headers,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def buy(
    client: httpx.AsyncClient, buyer: Account, product_id: int, quantity: int, *, pay: bool = True
) -> dict[str, Any]:
    """Check out `quantity` of a product, and pay for it with the manual gateway."""
    put = await client.put(
        f"/api/v1/cart/items/{product_id}", json={"quantity": quantity}, headers=buyer.headers
    )
    assert put.status_code == 200, put.text
    order = await client.post(
        "/api/v1/orders", json={"shipping_address": ADDRESS}, headers=buyer.headers
    )
    assert order.status_code == 201, order.text
    order_id = order.json()["id"]
    if pay:
        intent = await client.post(
            "/api/v1/payments/create-payment-intent",
            json={"order_id": order_id},
            headers=buyer.headers,
        )
        assert intent.status_code == 200, intent.text
        paid = await client.post(
            f"/api/v1/payments/confirm-payment/{order_id}", headers=buyer.headers
        )
        assert paid.status_code == 200, paid.text
        assert paid.json()["order"]["status"] == "paid"
    body: dict[str, Any] = order.json()
    return body


async def buy_pack(client: httpx.AsyncClient, buyer: Account) -> dict[str, Any]:
    pack = (await client.get("/api/v1/credits/packs")).json()[0]
    started = await client.post(
        "/api/v1/credits/purchase", json={"pack_id": pack["id"]}, headers=buyer.headers
    )
    assert started.status_code == 200, started.text
    confirmed = await client.post(
        f"/api/v1/credits/purchases/{started.json()['purchase_id']}/confirm",
        headers=buyer.headers,
    )
    assert confirmed.status_code == 200, confirmed.text
    body: dict[str, Any] = pack
    return body


async def refund(
    client: httpx.AsyncClient, admin: Account, order_id: int, amount: str | None = None
) -> None:
    body: dict[str, Any] = {"order_id": order_id}
    if amount is not None:
        body["amount"] = amount
    response = await client.post("/api/v1/payments/refund", json=body, headers=admin.headers)
    assert response.status_code == 200, response.text


def day_of(body: dict[str, Any], day: date) -> dict[str, Any]:
    found: dict[str, Any] = next(d for d in body["days"] if d["date"] == day.isoformat())
    return found


# --------------------------------------------------------------------------- usage


async def test_usage_counts_answered_calls_and_net_credits_per_day_and_endpoint(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await register_admin(client, app)
    user = await funded_with_mappings(client, admin, credits=50, mappings=4)
    await create_product(client, admin, "5.00", asin="B0ANALYT01")

    assert (await convert(client, user, "X000000001")).headers["X-Credits-Charged"] == "1"
    repeat = await convert(client, user, "X000000001")  # a free repeat: a call, 0 credits
    assert repeat.status_code == 200 and repeat.headers["X-Credits-Charged"] == "0"
    assert (await convert(client, user, "X000000002")).status_code == 200
    assert (await convert(client, user, "X099999999")).status_code == 404  # unknown: no call
    batch = await client.post(
        "/api/v1/conversion/fnsku/batch",
        json={"fnskus": ["X000000003", "X000000004", "X099999998", "nonsense"]},
        headers=user.headers,
    )
    assert batch.status_code == 200 and batch.json()["charged"] == 2  # one call, 2 credits
    asin = await client.post(
        "/api/v1/product/asin", json={"asin": "B0ANALYT01"}, headers=user.headers
    )
    assert asin.status_code == 200, asin.text

    response = await client.get(USAGE, headers=user.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["to"] == today().isoformat()
    assert body["from"] == (today() - timedelta(days=29)).isoformat()
    day = today().isoformat()
    assert items_of(body) == {(day, "asin_lookup"): (1, 1), (day, "fnsku_conversion"): (4, 4)}
    assert [i["endpoint"] for i in body["items"]] == ["asin_lookup", "fnsku_conversion"]


async def test_a_failed_call_refunded_in_the_same_request_is_neither_a_call_nor_a_cost(
    make_app: AppFactory,
) -> None:
    app = mount_paid_test_routes(await make_app())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        admin = await register_admin(client, app)
        user = await funded_with_mappings(client, admin, credits=10, mappings=1)
        failed = await client.post(
            "/api/v1/test-paid/lookup", json={"code": "UP00000001"}, headers=user.headers
        )
        assert failed.status_code == 502
        served = await client.post(
            "/api/v1/test-paid/lookup", json={"code": "OK00000001"}, headers=user.headers
        )
        assert served.status_code == 200
        body = (await client.get(USAGE, headers=user.headers)).json()
        assert items_of(body) == {(today().isoformat(), "asin_lookup"): (1, 1)}


async def test_usage_shows_only_the_callers_own_calls(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await register_admin(client, app)
    alice = await funded_with_mappings(client, admin, credits=10, mappings=2)
    bob = await funded_with_mappings(client, admin, credits=10, mappings=2)
    for code in ("X000000001", "X000000002"):
        assert (await convert(client, alice, code)).status_code == 200

    assert (await client.get(USAGE, headers=bob.headers)).json()["items"] == []
    key = await create_key(client, alice)  # an API key reads its owner's usage
    by_key = await client.get(USAGE, headers={"X-API-Key": key["key"]})
    assert by_key.status_code == 200
    assert items_of(by_key.json()) == {(today().isoformat(), "fnsku_conversion"): (2, 2)}
    assert (await client.get(USAGE, headers=admin.headers)).json()["items"] == []


async def test_usage_lists_the_days_of_the_range_that_have_calls_in_order(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await register(client)
    rows = [
        (date(2026, 3, 1), "fnsku_conversion", 3, 2),
        (date(2026, 3, 5), "asin_lookup", 1, 1),
        (date(2026, 3, 5), "fnsku_conversion", 7, 0),
        (date(2026, 3, 9), "asin_lookup", 2, 2),
    ]
    async with app.state.sessionmaker() as session:
        await session.execute(
            insert(CreditUsage),
            [
                {"user_id": user.id, "day": d, "endpoint": e, "calls": c, "credits": k}
                for d, e, c, k in rows
            ],
        )
        await session.commit()

    response = await client.get(
        USAGE, params={"from": "2026-03-02", "to": "2026-03-09"}, headers=user.headers
    )
    assert response.status_code == 200
    assert response.json() == {
        "from": "2026-03-02",
        "to": "2026-03-09",
        "items": [
            {"date": "2026-03-05", "endpoint": "asin_lookup", "calls": 1, "credits": 1},
            {"date": "2026-03-05", "endpoint": "fnsku_conversion", "calls": 7, "credits": 0},
            {"date": "2026-03-09", "endpoint": "asin_lookup", "calls": 2, "credits": 2},
        ],
    }
    only_to = await client.get(USAGE, params={"to": "2026-03-01"}, headers=user.headers)
    assert only_to.json()["from"] == "2026-01-31"  # 30 days ending at `to`
    assert len(only_to.json()["items"]) == 1


@pytest.mark.parametrize(
    "params",
    [
        {"from": "2026-13-01"},
        {"from": "2026-02-30"},
        {"to": "20260301"},
        {"from": "yesterday"},
        {"from": "2026-03-02", "to": "2026-03-01"},  # from after to
        {"from": "2025-01-01", "to": "2026-01-02"},  # 367 days
        {"to": "2026-03-01T00:00:00"},
    ],
)
async def test_bad_ranges_are_422_on_both_routes(
    client: httpx.AsyncClient, app: FastAPI, params: dict[str, str]
) -> None:
    admin = await register_admin(client, app)
    for path in (USAGE, STATS):
        assert_error(
            await client.get(path, params=params, headers=admin.headers), 422, "validation_error"
        )


async def test_a_whole_year_of_366_days_is_accepted(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await register_admin(client, app)
    params = {"from": "2024-01-01", "to": "2024-12-31"}  # a leap year
    assert (await client.get(USAGE, params=params, headers=admin.headers)).status_code == 200
    stats = await client.get(STATS, params=params, headers=admin.headers)
    assert stats.status_code == 200 and len(stats.json()["days"]) == 366


async def test_usage_needs_credentials_and_stats_an_admin(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await register(client)
    assert_error(await client.get(USAGE), 401, "not_authenticated")
    assert_error(await client.get(STATS), 401, "not_authenticated")
    assert_error(await client.get(STATS, headers=user.headers), 403, "forbidden")


# --------------------------------------------------------------------------- stats


async def test_stats_count_orders_revenue_and_credits_sold_per_day(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await register_admin(client, app)
    buyer = await register(client)
    product = await create_product(client, admin, "12.50")
    paid = await buy(client, buyer, product["id"], 2)  # 25.00 captured
    await buy(client, buyer, product["id"], 1, pay=False)  # placed, not paid: no revenue
    pack = await buy_pack(client, buyer)
    await refund(client, admin, paid["id"], "5.25")

    response = await client.get(STATS, headers=admin.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["from"] == (today() - timedelta(days=29)).isoformat()
    assert body["to"] == today().isoformat()
    assert [d["date"] for d in body["days"]] == [
        (today() - timedelta(days=n)).isoformat() for n in range(29, -1, -1)
    ]
    expected = Decimal("25.00") + Decimal(pack["price"]) - Decimal("5.25")
    assert day_of(body, today()) == {
        "date": today().isoformat(),
        "orders": 2,
        "revenue": str(expected),
        "credits_sold": pack["credits"],
    }
    yesterday = day_of(body, today() - timedelta(days=1))
    assert yesterday == {
        "date": (today() - timedelta(days=1)).isoformat(),
        "orders": 0,
        "revenue": "0.00",
        "credits_sold": 0,
    }
    assert body["top_products"] == [
        {"product_id": product["id"], "name": product["name"], "units": 2, "revenue": "25.00"}
    ]


async def test_a_refund_counts_on_its_own_day_and_may_make_a_day_negative(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await register_admin(client, app)
    buyer = await register(client)
    product = await create_product(client, admin, "40.00")
    order = await buy(client, buyer, product["id"], 1)
    three_days_ago = datetime.now(UTC) - timedelta(days=3)
    async with app.state.sessionmaker() as session:  # the sale happened three days ago
        await session.execute(
            update(Payment)
            .where(Payment.order_id == order["id"])
            .values(captured_at=three_days_ago)
        )
        await session.execute(
            update(Order).where(Order.id == order["id"]).values(created_at=three_days_ago)
        )
        await session.commit()
    await refund(client, admin, order["id"], "15.00")

    body = (await client.get(STATS, headers=admin.headers)).json()
    earlier = day_of(body, three_days_ago.date())
    assert (earlier["orders"], earlier["revenue"]) == (1, "40.00")
    now = day_of(body, today())
    assert (now["orders"], now["revenue"]) == (0, "-15.00")


async def test_top_products_rank_what_sold_by_revenue_and_ignore_unsold_orders(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await register_admin(client, app)
    buyer = await register(client)
    cheap = await create_product(client, admin, "2.00")
    dear = await create_product(client, admin, "30.00")
    unpaid = await create_product(client, admin, "99.00")
    await buy(client, buyer, cheap["id"], 5)  # 10.00
    await buy(client, buyer, dear["id"], 1)  # 30.00
    await buy(client, buyer, cheap["id"], 1)  # 2.00 more
    await buy(client, buyer, unpaid["id"], 3, pay=False)  # pending: not sold
    cancelled = await buy(client, buyer, dear["id"], 2)
    cancel = await client.post(f"/api/v1/orders/{cancelled['id']}/cancel", headers=buyer.headers)
    assert cancel.json()["status"] == "cancelled"  # refunded in full: not sold

    top = (await client.get(STATS, headers=admin.headers)).json()["top_products"]
    assert [(p["product_id"], p["units"], p["revenue"]) for p in top] == [
        (dear["id"], 1, "30.00"),
        (cheap["id"], 6, "12.00"),
    ]


async def test_a_refund_made_at_the_provider_is_recorded_on_the_day_it_is_learnt(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await register_admin(client, app)
    buyer = await register(client)
    product = await create_product(client, admin, "20.00")
    order = await buy(client, buyer, product["id"], 1)
    async with app.state.sessionmaker() as session:
        payment = await session.scalar(select(Payment).where(Payment.order_id == order["id"]))
        assert payment is not None and payment.intent_id is not None
        info = IntentInfo(payment.intent_id, "succeeded", 2000, "usd", amount_refunded=800)
        await payments_service.apply_intent_state(session, payment, info)
        await session.commit()
        refunds = list(await session.scalars(select(Refund).where(Refund.payment_id == payment.id)))
    assert [(r.amount, r.status) for r in refunds] == [(Decimal("8.00"), "succeeded")]
    now = day_of((await client.get(STATS, headers=admin.headers)).json(), today())
    assert now["revenue"] == "12.00"


async def test_stats_of_another_currency_are_not_mixed_in(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await register_admin(client, app)
    buyer = await register(client)
    euro = await create_product(client, admin, "9.00", currency="eur")
    await buy(client, buyer, euro["id"], 1)
    body = (await client.get(STATS, headers=admin.headers)).json()
    assert body["currency"] == "usd"
    assert day_of(body, today())["revenue"] == "0.00"
    assert day_of(body, today())["orders"] == 1


async def test_openapi_declares_the_analytics_routes_and_their_errors(
    client: httpx.AsyncClient,
) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path, codes in ((USAGE, {"401", "403", "422", "503"}), (STATS, {"401", "403", "422"})):
        operation = paths[path]["get"]
        assert codes <= set(operation["responses"])
        assert {p["name"] for p in operation["parameters"]} == {"from", "to"}
    assert not any(path.startswith("/dashboard") for path in paths)
