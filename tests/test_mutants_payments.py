"""Payments behaviour that the mutation run of `src/sellerdesk/payments/` showed no test held.

Each test states a rule a client, the outbox or Stripe relies on: the reconciler's batch (the
oldest stale pending payments that have an intent, at most `limit`, and only real changes
counted), the webhook log's newest-first page, refunds that leave other pending refunds'
reserved cents alone and whose 409 says whether anything is left, refunds under different
Idempotency-Keys, the outbox refund of a payment's rest (one unit or less, resumed after no
answer, nothing on an unpaid or refunded payment, a refusal that is not retried), a completed
Checkout Session that pays its payment on the first delivery and never a payment with another
intent, and what we send to Stripe and read back (Checkout's cancel page, metadata and key; the
expanded charge that carries refunds; the confirm, cancel and refund keys; the refund list's
page size, Stripe's maximum).

The Stripe requests are checked on a recording stand-in for the SDK's client: localstripe keeps
neither Checkout's `payment_intent_data` nor the request options.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from sellerdesk.errors import ServiceUnavailable
from sellerdesk.events import OutboxContext, is_transient
from sellerdesk.models import Payment, WebhookEvent
from sellerdesk.models.base import utcnow
from sellerdesk.payments import service as payments_service
from sellerdesk.payments.providers import (
    REFUND_KEY_METADATA,
    IntentInfo,
    IntentRef,
    ManualProvider,
    ProviderFailed,
    StripeProvider,
)
from tests.conftest import AppFactory
from tests.orders_factories import make_product, make_user
from tests.test_payment_phases import SETTLE_AFTER, World, world

__all__ = ["world"]  # the fixture, imported for pytest

REFUSED = "The payment provider refused the refund; nothing was refunded."


def outbox(app: FastAPI) -> OutboxContext:
    return OutboxContext(sessionmaker=app.state.sessionmaker, settings=app.state.settings)


# --------------------------------------------------------------------------- reconciler


class Answers(ManualProvider):
    """The provider's answer per intent: `status` for every intent asked about."""

    def __init__(self, status: str) -> None:
        self.status = status
        self.asked: list[str] = []

    async def retrieve_intent(self, ref: IntentRef) -> IntentInfo:
        self.asked.append(ref.intent_id)
        return IntentInfo(ref.intent_id, self.status, ref.amount, ref.currency)  # type: ignore[arg-type]


async def add_payment(
    app: FastAPI,
    user_id: int,
    name: str,
    *,
    age: timedelta,
    status: str = "pending",
    intent: bool = True,
) -> int:
    async with app.state.sessionmaker() as session:
        payment = Payment(
            purpose=f"mutants:{name}",
            provider="manual",
            intent_id=f"pi_{name}" if intent else None,
            user_id=user_id,
            amount=Decimal("10.00"),
            currency="usd",
            status=status,
            refunded_amount=Decimal("0.00"),
            created_at=utcnow() - age,
        )
        session.add(payment)
        await session.commit()
        return payment.id


async def status_of(app: FastAPI, payment_id: int) -> str:
    async with app.state.sessionmaker() as session:
        payment = await session.get(Payment, payment_id)
        assert payment is not None
        return payment.status


async def test_the_reconciler_takes_a_batch_of_the_oldest_stale_pending_payments_with_an_intent(
    app: FastAPI,
) -> None:
    """Paid ones, ones never started (no intent) and fresh ones are not its work, and do not
    take a place in the batch; the oldest stale one goes first."""
    user = await make_user(app)
    hour = timedelta(hours=1)
    newer = await add_payment(app, user.id, "newer", age=2 * hour)
    older = await add_payment(app, user.id, "older", age=3 * hour)  # inserted after `newer`
    await add_payment(app, user.id, "paid", age=4 * hour, status="succeeded")
    await add_payment(app, user.id, "unstarted", age=5 * hour, intent=False)
    fresh = await add_payment(app, user.id, "fresh", age=timedelta(minutes=1))
    provider = Answers("succeeded")

    async def run(limit: int) -> int:
        return await payments_service.reconcile_pending_payments(
            app.state.sessionmaker, provider, older_than=hour, limit=limit
        )

    assert await run(1) == 1
    assert provider.asked == ["pi_older"]
    assert (await status_of(app, older), await status_of(app, newer)) == ("succeeded", "pending")
    assert await run(10) == 1
    assert provider.asked == ["pi_older", "pi_newer"]
    assert await status_of(app, newer) == "succeeded"
    assert await status_of(app, fresh) == "pending"


