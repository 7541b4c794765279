"""The Stripe webhook: signed, applied exactly once, in any order (manual provider + signed
events, so it runs on both backends; the webhook works whatever the payment provider)."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from sellerdesk.models import Refund, User, WebhookEvent
from tests.conftest import AppFactory
from tests.factories import Account, register
from tests.stripe_fixtures import (
    WEBHOOK_SECRET,
    charge_refunded_object,
    event,
    gather,
    intent_object,
    make_order,
    order_paid_events,
    order_row,
    payment_of,
    signed,
    webhook_events,
)

WEBHOOK = "/api/v1/payments/webhook"


@pytest.fixture
async def app(make_app: AppFactory) -> FastAPI:
    return await make_app(STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET)


async def _order_with_intent(
    client: httpx.AsyncClient, app: FastAPI, total: str = "50.00"
) -> tuple[Account, int, str]:
    buyer = await register(client)
    order_id = await make_order(app, buyer.id, total)
    created = await client.post(
        "/api/v1/payments/create-payment-intent", json={"order_id": order_id}, headers=buyer.headers
    )
    assert created.status_code == 200, created.text
    return buyer, order_id, created.json()["payment_intent_id"]


async def _deliver(client: httpx.AsyncClient, body: dict[str, object]) -> httpx.Response:
    payload, headers = signed(body)
    return await client.post(WEBHOOK, content=payload, headers=headers)


async def test_one_event_delivered_10_times_concurrently_and_10_in_sequence_applies_once(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    _, order_id, intent_id = await _order_with_intent(client, app)
    succeeded = event("payment_intent.succeeded", intent_object(intent_id, 5000))

    concurrent = await gather(*(_deliver(client, succeeded) for _ in range(10)))
    sequential = [await _deliver(client, succeeded) for _ in range(10)]

    assert [r.status_code for r in concurrent + sequential] == [200] * 20
    results = [r.json()["result"] for r in concurrent + sequential]
    assert results.count("applied") == 1 and results.count("duplicate") == 19
    order = await order_row(app, order_id)
    assert (order.status, order.payment_status) == ("paid", "succeeded")
    assert await order_paid_events(app, order_id) == 1
    assert await webhook_events(app) == 1


async def test_charge_refunded_before_payment_intent_succeeded_ends_refunded(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    _, order_id, intent_id = await _order_with_intent(client, app)

    refunded = await _deliver(
        client, event("charge.refunded", charge_refunded_object(intent_id, 5000, 5000))
    )
    late_success = await _deliver(
        client, event("payment_intent.succeeded", intent_object(intent_id, 5000))
    )

    assert refunded.json()["result"] == "applied"
    assert late_success.status_code == 200
    order = await order_row(app, order_id)
    assert (order.status, order.payment_status) == ("refunded", "refunded")
    payment = await payment_of(app, order_id)
    assert payment is not None
    assert (payment.status, str(payment.refunded_amount)) == ("succeeded", "50.00")


async def test_partial_charge_refunded_events_only_move_forward(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    _, order_id, intent_id = await _order_with_intent(client, app)
    await _deliver(client, event("payment_intent.succeeded", intent_object(intent_id, 5000)))

    await _deliver(client, event("charge.refunded", charge_refunded_object(intent_id, 5000, 2000)))
    await _deliver(client, event("charge.refunded", charge_refunded_object(intent_id, 5000, 1000)))

    payment = await payment_of(app, order_id)
    assert payment is not None and str(payment.refunded_amount) == "20.00"
    order = await order_row(app, order_id)
    assert (order.status, order.payment_status) == ("paid", "partially_refunded")


async def test_a_dashboard_refund_is_recorded_beside_ours_and_each_cent_counted_once(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    _, order_id, intent_id = await _order_with_intent(client, app)
    await _deliver(client, event("payment_intent.succeeded", intent_object(intent_id, 5000)))
    admin = await register(client)
    async with app.state.sessionmaker() as session:
        await session.execute(update(User).where(User.id == admin.id).values(is_superuser=True))
        await session.commit()

    # 10.00 refunded in Stripe's dashboard, then 5.00 by us, then Stripe's total (15.00) again.
    await _deliver(client, event("charge.refunded", charge_refunded_object(intent_id, 5000, 1000)))
    ours = await client.post(
        "/api/v1/payments/refund",
        json={"order_id": order_id, "amount": "5.00"},
        headers=admin.headers,
    )
    await _deliver(client, event("charge.refunded", charge_refunded_object(intent_id, 5000, 1500)))

    assert ours.status_code == 200, ours.text
    assert ours.json()["refunded_total"] == "15.00"
    payment = await payment_of(app, order_id)
    assert payment is not None and str(payment.refunded_amount) == "15.00"
    async with app.state.sessionmaker() as session:
        rows = (
            await session.execute(
                select(Refund.amount, Refund.status, Refund.reason)
                .where(Refund.payment_id == payment.id)
                .order_by(Refund.id)
            )
        ).all()
    assert [(str(a), s, r) for a, s, r in rows] == [
        ("10.00", "succeeded", "provider"),
        ("5.00", "succeeded", "admin"),
    ]
    assert (await order_row(app, order_id)).payment_status == "partially_refunded"


async def test_payment_failed_then_succeeded_ends_paid_and_late_failure_changes_nothing(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    _, order_id, intent_id = await _order_with_intent(client, app)
    failed = intent_object(intent_id, 5000, status="requires_payment_method")

    await _deliver(client, event("payment_intent.payment_failed", failed))
    order = await order_row(app, order_id)
    assert (order.status, order.payment_status) == ("pending", "failed")

    await _deliver(client, event("payment_intent.succeeded", intent_object(intent_id, 5000)))
    await _deliver(client, event("payment_intent.payment_failed", failed))

    order = await order_row(app, order_id)
    assert (order.status, order.payment_status) == ("paid", "succeeded")


async def test_checkout_session_completed_and_paid_marks_the_order_paid(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    _, order_id, intent_id = await _order_with_intent(client, app)
    session = {
        "id": "cs_test_1",
        "object": "checkout.session",
        "payment_intent": intent_id,
        "payment_status": "paid",
        "amount_total": 5000,
        "currency": "usd",
    }

    answer = await _deliver(client, event("checkout.session.completed", session))

    assert answer.json()["result"] == "applied"
    assert (await order_row(app, order_id)).status == "paid"


async def test_unpaid_checkout_session_and_unknown_types_are_200_and_ignored(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    _, order_id, intent_id = await _order_with_intent(client, app)
    unpaid = {"id": "cs_2", "payment_intent": intent_id, "payment_status": "unpaid"}

    answers = [
        await _deliver(client, event("checkout.session.completed", unpaid)),
        await _deliver(client, event("customer.created", {"id": "cus_1", "object": "customer"})),
    ]

    assert [a.status_code for a in answers] == [200, 200]
    assert [a.json()["result"] for a in answers] == ["ignored", "ignored"]
    assert (await order_row(app, order_id)).status == "pending"
    assert await webhook_events(app) == 0


async def test_event_for_an_unknown_payment_is_200_and_changes_nothing(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    _, order_id, _ = await _order_with_intent(client, app)

    answer = await _deliver(
        client, event("payment_intent.succeeded", intent_object("pi_unknown", 5000))
    )

    assert answer.status_code == 200 and answer.json()["result"] == "unmatched"
    assert (await order_row(app, order_id)).status == "pending"
    assert await webhook_events(app) == 0


async def test_success_with_another_amount_does_not_mark_the_order_paid(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    _, order_id, intent_id = await _order_with_intent(client, app)

    await _deliver(client, event("payment_intent.succeeded", intent_object(intent_id, 100)))

    assert (await order_row(app, order_id)).status == "pending"


@pytest.mark.parametrize(
    "case", ["missing", "wrong_secret", "tampered", "stale", "garbage", "not_utf8"]
)
async def test_bad_signatures_are_400_and_change_nothing(
    client: httpx.AsyncClient, app: FastAPI, case: str
) -> None:
    _, order_id, intent_id = await _order_with_intent(client, app)
    body = event("payment_intent.succeeded", intent_object(intent_id, 5000))
    payload, headers = signed(body)
    if case == "missing":
        headers.pop("Stripe-Signature")
    elif case == "wrong_secret":
        payload, headers = signed(body, secret="whsec_someone_else")
    elif case == "tampered":
        payload = payload.replace(b'"amount": 5000', b'"amount": 5001')
    elif case == "stale":
        payload, headers = signed(body, timestamp=int(time.time()) - 301)
    elif case == "garbage":
        headers["Stripe-Signature"] = "t=abc,v1=nothing"
    elif case == "not_utf8":
        payload = b"\xff\xfe" + payload

    answer = await client.post(WEBHOOK, content=payload, headers=headers)

    assert answer.status_code == 400
    assert answer.json()["error"] == "payment_error"
    assert (await order_row(app, order_id)).status == "pending"
    assert await webhook_events(app) == 0


async def test_signed_body_that_is_not_an_event_is_400(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    for body in ("not json", json.dumps([1, 2]), json.dumps({"id": "evt_1"})):
        payload, headers = signed(body)
        answer = await client.post(WEBHOOK, content=payload, headers=headers)
        assert answer.status_code == 400, body
        assert answer.json()["error"] == "payment_error"


async def test_webhook_without_a_configured_secret_is_503(make_app: AppFactory) -> None:
    app = await make_app(STRIPE_WEBHOOK_SECRET=None)
    payload, headers = signed(event("payment_intent.succeeded", intent_object("pi_x", 100)))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        answer = await client.post(WEBHOOK, content=payload, headers=headers)
    assert answer.status_code == 503
    assert answer.json()["error"] == "service_unavailable"


async def test_the_event_id_is_stored_once(client: httpx.AsyncClient, app: FastAPI) -> None:
    _, _, intent_id = await _order_with_intent(client, app)
    body = event("payment_intent.succeeded", intent_object(intent_id, 5000), "evt_fixed")

    await _deliver(client, body)
    await _deliver(client, body)

    assert await webhook_events(app) == 1
    async with app.state.sessionmaker() as session:
        row = await session.get(WebhookEvent, "evt_fixed")
    assert row is not None and row.type == "payment_intent.succeeded"
