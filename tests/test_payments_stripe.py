"""Payments through the real `stripe` SDK against localstripe on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
import stripe
import uvicorn
from fastapi import FastAPI
from sqlalchemy import select, update

from sellerdesk.models import Payment, Refund
from sellerdesk.models.base import utcnow
from sellerdesk.payments import service
from sellerdesk.payments.providers import (
    REFUND_KEY_METADATA,
    IntentRef,
    PaymentDeclined,
    ProviderFailed,
    StripeProvider,
)
from tests.conftest import AppFactory, make_settings
from tests.factories import expire_claim
from tests.orders_factories import make_user
from tests.payment_fakes import GatedProvider
from tests.stripe_fixtures import (
    WEBHOOK_SECRET,
    count,
    event,
    free_port,
    gather,
    localstripe,
    make_order,
    order_paid_events,
    order_row,
    payment_of,
    signed,
    stripe_client,
    stripe_settings,
    webhook_events,
)

__all__ = ["localstripe"]  # the session fixture, imported for pytest

INTENT = "/api/v1/payments/create-payment-intent"
REFUND = "/api/v1/payments/refund"


@pytest.fixture
async def app(make_app: AppFactory, localstripe: str) -> FastAPI:
    return await make_app(**stripe_settings(localstripe))


@pytest.fixture
async def sdk(localstripe: str) -> AsyncIterator[stripe.StripeClient]:
    http = stripe.HTTPXClient()
    yield stripe_client(localstripe, http)
    await http.close_async()


async def _intent(
    client: httpx.AsyncClient, app: FastAPI, total: str = "42.00"
) -> tuple[dict[str, str], int, str]:
    buyer = await make_user(app)
    order_id = await make_order(app, buyer.id, total)
    answer = await client.post(INTENT, json={"order_id": order_id}, headers=buyer.headers)
    assert answer.status_code == 200, answer.text
    return buyer.headers, order_id, answer.json()["payment_intent_id"]


async def test_intent_is_created_at_stripe_with_the_order_total_in_cents(
    client: httpx.AsyncClient, app: FastAPI, sdk: stripe.StripeClient
) -> None:
    headers, order_id, intent_id = await _intent(client, app, "42.50")

    intent = await sdk.v1.payment_intents.retrieve_async(intent_id)

    assert (intent.amount, intent.currency, intent.status) == (
        4250,
        "usd",
        "requires_payment_method",
    )
    assert intent.metadata["order_id"] == str(order_id)
    assert intent.metadata["purpose"] == f"order:{order_id}"  # what it pays, for the dashboard
    again = await client.post(INTENT, json={"order_id": order_id}, headers=headers)
    assert again.json()["payment_intent_id"] == intent_id
    assert again.json()["client_secret"] == intent.client_secret


async def test_concurrent_create_payment_intent_makes_one_stripe_intent(
    client: httpx.AsyncClient, app: FastAPI, sdk: stripe.StripeClient
) -> None:
    buyer = await make_user(app)
    order_id = await make_order(app, buyer.id, "10.00")
    before = len((await sdk.v1.payment_intents.list_async({"limit": 100})).data)

    answers = await gather(
        *(client.post(INTENT, json={"order_id": order_id}, headers=buyer.headers) for _ in range(8))
    )

    assert [a.status_code for a in answers] == [200] * 8
    assert len({a.json()["payment_intent_id"] for a in answers}) == 1
    after = len((await sdk.v1.payment_intents.list_async({"limit": 100})).data)
    assert after - before == 1
    assert await count(app, Payment) == 1


async def test_confirm_payment_confirms_the_attached_card_and_marks_the_order_paid(
    client: httpx.AsyncClient, app: FastAPI, sdk: stripe.StripeClient
) -> None:
    headers, order_id, intent_id = await _intent(client, app)
    # What Stripe.js does in the browser: attach the customer's card to the intent.
    await sdk.v1.payment_intents.update_async(intent_id, {"payment_method": "pm_card_visa"})

    pending = await client.post(f"/api/v1/payments/confirm-payment/{order_id}", headers=headers)
    again = await client.post(f"/api/v1/payments/confirm-payment/{order_id}", headers=headers)

    assert pending.status_code == 200, pending.text
    assert pending.json()["order"]["status"] == "paid"
    assert pending.json()["order"]["payment_intent_id"] == intent_id
    assert again.status_code == 200
    assert (await sdk.v1.payment_intents.retrieve_async(intent_id)).status == "succeeded"
    assert await order_paid_events(app, order_id) == 1


async def test_confirm_before_the_customer_paid_is_400_payment_error(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    headers, order_id, _ = await _intent(client, app)

    answer = await client.post(f"/api/v1/payments/confirm-payment/{order_id}", headers=headers)

    assert answer.status_code == 400
    assert answer.json()["error"] == "payment_error"
    assert (await order_row(app, order_id)).status == "pending"


async def test_partial_and_full_refunds_reach_stripe(
    client: httpx.AsyncClient, app: FastAPI, sdk: stripe.StripeClient
) -> None:
    admin = await make_user(app, admin=True)
    headers, order_id, intent_id = await _intent(client, app, "42.00")
    await sdk.v1.payment_intents.update_async(intent_id, {"payment_method": "pm_card_visa"})
    await client.post(f"/api/v1/payments/confirm-payment/{order_id}", headers=headers)

    partial = await client.post(
        REFUND, json={"order_id": order_id, "amount": "10.00"}, headers=admin.headers
    )
    over = await client.post(
        REFUND, json={"order_id": order_id, "amount": "32.01"}, headers=admin.headers
    )
    rest = await client.post(REFUND, json={"order_id": order_id}, headers=admin.headers)

    assert (partial.status_code, over.status_code, rest.status_code) == (200, 409, 200)
    assert rest.json()["order"]["status"] == "refunded"
    intent = await sdk.v1.payment_intents.retrieve_async(intent_id, {"expand": ["latest_charge"]})
    charge = intent.latest_charge
    assert isinstance(charge, stripe.Charge)
    assert charge.amount_refunded == 4200


async def test_charge_refunded_webhook_after_our_own_refund_changes_nothing_more(
    client: httpx.AsyncClient, app: FastAPI, sdk: stripe.StripeClient
) -> None:
    admin = await make_user(app, admin=True)
    headers, order_id, intent_id = await _intent(client, app, "42.00")
    await sdk.v1.payment_intents.update_async(intent_id, {"payment_method": "pm_card_visa"})
    await client.post(f"/api/v1/payments/confirm-payment/{order_id}", headers=headers)
    await client.post(REFUND, json={"order_id": order_id, "amount": "2.00"}, headers=admin.headers)
    intent = await sdk.v1.payment_intents.retrieve_async(intent_id, {"expand": ["latest_charge"]})
    assert isinstance(intent.latest_charge, stripe.Charge)
    charge = intent.latest_charge.to_dict()

    payload, sig = signed(event("charge.refunded", charge))
    answer = await client.post("/api/v1/payments/webhook", content=payload, headers=sig)

    assert answer.json()["result"] == "applied"
    payment = await payment_of(app, order_id)
    assert payment is not None and payment.refunded_amount == Decimal("2.00")
    assert (await order_row(app, order_id)).payment_status == "partially_refunded"


async def test_checkout_session_completed_rereads_the_intent_from_stripe(
    client: httpx.AsyncClient, app: FastAPI, sdk: stripe.StripeClient
) -> None:
    _, order_id, intent_id = await _intent(client, app, "42.00")
    session = {
        "id": "cs_test_reread",
        "object": "checkout.session",
        "payment_intent": intent_id,
        "payment_status": "paid",
        "amount_total": 4200,
        "currency": "usd",
    }

    # Stripe still says the intent is unpaid: the summary alone does not mark the order paid.
    payload, sig = signed(event("checkout.session.completed", session))
    await client.post("/api/v1/payments/webhook", content=payload, headers=sig)
    assert (await order_row(app, order_id)).status == "pending"

    await sdk.v1.payment_intents.update_async(intent_id, {"payment_method": "pm_card_visa"})
    await sdk.v1.payment_intents.confirm_async(intent_id)
    payload, sig = signed(event("checkout.session.completed", session))
    await client.post("/api/v1/payments/webhook", content=payload, headers=sig)
    assert (await order_row(app, order_id)).status == "paid"


async def test_reconciler_applies_a_success_whose_webhook_was_lost(
    client: httpx.AsyncClient, app: FastAPI, sdk: stripe.StripeClient
) -> None:
    _, order_id, intent_id = await _intent(client, app)
    await sdk.v1.payment_intents.update_async(intent_id, {"payment_method": "pm_card_visa"})
    await sdk.v1.payment_intents.confirm_async(intent_id)  # paid; its webhook never arrives

    too_recent = await service.reconcile_pending_payments(
        app.state.sessionmaker, app.state.payments, older_than=timedelta(minutes=10)
    )
    async with app.state.sessionmaker() as session:
        await session.execute(update(Payment).values(created_at=utcnow() - timedelta(minutes=11)))
        await session.commit()
    changed = await service.reconcile_pending_payments(
        app.state.sessionmaker, app.state.payments, older_than=timedelta(minutes=10)
    )
    again = await service.reconcile_pending_payments(
        app.state.sessionmaker, app.state.payments, older_than=timedelta(minutes=10)
    )

    assert (too_recent, changed, again) == (0, 1, 0)
    order = await order_row(app, order_id)
    assert (order.status, order.payment_status) == ("paid", "succeeded")
    assert await order_paid_events(app, order_id) == 1


async def test_unreachable_stripe_is_502_payment_error(make_app: AppFactory) -> None:
    app = await make_app(**stripe_settings("http://127.0.0.1:9"))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        buyer = await make_user(app)
        order_id = await make_order(app, buyer.id)
        answer = await client.post(INTENT, json={"order_id": order_id}, headers=buyer.headers)
    assert answer.status_code == 502
    assert answer.json()["error"] == "payment_error"
    # The payment was recorded before Stripe was called; it has no intent, so nobody can pay
    # it, and the next request for the order carries on with it.
    payment = await payment_of(app, order_id)
    assert payment is not None and (payment.intent_id, payment.status) == (None, "pending")
    assert await count(app, Payment) == 1


async def test_sdk_errors_map_to_declines_and_provider_failures(localstripe: str) -> None:
    settings = make_settings("sqlite+aiosqlite://", None, "x", **stripe_settings(localstripe))
    provider = StripeProvider(settings)
    try:
        with pytest.raises(ProviderFailed):
            await provider.retrieve_intent(IntentRef("pi_does_not_exist", 100, "usd"))

        async def declined() -> None:
            raise stripe.CardError("Your card was declined.", "card", "card_declined")

        with pytest.raises(PaymentDeclined):
            await provider._call(declined())
    finally:
        await provider.close()


# localstripe 1.15 lets the decline test cards (pm_card_visa_chargeDeclined, 4000000000000002)
# succeed on PaymentIntents, so the decline path runs on Stripe's recorded responses instead.
DECLINE_ERROR = {
    "error": {
        "type": "card_error",
        "code": "card_declined",
        "decline_code": "generic_decline",
        "message": "Your card was declined.",
        "payment_intent": {"id": "pi_recorded_1"},
    }
}


def _recorded_intent(status: str, **extra: object) -> dict[str, object]:
    return {
        "id": "pi_recorded_1",
        "object": "payment_intent",
        "amount": 4200,
        "currency": "usd",
        "client_secret": "pi_recorded_1_secret_abc",
        "status": status,
        "payment_method": "pm_recorded",
        "latest_charge": None,
        "last_payment_error": None,
        **extra,
    }


class RecordedStripe:
    """Stripe's answers for: create an intent, then confirm a card that is declined."""

    def __init__(self) -> None:
        self.retrieves = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST" and path == "/v1/payment_intents":
            assert request.headers["Idempotency-Key"].endswith(":payment_intent")
            return httpx.Response(200, json=_recorded_intent("requires_payment_method"))
        if request.method == "POST" and path == "/v1/payment_intents/pi_recorded_1/confirm":
            assert request.headers["Idempotency-Key"] == "pi_recorded_1:confirm:pm_recorded"
            return httpx.Response(402, json=DECLINE_ERROR)
        if request.method == "GET" and path == "/v1/payment_intents/pi_recorded_1":
            self.retrieves += 1
            if self.retrieves == 1:  # the card is attached, waiting for confirmation
                return httpx.Response(200, json=_recorded_intent("requires_confirmation"))
            declined = {"code": "card_declined", "message": "Your card was declined."}
            return httpx.Response(
                200, json=_recorded_intent("requires_payment_method", last_payment_error=declined)
            )
        return httpx.Response(404, json={"error": {"type": "invalid_request_error"}})