async def test_the_reconciler_counts_only_payments_whose_state_changed(app: FastAPI) -> None:
    user = await make_user(app)
    waiting = await add_payment(app, user.id, "waiting", age=timedelta(hours=2))

    changed = await payments_service.reconcile_pending_payments(
        app.state.sessionmaker, Answers("pending"), older_than=timedelta(hours=1)
    )

    assert changed == 0
    assert await status_of(app, waiting) == "pending"


# --------------------------------------------------------------------------- webhook log


async def test_the_webhook_log_shows_the_newest_fifty_events_newest_first(app: FastAPI) -> None:
    """Received oldest first, with ids that sort the same way: only the time orders them."""
    now = utcnow()
    async with app.state.sessionmaker() as session:
        for n in range(52):  # evt_000 is the oldest
            when = now - timedelta(minutes=52 - n)
            session.add(WebhookEvent(id=f"evt_{n:03}", type="charge.refunded", received_at=when))
            await session.flush()
        await session.commit()
        events = await payments_service.recent_webhook_events(session)
        two = await payments_service.recent_webhook_events(session, limit=2)

    assert [e.id for e in events] == [f"evt_{n:03}" for n in range(51, 1, -1)]
    assert [e.id for e in two] == ["evt_051", "evt_050"]


# --------------------------------------------------------------------------- refunds


async def test_a_refused_refund_gives_back_its_cents_and_leaves_other_pending_refunds_held(
    world: World,
) -> None:
    order_id = await world.paid_order()  # 30.00
    world.provider.fail_next("refund", ProviderFailed())  # no answer: stays pending
    assert (await world.refund(order_id, "10.50")).status_code == 502
    world.provider.fail_next("refund", ProviderFailed("no", transient=False))

    refused = await world.refund(order_id, "7.25")

    assert refused.status_code == 502
    assert refused.json()["message"] == REFUSED
    payment = await world.payment(order_id)
    assert (payment.refunded_amount, payment.refund_reserved) == (Decimal("0"), Decimal("10.50"))
    assert await world.settle() == 1
    payment = await world.payment(order_id)
    assert (payment.refunded_amount, payment.refund_reserved) == (Decimal("10.50"), Decimal("0"))


async def test_a_refund_over_what_is_left_says_whether_anything_is_left(world: World) -> None:
    order_id = await world.paid_order()  # 30.00
    assert (await world.refund(order_id, "29.50")).status_code == 200

    over = await world.refund(order_id, "1.00")  # 0.50 left
    assert (await world.refund(order_id, "0.50")).status_code == 200
    done = await world.refund(order_id, "0.50")

    assert over.status_code == 409
    assert over.json()["message"] == "The refund exceeds what is left to refund."
    assert over.json()["details"]["refundable"] == "0.50"
    assert done.status_code == 409
    assert done.json()["message"] == "This payment is already refunded in full."


async def test_refunding_the_rest_of_a_payment_under_one_unit_refunds_it_in_full(
    world: World,
) -> None:
    product_id = await make_product(world.app, stock=5, price="0.50")
    order_id = await world.paid_order(1, product_id)
    payment = await world.payment(order_id)

    settled = await payments_service.refund_rest_once(
        outbox(world.app), payment.id, request_key="rest", reason="paid_after_cancel"
    )

    assert settled is True
    assert (await world.payment(order_id)).refunded_amount == Decimal("0.50")
    assert world.provider.refunded_total == 50


async def test_refunding_the_rest_again_carries_on_with_the_refund_the_provider_did_not_answer(
    world: World,
) -> None:
    """The first run reserved all of it and got no answer: the retry finds nothing refundable
    but its own pending refund, and must finish that one, not give up."""
    order_id = await world.paid_order()  # 30.00
    payment = await world.payment(order_id)
    world.provider.fail_next("refund", ProviderFailed())
    with pytest.raises(ProviderFailed):
        await payments_service.refund_rest_once(
            outbox(world.app), payment.id, request_key="rest", reason="paid_after_cancel"
        )
    assert [r.status for r in await world.refunds(order_id)] == ["pending"]

    settled = await payments_service.refund_rest_once(
        outbox(world.app), payment.id, request_key="rest", reason="paid_after_cancel"
    )

    assert settled is True
    assert [r.status for r in await world.refunds(order_id)] == ["succeeded"]
    assert (await world.payment(order_id)).refunded_amount == Decimal("30.00")
    assert world.provider.refunded_total == 3000


async def test_refunding_the_rest_of_an_unpaid_or_refunded_payment_does_nothing(
    world: World,
) -> None:
    unpaid = await world.order()
    started = await world.start_intent(unpaid)
    assert started.status_code == 200, started.text
    refunded = await world.paid_order()
    assert (await world.refund(refunded)).status_code == 200

    for order_id in (unpaid, refunded):
        payment = await world.payment(order_id)
        settled = await payments_service.refund_rest_once(
            outbox(world.app), payment.id, request_key="rest", reason="paid_after_cancel"
        )
        assert settled is False
    assert world.provider.refunded_total == 3000
    assert len(await world.refunds(unpaid)) == 0
    assert len(await world.refunds(refunded)) == 1


