"""Payments on the built-in manual gateway: the whole purchase flow on a fresh machine."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest
from fastapi import FastAPI

from sellerdesk.models import Payment, Refund
from sellerdesk.payments import service as payments_service
from tests.conftest import AppFactory, is_postgres
from tests.orders_factories import make_product, make_user, place_order, stock_of
from tests.stripe_fixtures import (
    WEBHOOK_SECRET,
    count,
    event,
    gather,
    intent_object,
    make_order,
    order_paid_events,
    order_row,
    payment_of,
    signed,
)

INTENT = "/api/v1/payments/create-payment-intent"
REFUND = "/api/v1/payments/refund"


def confirm_url(order_id: int) -> str:
    return f"/api/v1/payments/confirm-payment/{order_id}"


async def test_whole_manual_flow_checkout_intent_confirm_paid_refund(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    buyer = await make_user(app)
    admin = await make_user(app, admin=True)
    product_id = await make_product(app, stock=5, price="12.50")
    order = await place_order(client, buyer, product_id, quantity=2)
    assert (order["status"], order["total_amount"]) == ("pending", "25.00")

    intent = await client.post(INTENT, json={"order_id": order["id"]}, headers=buyer.headers)
    assert intent.status_code == 200, intent.text
    intent_id = intent.json()["payment_intent_id"]
    assert intent.json()["client_secret"].startswith(intent_id)

    confirmed = await client.post(confirm_url(order["id"]), headers=buyer.headers)
    assert confirmed.status_code == 200, confirmed.text
    body = confirmed.json()
    assert body["message"]
    assert body["order"]["status"] == "paid"
    assert body["order"]["payment_status"] == "succeeded"
    assert body["order"]["payment_intent_id"] == intent_id
    assert await order_paid_events(app, order["id"]) == 1

    partial = await client.post(
        REFUND, json={"order_id": order["id"], "amount": "5.00"}, headers=admin.headers
    )
    assert partial.status_code == 200, partial.text
    assert partial.json()["amount"] == "5.00"
    assert partial.json()["refunded_total"] == "5.00"
    assert partial.json()["order"]["payment_status"] == "partially_refunded"
    assert partial.json()["order"]["status"] == "paid"

    rest = await client.post(REFUND, json={"order_id": order["id"]}, headers=admin.headers)
    assert rest.status_code == 200, rest.text
    assert (rest.json()["amount"], rest.json()["refunded_total"]) == ("20.00", "25.00")
    assert rest.json()["order"]["status"] == "refunded"
    assert rest.json()["order"]["payment_status"] == "refunded"

    seen = await client.get(f"/api/v1/orders/{order['id']}", headers=buyer.headers)
    assert seen.json()["payment_intent_id"] == intent_id
    assert await stock_of(app, product_id) == 3  # an admin refund does not restock


async def test_the_same_order_asked_twice_returns_the_same_intent(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    buyer = await make_user(app)
    order_id = await make_order(app, buyer.id, "40.00")

    first = await client.post(INTENT, json={"order_id": order_id}, headers=buyer.headers)
    again = await client.post(INTENT, json={"order_id": order_id}, headers=buyer.headers)

    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert await count(app, Payment) == 1


async def test_concurrent_create_payment_intent_makes_one_intent(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    buyer = await make_user(app)
    order_id = await make_order(app, buyer.id, "40.00")

    answers = await gather(
        *(
            client.post(INTENT, json={"order_id": order_id}, headers=buyer.headers)
            for _ in range(10)
        )
    )

    assert [a.status_code for a in answers] == [200] * 10
    assert len({a.json()["payment_intent_id"] for a in answers}) == 1
    assert await count(app, Payment) == 1


async def test_intent_amount_comes_from_the_stored_order_total(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    buyer = await make_user(app)
    order_id = await make_order(app, buyer.id, "19.99")

    sneaky = await client.post(
        INTENT, json={"order_id": order_id, "amount": 1}, headers=buyer.headers
    )
    fair = await client.post(INTENT, json={"order_id": order_id}, headers=buyer.headers)

    assert sneaky.status_code == 422
    assert fair.status_code == 200
    payment = await payment_of(app, order_id)
    assert payment is not None and payment.amount == Decimal("19.99")


async def test_another_users_order_is_404_and_a_missing_one_too(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    owner, other = await make_user(app), await make_user(app)
    order_id = await make_order(app, owner.id)

    for path, body in ((INTENT, {"order_id": order_id}), (confirm_url(order_id), None)):
        answer = await client.post(path, json=body, headers=other.headers)
        assert answer.status_code == 404, path
        assert answer.json()["error"] == "not_found"
    missing = await client.post(INTENT, json={"order_id": 10**12}, headers=owner.headers)
    assert missing.status_code == 404
    assert await count(app, Payment) == 0


async def test_a_paid_order_cannot_get_a_new_intent(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    buyer = await make_user(app)
    order_id = await make_order(app, buyer.id)
    await client.post(INTENT, json={"order_id": order_id}, headers=buyer.headers)
    await client.post(confirm_url(order_id), headers=buyer.headers)

    again = await client.post(INTENT, json={"order_id": order_id}, headers=buyer.headers)

    assert again.status_code == 409
    assert again.json()["error"] == "conflict"


async def test_confirm_twice_is_200_twice_and_pays_once(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    buyer = await make_user(app)
    order_id = await make_order(app, buyer.id)
    await client.post(INTENT, json={"order_id": order_id}, headers=buyer.headers)

    answers = await gather(
        *(client.post(confirm_url(order_id), headers=buyer.headers) for _ in range(5))
    )

    assert [a.status_code for a in answers] == [200] * 5
    assert await order_paid_events(app, order_id) == 1


async def test_confirm_without_an_intent_is_400_payment_error(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    buyer = await make_user(app)
    order_id = await make_order(app, buyer.id)

    answer = await client.post(confirm_url(order_id), headers=buyer.headers)

    assert answer.status_code == 400
    assert answer.json()["error"] == "payment_error"


async def test_refund_needs_an_admin(client: httpx.AsyncClient, app: FastAPI) -> None:
    buyer = await make_user(app)
    answer = await client.post(REFUND, json={"order_id": 1}, headers=buyer.headers)
    assert answer.status_code == 403
    anonymous = await client.post(REFUND, json={"order_id": 1})
    assert anonymous.status_code == 401


async def _paid_order(client: httpx.AsyncClient, app: FastAPI, total: str = "30.00") -> int:
    buyer = await make_user(app)
    order_id = await make_order(app, buyer.id, total)
    assert (
        await client.post(INTENT, json={"order_id": order_id}, headers=buyer.headers)
    ).is_success
    assert (await client.post(confirm_url(order_id), headers=buyer.headers)).is_success
    return order_id


async def test_over_refund_is_409_and_changes_nothing(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await make_user(app, admin=True)
    order_id = await _paid_order(client, app, "30.00")

    over = await client.post(
        REFUND, json={"order_id": order_id, "amount": "30.01"}, headers=admin.headers
    )
    full = await client.post(REFUND, json={"order_id": order_id}, headers=admin.headers)
    after_full = await client.post(
        REFUND, json={"order_id": order_id, "amount": "0.01"}, headers=admin.headers
    )

    assert over.status_code == 409 and over.json()["error"] == "conflict"
    assert full.status_code == 200
    assert after_full.status_code == 409
    payment = await payment_of(app, order_id)
    assert payment is not None and payment.refunded_amount == Decimal("30.00")


@pytest.mark.parametrize("amount", ["0", "0.00", "-1", "1.001", "NaN"])
async def test_refund_amount_must_be_positive_money(
    client: httpx.AsyncClient, app: FastAPI, amount: str
) -> None:
    admin = await make_user(app, admin=True)
    answer = await client.post(
        REFUND, json={"order_id": 1, "amount": amount}, headers=admin.headers
    )
    assert answer.status_code == 422


async def test_refund_of_an_unpaid_order_is_409(client: httpx.AsyncClient, app: FastAPI) -> None:
    admin, buyer = await make_user(app, admin=True), await make_user(app)
    order_id = await make_order(app, buyer.id)
    no_payment = await client.post(REFUND, json={"order_id": order_id}, headers=admin.headers)
    await client.post(INTENT, json={"order_id": order_id}, headers=buyer.headers)
    not_captured = await client.post(REFUND, json={"order_id": order_id}, headers=admin.headers)
    missing = await client.post(REFUND, json={"order_id": 10**12}, headers=admin.headers)

    assert (no_payment.status_code, not_captured.status_code) == (409, 409)
    assert missing.status_code == 404


async def test_two_concurrent_partial_refunds_over_the_total_only_one_succeeds(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await make_user(app, admin=True)
    order_id = await _paid_order(client, app, "30.00")

    answers = await gather(
        *(
            client.post(
                REFUND, json={"order_id": order_id, "amount": "20.00"}, headers=admin.headers
            )
            for _ in range(2)
        )
    )

    assert sorted(a.status_code for a in answers) == [200, 409]
    payment = await payment_of(app, order_id)
    assert payment is not None and payment.refunded_amount == Decimal("20.00")
    assert await count(app, Refund, Refund.status == "succeeded") == 1


async def test_many_concurrent_small_refunds_never_exceed_the_capture(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await make_user(app, admin=True)
    order_id = await _paid_order(client, app, "1.00")

    answers = await gather(
        *(
            client.post(
                REFUND, json={"order_id": order_id, "amount": "0.30"}, headers=admin.headers
            )
            for _ in range(8)
        )
    )

    assert sorted(a.status_code for a in answers) == [200] * 3 + [409] * 5
    payment = await payment_of(app, order_id)
    assert payment is not None and payment.refunded_amount == Decimal("0.90")


async def test_cancelling_a_paid_order_refunds_it_in_full_and_returns_stock(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    buyer = await make_user(app)
    product_id = await make_product(app, stock=4, price="10.00")
    order = await place_order(client, buyer, product_id, quantity=3)
    await client.post(INTENT, json={"order_id": order["id"]}, headers=buyer.headers)
    await client.post(confirm_url(order["id"]), headers=buyer.headers)

    cancelled = await client.post(f"/api/v1/orders/{order['id']}/cancel", headers=buyer.headers)

    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["payment_status"] == "refunded"
    assert await stock_of(app, product_id) == 4
    payment = await payment_of(app, order["id"])
    assert payment is not None and payment.refunded_amount == Decimal("30.00")


@pytest.mark.skipif(not is_postgres(), reason="row locks")
async def test_refund_and_cancel_at_once_never_refund_twice(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await make_user(app, admin=True)
    order_id = await _paid_order(client, app, "30.00")

    answers = await gather(
        client.post(REFUND, json={"order_id": order_id}, headers=admin.headers),
        client.post(f"/api/v1/orders/{order_id}/cancel", headers=admin.headers),
    )

    assert all(a.status_code in (200, 409) for a in answers)
    payment = await payment_of(app, order_id)
    assert payment is not None and payment.refunded_amount == Decimal("30.00")
    assert await count(app, Refund, Refund.status == "succeeded") == 1


async def test_a_retried_refund_with_the_same_idempotency_key_refunds_once(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await make_user(app, admin=True)
    order_id = await _paid_order(client, app, "30.00")
    headers = {**admin.headers, "Idempotency-Key": "refund-attempt-1"}

    first = await client.post(
        REFUND, json={"order_id": order_id, "amount": "5.00"}, headers=headers
    )
    retry = await client.post(
        REFUND, json={"order_id": order_id, "amount": "5.00"}, headers=headers
    )

    assert first.status_code == retry.status_code == 200
    assert retry.json() == first.json()
    payment = await payment_of(app, order_id)
    assert payment is not None and payment.refunded_amount == Decimal("5.00")
    assert await count(app, Refund) == 1


async def test_create_payment_for_a_purpose_is_created_once_with_a_deterministic_intent(
    app: FastAPI,
) -> None:
    buyer = await make_user(app)

    async def create() -> Payment:
        async with app.state.sessionmaker() as session:
            payment = await payments_service.create_payment(
                session,
                user_id=buyer.id,
                amount=Decimal("9.99"),
                currency="USD",
                purpose="credit_purchase:1",
                idempotency_key="credit_purchase:1:payment_intent",
                metadata={"credit_purchase_id": "1"},
            )
            await session.commit()
            return payment

    first, second = await create(), await create()

    assert first.id == second.id and first.intent_id == second.intent_id
    assert (first.order_id, first.amount, first.currency) == (None, Decimal("9.99"), "usd")
    assert first.client_secret and first.intent_id and first.provider == "manual"
    assert await count(app, Payment) == 1


async def test_a_payment_arriving_after_the_order_was_cancelled_is_refunded_in_full(
    make_app: AppFactory,
) -> None:
    app = await make_app(STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        buyer = await make_user(app)
        product_id = await make_product(app, stock=2, price="15.00")
        order = await place_order(client, buyer, product_id, quantity=2)
        intent = await client.post(INTENT, json={"order_id": order["id"]}, headers=buyer.headers)
        intent_id = intent.json()["payment_intent_id"]
        cancel = await client.post(f"/api/v1/orders/{order['id']}/cancel", headers=buyer.headers)
        assert cancel.status_code == 200 and cancel.json()["status"] == "cancelled"

        refused = await client.post(confirm_url(order["id"]), headers=buyer.headers)
        payload, headers = signed(event("payment_intent.succeeded", intent_object(intent_id, 3000)))
        late = await client.post("/api/v1/payments/webhook", content=payload, headers=headers)
        await app.state.dispatcher.drain()  # the refund runs from the outbox, after the commit

    assert refused.status_code == 400 and refused.json()["error"] == "payment_error"
    assert late.status_code == 200
    row = await order_row(app, order["id"])
    assert (row.status, row.payment_status) == ("cancelled", "refunded")
    payment = await payment_of(app, order["id"])
    assert payment is not None
    assert (payment.status, payment.refunded_amount) == ("succeeded", Decimal("30.00"))
    assert await count(app, Refund, Refund.status == "succeeded") == 1
    assert await stock_of(app, product_id) == 2  # returned once, at cancel