async def test_card_declined_on_confirm_is_400_and_records_the_failure(
    make_app: AppFactory,
) -> None:
    app = await make_app(**stripe_settings("http://stripe.recorded"))
    provider = app.state.payments
    assert isinstance(provider, StripeProvider)
    provider._http._client_async = httpx.AsyncClient(  # recorded responses, no network
        transport=httpx.MockTransport(RecordedStripe())
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        buyer = await make_user(app)
        order_id = await make_order(app, buyer.id, "42.00")
        created = await client.post(INTENT, json={"order_id": order_id}, headers=buyer.headers)
        declined = await client.post(
            f"/api/v1/payments/confirm-payment/{order_id}", headers=buyer.headers
        )

    assert created.status_code == 200, created.text
    assert declined.status_code == 400
    assert declined.json()["error"] == "payment_error"
    assert "declined" in declined.json()["message"]
    order = await order_row(app, order_id)
    assert (order.status, order.payment_status) == ("pending", "failed")


async def test_localstripe_delivers_a_signed_webhook_that_marks_the_order_paid(
    client: httpx.AsyncClient, app: FastAPI, sdk: stripe.StripeClient, localstripe: str
) -> None:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    try:
        for _ in range(250):
            if server.started:
                break
            await asyncio.sleep(0.02)
        async with httpx.AsyncClient() as raw:
            hook = await raw.post(
                f"{localstripe}/_config/webhooks/sellerdesk-{port}",
                data={
                    "url": f"http://127.0.0.1:{port}/api/v1/payments/webhook",
                    "secret": WEBHOOK_SECRET,
                    "events[]": "payment_intent.succeeded",
                },
            )
            assert hook.status_code == 200, hook.text
        _, order_id, intent_id = await _intent(client, app)
        await sdk.v1.payment_intents.update_async(intent_id, {"payment_method": "pm_card_visa"})
        await sdk.v1.payment_intents.confirm_async(intent_id)  # the browser paid; no confirm call

        for _ in range(100):  # localstripe waits 1 s before it sends
            if (await order_row(app, order_id)).status == "paid":
                break
            await asyncio.sleep(0.05)
    finally:
        server.should_exit = True
        await serving

    order = await order_row(app, order_id)
    assert (order.status, order.payment_status) == ("paid", "succeeded")
    assert await webhook_events(app) == 1


# --------------------------------------------------------------------------- two-phase refunds


@pytest.fixture
def gated(app: FastAPI) -> Iterator[GatedProvider]:
    """Stripe (localstripe) behind the test gate: calls pass through, and can be held or failed."""
    provider = GatedProvider(app, inner=app.state.payments).install()
    yield provider
    provider.uninstall()


async def _paid_through_stripe(
    client: httpx.AsyncClient, app: FastAPI, sdk: stripe.StripeClient, total: str = "42.00"
) -> tuple[int, str]:
    headers, order_id, intent_id = await _intent(client, app, total)
    await sdk.v1.payment_intents.update_async(intent_id, {"payment_method": "pm_card_visa"})
    paid = await client.post(f"/api/v1/payments/confirm-payment/{order_id}", headers=headers)
    assert paid.status_code == 200, paid.text
    return order_id, intent_id


async def _stripe_refunds(sdk: stripe.StripeClient, intent_id: str) -> list[tuple[int, str]]:
    """What Stripe refunded for the intent: (amount, our key) per refund."""
    listed = await sdk.v1.refunds.list_async({"payment_intent": intent_id, "limit": 100})
    refunds = [r.to_dict() for r in listed.data]
    return [(r["amount"], (r.get("metadata") or {}).get(REFUND_KEY_METADATA, "")) for r in refunds]


async def _refund_rows(app: FastAPI, order_id: int) -> list[Refund]:
    payment = await payment_of(app, order_id)
    assert payment is not None
    async with app.state.sessionmaker() as session:
        rows = await session.scalars(
            select(Refund).where(Refund.payment_id == payment.id).order_by(Refund.id)
        )
        return list(rows)


async def test_a_refund_whose_commit_failed_after_stripe_refunded_is_refunded_once_on_retry(
    client: httpx.AsyncClient, app: FastAPI, sdk: stripe.StripeClient, gated: GatedProvider
) -> None:
    admin = await make_user(app, admin=True)
    order_id, intent_id = await _paid_through_stripe(client, app, sdk)
    gated.fail_commit_after("refund")
    headers = {**admin.headers, "Idempotency-Key": "stripe-refund-1"}
    body = {"order_id": order_id, "amount": "10.00"}

    lost = await client.post(REFUND, json=body, headers=headers)
    assert lost.status_code == 503, lost.text
    [row] = await _refund_rows(app, order_id)
    assert row.status == "pending"
    await expire_claim(app, admin.id, "stripe-refund-1")
    retry = await client.post(REFUND, json=body, headers=headers)

    assert retry.status_code == 200, retry.text
    assert (retry.json()["id"], retry.json()["refunded_total"]) == (row.id, "10.00")
    assert await _stripe_refunds(sdk, intent_id) == [(1000, f"refund:{row.id}")]
    [row] = await _refund_rows(app, order_id)
    assert (row.status, row.provider_refund_id is not None) == ("succeeded", True)


async def test_a_refund_cut_off_after_stripe_refunded_is_settled_by_the_job_once(
    client: httpx.AsyncClient, app: FastAPI, sdk: stripe.StripeClient, gated: GatedProvider
) -> None:
    admin = await make_user(app, admin=True)
    order_id, intent_id = await _paid_through_stripe(client, app, sdk)
    provider = gated
    provider.hold("refund", after=True)
    call = asyncio.ensure_future(
        client.post(REFUND, json={"order_id": order_id}, headers=admin.headers)
    )
    await asyncio.wait_for(provider.entered.wait(), 10)
    call.cancel()
    await asyncio.gather(call, return_exceptions=True)
    provider.release()
    [row] = await _refund_rows(app, order_id)
    assert row.status == "pending"

    async def settle() -> int:
        return await service.settle_pending_refunds(
            app.state.sessionmaker,
            provider,
            older_than=timedelta(minutes=5),
            now=utcnow() + timedelta(minutes=6),
        )

    assert (await settle(), await settle()) == (1, 0)

    assert await _stripe_refunds(sdk, intent_id) == [(4200, f"refund:{row.id}")]
    assert provider.calls.count("refund") == 1  # the job found it, and made none
    payment = await payment_of(app, order_id)
    assert payment is not None
    assert (payment.refunded_amount, payment.refund_reserved) == (Decimal("42.00"), Decimal("0"))
    assert (await order_row(app, order_id)).status == "refunded"


async def test_a_refund_stripe_never_received_is_made_by_the_job_with_its_key(
    client: httpx.AsyncClient, app: FastAPI, sdk: stripe.StripeClient, gated: GatedProvider
) -> None:
    admin = await make_user(app, admin=True)
    order_id, intent_id = await _paid_through_stripe(client, app, sdk)
    gated.fail_next("refund", ProviderFailed())
    unknown = await client.post(
        REFUND, json={"order_id": order_id, "amount": "2.50"}, headers=admin.headers
    )
    assert unknown.status_code == 502
    assert await _stripe_refunds(sdk, intent_id) == []

    settled = await service.settle_pending_refunds(
        app.state.sessionmaker, gated, older_than=timedelta(0), now=utcnow()
    )

    [row] = await _refund_rows(app, order_id)
    assert (settled, row.status) == (1, "succeeded")
    assert await _stripe_refunds(sdk, intent_id) == [(250, f"refund:{row.id}")]