async def test_a_refund_the_provider_refuses_is_not_retried_by_the_outbox(world: World) -> None:
    order_id = await world.paid_order()
    payment = await world.payment(order_id)
    world.provider.fail_next("refund", ProviderFailed("card closed", transient=False))

    with pytest.raises(ProviderFailed) as refused:
        await payments_service.refund_rest_once(
            outbox(world.app), payment.id, request_key="rest", reason="paid_after_cancel"
        )

    assert refused.value.message == REFUSED
    assert refused.value.transient is False and not is_transient(refused.value)
    assert [r.status for r in await world.refunds(order_id)] == ["failed"]


# --------------------------------------------------------------------------- manual gateway


async def test_the_manual_gateway_reports_what_was_refunded_of_an_intent() -> None:
    gateway = ManualProvider()
    ref = IntentRef("pi_manual", 3000, "usd", refunded=1250)

    assert (await gateway.retrieve_intent(ref)).amount_refunded == 1250
    canceled = await gateway.cancel_intent(ref)
    assert (canceled.status, canceled.amount_refunded) == ("canceled", 1250)


# --------------------------------------------------------------------------- what Stripe gets


class _Answer:
    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body

    def to_dict(self) -> dict[str, Any]:
        return self.body


class _Endpoint:
    """One SDK method: records its arguments, answers `body`."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, *args: Any) -> Any:
        self.calls.append(args)
        return self._answer()

    async def _answer(self) -> _Answer:
        return _Answer(self.body)


class _Retrieve(_Endpoint):
    """An intent in `status`, 5.00 of it refunded: its charge is an id unless asked to expand
    it (as Stripe answers)."""

    def __init__(self, status: str = "succeeded", method: Any = None) -> None:
        super().__init__({})
        self.status, self.method = status, method

    def __call__(self, *args: Any) -> Any:
        self.calls.append(args)
        params = args[1] if len(args) > 1 else None
        expanded = "latest_charge" in ((params or {}).get("expand") or [])
        charge = {"id": "ch_1", "amount_refunded": 500} if expanded else "ch_1"
        self.body = {
            "id": args[0],
            "status": self.status,
            "amount": 900,
            "currency": "usd",
            "latest_charge": charge,
            "payment_method": self.method,
        }
        return self._answer()


class _Declines(_Endpoint):
    def __call__(self, *args: Any) -> Any:
        self.calls.append(args)
        return self._decline()

    async def _decline(self) -> Any:
        import stripe

        raise stripe.CardError("Your card was declined.", None, "card_declined")


def recording_stripe(
    checkout: dict[str, Any] | None = None,
    refunds: list[dict[str, Any]] | None = None,
    refund: dict[str, Any] | None = None,
) -> tuple[StripeProvider, SimpleNamespace]:
    """A StripeProvider whose SDK client records each request and answers as Stripe would."""
    v1 = SimpleNamespace(
        checkout=SimpleNamespace(sessions=SimpleNamespace(create_async=_Endpoint(checkout or {}))),
        payment_intents=SimpleNamespace(
            cancel_async=_Endpoint(
                {"id": "pi_1", "status": "canceled", "amount": 900, "currency": "usd"}
            )
        ),
        refunds=SimpleNamespace(
            list_async=_Endpoint({"data": refunds or []}),
            create_async=_Endpoint(refund or {}),
        ),
    )
    v1.payment_intents.retrieve_async = _Retrieve()
    provider = StripeProvider.__new__(StripeProvider)
    provider._client = SimpleNamespace(v1=v1)  # type: ignore[assignment]
    provider._method_types = ["card"]
    return provider, v1


SESSION = {"id": "cs_test_1", "url": "https://checkout.stripe.com/c/pay/cs_test_1"}


async def test_a_checkout_session_carries_the_cancel_page_the_metadata_and_our_key(
    app: FastAPI,
) -> None:
    """The app's own provider is the manual gateway here: the payment is Stripe's because
    Stripe takes it. Metadata goes on the session and on the intent Checkout makes (what a
    payment_intent webhook carries), with our purpose beside the caller's."""
    user = await make_user(app)
    stripe, v1 = recording_stripe({**SESSION, "payment_intent": "pi_checkout"})
    purpose = "mutants:checkout"

    async with app.state.sessionmaker() as session:
        payment, url = await payments_service.create_checkout(
            session,
            user_id=user.id,
            amount=Decimal("9.00"),
            currency="usd",
            purpose=purpose,
            name="Pack: 100 credits",
            success_url="http://test/done",
            cancel_url="http://test/cancelled",
            idempotency_key="mutants:checkout:key",
            metadata={"credit_purchase_id": "7"},
            provider=stripe,
        )
        await session.commit()

    assert url == SESSION["url"]
    assert (payment.provider, payment.intent_id) == ("stripe", "pi_checkout")
    [(params, options)] = v1.checkout.sessions.create_async.calls
    metadata = {"credit_purchase_id": "7", "purpose": purpose}
    assert params["cancel_url"] == "http://test/cancelled"
    assert params["metadata"] == metadata
    assert params["payment_intent_data"] == {"metadata": metadata}
    assert options == {"idempotency_key": "mutants:checkout:key"}


