"""Guards on the less-travelled money paths, each one written to kill a mutant that survived the
whole suite before it (issue 18): a success in the wrong currency, a purchase that failed and
then succeeded, the rounding of a partial pack refund, and the details of a refused refund.

They act through the HTTP API (signed webhooks, admin refunds) and assert on the rows a user or
an accountant would look at (order, payment, refunds, ledger), so they hold whatever the money
code's internals become.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from sellerdesk.models import CreditPurchase, Payment, Refund
from tests.conftest import AppFactory
from tests.credits_factories import assert_ledger_consistent, balance, ledger
from tests.factories import Account, register, register_admin
from tests.orders_factories import Buyer, make_product, make_user, place_order
from tests.stripe_fixtures import (
    WEBHOOK_SECRET,
    charge_refunded_object,
    count,
    event,
    intent_object,
    make_order,
    order_paid_events,
    order_row,
    payment_of,
    signed,
)

WEBHOOK = "/api/v1/payments/webhook"
REFUND = "/api/v1/payments/refund"


@pytest.fixture
async def app(make_app: AppFactory) -> FastAPI:
    return await make_app(STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET)


async def deliver(client: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    """POST a Stripe event to the webhook, signed as Stripe would sign it."""
    payload, headers = signed(body)
    answer = await client.post(WEBHOOK, content=payload, headers=headers)
    assert answer.status_code == 200, answer.text
    return answer


# --------------------------------------------------------------------------- currency


async def test_a_signed_success_in_another_currency_does_not_mark_a_usd_order_paid(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    buyer = await register(client)
    order_id = await make_order(app, buyer.id, "50.00")
    created = await client.post(
        "/api/v1/payments/create-payment-intent", json={"order_id": order_id}, headers=buyer.headers
    )
    assert created.status_code == 200, created.text
    intent_id = created.json()["payment_intent_id"]

    # Same figure, other money: 5000 cents of euro are not 50.00 dollars.
    await deliver(
        client, event("payment_intent.succeeded", intent_object(intent_id, 5000, currency="eur"))
    )

    order = await order_row(app, order_id)
    assert (order.status, order.payment_status) == ("pending", "pending")
    payment = await payment_of(app, order_id)
    assert payment is not None
    assert (payment.status, payment.currency, payment.refunded_amount) == (
        "pending",
        "usd",
        Decimal("0.00"),
    )
    assert await order_paid_events(app, order_id) == 0

    # The same success in the order's currency does pay it: only the currency was refused.
    await deliver(client, event("payment_intent.succeeded", intent_object(intent_id, 5000)))
    order = await order_row(app, order_id)
    assert (order.status, order.payment_status) == ("paid", "succeeded")
    assert await order_paid_events(app, order_id) == 1


# --------------------------------------------------------------------------- credit purchases


async def make_pack(client: httpx.AsyncClient, app: FastAPI, credits: int, price: str) -> Any:
    """A pack on sale with these figures (created by an admin, so no default pack is assumed)."""
    admin = await register_admin(client, app)
    created = await client.post(
        "/api/v1/admin/credits/packs",
        json={"name": f"{credits} credits for {price}", "credits": credits, "price": price},
        headers=admin.headers,
    )
    assert created.status_code == 201, created.text
    return created.json()


async def buy_a_pack(
    client: httpx.AsyncClient, app: FastAPI, credits: int, price: str
) -> tuple[Account, dict[str, Any]]:
    """A new buyer who started buying a new pack of `credits` for `price` (payment pending)."""
    pack = await make_pack(client, app, credits, price)
    buyer = await register(client)
    started = await client.post(
        "/api/v1/credits/purchase", json={"pack_id": pack["id"]}, headers=buyer.headers
    )
    assert started.status_code == 200, started.text
    body: dict[str, Any] = started.json()
    assert (body["credits"], body["amount"]) == (credits, price)
    return buyer, body


async def purchase_status(app: FastAPI, purchase_id: int) -> str:
    async with app.state.sessionmaker() as session:
        status = await session.scalar(
            select(CreditPurchase.status).where(CreditPurchase.id == purchase_id)
        )
    assert status is not None
    return status


async def test_a_purchase_whose_card_was_declined_then_paid_credits_the_pack_exactly_once(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    buyer, started = await buy_a_pack(client, app, 100, "9.00")
    intent_id, currency = started["payment_intent_id"], started["currency"]
    declined = intent_object(intent_id, 900, status="requires_payment_method", currency=currency)

    await deliver(client, event("payment_intent.payment_failed", declined))
    assert await purchase_status(app, started["purchase_id"]) == "failed"
    assert await balance(client, buyer) == 0

    paid = intent_object(intent_id, 900, currency=currency)
    await deliver(client, event("payment_intent.succeeded", paid))
    assert await purchase_status(app, started["purchase_id"]) == "completed"
    assert await balance(client, buyer) == 100

    # Later news, old or new, never credits it again nor takes it back.
    await deliver(client, event("payment_intent.succeeded", paid))
    await deliver(client, event("payment_intent.payment_failed", declined))
    assert await balance(client, buyer) == 100
    assert [(e.kind, e.amount) for e in await ledger(app, buyer.id)] == [("purchase", 100)]
    summary = (await client.get("/api/v1/credits", headers=buyer.headers)).json()
    assert summary == {"balance": 100, "lifetime_purchased": 100, "lifetime_spent": 0}
    await assert_ledger_consistent(app)


async def test_refunding_6_of_a_9_pack_of_100_credits_takes_back_66_in_the_buyers_favour(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    buyer, started = await buy_a_pack(client, app, 100, "9.00")
    intent_id, currency = started["payment_intent_id"], started["currency"]
    await deliver(
        client, event("payment_intent.succeeded", intent_object(intent_id, 900, currency=currency))
    )
    assert await balance(client, buyer) == 100

    # 100 x 6.00 / 9.00 = 66.67: the buyer keeps the fraction, so 66 go back, not 67.
    partial = {**charge_refunded_object(intent_id, 900, 600), "currency": currency}
    await deliver(client, event("charge.refunded", partial))

    assert await balance(client, buyer) == 34
    assert [(e.kind, e.amount) for e in await ledger(app, buyer.id)] == [
        ("purchase", 100),
        ("refund", -66),
    ]
    summary = (await client.get("/api/v1/credits", headers=buyer.headers)).json()
    assert summary == {"balance": 34, "lifetime_purchased": 34, "lifetime_spent": 0}

    # Refunding the rest takes back exactly what is left of the pack.
    full = {**charge_refunded_object(intent_id, 900, 900), "currency": currency}
    await deliver(client, event("charge.refunded", full))
    assert await balance(client, buyer) == 0
    assert [e.amount for e in await ledger(app, buyer.id)] == [100, -66, -34]
    await assert_ledger_consistent(app)


# --------------------------------------------------------------------------- refund ceiling


async def test_refunding_more_than_is_left_is_409_with_the_figures_and_changes_nothing(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin, buyer = await make_user(app, admin=True), await make_user(app)
    product_id = await make_product(app, price="10.00", stock=5)
    order = await place_order(client, buyer, product_id, quantity=3)
    order_id = order["id"]
    assert order["total_amount"] == "30.00"
    intent = await client.post(
        "/api/v1/payments/create-payment-intent", json={"order_id": order_id}, headers=buyer.headers
    )
    assert intent.status_code == 200, intent.text
    paid = await client.post(f"/api/v1/payments/confirm-payment/{order_id}", headers=buyer.headers)
    assert paid.status_code == 200, paid.text
    assert (await refund(client, admin, order_id, "10.00")).status_code == 200

    over = await refund(client, admin, order_id, "25.00")

    refused(over, requested="25.00", captured="30.00", refunded="10.00", refundable="20.00")
    await assert_refunded(app, order_id, "10.00", refunds=1, payment_status="partially_refunded")

    # Once all of it is refunded, even a cent more is refused with the same figures.
    assert (await refund(client, admin, order_id)).status_code == 200
    cent = await refund(client, admin, order_id, "0.01")
    refused(cent, requested="0.01", captured="30.00", refunded="30.00", refundable="0.00")
    await assert_refunded(app, order_id, "30.00", refunds=2, payment_status="refunded")


async def refund(
    client: httpx.AsyncClient, admin: Buyer, order_id: int, amount: str | None = None
) -> httpx.Response:
    """An admin refund of the order: `amount`, or all that is left."""
    body: dict[str, Any] = {"order_id": order_id}
    if amount is not None:
        body["amount"] = amount
    return await client.post(REFUND, json=body, headers=admin.headers)


def refused(answer: httpx.Response, **figures: str) -> None:
    """409 `conflict` whose details carry exactly these figures."""
    assert answer.status_code == 409, answer.text
    assert answer.json()["error"] == "conflict"
    assert answer.json()["details"] == figures


async def assert_refunded(
    app: FastAPI, order_id: int, total: str, *, refunds: int, payment_status: str
) -> None:
    payment = await payment_of(app, order_id)
    assert payment is not None
    assert (payment.status, payment.refunded_amount) == ("succeeded", Decimal(total))
    assert await count(app, Refund, Refund.payment_id == payment.id) == refunds
    assert (
        await count(app, Refund, Refund.payment_id == payment.id, Refund.status != "succeeded") == 0
    )
    assert (await order_row(app, order_id)).payment_status == payment_status
    assert await count(app, Payment, Payment.order_id == order_id) == 1