async def test_the_checkout_answer_gives_the_session_and_its_intent_only_when_it_is_an_id() -> None:
    with_id, _ = recording_stripe({**SESSION, "payment_intent": "pi_made"})
    expanded, _ = recording_stripe({**SESSION, "payment_intent": {"id": "pi_made"}})
    args: dict[str, Any] = {
        "amount": 900,
        "currency": "usd",
        "name": "Pack",
        "reference": "mutants:ref",
        "success_url": "http://test/done",
        "cancel_url": "http://test/cancelled",
        "idempotency_key": "key",
        "metadata": {},
    }

    made = await with_id.create_checkout(**args)
    assert (made.id, made.url, made.intent_id) == ("cs_test_1", SESSION["url"], "pi_made")
    assert (await expanded.create_checkout(**args)).intent_id is None


async def test_hosted_checkout_without_stripe_is_refused_with_a_reason(app: FastAPI) -> None:
    user = await make_user(app)
    async with app.state.sessionmaker() as session:
        with pytest.raises(ServiceUnavailable) as refused:
            await payments_service.create_checkout(
                session,
                user_id=user.id,
                amount=Decimal("9.00"),
                currency="usd",
                purpose="mutants:manual",
                name="Pack",
                success_url="http://test/done",
                cancel_url="http://test/cancelled",
                idempotency_key="key",
                metadata={},
                provider=ManualProvider(),
            )
    assert refused.value.message == "Hosted checkout needs the Stripe payment provider."


async def test_cancelling_at_stripe_sends_a_key_so_a_retry_is_the_same_cancel() -> None:
    stripe, v1 = recording_stripe()

    info = await stripe.cancel_intent(IntentRef("pi_1", 900, "usd"))

    assert info.status == "canceled"
    [(intent_id, _, options)] = v1.payment_intents.cancel_async.calls
    assert (intent_id, options) == ("pi_1", {"idempotency_key": "pi_1:cancel"})


async def test_finding_a_refund_by_its_key_asks_for_stripes_largest_page() -> None:
    """Stripe refuses `limit` above 100 (invalid_request_error)."""
    refund = {
        "id": "re_1",
        "status": "succeeded",
        "amount": 500,
        "metadata": {REFUND_KEY_METADATA: "refund:1"},
    }
    stripe, v1 = recording_stripe(refunds=[refund])

    found = await stripe.find_refund(IntentRef("pi_1", 900, "usd"), idempotency_key="refund:1")

    assert found is not None and (found.id, found.amount) == ("re_1", 500)
    [(params,)] = v1.refunds.list_async.calls
    assert params == {"payment_intent": "pi_1", "limit": 100}


async def test_reading_an_intent_from_stripe_sees_what_was_refunded_of_it() -> None:
    """The refunded amount is on the intent's charge, which Stripe only sends when asked to
    expand it: without it a refund made in Stripe's dashboard is never seen."""
    stripe, _ = recording_stripe()

    info = await stripe.retrieve_intent(IntentRef("pi_1", 900, "usd"))

    assert (info.status, info.amount, info.amount_refunded) == ("succeeded", 900, 500)


async def test_a_refund_at_stripe_is_asked_under_our_key_and_reports_stripes_status() -> None:
    stripe, v1 = recording_stripe(refund={"id": "re_1", "status": "failed", "amount": 300})

    info = await stripe.refund(
        IntentRef("pi_1", 900, "usd"), amount=300, idempotency_key="refund:9"
    )

    assert (info.id, info.status, info.accepted) == ("re_1", "failed", False)
    [(params, options)] = v1.refunds.create_async.calls
    assert (params["payment_intent"], params["amount"]) == ("pi_1", 300)
    assert params["metadata"] == {REFUND_KEY_METADATA: "refund:9"}
    assert options == {"idempotency_key": "refund:9"}


async def test_a_refund_found_at_stripe_without_a_status_counts_as_succeeded() -> None:
    refund = {"id": "re_2", "amount": 400, "metadata": {REFUND_KEY_METADATA: "refund:2"}}
    stripe, _ = recording_stripe(refunds=[refund])

    found = await stripe.find_refund(IntentRef("pi_1", 900, "usd"), idempotency_key="refund:2")

    assert found is not None and (found.status, found.amount) == ("succeeded", 400)


async def test_refunds_under_different_idempotency_keys_are_different_refunds(
    world: World,
) -> None:
    order_id = await world.paid_order()  # 30.00

    first = await world.refund(order_id, "5.00", key="refund-a")
    second = await world.refund(order_id, "5.00", key="refund-b")

    assert (first.status_code, second.status_code) == (200, 200), second.text
    assert [r.status for r in await world.refunds(order_id)] == ["succeeded", "succeeded"]
    assert (await world.payment(order_id)).refunded_amount == Decimal("10.00")
    assert world.provider.refunded_total == 1000


async def test_confirming_a_paid_intent_at_stripe_sees_what_was_refunded_of_it() -> None:
    stripe, _ = recording_stripe()

    info = await stripe.confirm_intent(IntentRef("pi_1", 900, "usd"))

    assert (info.status, info.amount_refunded) == ("succeeded", 500)


@pytest.mark.parametrize("method", ["pm_card", {"id": "pm_card", "object": "payment_method"}])
async def test_confirming_at_stripe_names_the_payment_method_in_its_key(method: Any) -> None:
    """A retry never confirms one method twice; the method may come expanded or as an id."""
    stripe, v1 = recording_stripe()
    v1.payment_intents.retrieve_async = _Retrieve("requires_confirmation", method)
    confirm = v1.payment_intents.confirm_async = _Retrieve("succeeded")

    info = await stripe.confirm_intent(IntentRef("pi_1", 900, "usd"))

    assert (info.status, info.amount_refunded) == ("succeeded", 500)
    [(intent_id, _, options)] = confirm.calls
    assert (intent_id, options) == ("pi_1", {"idempotency_key": "pi_1:confirm:pm_card"})


async def test_a_declined_confirmation_at_stripe_reports_the_intent_as_it_is_then() -> None:
    stripe, v1 = recording_stripe()
    retrieve = v1.payment_intents.retrieve_async = _Retrieve("requires_confirmation", "pm_x")
    v1.payment_intents.confirm_async = _Declines({})

    info = await stripe.confirm_intent(IntentRef("pi_1", 900, "usd"))

    assert len(retrieve.calls) == 2
    assert (info.status, info.amount_refunded) == ("pending", 500)


# --------------------------------------------------------------------------- Checkout webhook


async def stripe_payment(app: FastAPI, user_id: int, name: str, intent_id: str | None) -> int:
    async with app.state.sessionmaker() as session:
        payment = Payment(
            purpose=f"mutants:{name}",
            provider="stripe",
            intent_id=intent_id,
            user_id=user_id,
            amount=Decimal("9.00"),
            currency="usd",
            status="pending",
            refunded_amount=Decimal("0.00"),
        )
        session.add(payment)
        await session.commit()
        return payment.id


async def deliver_completed_checkout(
    client: httpx.AsyncClient, name: str, intent_id: str
) -> httpx.Response:
    from tests.stripe_fixtures import event, signed

    completed = {
        "id": f"cs_test_{name}",
        "object": "checkout.session",
        "client_reference_id": f"mutants:{name}",
        "payment_intent": intent_id,
        "payment_status": "paid",
        "amount_total": 900,
        "currency": "usd",
    }
    payload, headers = signed(event("checkout.session.completed", completed))
    return await client.post("/api/v1/payments/webhook", content=payload, headers=headers)


async def test_a_completed_checkout_session_pays_its_payment_on_the_first_delivery(
    make_app: AppFactory,
) -> None:
    from tests.stripe_fixtures import WEBHOOK_SECRET

    app = await make_app(STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET)
    user = await make_user(app)
    payment_id = await stripe_payment(app, user.id, "first", None)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        answer = await deliver_completed_checkout(client, "first", "pi_first")

    assert answer.status_code == 200, answer.text
    assert await status_of(app, payment_id) == "succeeded"


async def test_a_completed_checkout_session_with_another_intent_leaves_the_payment_alone(
    make_app: AppFactory,
) -> None:
    """The payment already has its intent: a session naming another one does not pay it."""
    from tests.stripe_fixtures import WEBHOOK_SECRET

    app = await make_app(STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET)
    user = await make_user(app)
    payment_id = await stripe_payment(app, user.id, "taken", "pi_ours")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        answer = await deliver_completed_checkout(client, "taken", "pi_someone_elses")

    assert answer.status_code == 200, answer.text
    assert await status_of(app, payment_id) == "pending"


# --------------------------------------------------------------------------- provider refunds


async def _provider_says(
    app: FastAPI, payment_id: int, status: str, refunded_minor: int, reserved: str = "0.00"
) -> tuple[Payment, list[dict[str, Any]]]:
    """Apply the provider's view (amount 10.00 usd, `refunded_minor` refunded at the provider) to
    the payment holding `reserved` for a pending refund of ours; its state and refund events."""
    from sqlalchemy import select

    from sellerdesk.models import DomainEvent
    from sellerdesk.payments.state import apply_intent_state

    async with app.state.sessionmaker() as session:
        payment = await session.get(Payment, payment_id)
        assert payment is not None
        payment.refund_reserved = Decimal(reserved)
        await session.commit()
        info = IntentInfo(payment.intent_id or "", status, 1000, "usd", refunded_minor)  # type: ignore[arg-type]
        await apply_intent_state(session, payment, info)
        await session.commit()
    async with app.state.sessionmaker() as session:
        payment = await session.get(Payment, payment_id)
        assert payment is not None
        events = await session.scalars(
            select(DomainEvent)
            .where(DomainEvent.kind == "payment_refunded")
            .order_by(DomainEvent.id)
        )
        return payment, [e.payload for e in events if e.payload["payment_id"] == payment_id]


async def test_a_refund_made_at_the_provider_is_recorded_to_the_cent_and_announced(
    app: FastAPI,
) -> None:
    user = await make_user(app)
    paid = await add_payment(app, user.id, "dash-cents", age=timedelta(0), status="succeeded")
    payment, events = await _provider_says(app, paid, "succeeded", 50)
    assert payment.refunded_amount == Decimal("0.50")  # even under one unit
    assert [(e["refunded_now"], e["reason"]) for e in events] == [("0.50", None)]
    assert "reason" in events[0]


async def test_a_provider_refund_beside_a_pending_refund_of_ours_records_only_the_difference(
    app: FastAPI,
) -> None:
    user = await make_user(app)
    paid = await add_payment(app, user.id, "dash-beside", age=timedelta(0), status="succeeded")
    # Our pending refund holds 2.00; the provider reports 3.00 refunded in all: 1.00 is theirs.
    payment, events = await _provider_says(app, paid, "succeeded", 300, reserved="2.00")
    assert payment.refunded_amount == Decimal("1.00")
    assert [e["refunded_now"] for e in events] == ["1.00"]


async def test_refunds_reported_for_a_payment_not_captured_are_not_recorded(app: FastAPI) -> None:
    user = await make_user(app)
    waiting = await add_payment(app, user.id, "dash-pending", age=timedelta(0))
    payment, events = await _provider_says(app, waiting, "pending", 100)
    assert (payment.status, payment.refunded_amount, events) == ("pending", Decimal("0.00"), [])


async def test_a_provider_refund_of_one_minor_unit_is_recorded(app: FastAPI) -> None:
    user = await make_user(app)
    paid = await add_payment(app, user.id, "dash-one-cent", age=timedelta(0), status="succeeded")
    payment, events = await _provider_says(app, paid, "succeeded", 1)
    assert payment.refunded_amount == Decimal("0.01")
    assert [e["refunded_now"] for e in events] == ["0.01"]


@pytest.mark.parametrize(
    ("before", "provider", "after"),
    [
        ("pending", "canceled", "canceled"),
        ("failed", "canceled", "canceled"),
        ("succeeded", "canceled", "succeeded"),
        ("canceled", "succeeded", "succeeded"),
        ("failed", "succeeded", "succeeded"),
        ("canceled", "failed", "canceled"),
        ("succeeded", "failed", "succeeded"),
        ("canceled", "pending", "canceled"),
    ],
)
async def test_the_providers_view_of_an_intent_only_moves_a_payment_forward(
    app: FastAPI, before: str, provider: str, after: str
) -> None:
    """succeeded beats everything (money was captured); canceled replaces pending and failed."""
    user = await make_user(app)
    payment_id = await add_payment(
        app, user.id, f"moves-{before}-{provider}", age=timedelta(0), status=before
    )
    payment, _ = await _provider_says(app, payment_id, provider, 0)
    assert payment.status == after


async def test_a_day_whose_only_captured_payment_was_free_counts_zero(app: FastAPI) -> None:
    """A free product (price 0.00) still makes an order and a 0.00 payment: that day captured
    0.00, not a made-up amount."""
    from sellerdesk.kit.dates import DayRange
    from sellerdesk.payments import repository as payments_repository

    user = await make_user(app)
    payment_id = await add_payment(app, user.id, "free-day", age=timedelta(0), status="succeeded")
    now = utcnow()
    async with app.state.sessionmaker() as session:
        payment = await session.get(Payment, payment_id)
        assert payment is not None
        payment.amount, payment.captured_at, payment.currency = Decimal("0.00"), now, "zzz"
        await session.commit()
        captured = await payments_repository.captured_per_day(
            session, DayRange(now.date(), now.date()), "zzz"
        )
    assert captured == {now.date(): Decimal("0.00")}


async def test_the_settle_job_keeps_a_refund_pending_on_no_answer_and_fails_it_on_a_refusal(
    world: World,
) -> None:
    order_id = await world.paid_order()
    world.provider.fail_next("refund", ProviderFailed())  # no answer to the request
    assert (await world.refund(order_id, "12.00")).status_code == 502

    # The job asks again and gets no answer either: the refund stays pending, its 12.00 held.
    world.provider.fail_next("find_refund", ProviderFailed())
    assert await world.settle() == 0
    [row] = await world.refunds(order_id)
    assert row.status == "pending"
    assert (await world.payment(order_id)).refund_reserved == Decimal("12.00")

    # Next run the provider refuses it: failed, and the 12.00 is refundable again.
    world.provider.fail_next("find_refund", ProviderFailed("refused", transient=False))
    assert await world.settle() == 1
    [row] = await world.refunds(order_id)
    assert row.status == "failed"
    payment = await world.payment(order_id)
    assert (payment.refunded_amount, payment.refund_reserved) == (Decimal("0"), Decimal("0"))
    assert world.provider.refunded_total == 0
    assert world.provider.calls[-1] == "retrieve_intent"  # was it refunded at Stripe meanwhile?


async def test_the_settle_job_reads_the_intent_again_only_after_a_refusal(world: World) -> None:
    order_id = await world.paid_order()
    world.provider.fail_next("refund", ProviderFailed())
    assert (await world.refund(order_id, "5.00")).status_code == 502
    asked_before = len(world.provider.calls)

    assert await world.settle() == 1  # the job makes the refund under its key
    assert world.provider.calls[asked_before:] == ["find_refund", "refund"]
    assert [r.status for r in await world.refunds(order_id)] == ["succeeded"]
    assert await world.settle() == 0
    assert world.provider.calls[asked_before:] == ["find_refund", "refund"]


async def test_the_settle_job_takes_refunds_older_than_its_horizon_and_counts_each(
    world: World,
) -> None:
    first, second = await world.paid_order(), await world.paid_order()
    for order_id in (first, second):
        world.provider.fail_next("refund", ProviderFailed())
        assert (await world.refund(order_id, "3.00")).status_code == 502
    [newest] = await world.refunds(second)

    # At exactly the horizon after the newest: only the older one is old enough.
    exactly = newest.created_at + timedelta(seconds=SETTLE_AFTER)
    settle = payments_service.settle_pending_refunds
    horizon = timedelta(seconds=SETTLE_AFTER)
    assert (
        await settle(world.app.state.sessionmaker, world.provider, older_than=horizon, now=exactly)
        == 1
    )
    assert [r.status for r in await world.refunds(second)] == ["pending"]

    third = await world.paid_order()
    world.provider.fail_next("refund", ProviderFailed())
    assert (await world.refund(third, "3.00")).status_code == 502
    assert await world.settle() == 2  # one run settles both, and says so
    assert [r.status for r in await world.refunds(second)] == ["succeeded"]
    assert [r.status for r in await world.refunds(third)] == ["succeeded"]


async def test_locking_a_payment_reads_it_as_stored_even_when_the_session_holds_it(
    app: FastAPI,
) -> None:
    from sellerdesk.payments import repository as payments_repository

    user = await make_user(app)
    payment_id = await add_payment(app, user.id, "lock-fresh", age=timedelta(0), status="succeeded")
    async with app.state.sessionmaker() as session:
        held = await session.get(Payment, payment_id)  # a caller keeping the row it read
        assert held is not None and held.refunded_amount == Decimal("0.00")
        await payments_repository.add_to_refunded(session, payment_id, Decimal("2.50"))
        locked = await payments_repository.lock(session, payment_id)
        assert locked is not None and locked.refunded_amount == Decimal("2.50")


async def test_a_settled_refund_moves_its_cents_from_reserved_to_refunded(app: FastAPI) -> None:
    from sellerdesk.payments import repository as payments_repository

    user = await make_user(app)
    payment_id = await add_payment(
        app, user.id, "confirm-cents", age=timedelta(0), status="succeeded"
    )
    async with app.state.sessionmaker() as session:
        payment = await session.get(Payment, payment_id)
        assert payment is not None
        payment.refund_reserved = Decimal("9.75")  # 7.25 settling now, 2.50 still pending
        await session.commit()
        await payments_repository.confirm_reserved(session, payment_id, Decimal("7.25"))
        await session.commit()
    async with app.state.sessionmaker() as session:
        payment = await session.get(Payment, payment_id)
        assert payment is not None
        assert (payment.refunded_amount, payment.refund_reserved) == (
            Decimal("7.25"),
            Decimal("2.50"),
        )


async def test_the_providers_answer_settles_a_pending_refund_once_and_is_announced(
    world: World,
) -> None:
    from sqlalchemy import select

    from sellerdesk.models import DomainEvent
    from sellerdesk.payments.providers import RefundInfo
    from sellerdesk.payments.refunds import _apply_refund_answer

    accepted_order, refused_order = await world.paid_order(), await world.paid_order()
    for order_id in (accepted_order, refused_order):
        world.provider.fail_next("refund", ProviderFailed())  # no answer: left pending
        assert (await world.refund(order_id, "4.00")).status_code == 502
    [accepted] = await world.refunds(accepted_order)
    [refused] = await world.refunds(refused_order)

    async with world.app.state.sessionmaker() as session:
        yes = RefundInfo("re_taken", "succeeded", 400)
        no = RefundInfo("re_refused", "failed", 400)
        assert await _apply_refund_answer(session, accepted.id, yes) is True
        assert await _apply_refund_answer(session, refused.id, no) is True
        await session.commit()
        # An answer for a refund already settled changes nothing.
        assert await _apply_refund_answer(session, accepted.id, yes) is False
        assert await _apply_refund_answer(session, refused.id, no) is False
        events = await session.scalars(
            select(DomainEvent)
            .where(DomainEvent.kind == "payment_refunded")
            .order_by(DomainEvent.id)
        )
        announced = [
            (e.payload["refunded_now"], e.payload["refund_id"])
            for e in events
            if e.payload["order_id"] == accepted_order
        ]
    assert announced == [("4.00", accepted.id)]
    [accepted] = await world.refunds(accepted_order)
    [refused] = await world.refunds(refused_order)
    assert (accepted.status, accepted.provider_refund_id) == ("succeeded", "re_taken")
    assert (refused.status, refused.provider_refund_id) == ("failed", "re_refused")
    assert (await world.payment(refused_order)).refund_reserved == Decimal("0")


async def test_refunding_a_payment_not_captured_is_a_409_that_says_where_it_stands(
    world: World,
) -> None:
    order_id = await world.order()
    intent = await world.start_intent(order_id)
    assert intent.status_code == 200, intent.text
    refused = await world.refund(order_id, "1.00")
    assert refused.status_code == 409, refused.text
    assert refused.json()["message"] == (
        "This payment has not been captured; there is nothing to refund."
    )
    assert refused.json()["details"] == {"payment_status": "pending"}


async def test_a_retried_refund_request_asks_for_its_refund_by_key_and_keeps_its_amount(
    world: World,
) -> None:
    order_id = await world.paid_order()
    world.provider.fail_next("refund", ProviderFailed())
    unanswered = await world.refund(order_id, "4.00", key="refund-once")
    assert unanswered.status_code == 502
    assert unanswered.json()["message"] == (
        "The payment provider did not answer. The refund stays pending and is "
        "completed automatically; retrying this request carries on with it."
    )

    other_amount = await world.refund(order_id, "5.00", key="refund-once")
    assert other_amount.status_code == 422, other_amount.text
    assert other_amount.json()["message"] == "This request already refunds 4.00, not 5.00."

    asked_before = len(world.provider.calls)
    retried = await world.refund(order_id, "4.00", key="refund-once")
    assert retried.status_code == 200, retried.text
    # The retry carries on with its pending refund: it asks the provider for it by its key
    # first (a provider forgets idempotency keys after a day), then makes it under that key.
    assert world.provider.calls[asked_before:] == ["find_refund", "refund"]
    assert [r.status for r in await world.refunds(order_id)] == ["succeeded"]


async def test_a_refund_reserves_its_amount_on_its_own_payment_only(world: World) -> None:
    refunded, other = await world.paid_order(), await world.paid_order()
    assert (await world.refund(refunded, "4.00")).status_code == 200
    paid = await world.payment(refunded)
    assert (paid.refunded_amount, paid.refund_reserved) == (Decimal("4.00"), Decimal("0"))
    untouched = await world.payment(other)
    assert (untouched.refunded_amount, untouched.refund_reserved) == (Decimal("0"), Decimal("0"))
